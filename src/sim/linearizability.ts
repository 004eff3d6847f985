/**
 * A linearizability checker for key-value and register histories.
 *
 * The search is Wing & Gong's: walk the history's call/return events in real-time order; at a
 * call, try to linearize that operation now (the model must accept its output from the current
 * state) and restart from the earliest remaining event; at a return whose operation is not yet
 * linearized, backtrack. Two refinements make it practical, as in Lowe's "Testing for
 * linearizability" and Porcupine: linearized operations are lifted out of the event list (so
 * the walk only sees what is left), and every (set of linearized operations, model state) that
 * was explored is memoized — reaching it again by another order cannot succeed either.
 *
 * Keys are independent, so the history is split per key and each key is checked alone
 * (P-compositionality, Herlihy & Wing): a history is linearizable iff every key's is.
 *
 * Two reductions keep histories with many timed-out writes tractable, both exact:
 * - values that no operation of the key reads or compares against all behave alike, so they
 *   are one abstract state (not with appends, where a concatenation can still be read);
 * - unknown-outcome operations with the same abstract effect are interchangeable, so they are
 *   placed in invocation order only (an earlier-invoked twin can go wherever a later one
 *   could), and one that would not change the state is never placed at all ("never happened"
 *   is always allowed and leaves fewer obligations).
 * A property test compares the verdicts with a brute-force search on random small histories.
 *
 * Operations with an unknown outcome (Jepsen `:info`, a client timeout, still open at the end)
 * return at +∞: they may be linearized anywhere after their call, and the search succeeds as
 * soon as every operation with a known outcome is placed — what is left "never happened".
 *
 * The checker never answers "linearizable" without having found a linearization. Under a step
 * or time bound it may give up with `unknown`, which is not a pass.
 *
 * @example
 * ```ts
 * const history = parseHistory(await readFile('etcd_000.log', 'utf8'));
 * const result = checkHistory(history, { timeoutMs: 10_000 });
 * if (result.verdict !== 'linearizable') console.log(explainResult(result));
 * ```
 */
import { assert } from '../assert.js';
import type { FailureReason, History, KvInput, KvOutput, Operation } from './history.js';

/** A key's value in the model; null means absent. */
export type KvState = string | null;

/** What the model says an operation does from a given state. */
export interface KvStep {
  /** The output the operation must return from this state. */
  readonly expected: KvOutput;
  /** The state after it. */
  readonly next: KvState;
}

/**
 * The sequential specification: etcd v2 semantics for put (with `prevValue` compare-and-set,
 * `prevExist` create/update only) and delete, plus get and Porcupine's append.
 */
export function stepKv(state: KvState, input: KvInput): KvStep {
  const failed = (reason: FailureReason): KvStep => ({
    expected: { kind: 'failed', reason },
    next: state,
  });
  switch (input.f) {
    case 'get':
      return { expected: { kind: 'ok', value: state }, next: state };
    case 'put':
      if (input.prevExist === false && state !== null) return failed('precondition');
      if (input.prevExist === true && state === null) return failed('notFound');
      if (input.prevValue !== undefined) {
        if (state === null) return failed('notFound');
        if (state !== input.prevValue) return failed('precondition');
      }
      return { expected: { kind: 'ok' }, next: input.value };
    case 'append':
      return { expected: { kind: 'ok' }, next: (state ?? '') + input.value };
    case 'delete':
      if (state === null) return failed('notFound');
      if (input.prevValue !== undefined && state !== input.prevValue) {
        return failed('precondition');
      }
      return { expected: { kind: 'ok' }, next: null };
  }
}

/** Whether `actual` (what the operation returned) is what the model `expected`. */
export function outputMatches(expected: KvOutput, actual: KvOutput): boolean {
  if (expected.kind !== actual.kind) return false;
  if (expected.kind === 'ok') {
    return (
      actual.kind === 'ok' && (expected.value === undefined || actual.value === expected.value)
    );
  }
  return (
    actual.kind === 'failed' && (actual.reason === undefined || actual.reason === expected.reason)
  );
}

/** Bounds on the search; past either, the verdict is `unknown`. */
export interface CheckOptions {
  /** Search steps over all keys (deterministic bound; default 20,000,000). */
  readonly stepsMax?: number;
  /** Wall-clock bound in milliseconds (default: none). */
  readonly timeoutMs?: number;
}

