// Checks the key-value state machine: etcd v2 put/delete/compare-and-set semantics by example,
// command and snapshot codecs (round trips, validation, typed errors on corrupt bytes), and
// fast-check properties (it agrees with a Map model; snapshot/restore is exact; corrupt input
// never crashes and never yields a silently different state).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { resolveKvLimits } from '../../src/config.js';
import { BadRequestError, StorageError } from '../../src/errors.js';
import {
  decodeCommand,
  decodeSnapshot,
  encodeDelete,
  encodePut,
  type KvCommand,
} from '../../src/kv/codec.js';
import { KvStateMachine, type KvResult } from '../../src/kv/state-machine.js';

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (value: Uint8Array | undefined | null) =>
  value === undefined || value === null ? value : new TextDecoder().decode(value);
const limits = resolveKvLimits();

/** Applies commands at consecutive indexes and returns the results. */
function applyAll(kv: KvStateMachine, payloads: Uint8Array[]): KvResult[] {
  return payloads.map((payload) => kv.apply(kv.appliedIndex + 1, payload));
}

describe('KvStateMachine semantics', () => {
  it('puts, gets and deletes, returning the previous value', () => {
    const kv = new KvStateMachine();
    const [first, second, removed, missing] = applyAll(kv, [
      kv.encodePut('x', bytes('1')),
      kv.encodePut('x', bytes('2')),
      kv.encodeDelete('x'),
      kv.encodeDelete('x'),
    ]);
    expect(first).toEqual({ kind: 'ok', index: 1, previous: null });
    expect(second!.kind === 'ok' && text(second!.previous)).toBe('1');
    expect(removed!.kind === 'ok' && text(removed!.previous)).toBe('2');
    expect(missing).toEqual({ kind: 'notFound', index: 4 });
    expect(kv.get('x')).toBeUndefined();
    expect(kv.appliedIndex).toBe(4);
  });

  it('implements compare-and-set with prevValue (404 when absent, 412 when different)', () => {
    const kv = new KvStateMachine();
    const [absent, set, mismatch, swapped] = applyAll(kv, [
      kv.encodePut('x', bytes('b'), { prevValue: bytes('a') }),
      kv.encodePut('x', bytes('a')),
      kv.encodePut('x', bytes('c'), { prevValue: bytes('z') }),
      kv.encodePut('x', bytes('c'), { prevValue: bytes('a') }),
    ]);
    expect(absent).toEqual({ kind: 'notFound', index: 1 });
    expect(set!.kind).toBe('ok');
    expect(mismatch!.kind).toBe('preconditionFailed');
    expect(mismatch!.kind === 'preconditionFailed' && text(mismatch!.current)).toBe('a');
    expect(swapped!.kind).toBe('ok');
    expect(text(kv.get('x'))).toBe('c');
  });

  it('implements prevExist=false (create only) and prevExist=true (update only)', () => {
    const kv = new KvStateMachine();
    const results = applyAll(kv, [
      kv.encodePut('x', bytes('1'), { prevExist: true }),
      kv.encodePut('x', bytes('1'), { prevExist: false }),
      kv.encodePut('x', bytes('2'), { prevExist: false }),
      kv.encodePut('x', bytes('3'), { prevExist: true }),
    ]);
    expect(results.map((result) => result.kind)).toEqual([
      'notFound',
      'ok',
      'preconditionFailed',
      'ok',
    ]);
    expect(text(kv.get('x'))).toBe('3');
  });

  it('deletes with prevValue only when it matches', () => {
    const kv = new KvStateMachine();
    const results = applyAll(kv, [
      kv.encodeDelete('x', { prevValue: bytes('1') }),
      kv.encodePut('x', bytes('1')),
      kv.encodeDelete('x', { prevValue: bytes('2') }),
      kv.encodeDelete('x', { prevValue: bytes('1') }),
    ]);
    expect(results.map((result) => result.kind)).toEqual([
      'notFound',
      'ok',
      'preconditionFailed',
      'ok',
    ]);
  });

  it('applies strictly in order, skips non-command entries, and consumes corrupt ones', () => {
    const kv = new KvStateMachine();
    expect(() => kv.apply(2, kv.encodePut('x', bytes('1')))).toThrow(
      new RangeError('Cannot apply entry: index is 2, expected 1'),
    );
    kv.skip(1);
    expect(() => kv.skip(1)).toThrow(/Cannot skip entry: index is 1, expected 2/);
    const result = kv.apply(2, new Uint8Array([9, 9, 9]));
    expect(result.kind).toBe('invalid');
    expect(result.kind === 'invalid' && result.error).toBeInstanceOf(BadRequestError);
    expect(kv.appliedIndex).toBe(2);
    expect(kv.size).toBe(0);
  });

  it('copies values out of the payload buffer', () => {
    const kv = new KvStateMachine();
    const payload = kv.encodePut('x', bytes('abc'));
    kv.apply(1, payload);
    payload.fill(0);
    expect(text(kv.get('x'))).toBe('abc');
  });
});

