/**
 * Client histories: the operations a linearizability checker judges, and parsers for the three
 * formats we read — Jepsen's etcd register logs, Jepsen/Porcupine key-value EDN lines, and the
 * simulator's own JSON lines (written by {@link formatHistory}).
 *
 * A history is a sequence of events: an `invoke` opens an operation on a process; `ok` closes it
 * with its result; `fail` closes it with certainty that it did not happen (it is dropped);
 * `info` closes it with an unknown outcome (it may take effect at any time after its invocation,
 * or never). Operations still open at the end of the file are unknown too. Only the order of the
 * events matters: event k happened before event k + 1 in real time.
 */

/** What an operation asked for. Keys are independent (P-compositionality). */
export type KvInput =
  | { readonly f: 'get'; readonly key: string }
  | {
      readonly f: 'put';
      readonly key: string;
      readonly value: string;
      /** Compare-and-set: succeed only when the current value equals this. */
      readonly prevValue?: string;
      /** `false`: create only (fail if present); `true`: update only (fail if absent). */
      readonly prevExist?: boolean;
    }
  | { readonly f: 'append'; readonly key: string; readonly value: string }
  | { readonly f: 'delete'; readonly key: string; readonly prevValue?: string };

/** Why a write did not apply (etcd v2: 412 "compare failed" / 404 "key not found"). */
export type FailureReason = 'precondition' | 'notFound';

/**
 * What an operation returned. `value` is the value a `get` read (null = absent). A `failed`
 * without `reason` matches either reason (Jepsen only says "the cas failed").
 */
export type KvOutput =
  | { readonly kind: 'ok'; readonly value?: string | null }
  | { readonly kind: 'failed'; readonly reason?: FailureReason };

/** One operation, from invocation to completion. */
export interface Operation {
  /** Position among the history's operations, in invocation order. */
  readonly id: number;
  readonly process: string;
  readonly input: KvInput;
  /** The result; null when the outcome is unknown (`info`, timeout, still open at the end). */
  readonly output: KvOutput | null;
  /** Position of the invoke event in the history. */
  readonly call: number;
  /** Position of the completion event; Infinity when the outcome is unknown. */
  readonly ret: number;
  /** 1-based line of the invoke in the source file, for messages (0 when not from a file). */
  readonly line: number;
}

/** The formats {@link parseHistory} understands. */
export type HistoryFormat = 'jepsen-etcd' | 'kv-edn' | 'phantomdb-jsonl';

/** A parsed history, ready for the checker. */
export interface History {
  readonly format: HistoryFormat;
  /** Value every key holds before the first operation: null (absent) or '' (Porcupine kv). */
  readonly initialValue: string | null;
  readonly operations: readonly Operation[];
}

/** A history file that cannot be parsed; `line` is 1-based (0: the file as a whole). */
export class HistoryParseError extends Error {
  override readonly name = 'HistoryParseError';
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(line > 0 ? `line ${line}: ${message}` : message);
  }
}

/** An event before pairing: an invocation or a completion on a process. */
export type HistoryEvent =
  | {
      readonly type: 'invoke';
      readonly process: string;
      readonly input: KvInput;
      readonly line: number;
    }
  | {
      readonly type: 'ok';
      readonly process: string;
      readonly output: KvOutput;
      readonly line: number;
    }
  | { readonly type: 'fail' | 'info'; readonly process: string; readonly line: number };

/**
 * Pairs invocations with completions, process by process. `fail` drops the operation, `info`
 * and an invocation still open at the end make it unknown. A process that invokes while it has
 * an operation open, or completes with none open, is a malformed history.
 */
