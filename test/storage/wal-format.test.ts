// The WAL record and snapshot file formats: fast-check round trips of random batches split at
// random record sizes, and every single-byte flip of a segment or snapshot file is caught —
// as a torn tail only inside the last record of the last segment, as CORRUPT_LOG otherwise.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { StorageError } from '../../src/errors.js';
import { EntryBatchBuilder, payloadOf } from '../../src/raft/batch.js';
import type { EntryBatch, EntryType } from '../../src/raft/batch.js';
import { decodeSnapshotFile, encodeSnapshotFile } from '../../src/storage/snapshot-file.js';
import {
  RecordEncoder,
  RecordType,
  decodeEntries,
  decodeHardState,
  decodeSegmentHeader,
  decodeSnapshotRecord,
  hardStateRecordBytes,
  planEntriesRecords,
  scanSegment,
  segmentHeaderBytes,
  snapshotRecordBytes,
} from '../../src/storage/wal-format.js';
import type { ScannedRecord } from '../../src/storage/wal-format.js';

const entryArbitrary = fc.record({
  term: fc.integer({ min: 1, max: 2 ** 40 }),
  type: fc.constantFrom<EntryType>(0, 1, 2),
  payload: fc.uint8Array({ maxLength: 300 }),
});

function batchOf(
  firstIndex: number,
  entries: readonly { term: number; type: EntryType; payload: Uint8Array }[],
): EntryBatch {
  const builder = new EntryBatchBuilder(firstIndex);
  for (const entry of entries) builder.add(entry.term, entry.type, entry.payload);
  return builder.finish();
}

function encodeBatch(batch: EntryBatch, recordBytesMax: number): Uint8Array {
  const plan = planEntriesRecords(batch, recordBytesMax);
  const encoder = new RecordEncoder(plan.bytes);
  let from = batch.firstIndex;
  for (const to of plan.runEnds) {
    encoder.entries(batch, from, to);
    from = to;
  }
  expect(encoder.length).toBe(plan.bytes);
  return encoder.bytes;
}

function scanAll(
  bytes: Uint8Array,
  isLast: boolean,
): { records: ScannedRecord[]; torn: ReturnType<typeof scanSegment> } {
  const records: ScannedRecord[] = [];
  const torn = scanSegment(bytes, 'seg.wal', isLast, (record) => records.push(record));
  return { records, torn };
}

