/**
 * The on-disk format of write-ahead-log segments: framed, checksummed records.
 *
 * A segment is a run of records. Each record is a 16-byte header and a payload padded with
 * zeros to a multiple of 8 bytes, so every record (and the `Float64Array` of terms inside an
 * entries record) starts 8-aligned and replay can view entries in place, without copying:
 *
 * ```
 * 0   u32 crc32 of bytes [4, 16 + padded payload)   (covers length, type, payload, padding)
 * 4   u32 payload length in bytes (unpadded)
 * 8   u8  record type ({@link RecordType})
 * 9   7 bytes zero
 * 16  payload, then zero padding to a multiple of 8
 * ```
 *
 * The first record of every segment is a {@link RecordType.SegmentHeader}: it names the
 * segment's sequence number and repeats the hard state and the snapshot in force when the
 * segment was started, so older segments can be deleted without losing either. All numbers
 * are little-endian; Raft indexes and terms are stored as f64 (exact up to 2^53, like the
 * `EntryBatch` arrays they come from).
 */
import { crc32 } from 'node:zlib';
import { describeBatchProblem, payloadStartOf } from '../raft/batch.js';
import type { EntryBatch } from '../raft/batch.js';
import type { HardState } from '../raft/types.js';
import { transientZeroedBytes, utf8ByteLength, writeUtf8 } from '../bytes.js';
import { StorageError } from '../errors.js';

/** What a WAL record holds. Stored as one byte; values are part of the on-disk format. */
export const RecordType = {
  /** First record of a segment: sequence number, snapshot in force, hard state. */
  SegmentHeader: 1,
  /** A run of entries; replaces whatever the log held from its first index on. */
  Entries: 2,
  /** Term, vote and commit. The last one wins. */
  HardState: 3,
  /** A snapshot file became durable (local snapshot); certifies the file, log unchanged. */
  SnapshotMark: 4,
  /** A snapshot from the leader was installed: certifies the file and empties the log at it. */
  SnapshotInstall: 5,
} as const;
/** One of {@link RecordType}'s values. */
export type RecordType = (typeof RecordType)[keyof typeof RecordType];

/** Bytes of a record header. */
export const recordHeaderBytes = 16;
/** Version written into segment headers; a reader refuses any other. */
export const walFormatVersion = 1;
/** "PHNTMWAL" in ASCII: the first 8 payload bytes of a segment header. */
const segmentMagic = new Uint8Array([0x50, 0x48, 0x4e, 0x54, 0x4d, 0x57, 0x41, 0x4c]);
/** Bytes of an entries record's payload before the per-entry arrays: first index, count, data bytes. */
export const entriesHeaderBytes = 16;
/** Per entry in an entries record: term (8) + end offset (4) + type (1). */
const entryOverheadBytes = 13;
const textDecoder = new TextDecoder('utf-8', { fatal: true });

/** True on little-endian hosts, where typed arrays already have the on-disk byte order. */
export const hostIsLittleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function align8(bytes: number): number {
  // Arithmetic, not `& ~7`: a damaged length field can be >= 2^31, past int32 bit operations.
  return Math.ceil(bytes / 8) * 8;
}

/** Bytes a record with `payloadBytes` of payload takes in a segment. */
export function recordBytesOf(payloadBytes: number): number {
  return recordHeaderBytes + align8(payloadBytes);
}

/**
 * Builds records into one contiguous buffer. Sizes are computed up front by the caller so the
 * buffer is allocated once; each `begin*` returns the payload offset to fill.
 */
export class RecordEncoder {
  readonly bytes: Uint8Array;
  private readonly view: DataView;
  private offset = 0;

  constructor(totalBytes: number) {
    // Written out and dropped; zeroed, as padding and spare header bytes are not written.
    this.bytes = transientZeroedBytes(totalBytes);
    this.view = new DataView(this.bytes.buffer, this.bytes.byteOffset, totalBytes);
  }

  /** Bytes filled so far. */
  get length(): number {
    return this.offset;
  }