/** `unknown`: the checker gave up under its bound — neither a pass nor a proof of failure. */
export type Verdict = 'linearizable' | 'not-linearizable' | 'unknown';

/** Why a key's history is not linearizable, from the deepest point the search reached. */
export interface LinearizationFailure {
  /** A longest linearizable prefix found, in linearization order. */
  readonly prefix: readonly Operation[];
  /** The key's value after that prefix. */
  readonly stateAfterPrefix: KvState;
  /**
   * The completed operation with the earliest return among those not in the prefix: it must be
   * linearized before anything that was invoked after it returned, and it cannot be.
   */
  readonly blocking: Operation;
  /** The operations that could come next in real-time order, and what the model expected. */
  readonly candidates: readonly { readonly operation: Operation; readonly expected: KvOutput }[];
}

/** The verdict on one key. */
export interface KeyResult {
  readonly key: string;
  readonly verdict: Verdict | 'unchecked';
  readonly operations: number;
  readonly steps: number;
  readonly failure?: LinearizationFailure;
}

/** The verdict on a whole history. */
export interface CheckResult {
  readonly verdict: Verdict;
  readonly operations: number;
  readonly steps: number;
  readonly elapsedMs: number;
  /** One per key, in order of first appearance; keys after a failing one are `unchecked`. */
  readonly keys: readonly KeyResult[];
  /** Why the checker gave up (`unknown` only). */
  readonly gaveUp?: string;
}

const defaultStepsMax = 20_000_000;

/** Checks a parsed history; see the module comment. */
export function checkHistory(history: History, options: CheckOptions = {}): CheckResult {
  return checkOperations(history.operations, history.initialValue, options);
}

/** Checks operations on independent keys, each starting at `initialValue`. */
export function checkOperations(
  operations: readonly Operation[],
  initialValue: KvState,
  options: CheckOptions = {},
): CheckResult {
  const stepsMax = options.stepsMax ?? defaultStepsMax;
  if (!Number.isSafeInteger(stepsMax) || stepsMax < 1) {
    throw new RangeError(`Invalid stepsMax: ${String(stepsMax)} (expected a positive integer)`);
  }
  if (options.timeoutMs !== undefined && !(options.timeoutMs > 0)) {
    throw new RangeError(`Invalid timeoutMs: ${String(options.timeoutMs)} (expected > 0)`);
  }
  const started = performance.now();
  const deadline = options.timeoutMs === undefined ? Infinity : started + options.timeoutMs;
  const byKey = new Map<string, Operation[]>();
  for (const operation of operations) {
    const list = byKey.get(operation.input.key);
    if (list === undefined) byKey.set(operation.input.key, [operation]);
    else list.push(operation);
  }
  const keys: KeyResult[] = [];
  let steps = 0;
  let verdict: Verdict = 'linearizable';
  let gaveUp: string | undefined;
  for (const [key, keyOperations] of byKey) {
    if (verdict === 'not-linearizable') {
      keys.push({ key, verdict: 'unchecked', operations: keyOperations.length, steps: 0 });
      continue;
    }
    const search = new KeySearch(keyOperations, initialValue, stepsMax - steps, deadline);
    const result = search.run();
    steps += result.steps;
    keys.push({ key, operations: keyOperations.length, ...result });
    if (result.verdict === 'not-linearizable') verdict = 'not-linearizable';
    else if (result.verdict === 'unknown') {
      verdict = 'unknown';
      gaveUp ??=
        steps >= stepsMax
          ? `gave up on key ${JSON.stringify(key)} after ${steps} search steps (stepsMax)`
          : `gave up on key ${JSON.stringify(key)} at the time limit of ${options.timeoutMs ?? 0} ms`;
    }
  }
  return {
    verdict,
    operations: operations.length,
    steps,
    elapsedMs: performance.now() - started,
    keys,
    ...(verdict === 'unknown' && gaveUp !== undefined ? { gaveUp } : {}),
  };
}

/** Fixed pseudo-random 32-bit values per operation, for an incremental set hash (Zobrist). */
function zobristValues(count: number): Int32Array {
  const values = new Int32Array(count);
  let seed = 0x9e3779b9;
  for (let k = 0; k < count; k++) {
    // splitmix32
    seed = (seed + 0x9e3779b9) | 0;
    let z = seed;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    values[k] = z ^ (z >>> 16);
  }
  return values;
}

