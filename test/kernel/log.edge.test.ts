// Edge cases of the log, run against every implementation (TS twin, WASM debug/release/scalar):
// empty log, compacted prefix, refused truncation into it, fast-backtracking hints, 0-byte and
// multi-MiB payloads, growth over many pages, chunked conflict scans, and bad arguments that
// must throw a typed error and leave the log exactly as it was.
import { Buffer } from 'node:buffer';
import { afterEach, describe, expect, it } from 'vitest';
import type { EntryBatch } from '../../src/raft/batch.js';
import { EntryBatchBuilder, EntryType } from '../../src/raft/batch.js';
import { LogFullError } from '../../src/kernel/index.js';
import { PhantomError } from '../../src/errors.js';
import type { TestLog } from './support.js';
import { disposeLog, logImpls, patternPayload, plainBatch } from './support.js';

/** A batch at `firstIndex` with the given terms and payload sizes (pattern seeded by index). */
function batch(
  firstIndex: number,
  terms: readonly number[],
  sizes: readonly number[] = [],
): EntryBatch {
  const builder = new EntryBatchBuilder(firstIndex, terms.length + 1);
  terms.forEach((term, k) => {
    builder.add(term, EntryType.Normal, patternPayload(sizes[k] ?? 3, firstIndex + k));
  });
  return builder.finish();
}

/** Everything observable about a log, for before/after comparisons. */
function snapshotOf(log: TestLog): unknown {
  const first = log.firstIndex();
  const last = log.lastIndex();
  return {
    first,
    last,
    compactTerm: log.termAt(first - 1),
    bytes: log.payloadBytes(),
    entries: last >= first ? plainBatch(log.slice(first, last + 1, Infinity)) : null,
  };
}