  private begin(type: RecordType, payloadBytes: number): number {
    const start = this.offset;
    this.view.setUint32(start + 4, payloadBytes, true);
    this.bytes[start + 8] = type;
    this.offset = start + recordBytesOf(payloadBytes);
    return start + recordHeaderBytes;
  }

  private seal(recordStart: number): void {
    const crc = crc32(this.bytes.subarray(recordStart + 4, this.offset));
    this.view.setUint32(recordStart, crc, true);
  }

  /** Appends a hard state record. */
  hardState(hardState: HardState): void {
    const start = this.offset;
    const at = this.begin(RecordType.HardState, hardStatePayloadBytes(hardState.vote));
    writeHardState(this.view, this.bytes, at, hardState);
    this.seal(start);
  }

  /** Appends a snapshot mark or install record. */
  snapshot(
    type: typeof RecordType.SnapshotMark | typeof RecordType.SnapshotInstall,
    index: number,
    term: number,
  ): void {
    const start = this.offset;
    const at = this.begin(type, 16);
    this.view.setFloat64(at, index, true);
    this.view.setFloat64(at + 8, term, true);
    this.seal(start);
  }

  /** Appends a segment header. */
  segmentHeader(header: SegmentHeader): void {
    const start = this.offset;
    const at = this.begin(
      RecordType.SegmentHeader,
      40 + hardStatePayloadBytes(header.hardState.vote),
    );
    this.bytes.set(segmentMagic, at);
    this.view.setUint32(at + 8, walFormatVersion, true);
    this.view.setFloat64(at + 16, header.seq, true);
    this.view.setFloat64(at + 24, header.snapshotIndex, true);
    this.view.setFloat64(at + 32, header.snapshotTerm, true);
    writeHardState(this.view, this.bytes, at + 40, header.hardState);
    this.seal(start);
  }

  /** Appends entries `from .. to - 1` (log indexes) of `batch` as one record. */
  entries(batch: EntryBatch, from: number, to: number): void {
    const start = this.offset;
    const lo = from - batch.firstIndex;
    const hi = to - batch.firstIndex;
    const count = hi - lo;
    const base = payloadStartOf(batch, lo);
    const dataBytes = (count === 0 ? base : batch.ends[hi - 1]!) - base;
    const at = this.begin(RecordType.Entries, entriesPayloadBytes(count, dataBytes));
    this.view.setFloat64(at, from, true);
    this.view.setUint32(at + 8, count, true);
    this.view.setUint32(at + 12, dataBytes, true);
    const termsAt = at + entriesHeaderBytes;
    const endsAt = termsAt + 8 * count;
    const typesAt = endsAt + 4 * count;
    const { view, bytes } = this;
    if (count <= 16) {
      // Typed-array views cost an allocation each; a handful of entries is cheaper by hand.
      for (let k = 0; k < count; k++) {
        view.setFloat64(termsAt + 8 * k, batch.terms[lo + k]!, true);
        view.setUint32(endsAt + 4 * k, batch.ends[lo + k]! - base, true);
        bytes[typesAt + k] = batch.types[lo + k]!;
      }
    } else {
      new Float64Array(bytes.buffer, bytes.byteOffset + termsAt, count).set(
        batch.terms.subarray(lo, hi),
      );
      const ends = new Uint32Array(bytes.buffer, bytes.byteOffset + endsAt, count);
      for (let k = 0; k < count; k++) ends[k] = batch.ends[lo + k]! - base;
      bytes.set(batch.types.subarray(lo, hi), typesAt);
    }
    bytes.set(batch.data.subarray(base, base + dataBytes), typesAt + count);
    this.seal(start);
  }
}

function hardStatePayloadBytes(vote: string): number {
  return 20 + utf8ByteLength(vote);
}

/** The vote is written in place: the record buffer is a pool slice (see RecordEncoder). */
function writeHardState(view: DataView, bytes: Uint8Array, at: number, hardState: HardState): void {
  view.setFloat64(at, hardState.term, true);
  view.setFloat64(at + 8, hardState.commit, true);
  view.setUint32(at + 16, writeUtf8(hardState.vote, bytes, at + 20), true);
}

