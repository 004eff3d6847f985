// Differential test of every log implementation (TS twin, WASM debug/release/scalar) against a
// simple model: fast-check generates thousands of operation sequences (append, matchAndAppend,
// truncate, compact, reset, slice, reads), runs each on all logs in lockstep and requires the
// same results, the same errors (class and message) and the same contents as the model.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { EntrySpec, TestLog } from './support.js';
import {
  ModelLog,
  batchOf,
  disposeLog,
  expectSameContent,
  hex,
  logImpls,
  payloadOfSpec,
  plainBatch,
  plainEntries,
} from './support.js';

// Mostly small payloads; now and then an empty one, or tens of KiB that push the arena (64 KiB
// to start) through growth.
const size = fc.oneof(
  { weight: 30, arbitrary: fc.integer({ min: 1, max: 12 }) },
  { weight: 2, arbitrary: fc.constant(0) },
  { weight: 1, arbitrary: fc.integer({ min: 4_000, max: 120_000 }) },
);
// Few distinct terms, so generated batches often agree with the log for a while, then conflict.
const entry: fc.Arbitrary<EntrySpec> = fc.record({
  term: fc.integer({ min: 1, max: 4 }),
  type: fc.constantFrom(0 as const, 1 as const, 2 as const),
  size,
  seed: fc.nat(255),
});
// Raft logs hold runs of one term: one batch in three is a single term, one in three ascending.
const entries = fc
  .tuple(
    fc.constantFrom('random', 'uniform', 'ascending'),
    fc.oneof(
      { weight: 6, arbitrary: fc.array(entry, { maxLength: 8 }) },
      { weight: 1, arbitrary: fc.array(entry, { minLength: 30, maxLength: 90 }) },
    ),
  )
  .map(([shape, list]) => {
    if (shape === 'uniform') return list.map((spec) => ({ ...spec, term: list[0]!.term }));
    if (shape === 'ascending') {
      const terms = list.map((spec) => spec.term).sort((x, y) => x - y);
      return list.map((spec, k) => ({ ...spec, term: terms[k]! }));
    }
    return list;
  });

