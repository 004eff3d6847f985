// Checks the versioned key-value state machine that replication rests on, without a network:
// dots and HLC stamps of local writes, merging and deduplicating batches from other regions,
// the latest-local-write changelog that shipping reads, v2 snapshots (and v1 ones from before
// versions), and fast-check properties: replicas of one region that apply the same entries end
// in byte-identical states, and regions that exchange batches in any order, with duplicates,
// converge to the same versions under every built-in strategy.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ConflictResolutionStrategy,
  ConflictResolver,
} from '../../src/conflict/conflict-resolver.js';
import type { Version } from '../../src/conflict/dvv.js';
import type { HlcTimestamp } from '../../src/conflict/hlc.js';
import { StorageError } from '../../src/errors.js';
import { encodeSnapshot } from '../../src/kv/codec.js';
import { KvStateMachine } from '../../src/kv/state-machine.js';
import {
  encodeRemoteBatch,
  encodeStampedCommand,
  type RemoteBatch,
} from '../../src/kv/versioned-codec.js';
import { remoteBatchSince, ship } from '../kv/helpers.js';

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (value: Uint8Array | null | undefined) =>
  value === null || value === undefined ? value : new TextDecoder().decode(value);
const hlc = (wallMs: number, node: string, logical = 0): HlcTimestamp => ({
  wallMs,
  logical,
  node,
});

/** Applies a stamped put at the next index. */
function put(kv: KvStateMachine, key: string, value: string, stamp: HlcTimestamp) {
  return kv.apply(
    kv.appliedIndex + 1,
    encodeStampedCommand(stamp, kv.encodePut(key, bytes(value))),
  );
}

function del(kv: KvStateMachine, key: string, stamp: HlcTimestamp) {
  return kv.apply(kv.appliedIndex + 1, encodeStampedCommand(stamp, kv.encodeDelete(key)));
}

/** A key's version in a comparable shape: siblings (value, dot, HLC) and context. */
function shape(version: Version | undefined) {
  if (version === undefined) return undefined;
  return {
    siblings: version.siblings.map((s) => ({
      value: text(s.value),
      dot: `${s.dot.node}:${s.dot.counter}`,
      hlc: `${s.hlc.wallMs}.${s.hlc.logical}@${s.hlc.node}`,
      region: s.region,
    })),
    context: [...version.context],
  };
}

describe('local writes', () => {
  it('get a dot of their region at apply and the stamp of their proposal', () => {
    const kv = new KvStateMachine({ region: 'us' });
    expect(put(kv, 'k', 'a', hlc(1_000, 'us')).kind).toBe('ok');
    expect(put(kv, 'k', 'b', hlc(2_000, 'us')).kind).toBe('ok');
    expect(shape(kv.getVersion('k'))).toEqual({
      siblings: [{ value: 'b', dot: 'us:2', hlc: '2000.0@us', region: 'us' }],
      context: [['us', 2]],
    });
    expect(text(kv.get('k'))).toBe('b');
  });

  it('move a stamp that is behind the key past its newest sibling (a leader with a slow clock)', () => {
    const kv = new KvStateMachine({ region: 'us' });
    put(kv, 'k', 'a', hlc(5_000, 'us', 3));
    put(kv, 'k', 'b', hlc(4_000, 'us'));
    expect(kv.getVersion('k')!.siblings[0]!.hlc).toEqual(hlc(5_000, 'us', 4));
    expect(kv.clockHigh).toEqual(hlc(5_000, 'us', 4));
  });

  it('stamp unstamped (v1) commands after the highest HLC applied', () => {
    const kv = new KvStateMachine({ region: 'us' });
    put(kv, 'a', '1', hlc(7_000, 'us'));
    kv.apply(2, kv.encodePut('b', bytes('2')));
    expect(kv.getVersion('b')!.siblings[0]!.hlc).toEqual(hlc(7_000, 'us', 1));
  });

  it('keep a delete as a tombstone that conflicts like a write; size counts live keys', () => {
    const kv = new KvStateMachine({ region: 'us' });
    put(kv, 'k', 'a', hlc(1, 'us'));
    expect(kv.size).toBe(1);
    expect(del(kv, 'k', hlc(2, 'us')).kind).toBe('ok');
    expect(kv.get('k')).toBeUndefined();
    expect(kv.size).toBe(0);
    expect(shape(kv.getVersion('k'))!.siblings).toEqual([
      { value: null, dot: 'us:2', hlc: '2.0@us', region: 'us' },
    ]);
    // A delete of a deleted key is 404 and records nothing.
    expect(del(kv, 'k', hlc(3, 'us')).kind).toBe('notFound');
    expect(kv.lastLocalIndex).toBe(2);
  });

  it('list the latest local write per key in index order, within limits', () => {
    const kv = new KvStateMachine({ region: 'us' });
    put(kv, 'a', '1', hlc(1, 'us')); // 1
    put(kv, 'b', '1', hlc(2, 'us')); // 2
    put(kv, 'a', '2', hlc(3, 'us')); // 3: supersedes index 1
    kv.skip(4); // a no-op
    put(kv, 'c', '1', hlc(5, 'us')); // 5
    const all = kv.localChangesSince(0, 100, 1 << 20);
    expect(all.items.map((item) => [item.index, item.key])).toEqual([
      [2, 'b'],
      [3, 'a'],
      [5, 'c'],
    ]);
    expect(all.toIndex).toBe(5);
    const two = kv.localChangesSince(0, 2, 1 << 20);
    expect(two.items.map((item) => item.index)).toEqual([2, 3]);
    expect(two.toIndex).toBe(3);
    // One item is always returned, even past the byte budget.
    expect(kv.localChangesSince(2, 100, 1).items.map((item) => item.index)).toEqual([3]);
    expect(kv.localChangesSince(5, 100, 1 << 20)).toEqual({ items: [], toIndex: 5 });
    expect(kv.pendingLocalWrites(2)).toEqual({ count: 2, oldest: hlc(3, 'us') });
  });
});