describe('WAL records', () => {
  it('round-trips random batches split at random record sizes', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 ** 40 }),
        fc.array(entryArbitrary, { maxLength: 40 }),
        fc.integer({ min: 1, max: 4000 }),
        (firstIndex, entries, recordBytesMax) => {
          const batch = batchOf(firstIndex, entries);
          const bytes = encodeBatch(batch, recordBytesMax);
          const { records, torn } = scanAll(bytes, false);
          expect(torn).toBeNull();
          let index = firstIndex;
          for (const record of records) {
            expect(record.type).toBe(RecordType.Entries);
            const decoded = decodeEntries(bytes, record, 'seg.wal');
            expect(decoded.firstIndex).toBe(index);
            // A record stays within the bound unless it holds a single entry that alone is larger.
            if (decoded.count > 1)
              expect(record.payloadBytes).toBeLessThanOrEqual(Math.max(recordBytesMax, 16));
            for (let k = 0; k < decoded.count; k++) {
              const original = entries[index - firstIndex + k]!;
              expect(decoded.terms[k]).toBe(original.term);
              expect(decoded.types[k]).toBe(original.type);
              expect(payloadOf(decoded, k)).toEqual(original.payload);
            }
            index += decoded.count;
          }
          expect(index).toBe(firstIndex + entries.length);
          // An empty batch is one empty record: it still says where the log is cut.
          if (entries.length === 0) expect(records).toHaveLength(1);
        },
      ),
    );
  });

  it('round-trips hard states, snapshot records and segment headers', () => {
    fc.assert(
      fc.property(
        fc.nat({ max: Number.MAX_SAFE_INTEGER }),
        fc.nat({ max: Number.MAX_SAFE_INTEGER }),
        fc.string({ unit: 'grapheme', maxLength: 20 }),
        fc.nat({ max: 2 ** 32 }),
        (term, commit, vote, seq) => {
          const hardState = { term, vote, commit };
          const encoder = new RecordEncoder(
            segmentHeaderBytes(hardState) +
              hardStateRecordBytes(hardState) +
              2 * snapshotRecordBytes,
          );
          encoder.segmentHeader({ seq, snapshotIndex: commit, snapshotTerm: term, hardState });
          encoder.hardState(hardState);
          encoder.snapshot(RecordType.SnapshotMark, commit, term);
          encoder.snapshot(RecordType.SnapshotInstall, term, commit);
          const { records } = scanAll(encoder.bytes, false);
          expect(records.map((record) => record.type)).toEqual([
            RecordType.SegmentHeader,
            RecordType.HardState,
            RecordType.SnapshotMark,
            RecordType.SnapshotInstall,
          ]);
          expect(decodeSegmentHeader(encoder.bytes, records[0]!, 'f')).toEqual({
            seq,
            snapshotIndex: commit,
            snapshotTerm: term,
            hardState,
          });
          expect(decodeHardState(encoder.bytes, records[1]!, 'f')).toEqual(hardState);
          expect(decodeSnapshotRecord(encoder.bytes, records[2]!, 'f')).toEqual({
            index: commit,
            term,
          });
          expect(decodeSnapshotRecord(encoder.bytes, records[3]!, 'f')).toEqual({
            index: term,
            term: commit,
          });
        },
      ),
    );
  });

  it('catches every single-byte flip: torn only inside the last record of the last segment', () => {
    const hardState = { term: 7, vote: 'node-1', commit: 3 };
    const batch = batchOf(1, [
      { term: 7, type: 0, payload: new Uint8Array([1, 2, 3]) },
      { term: 7, type: 1, payload: new Uint8Array(0) },
    ]);
    const entries = encodeBatch(batch, 1 << 20);
    const encoder = new RecordEncoder(
      segmentHeaderBytes(hardState) + hardStateRecordBytes(hardState),
    );
    encoder.segmentHeader({ seq: 1, snapshotIndex: 0, snapshotTerm: 0, hardState });
    encoder.hardState(hardState);
    const segment = new Uint8Array(encoder.length + entries.length);
    segment.set(encoder.bytes);
    segment.set(entries, encoder.length);
    const { records } = scanAll(segment, true);
    const lastStart = records[records.length - 1]!.offset;

    for (let at = 0; at < segment.length; at++) {
      for (const bit of [0x01, 0x80]) {
        const damaged = segment.slice();
        damaged[at]! ^= bit;
        const start = records.findLast((record) => record.offset <= at)!.offset;
        // Not the last segment: always an error naming the record's offset.
        expect(() => scanAll(damaged, false)).toThrow(`seg.wal is corrupt at byte ${start}`);
        // The last segment: a flip in its last record looks like a torn write and is cut there;
        // anywhere else it is an error.
        if (start === lastStart) {
          const { records: kept, torn } = scanAll(damaged, true);
          expect(torn?.offset).toBe(lastStart);
          expect(kept).toEqual(records.slice(0, -1));
        } else {
          let error: unknown = null;
          try {
            scanAll(damaged, true);
          } catch (caught) {
            error = caught;
          }
          // A flip in a length field can make a record seem to run past the end: torn at it.
          if (error === null) {
            expect(scanAll(damaged, true).torn?.offset).toBe(start);
          } else {
            expect(error).toBeInstanceOf(StorageError);
            expect((error as StorageError).code).toBe('CORRUPT_LOG');
            expect((error as StorageError).message).toContain(
              `seg.wal is corrupt at byte ${start}`,
            );
          }
        }
      }
    }
  });
});

describe('snapshot files', () => {
  it('round-trips and catches every single-byte flip', () => {
    const snapshot = {
      meta: {
        index: 42,
        term: 5,
        conf: { voters: ['a', 'b'], votersOutgoing: ['c'], learners: ['d'] },
      },
      data: new TextEncoder().encode('the state machine'),
    };
    const chunks = encodeSnapshotFile(snapshot);
    const file = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
    let at = 0;
    for (const chunk of chunks) {
      file.set(chunk, at);
      at += chunk.length;
    }
    expect(decodeSnapshotFile(file, 's.snap')).toEqual(snapshot);
    for (let i = 0; i < file.length; i++) {
      const damaged = file.slice();
      damaged[i]! ^= 0x04;
      expect(() => decodeSnapshotFile(damaged, 's.snap')).toThrow(
        /^Cannot read snapshot s\.snap: /,
      );
    }
    expect(() => decodeSnapshotFile(file.subarray(0, file.length - 1), 's.snap')).toThrow(
      StorageError,
    );
  });
});
