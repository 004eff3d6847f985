// Checks dotted version vectors: writes with and without the client's context, merges of two
// replicas' states, the sibling bound, the scalar version-vector order against the kernel twin,
// input validation, and — against a plain version-vector store written here — that siblings
// do not pile up under interleaved writers. Examples plus fast-check join laws over histories.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Hlc } from '../../src/conflict/hlc.js';
import {
  VersionOrder,
  checkVersion,
  compareVersionVectors,
  emptyVersionVector,
  joinVersionVectors,
  mergeVersions,
  recordWrite,
  syncVersions,
  type Replica,
  type Version,
  type VersionVector,
  type Write,
} from '../../src/conflict/dvv.js';
import { compareVersionVectorBatch } from '../../src/kernel/reference.js';
import { describeVersion, historyArb, runHistory } from './histories.js';

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (w: Write) => (w.value === null ? null : new TextDecoder().decode(w.value));
const values = (v: Version) => v.siblings.map(text);

function replicaAt(node: string, wallMs: () => number, region = 'us'): Replica {
  return { clock: new Hlc({ node, wallClockMs: wallMs }), region };
}

function write(node: string, counter: number, wallMs: number, value: string | null): Write {
  return {
    value: value === null ? null : bytes(value),
    hlc: { wallMs, logical: 0, node },
    dot: { node, counter },
    region: 'eu',
  };
}

function single(
  w: Write,
  context: Record<string, number> = { [w.dot.node]: w.dot.counter },
): Version {
  return { siblings: [w], context: new Map(Object.entries(context)) };
}

describe('recordWrite', () => {
  it('keeps concurrent writes as siblings and collapses them with a write that saw them', () => {
    let ms = 100;
    const a = replicaAt('a', () => ms++);
    const v1 = recordWrite(undefined, emptyVersionVector, bytes('x'), a).version;
    const v2 = recordWrite(v1, emptyVersionVector, bytes('y'), a).version; // blind: concurrent
    expect(values(v2)).toEqual(['y', 'x']);
    expect([...v2.context]).toEqual([['a', 2]]);
    const v3 = recordWrite(v2, v2.context, bytes('z'), a).version;
    expect(values(v3)).toEqual(['z']);
    const v4 = recordWrite(v3, v1.context, null, a).version; // a delete from a stale reader
    expect(values(v4)).toEqual([null, 'z']);
    expect(v4.siblings[0]!.dot).toEqual({ node: 'a', counter: 4 });
  });

  it('drops only the siblings the client context covers, also ones learned from other replicas', () => {
    const a = replicaAt('a', () => 10);
    const b = replicaAt('b', () => 10);
    const fromA = recordWrite(undefined, emptyVersionVector, bytes('x'), a).version;
    const fromB = recordWrite(undefined, emptyVersionVector, bytes('y'), b).version;
    const merged = syncVersions(fromA, fromB).version;
    expect(values(merged).sort()).toEqual(['x', 'y']);
    // A client that read only b's state overwrites y, not x.
    const next = recordWrite(merged, fromB.context, bytes('z'), a).version;
    expect(values(next).sort()).toEqual(['x', 'z']);
  });

  it('stamps the new write after every stored sibling, even when its own clock is behind', () => {
    const slow = replicaAt('a', () => 5);
    const stored = single(write('b', 1, 9_000, 'from the future'));
    const { write: w } = recordWrite(stored, stored.context, bytes('later'), slow);
    expect(w.hlc.wallMs).toBe(9_000);
    expect(w.hlc.logical).toBeGreaterThan(0);
  });

  it('bounds siblings, returning the oldest it drops', () => {
    let ms = 0;
    const a = replicaAt('a', () => ms++);
    let version: Version | undefined;
    const discarded: Write[] = [];
    for (const v of ['1', '2', '3', '4']) {
      const recorded = recordWrite(version, emptyVersionVector, bytes(v), a, 2);
      version = recorded.version;
      discarded.push(...recorded.discarded);
    }
    expect(values(version!)).toEqual(['4', '3']);
    expect(discarded.map(text)).toEqual(['1', '2']);
  });

  it('does not multiply siblings under interleaved writers, where plain version vectors do', () => {
    // Riak's sibling explosion: two clients write in turn through one replica, each with the
    // context its own previous write returned. A plain version vector per key cannot tell which
    // siblings a context covers, so it keeps them all; dots can.
    const plain = new PlainVectorStore('a');
    let ms = 0;
    const a = replicaAt('a', () => ms++);
    let stored: Version | undefined;
    const dvvContexts = [emptyVersionVector, emptyVersionVector];
    const plainContexts = [emptyVersionVector, emptyVersionVector];
    const dvvCounts: number[] = [];
    const plainCounts: number[] = [];
    for (let i = 0; i < 20; i++) {
      const client = i % 2;
      stored = recordWrite(stored, dvvContexts[client]!, bytes(`v${i}`), a).version;
      dvvContexts[client] = stored.context;
      dvvCounts.push(stored.siblings.length);
      plainContexts[client] = plain.write(plainContexts[client]!, `v${i}`);
      plainCounts.push(plain.values.length);
    }
    expect(Math.max(...dvvCounts)).toBe(2);
    expect(values(stored!)).toEqual(['v19', 'v18']);
    // The same bound would fail with plain version vectors: every write is kept.
    expect(plainCounts.at(-1)).toBe(20);
  });
});

