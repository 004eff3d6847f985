// A snapshot capture is encoded over several turns of the event loop while commands go on
// being applied. These properties check that what it encodes is the state at the capture, to
// the byte, whatever is applied between its turns: writes and deletes of captured keys and of
// new ones, merges of another region's writes, and a restore that replaces the whole state.
import { setImmediate as nextTurn } from 'node:timers/promises';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { KvSnapshotCapture, sortInTurns } from '../../src/kv/snapshot-capture.js';
import { KvStateMachine } from '../../src/kv/state-machine.js';
import { encodeStampedCommand } from '../../src/kv/versioned-codec.js';
import { ship } from './helpers.js';

/** Enough keys for the encoding to take three turns (it writes 512 keys a turn). */
const capturedKeys = 1_200;
const keyOf = (k: number): string => `key-${String(k).padStart(5, '0')}`;

type Step =
  { op: 'put' | 'delete' | 'remotePut'; key: number; wallMs: number } | { op: 'ship' | 'restore' };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      op: fc.constantFrom('put' as const, 'delete' as const, 'remotePut' as const),
      // Some keys past the captured ones: keys created after the capture.
      key: fc.nat(capturedKeys + 50),
      wallMs: fc.integer({ min: 1, max: 1_000 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constantFrom('ship' as const, 'restore' as const) }) },
);

function write(kv: KvStateMachine, key: string, value: Uint8Array | null, wallMs: number): void {
  const command = value === null ? kv.encodeDelete(key) : kv.encodePut(key, value);
  const stamp = { wallMs, logical: 0, node: kv.region };
  kv.apply(kv.appliedIndex + 1, encodeStampedCommand(stamp, command));
}

function run(us: KvStateMachine, eu: KvStateMachine, s: Step, counter: number): KvStateMachine {
  const value = new Uint8Array([counter % 256, 7, 7]);
  switch (s.op) {
    case 'put':
      write(us, keyOf(s.key), value, s.wallMs);
      return us;
    case 'delete':
      write(us, keyOf(s.key), null, s.wallMs);
      return us;
    case 'remotePut':
      write(eu, keyOf(s.key), value, s.wallMs);
      return us;
    case 'ship':
      ship(eu, us);
      return us;
    case 'restore':
      // Another state in new records: the capture must go on reading the old ones, and keep
      // nothing of the new ones.
      us.restore(otherState().snapshot());
      return us;
  }
}

/** A state of region us whose first keys hold other values than {@link startingState}'s. */
function otherState(): KvStateMachine {
  const other = new KvStateMachine({ region: 'us' });
  for (let k = 0; k < 40; k++) write(other, keyOf(k), new Uint8Array([255, k]), 2_000);
  return other;
}

/**
 * A state of `capturedKeys` keys, some merged with writes of another region, first written in
 * a shuffled order (a snapshot sorts them).
 */
function startingState(): { us: KvStateMachine; eu: KvStateMachine } {
  const us = new KvStateMachine({ region: 'us' });
  const eu = new KvStateMachine({ region: 'eu' });
  for (let j = 0; j < capturedKeys; j++) {
    const k = (j * 7_919) % capturedKeys;
    write(us, keyOf(k), new Uint8Array(20).fill(k % 256), 1 + (k % 7));
    if (k % 5 === 0) write(eu, keyOf(k), new Uint8Array([k % 256]), 1 + (k % 11));
  }
  ship(eu, us);
  return { us, eu };
}

describe('sortInTurns', () => {
  it('sorts as sort() does, over runs of 512 keys merged in pairs', async () => {
    await fc.assert(
      fc.asyncProperty(
        // Up to 5 runs and a short one; few distinct characters, so keys repeat.
        fc.array(fc.string({ unit: fc.constantFrom('a', 'b', 'é', '😀'), maxLength: 4 }), {
          maxLength: 2_600,
          size: 'max',
        }),
        async (keys) => {
          const expected = [...keys].sort();
          expect(await sortInTurns(keys)).toEqual(expected);
        },
      ),
      { numRuns: 60 },
    );
  });
});

/** How `work` has settled by the next turn of the event loop: the error's name, or a word. */
async function outcomeByNextTurn(work: Promise<unknown>): Promise<string> {
  return Promise.race([
    work.then(
      () => 'done',
      (error: Error) => error.name,
    ),
    nextTurn().then(() => 'still running'),
  ]);
}

