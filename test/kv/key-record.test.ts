// The state machine keeps a key that holds one write of its own region in a compact form
// (src/kv/key-record.ts) and builds the Version when asked. These properties check that the
// form cannot be seen: over random mixes of local writes, deletes, batches from another
// region and snapshot restores, every local write gives exactly the version the dotted
// version vector rules give (one sibling, the next dot, the context joined with it), reads
// agree with versions, and a restored copy holds the same versions, changelog and bytes. A
// fixed history pins the snapshot bytes to those of the encoding from before key records.
import { createHash } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConflictResolutionStrategy } from '../../src/conflict/conflict-resolver.js';
import { withDot, type Version } from '../../src/conflict/dvv.js';
import { compareHlc, hlcLogicalMax, type HlcTimestamp } from '../../src/conflict/hlc.js';
import { KvStateMachine } from '../../src/kv/state-machine.js';
import {
  decodeVersionedSnapshot,
  encodeStampedCommand,
  type RemoteBatch,
} from '../../src/kv/versioned-codec.js';
import { ship } from './helpers.js';

const keys = ['a', 'b', 'c'];
const regions = ['eu', 'us'] as const;

type Step =
  | { op: 'put' | 'delete'; region: 0 | 1; key: string; wallMs: number }
  | { op: 'ship'; from: 0 | 1; strategy: ConflictResolutionStrategy }
  | { op: 'restore'; region: 0 | 1 };

const region01 = fc.constantFrom(0 as const, 1 as const);
const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    op: fc.constantFrom('put' as const, 'delete' as const),
    region: region01,
    key: fc.constantFrom(...keys),
    wallMs: fc.integer({ min: 1, max: 50 }),
  }),
  fc.record({
    op: fc.constant('ship' as const),
    from: region01,
    strategy: fc.constantFrom(
      ConflictResolutionStrategy.LATEST_TIMESTAMP,
      ConflictResolutionStrategy.MULTI_VALUE,
    ),
  }),
  fc.record({ op: fc.constant('restore' as const), region: region01 }),
);

/** Applies on `to` everything `from` wrote that `to` has not applied yet, if anything. */
function shipAll(
  from: KvStateMachine,
  to: KvStateMachine,
  strategy: RemoteBatch['strategy'],
): void {
  const result = ship(from, to, undefined, strategy);
  if (result !== null) expect(result.kind).toBe('applied');
}

/** What the dotted version vector rules say a local write of `region` makes of `before`. */
function expectedLocalWrite(
  before: Version | undefined,
  region: string,
  value: Uint8Array | null,
  stamp: HlcTimestamp,
): Version {
  const context = before?.context ?? new Map<string, number>();
  const dot = { node: region, counter: (context.get(region) ?? 0) + 1 };
  let hlc = stamp;
  for (const sibling of before?.siblings ?? []) {
    if (compareHlc(hlc, sibling.hlc) <= 0) {
      const { wallMs, logical } = sibling.hlc;
      hlc =
        logical < hlcLogicalMax
          ? { wallMs, logical: logical + 1, node: hlc.node }
          : { wallMs: wallMs + 1, logical: 0, node: hlc.node };
    }
  }
  return { siblings: [{ value, hlc, dot, region }], context: withDot(context, dot) };
}

/**
 * A key whose current state is its latest local write's stores that state once in a snapshot
 * (the decoder gives one object for both); one that merged remote writes since stores both.
 */
function expectLocalStoredOnce(kv: KvStateMachine): void {
  const shipped = new Map(
    kv.localChangesSince(0, 100, 1 << 20).items.map((item) => [item.key, item.version]),
  );
  for (const stored of decodeVersionedSnapshot(kv.snapshot(), 1 << 20).keys) {
    if (stored.local === null) continue;
    const current = kv.getVersion(stored.key);
    const localIsCurrent = isDeepStrictEqual(current, shipped.get(stored.key));
    expect(stored.local === stored.version).toBe(localIsCurrent);
  }
}

