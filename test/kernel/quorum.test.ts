// The quorum commit index: the TS twin, the WASM kernel of every build and the dispatching
// export agree with a sort-based model over random match indexes (fast-check), leave their
// input untouched, and reject bad counts with RangeError.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { quorumIndex, quorumIndexWasm } from '../../src/kernel/index.js';
import { quorumIndex as quorumIndexTs } from '../../src/kernel/reference.js';

/** Highest index a majority holds: sort descending, take the (floor(n/2))-th. */
function modelQuorum(values: readonly number[]): number {
  if (values.length === 0) return Number.MAX_SAFE_INTEGER;
  const sorted = [...values].sort((x, y) => y - x);
  return sorted[Math.floor(values.length / 2)]!;
}

const implementations: [string, (m: Float64Array, count: number) => number][] = [
  ['ts twin', quorumIndexTs],
  ['index export', quorumIndex],
  ['wasm debug', (m, count) => quorumIndexWasm(m, count, 'debug')],
  ['wasm release', (m, count) => quorumIndexWasm(m, count, 'release')],
  ['wasm scalar', (m, count) => quorumIndexWasm(m, count, 'scalar')],
];

describe.each(implementations)('quorumIndex (%s)', (_name, quorum) => {
  it('agrees with the model', () => {
    const index = fc.oneof(fc.nat(20), fc.nat(1_000_000), fc.constant(Number.MAX_SAFE_INTEGER));
    fc.assert(
      fc.property(fc.array(index, { maxLength: 300 }), fc.nat(3), (values, spare) => {
        const matchIndexes = new Float64Array(values.length + spare);
        matchIndexes.set(values);
        matchIndexes.fill(Number.MAX_SAFE_INTEGER, values.length); // past count: ignored
        const copy = matchIndexes.slice();
        expect(quorum(matchIndexes, values.length)).toBe(modelQuorum(values));
        expect(matchIndexes).toEqual(copy);
      }),
      { numRuns: 1000 },
    );
  });

  it('answers the usual cluster sizes and joint configurations', () => {
    expect(quorum(new Float64Array([5, 9, 7]), 3)).toBe(7);
    expect(quorum(new Float64Array([9, 5, 7, 3]), 4)).toBe(5);
    expect(quorum(new Float64Array([4]), 1)).toBe(4);
    expect(quorum(new Float64Array(0), 0)).toBe(Number.MAX_SAFE_INTEGER);
    // Joint consensus: C_old = {10, 4, 8}, C_new = {2, 9, 9}; an empty outgoing set is no limit.
    const joint = Math.min(
      quorum(new Float64Array([10, 4, 8]), 3),
      quorum(new Float64Array([2, 9, 9]), 3),
    );
    expect(joint).toBe(8);
    expect(Math.min(quorum(new Float64Array([10, 4, 8]), 3), quorum(new Float64Array(0), 0))).toBe(
      8,
    );
    const big = Float64Array.from({ length: 10_001 }, (_, i) => (i * 7919) % 10_001);
    expect(quorum(big, big.length)).toBe(5000);
  });

  it('rejects counts outside the array', () => {
    const m = new Float64Array([1, 2, 3]);
    expect(() => quorum(m, 4)).toThrow(
      new RangeError('Cannot compute the quorum index: count is 4, expected an integer in 0..3'),
    );
    expect(() => quorum(m, -1)).toThrow(RangeError);
    expect(() => quorum(m, 1.5)).toThrow(RangeError);
    expect(() => quorum(m, NaN)).toThrow(RangeError);
  });
});