describe.each(logImpls)('log $name', ({ create }) => {
  const logs: TestLog[] = [];
  const make = (options = {}): TestLog => {
    const log = create(options);
    logs.push(log);
    return log;
  };
  afterEach(() => {
    logs.splice(0).forEach(disposeLog);
  });

  it('starts empty at index 1 with compaction point (0, 0)', () => {
    const log = make();
    expect(log.firstIndex()).toBe(1);
    expect(log.lastIndex()).toBe(0);
    expect(log.termAt(0)).toBe(0);
    expect(log.payloadBytes()).toBe(0);
    expect(() => log.termAt(1)).toThrow(
      new RangeError('Cannot read the term of entry 1: the log holds 0..0'),
    );
    expect(() => log.typeAt(0)).toThrow(RangeError);
    expect(() => log.payloadAt(1)).toThrow(
      new RangeError('Cannot read the payload of entry 1: the log is empty (compacted up to 0)'),
    );
    expect(log.slice(1, 1, 0).count).toBe(0);
    expect(log.matchAndAppend(0, 0, batch(1, []))).toEqual({
      ok: true,
      lastNewIndex: 0,
      firstWrittenIndex: 0,
    });
    expect(log.matchAndAppend(5, 1, batch(6, [1]))).toEqual({
      ok: false,
      hintIndex: 1,
      hintTerm: 0,
    });
    log.compactTo(0);
    log.truncateFrom(1);
    expect(() => log.truncateFrom(2)).toThrow(RangeError);
    log.checkInvariants();
  });

  it('keeps the compaction point, refuses truncating into the compacted part, hints past it', () => {
    const log = make();
    log.append(batch(1, [1, 1, 1, 2, 2, 2, 3, 3, 3, 3]));
    log.compactTo(5);
    expect(log.firstIndex()).toBe(6);
    expect(log.termAt(5)).toBe(2);
    expect(() => log.termAt(4)).toThrow(
      new RangeError('Cannot read the term of entry 4: the log holds 5..10'),
    );
    expect(() => log.slice(5, 7, Infinity)).toThrow(RangeError);
    expect(() => log.truncateFrom(5)).toThrow(
      new RangeError('Cannot truncate the log from index 5: entries up to 5 are compacted'),
    );
    expect(() => log.matchAndAppend(4, 2, batch(5, [2]))).toThrow(
      new RangeError('Cannot match entries: prevIndex 4 is below the compaction point 5'),
    );
    // Entry 6 has term 2 like the compaction point: the first index of term 2 we know is 5.
    expect(log.matchAndAppend(6, 3, batch(7, [3]))).toEqual({
      ok: false,
      hintIndex: 5,
      hintTerm: 2,
    });
    expect(log.matchAndAppend(9, 4, batch(10, [4]))).toEqual({
      ok: false,
      hintIndex: 7,
      hintTerm: 3,
    });
    expect(log.matchAndAppend(12, 3, batch(13, [3]))).toEqual({
      ok: false,
      hintIndex: 11,
      hintTerm: 0,
    });
    log.compactTo(3); // already compacted: nothing happens
    expect(log.firstIndex()).toBe(6);
    log.truncateFrom(6);
    expect(log.lastIndex()).toBe(5);
    expect(log.termAt(5)).toBe(2);
    log.append(batch(6, [4]));
    expect(log.termAt(6)).toBe(4);
    log.compactTo(6);
    expect([log.firstIndex(), log.lastIndex(), log.termAt(6), log.payloadBytes()]).toEqual([
      7, 6, 4, 0,
    ]);
    log.checkInvariants();
  });

  it('resets to a snapshot point', () => {
    const log = make();
    log.append(batch(1, [1, 1, 2]));
    log.reset(100, 7);
    expect([log.firstIndex(), log.lastIndex(), log.termAt(100), log.payloadBytes()]).toEqual([
      101, 100, 7, 0,
    ]);
    expect(() => log.append(batch(4, [2]))).toThrow(
      new RangeError('Cannot append entries: the batch starts at index 4, expected 101'),
    );
    log.append(batch(101, [7, 8]));
    expect(log.termAt(102)).toBe(8);
    log.checkInvariants();
  });

  it('matches without truncating entries that agree, and replaces from the first conflict', () => {
    const log = make();
    log.append(batch(1, [1, 1, 2, 2, 2, 3]));
    expect(log.matchAndAppend(2, 1, batch(3, [2, 2]))).toEqual({
      ok: true,
      lastNewIndex: 4,
      firstWrittenIndex: 0,
    });
    expect(log.lastIndex()).toBe(6);
    expect(log.matchAndAppend(2, 1, batch(3, [2, 4, 4], [5, 0, 7]))).toEqual({
      ok: true,
      lastNewIndex: 5,
      firstWrittenIndex: 4,
    });
    expect(log.lastIndex()).toBe(5);
    expect([3, 4, 5].map((i) => log.termAt(i))).toEqual([2, 4, 4]);
    expect(log.payloadAt(4).length).toBe(0);
    expect(Array.from(log.payloadAt(5))).toEqual(Array.from(patternPayload(7, 5)));
    log.checkInvariants();
  });

  it('stores 0-byte payloads among others', () => {
    const log = make();
    log.append(batch(1, [1, 1, 1, 1, 1], [0, 0, 5, 0, 0]));
    expect([1, 2, 3, 4, 5].map((i) => log.payloadAt(i).length)).toEqual([0, 0, 5, 0, 0]);
    expect(log.payloadBytes()).toBe(5);
    const slice = log.slice(1, 6, 0);
    expect(slice.count).toBe(2); // one entry always, then the next 0-byte one still fits
    expect(Array.from(log.slice(4, 6, 0).ends)).toEqual([0, 0]);
    log.compactTo(3);
    expect(log.payloadBytes()).toBe(0);
    log.checkInvariants();
  });

  it('returns payloads as views, not copies', () => {
    const log = make();
    log.append(batch(1, [1, 1], [100, 100]));
    const a = log.payloadAt(1);
    const b = log.payloadAt(2);
    expect(a.buffer).toBe(b.buffer);
    expect(b.byteOffset - a.byteOffset).toBe(100);
  });

  it('holds payloads of several MiB and grows across many pages', () => {
    const log = make({ entriesInitial: 16, payloadBytesInitial: 1 });
    const sizes = [3 * 1024 * 1024, 0, 5 * 1024 * 1024 + 7, 1];
    log.append(batch(1, [1, 1, 2, 2], sizes));
    const memoryBefore = log.memoryBytes();
    // Many entries: the entry arrays grow from 16 slots through many doublings.
    const builder = new EntryBatchBuilder(5, 70_000, 70_000 * 8);
    for (let i = 0; i < 70_000; i++)
      builder.add(3 + (i >> 14), EntryType.Normal, patternPayload(8, i));
    log.append(builder.finish());
    expect(log.memoryBytes()).toBeGreaterThan(memoryBefore);
    expect(log.lastIndex()).toBe(70_004);
    for (const [k, size] of sizes.entries()) {
      expect(Buffer.compare(log.payloadAt(k + 1), patternPayload(size, 1 + k))).toBe(0);
    }
    for (const i of [0, 1, 16_383, 16_384, 50_000, 69_999]) {
      expect(log.termAt(5 + i)).toBe(3 + (i >> 14));
      expect(Buffer.compare(log.payloadAt(5 + i), patternPayload(8, i))).toBe(0);
    }
    expect(log.payloadBytes()).toBe(sizes.reduce((x, y) => x + y) + 70_000 * 8);
    // maxBytes stops a slice early but never below one entry.
    expect(log.slice(1, 5, 0).count).toBe(1);
    expect(log.slice(1, 5, 3 * 1024 * 1024).count).toBe(2);
    expect(log.slice(1, 5, 8 * 1024 * 1024 + 7).count).toBe(3);
    // Compact past the big payloads, keep appending: the dead prefix is reclaimed lazily.
    log.compactTo(20_000);
    for (let round = 0; round < 5; round++) {
      const more = new EntryBatchBuilder(log.lastIndex() + 1, 30_000);
      for (let i = 0; i < 30_000; i++) more.add(10 + round, EntryType.Noop, new Uint8Array(0));
      log.append(more.finish());
      log.compactTo(log.lastIndex() - 25_000);
    }
    expect(log.termAt(log.lastIndex())).toBe(14);
    expect(log.termAt(log.firstIndex() - 1)).toBe(14);
    log.checkInvariants();
  });

  it('scans overlaps longer than the WASM stage in chunks', () => {
    const log = make();
    const n = 20_000;
    const terms = Array.from({ length: n }, (_, i) => 1 + Math.floor(i / 1000));
    log.append(batch(1, terms, []));
    // Agreeing for 17,000 entries (past two 8,192-term chunks), then a new term.
    const incoming = terms.slice(0, 19_000).map((term, i) => (i < 17_000 ? term : 99));
    expect(log.matchAndAppend(0, 0, batch(1, incoming))).toEqual({
      ok: true,
      lastNewIndex: 19_000,
      firstWrittenIndex: 17_001,
    });
    expect(log.lastIndex()).toBe(19_000);
    expect(log.termAt(17_000)).toBe(17);
    expect(log.termAt(17_001)).toBe(99);
    expect(log.matchAndAppend(0, 0, batch(1, incoming))).toEqual({
      ok: true,
      lastNewIndex: 19_000,
      firstWrittenIndex: 0,
    });
    log.checkInvariants();
  });

  it('throws LogFullError past memoryBytesMax and leaves the log unchanged', () => {
    const log = make({ entriesInitial: 16, payloadBytesInitial: 1, memoryBytesMax: 1024 * 1024 });
    log.append(batch(1, [1, 1, 1, 1], [1000, 1000, 1000, 1000]));
    const before = snapshotOf(log);
    let error: unknown;
    try {
      log.append(batch(5, [1], [2 * 1024 * 1024]));
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(LogFullError);
    expect(error).toBeInstanceOf(PhantomError);
    expect((error as PhantomError).code).toBe('STORAGE_FAILED');
    expect((error as Error).message).toMatch(
      /^Cannot append 1 entries of 2097152 payload bytes: the log would need \d+ bytes of memory, above its limit of 1048576/,
    );
    // A match that would truncate at entry 3 and then not fit: the truncation is undone too.
    expect(() => log.matchAndAppend(2, 1, batch(3, [2], [2 * 1024 * 1024]))).toThrow(LogFullError);
    expect(snapshotOf(log)).toEqual(before);
    // Up to the limit, doubling gives way to exactly what is needed.
    log.append(batch(5, [1], [700 * 1024]));
    expect(log.payloadAt(5).length).toBe(700 * 1024);
    log.checkInvariants();
  });

  describe('bad arguments throw a typed error and change nothing', () => {
    const cases: [
      string,
      (log: TestLog) => unknown,
      ErrorConstructor | RangeErrorConstructor | TypeErrorConstructor,
    ][] = [
      ['append at a gap', (log) => log.append(batch(12, [5])), RangeError],
      ['append overlapping', (log) => log.append(batch(10, [5])), RangeError],
      ['append term 0', (log) => log.append(batch(11, [0])), RangeError],
      ['append fractional term', (log) => log.append(batch(11, [1.5])), RangeError],
      [
        'append with a payload end past the data',
        (log) => log.append({ ...batch(11, [5, 5], [2, 2]), data: new Uint8Array(3) }),
        RangeError,
      ],
      [
        'append with an unknown type in the last entry',
        (log) => {
          const b = batch(11, [5, 5, 5]);
          const types = b.types.slice();
          types[2] = 7;
          return log.append({ ...b, types });
        },
        RangeError,
      ],
      [
        'append with short arrays',
        (log) => log.append({ ...batch(11, [5, 5]), terms: new Float64Array(1) }),
        RangeError,
      ],
      ['append a non-batch', (log) => log.append({} as EntryBatch), TypeError],
      ['append null', (log) => log.append(null as unknown as EntryBatch), TypeError],
      [
        'match at negative prevIndex',
        (log) => log.matchAndAppend(-1, 0, batch(1, [1])),
        RangeError,
      ],
      [
        'match at fractional prevIndex',
        (log) => log.matchAndAppend(1.5, 1, batch(2, [1])),
        RangeError,
      ],
      ['match with NaN term', (log) => log.matchAndAppend(4, NaN, batch(5, [1])), RangeError],
      [
        'match with a string index',
        (log) => log.matchAndAppend('4' as unknown as number, 1, batch(5, [1])),
        TypeError,
      ],
      [
        'match a batch at the wrong index',
        (log) => log.matchAndAppend(4, 1, batch(6, [1])),
        RangeError,
      ],
      [
        'match below the compaction point',
        (log) => log.matchAndAppend(2, 1, batch(3, [1])),
        RangeError,
      ],
      [
        'match an inconsistent batch',
        (log) => log.matchAndAppend(6, 2, { ...batch(7, [9, 9]), ends: new Uint32Array([5, 1]) }),
        RangeError,
      ],
      ['truncate at -1', (log) => log.truncateFrom(-1), RangeError],
      ['truncate at NaN', (log) => log.truncateFrom(NaN), RangeError],
      ['truncate into the compacted part', (log) => log.truncateFrom(3), RangeError],
      ['truncate past the end', (log) => log.truncateFrom(12), RangeError],
      ['compact past the end', (log) => log.compactTo(11), RangeError],
      ['compact at 2.5', (log) => log.compactTo(2.5), RangeError],
      ['reset to term 0 at index 3', (log) => log.reset(3, 0), RangeError],
      ['reset to term 2 at index 0', (log) => log.reset(0, 2), RangeError],
      ['reset to a negative index', (log) => log.reset(-4, 1), RangeError],
      ['slice backwards', (log) => log.slice(8, 6, 10), RangeError],
      ['slice past the end', (log) => log.slice(8, 12, 10), RangeError],
      ['slice the compacted part', (log) => log.slice(3, 6, 10), RangeError],
      ['slice with negative maxBytes', (log) => log.slice(5, 6, -1), RangeError],
      ['slice with NaN maxBytes', (log) => log.slice(5, 6, NaN), RangeError],
      ['read the term of NaN', (log) => log.termAt(NaN), RangeError],
      ['read the term of 5.5', (log) => log.termAt(5.5), RangeError],
      ['read the term of a string', (log) => log.termAt('5' as unknown as number), TypeError],
      ['read the term past the end', (log) => log.termAt(11), RangeError],
      ['read the type at the compaction point', (log) => log.typeAt(3), RangeError],
      ['read the payload of -1', (log) => log.payloadAt(-1), RangeError],
    ];
    it.each(cases)('%s', (_name, call, errorClass) => {
      const log = make();
      log.append(batch(1, [1, 1, 1, 2, 2, 2, 3, 3, 3, 3]));
      log.compactTo(3);
      const before = snapshotOf(log);
      expect(() => call(log)).toThrow(errorClass);
      expect(snapshotOf(log)).toEqual(before);
      log.checkInvariants();
    });

    it('rejects bad sizing options', () => {
      expect(() => make({ entriesInitial: 0 })).toThrow(RangeError);
      expect(() => make({ payloadBytesInitial: -1 })).toThrow(RangeError);
      expect(() => make({ memoryBytesMax: 1000 })).toThrow(RangeError);
    });
  });
});
