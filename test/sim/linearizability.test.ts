// Checks the linearizability checker: published verdicts on the shared Jepsen/Porcupine
// histories, hand-written histories with known answers, and a fast-check property (histories
// produced by running operations atomically against a sequential model are linearizable; one
// read corrupted to a value never written makes them not).
import { readFileSync, existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type HistoryEvent,
  type KvInput,
  type KvOutput,
  type Operation,
  formatHistory,
  pairEvents,
  parseHistory,
} from '../../src/sim/history.js';
import {
  checkHistory,
  checkOperations,
  explainResult,
  outputMatches,
  stepKv,
  type KvState,
} from '../../src/sim/linearizability.js';

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const historiesDir = path.resolve(projectRoot, '..', 'shared', 'testdata', 'histories');
const haveHistories = existsSync(path.join(historiesDir, 'verdicts.tsv'));

/** Builds a history from a compact script: [process, 'invoke', input] / [process, 'ok', output]… */
type Step = [string, 'invoke', KvInput] | [string, 'ok', KvOutput] | [string, 'fail' | 'info'];

function history(steps: Step[], initialValue: KvState = null) {
  const events: HistoryEvent[] = steps.map((step, k) => {
    const [process, type] = step;
    if (type === 'invoke') return { type, process, input: step[2], line: k + 1 };
    if (type === 'ok') return { type, process, output: step[2], line: k + 1 };
    return { type, process, line: k + 1 };
  });
  return { operations: pairEvents(events), initialValue };
}

function verdictOf(steps: Step[], initialValue: KvState = null) {
  const { operations } = history(steps, initialValue);
  return checkOperations(operations, initialValue).verdict;
}

const put = (key: string, value: string, extra: { prevValue?: string; prevExist?: boolean } = {}) =>
  ({ f: 'put', key, value, ...extra }) as const;
const get = (key: string) => ({ f: 'get', key }) as const;
const del = (key: string, prevValue?: string) =>
  ({ f: 'delete', key, ...(prevValue === undefined ? {} : { prevValue }) }) as const;
const ok = { kind: 'ok' } as const;
const read = (value: string | null) => ({ kind: 'ok', value }) as const;
const failed = (reason?: 'precondition' | 'notFound') =>
  (reason === undefined ? { kind: 'failed' } : { kind: 'failed', reason }) as KvOutput;

describe('published verdicts', () => {
  it.skipIf(!haveHistories)(
    `matches verdicts.tsv on every file of ${historiesDir} (skipped when that folder is absent)`,
    () => {
      const rows = readFileSync(path.join(historiesDir, 'verdicts.tsv'), 'utf8')
        .trim()
        .split('\n')
        .slice(1)
        .map((line) => line.split('\t') as [string, string]);
      const listed = new Set(rows.map(([file]) => file));
      // Every history file present is listed, so none escapes the check.
      for (const folder of ['jepsen-etcd', 'kv']) {
        for (const name of readdirSync(path.join(historiesDir, folder))) {
          expect(listed.has(`${folder}/${name}`), `${folder}/${name} in verdicts.tsv`).toBe(true);
        }
      }
      expect(rows.length).toBe(54);
      for (const [file, expected] of rows) {
        const parsed = parseHistory(readFileSync(path.join(historiesDir, file), 'utf8'));
        const result = checkHistory(parsed, { timeoutMs: 20_000 });
        expect(result.verdict, file).toBe(
          expected === 'true' ? 'linearizable' : 'not-linearizable',
        );
      }
    },
  );
});