describe('command encoding', () => {
  it('rejects bad keys and values with typed errors', () => {
    const small = resolveKvLimits({ keyBytesMax: 4, valueBytesMax: 3 });
    expect(() => encodePut('', bytes('v'), {}, small)).toThrow(BadRequestError);
    expect(() => encodePut('', bytes('v'), {}, small)).toThrow(/the key is empty/);
    expect(() => encodePut('abcde', bytes('v'), {}, small)).toThrow(
      /Invalid key: it is 5 bytes, at most 4 allowed/,
    );
    // Multi-byte UTF-8 counts bytes, not characters.
    expect(() => encodePut('ééé', bytes('v'), {}, small)).toThrow(/it is 6 bytes/);
    expect(() => encodePut('\uD800', bytes('v'), {}, small)).toThrow(/lone surrogate/);
    try {
      encodePut('k', bytes('long'), {}, small);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(BadRequestError);
      expect((error as BadRequestError).code).toBe('PAYLOAD_TOO_LARGE');
    }
    expect(() => encodePut(42 as unknown as string, bytes('v'), {}, small)).toThrow(TypeError);
    expect(() => encodePut('k', 'v' as unknown as Uint8Array, {}, small)).toThrow(TypeError);
    expect(() =>
      encodePut('k', bytes('v'), { prevValue: bytes('a'), prevExist: false }, small),
    ).toThrow(/prevValue cannot be combined with prevExist=false/);
    expect(() => resolveKvLimits({ keyBytesMax: 0 })).toThrow(RangeError);
  });

  it('rejects malformed payloads with a message naming the problem', () => {
    const good = encodePut('key', bytes('value'), { prevValue: bytes('p') }, limits);
    expect(() => decodeCommand(new Uint8Array())).toThrow(/truncated: version needs 1 bytes/);
    expect(() => decodeCommand(Uint8Array.of(2, ...good.subarray(1)))).toThrow(/version is 2/);
    expect(() => decodeCommand(Uint8Array.of(1, 7, ...good.subarray(2)))).toThrow(/unknown op 7/);
    expect(() => decodeCommand(Uint8Array.of(1, 1, 0x40, ...good.subarray(3)))).toThrow(
      /unknown flags 0x40/,
    );
    expect(() => decodeCommand(good.subarray(0, good.length - 1))).toThrow(/truncated/);
    expect(() => decodeCommand(Uint8Array.of(...good, 0))).toThrow(/1 trailing bytes/);
    const badUtf8 = encodeDelete('ab', {}, limits);
    badUtf8[5] = 0xff;
    expect(() => decodeCommand(badUtf8)).toThrow(/key at offset 5 is not valid UTF-8/);
  });
});

// -------------------------------------------------------------------------------------------
// Properties

const keyArbitrary = fc.constantFrom('a', 'b', 'c', 'ключ', '🔑');
const valueArbitrary = fc.constantFrom('', '1', '2', 'three').map(bytes);
const commandArbitrary: fc.Arbitrary<KvCommand> = fc.oneof(
  fc.record(
    {
      op: fc.constant('put' as const),
      key: keyArbitrary,
      value: valueArbitrary,
      prevValue: valueArbitrary,
      prevExist: fc.constant(true),
    },
    { requiredKeys: ['op', 'key', 'value'] },
  ),
  fc.record({
    op: fc.constant('put' as const),
    key: keyArbitrary,
    value: valueArbitrary,
    prevExist: fc.constant(false),
  }),
  fc.record(
    { op: fc.constant('delete' as const), key: keyArbitrary, prevValue: valueArbitrary },
    { requiredKeys: ['op', 'key'] },
  ),
);

function encode(command: KvCommand): Uint8Array {
  return command.op === 'put'
    ? encodePut(command.key, command.value, command, limits)
    : encodeDelete(command.key, command, limits);
}

