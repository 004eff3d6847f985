/**
 * EntryBatch: a run of consecutive Raft log entries packed into four typed arrays.
 *
 * Entries move through the whole system in this shape — from the log to the wire, from the wire
 * into the WASM log, from the log to the WAL and to the state machine — so that no path creates
 * one JS object per entry. A batch is immutable once built: producers build it with
 * {@link EntryBatchBuilder} (or the log's `slice`), consumers read it with {@link payloadOf}.
 *
 * @example
 * ```ts
 * const builder = new EntryBatchBuilder(11);
 * builder.add(3, EntryType.Normal, new TextEncoder().encode('x=1'));
 * const batch = builder.finish();
 * lastIndexOf(batch); // 11
 * ```
 */
import { assert } from '../assert.js';

/** What an entry carries. Stored as one byte per entry. */
export const EntryType = {
  /** An application command, opaque to Raft. */
  Normal: 0,
  /** The empty entry a new leader appends to commit entries of earlier terms (Raft §5.4.2). */
  Noop: 1,
  /** A membership change; its payload is an encoded `ConfChange`. */
  ConfChange: 2,
} as const;
/** One of {@link EntryType}'s values. */
export type EntryType = (typeof EntryType)[keyof typeof EntryType];

/** Consecutive log entries `firstIndex .. firstIndex + count - 1`, packed. */
export interface EntryBatch {
  /** Log index of the entry at position 0 (meaningful even when `count` is 0). */
  readonly firstIndex: number;
  readonly count: number;
  /** `terms[k]`: term of entry `firstIndex + k`. Length >= count. */
  readonly terms: Float64Array;
  /** `types[k]`: {@link EntryType} of entry k. Length >= count. */
  readonly types: Uint8Array;
  /** `ends[k]`: end offset in `data` of entry k's payload; it starts at `ends[k-1]` (or 0). */
  readonly ends: Uint32Array;
  /** All payloads, back to back. */
  readonly data: Uint8Array;
}

const emptyTerms = new Float64Array(0);
const emptyTypes = new Uint8Array(0);
const emptyEnds = new Uint32Array(0);
const emptyData = new Uint8Array(0);

/** A batch with no entries that would start at `firstIndex`. */
export function emptyBatch(firstIndex: number): EntryBatch {
  return {
    firstIndex,
    count: 0,
    terms: emptyTerms,
    types: emptyTypes,
    ends: emptyEnds,
    data: emptyData,
  };
}

/** Index of the batch's last entry (`firstIndex - 1` when empty). */
export function lastIndexOf(batch: EntryBatch): number {
  return batch.firstIndex + batch.count - 1;
}

/** Start offset of entry k's payload in `batch.data`. */
export function payloadStartOf(batch: EntryBatch, k: number): number {
  return k === 0 ? 0 : batch.ends[k - 1]!;
}

/** Entry k's payload as a view into `batch.data` (no copy). */
export function payloadOf(batch: EntryBatch, k: number): Uint8Array {
  return batch.data.subarray(payloadStartOf(batch, k), batch.ends[k]);
}

/** Payload bytes the batch carries. */
export function payloadBytesOf(batch: EntryBatch): number {
  return batch.count === 0 ? 0 : batch.ends[batch.count - 1]!;
}

/**
 * Entries `from .. to - 1` (log indexes) of `batch` as a new batch sharing no memory with it.
 * Throws RangeError when the range is not inside the batch.
 */
export function sliceBatch(batch: EntryBatch, from: number, to: number): EntryBatch {
  const lo = from - batch.firstIndex;
  const hi = to - batch.firstIndex;
  if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 0 || hi > batch.count || lo > hi) {
    throw new RangeError(
      `Cannot slice entries ${from}..${to - 1}: the batch holds ${batch.firstIndex}..${lastIndexOf(batch)}`,
    );
  }
  const base = payloadStartOf(batch, lo);
  const ends = new Uint32Array(hi - lo);
  for (let k = lo; k < hi; k++) ends[k - lo] = batch.ends[k]! - base;
  return {
    firstIndex: from,
    count: hi - lo,
    terms: batch.terms.slice(lo, hi),
    types: batch.types.slice(lo, hi),
    ends,
    data: batch.data.slice(base, hi === lo ? base : batch.ends[hi - 1]!),
  };
}

/**
 * Builds a batch entry by entry, growing its arrays geometrically. Used where entries arrive
 * one at a time (proposals, decoders); bulk producers fill the arrays directly.
 */
export class EntryBatchBuilder {
  private terms: Float64Array;
  private types: Uint8Array;
  private ends: Uint32Array;
  private data: Uint8Array;
  private count = 0;
  private bytes = 0;

  constructor(
    private readonly firstIndex: number,
    entriesHint = 16,
    bytesHint = 1024,
  ) {
    assert(Number.isInteger(firstIndex) && firstIndex >= 1, () => `bad firstIndex ${firstIndex}`);
    this.terms = new Float64Array(Math.max(1, entriesHint));
    this.types = new Uint8Array(this.terms.length);
    this.ends = new Uint32Array(this.terms.length);
    this.data = new Uint8Array(Math.max(16, bytesHint));
  }