describe('hand-written histories', () => {
  it('accepts a sequential history and rejects a stale read after a completed write', () => {
    const base: Step[] = [
      ['a', 'invoke', put('x', '1')],
      ['a', 'ok', ok],
      ['b', 'invoke', get('x')],
    ];
    expect(verdictOf([...base, ['b', 'ok', read('1')]])).toBe('linearizable');
    expect(verdictOf([...base, ['b', 'ok', read(null)]])).toBe('not-linearizable');
  });

  it('lets a read concurrent with a write see either value, but not flip back', () => {
    const concurrent = (first: string | null, second: string | null): Step[] => [
      ['w', 'invoke', put('x', '1')],
      ['r', 'invoke', get('x')],
      ['r', 'ok', read(first)],
      ['r', 'invoke', get('x')],
      ['r', 'ok', read(second)],
      ['w', 'ok', ok],
    ];
    expect(verdictOf(concurrent(null, null))).toBe('linearizable');
    expect(verdictOf(concurrent(null, '1'))).toBe('linearizable');
    expect(verdictOf(concurrent('1', '1'))).toBe('linearizable');
    expect(verdictOf(concurrent('1', null))).toBe('not-linearizable');
  });

  it('lets an unknown-outcome write take effect late or never', () => {
    const base: Step[] = [
      ['w', 'invoke', put('x', '1')],
      ['w', 'info'],
      ['r', 'invoke', get('x')],
    ];
    expect(verdictOf([...base, ['r', 'ok', read(null)]])).toBe('linearizable');
    expect(verdictOf([...base, ['r', 'ok', read('1')]])).toBe('linearizable');
    // But once seen, it stays: a later read cannot go back to absent.
    expect(
      verdictOf([
        ...base,
        ['r', 'ok', read('1')],
        ['r', 'invoke', get('x')],
        ['r', 'ok', read(null)],
      ]),
    ).toBe('not-linearizable');
  });

  it('treats an operation still open at the end as unknown', () => {
    expect(
      verdictOf([
        ['w', 'invoke', put('x', '1')],
        ['r', 'invoke', get('x')],
        ['r', 'ok', read('1')],
      ]),
    ).toBe('linearizable');
  });

  it('drops failed operations (they did not happen)', () => {
    expect(
      verdictOf([
        ['w', 'invoke', put('x', '1')],
        ['w', 'fail'],
        ['r', 'invoke', get('x')],
        ['r', 'ok', read('1')],
      ]),
    ).toBe('not-linearizable');
  });

  it('applies etcd v2 compare-and-set, create-only and delete semantics', () => {
    expect(stepKv(null, put('x', '2', { prevValue: '1' })).expected).toEqual(failed('notFound'));
    expect(stepKv('0', put('x', '2', { prevValue: '1' })).expected).toEqual(failed('precondition'));
    expect(stepKv('1', put('x', '2', { prevValue: '1' }))).toEqual({ expected: ok, next: '2' });
    expect(stepKv('1', put('x', '2', { prevExist: false })).expected).toEqual(
      failed('precondition'),
    );
    expect(stepKv(null, put('x', '2', { prevExist: false })).next).toBe('2');
    expect(stepKv(null, put('x', '2', { prevExist: true })).expected).toEqual(failed('notFound'));
    expect(stepKv(null, del('x')).expected).toEqual(failed('notFound'));
    expect(stepKv('1', del('x', '2')).expected).toEqual(failed('precondition'));
    expect(stepKv('1', del('x', '1'))).toEqual({ expected: ok, next: null });
    expect(stepKv(null, { f: 'append', key: 'x', value: 'ab' }).next).toBe('ab');

    // Two concurrent create-only puts cannot both succeed.
    const race = (second: KvOutput): Step[] => [
      ['a', 'invoke', put('x', 'a', { prevExist: false })],
      ['b', 'invoke', put('x', 'b', { prevExist: false })],
      ['a', 'ok', ok],
      ['b', 'ok', second],
    ];
    expect(verdictOf(race(failed('precondition')))).toBe('linearizable');
    expect(verdictOf(race(ok))).toBe('not-linearizable');
    // A failure must have the right reason when the history gives one.
    expect(
      verdictOf([
        ['a', 'invoke', put('x', 'a', { prevValue: 'z' })],
        ['a', 'ok', failed('precondition')],
      ]),
    ).toBe('not-linearizable');
    expect(
      verdictOf([
        ['a', 'invoke', put('x', 'a', { prevValue: 'z' })],
        ['a', 'ok', failed()],
      ]),
    ).toBe('linearizable');
  });

  it('checks keys independently and names the failing key in its explanation', () => {
    const { operations } = history([
      ['a', 'invoke', put('x', '1')],
      ['a', 'ok', ok],
      ['a', 'invoke', put('y', '1')],
      ['a', 'ok', ok],
      ['b', 'invoke', get('y')],
      ['b', 'ok', read('1')],
      ['b', 'invoke', get('x')],
      ['b', 'ok', read('2')],
    ]);
    const result = checkOperations(operations, null);
    expect(result.verdict).toBe('not-linearizable');
    expect(result.keys.map((key) => [key.key, key.verdict])).toEqual([
      ['x', 'not-linearizable'],
      ['y', 'unchecked'],
    ]);
    const failure = result.keys[0]!.failure!;
    expect(failure.prefix.map((operation) => operation.input.f)).toEqual(['put']);
    expect(failure.stateAfterPrefix).toBe('1');
    expect(failure.blocking.output).toEqual(read('2'));
    const explanation = explainResult(result);
    expect(explanation).toContain('key "x"');
    expect(explanation).toContain('cannot place b get("x") -> "2"');
    expect(explanation).toContain('here it would return "1"');
  });

  it('treats values nobody reads as one state, without conflating them with read values', () => {
    const base: Step[] = [
      ['a', 'invoke', put('x', 'a')],
      ['a', 'ok', ok],
      ['u', 'invoke', put('x', 'u1')],
      ['a', 'invoke', put('x', 'b', { prevValue: 'a' })],
      ['a', 'ok', failed('precondition')],
      ['a', 'invoke', get('x')],
    ];
    // The failed compare proves u1 took effect first; reading "a" afterwards is impossible.
    expect(verdictOf([...base, ['a', 'ok', read('a')]])).toBe('not-linearizable');
    expect(verdictOf([...base, ['a', 'ok', read(null)]])).toBe('not-linearizable');
    expect(verdictOf([...base, ['a', 'ok', read('u1')]])).toBe('linearizable');
  });

  it('decides histories full of interchangeable unknown writes quickly', () => {
    // 40 writes that timed out, all concurrent with later reads: without the symmetry
    // reduction the search explores subsets of them; with it, a few thousand steps suffice.
    const steps: Step[] = [];
    for (let k = 0; k < 40; k++) steps.push([`w${k}`, 'invoke', put('x', `v${k}`)]);
    for (let k = 0; k < 40; k++) steps.push([`w${k}`, 'info']);
    steps.push(['r', 'invoke', get('x')], ['r', 'ok', read('v39')]);
    steps.push(
      ['r', 'invoke', put('x', 'c', { prevValue: 'v7' })],
      ['r', 'ok', failed('precondition')],
    );
    steps.push(['r', 'invoke', get('x')], ['r', 'ok', read('v7')]);
    steps.push(['r', 'invoke', get('x')], ['r', 'ok', read('v3')]);
    const { operations } = history(steps);
    const result = checkOperations(operations, null, { stepsMax: 20_000 });
    expect(result.verdict).toBe('linearizable');
    steps.push(['r', 'invoke', get('x')], ['r', 'ok', read('v7')]);
    steps.push(['r', 'invoke', get('x')], ['r', 'ok', read('v3')]);
    steps.push(['r', 'invoke', get('x')], ['r', 'ok', read('v7')]);
    // v7 and v3 were each written once: seeing v7 a third time after v3 is impossible.
    expect(checkOperations(history(steps).operations, null, { stepsMax: 200_000 }).verdict).toBe(
      'not-linearizable',
    );
  });

  it('gives up with "unknown" under a step bound instead of claiming a verdict', () => {
    // Many concurrent unknown writes of distinct values make the search wide.
    const steps: Step[] = [];
    for (let k = 0; k < 14; k++) steps.push([`w${k}`, 'invoke', put('x', String(k))]);
    steps.push(['r', 'invoke', get('x')], ['r', 'ok', read('13')]);
    steps.push(['r', 'invoke', get('x')], ['r', 'ok', read('0')]);
    const { operations } = history(steps);
    const bounded = checkOperations(operations, null, { stepsMax: 5 });
    expect(bounded.verdict).toBe('unknown');
    expect(bounded.gaveUp).toMatch(/after \d+ search steps/);
    expect(checkOperations(operations, null).verdict).toBe('linearizable');
    expect(() => checkOperations(operations, null, { stepsMax: 0 })).toThrow(RangeError);
  });
});

