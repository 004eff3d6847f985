// Checks describeBatchProblem, the check every batch from outside passes: fast-check builds
// batches with random defects and compares its verdict with a plain entry-by-entry reference.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { describeBatchProblem, EntryBatchBuilder, type EntryBatch } from '../../src/raft/batch.js';

/** The check as it reads in words: every entry, every rule, in order. */
function reference(batch: EntryBatch): string | null {
  const { firstIndex, count } = batch;
  if (!Number.isSafeInteger(firstIndex) || firstIndex < 1) {
    return `firstIndex ${firstIndex} is not a positive integer`;
  }
  if (!Number.isSafeInteger(count) || count < 0) {
    return `count ${count} is not a non-negative integer`;
  }
  if (batch.terms.length < count || batch.types.length < count || batch.ends.length < count) {
    return `batch of ${count} entries has arrays of ${batch.terms.length}/${batch.types.length}/${batch.ends.length}`;
  }
  let previousEnd = 0;
  for (let k = 0; k < count; k++) {
    const term = batch.terms[k]!;
    if (!Number.isSafeInteger(term) || term < 1) return `entry ${firstIndex + k} has term ${term}`;
    const type = batch.types[k]!;
    if (type > 2) return `entry ${firstIndex + k} has unknown type ${type}`;
    const end = batch.ends[k]!;
    if (end < previousEnd || end > batch.data.length) {
      return `entry ${firstIndex + k} ends at byte ${end}, outside ${previousEnd}..${batch.data.length}`;
    }
    previousEnd = end;
  }
  return null;
}

const termArb = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 1, max: 50 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(0, -1, 0.5, 2 ** 53, 2 ** 53 + 2, NaN, Infinity, -Infinity),
  },
);
const typeArb = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 2 }) },
  { weight: 1, arbitrary: fc.oneof(fc.constantFrom(3, 255), fc.integer({ min: 3, max: 255 })) },
);

/** A batch of sizes `sizes`, then (maybe) one of its ends or its data length disturbed. */
const batchArb = fc
  .record({
    firstIndex: fc.oneof(
      { weight: 9, arbitrary: fc.integer({ min: 1, max: 1000 }) },
      { weight: 1, arbitrary: fc.constantFrom(0, -3, 1.5, NaN) },
    ),
    entries: fc.array(fc.record({ term: termArb, type: typeArb, size: fc.nat(20) }), {
      maxLength: 40,
    }),
    // An end moved anywhere, or just past its neighbours (the boundaries a check can miss).
    endDefect: fc.option(
      fc.record({
        at: fc.nat(),
        end: fc.nat(1000),
        nearby: fc.boolean(),
        delta: fc.integer({ min: -2, max: 2 }),
      }),
      { freq: 3 },
    ),
    dataShortBy: fc.option(fc.nat(30), { freq: 4 }),
    countDelta: fc.option(fc.integer({ min: -2, max: 2 }), { freq: 6 }),
  })
  .map(({ firstIndex, entries, endDefect, dataShortBy, countDelta }): EntryBatch => {
    const count = entries.length;
    const terms = new Float64Array(entries.map((e) => e.term));
    const types = new Uint8Array(entries.map((e) => e.type));
    const ends = new Uint32Array(count);
    let end = 0;
    entries.forEach((e, k) => (ends[k] = end += e.size));
    if (endDefect !== null && count > 0) {
      const at = endDefect.at % count;
      const previous = at === 0 ? 0 : ends[at - 1]!;
      ends[at] = endDefect.nearby ? Math.max(0, previous + endDefect.delta) : endDefect.end;
    }
    const data = new Uint8Array(Math.max(0, end - (dataShortBy ?? 0)));
    return { firstIndex, count: count + (countDelta ?? 0), terms, types, ends, data };
  });

describe('describeBatchProblem', () => {
  it('gives the reference verdict, naming the same first problem, for any batch', () => {
    fc.assert(
      fc.property(batchArb, (batch) => {
        expect(describeBatchProblem(batch)).toBe(reference(batch));
        // Asked again (a sound batch is remembered), the answer is the same.
        expect(describeBatchProblem(batch)).toBe(reference(batch));
      }),
      { numRuns: 2000 },
    );
  });

  it('accepts what the builder makes', () => {
    const builder = new EntryBatchBuilder(7);
    for (let k = 0; k < 100; k++) builder.add(3, k % 3 === 0 ? 2 : 0, new Uint8Array(k % 5));
    expect(describeBatchProblem(builder.finish())).toBeNull();
  });
});