/** The reference model: a Map of strings and etcd v2 rules written out plainly. */
function modelApply(model: Map<string, string>, command: KvCommand): string {
  const current = model.get(command.key);
  const prevValue = command.prevValue === undefined ? undefined : text(command.prevValue);
  if (prevValue !== undefined) {
    if (current === undefined) return 'notFound';
    if (current !== prevValue) return 'preconditionFailed';
  }
  if (command.op === 'delete') {
    if (current === undefined) return 'notFound';
    model.delete(command.key);
    return 'ok';
  }
  if (command.prevExist === false && current !== undefined) return 'preconditionFailed';
  if (command.prevExist === true && current === undefined) return 'notFound';
  model.set(command.key, text(command.value)!);
  return 'ok';
}

describe('properties', () => {
  it('commands round-trip through the encoding', () => {
    fc.assert(
      fc.property(commandArbitrary, (command) => {
        expect(decodeCommand(encode(command))).toEqual(command);
      }),
    );
  });

  it('agrees with a Map model, and snapshot/restore reproduces the state exactly', () => {
    fc.assert(
      fc.property(fc.array(commandArbitrary, { maxLength: 60 }), (commands) => {
        const kv = new KvStateMachine();
        const model = new Map<string, string>();
        for (const command of commands) {
          expect(kv.apply(kv.appliedIndex + 1, encode(command)).kind).toBe(
            modelApply(model, command),
          );
        }
        expect(kv.size).toBe(model.size);
        for (const [key, value] of model) expect(text(kv.get(key))).toBe(value);
        const snapshot = kv.snapshot();
        const copy = new KvStateMachine();
        copy.restore(snapshot);
        expect(copy.appliedIndex).toBe(commands.length);
        expect(copy.snapshot()).toEqual(snapshot);
        for (const [key, value] of model) expect(text(copy.get(key))).toBe(value);
      }),
    );
  });

  it('a corrupted snapshot is a typed error and leaves the state untouched', () => {
    fc.assert(
      fc.property(
        fc.array(commandArbitrary, { minLength: 1, maxLength: 20 }),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        fc.boolean(),
        (commands, position, flip, truncate) => {
          const source = new KvStateMachine();
          for (const command of commands) source.apply(source.appliedIndex + 1, encode(command));
          const snapshot = source.snapshot();
          const corrupted = truncate
            ? snapshot.slice(0, position % snapshot.length)
            : snapshot.slice();
          if (!truncate) corrupted[position % corrupted.length]! ^= flip;
          const target = new KvStateMachine();
          target.apply(1, target.encodePut('keep', bytes('me')));
          const before = target.snapshot();
          expect(() => target.restore(corrupted)).toThrow(StorageError);
          expect(target.snapshot()).toEqual(before);
        },
      ),
    );
  });

  it('arbitrary bytes never crash decoding or applying', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (garbage) => {
        const kv = new KvStateMachine();
        const result = kv.apply(1, garbage);
        expect(['ok', 'notFound', 'preconditionFailed', 'invalid']).toContain(result.kind);
        expect(() => {
          try {
            decodeSnapshot(garbage);
          } catch (error) {
            if (!(error instanceof StorageError)) throw error;
          }
        }).not.toThrow();
      }),
      { numRuns: 500 },
    );
  });
});

describe('the changelog of local writes', () => {
  // Over 1,024 superseded entries make the state machine compact its changelog; these
  // histories make it compact several times, with restored copies in between. Cold keys,
  // written once among the first writes, stay in the changelog through every compaction.
  it('lists the latest local write of each key in index order, across compactions and restores', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            { weight: 1, arbitrary: fc.constant(-1) },
            { weight: 60, arbitrary: fc.nat(39) },
          ),
          {
            minLength: 2_000,
            maxLength: 4_000,
          },
        ),
        fc.nat(4_000),
        (writes, restoreAt) => {
          let kv = new KvStateMachine({ region: 'us' });
          const latest = new Map<string, number>();
          let cold = 0;
          writes.forEach((k, step) => {
            const key = k < 0 ? `cold${cold++}` : `hot${k}`;
            const result = kv.apply(kv.appliedIndex + 1, kv.encodePut(key, new Uint8Array([step])));
            expect(result.kind).toBe('ok');
            latest.set(key, kv.appliedIndex);
            if (step === restoreAt) {
              const copy = new KvStateMachine({ region: 'us' });
              copy.restore(kv.snapshot());
              kv = copy;
            }
          });
          const expected = [...latest].sort((a, b) => a[1] - b[1]);
          for (const after of [0, Math.floor(writes.length / 2), writes.length - 5]) {
            const listed = kv.localChangesSince(after, 10_000, 1 << 30).items;
            const due = expected.filter(([, index]) => index > after);
            expect(listed.map((item) => [item.key, item.index])).toEqual(due);
            expect(kv.pendingLocalWrites(after).count).toBe(due.length);
          }
        },
      ),
      { numRuns: 20 },
    );
  });
});