describe('parsers', () => {
  it('parses a Jepsen etcd log, keeping a failed cas as a failed compare', () => {
    const text = [
      'INFO  jepsen.util - 2\t:invoke\t:write\t4',
      'INFO  jepsen.util - 2\t:ok\t:write\t4',
      'some other logger line',
      'INFO  jepsen.util - 1\t:invoke\t:cas\t[1 0]',
      'INFO  jepsen.util - 1\t:fail\t:cas\t[1 0]',
      'INFO  jepsen.util - 3\t:invoke\t:read\tnil',
      'INFO  jepsen.util - 3\t:ok\t:read\t4',
      'INFO  jepsen.util - 0\t:invoke\t:write\t1',
      'INFO  jepsen.util - 0\t:info\t:write\t:timed-out',
    ].join('\n');
    const parsed = parseHistory(text);
    expect(parsed.format).toBe('jepsen-etcd');
    expect(parsed.operations.map((operation) => [operation.input, operation.output])).toEqual([
      [put('register', '4'), ok],
      [put('register', '0', { prevValue: '1' }), failed()],
      [get('register'), read('4')],
      [put('register', '1'), null],
    ]);
    expect(parsed.operations[0]!.line).toBe(1);
  });

  it('parses kv EDN lines with every key starting as the empty string', () => {
    const parsed = parseHistory(
      [
        '{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}',
        '{:process 0, :type :ok, :f :append, :key "0", :value "x 0 0 y"}',
        '{:process 1, :type :invoke, :f :get, :key "0", :value nil}',
        '{:process 1, :type :ok, :f :get, :key "0", :value "x 0 0 y"}',
      ].join('\n'),
    );
    expect(parsed.format).toBe('kv-edn');
    expect(parsed.initialValue).toBe('');
    expect(checkHistory(parsed).verdict).toBe('linearizable');
  });

  it('round-trips the simulator JSON lines format', () => {
    const events: HistoryEvent[] = [
      { type: 'invoke', process: 'c1', input: put('k', 'v', { prevExist: false }), line: 0 },
      { type: 'ok', process: 'c1', output: ok, line: 0 },
      { type: 'invoke', process: 'c2', input: del('k', 'v'), line: 0 },
      { type: 'invoke', process: 'c3', input: get('k'), line: 0 },
      { type: 'ok', process: 'c3', output: read(null), line: 0 },
      { type: 'info', process: 'c2', line: 0 },
      { type: 'invoke', process: 'c1', input: put('k', 'w', { prevValue: 'v' }), line: 0 },
      { type: 'ok', process: 'c1', output: failed('notFound'), line: 0 },
    ];
    const text = formatHistory(events.map((event, t) => ({ event, t })));
    const parsed = parseHistory(text);
    expect(parsed.format).toBe('phantomdb-jsonl');
    expect(parsed.operations).toEqual(
      pairEvents(events).map((operation) => ({ ...operation, line: expect.any(Number) as number })),
    );
    expect(checkHistory(parsed).verdict).toBe('linearizable');
  });

  it('reports malformed input with its line number', () => {
    expect(() => parseHistory('')).toThrow(/Cannot detect the history format/);
    expect(() => parseHistory('hello\n')).toThrow(/Cannot detect/);
    expect(() => parseHistory('INFO  jepsen.util - 1\t:invoke\t:frob\t1')).toThrow(
      /line 1: unknown operation ":frob"/,
    );
    expect(() =>
      parseHistory(
        'INFO  jepsen.util - 1\t:invoke\t:write\t1\nINFO  jepsen.util - 1\t:invoke\t:write\t2',
      ),
    ).toThrow(/line 2: process 1 invokes while its operation from line 1 is still open/);
    expect(() => parseHistory('{:process 0, :type :invoke, :f :get, :key "0"')).toThrow(
      /line 1: unterminated map/,
    );
    expect(() => parseHistory('{"format":"phantomdb-history","version":1}\n{"type":"ok"}')).toThrow(
      /line 2: "process" must be a non-empty string/,
    );
    expect(() => parseHistory('{"format":"other"}')).toThrow(/line 1: expected the header/);
    expect(() =>
      parseHistory(
        '{"format":"phantomdb-history","version":1}\n{"type":"invoke","process":"a","f":"get","key":"k"}\n{"type":"ok","process":"a","result":"ok"}',
      ),
    ).toThrow(/line 3: the get from line 2 completes without a value/);
  });
});

