// Replay against a model: fast-check writes random mixes of one-entry records, big records (more
// than 256 entries or 64 KiB: appended without staging), overwrites landing inside staged and
// direct runs, and snapshot installs, over an in-memory file system; reopening must give exactly
// the model's log, in both log kernels.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FilePersistence } from '../../src/storage/file-persistence.js';
import { CrashFs } from './helpers/crash-fs.js';
import { checkPayload, createTestLog, createTwinLog, makeBatch } from './helpers/entries.js';

type Step =
  | { readonly kind: 'append'; readonly count: number; readonly size: number }
  | { readonly kind: 'overwrite'; readonly back: number; readonly count: number }
  | { readonly kind: 'install'; readonly ahead: number };

const stepArbitrary: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('append' as const),
      count: fc.integer({ min: 1, max: 3 }),
      size: fc.integer({ min: 16, max: 120 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('append' as const),
      count: fc.integer({ min: 200, max: 400 }),
      size: fc.integer({ min: 16, max: 64 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('append' as const),
      count: fc.integer({ min: 1, max: 3 }),
      size: fc.integer({ min: 30_000, max: 70_000 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('overwrite' as const),
      back: fc.integer({ min: 0, max: 500 }),
      count: fc.integer({ min: 1, max: 300 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('install' as const),
      ahead: fc.integer({ min: 0, max: 5 }),
    }),
  },
);

let runs = 0;

describe('replay', () => {
  for (const [name, createLog] of [
    ['WASM log', createTestLog],
    ['TypeScript log', createTwinLog],
  ] as const) {
    it(`rebuilds exactly the written log from small, big and overwriting records (${name})`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(stepArbitrary, { minLength: 1, maxLength: 30 }),
          async (steps) => {
            const fs = new CrashFs();
            const dir = `/replay-${++runs}`;
            const storage = new FilePersistence({ dir, createLog, fs, onWarning: () => undefined });
            await storage.load();
            const terms = new Map<number, number>();
            const sizes = new Map<number, number>();
            let last = 0;
            let base = 0;
            let term = 1;
            for (const step of steps) {
              if (step.kind === 'append') {
                const batch = makeBatch(
                  last + 1,
                  new Array<number>(step.count).fill(term),
                  step.size,
                );
                for (let k = 0; k < step.count; k++) {
                  terms.set(last + 1 + k, term);
                  sizes.set(last + 1 + k, step.size);
                }
                last += step.count;
                await storage.save({ snapshot: null, entries: batch, hardState: null }, false);
              } else if (step.kind === 'overwrite') {
                term++;
                const first = Math.max(base + 1, last + 1 - step.back);
                const batch = makeBatch(first, new Array<number>(step.count).fill(term), 24);
                for (let i = first; i <= last; i++) terms.delete(i);
                for (let k = 0; k < step.count; k++) {
                  terms.set(first + k, term);
                  sizes.set(first + k, 24);
                }
                last = first + step.count - 1;
                await storage.save({ snapshot: null, entries: batch, hardState: null }, false);
              } else {
                term++;
                base = last + step.ahead;
                last = base;
                terms.clear();
                const meta = {
                  index: base,
                  term,
                  conf: { voters: ['a'], votersOutgoing: [], learners: [] },
                };
                await storage.save(
                  { snapshot: { meta, data: new Uint8Array([1]) }, entries: null, hardState: null },
                  true,
                );
              }
            }
            await storage.close();
            const reopened = new FilePersistence({
              dir,
              createLog,
              fs: fs.snapshotAsIs(),
              onWarning: () => undefined,
            });
            const { log } = await reopened.load();
            await reopened.close();
            expect(log.firstIndex()).toBe(base + 1);
            expect(log.lastIndex()).toBe(last);
            for (let i = base + 1; i <= last; i++) {
              expect(log.termAt(i)).toBe(terms.get(i));
              expect(log.payloadAt(i).length).toBe(sizes.get(i));
              expect(checkPayload(i, log.termAt(i), log.payloadAt(i))).toBeNull();
            }
            (log as { dispose?: () => void }).dispose?.();
          },
        ),
        { numRuns: 60 },
      );
    });
  }
});
