// Batch clock comparisons: for HLC stamps and version vectors, the TS twin, the WASM copy-in
// kernels of every build, the dispatching exports and the resident stages agree with a direct
// model over random inputs rich in ties (fast-check), including batches longer than a chunk;
// bad arguments throw TypeError/RangeError before any work.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { HlcColumns, KernelBuild } from '../../src/kernel/index.js';
import {
  HlcBatchStage,
  VersionVectorBatchStage,
  compareHlcBatch,
  compareHlcWasm,
  compareVersionVectorBatch,
  compareVersionVectorWasm,
} from '../../src/kernel/index.js';
import * as reference from '../../src/kernel/reference.js';

type Stamp = [wall: number, logical: number, node: number];

function modelHlc(a: Stamp, b: Stamp): number {
  for (let i = 0; i < 3; i++) {
    if (a[i]! < b[i]!) return -1;
    if (a[i]! > b[i]!) return 1;
  }
  return 0;
}

function modelVv(a: readonly number[], b: readonly number[]): number {
  const before = a.some((x, i) => x < b[i]!);
  const after = a.some((x, i) => x > b[i]!);
  return before && after ? 3 : before ? 1 : after ? 2 : 0;
}

function columnsOf(stamps: readonly Stamp[]): HlcColumns {
  return {
    wall: Float64Array.from(stamps, (s) => s[0]),
    logical: Uint32Array.from(stamps, (s) => s[1]),
    node: Uint32Array.from(stamps, (s) => s[2]),
  };
}

const builds: readonly KernelBuild[] = ['debug', 'release', 'scalar'];
type HlcImpl = (a: HlcColumns, b: HlcColumns, n: number, out: Int8Array) => void;
const hlcImpls: [string, HlcImpl][] = [
  ['ts twin', reference.compareHlcBatch],
  ['dispatch', compareHlcBatch],
  ...builds.map((build): [string, HlcImpl] => [
    `wasm ${build}`,
    (a, b, n, out) => compareHlcWasm(a, b, n, out, build),
  ]),
  ...builds.map((build): [string, HlcImpl] => [
    `resident ${build}`,
    (a, b, n, out) => {
      const stage = new HlcBatchStage(Math.max(1, n), { build });
      for (const [to, from] of [
        [stage.a, a],
        [stage.b, b],
      ] as const) {
        to.wall.set(from.wall.subarray(0, n));
        to.logical.set(from.logical.subarray(0, n));
        to.node.set(from.node.subarray(0, n));
      }
      stage.compare(n);
      out.set(stage.out.subarray(0, n));
    },
  ]),
];

// Few distinct values, so equal walls and equal logicals are common and the tie-breaks matter.
const stamp: fc.Arbitrary<Stamp> = fc.tuple(
  fc.oneof(fc.integer({ min: 1_700_000_000_000, max: 1_700_000_000_003 }), fc.double()),
  fc.oneof(fc.nat(3), fc.constant(0xffffffff)),
  fc.oneof(fc.nat(3), fc.constant(0xffffffff)),
);

describe.each(hlcImpls)('compareHlcBatch (%s)', (_name, compare) => {
  it('agrees with the model', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(stamp, stamp), { maxLength: 300 }), (pairs) => {
        const a = columnsOf(pairs.map((p) => p[0]));
        const b = columnsOf(pairs.map((p) => p[1]));
        const out = new Int8Array(pairs.length + 1).fill(7);
        compare(a, b, pairs.length, out);
        expect(Array.from(out)).toEqual([...pairs.map(([x, y]) => modelHlc(x, y)), 7]);
      }),
      { numRuns: 300 },
    );
  });

  it('handles batches longer than one chunk', () => {
    const n = 10_000;
    const stamps = (shift: number): Stamp[] =>
      Array.from({ length: n }, (_, i): Stamp => [
        1000 + ((i * 7 + shift) % 5),
        (i + shift) % 3,
        i % 2,
      ]);
    const a = stamps(0);
    const b = stamps(1);
    const out = new Int8Array(n);
    compare(columnsOf(a), columnsOf(b), n, out);
    expect(Array.from(out)).toEqual(a.map((x, i) => modelHlc(x, b[i]!)));
  });
});

type VvImpl = (a: Float64Array, b: Float64Array, n: number, width: number, out: Int8Array) => void;
const vvImpls: [string, VvImpl][] = [
  ['ts twin', reference.compareVersionVectorBatch],
  ['dispatch', compareVersionVectorBatch],
  ...builds.map((build): [string, VvImpl] => [
    `wasm ${build}`,
    (a, b, n, width, out) => compareVersionVectorWasm(a, b, n, width, out, build),
  ]),
  ...builds.map((build): [string, VvImpl] => [
    `resident ${build}`,
    (a, b, n, width, out) => {
      const stage = new VersionVectorBatchStage(Math.max(1, n), Math.max(1, width), { build });
      if (width === 0) {
        out.fill(0, 0, n);
        return;
      }
      stage.a.set(a.subarray(0, n * width));
      stage.b.set(b.subarray(0, n * width));
      stage.compare(n);
      out.set(stage.out.subarray(0, n));
    },
  ]),
];