// -------------------------------------------------------------------------------------------
// Property: histories made by a sequential model are linearizable.

interface Action {
  /** Which client acts. */
  readonly client: number;
  /** What the client does if idle: an operation to invoke. */
  readonly op: KvInput;
  /** If busy: 0 = take effect now (if not yet), 1 = complete, 2 = complete as unknown. */
  readonly move: number;
}

const keys = ['a', 'b'];
const values = ['1', '2', '3'];
const opArbitrary: fc.Arbitrary<KvInput> = fc.oneof(
  fc.record({ f: fc.constant('get' as const), key: fc.constantFrom(...keys) }),
  fc.record({
    f: fc.constant('put' as const),
    key: fc.constantFrom(...keys),
    value: fc.constantFrom(...values),
  }),
  fc.record({
    f: fc.constant('put' as const),
    key: fc.constantFrom(...keys),
    value: fc.constantFrom(...values),
    prevValue: fc.constantFrom(...values),
  }),
  fc.record({
    f: fc.constant('put' as const),
    key: fc.constantFrom(...keys),
    value: fc.constantFrom(...values),
    prevExist: fc.boolean(),
  }),
  fc.record({ f: fc.constant('delete' as const), key: fc.constantFrom(...keys) }),
);
const actionsArbitrary = fc.array(
  fc.record({ client: fc.nat(3), op: opArbitrary, move: fc.nat(2) }),
  { minLength: 1, maxLength: 60 },
);