/** Record bytes of a hard state record. */
export function hardStateRecordBytes(hardState: HardState): number {
  return recordBytesOf(hardStatePayloadBytes(hardState.vote));
}

/** Record bytes of a snapshot mark or install record. */
export const snapshotRecordBytes = recordBytesOf(16);

/** Record bytes of a segment header. */
export function segmentHeaderBytes(hardState: HardState): number {
  return recordBytesOf(40 + hardStatePayloadBytes(hardState.vote));
}

/** Payload bytes of an entries record of `count` entries and `dataBytes` of payloads. */
export function entriesPayloadBytes(count: number, dataBytes: number): number {
  return entriesHeaderBytes + entryOverheadBytes * count + dataBytes;
}

/**
 * Splits `batch` into runs of entries whose record payload stays within `recordBytesMax`
 * (a run holds at least one entry; an empty batch is one empty run). Returns the log index where each run ends (exclusive) and
 * the record bytes they take in total.
 */
export function planEntriesRecords(
  batch: EntryBatch,
  recordBytesMax: number,
): { readonly runEnds: number[]; readonly bytes: number } {
  const runEnds: number[] = [];
  let bytes = 0;
  let runStart = 0;
  let runPayload = entriesHeaderBytes;
  for (let k = 0; k < batch.count; k++) {
    const entryBytes = entryOverheadBytes + batch.ends[k]! - payloadStartOf(batch, k);
    if (k > runStart && runPayload + entryBytes > recordBytesMax) {
      runEnds.push(batch.firstIndex + k);
      bytes += recordBytesOf(runPayload);
      runStart = k;
      runPayload = entriesHeaderBytes;
    }
    runPayload += entryBytes;
  }
  // An empty batch still means "replace everything from firstIndex on": one empty record.
  runEnds.push(batch.firstIndex + batch.count);
  bytes += recordBytesOf(runPayload);
  return { runEnds, bytes };
}

/** What a segment header says. */
export interface SegmentHeader {
  readonly seq: number;
  /** The snapshot in force when the segment was started (0, 0 when none). */
  readonly snapshotIndex: number;
  readonly snapshotTerm: number;
  /** The hard state when the segment was started. */
  readonly hardState: HardState;
}

/** Where a scan found the tail of the last segment cut short. */
export interface TornTail {
  /** Offset of the first byte that does not belong to a complete, valid record. */
  readonly offset: number;
  readonly reason: string;
}

/** A record found by {@link scanSegment}: its type, where it starts, its payload. */
export interface ScannedRecord {
  readonly type: RecordType;
  readonly offset: number;
  readonly payloadStart: number;
  readonly payloadBytes: number;
}

/** The error replay stops with: names the file and the byte offset. */
export function corruptLog(file: string, offset: number, problem: string): StorageError {
  return new StorageError(
    'CORRUPT_LOG',
    `Cannot recover the log: ${file} is corrupt at byte ${offset}: ${problem}`,
  );
}

/**
 * Walks the records of one segment, checking each frame and checksum, and calls `onRecord`
 * for each valid record in order. In the last segment, a record cut short by a crash (its
 * frame runs past the end of the file, or it is the final record and its checksum fails, or
 * only zeros follow, or its checksum fails over a sector of zeros) ends the scan and is
 * returned as a {@link TornTail}; anything else wrong,
 * anywhere, throws StorageError CORRUPT_LOG naming `file` and the byte offset.
 */
