/**
 * LogReplayer: applies the entries records of the WAL, in order, to an in-memory log that starts
 * at a snapshot.
 *
 * Each entries record replaces whatever the log held from its first index on. Replayed from a
 * snapshot at `base`, a record's part at or below the base is already in the snapshot, but the
 * record still cuts off everything after it (an overwrite below the base dropped the entries
 * above the base too; a later record writes them again).
 *
 * A lightly loaded leader writes one entry per record, so a log of a million entries can be a
 * million records. Small records that extend the log are therefore copied into one staging batch
 * (read through typed-array views over the whole segment, no allocation per record) and handed
 * to the log in large appends; big records go to the log directly as views of the segment.
 */
import { sliceBatch } from '../raft/batch.js';
import type { EntryBatch } from '../raft/batch.js';
import { EntryType } from '../raft/batch.js';
import type { LogStore } from '../raft/types.js';
import {
  corruptLog,
  decodeEntries,
  entriesHeaderBytes,
  entriesPayloadBytes,
} from './wal-format.js';
import type { ScannedRecord } from './wal-format.js';

/** A segment's bytes with the typed views replay reads records through. */
export interface SegmentBytes {
  readonly path: string;
  /** The whole segment; `byteOffset` is a multiple of 8. */
  readonly bytes: Uint8Array;
  readonly f64: Float64Array;
  readonly u32: Uint32Array;
}

/** Views over `bytes` (which must start 8-aligned) for {@link LogReplayer}. */
export function segmentBytes(path: string, bytes: Uint8Array): SegmentBytes {
  return {
    path,
    bytes,
    f64: new Float64Array(bytes.buffer, bytes.byteOffset, Math.floor(bytes.length / 8)),
    u32: new Uint32Array(bytes.buffer, bytes.byteOffset, Math.floor(bytes.length / 4)),
  };
}

/** Records up to this many entries and bytes are staged; bigger ones are appended directly. */
const stagedEntriesMax = 256;
const stagedBytesMax = 64 * 1024;
/** The staging batch grows up to these sizes, then is handed to the log. */
const stageEntriesMax = 8192;
const stageBytesMax = 1024 * 1024;

/** Replays entries records into a log; call {@link LogReplayer.finish} at the end. */
export class LogReplayer {
  // Small at first (most logs replayed in tests and on small nodes are short), grown by doubling.
  private terms = new Float64Array(256);
  private types = new Uint8Array(256);
  private ends = new Uint32Array(256);
  private data = new Uint8Array(16 * 1024);
  /** Staged entries start at `log.lastIndex() + 1`. */
  private stagedCount = 0;
  private stagedBytes = 0;

  constructor(
    private readonly log: LogStore,
    /** The snapshot replay starts from (index 0 when none). */
    private readonly baseIndex: number,
  ) {}

  /** Index of the last entry replayed so far. */
  lastIndex(): number {
    return this.log.lastIndex() + this.stagedCount;
  }

  /**
   * Applies one entries record (already checksummed) of `segment`; returns its last index.
   * Throws StorageError CORRUPT_LOG when the record is malformed or leaves a gap.
   */
  entries(segment: SegmentBytes, record: ScannedRecord): number {
    const { bytes, f64, u32, path } = segment;
    const at = record.payloadStart;
    if (record.payloadBytes < entriesHeaderBytes)
      throw corruptLog(path, record.offset, 'entries record too short');
    const first = f64[at / 8]!;
    const count = u32[at / 4 + 2]!;
    const dataBytes = u32[at / 4 + 3]!;
    if (entriesPayloadBytes(count, dataBytes) !== record.payloadBytes) {
      throw corruptLog(
        path,
        record.offset,
        `entries record of ${record.payloadBytes} bytes claims ${count} entries and ${dataBytes} data bytes`,
      );
    }
    if (!Number.isSafeInteger(first) || first < 1) {
      throw corruptLog(path, record.offset, `entries record starts at index ${first}`);
    }
    const last = first + count - 1;
    const base = this.baseIndex;

    if (first <= base) {
      this.flush();
      this.cutToBase();
      if (last > base) {
        const batch = decodeEntries(bytes, record, path);
        this.log.append(sliceBatch(batch, base + 1, last + 1));
      }
      return last;
    }
    const logLast = this.lastIndex();
    if (first > logLast + 1) {
      throw corruptLog(
        path,
        record.offset,
        `entries start at index ${first} but the log ends at ${logLast}`,
      );
    }
    if (first <= logLast) {
      // An overwrite (a new leader's entries): drop the old suffix first.
      this.flush();
      this.log.truncateFrom(first);
    }
    if (count === 0) return last;
    if (count > stagedEntriesMax || dataBytes > stagedBytesMax) {
      this.flush();
      this.log.append(decodeEntries(bytes, record, path));
      return last;
    }
    if (
      this.stagedCount + count > stageEntriesMax ||
      this.stagedBytes + dataBytes > stageBytesMax
    ) {
      this.flush();
    }
    this.reserve(this.stagedCount + count, this.stagedBytes + dataBytes);
    this.stage(segment, record, at, count, dataBytes);
    return last;
  }