/**
 * Plays the actions: each client invokes an operation, makes it take effect atomically on the
 * model at some point (or never, if it ends unknown), then completes it.
 */
function simulate(actions: readonly Action[]): HistoryEvent[] {
  const state = new Map<string, string | null>();
  const busy = new Map<number, { op: KvInput; output: KvOutput | null }>();
  const events: HistoryEvent[] = [];
  for (const { client, op, move } of actions) {
    const process = `c${client}`;
    const current = busy.get(client);
    if (current === undefined) {
      busy.set(client, { op, output: null });
      events.push({ type: 'invoke', process, input: op, line: events.length + 1 });
      continue;
    }
    if (current.output === null && move !== 2) {
      const step = stepKv(state.get(current.op.key) ?? null, current.op);
      state.set(current.op.key, step.next);
      current.output = step.expected;
      if (move === 0) continue;
    }
    busy.delete(client);
    events.push(
      current.output === null || move === 2
        ? { type: 'info', process, line: events.length + 1 }
        : { type: 'ok', process, output: current.output, line: events.length + 1 },
    );
  }
  return events;
}

/** Brute force for small histories: every order consistent with real time, no pruning. */
function bruteForceLinearizable(operations: readonly Operation[], initial: KvState): boolean {
  const keyLinearizable = (list: readonly Operation[]): boolean => {
    const used = new Array<boolean>(list.length).fill(false);
    const knownTotal = list.filter((operation) => operation.output !== null).length;
    const search = (state: KvState, placedKnown: number): boolean => {
      if (placedKnown === knownTotal) return true;
      let earliestReturn = Infinity;
      list.forEach((operation, k) => {
        if (!used[k]) earliestReturn = Math.min(earliestReturn, operation.ret);
      });
      for (let k = 0; k < list.length; k++) {
        const operation = list[k]!;
        if (used[k] || operation.call > earliestReturn) continue;
        const step = stepKv(state, operation.input);
        if (operation.output !== null && !outputMatches(step.expected, operation.output)) continue;
        used[k] = true;
        if (search(step.next, placedKnown + (operation.output === null ? 0 : 1))) return true;
        used[k] = false;
      }
      return false;
    };
    return search(initial, 0);
  };
  const byKey = new Map<string, Operation[]>();
  for (const operation of operations) {
    byKey.set(operation.input.key, [...(byKey.get(operation.input.key) ?? []), operation]);
  }
  return [...byKey.values()].every(keyLinearizable);
}

