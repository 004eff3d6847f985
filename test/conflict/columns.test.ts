// Checks that NodeRanks numbers node ids in compareNodeIds order however they arrive, so the
// u32 node column handed to compareHlcBatch keeps the documented tie-break (fast-check).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { NodeRanks } from '../../src/conflict/columns.js';
import { compareNodeIds } from '../../src/conflict/hlc.js';

describe('NodeRanks', () => {
  it('orders ranks exactly as compareNodeIds orders ids, for any arrival order', () => {
    const id = fc.oneof(
      fc.constantFrom('a', 'b', '\uff61', '\u{1f600}', 'r-\uff61', 'r-\u{1f600}'),
      fc.string({ unit: 'grapheme', minLength: 1, maxLength: 6 }),
    );
    fc.assert(
      fc.property(fc.array(id, { minLength: 1, maxLength: 40 }), (ids) => {
        const ranks = new NodeRanks();
        for (const x of ids) ranks.rankOf(x);
        expect(ranks.size).toBe(new Set(ids).size);
        for (const x of ids) {
          for (const y of ids) {
            expect(Math.sign(ranks.rankOf(x) - ranks.rankOf(y))).toBe(
              Math.sign(compareNodeIds(x, y)),
            );
          }
        }
      }),
    );
  });

  it('bumps its generation when ranks change, and only then', () => {
    const ranks = new NodeRanks();
    ranks.rankOf('m');
    const generation = ranks.generation;
    ranks.rankOf('m');
    expect(ranks.generation).toBe(generation);
    expect(ranks.rankOf('a')).toBe(0);
    expect(ranks.rankOf('m')).toBe(1);
    expect(ranks.generation).toBe(generation + 1);
    ranks.clear();
    expect(ranks.size).toBe(0);
  });
});