describe.each(vvImpls)('compareVersionVectorBatch (%s)', (_name, compare) => {
  it('agrees with the model', () => {
    fc.assert(
      fc.property(
        fc
          .integer({ min: 0, max: 9 })
          .chain((width) =>
            fc.tuple(
              fc.constant(width),
              fc.array(
                fc.tuple(
                  fc.array(fc.nat(2), { minLength: width, maxLength: width }),
                  fc.array(fc.nat(2), { minLength: width, maxLength: width }),
                ),
                { maxLength: 120 },
              ),
            ),
          ),
        ([width, pairs]) => {
          const a = Float64Array.from(pairs.flatMap((p) => p[0]));
          const b = Float64Array.from(pairs.flatMap((p) => p[1]));
          const out = new Int8Array(pairs.length + 1).fill(7);
          compare(a, b, pairs.length, width, out);
          expect(Array.from(out)).toEqual([...pairs.map(([x, y]) => modelVv(x, y)), 7]);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('handles batches longer than one chunk', () => {
    const n = 9_000;
    const width = 5;
    const a = Float64Array.from({ length: n * width }, (_, i) => (i * 13) % 4);
    const b = Float64Array.from({ length: n * width }, (_, i) => (i * 7) % 4);
    const out = new Int8Array(n);
    compare(a, b, n, width, out);
    const expected = Array.from({ length: n }, (_, k) =>
      modelVv(
        Array.from(a.subarray(k * width, (k + 1) * width)),
        Array.from(b.subarray(k * width, (k + 1) * width)),
      ),
    );
    expect(Array.from(out)).toEqual(expected);
  });
});

describe('bad arguments', () => {
  const columns = columnsOf([
    [1, 1, 1],
    [2, 2, 2],
  ]);
  const hlcCalls: [string, HlcImpl][] = [
    ['ts twin', reference.compareHlcBatch],
    ['dispatch', compareHlcBatch],
    ['wasm', (a, b, n, out) => compareHlcWasm(a, b, n, out)],
  ];
  it.each(hlcCalls)('are refused by the HLC comparison (%s)', (_name, compare) => {
    const out = new Int8Array(2);
    expect(() => compare(columns, columns, 3, out)).toThrow(RangeError);
    expect(() => compare(columns, columns, 2, new Int8Array(1))).toThrow(RangeError);
    expect(() => compare(columns, columns, -1, out)).toThrow(RangeError);
    expect(() => compare(columns, columns, 1.5, out)).toThrow(RangeError);
    expect(() =>
      compare(columns, { ...columns, node: new Int32Array(2) as unknown as Uint32Array }, 1, out),
    ).toThrow(TypeError);
    expect(() => compare(columns, columns, 1, new Uint8Array(2) as unknown as Int8Array)).toThrow(
      TypeError,
    );
    expect(Array.from(out)).toEqual([0, 0]);
  });

  const vvCalls: [string, VvImpl][] = [
    ['ts twin', reference.compareVersionVectorBatch],
    ['dispatch', compareVersionVectorBatch],
    ['wasm', (a, b, n, width, out) => compareVersionVectorWasm(a, b, n, width, out)],
  ];
  it.each(vvCalls)('are refused by the version-vector comparison (%s)', (_name, compare) => {
    const a = new Float64Array(10);
    const out = new Int8Array(2);
    expect(() => compare(a, a, 3, 5, out)).toThrow(
      new RangeError(
        'Cannot compare version vectors: n is 3, expected an integer in 0..2 (what a, b and out hold)',
      ),
    );
    expect(() => compare(a, new Float64Array(9), 2, 5, out)).toThrow(RangeError);
    expect(() => compare(a, a, 2, -1, out)).toThrow(RangeError);
    expect(() => compare(a, a, 2, 2.5, out)).toThrow(RangeError);
    expect(() => compare(a, [0] as unknown as Float64Array, 1, 1, out)).toThrow(TypeError);
  });

  it('are refused by the resident stages', () => {
    expect(() => new HlcBatchStage(0)).toThrow(RangeError);
    expect(() => new VersionVectorBatchStage(10, 0)).toThrow(RangeError);
    const stage = new HlcBatchStage(8);
    expect(() => stage.compare(9)).toThrow(RangeError);
    const vv = new VersionVectorBatchStage(8, 3);
    expect(() => vv.compare(-1)).toThrow(RangeError);
  });
});