/** Memo of explored (linearized set, state) pairs, bucketed by a combined hash. */
class ExploredSet {
  private readonly buckets = new Map<number, { bits: Uint32Array; state: number }[]>();

  /** Adds the pair; false when it was already there. */
  add(hash: number, bits: Uint32Array, state: number): boolean {
    const key = (hash ^ Math.imul(state + 1, 0x27d4eb2d)) | 0;
    const bucket = this.buckets.get(key);
    if (bucket === undefined) {
      this.buckets.set(key, [{ bits: bits.slice(), state }]);
      return true;
    }
    for (const entry of bucket) {
      if (entry.state === state && sameBits(entry.bits, bits)) return false;
    }
    bucket.push({ bits: bits.slice(), state });
    return true;
  }
}

function sameBits(a: Uint32Array, b: Uint32Array): boolean {
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return false;
  return true;
}

/** The search over one key's operations. */
class KeySearch {
  private readonly count: number;
  /** Event list: nodes 0..2n-1 (call of op k = 2k, its return = 2k + 1), head sentinel 2n. */
  private readonly next: Int32Array;
  private readonly prev: Int32Array;
  private readonly head: number;
  /** Model states interned to small integers so the memo compares numbers, not strings. */
  private readonly stateIds = new Map<KvState, number>();
  private readonly states: KvState[] = [];
  /**
   * Values some operation reads or compares against. Any other value behaves exactly like any
   * other unmentioned one for every operation of the key (a read of it cannot match, a compare
   * against it cannot succeed), so all of them are one abstract state, {@link unobserved}.
   * Null when the key has appends (a concatenation of an unread value can still be read).
   */
  private readonly mentioned: Set<string> | null;
  /** The abstract state standing for every value no operation mentions. */
  readonly unobserved: string;
  /**
   * For an unknown-outcome operation, the previous unknown operation (in invocation order)
   * with the same abstract effect, or -1. Such operations are interchangeable, so the search
   * only places one after its predecessor: the earlier-invoked one can go wherever the later
   * one could, and whichever is left over "never happened".
   */
  private readonly twinBefore: Int32Array;

  constructor(
    private readonly operations: readonly Operation[],
    private readonly initialValue: KvState,
    private readonly stepsMax: number,
    private readonly deadline: number,
  ) {
    this.count = operations.length;
    const nodes = 2 * this.count;
    this.head = nodes;
    this.next = new Int32Array(nodes + 1);
    this.prev = new Int32Array(nodes + 1);
    // Events in real-time order; at equal times calls go first so that touching intervals
    // count as concurrent. Unknown returns (Infinity) sort last, after every known return.
    const order: number[] = [];
    for (let k = 0; k < nodes; k++) order.push(k);
    const timeOf = (node: number): number => {
      const operation = operations[node >> 1]!;
      return (node & 1) === 0 ? operation.call : operation.ret;
    };
    order.sort((a, b) => timeOf(a) - timeOf(b) || (a & 1) - (b & 1) || a - b);
    let previous = this.head;
    for (const node of order) {
      this.next[previous] = node;
      this.prev[node] = previous;
      previous = node;
    }
    this.next[previous] = this.head;
    this.prev[this.head] = previous;

    let mentioned: Set<string> | null = new Set<string>();
    for (const { input, output } of operations) {
      if (input.f === 'append') {
        mentioned = null;
        break;
      }
      if (output?.kind === 'ok' && typeof output.value === 'string') mentioned.add(output.value);
      if ((input.f === 'put' || input.f === 'delete') && input.prevValue !== undefined) {
        mentioned.add(input.prevValue);
      }
    }
    this.mentioned = mentioned;
    let unobserved = '\u2039a value no operation reads\u203a';
    while (mentioned?.has(unobserved) === true || unobserved === initialValue)
      unobserved += '\u203a';
    this.unobserved = unobserved;

    this.twinBefore = new Int32Array(this.count).fill(-1);
    const lastOfClass = new Map<string, number>();
    operations.forEach((operation, k) => {
      if (operation.output !== null) return;
      const { input } = operation;
      const value = input.f === 'get' || input.f === 'delete' ? null : this.abstract(input.value);
      const effect = JSON.stringify([
        input.f,
        value,
        'prevValue' in input ? (input.prevValue ?? null) : null,
        'prevExist' in input ? (input.prevExist ?? null) : null,
      ]);
      this.twinBefore[k] = lastOfClass.get(effect) ?? -1;
      lastOfClass.set(effect, k);
    });
  }