/** A key store with one plain version vector per key (Riak before DVV, vnode clocks). */
class PlainVectorStore {
  values: string[] = [];
  clock: VersionVector = emptyVersionVector;
  constructor(private readonly node: string) {}

  /** Writes with the client's context and returns the context the client gets back. */
  write(context: VersionVector, value: string): VersionVector {
    const order = compareVersionVectors(context, this.clock);
    const descends = order === VersionOrder.Equal || order === VersionOrder.After;
    this.values = descends ? [value] : [...this.values, value];
    const joined = new Map(joinVersionVectors(this.clock, context));
    joined.set(this.node, (joined.get(this.node) ?? 0) + 1);
    this.clock = joined;
    return joined;
  }
}

describe('mergeVersions and syncVersions', () => {
  it('keeps concurrent writes, drops superseded ones, newest first', () => {
    const x = write('a', 1, 10, 'x');
    const y = write('b', 1, 20, 'y');
    const concurrent = mergeVersions(single(x), single(y));
    expect(concurrent.frontier.map(text)).toEqual(['y', 'x']);
    expect(concurrent.clockContradiction).toBe(false);
    // z was written at b after seeing x: it supersedes x.
    const z = write('b', 1, 30, 'z');
    const merged = mergeVersions(single(x), single(z, { a: 1, b: 1 }));
    expect(merged.frontier.map(text)).toEqual(['z']);
    expect(merged.writes.map(text)).toEqual(['z', 'x']);
    expect([...merged.context]).toEqual([
      ['a', 1],
      ['b', 1],
    ]);
  });

  it('flags a superseding write whose clock was behind the write it superseded', () => {
    const x = write('a', 1, 50, 'x');
    const late = write('b', 1, 40, 'saw x, clock behind');
    const merged = mergeVersions(single(x), single(late, { a: 1, b: 1 }));
    expect(merged.frontier.map(text)).toEqual(['saw x, clock behind']);
    expect(merged.clockContradiction).toBe(true);
  });

  it('keeps one write, deterministically, when two different writes claim one dot', () => {
    const one = write('a', 1, 10, 'one');
    const other = write('a', 1, 10, 'other');
    const ab = mergeVersions(single(one), single(other));
    const ba = mergeVersions(single(other), single(one));
    expect(ab.dotCollision).toBe(true);
    expect(ab.frontier.map(text)).toEqual(['other']);
    expect(ba.frontier.map(text)).toEqual(['other']);
  });

  it('keeps the newest siblingsMax by HLC and does not bring dropped ones back', () => {
    const writes = ['a', 'b', 'c', 'd', 'e'].map((node, i) => write(node, 1, 100 + i, node));
    let state = single(writes[0]!);
    for (const w of writes.slice(1, 4)) state = syncVersions(state, single(w), 8).version;
    const bounded = syncVersions(state, single(writes[4]!), 3);
    expect(values(bounded.version)).toEqual(['e', 'd', 'c']);
    expect(bounded.discarded.map(text)).toEqual(['b', 'a']);
    expect(bounded.version.context.size).toBe(5);
    // A replica that still holds 'a' meets the bounded state: 'a' stays gone.
    const again = syncVersions(single(writes[0]!), bounded.version, 3);
    expect(values(again.version)).toEqual(['e', 'd', 'c']);
    expect(again.discarded).toEqual([]);
  });

  it('is a join on the states of any history: commutative, associative, idempotent', () => {
    fc.assert(
      fc.property(
        historyArb({ causal: false }),
        fc.array(fc.nat(), { minLength: 3, maxLength: 3 }),
        (spec, picks) => {
          const pool = runHistory(spec);
          if (pool.length === 0) return;
          const [a, b, c] = picks.map((p) => pool[p % pool.length]!) as [Version, Version, Version];
          const merge = (x: Version, y: Version) => syncVersions(x, y, 1 << 16).version;
          const ab = merge(a, b);
          expect(ab, describeVersion(ab)).toEqual(merge(b, a));
          expect(merge(merge(a, b), c)).toEqual(merge(a, merge(b, c)));
          expect(merge(ab, ab)).toEqual(ab);
          expect(merge(a, a)).toEqual(a);
          expect(mergeVersions(a, b).clockContradiction && spec.causal).toBe(false);
        },
      ),
    );
  });

  it('never reports a clock contradiction when clocks observe what they merge', () => {
    fc.assert(
      fc.property(historyArb({ causal: true }), fc.nat(), fc.nat(), (spec, i, j) => {
        const pool = runHistory(spec);
        if (pool.length === 0) return;
        const merged = mergeVersions(pool[i % pool.length]!, pool[j % pool.length]!);
        expect(merged.clockContradiction).toBe(false);
      }),
    );
  });
});