export function pairEvents(events: readonly HistoryEvent[]): Operation[] {
  interface Open {
    input: KvInput;
    call: number;
    line: number;
    slot: number;
  }
  const open = new Map<string, Open>();
  // Slots keep invocation order; a dropped (failed) operation leaves a hole filled with null.
  const slots: (Omit<Operation, 'id'> | null)[] = [];
  events.forEach((event, position) => {
    const pending = open.get(event.process);
    if (event.type === 'invoke') {
      if (pending !== undefined) {
        throw new HistoryParseError(
          event.line,
          `process ${event.process} invokes while its operation from line ${pending.line} is still open`,
        );
      }
      open.set(event.process, {
        input: event.input,
        call: position,
        line: event.line,
        slot: slots.length,
      });
      slots.push(null);
      return;
    }
    if (pending === undefined) {
      throw new HistoryParseError(
        event.line,
        `process ${event.process} completes an operation it never invoked`,
      );
    }
    open.delete(event.process);
    if (event.type === 'fail') return;
    if (
      event.type === 'ok' &&
      pending.input.f === 'get' &&
      (event.output.kind !== 'ok' || event.output.value === undefined)
    ) {
      throw new HistoryParseError(
        event.line,
        `the get from line ${pending.line} completes without a value`,
      );
    }
    slots[pending.slot] = {
      process: event.process,
      input: pending.input,
      output: event.type === 'ok' ? event.output : null,
      call: pending.call,
      ret: event.type === 'ok' ? position : Infinity,
      line: pending.line,
    };
  });
  for (const [process, pending] of open) {
    slots[pending.slot] = {
      process,
      input: pending.input,
      output: null,
      call: pending.call,
      ret: Infinity,
      line: pending.line,
    };
  }
  const operations: Operation[] = [];
  for (const slot of slots) {
    if (slot !== null) operations.push({ id: operations.length, ...slot });
  }
  return operations;
}

/** Picks the format from the first meaningful line; null when none fits. */
export function detectFormat(text: string): HistoryFormat | null {
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    if (line.startsWith('{"')) return 'phantomdb-jsonl';
    if (line.startsWith('{:')) return 'kv-edn';
    if (line.includes('jepsen.')) return 'jepsen-etcd';
    return null;
  }
  return null;
}

/** Parses a history in any known format; throws {@link HistoryParseError}. */
export function parseHistory(text: string): History {
  const format = detectFormat(text);
  switch (format) {
    case 'jepsen-etcd':
      return parseJepsenEtcd(text);
    case 'kv-edn':
      return parseKvEdn(text);
    case 'phantomdb-jsonl':
      return parseJsonLines(text);
    case null:
      throw new HistoryParseError(
        0,
        'Cannot detect the history format: expected Jepsen log lines, EDN maps or JSON lines',
      );
  }
}

// ---------------------------------------------------------------------------------------------
// Jepsen etcd register logs

/** The single register of a Jepsen etcd log lives under this key. */
export const registerKey = 'register';

/**
 * Parses a Jepsen etcd log (register read / write / cas). A `:fail` cas is a compare that did
 * not match: it is kept as a failed cas (it tells us the register did not hold the expected
 * value at some point in the interval), as etcd answers it; `:fail` of anything else drops it.
 */
export function parseJepsenEtcd(text: string): History {
  const events: HistoryEvent[] = [];
  const lines = text.split('\n');
  const invoked = new Map<string, KvInput>();
  for (let k = 0; k < lines.length; k++) {
    const line = lines[k]!;
    const lineNumber = k + 1;
    const marker = line.indexOf('jepsen.util - ');
    if (marker < 0) continue;
    const fields = line
      .slice(marker + 'jepsen.util - '.length)
      .split('\t')
      .map((field) => field.trim());
    if (fields.length < 4) {
      throw new HistoryParseError(
        lineNumber,
        `expected 4 tab-separated fields, got ${fields.length}`,
      );
    }
    const [process, type, f, value] = fields as [string, string, string, string];
    if (!/^\d+$/.test(process)) {
      throw new HistoryParseError(lineNumber, `process ${JSON.stringify(process)} is not a number`);
    }
    switch (type) {
      case ':invoke': {
        const input = jepsenInput(f, value, lineNumber);
        invoked.set(process, input);
        events.push({ type: 'invoke', process, input, line: lineNumber });
        break;
      }
      case ':ok': {
        const input = invoked.get(process);
        if (input === undefined) {
          throw new HistoryParseError(
            lineNumber,
            `process ${process} completes an operation it never invoked`,
          );
        }
        checkSameFunction(input, f, lineNumber);
        const output: KvOutput =
          input.f === 'get'
            ? { kind: 'ok', value: jepsenValue(value, lineNumber) }
            : { kind: 'ok' };
        events.push({ type: 'ok', process, output, line: lineNumber });
        invoked.delete(process);
        break;
      }
      case ':fail': {
        const input = invoked.get(process);
        if (input !== undefined) checkSameFunction(input, f, lineNumber);
        if (input !== undefined && input.f === 'put' && input.prevValue !== undefined) {
          events.push({ type: 'ok', process, output: { kind: 'failed' }, line: lineNumber });
        } else {
          events.push({ type: 'fail', process, line: lineNumber });
        }
        invoked.delete(process);
        break;
      }
      case ':info':
        events.push({ type: 'info', process, line: lineNumber });
        invoked.delete(process);
        break;
      default:
        throw new HistoryParseError(lineNumber, `unknown event type ${JSON.stringify(type)}`);
    }
  }
  return { format: 'jepsen-etcd', initialValue: null, operations: pairEvents(events) };
}