type Op =
  | { kind: 'append'; entries: EntrySpec[]; skew: number }
  | {
      kind: 'match';
      back: number;
      termMode: 'match' | 'other';
      otherTerm: number;
      copy: number;
      entries: EntrySpec[];
    }
  | { kind: 'truncate'; back: number }
  | { kind: 'compact'; back: number }
  | { kind: 'reset'; ahead: number; term: number }
  | { kind: 'slice'; from: number; length: number; maxBytes: number }
  | { kind: 'read'; back: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('append' as const),
      entries,
      skew: fc.oneof({ weight: 12, arbitrary: fc.constant(0) }, fc.integer({ min: -2, max: 2 })),
    }),
  },
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constant('match' as const),
      back: fc.integer({ min: -2, max: 40 }),
      termMode: fc.constantFrom('match' as const, 'match' as const, 'other' as const),
      otherTerm: fc.integer({ min: 0, max: 5 }),
      copy: fc.integer({ min: 0, max: 60 }),
      entries,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('truncate' as const),
      back: fc.integer({ min: -2, max: 30 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('compact' as const),
      back: fc.integer({ min: -2, max: 40 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('reset' as const),
      ahead: fc.integer({ min: -3, max: 10 }),
      term: fc.integer({ min: 0, max: 6 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('slice' as const),
      from: fc.integer({ min: -2, max: 50 }),
      length: fc.integer({ min: -1, max: 50 }),
      maxBytes: fc.oneof(fc.constant(Infinity), fc.nat(200_000), fc.nat(40)),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('read' as const),
      back: fc.integer({ min: -2, max: 40 }),
    }),
  },
);

/**
 * Runs an operation on the model and on each log: when the model throws, every log must throw
 * the same class with the same message as the first log; otherwise none may throw, and every
 * log's result must deep-equal `expected(modelResult)` (when given).
 */
function lockstep<M, T>(
  logs: readonly TestLog[],
  names: readonly string[],
  onModel: () => M,
  onLog: (log: TestLog) => T,
  label: string,
  expected?: (modelResult: M) => unknown,
): void {
  let modelError: Error | null = null;
  let modelResult: M | undefined;
  try {
    modelResult = onModel();
  } catch (error) {
    modelError = error as Error;
  }
  const outcomes = logs.map((log) => {
    try {
      return { result: onLog(log), error: null as Error | null };
    } catch (error) {
      return { result: undefined, error: error as Error };
    }
  });
  outcomes.forEach((outcome, i) => {
    const name = `${label} on ${names[i]}`;
    if (modelError !== null) {
      expect(outcome.error, `${name}: expected ${String(modelError)}`).toBeInstanceOf(
        modelError.constructor,
      );
      expect(outcome.error!.message, `${name}: same message as ${names[0]}`).toBe(
        outcomes[0]!.error?.message,
      );
    } else if (outcome.error !== null) {
      throw new Error(`${name} threw`, { cause: outcome.error });
    } else if (expected !== undefined) {
      expect(outcome.result, name).toEqual(expected(modelResult as M));
    }
  });
}

function runSequence(ops: readonly Op[]): void {
  const model = new ModelLog();
  const names = logImpls.map((impl) => impl.name);
  // Tiny initial storage: growth and lazy compaction happen within a few operations.
  const logs = logImpls.map((impl) => impl.create({ entriesInitial: 16, payloadBytesInitial: 1 }));
  try {
    ops.forEach((operation, step) => {
      const label = `step ${step} ${operation.kind}`;
      switch (operation.kind) {
        case 'append': {
          const firstIndex = Math.max(1, model.last + 1 + operation.skew);
          const batch = batchOf(firstIndex, operation.entries);
          lockstep(
            logs,
            names,
            () => model.append(firstIndex, operation.entries),
            (log) => log.append(batch),
            label,
          );
          break;
        }
        case 'match': {
          const prevIndex = Math.max(0, model.last - operation.back);
          const prevTerm =
            operation.termMode === 'match' &&
            prevIndex >= model.first - 1 &&
            prevIndex <= model.last
              ? model.termAt(prevIndex)
              : operation.otherTerm;
          // The first `copy` entries repeat the log's own terms (so they match), the rest are new.
          const specs = operation.entries.map((spec, k) => {
            const index = prevIndex + 1 + k;
            return k < operation.copy && model.has(index)
              ? { ...spec, term: model.termAt(index) }
              : spec;
          });
          const batch = batchOf(prevIndex + 1, specs);
          lockstep(
            logs,
            names,
            () => model.matchAndAppend(prevIndex, prevTerm, specs),
            (log) => log.matchAndAppend(prevIndex, prevTerm, batch),
            label,
            (result) => result,
          );
          break;
        }
        case 'truncate': {
          const index = model.last + 1 - operation.back;
          if (index < 0) break;
          lockstep(
            logs,
            names,
            () => model.truncateFrom(index),
            (log) => log.truncateFrom(index),
            label,
          );
          break;
        }
        case 'compact': {
          const index = model.last - operation.back;
          if (index < 0) break;
          lockstep(
            logs,
            names,
            () => model.compactTo(index),
            (log) => log.compactTo(index),
            label,
          );
          break;
        }
        case 'reset': {
          const index = Math.max(0, model.last + operation.ahead);
          lockstep(
            logs,
            names,
            () => model.reset(index, operation.term),
            (log) => log.reset(index, operation.term),
            label,
          );
          break;
        }
        case 'slice': {
          const from = model.first + operation.from;
          const to = from + operation.length;
          if (from < 0 || to < 0) break;
          lockstep(
            logs,
            names,
            () => model.slice(from, to, operation.maxBytes),
            (log) => plainBatch(log.slice(from, to, operation.maxBytes)),
            label,
            (slice) => plainEntries(slice.firstIndex, slice.entries),
          );
          break;
        }
        case 'read': {
          const index = model.last - operation.back;
          if (index < 0) break;
          lockstep(
            logs,
            names,
            () => model.termAt(index),
            (log) => log.termAt(index),
            label,
            (term) => term,
          );
          if (model.has(index)) {
            const entryAt = model.entries[index - model.first]!;
            for (const log of logs) {
              expect(log.typeAt(index), label).toBe(entryAt.type);
              expect(hex(log.payloadAt(index)), label).toBe(hex(payloadOfSpec(entryAt)));
            }
          }
          break;
        }
      }
      const bytes = model.payloadBytes();
      for (const [i, log] of logs.entries()) {
        if (
          log.lastIndex() !== model.last ||
          log.firstIndex() !== model.first ||
          log.payloadBytes() !== bytes
        ) {
          throw new Error(
            `${label} on ${names[i]}: indexes ${log.firstIndex()}..${log.lastIndex()} (${log.payloadBytes()} bytes), ` +
              `model ${model.first}..${model.last} (${bytes} bytes)`,
          );
        }
      }
    });
    logs.forEach((log, i) => expectSameContent(log, model, `end of sequence on ${names[i]}`));
  } finally {
    logs.forEach(disposeLog);
  }
}

describe('every log implementation agrees with the model', () => {
  it('over random operation sequences', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 40 }), (ops) => runSequence(ops)),
      { numRuns: 2000 },
    );
  });

  it('over long sequences that grow, compact and wrap the storage many times', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 150, maxLength: 300 }), (ops) => runSequence(ops)),
      { numRuns: 60 },
    );
  });
});
