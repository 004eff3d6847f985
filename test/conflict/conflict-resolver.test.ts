// Checks the ConflictResolver: lifecycle, each strategy on hand-built conflicts (ties, deletes,
// skew, the sibling bound, custom resolvers that fail), how LATEST_TIMESTAMP and LWW_REGISTER
// differ, stats, batch vs one-by-one agreement, and with fast-check that every strategy
// converges whatever order replicas merge in (and the CRDT laws where a strategy claims them).
import { describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { Hlc, type HlcTimestamp } from '../../src/conflict/hlc.js';
import { recordWrite, type Version, type Write } from '../../src/conflict/dvv.js';
import {
  ConflictResolutionStrategy as Strategy,
  ConflictResolver,
  twinKernels,
  type ClockKernels,
  type ConflictInfo,
  type ConflictResolverOptions,
  type CustomConflictResolver,
} from '../../src/conflict/conflict-resolver.js';
import { ShutdownError } from '../../src/errors.js';
import { describeVersion, historyArb, replicaIds, runHistory } from './histories.js';

const strategies = Object.values(Strategy);
const bytes = (s: string) => new TextEncoder().encode(s);
const text = (w: Write | null) =>
  w === null ? 'none' : w.value === null ? null : new TextDecoder().decode(w.value);
const values = (v: Version) => v.siblings.map(text);

function write(
  node: string,
  counter: number,
  hlc: Partial<HlcTimestamp> & { wallMs: number },
  value: string | null,
  region = 'eu',
): Write {
  return {
    value: value === null ? null : bytes(value),
    hlc: { logical: 0, node, ...hlc },
    dot: { node, counter },
    region,
  };
}

function state(siblings: Write[], context?: Record<string, number>): Version {
  const ctx = context ?? Object.fromEntries(siblings.map((w) => [w.dot.node, w.dot.counter]));
  return { siblings, context: new Map(Object.entries(ctx)) };
}

function resolver(strategy: Strategy, options: ConflictResolverOptions = {}): ConflictResolver {
  const r = new ConflictResolver(strategy, { wallClockMs: () => 1_000, ...options });
  r.initialize();
  return r;
}

function conflict(local: Version, remote: Version, key = 'k'): ConflictInfo {
  return { key, local, remote };
}

describe('lifecycle and settings', () => {
  it('refuses conflicts before initialize and after shutdown, keeps stats readable', () => {
    const r = new ConflictResolver();
    const c = conflict(
      state([write('a', 1, { wallMs: 1 }, 'x')]),
      state([write('b', 1, { wallMs: 2 }, 'y')]),
    );
    expect(() => r.resolveConflict(c)).toThrow(ShutdownError);
    expect(r.initialize()).toBe(true);
    expect(r.initialize()).toBe(true);
    r.resolveConflict(c);
    r.shutdown();
    expect(() => r.resolveConflicts([c])).toThrow(/call initialize\(\) first/);
    expect(r.getResolutionStats().totalConflicts).toBe(1);
  });

  it('defaults to LATEST_TIMESTAMP, switches strategy, rejects unknown ones and bad options', () => {
    const r = new ConflictResolver();
    expect(r.getResolutionStrategy()).toBe('LATEST_TIMESTAMP');
    r.setResolutionStrategy(Strategy.MULTI_VALUE);
    expect(r.getResolutionStrategy()).toBe('MULTI_VALUE');
    expect(() => r.setResolutionStrategy('NEWEST' as Strategy)).toThrow(TypeError);
    expect(() => new ConflictResolver('x' as Strategy)).toThrow(/expected one of LATEST_TIMESTAMP/);
    expect(() => new ConflictResolver(Strategy.CUSTOM, { siblingsMax: 0 })).toThrow(RangeError);
    expect(() => r.registerCustomResolver(42 as unknown as CustomConflictResolver)).toThrow(
      TypeError,
    );
    const clock = new Hlc({ node: 'n' });
    expect(
      () =>
        new ConflictResolver(Strategy.LWW_REGISTER, {
          replica: { clock, region: 'us' },
          maxClockOffsetMs: 5,
        }),
    ).toThrow(/set maxClockOffsetMs and wallClockMs on its Hlc/);
  });

  it('rejects malformed conflicts before resolving any, leaving stats unchanged', () => {
    const r = resolver(Strategy.LWW_REGISTER);
    const good = conflict(
      state([write('a', 1, { wallMs: 1 }, 'x')]),
      state([write('b', 1, { wallMs: 2 }, 'y')]),
    );
    const bad = { key: 'k2', local: good.local, remote: { siblings: [], context: new Map() } };
    expect(() => r.resolveConflicts([good, bad as ConflictInfo])).toThrow(
      /remote version of key "k2"/,
    );
    expect(() => r.resolveConflict({ key: 7 } as unknown as ConflictInfo)).toThrow(TypeError);
    expect(() => r.resolveConflicts('nope' as unknown as ConflictInfo[])).toThrow(TypeError);
    expect(r.getResolutionStats().totalConflicts).toBe(0);
  });
});

describe('LWW_REGISTER and LATEST_TIMESTAMP', () => {
  it('pick the newest write by HLC, deletes included', () => {
    const local = state([write('a', 1, { wallMs: 10 }, 'old')]);
    const remoteDelete = state([write('b', 1, { wallMs: 20 }, null)]);
    for (const s of [Strategy.LWW_REGISTER, Strategy.LATEST_TIMESTAMP]) {
      const resolved = resolver(s).resolveConflict(conflict(local, remoteDelete));
      expect(resolved.winner?.value).toBeNull();
      expect(resolved.relation).toBe('concurrent');
      expect([...resolved.version.context]).toEqual([
        ['a', 1],
        ['b', 1],
      ]);
      expect(resolved.tie).toBe(false);
    }
  });

  it('break a tie of wall time and logical counter by node id in code point order, never by value', () => {
    // By UTF-16 code units 'n-\u{1f600}' < 'n-\uff61'; by code point (UTF-8) it is the reverse.
    const emoji = write('n-\u{1f600}', 1, { wallMs: 7, logical: 3 }, 'aaa');
    const halfwidth = write('n-\uff61', 1, { wallMs: 7, logical: 3 }, 'zzz');
    for (const s of [Strategy.LWW_REGISTER, Strategy.LATEST_TIMESTAMP]) {
      const r = resolver(s);
      for (const [l, rem] of [
        [emoji, halfwidth],
        [halfwidth, emoji],
      ] as const) {
        const resolved = r.resolveConflict(conflict(state([l]), state([rem])));
        expect(text(resolved.winner)).toBe('aaa');
        expect(resolved.tie).toBe(true);
      }
      expect(r.getResolutionStats().ties).toBe(2);
    }
  });

  it('differ when a write that saw another carries an older timestamp', () => {
    // x was written in region a with a clock running ahead; region b's client read x, then
    // overwrote it through a replica whose clock is behind: y supersedes x causally, but
    // y.hlc < x.hlc.
    const x = write('a', 1, { wallMs: 5_000 }, 'x');
    const y = write('b', 1, { wallMs: 4_000 }, 'y, written after reading x');
    const local = state([x]);
    const remote = state([y], { a: 1, b: 1 });
    const latest = resolver(Strategy.LATEST_TIMESTAMP).resolveConflict(conflict(local, remote));
    const lww = resolver(Strategy.LWW_REGISTER).resolveConflict(conflict(local, remote));
    expect(latest.relation).toBe('remoteDescends');
    expect(text(latest.winner)).toBe('y, written after reading x'); // causality first
    expect(text(lww.winner)).toBe('x'); // the register only compares timestamps
    expect(latest.skewSuspect).toBe(true);
    expect(lww.skewSuspect).toBe(true);
  });

  it('LWW_REGISTER is associative where LATEST_TIMESTAMP, on contradicting clocks, is not', () => {
    // x -> y causally but hlc(y) < hlc(z) < hlc(x); z is concurrent with both.
    const x = state([write('a', 1, { wallMs: 300 }, 'x')]);
    const y = state([write('b', 1, { wallMs: 100 }, 'y')], { a: 1, b: 1 });
    const z = state([write('c', 1, { wallMs: 200 }, 'z')]);
    const outcome = (s: Strategy) => {
      const r = resolver(s);
      const merge = (p: Version, q: Version) => r.resolveConflict(conflict(p, q)).version;
      return [values(merge(merge(x, y), z)), values(merge(merge(x, z), y))];
    };
    expect(outcome(Strategy.LWW_REGISTER)).toEqual([['x'], ['x']]);
    expect(outcome(Strategy.LATEST_TIMESTAMP)).toEqual([['z'], ['y']]); // documented limitation
  });

  it('keeps the newer side when one descends from the other, under every strategy', () => {
    const x = write('a', 1, { wallMs: 10 }, 'x');
    const y = write('a', 2, { wallMs: 20 }, 'y');
    const old = state([x]);
    const newer = state([y], { a: 2 });
    for (const s of strategies) {
      const r = resolver(s);
      const forward = r.resolveConflict(conflict(old, newer));
      const stale = r.resolveConflict(conflict(newer, old));
      expect([forward.relation, stale.relation]).toEqual(['remoteDescends', 'localDescends']);
      expect([values(forward.version), values(stale.version)]).toEqual([['y'], ['y']]);
      expect(r.getResolutionStats().unresolvedConflicts).toBe(0);
    }
  });
});

describe('skew', () => {
  it('flags a remote write too far ahead of the wall clock, and counts it', () => {
    const r = resolver(Strategy.LWW_REGISTER, { maxClockOffsetMs: 100, wallClockMs: () => 1_000 });
    const local = state([write('a', 1, { wallMs: 990 }, 'x')]);
    const near = r.resolveConflict(conflict(local, state([write('b', 1, { wallMs: 1_100 }, 'y')])));
    const far = r.resolveConflict(conflict(local, state([write('b', 1, { wallMs: 1_101 }, 'y')])));
    expect([near.skewSuspect, far.skewSuspect]).toEqual([false, true]);
    expect(text(far.winner)).toBe('y'); // flagged, not refused: every region must agree
    expect(r.getResolutionStats().skewSuspect).toBe(1);
  });

  it('with a replica, observes remote writes through its clock', () => {
    const clock = new Hlc({ node: 'me', wallClockMs: () => 1_000, maxClockOffsetMs: 50 });
    const r = resolver(Strategy.LATEST_TIMESTAMP, {
      replica: { clock, region: 'us' },
      wallClockMs: undefined,
    });
    const remote = state([write('b', 1, { wallMs: 5_000, logical: 2 }, 'y')]);
    const resolved = r.resolveConflict(
      conflict(state([write('a', 1, { wallMs: 900 }, 'x')]), remote),
    );
    expect(resolved.skewSuspect).toBe(true);
    expect(clock.skewStats.skewSuspect).toBe(1);
    expect(clock.now()).toMatchObject({ wallMs: 5_000, logical: 4 }); // later local writes sort after
  });
});

describe('MULTI_VALUE', () => {
  it('keeps a delete concurrent with a write as a sibling', () => {
    const r = resolver(Strategy.MULTI_VALUE);
    const resolved = r.resolveConflict(
      conflict(
        state([write('a', 1, { wallMs: 10 }, 'x')]),
        state([write('b', 1, { wallMs: 5 }, null)]),
      ),
    );
    expect(values(resolved.version)).toEqual(['x', null]);
    expect(resolved.winner).toBeNull();
    expect(r.getResolutionStats().resolvedByMultiValue).toBe(1);
  });

  it('bounds siblings, counting each discarded one in resolvedByBound', () => {
    const r = resolver(Strategy.MULTI_VALUE, { siblingsMax: 2 });
    const local = state([
      write('a', 1, { wallMs: 30 }, 'a'),
      write('b', 1, { wallMs: 10, logical: 4 }, 'b'),
    ]);
    const remote = state([
      write('c', 1, { wallMs: 20 }, 'c'),
      write('d', 1, { wallMs: 10, logical: 4 }, 'd'),
    ]);
    const resolved = r.resolveConflict(conflict(local, remote));
    expect(values(resolved.version)).toEqual(['a', 'c']);
    expect(resolved.discarded.map(text)).toEqual(['d', 'b']);
    expect(resolved.version.context.size).toBe(4);
    expect(r.getResolutionStats()).toMatchObject({ resolvedByBound: 2, ties: 0 });
    // The cut falls between two writes of the same wall time and logical counter: a tie.
    const r3 = resolver(Strategy.MULTI_VALUE, { siblingsMax: 3 });
    expect(r3.resolveConflict(conflict(local, remote)).tie).toBe(true);
  });
});

describe('CUSTOM', () => {
  const local = state([write('a', 1, { wallMs: 10 }, 'apple')]);
  const remote = state([write('b', 1, { wallMs: 20 }, 'banana')]);

  it('loses nothing when the resolver throws, returns junk, a Promise, or is missing', () => {
    const outcomes: [CustomConflictResolver | null, RegExp][] = [
      [null, /no custom resolver/],
      [
        () => {
          throw new Error('boom');
        },
        /threw: boom/,
      ],
      [() => 42 as never, /returned number/],
      [() => null as never, /returned null/],
      [() => Promise.resolve({ value: null }) as never, /must be synchronous/],
      [() => ({ value: 'text' }) as never, /neither a Uint8Array nor null/],
      [(_c, [first]) => ({ ...first!, value: bytes('forged') }), /not one of the candidates/],
      [() => ({ value: bytes('merged') }), /no replica to write it as/],
    ];
    for (const [custom, reason] of outcomes) {
      const r = resolver(Strategy.CUSTOM);
      if (custom !== null) r.registerCustomResolver(custom);
      const resolved = r.resolveConflict(conflict(local, remote));
      expect(resolved.unresolved).toBe(true);
      expect(resolved.reason).toMatch(reason);
      expect(values(resolved.version)).toEqual(['banana', 'apple']);
      expect(r.getResolutionStats()).toMatchObject({ unresolvedConflicts: 1, resolvedByCustom: 0 });
    }
  });

  it('selects a candidate, and is not called when one side supersedes the other', () => {
    const r = resolver(Strategy.CUSTOM);
    const custom = vi.fn<CustomConflictResolver>((_c, candidates) => candidates.at(-1)!);
    r.registerCustomResolver(custom);
    expect(text(r.resolveConflict(conflict(local, remote)).winner)).toBe('apple');
    expect(custom).toHaveBeenCalledTimes(1);
    expect(custom.mock.calls[0]![1].map(text)).toEqual(['banana', 'apple']);
    const superseding = state([write('b', 1, { wallMs: 20 }, 'banana')], { a: 1, b: 1 });
    expect(text(r.resolveConflict(conflict(local, superseding)).winner)).toBe('banana');
    expect(custom).toHaveBeenCalledTimes(1);
    expect(r.getResolutionStats()).toMatchObject({ resolvedByCustom: 2, unresolvedConflicts: 0 });
  });

  it('writes a merged value as a new write of the replica, and settles when regions agree', () => {
    // Set-union merge: each region resolves the same conflict, minting its own write.
    const union: CustomConflictResolver = (_c, candidates) => {
      const items = new Set(
        candidates.flatMap((w) =>
          w.value === null ? [] : new TextDecoder().decode(w.value).split(','),
        ),
      );
      return { value: bytes([...items].sort().join(',')) };
    };
    const regions = ['us', 'eu'].map((region, i) => {
      const clock = new Hlc({ node: `${region}-1`, wallClockMs: () => 100 + i });
      const r = new ConflictResolver(Strategy.CUSTOM, { replica: { clock, region } });
      r.initialize();
      r.registerCustomResolver(union);
      return r;
    });
    const [us, eu] = regions as [ConflictResolver, ConflictResolver];
    const atUs = us.resolveConflict(conflict(local, remote));
    const atEu = eu.resolveConflict(conflict(remote, local));
    expect(text(atUs.winner)).toBe('apple,banana');
    expect(atUs.winner!.dot).toEqual({ node: 'us-1', counter: 1 });
    expect(atUs.version.context.get('us-1')).toBe(1);
    expect(atUs.winner!.hlc.wallMs).toBeGreaterThanOrEqual(20); // after both candidates
    // The two minted writes meet: same value, so the resolver selects instead of minting again.
    const met = us.resolveConflict(conflict(atUs.version, atEu.version));
    const metEu = eu.resolveConflict(conflict(atEu.version, atUs.version));
    expect(met.version).toEqual(metEu.version);
    expect(met.version.siblings).toHaveLength(1);
    expect([...met.version.context]).toEqual([
      ['a', 1],
      ['b', 1],
      ['eu-1', 1],
      ['us-1', 1],
    ]);
  });
});

describe('resolveConflicts', () => {
  it('uses the batch kernels from batchSizeMin on, and agrees with one-by-one resolution', () => {
    const calls = { hlc: 0, vv: 0 };
    const spy: ClockKernels = {
      compareHlcBatch: (...args) => {
        calls.hlc++;
        twinKernels.compareHlcBatch(...args);
      },
      compareVersionVectorBatch: (...args) => {
        calls.vv++;
        twinKernels.compareVersionVectorBatch(...args);
      },
    };
    const conflicts = Array.from({ length: 20 }, (_, i) =>
      conflict(
        state([write(replicaIds[i % 4]!, 1, { wallMs: i % 3 }, `l${i}`)]),
        state([write(replicaIds[(i + 1) % 4]!, 1, { wallMs: (i * 7) % 3 }, `r${i}`)]),
        `k${i}`,
      ),
    );
    const batched = resolver(Strategy.LWW_REGISTER, { kernels: spy, batchSizeMin: 16 });
    const single = resolver(Strategy.LWW_REGISTER, { kernels: spy, batchSizeMin: 16 });
    const viaBatch = batched.resolveConflicts(conflicts);
    expect(calls).toEqual({ hlc: 1, vv: 1 });
    const oneByOne = conflicts.map((c) => single.resolveConflict(c));
    single.resolveConflicts(conflicts.slice(0, 15));
    expect(calls).toEqual({ hlc: 1, vv: 1 });
    expect(viaBatch).toEqual(oneByOne);
  });

  it('gives the same results and stats as resolveConflict, for every strategy (property)', () => {
    const custom: CustomConflictResolver = (_c, candidates) =>
      candidates.reduce((best, w) => (w.region < best.region ? w : best));
    fc.assert(
      fc.property(
        historyArb({ causal: false, opsMax: 20 }),
        fc.array(fc.tuple(fc.nat(), fc.nat()), { minLength: 1, maxLength: 40 }),
        fc.constantFrom(...strategies),
        (spec, pairs, strategy) => {
          const pool = runHistory(spec);
          if (pool.length === 0) return;
          const conflicts = pairs.map(([i, j], k) =>
            conflict(pool[i % pool.length]!, pool[j % pool.length]!, `k${k}`),
          );
          const make = () => {
            const r = resolver(strategy, { batchSizeMin: 1, siblingsMax: 3 });
            r.registerCustomResolver(custom);
            return r;
          };
          const batched = make();
          const single = make();
          expect(batched.resolveConflicts(conflicts)).toEqual(
            conflicts.map((c) => single.resolveConflict(c)),
          );
          expect(batched.getResolutionStats()).toEqual(single.getResolutionStats());
        },
      ),
      { numRuns: 200 },
    );
  });

  it('agrees with one-by-one resolution through the WASM kernels (batches of 256 and more)', () => {
    const conflicts = Array.from({ length: 600 }, (_, i) => {
      const l = write(replicaIds[i % 4]!, 1 + (i % 5), { wallMs: i % 7, logical: i % 2 }, `l${i}`);
      const r = write(
        replicaIds[(i + 1) % 4]!,
        1 + (i % 3),
        { wallMs: (i * 3) % 7, logical: 1 },
        null,
      );
      // Every third remote has seen the local write: a fast-forward instead of a conflict.
      const remoteContext = {
        [r.dot.node]: r.dot.counter,
        ...(i % 3 === 0 ? { [l.dot.node]: l.dot.counter } : {}),
      };
      return conflict(state([l]), state([r], remoteContext), `k${i}`);
    });
    for (const s of [Strategy.LATEST_TIMESTAMP, Strategy.MULTI_VALUE]) {
      const viaKernels = resolver(s).resolveConflicts(conflicts); // default: src/kernel dispatch
      const single = resolver(s);
      expect(viaKernels).toEqual(conflicts.map((c) => single.resolveConflict(c)));
    }
  });

  it('compares contexts without the kernel when a batch is too wide for its columns', () => {
    // 4096 rows x 300 replica ids exceed the column budget (vectorCellsMax).
    const wide = new Map(
      Array.from({ length: 300 }, (_, i) => [`replica-${i}`, 1 + (i % 4)] as const),
    );
    const conflicts = Array.from({ length: 4096 }, (_, i) => {
      const l = write('replica-1', 2, { wallMs: i }, 'x');
      const r = write('replica-2', 3, { wallMs: 4096 - i }, 'y');
      return conflict(
        { siblings: [l], context: wide },
        { siblings: [r], context: new Map([['replica-2', 3]]) },
      );
    });
    const calls: number[] = [];
    const kernels: ClockKernels = {
      ...twinKernels,
      compareVersionVectorBatch: (...args) => {
        calls.push(args[3]);
        twinKernels.compareVersionVectorBatch(...args);
      },
    };
    const batched = resolver(Strategy.LWW_REGISTER, { kernels }).resolveConflicts(conflicts);
    expect(calls).toEqual([]);
    expect(batched.map((r) => r.relation)).toEqual(conflicts.map(() => 'localDescends'));
    expect(text(batched[0]!.winner)).toBe('y');
    expect(text(batched[4095]!.winner)).toBe('x');
  });

  it('counts every conflict exactly once', () => {
    const r = resolver(Strategy.LATEST_TIMESTAMP);
    const c = conflict(
      state([write('a', 1, { wallMs: 1 }, 'x')]),
      state([write('b', 1, { wallMs: 2 }, 'y')]),
    );
    r.resolveConflicts([c, c, c]);
    r.setResolutionStrategy(Strategy.LWW_REGISTER);
    r.resolveConflict(c);
    r.setResolutionStrategy(Strategy.MULTI_VALUE);
    r.resolveConflict(c);
    r.setResolutionStrategy(Strategy.CUSTOM);
    r.resolveConflict(c); // no resolver: unresolved
    r.registerCustomResolver((_c, [first]) => first!);
    r.resolveConflict(c);
    expect(r.getResolutionStats()).toEqual({
      totalConflicts: 7,
      resolvedByTimestamp: 3,
      resolvedByLWW: 1,
      resolvedByMultiValue: 1,
      resolvedByCustom: 1,
      unresolvedConflicts: 1,
      ties: 0,
      skewSuspect: 0,
      resolvedByBound: 0,
    });
  });
});

describe('convergence', () => {
  const byRegionThenNewest: CustomConflictResolver = (_c, candidates) =>
    candidates.reduce((best, w) => (w.region < best.region ? w : best));

  function mergerFor(strategy: Strategy): (a: Version, b: Version) => Version {
    const r = resolver(strategy, { siblingsMax: 1 << 16 });
    r.registerCustomResolver(byRegionThenNewest);
    return (a, b) => r.resolveConflict(conflict(a, b)).version;
  }

  /** Writes from distinct replicas, none having seen another: pairwise concurrent versions. */
  const concurrentVersions = fc
    .uniqueArray(
      fc.record({
        node: fc.constantFrom(...replicaIds, 'r-c', 'r-d'),
        wallMs: fc.integer({ min: 0, max: 3 }),
        logical: fc.integer({ min: 0, max: 1 }),
        value: fc.option(fc.constantFrom('p', 'q', 'r'), { freq: 4 }),
        region: fc.constantFrom('us', 'eu', 'ap'),
      }),
      { selector: (w) => w.node, minLength: 2, maxLength: 6 },
    )
    .map((ws) =>
      ws.map((w) =>
        state([write(w.node, 1, { wallMs: w.wallMs, logical: w.logical }, w.value, w.region)]),
      ),
    );

  it('gives the same result for any merge order of concurrent versions, under every strategy', () => {
    fc.assert(
      fc.property(
        concurrentVersions.chain((vs) =>
          fc.tuple(fc.constant(vs), fc.shuffledSubarray(vs, { minLength: vs.length })),
        ),
        fc.constantFrom(...strategies),
        ([order1, order2], strategy) => {
          // Two replicas, each with its own resolver, receive the versions in different orders.
          const fold = (vs: Version[]) => {
            const merge = mergerFor(strategy);
            return vs.slice(1).reduce((acc, v) => merge(acc, v), vs[0]!);
          };
          const one = fold(order1);
          expect(one, describeVersion(one)).toEqual(fold(order2));
        },
      ),
      { numRuns: 300 },
    );
  });

  const laws = (merge: (a: Version, b: Version) => Version, a: Version, b: Version, c: Version) => {
    const ab = merge(a, b);
    expect(ab, describeVersion(ab)).toEqual(merge(b, a));
    expect(merge(merge(a, b), c)).toEqual(merge(a, merge(b, c)));
    expect(merge(ab, ab)).toEqual(ab);
  };
  const triple = fc.array(fc.nat(), { minLength: 3, maxLength: 3 });

  it('LWW_REGISTER and MULTI_VALUE merges are commutative, associative, idempotent on any history', () => {
    fc.assert(
      fc.property(
        historyArb({ causal: false }),
        triple,
        fc.constantFrom(Strategy.LWW_REGISTER, Strategy.MULTI_VALUE),
        (spec, picks, strategy) => {
          const pool = runHistory(spec);
          if (pool.length === 0) return;
          const [a, b, c] = picks.map((p) => pool[p % pool.length]!) as [Version, Version, Version];
          laws(mergerFor(strategy), a, b, c);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('LATEST_TIMESTAMP obeys the same laws when clocks observe what they merge', () => {
    fc.assert(
      fc.property(historyArb({ causal: true }), triple, (spec, picks) => {
        const pool = runHistory(spec);
        if (pool.length === 0) return;
        const [a, b, c] = picks.map((p) => pool[p % pool.length]!) as [Version, Version, Version];
        laws(mergerFor(Strategy.LATEST_TIMESTAMP), a, b, c);
      }),
      { numRuns: 300 },
    );
  });

  it(
    'converges over whole histories, superseded states included (CUSTOM: only a choice\n' +
      'consistent with causality would, so it is left out)',
    () => {
      const causalStrategies = [
        Strategy.LATEST_TIMESTAMP,
        Strategy.LWW_REGISTER,
        Strategy.MULTI_VALUE,
      ];
      fc.assert(
        fc.property(
          historyArb({ causal: true }),
          fc.constantFrom(...causalStrategies),
          (spec, strategy) => {
            const pool = runHistory(spec);
            if (pool.length < 2) return;
            const merge = mergerFor(strategy);
            const forward = pool.reduce((acc, v) => merge(acc, v));
            const backward = pool.reduceRight((acc, v) => merge(acc, v));
            expect(forward).toEqual(backward);
          },
        ),
        { numRuns: 200 },
      );
    },
  );

  it('resolves a write recorded on top of a resolved state as superseding it', () => {
    let ms = 100;
    const clock = new Hlc({ node: 'us-1', wallClockMs: () => ms++ });
    const r = resolver(Strategy.MULTI_VALUE);
    const merged = r.resolveConflict(
      conflict(
        state([write('a', 1, { wallMs: 10 }, 'x')]),
        state([write('b', 1, { wallMs: 20 }, 'y')]),
      ),
    ).version;
    const next = recordWrite(merged, merged.context, bytes('z'), { clock, region: 'us' }).version;
    const resolved = r.resolveConflict(conflict(next, merged));
    expect(resolved.relation).toBe('localDescends');
    expect(values(resolved.version)).toEqual(['z']);
  });
});