describe('sortInTurns with a signal', () => {
  it('rejects before its next turn once the signal aborts while it merges', async () => {
    // 5,000 keys: 10 runs (a turn after each of the first 9), then 20,000 keys moved while
    // merging (a turn after 8,192 and 16,384 of them).
    for (const turnsBeforeAbort of [9, 10]) {
      const keys = Array.from({ length: 5_000 }, (_, k) => keyOf((k * 7_919) % 5_000));
      const stopping = new AbortController();
      const sorting = sortInTurns(keys, stopping.signal);
      for (let turn = 0; turn < turnsBeforeAbort; turn++) await nextTurn();
      stopping.abort();
      expect(await outcomeByNextTurn(sorting)).toBe('AbortError');
    }
  });
});

describe('KvStateMachine.captureSnapshot', () => {
  it('encodes the state at the capture, whatever is applied between its turns', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(step, { maxLength: 10 }),
        fc.array(fc.array(step, { maxLength: 8 }), { minLength: 1, maxLength: 6 }),
        async (beforeEncoding, perTurn) => {
          const { us, eu } = startingState();
          const expected = us.snapshot();
          const capture = us.captureSnapshot();
          let counter = 0;
          // Applied after the capture, before its first key is written.
          for (const s of beforeEncoding) run(us, eu, s, ++counter);
          const encoding = capture.encode();
          // Then a batch of steps in each turn between the encoder's turns.
          for (const steps of perTurn) {
            await nextTurn();
            for (const s of steps) run(us, eu, s, ++counter);
          }
          expect(Buffer.from(await encoding).equals(Buffer.from(expected))).toBe(true);
          // Detached: a later capture encodes the state as it is then.
          expect(await us.captureSnapshot().encode()).toEqual(us.snapshot());
        },
      ),
      { numRuns: 25 },
    );
  });

  it('restores to the captured state after more writes', async () => {
    const { us } = startingState();
    const capture = us.captureSnapshot();
    const before = us.get(keyOf(3));
    write(us, keyOf(3), new Uint8Array([1, 2, 3]), 5_000);
    write(us, keyOf(capturedKeys + 1), new Uint8Array([4]), 5_000);
    const restored = new KvStateMachine({ region: 'us' });
    restored.restore(await capture.encode());
    expect(restored.get(keyOf(3))).toEqual(before);
    expect(restored.get(keyOf(capturedKeys + 1))).toBeUndefined();
    expect(restored.appliedIndex).toBe(us.appliedIndex - 2);
  });

  it('is encoded once; once encoded or released it keeps nothing and cannot be encoded', async () => {
    const { us } = startingState();
    const keep = vi.spyOn(KvSnapshotCapture.prototype, 'keep');
    try {
      const encoded = us.captureSnapshot();
      const encoding = encoded.encode();
      await expect(encoded.encode()).rejects.toThrow(/twice/);
      await encoding;
      await expect(encoded.encode()).rejects.toThrow(/encoded or released/);
      const released = us.captureSnapshot();
      released.release();
      await expect(released.encode()).rejects.toThrow(/encoded or released/);
      write(us, keyOf(1), new Uint8Array([9]), 9_000);
      expect(keep).not.toHaveBeenCalled();
      expect(await us.captureSnapshot().encode()).toEqual(us.snapshot());
    } finally {
      keep.mockRestore();
    }
  });

  it('stops at its next turn once its signal aborts, sorting or writing, and keeps nothing more', async () => {
    // The encoding of `capturedKeys` keys waits twice while it sorts and twice while it writes.
    for (const turnsBeforeAbort of [0, 1, 2, 3]) {
      const { us } = startingState();
      const keep = vi.spyOn(KvSnapshotCapture.prototype, 'keep');
      try {
        const stopping = new AbortController();
        const capture = us.captureSnapshot();
        const encoding = capture.encode(stopping.signal);
        for (let turn = 0; turn < turnsBeforeAbort; turn++) await nextTurn();
        stopping.abort();
        expect(await outcomeByNextTurn(encoding)).toBe('AbortError');
        write(us, keyOf(2), new Uint8Array([9]), 9_000);
        expect(keep).not.toHaveBeenCalled();
        await expect(capture.encode()).rejects.toThrow(/encoded or released/);
      } finally {
        keep.mockRestore();
      }
    }
  });

  it('ignores release() while it is encoded', async () => {
    const { us } = startingState();
    const expected = us.snapshot();
    const capture = us.captureSnapshot();
    const encoding = capture.encode();
    capture.release();
    write(us, keyOf(2), new Uint8Array([8]), 9_000);
    expect(Buffer.from(await encoding).equals(Buffer.from(expected))).toBe(true);
  });
});