function jepsenInput(f: string, value: string, line: number): KvInput {
  switch (f) {
    case ':read':
      return { f: 'get', key: registerKey };
    case ':write': {
      const written = jepsenValue(value, line);
      if (written === null) throw new HistoryParseError(line, 'a write of nil');
      return { f: 'put', key: registerKey, value: written };
    }
    case ':cas': {
      const match = /^\[\s*(\S+)\s+(\S+)\s*\]$/.exec(value);
      if (match === null) {
        throw new HistoryParseError(line, `cas value ${JSON.stringify(value)} is not [from to]`);
      }
      const from = jepsenValue(match[1]!, line);
      const to = jepsenValue(match[2]!, line);
      if (from === null || to === null) throw new HistoryParseError(line, 'a cas from or to nil');
      return { f: 'put', key: registerKey, value: to, prevValue: from };
    }
    default:
      throw new HistoryParseError(line, `unknown operation ${JSON.stringify(f)}`);
  }
}

function jepsenValue(value: string, line: number): string | null {
  if (value === 'nil') return null;
  if (/^-?\d+$/.test(value)) return value;
  throw new HistoryParseError(line, `value ${JSON.stringify(value)} is neither nil nor an integer`);
}

function checkSameFunction(input: KvInput, f: string, line: number): void {
  const expected =
    input.f === 'get'
      ? ':read'
      : input.f === 'put' && input.prevValue !== undefined
        ? ':cas'
        : ':write';
  if (f !== expected) {
    throw new HistoryParseError(line, `completion ${f} does not match the invocation ${expected}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Key-value EDN lines (Porcupine's kv test data)

type EdnValue = string | number | null | { readonly keyword: string };

/**
 * Parses one flat EDN map of keywords to keywords, strings, integers or nil — the subset the
 * Jepsen/Porcupine kv histories use. Throws {@link HistoryParseError} on anything else.
 */
export function parseEdnMap(text: string, line: number): Map<string, EdnValue> {
  let at = 0;
  const fail = (what: string): never => {
    throw new HistoryParseError(line, `${what} at column ${at + 1}`);
  };
  const skipSpace = (): void => {
    while (at < text.length && (text[at] === ' ' || text[at] === ',' || text[at] === '\t')) at++;
  };
  const readKeyword = (): string => {
    if (text[at] !== ':') fail('expected a keyword');
    const start = ++at;
    while (at < text.length && /[A-Za-z0-9_\-?!*+.]/.test(text[at]!)) at++;
    if (at === start) fail('empty keyword');
    return text.slice(start, at);
  };
  const readValue = (): EdnValue => {
    const c = text[at];
    if (c === ':') return { keyword: readKeyword() };
    if (c === '"') {
      let out = '';
      at++;
      for (;;) {
        if (at >= text.length) fail('unterminated string');
        const ch = text[at++]!;
        if (ch === '"') return out;
        if (ch === '\\') {
          const escaped = text[at++];
          if (escaped === 'n') out += '\n';
          else if (escaped === 't') out += '\t';
          else if (escaped === '"' || escaped === '\\') out += escaped;
          else fail(`unsupported escape \\${escaped ?? ''}`);
        } else {
          out += ch;
        }
      }
    }
    const match = /^(nil|-?\d+)/.exec(text.slice(at));
    if (match === null) return fail('expected a keyword, string, integer or nil');
    at += match[0].length;
    return match[0] === 'nil' ? null : Number(match[0]);
  };
  const map = new Map<string, EdnValue>();
  skipSpace();
  if (text[at] !== '{') fail('expected {');
  at++;
  for (;;) {
    skipSpace();
    if (text[at] === '}') {
      at++;
      break;
    }
    if (at >= text.length) fail('unterminated map');
    const key = readKeyword();
    skipSpace();
    if (map.has(key)) fail(`duplicate key :${key}`);
    map.set(key, readValue());
  }
  skipSpace();
  if (at !== text.length) fail('trailing characters');
  return map;
}

/** Parses Porcupine-style kv histories (get / put / append; every key starts as ''). */
export function parseKvEdn(text: string): History {
  const events: HistoryEvent[] = [];
  const lines = text.split('\n');
  for (let k = 0; k < lines.length; k++) {
    const raw = lines[k]!.trim();
    if (raw === '') continue;
    const lineNumber = k + 1;
    const map = parseEdnMap(raw, lineNumber);
    const process = map.get('process');
    const type = map.get('type');
    const f = map.get('f');
    const key = map.get('key');
    const value = map.get('value');
    if (typeof process !== 'number')
      throw new HistoryParseError(lineNumber, ':process is not an integer');
    if (type === null || typeof type !== 'object')
      throw new HistoryParseError(lineNumber, ':type is not a keyword');
    if (f === null || typeof f !== 'object')
      throw new HistoryParseError(lineNumber, ':f is not a keyword');
    if (typeof key !== 'string') throw new HistoryParseError(lineNumber, ':key is not a string');
    const processId = String(process);
    if (f.keyword !== 'get' && f.keyword !== 'put' && f.keyword !== 'append') {
      throw new HistoryParseError(lineNumber, `unknown :f :${f.keyword}`);
    }
    switch (type.keyword) {
      case 'invoke': {
        let input: KvInput;
        if (f.keyword === 'get') input = { f: 'get', key };
        else if (typeof value !== 'string') {
          throw new HistoryParseError(lineNumber, `:${f.keyword} needs a string :value`);
        } else input = { f: f.keyword, key, value };
        events.push({ type: 'invoke', process: processId, input, line: lineNumber });
        break;
      }
      case 'ok': {
        if (f.keyword === 'get' && typeof value !== 'string') {
          throw new HistoryParseError(lineNumber, 'a completed :get needs a string :value');
        }
        const output: KvOutput =
          f.keyword === 'get' ? { kind: 'ok', value: value as string } : { kind: 'ok' };
        events.push({ type: 'ok', process: processId, output, line: lineNumber });
        break;
      }
      case 'fail':
      case 'info':
        events.push({ type: type.keyword, process: processId, line: lineNumber });
        break;
      default:
        throw new HistoryParseError(lineNumber, `unknown :type :${type.keyword}`);
    }
  }
  return { format: 'kv-edn', initialValue: '', operations: pairEvents(events) };
}

// ---------------------------------------------------------------------------------------------
// The simulator's JSON lines

/** First line of a simulator history file; identifies the format and its version. */
export const jsonLinesHeader = { format: 'phantomdb-history', version: 1 } as const;

/**
 * One line of the simulator's history format after the header. `t` (virtual milliseconds) is
 * informative only; the line order is the real-time order.
 *
 * - invoke: `{"type":"invoke","process":"c1","f":"put","key":"k","value":"v","prevValue":"u"}`
 * - ok:     `{"type":"ok","process":"c1","result":"ok"|"precondition"|"notFound","value":…}`
 *           (`value` is what a get read, null = absent)
 * - fail / info: `{"type":"fail"|"info","process":"c1"}` — did not happen / unknown outcome
 */
export type JsonLinesEvent =
  | ({ readonly type: 'invoke'; readonly process: string; readonly t?: number } & KvInput)
  | {
      readonly type: 'ok';
      readonly process: string;
      readonly result: 'ok' | FailureReason;
      readonly value?: string | null;
      readonly t?: number;
    }
  | { readonly type: 'fail' | 'info'; readonly process: string; readonly t?: number };

/** Converts a paired event to its JSON lines form (the inverse of the parser). */
export function toJsonLinesEvent(event: HistoryEvent, t?: number): JsonLinesEvent {
  const time = t === undefined ? {} : { t };
  switch (event.type) {
    case 'invoke':
      return { type: 'invoke', process: event.process, ...event.input, ...time };
    case 'ok': {
      const { output } = event;
      if (output.kind === 'failed') {
        return {
          type: 'ok',
          process: event.process,
          result: output.reason ?? 'precondition',
          ...time,
        };
      }
      return output.value === undefined
        ? { type: 'ok', process: event.process, result: 'ok', ...time }
        : { type: 'ok', process: event.process, result: 'ok', value: output.value, ...time };
    }
    default:
      return { type: event.type, process: event.process, ...time };
  }
}

/** Writes events as the simulator's JSON lines history (header first, one event a line). */
export function formatHistory(events: readonly { event: HistoryEvent; t?: number }[]): string {
  const lines = [JSON.stringify(jsonLinesHeader)];
  for (const { event, t } of events) lines.push(JSON.stringify(toJsonLinesEvent(event, t)));
  return lines.join('\n') + '\n';
}

/** Parses the simulator's JSON lines history (keys start absent). */
export function parseJsonLines(text: string): History {
  const lines = text.split('\n');
  const events: HistoryEvent[] = [];
  let headerSeen = false;
  for (let k = 0; k < lines.length; k++) {
    const raw = lines[k]!.trim();
    if (raw === '') continue;
    const lineNumber = k + 1;
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch (error) {
      throw new HistoryParseError(lineNumber, `not JSON: ${(error as Error).message}`);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new HistoryParseError(lineNumber, 'expected a JSON object');
    }
    const record = parsed as Record<string, unknown>;
    if (!headerSeen) {
      if (
        record['format'] !== jsonLinesHeader.format ||
        record['version'] !== jsonLinesHeader.version
      ) {
        throw new HistoryParseError(
          lineNumber,
          `expected the header ${JSON.stringify(jsonLinesHeader)}`,
        );
      }
      headerSeen = true;
      continue;
    }
    events.push(jsonLineEvent(record, lineNumber));
  }
  if (!headerSeen) throw new HistoryParseError(0, 'empty history: no header line');
  return { format: 'phantomdb-jsonl', initialValue: null, operations: pairEvents(events) };
}

function jsonLineEvent(record: Record<string, unknown>, line: number): HistoryEvent {
  const process = record['process'];
  if (typeof process !== 'string' || process === '') {
    throw new HistoryParseError(line, '"process" must be a non-empty string');
  }
  const optionalString = (name: string): string | undefined => {
    const value = record[name];
    if (value === undefined) return undefined;
    if (typeof value !== 'string') throw new HistoryParseError(line, `"${name}" must be a string`);
    return value;
  };
  const requiredString = (name: string): string => {
    const value = optionalString(name);
    if (value === undefined) throw new HistoryParseError(line, `"${name}" is missing`);
    return value;
  };
  switch (record['type']) {
    case 'invoke': {
      const key = requiredString('key');
      const f = record['f'];
      switch (f) {
        case 'get':
          return { type: 'invoke', process, input: { f, key }, line };
        case 'append':
          return {
            type: 'invoke',
            process,
            input: { f, key, value: requiredString('value') },
            line,
          };
        case 'put': {
          const prevValue = optionalString('prevValue');
          const prevExist = record['prevExist'];
          if (prevExist !== undefined && typeof prevExist !== 'boolean') {
            throw new HistoryParseError(line, '"prevExist" must be a boolean');
          }
          return {
            type: 'invoke',
            process,
            input: {
              f,
              key,
              value: requiredString('value'),
              ...(prevValue === undefined ? {} : { prevValue }),
              ...(prevExist === undefined ? {} : { prevExist }),
            },
            line,
          };
        }
        case 'delete': {
          const prevValue = optionalString('prevValue');
          return {
            type: 'invoke',
            process,
            input: { f, key, ...(prevValue === undefined ? {} : { prevValue }) },
            line,
          };
        }
        default:
          throw new HistoryParseError(line, `unknown "f" ${JSON.stringify(f)}`);
      }
    }
    case 'ok': {
      const result = record['result'];
      if (result === 'precondition' || result === 'notFound') {
        return { type: 'ok', process, output: { kind: 'failed', reason: result }, line };
      }
      if (result !== 'ok')
        throw new HistoryParseError(line, `unknown "result" ${JSON.stringify(result)}`);
      const value = record['value'];
      if (value === undefined) return { type: 'ok', process, output: { kind: 'ok' }, line };
      if (value !== null && typeof value !== 'string') {
        throw new HistoryParseError(line, '"value" must be a string or null');
      }
      return { type: 'ok', process, output: { kind: 'ok', value }, line };
    }
    case 'fail':
    case 'info':
      return { type: record['type'], process, line };
    default:
      throw new HistoryParseError(line, `unknown "type" ${JSON.stringify(record['type'])}`);
  }
}