describe('batches from other regions', () => {
  it('merge concurrent writes through the resolver with the strategy the batch names', () => {
    for (const [strategy, expected] of [
      [ConflictResolutionStrategy.LATEST_TIMESTAMP, ['eu-value']],
      [ConflictResolutionStrategy.LWW_REGISTER, ['eu-value']],
      [ConflictResolutionStrategy.MULTI_VALUE, ['eu-value', 'us-value']],
    ] as const) {
      const us = new KvStateMachine({ region: 'us' });
      const eu = new KvStateMachine({ region: 'eu' });
      put(us, 'k', 'us-value', hlc(1_000, 'us'));
      put(eu, 'k', 'eu-value', hlc(2_000, 'eu'));
      const result = ship(eu, us, 0, strategy);
      expect(result).toMatchObject({ kind: 'applied', applied: 1, conflicts: 1, concurrent: 1 });
      expect(us.getVersion('k')!.siblings.map((s) => text(s.value))).toEqual(expected);
      expect([...us.getVersion('k')!.context]).toEqual([
        ['eu', 1],
        ['us', 1],
      ]);
    }
  });

  it('collapse siblings after a write that saw them (MULTI_VALUE)', () => {
    const mv = ConflictResolutionStrategy.MULTI_VALUE;
    const us = new KvStateMachine({ region: 'us' });
    const eu = new KvStateMachine({ region: 'eu' });
    put(us, 'k', 'u', hlc(1, 'us'));
    put(eu, 'k', 'e', hlc(2, 'eu'));
    ship(eu, us, 0, mv);
    ship(us, eu, 0, mv);
    expect(us.getVersion('k')!.siblings).toHaveLength(2);
    expect(shape(us.getVersion('k'))).toEqual(shape(eu.getVersion('k')));
    put(eu, 'k', 'merged', hlc(3, 'eu'));
    ship(eu, us, undefined, mv);
    expect(us.getVersion('k')!.siblings.map((s) => text(s.value))).toEqual(['merged']);
    expect(shape(us.getVersion('k'))).toEqual(shape(eu.getVersion('k')));
  });

  it('apply a re-shipped batch once, refuse a gap, and never apply their own region', () => {
    const us = new KvStateMachine({ region: 'us' });
    const eu = new KvStateMachine({ region: 'eu' });
    put(eu, 'a', '1', hlc(1, 'eu'));
    put(eu, 'b', '1', hlc(2, 'eu'));
    expect(ship(eu, us, 0)).toMatchObject({ kind: 'applied', applied: 2, position: 2 });
    const before = ['a', 'b'].map((key) => shape(us.getVersion(key)));
    // The same batch again (a new origin leader re-sending from an older cursor).
    expect(ship(eu, us, 0)).toMatchObject({ kind: 'applied', applied: 0, duplicates: 2 });
    expect(['a', 'b'].map((key) => shape(us.getVersion(key)))).toEqual(before);
    expect(us.conflictResolver.getResolutionStats().totalConflicts).toBe(0);
    put(eu, 'c', '1', hlc(3, 'eu'));
    put(eu, 'd', '1', hlc(4, 'eu'));
    // A batch starting after the position would skip index 3.
    expect(ship(eu, us, 3)).toMatchObject({ kind: 'gap', position: 2 });
    expect(us.get('d')).toBeUndefined();
    expect(ship(eu, us)).toMatchObject({ kind: 'applied', applied: 2, position: 4 });
    const loop = encodeRemoteBatch({
      origin: 'us',
      fromIndex: 1,
      toIndex: 1,
      strategy: ConflictResolutionStrategy.LATEST_TIMESTAMP,
      items: [],
    });
    expect(us.applyRemoteBatch(us.appliedIndex + 1, loop)).toMatchObject({ kind: 'invalid' });
  });

  it('are never shipped on: only writes that originated here are in the changelog', () => {
    const us = new KvStateMachine({ region: 'us' });
    const eu = new KvStateMachine({ region: 'eu' });
    put(eu, 'k', '1', hlc(1, 'eu'));
    ship(eu, us, 0);
    expect(us.localChangesSince(0, 100, 1 << 20).items).toEqual([]);
    expect(us.lastLocalIndex).toBe(0);
  });

  it('consume a corrupt batch as invalid without changing state', () => {
    const us = new KvStateMachine({ region: 'us' });
    put(us, 'k', 'v', hlc(1, 'us'));
    const before = us.snapshot();
    const result = us.applyRemoteBatch(2, Uint8Array.of(0x82, 9, 1, 0x61));
    expect(result.kind).toBe('invalid');
    us.skip(3);
    const after = new KvStateMachine({ region: 'us' });
    after.restore(before);
    after.skip(2);
    after.skip(3);
    expect(us.snapshot()).toEqual(after.snapshot());
  });
});