describe('property', () => {
  it('agrees with a brute-force search on small random histories', () => {
    const verdicts = [0, 0];
    const outputArbitrary: fc.Arbitrary<KvOutput> = fc.oneof(
      fc.constantFrom<KvOutput>(ok, failed('precondition'), failed('notFound')),
      fc.constantFrom(null, '1', '2', '3').map((value) => read(value)),
    );
    fc.assert(
      fc.property(
        fc.array(fc.record({ client: fc.nat(3), op: opArbitrary, move: fc.nat(2) }), {
          minLength: 1,
          maxLength: 16,
        }),
        fc.array(fc.tuple(fc.nat(), outputArbitrary), { maxLength: 3 }),
        (actions, mutations) => {
          const events = simulate(actions);
          // Mutate a few completions so that both verdicts occur.
          const completions = events.flatMap((event, k) => (event.type === 'ok' ? [k] : []));
          for (const [at, output] of mutations) {
            if (completions.length === 0) break;
            const k = completions[at % completions.length]!;
            events[k] = { ...(events[k] as Extract<HistoryEvent, { type: 'ok' }>), output };
          }
          let operations: Operation[];
          try {
            operations = pairEvents(events);
          } catch {
            return; // a mutation gave a get an output without a value
          }
          const expected = bruteForceLinearizable(operations, null);
          verdicts[expected ? 0 : 1]! += 1;
          const actual = checkOperations(operations, null).verdict;
          expect(actual).toBe(expected ? 'linearizable' : 'not-linearizable');
        },
      ),
      { numRuns: 1000 },
    );
    // Both answers come up often enough for the comparison to mean something.
    expect(Math.min(...verdicts)).toBeGreaterThan(100);
  });

  it('histories generated from the sequential model are linearizable', () => {
    fc.assert(
      fc.property(actionsArbitrary, (actions) => {
        const operations = pairEvents(simulate(actions));
        expect(checkOperations(operations, null).verdict).toBe('linearizable');
      }),
      { numRuns: 300 },
    );
  });

  it('corrupting one read to a value never written makes them not linearizable', () => {
    fc.assert(
      fc.property(actionsArbitrary, fc.nat(), (actions, pick) => {
        const events = simulate(actions);
        const reads = events.flatMap((event, k) =>
          event.type === 'ok' && event.output.kind === 'ok' && event.output.value !== undefined
            ? [k]
            : [],
        );
        fc.pre(reads.length > 0);
        const target = reads[pick % reads.length]!;
        const corrupted = events.map((event, k) =>
          k === target && event.type === 'ok'
            ? { ...event, output: { kind: 'ok' as const, value: 'never-written' } }
            : event,
        );
        const result = checkOperations(pairEvents(corrupted), null);
        expect(result.verdict).toBe('not-linearizable');
        expect(explainResult(result)).toMatch(/cannot place/);
      }),
      { numRuns: 300 },
    );
  });
});