  /** The abstract state for a value (see {@link mentioned}). */
  private abstract(value: KvState): KvState {
    if (value === null || this.mentioned === null || this.mentioned.has(value)) return value;
    return this.unobserved;
  }

  private internState(state: KvState): number {
    let id = this.stateIds.get(state);
    if (id === undefined) {
      id = this.states.length;
      this.states.push(state);
      this.stateIds.set(state, id);
    }
    return id;
  }

  /** Removes an operation's call and return events from the list. */
  private lift(op: number): void {
    const { next, prev } = this;
    const call = 2 * op;
    const ret = call + 1;
    next[prev[call]!] = next[call]!;
    prev[next[call]!] = prev[call]!;
    next[prev[ret]!] = next[ret]!;
    prev[next[ret]!] = prev[ret]!;
  }

  /** Puts them back; must undo lifts in reverse order (dancing links). */
  private unlift(op: number): void {
    const { next, prev } = this;
    const call = 2 * op;
    const ret = call + 1;
    next[prev[ret]!] = ret;
    prev[next[ret]!] = ret;
    next[prev[call]!] = call;
    prev[next[call]!] = call;
  }

  run(): Omit<KeyResult, 'key' | 'operations'> {
    const { operations, count } = this;
    const zobrist = zobristValues(count);
    const bits = new Uint32Array(Math.ceil(count / 32));
    const explored = new ExploredSet();
    // The stack of linearized operations and the state before each.
    const stackOp = new Int32Array(count);
    const stackState = new Int32Array(count);
    let depth = 0;
    let hash = 0;
    let state = this.internState(this.abstract(this.initialValue));
    let totalKnown = 0;
    for (const operation of operations) if (operation.output !== null) totalKnown++;
    let remainingKnown = totalKnown;
    let bestKnown = -1;
    let bestPrefix: number[] = [];
    let bestState = state;
    let steps = 0;
    let node = this.next[this.head]!;

    for (;;) {
      if (remainingKnown === 0) return { verdict: 'linearizable', steps };
      if (++steps > this.stepsMax || ((steps & 0xfff) === 0 && performance.now() > this.deadline)) {
        return { verdict: 'unknown', steps };
      }
      assert(node !== this.head, 'the event list ran out while known operations remain');
      const op = node >> 1;
      if ((node & 1) === 0) {
        const operation = operations[op]!;
        const twin = this.twinBefore[op]!;
        if (twin >= 0 && (bits[twin >> 5]! & (1 << (twin & 31))) === 0) {
          node = this.next[node]!;
          continue;
        }
        const step = stepKv(this.states[state]!, operation.input);
        // An unknown-outcome operation that would not change the state here (a read, a failed
        // compare) is never worth placing: dropping it ("it never happened") is always allowed
        // and leaves the same state with fewer obligations.
        const next = this.abstract(step.next);
        const legal =
          operation.output === null
            ? next !== this.states[state]
            : outputMatches(step.expected, operation.output);
        if (legal) {
          const nextState = this.internState(next);
          bits[op >> 5]! |= 1 << (op & 31);
          const nextHash = hash ^ zobrist[op]!;
          if (explored.add(nextHash, bits, nextState)) {
            stackOp[depth] = op;
            stackState[depth] = state;
            depth++;
            hash = nextHash;
            state = nextState;
            this.lift(op);
            if (operation.output !== null) {
              remainingKnown--;
              const placedKnown = totalKnown - remainingKnown;
              if (placedKnown > bestKnown) {
                bestKnown = placedKnown;
                bestPrefix = Array.from(stackOp.subarray(0, depth));
                bestState = state;
              }
            }
            node = this.next[this.head]!;
            continue;
          }
          bits[op >> 5]! &= ~(1 << (op & 31));
        }
        node = this.next[node]!;
        continue;
      }
      // A return event of an operation not yet linearized: whatever was linearized last must
      // move later. With nothing left to undo, no linearization exists.
      if (depth === 0) {
        return {
          verdict: 'not-linearizable',
          steps,
          failure: this.describeFailure(bestPrefix, bestState),
        };
      }
      depth--;
      const undone = stackOp[depth]!;
      state = stackState[depth]!;
      hash ^= zobrist[undone]!;
      bits[undone >> 5]! &= ~(1 << (undone & 31));
      this.unlift(undone);
      if (operations[undone]!.output !== null) remainingKnown++;
      node = this.next[2 * undone]!;
    }
  }