function expectSameState(copy: KvStateMachine, original: KvStateMachine): void {
  for (const key of keys) expect(copy.getVersion(key)).toEqual(original.getVersion(key));
  expect(copy.localChangesSince(0, 100, 1 << 20)).toEqual(
    original.localChangesSince(0, 100, 1 << 20),
  );
  expect(copy.pendingLocalWrites(0)).toEqual(original.pendingLocalWrites(0));
  expect(copy.size).toBe(original.size);
  expect(copy.snapshot()).toEqual(original.snapshot());
}

describe('key records', () => {
  it('cannot be told from full versions, across writes, merges and restores', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 40 }), (steps) => {
        const machines = regions.map((region) => new KvStateMachine({ region }));
        let counter = 0;
        for (const s of steps) {
          if (s.op === 'put' || s.op === 'delete') {
            const kv = machines[s.region]!;
            const before = kv.getVersion(s.key);
            const value = s.op === 'put' ? new Uint8Array([++counter % 256, s.wallMs]) : null;
            const stamp = { wallMs: s.wallMs, logical: 0, node: kv.region };
            const command = value === null ? kv.encodeDelete(s.key) : kv.encodePut(s.key, value);
            const result = kv.apply(kv.appliedIndex + 1, encodeStampedCommand(stamp, command));
            if (result.kind !== 'ok') continue; // a delete of an absent key changes nothing
            const expected = expectedLocalWrite(before, kv.region, value, stamp);
            expect(kv.getVersion(s.key)).toEqual(expected);
            const shipped = kv.localChangesSince(kv.appliedIndex - 1, 1, 1 << 20).items;
            expect(shipped).toEqual([{ index: kv.appliedIndex, key: s.key, version: expected }]);
          } else if (s.op === 'ship') {
            shipAll(machines[s.from]!, machines[1 - s.from]!, s.strategy);
          } else {
            const original = machines[s.region]!;
            expectLocalStoredOnce(original);
            const copy = new KvStateMachine({ region: original.region });
            copy.restore(original.snapshot());
            expectSameState(copy, original);
            machines[s.region] = copy;
          }
          for (const kv of machines) {
            for (const key of keys) {
              const version = kv.getVersion(key);
              expect(kv.get(key)).toEqual(version?.siblings[0]!.value ?? undefined);
            }
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('the v2 snapshot encoding', () => {
  // Snapshots are stored on disk and shipped to other members: the same state must encode to
  // the same bytes from one release to the next. These were written by the encoding from
  // before key records (commit 6cba25d), for a history with deletes, non-ASCII keys and a merge
  // of concurrent writes from another region.
  it('encodes a fixed history to the same bytes as before key records', () => {
    const us = new KvStateMachine({ region: 'us' });
    const eu = new KvStateMachine({ region: 'eu' });
    let wallMs = 1_000;
    const apply = (kv: KvStateMachine, command: Uint8Array): void => {
      const stamp = { wallMs: wallMs++, logical: 0, node: kv.region };
      kv.apply(kv.appliedIndex + 1, encodeStampedCommand(stamp, command));
    };
    for (let i = 0; i < 3_000; i++) {
      const key = `k-${i % 700}-é`;
      apply(
        us,
        i % 11 === 0 ? us.encodeDelete(key) : us.encodePut(key, new Uint8Array([i & 255, 7])),
      );
      if (i % 5 === 0) apply(eu, eu.encodePut(key, new Uint8Array([9])));
    }
    shipAll(eu, us, ConflictResolutionStrategy.MULTI_VALUE);
    for (let i = 0; i < 200; i++) apply(us, us.encodePut(`k-${i}-é`, new Uint8Array([1])));
    const bytes = us.snapshot();
    expect(bytes.length).toBe(58_564);
    expect(createHash('sha256').update(bytes).digest('hex').slice(0, 16)).toBe('593b82bbd03b73ad');
  });
});