describe('snapshots', () => {
  it('carry versions, the changelog and origin positions exactly', () => {
    const us = new KvStateMachine({ region: 'us' });
    const eu = new KvStateMachine({ region: 'eu' });
    put(us, 'a', '1', hlc(1, 'us'));
    put(us, 'a', '2', hlc(2, 'us'));
    put(eu, 'a', 'e', hlc(3, 'eu'));
    put(eu, 'b', 'e', hlc(4, 'eu'));
    ship(eu, us, 0, ConflictResolutionStrategy.MULTI_VALUE);
    del(us, 'b', hlc(5, 'us'));
    const copy = new KvStateMachine({ region: 'us' });
    copy.restore(us.snapshot());
    expect(copy.snapshot()).toEqual(us.snapshot());
    expect(copy.inboundPosition('eu')).toBe(2);
    expect(copy.localChangesSince(0, 100, 1 << 20)).toEqual(us.localChangesSince(0, 100, 1 << 20));
    expect(copy.size).toBe(us.size);
    for (const key of ['a', 'b'])
      expect(shape(copy.getVersion(key))).toEqual(shape(us.getVersion(key)));
  });

  it('refuse another region, and turn a v1 snapshot into writes of this region', () => {
    const eu = new KvStateMachine({ region: 'eu' });
    put(eu, 'k', 'v', hlc(1, 'eu'));
    expect(() => new KvStateMachine({ region: 'us' }).restore(eu.snapshot())).toThrow(
      /belongs to region eu, this state machine to region us/,
    );
    const v1 = encodeSnapshot({
      appliedIndex: 9,
      entries: [
        ['x', bytes('1')],
        ['y', bytes('2')],
      ],
    });
    const kv = new KvStateMachine({ region: 'us' });
    kv.restore(v1);
    expect(kv.appliedIndex).toBe(9);
    expect(text(kv.get('y'))).toBe('2');
    expect(kv.localChangesSince(0, 100, 1 << 20).items.map((i) => [i.index, i.key])).toEqual([
      [1, 'x'],
      [2, 'y'],
    ]);
    expect(() => kv.restore(new Uint8Array(3))).toThrow(StorageError);
    expect(text(kv.get('y'))).toBe('2');
  });
});

// -------------------------------------------------------------------------------------------
// Properties

const regions = ['eu', 'us', 'ap'] as const;
type Step =
  | { kind: 'write'; region: number; key: string; value: string | null; wallMs: number }
  | { kind: 'ship'; from: number; to: number; rewind: number };

const stepArbitrary: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    kind: fc.constant('write' as const),
    region: fc.integer({ min: 0, max: 2 }),
    key: fc.constantFrom('a', 'b', 'c'),
    value: fc.option(fc.constantFrom('1', '2', '3', 'x'), { freq: 4 }),
    wallMs: fc.integer({ min: 0, max: 50 }),
  }),
  fc.record({
    kind: fc.constant('ship' as const),
    from: fc.integer({ min: 0, max: 2 }),
    to: fc.integer({ min: 0, max: 2 }),
    // Ship from a position this far back (duplicates, as after a leader change).
    rewind: fc.integer({ min: 0, max: 3 }),
  }),
);