  private describeFailure(prefixOps: readonly number[], stateId: number): LinearizationFailure {
    const { operations } = this;
    const placed = new Set(prefixOps);
    let found: Operation | undefined;
    operations.forEach((operation, k) => {
      if (placed.has(k) || operation.output === null) return;
      if (found === undefined || operation.ret < found.ret) found = operation;
    });
    const blocking = found;
    assert(blocking !== undefined, 'a failed search left no completed operation unplaced');
    // The search ran on abstract states; replaying the prefix on real values gives the value
    // it leaves (the same outputs, by construction of the abstraction).
    let state = this.initialValue;
    for (const k of prefixOps) state = stepKv(state, operations[k]!.input).next;
    assert(
      this.abstract(state) === this.states[stateId],
      'the concrete replay of the prefix disagrees with the search',
    );
    const candidates: { operation: Operation; expected: KvOutput }[] = [];
    operations.forEach((operation, k) => {
      if (!placed.has(k) && operation.call < blocking.ret) {
        candidates.push({ operation, expected: stepKv(state, operation.input).expected });
      }
    });
    return {
      prefix: prefixOps.map((k) => operations[k]!),
      stateAfterPrefix: state,
      blocking,
      candidates,
    };
  }
}

/** An operation in one line, e.g. `p3 put("x", "4" if "2") -> ok [line 17]` (p: process). */
export function describeOperation(operation: Operation): string {
  const { input, output } = operation;
  const quote = (value: string | null | undefined): string =>
    value === null || value === undefined ? 'nil' : JSON.stringify(value);
  let call: string;
  switch (input.f) {
    case 'get':
      call = `get(${quote(input.key)})`;
      break;
    case 'put': {
      const condition =
        input.prevValue !== undefined
          ? ` if ${quote(input.prevValue)}`
          : input.prevExist === false
            ? ' if absent'
            : input.prevExist === true
              ? ' if present'
              : '';
      call = `put(${quote(input.key)}, ${quote(input.value)}${condition})`;
      break;
    }
    case 'append':
      call = `append(${quote(input.key)}, ${quote(input.value)})`;
      break;
    case 'delete':
      call = `delete(${quote(input.key)}${input.prevValue === undefined ? '' : ` if ${quote(input.prevValue)}`})`;
      break;
  }
  const where = operation.line > 0 ? ` [line ${operation.line}]` : ` [op ${operation.id}]`;
  const process = /^\d+$/.test(operation.process) ? `p${operation.process}` : operation.process;
  return `${process} ${call} -> ${describeOutput(output)}${where}`;
}

/** An output in words: `ok`, `"4"`, `nil`, `failed (precondition)`, `unknown`. */
export function describeOutput(output: KvOutput | null): string {
  if (output === null) return 'unknown';
  if (output.kind === 'failed')
    return output.reason === undefined ? 'failed' : `failed (${output.reason})`;
  if (output.value === undefined) return 'ok';
  return output.value === null ? 'nil' : JSON.stringify(output.value);
}

/** A short explanation of a non-linearizable or undecided result, a few lines long. */
export function explainResult(result: CheckResult, prefixShown = 5): string {
  if (result.verdict === 'unknown') return result.gaveUp ?? 'gave up';
  const failed = result.keys.find((key) => key.failure !== undefined);
  if (failed?.failure === undefined) return 'linearizable';
  const { prefix, stateAfterPrefix, blocking, candidates } = failed.failure;
  const lines = [
    `key ${JSON.stringify(failed.key)}: the longest linearizable prefix places ${prefix.length} of ${failed.operations} operations, leaving the value ${stateAfterPrefix === null ? 'absent' : JSON.stringify(stateAfterPrefix)}`,
  ];
  const shown = prefix.slice(Math.max(0, prefix.length - prefixShown));
  if (shown.length > 0) {
    lines.push(`  ...last placed: ${shown.map(describeOperation).join('; ')}`);
  }
  lines.push(
    `  cannot place ${describeOperation(blocking)}, nor anything invoked before it returned:`,
  );
  for (const { operation, expected } of candidates.slice(0, 8)) {
    lines.push(
      `    ${describeOperation(operation)} (here it would return ${describeOutput(expected)})`,
    );
  }
  if (candidates.length > 8) lines.push(`    ...and ${candidates.length - 8} more`);
  return lines.join('\n');
}