export function scanSegment(
  bytes: Uint8Array,
  file: string,
  isLast: boolean,
  onRecord: (record: ScannedRecord) => void,
): TornTail | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const size = bytes.length;
  let offset = 0;
  // Declared once, not per record: replay calls this a million times for a million records.
  const torn = (reason: string): TornTail => {
    if (!isLast) throw corruptLog(file, offset, `${reason} (not the last segment)`);
    return { offset, reason };
  };
  while (offset < size) {
    if (size - offset < recordHeaderBytes) {
      return torn(`${size - offset} bytes left, less than a record header`);
    }
    const payloadBytes = view.getUint32(offset + 4, true);
    const end = offset + recordBytesOf(payloadBytes);
    if (end > size) {
      return torn(`a record of ${payloadBytes} payload bytes runs past the end of the file`);
    }
    const stored = view.getUint32(offset, true);
    const actual = crc32(bytes.subarray(offset + 4, end));
    if (stored !== actual) {
      const problem = `checksum mismatch (stored ${hex(stored)}, computed ${hex(actual)})`;
      // The last record written, torn by a crash: nothing but zeros after it (the end of the
      // file, the size grown without the data, or a preallocated segment's unwritten room), or
      // a sector of zeros inside it: a write that never reached the disk although later ones
      // did (pages of a preallocated file are written back in any order). Either way no
      // fdatasync completed after it (one would have written every page), so nothing from
      // here on was acknowledged.
      if (isZero(bytes, end, size) || hasZeroSector(bytes, offset, end)) {
        return torn(problem);
      }
      throw corruptLog(file, offset, problem);
    }
    const type = bytes[offset + 8]!;
    if (type < RecordType.SegmentHeader || type > RecordType.SnapshotInstall) {
      throw corruptLog(file, offset, `unknown record type ${type}`);
    }
    onRecord({
      type: type as RecordType,
      offset,
      payloadStart: offset + recordHeaderBytes,
      payloadBytes,
    });
    offset = end;
  }
  return null;
}

/** The unit a disk writes whole (a torn write leaves whole sectors written or not). */
const sectorBytes = 512;

/**
 * Whether an aligned sector that starts in [from, max(to, from + sectorBytes)) holds only
 * zeros: a record's own bytes, or its header's when a hole cut it short.
 */
function hasZeroSector(bytes: Uint8Array, from: number, to: number): boolean {
  const limit = Math.max(to, from + sectorBytes);
  for (
    let sector = Math.ceil(from / sectorBytes) * sectorBytes;
    sector < limit && sector + sectorBytes <= bytes.length;
    sector += sectorBytes
  ) {
    if (isZero(bytes, sector, sector + sectorBytes)) return true;
  }
  return false;
}

/** Whether `bytes[from, to)` holds only zeros. */
export function isZero(bytes: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (bytes[i] !== 0) return false;
  return true;
}

function hex(value: number): string {
  return `0x${value.toString(16).padStart(8, '0')}`;
}

function readHardState(
  bytes: Uint8Array,
  view: DataView,
  at: number,
  end: number,
  file: string,
  offset: number,
): HardState {
  if (end - at < 20) throw corruptLog(file, offset, 'hard state payload too short');
  const term = view.getFloat64(at, true);
  const commit = view.getFloat64(at + 8, true);
  const voteBytes = view.getUint32(at + 16, true);
  if (at + 20 + voteBytes !== end) {
    throw corruptLog(file, offset, `hard state vote of ${voteBytes} bytes does not fit`);
  }
  if (!isIndex(term) || !isIndex(commit)) {
    throw corruptLog(file, offset, `hard state has term ${term}, commit ${commit}`);
  }
  let vote: string;
  try {
    vote = textDecoder.decode(bytes.subarray(at + 20, end));
  } catch {
    throw corruptLog(file, offset, 'hard state vote is not UTF-8');
  }
  return { term, vote, commit };
}

function isIndex(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0;
}

/** Decodes a hard state record's payload. */
export function decodeHardState(bytes: Uint8Array, record: ScannedRecord, file: string): HardState {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = record.payloadStart + record.payloadBytes;
  return readHardState(bytes, view, record.payloadStart, end, file, record.offset);
}