  /** Entries added so far. */
  get size(): number {
    return this.count;
  }

  /** Payload bytes added so far. */
  get byteSize(): number {
    return this.bytes;
  }

  /** Appends the next entry; its index is `firstIndex + size` before the call. */
  add(term: number, type: EntryType, payload: Uint8Array): void {
    if (this.count === this.terms.length) {
      const capacity = this.terms.length * 2;
      this.terms = grow(this.terms, new Float64Array(capacity));
      this.types = grow(this.types, new Uint8Array(capacity));
      this.ends = grow(this.ends, new Uint32Array(capacity));
    }
    const end = this.bytes + payload.length;
    if (end > this.data.length) {
      this.data = grow(this.data, new Uint8Array(Math.max(end, this.data.length * 2)));
    }
    this.data.set(payload, this.bytes);
    this.terms[this.count] = term;
    this.types[this.count] = type;
    this.ends[this.count] = end;
    this.bytes = end;
    this.count++;
  }

  /** The batch built so far, trimmed to size. The builder must not be used afterwards. */
  finish(): EntryBatch {
    return {
      firstIndex: this.firstIndex,
      count: this.count,
      terms: this.terms.subarray(0, this.count),
      types: this.types.subarray(0, this.count),
      ends: this.ends.subarray(0, this.count),
      data: this.data.subarray(0, this.bytes),
    };
  }
}

function grow<T extends Float64Array | Uint8Array | Uint32Array>(from: T, to: T): T {
  to.set(from);
  return to;
}

/**
 * Marks a batch found sound by {@link describeBatchProblem}: a batch is immutable once built,
 * so a batch checked where it entered (the transport's decoder) is not walked again when the
 * log appends it. The mark is a property of the batch, not a WeakSet entry, which V8's
 * young-generation collector would keep alive with the batch's payloads until a full
 * collection (see transport/http.ts). Only batches of at least `soundBatchEntriesMin` entries
 * are marked: below that, walking the batch again costs less than marking it.
 */
const soundMark = Symbol('phantomdb.soundBatch');
const soundBatchEntriesMin = 16;

type MarkedBatch = EntryBatch & { [soundMark]?: true };

/**
 * Checks that a batch received from outside (a peer, a file) is self-consistent: array
 * lengths, non-decreasing payload ends inside `data`, known entry types, integral positive
 * terms. Returns a message naming the first problem, or null when the batch is sound. A
 * batch found sound once is remembered, and checking it again costs a lookup.
 */
export function describeBatchProblem(batch: EntryBatch): string | null {
  const { firstIndex, count } = batch;
  if (count >= soundBatchEntriesMin && (batch as MarkedBatch)[soundMark] === true) return null;
  if (!Number.isSafeInteger(firstIndex) || firstIndex < 1)
    return `firstIndex ${firstIndex} is not a positive integer`;
  if (!Number.isSafeInteger(count) || count < 0)
    return `count ${count} is not a non-negative integer`;
  const { terms, types, ends } = batch;
  if (terms.length < count || types.length < count || ends.length < count) {
    return `batch of ${count} entries has arrays of ${terms.length}/${types.length}/${ends.length}`;
  }
  // One pass of plain comparisons (no calls): the common case is a sound batch, and only a
  // bad one pays for finding out what is wrong with it. Ends never decreasing and the last
  // one inside `data` put every payload inside it.
  let previousEnd = 0;
  for (let k = 0; k < count; k++) {
    const term = terms[k]!;
    const end = ends[k]!;
    if (
      !(term >= 1 && term <= Number.MAX_SAFE_INTEGER && Math.floor(term) === term) ||
      types[k]! > EntryType.ConfChange ||
      end < previousEnd
    ) {
      return describeEntriesProblem(batch);
    }
    previousEnd = end;
  }
  if (previousEnd > batch.data.length) return describeEntriesProblem(batch);
  if (count >= soundBatchEntriesMin && Object.isExtensible(batch)) {
    // Not enumerable: a marked batch still equals an unmarked one field by field.
    Object.defineProperty(batch, soundMark, { value: true });
  }
  return null;
}

/** The first bad entry of a batch whose arrays are long enough, entry by entry. */
function describeEntriesProblem(batch: EntryBatch): string | null {
  const { firstIndex, count } = batch;
  let previousEnd = 0;
  for (let k = 0; k < count; k++) {
    const term = batch.terms[k]!;
    if (!Number.isSafeInteger(term) || term < 1) return `entry ${firstIndex + k} has term ${term}`;
    const type = batch.types[k]!;
    if (type > EntryType.ConfChange) return `entry ${firstIndex + k} has unknown type ${type}`;
    const end = batch.ends[k]!;
    if (end < previousEnd || end > batch.data.length) {
      return `entry ${firstIndex + k} ends at byte ${end}, outside ${previousEnd}..${batch.data.length}`;
    }
    previousEnd = end;
  }
  return null;
}