/** Runs the steps, then ships until quiet; returns every region's state machine. */
function play(steps: readonly Step[], strategy: RemoteBatch['strategy']): KvStateMachine[] {
  const machines = regions.map(
    (region) => new KvStateMachine({ region, conflictResolver: new ConflictResolver(strategy) }),
  );
  const exchange = (from: number, to: number, rewind: number): void => {
    if (from === to) return;
    const source = machines[from]!;
    const target = machines[to]!;
    const position = Math.max(0, target.inboundPosition(source.region) - rewind);
    ship(source, target, position, strategy);
  };
  for (const step of steps) {
    if (step.kind === 'ship') {
      exchange(step.from, step.to, step.rewind);
      continue;
    }
    const kv = machines[step.region]!;
    const stamp = hlc(step.wallMs, kv.region);
    if (step.value === null) {
      if (kv.get(step.key) !== undefined) del(kv, step.key, stamp);
    } else {
      put(kv, step.key, step.value, stamp);
    }
  }
  for (let round = 0; round < 2; round++) {
    for (let from = 0; from < 3; from++) for (let to = 0; to < 3; to++) exchange(from, to, 0);
  }
  return machines;
}

describe('properties', () => {
  for (const strategy of [
    ConflictResolutionStrategy.LATEST_TIMESTAMP,
    ConflictResolutionStrategy.LWW_REGISTER,
    ConflictResolutionStrategy.MULTI_VALUE,
  ]) {
    it(`regions converge to the same versions under ${strategy}, whatever the order`, () => {
      fc.assert(
        fc.property(fc.array(stepArbitrary, { maxLength: 40 }), (steps) => {
          const [eu, us, ap] = play(steps, strategy);
          for (const key of ['a', 'b', 'c']) {
            const expected = shape(eu!.getVersion(key));
            expect(shape(us!.getVersion(key))).toEqual(expected);
            expect(shape(ap!.getVersion(key))).toEqual(expected);
            if (strategy !== ConflictResolutionStrategy.MULTI_VALUE && expected !== undefined) {
              expect(expected.siblings).toHaveLength(1);
            }
          }
        }),
        { numRuns: 150 },
      );
    });
  }

  it('replicas of one region that apply the same entries hold byte-identical state', () => {
    fc.assert(
      fc.property(fc.array(stepArbitrary, { maxLength: 30 }), fc.nat(30), (steps, cut) => {
        // Record what region 0 applies (its log), then replay it on a replica that restores a
        // snapshot taken part way, as a follower that installs a snapshot would.
        const strategy = ConflictResolutionStrategy.MULTI_VALUE;
        const log: { kind: 'kv' | 'batch' | 'skip'; payload: Uint8Array }[] = [];
        const source = new KvStateMachine({ region: 'eu' });
        const peers = [new KvStateMachine({ region: 'us' }), new KvStateMachine({ region: 'ap' })];
        for (const step of steps) {
          if (step.kind === 'write' && step.region !== 0) {
            const peer = peers[step.region - 1]!;
            put(peer, step.key, step.value ?? 'v', hlc(step.wallMs, peer.region));
          } else if (step.kind === 'write') {
            const payload = encodeStampedCommand(
              hlc(step.wallMs, 'eu'),
              step.value === null
                ? source.encodeDelete(step.key)
                : source.encodePut(step.key, bytes(step.value)),
            );
            log.push({ kind: 'kv', payload });
            source.apply(source.appliedIndex + 1, payload);
          } else if (step.from !== 0 && step.to === 0) {
            const peer = peers[step.from - 1]!;
            const position = Math.max(0, source.inboundPosition(peer.region) - step.rewind);
            const payload = remoteBatchSince(peer, position, strategy);
            if (payload === null) continue;
            log.push({ kind: 'batch', payload });
            source.applyRemoteBatch(source.appliedIndex + 1, payload);
          } else {
            log.push({ kind: 'skip', payload: new Uint8Array(0) });
            source.skip(source.appliedIndex + 1);
          }
        }
        const replay = (from: KvStateMachine, entries: typeof log) => {
          for (const entry of entries) {
            const index = from.appliedIndex + 1;
            if (entry.kind === 'kv') from.apply(index, entry.payload);
            else if (entry.kind === 'batch') from.applyRemoteBatch(index, entry.payload);
            else from.skip(index);
          }
        };
        const replica = new KvStateMachine({ region: 'eu' });
        const at = Math.min(cut, log.length);
        replay(replica, log.slice(0, at));
        const late = new KvStateMachine({ region: 'eu' });
        late.restore(replica.snapshot());
        replay(replica, log.slice(at));
        replay(late, log.slice(at));
        expect(replica.snapshot()).toEqual(source.snapshot());
        expect(late.snapshot()).toEqual(source.snapshot());
      }),
      { numRuns: 150 },
    );
  });
});