/** Decodes a segment header's payload. */
export function decodeSegmentHeader(
  bytes: Uint8Array,
  record: ScannedRecord,
  file: string,
): SegmentHeader {
  const at = record.payloadStart;
  if (record.payloadBytes < 60) throw corruptLog(file, record.offset, 'segment header too short');
  for (let i = 0; i < segmentMagic.length; i++) {
    if (bytes[at + i] !== segmentMagic[i]) {
      throw corruptLog(file, record.offset, 'not a PhantomDB WAL segment (bad magic)');
    }
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(at + 8, true);
  if (version !== walFormatVersion) {
    throw corruptLog(
      file,
      record.offset,
      `WAL format version ${version}, this build reads ${walFormatVersion}`,
    );
  }
  const seq = view.getFloat64(at + 16, true);
  const snapshotIndex = view.getFloat64(at + 24, true);
  const snapshotTerm = view.getFloat64(at + 32, true);
  if (!isIndex(seq) || !isIndex(snapshotIndex) || !isIndex(snapshotTerm)) {
    throw corruptLog(file, record.offset, 'segment header has a bad number');
  }
  const end = at + record.payloadBytes;
  const hardState = readHardState(bytes, view, at + 40, end, file, record.offset);
  return { seq, snapshotIndex, snapshotTerm, hardState };
}

/** Decodes a snapshot mark or install record's payload: (index, term). */
export function decodeSnapshotRecord(
  bytes: Uint8Array,
  record: ScannedRecord,
  file: string,
): { readonly index: number; readonly term: number } {
  if (record.payloadBytes !== 16) throw corruptLog(file, record.offset, 'bad snapshot record');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const index = view.getFloat64(record.payloadStart, true);
  const term = view.getFloat64(record.payloadStart + 8, true);
  if (!isIndex(index) || !isIndex(term)) {
    throw corruptLog(file, record.offset, `snapshot record has index ${index}, term ${term}`);
  }
  return { index, term };
}

/**
 * Decodes an entries record into a batch that views `bytes` in place (no copy): valid while
 * `bytes` is. `bytes.byteOffset` must be a multiple of 8.
 */
export function decodeEntries(bytes: Uint8Array, record: ScannedRecord, file: string): EntryBatch {
  const at = record.payloadStart;
  if (record.payloadBytes < entriesHeaderBytes) {
    throw corruptLog(file, record.offset, 'entries record too short');
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const firstIndex = view.getFloat64(at, true);
  const count = view.getUint32(at + 8, true);
  const dataBytes = view.getUint32(at + 12, true);
  if (entriesPayloadBytes(count, dataBytes) !== record.payloadBytes) {
    throw corruptLog(
      file,
      record.offset,
      `entries record of ${record.payloadBytes} bytes claims ${count} entries and ${dataBytes} data bytes`,
    );
  }
  const termsAt = bytes.byteOffset + at + entriesHeaderBytes;
  const endsAt = termsAt + 8 * count;
  const typesAt = at + entriesHeaderBytes + 12 * count;
  const batch: EntryBatch = {
    firstIndex,
    count,
    terms: new Float64Array(bytes.buffer, termsAt, count),
    ends: new Uint32Array(bytes.buffer, endsAt, count),
    types: bytes.subarray(typesAt, typesAt + count),
    data: bytes.subarray(typesAt + count, typesAt + count + dataBytes),
  };
  const problem = describeBatchProblem(batch);
  if (problem !== null) throw corruptLog(file, record.offset, problem);
  if (count > 0 && batch.ends[count - 1] !== dataBytes) {
    throw corruptLog(
      file,
      record.offset,
      `payloads end at ${batch.ends[count - 1]}, not ${dataBytes}`,
    );
  }
  return batch;
}

/** Name of segment `seq`: 16 hex digits, so names sort in sequence order. */
export function segmentFileName(seq: number): string {
  return `${seq.toString(16).padStart(16, '0')}.wal`;
}

/** The sequence number in a segment file name, or null when `name` is not one. */
export function parseSegmentFileName(name: string): number | null {
  const match = /^([0-9a-f]{16})\.wal$/.exec(name);
  if (match === null) return null;
  const seq = Number.parseInt(match[1]!, 16);
  return Number.isSafeInteger(seq) ? seq : null;
}