  /** An install record at or below the base: everything after the base goes. */
  cutToBase(): void {
    this.flush();
    if (this.log.lastIndex() > this.baseIndex) this.log.truncateFrom(this.baseIndex + 1);
  }

  /** Hands what is staged to the log. */
  finish(): void {
    this.flush();
  }

  private stage(
    segment: SegmentBytes,
    record: ScannedRecord,
    at: number,
    count: number,
    dataBytes: number,
  ): void {
    const { bytes, f64, u32, path } = segment;
    const termsAt = (at + entriesHeaderBytes) / 8;
    const endsAt = (at + entriesHeaderBytes) / 4 + 2 * count;
    const typesAt = at + entriesHeaderBytes + 12 * count;
    const index = this.lastIndex() + 1;
    let previousEnd = 0;
    for (let k = 0; k < count; k++) {
      const term = f64[termsAt + k]!;
      const type = bytes[typesAt + k]!;
      const end = u32[endsAt + k]!;
      if (!Number.isSafeInteger(term) || term < 1) {
        throw corruptLog(path, record.offset, `entry ${index + k} has term ${term}`);
      }
      if (type > EntryType.ConfChange) {
        throw corruptLog(path, record.offset, `entry ${index + k} has unknown type ${type}`);
      }
      if (end < previousEnd || end > dataBytes) {
        throw corruptLog(
          path,
          record.offset,
          `entry ${index + k} ends at byte ${end}, outside ${previousEnd}..${dataBytes}`,
        );
      }
      previousEnd = end;
      const slot = this.stagedCount + k;
      this.terms[slot] = term;
      this.types[slot] = type;
      this.ends[slot] = this.stagedBytes + end;
    }
    if (previousEnd !== dataBytes) {
      throw corruptLog(path, record.offset, `payloads end at ${previousEnd}, not ${dataBytes}`);
    }
    const dataAt = typesAt + count;
    this.data.set(bytes.subarray(dataAt, dataAt + dataBytes), this.stagedBytes);
    this.stagedCount += count;
    this.stagedBytes += dataBytes;
  }

  private reserve(entries: number, bytes: number): void {
    if (entries > this.terms.length) {
      const capacity = Math.min(stageEntriesMax, Math.max(entries, 2 * this.terms.length));
      this.terms = grown(this.terms, new Float64Array(capacity), this.stagedCount);
      this.types = grown(this.types, new Uint8Array(capacity), this.stagedCount);
      this.ends = grown(this.ends, new Uint32Array(capacity), this.stagedCount);
    }
    if (bytes > this.data.length) {
      const capacity = Math.min(stageBytesMax, Math.max(bytes, 2 * this.data.length));
      this.data = grown(this.data, new Uint8Array(capacity), this.stagedBytes);
    }
  }

  private flush(): void {
    if (this.stagedCount === 0) return;
    const batch: EntryBatch = {
      firstIndex: this.log.lastIndex() + 1,
      count: this.stagedCount,
      terms: this.terms.subarray(0, this.stagedCount),
      types: this.types.subarray(0, this.stagedCount),
      ends: this.ends.subarray(0, this.stagedCount),
      data: this.data.subarray(0, this.stagedBytes),
    };
    this.stagedCount = 0;
    this.stagedBytes = 0;
    this.log.append(batch);
  }
}

function grown<T extends Float64Array | Uint8Array | Uint32Array>(from: T, to: T, used: number): T {
  to.set(from.subarray(0, used));
  return to;
}