describe('version vectors', () => {
  it('orders like the batch kernel twin', () => {
    const ids = ['a', 'b', 'c'];
    const vector = fc
      .array(fc.integer({ min: 0, max: 3 }), { minLength: 3, maxLength: 3 })
      .map(
        (counters) => new Map(counters.flatMap((c, i) => (c > 0 ? [[ids[i]!, c] as const] : []))),
      );
    fc.assert(
      fc.property(vector, vector, (a, b) => {
        const row = (v: VersionVector) => Float64Array.from(ids, (id) => v.get(id) ?? 0);
        const out = new Int8Array(1);
        compareVersionVectorBatch(row(a), row(b), 1, ids.length, out);
        expect(compareVersionVectors(a, b)).toBe(out[0]);
      }),
    );
  });

  it('joins entry-wise with keys in code point order', () => {
    const joined = joinVersionVectors(
      new Map([
        ['\uff61', 2],
        ['b', 1],
      ]),
      new Map([
        ['\u{1f600}', 4],
        ['b', 3],
      ]),
    );
    expect([...joined]).toEqual([
      ['b', 3],
      ['\uff61', 2],
      ['\u{1f600}', 4],
    ]);
  });
});

describe('checkVersion', () => {
  it('rejects malformed versions with a message naming the problem', () => {
    const x = write('a', 2, 10, 'x');
    const cases: [unknown, RegExp, ErrorConstructor][] = [
      [null, /expected \{ siblings, context \}/, TypeError],
      [{ siblings: [], context: new Map() }, /no siblings/, RangeError],
      [{ siblings: [x], context: { a: 2 } }, /expected a Map/, TypeError],
      [
        { siblings: [x], context: new Map([['a', 1]]) },
        /dot a:2 but the context has a:1/,
        RangeError,
      ],
      [{ siblings: [x, x], context: new Map([['a', 2]]) }, /share dot a:2/, RangeError],
      [
        { siblings: [{ ...x, value: 'x' }], context: new Map([['a', 2]]) },
        /Uint8Array or null/,
        TypeError,
      ],
      [
        { siblings: [{ ...x, dot: { node: 'a', counter: 0 } }], context: new Map([['a', 2]]) },
        /dot counter is 0/,
        RangeError,
      ],
      [{ siblings: [x], context: new Map([['a', 2.5]]) }, /counter of a is 2.5/, RangeError],
      [{ siblings: [{ ...x, region: '' }], context: new Map([['a', 2]]) }, /region/, RangeError],
    ];
    for (const [version, message, type] of cases) {
      expect(() => checkVersion(version, 'the version')).toThrow(type);
      expect(() => checkVersion(version, 'the version')).toThrow(message);
    }
  });
});
