/**
 * PackedLog: the host half of the Raft log, shared by the TypeScript twin ({@link TsLog}) and
 * the WebAssembly log. It owns the bookkeeping (first/last index, compaction point, where the
 * live entries sit) and validates every argument; the subclass supplies the storage (plain
 * typed arrays, or views into WASM linear memory) and three kernels: writing payload ends,
 * relocating on growth, and the conflict scan.
 *
 * Layout (structure of arrays, one slot per entry, no per-entry JS objects):
 *
 * ```
 * terms   f64[capacity]   term of the entry in slot s
 * starts  u32[capacity]   offset of its payload in the arena
 * lengths u32[capacity]   payload length
 * types   u8[capacity]    EntryType
 * arena   u8[arenaCapacity] payloads, back to back in log order
 * ```
 *
 * Live entries occupy slots `head .. head + count - 1` and arena bytes `arenaHead ..
 * arenaTail - 1`. Compaction only advances `head` and `arenaHead`: the dead prefix is reclaimed
 * lazily, when the tail runs out of room and the dead part is at least as large as the live one
 * (so every entry is moved O(1) times amortized), or on growth. No memmove per snapshot.
 *
 * This file does no I/O so that `reference.ts`, which the pure Raft core imports, may use it.
 */
import { assert } from '../assert.js';
import { transientBytes, transientEntryArrays } from '../bytes.js';
import type { EntryBatch } from '../raft/batch.js';
import { describeBatchProblem, emptyBatch } from '../raft/batch.js';
import type { LogStore, MatchResult } from '../raft/types.js';
import { LogFullError } from './errors.js';

/** Bytes a log spends per entry besides its payload: term f64 + start u32 + length u32 + type u8. */
export const entryOverheadBytes = 8 + 4 + 4 + 1;

/** Sizing of a log. Both kernels take the same options and follow the same growth policy. */
export interface LogOptions {
  /** Entry slots allocated up front (rounded up to a multiple of 16). Default 1024. */
  readonly entriesInitial?: number;
  /** Payload arena bytes allocated up front (rounded up to 64 KiB). Default 64 KiB. */
  readonly payloadBytesInitial?: number;
  /**
   * Most memory the log may use for its entry arrays plus its payload arena, in bytes. Past it
   * appends throw {@link LogFullError} and leave the log unchanged. Default 2 GiB minus 1 MiB
   * (the WASM module's own maximum is 2 GiB).
   */
  readonly memoryBytesMax?: number;
}

/** Defaults of {@link LogOptions}. */
export const logDefaults = {
  entriesInitial: 1024,
  payloadBytesInitial: 64 * 1024,
  memoryBytesMax: 2 * 1024 * 1024 * 1024 - 1024 * 1024,
} as const;

/**
 * Copies shorter than this use an element loop: `subarray` + `set` costs some 40 ns before it
 * copies anything, an element loop some 1.5-2 ns per element; they cross near 20 elements
 * (bench: "simd copy" of the conflict scan at N = 16, 24, 32 with either).
 */
export const copyLoopMax = 16;

const slotAlign = 16;
/**
 * Growth factor of the entry arrays. 1.4 rather than 2 bounds the slack right after growth to
 * 40%, so the arrays hold at most 17 × 1.4 = 23.8 bytes per live entry when the log grows by
 * appending; the arena (payload bytes) doubles.
 */
const entriesGrowth = 1.4;
const arenaAlign = 64 * 1024;

/** Rounds `value` up to a multiple of `align` (a power of two). */
function roundUp(value: number, align: number): number {
  return Math.ceil(value / align) * align;
}

/** Bytes used by entry arrays of `capacity` slots and an arena of `arenaCapacity` bytes. */
export function logMemoryBytes(capacity: number, arenaCapacity: number): number {
  return capacity * entryOverheadBytes + arenaCapacity;
}

function checkSize(field: string, value: number, min: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new RangeError(
      `Invalid ${field}: ${String(value)} (expected an integer in ${min}..${max})`,
    );
  }
}

/** Resolved sizing, validated. */
export function resolveLogOptions(options: LogOptions = {}): Required<LogOptions> {
  const resolved = {
    entriesInitial: options.entriesInitial ?? logDefaults.entriesInitial,
    payloadBytesInitial: options.payloadBytesInitial ?? logDefaults.payloadBytesInitial,
    memoryBytesMax: options.memoryBytesMax ?? logDefaults.memoryBytesMax,
  };
  checkSize('memoryBytesMax', resolved.memoryBytesMax, 1, 4 * 1024 * 1024 * 1024);
  checkSize('entriesInitial', resolved.entriesInitial, 1, 2 ** 26);
  checkSize('payloadBytesInitial', resolved.payloadBytesInitial, 0, 2 ** 31);
  const capacity = roundUp(resolved.entriesInitial, slotAlign);
  const arenaCapacity = roundUp(Math.max(1, resolved.payloadBytesInitial), arenaAlign);
  if (logMemoryBytes(capacity, arenaCapacity) > resolved.memoryBytesMax) {
    throw new RangeError(
      `Invalid memoryBytesMax: ${resolved.memoryBytesMax} is below the initial size of ` +
        `${logMemoryBytes(capacity, arenaCapacity)} bytes`,
    );
  }
  return {
    entriesInitial: capacity,
    payloadBytesInitial: arenaCapacity,
    memoryBytesMax: resolved.memoryBytesMax,
  };
}

/** Throws TypeError/RangeError when `value` is not a non-negative safe integer. */
function checkIndex(what: string, name: string, value: number): void {
  if (typeof value !== 'number') {
    throw new TypeError(`Cannot ${what}: ${name} is ${typeof value}, expected a number`);
  }
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`Cannot ${what}: ${name} is ${value}, expected a non-negative integer`);
  }
}

/** Throws TypeError/RangeError naming the first problem of a batch that came from outside. */
export function checkBatch(what: string, batch: EntryBatch): void {
  if (
    typeof batch !== 'object' ||
    batch === null ||
    !(batch.terms instanceof Float64Array) ||
    !(batch.types instanceof Uint8Array) ||
    !(batch.ends instanceof Uint32Array) ||
    !(batch.data instanceof Uint8Array)
  ) {
    throw new TypeError(
      `Cannot ${what}: the batch is not an EntryBatch (Float64Array terms, Uint8Array types, ` +
        'Uint32Array ends, Uint8Array data)',
    );
  }
  const problem = describeBatchProblem(batch);
  if (problem !== null) throw new RangeError(`Cannot ${what}: ${problem}`);
}

/** Copies `n` elements; a loop below `copyLoopMax` elements is cheaper than `subarray` + `set`. */
export function copyInto<T extends Float64Array | Uint8Array | Uint32Array>(
  to: T,
  at: number,
  from: T,
  start: number,
  n: number,
): void {
  if (n < copyLoopMax) {
    for (let k = 0; k < n; k++) to[at + k] = from[start + k]!;
  } else {
    to.set(from.subarray(start, start + n), at);
  }
}

/**
 * The Raft log over packed arrays. Subclasses provide storage and kernels; everything a caller
 * sees (validation, errors, reads, matching) lives here so both kernels behave identically.
 */
export abstract class PackedLog implements LogStore {
  /** Index of the entry in slot `head`; `last + 1` when empty. */
  protected first = 1;
  protected last = 0;
  /** Term of entry `first - 1` (the compaction point), 0 before any entry existed. */
  protected compactTerm = 0;
  /** Slot of entry `first`. */
  protected head = 0;
  protected capacity: number;
  protected arenaHead = 0;
  protected arenaTail = 0;
  protected arenaCapacity: number;
  protected readonly memoryBytesMax: number;

  /** Views over the storage; subclasses (re)build them whenever the storage moves. */
  protected terms!: Float64Array;
  protected starts!: Uint32Array;
  protected lengths!: Uint32Array;
  protected types!: Uint8Array;
  protected arena!: Uint8Array;

  constructor(options: LogOptions = {}) {
    const resolved = resolveLogOptions(options);
    this.capacity = resolved.entriesInitial;
    this.arenaCapacity = resolved.payloadBytesInitial;
    this.memoryBytesMax = resolved.memoryBytesMax;
  }

  // ---- kernels (subclass) ------------------------------------------------------------------

  /**
   * Writes the payload locations of `n` entries at `slot`: entry k's payload is
   * `ends[from + k - 1] .. ends[from + k]` in the batch (`dataBase` for k = 0), copied to the
   * arena at `arenaOffset`. Sets `starts` and `lengths` of those slots. This TypeScript loop is
   * the twin's kernel.
   */
  protected writeEnds(
    ends: Uint32Array,
    from: number,
    n: number,
    slot: number,
    arenaOffset: number,
    dataBase: number,
  ): void {
    const starts = this.starts;
    const lengths = this.lengths;
    let previous = dataBase;
    const delta = arenaOffset - dataBase;
    for (let k = 0; k < n; k++) {
      const end = ends[from + k]!;
      starts[slot + k] = previous + delta;
      lengths[slot + k] = end - previous;
      previous = end;
    }
  }

  /**
   * Moves the live entries to slot 0 and the live payload bytes to arena offset 0 (rebasing
   * `starts`), in storage of the given capacities (>= the current ones). May throw
   * {@link LogFullError} before moving anything; must not fail after it started moving.
   */
  protected abstract relocate(capacity: number, arenaCapacity: number): void;

  /**
   * First k in `0 .. n - 1` where the log's term at slot `slot + k` differs from
   * `batchTerms[k]`, or `n` when all agree. This TypeScript loop is the twin's kernel.
   */
  protected findConflict(batchTerms: Float64Array, slot: number, n: number): number {
    const terms = this.terms;
    for (let k = 0; k < n; k++) {
      if (terms[slot + k] !== batchTerms[k]) return k;
    }
    return n;
  }

  /**
   * Throws when the log can no longer be used (a disposed or failed WASM log). Called on entry
   * to every mutation and on the slow path of reads, never on the fast path.
   */
  protected checkUsable(): void {}

  // ---- LogStore ----------------------------------------------------------------------------

  /** {@inheritDoc LogStore.firstIndex} */
  firstIndex(): number {
    return this.first;
  }

  /** {@inheritDoc LogStore.lastIndex} */
  lastIndex(): number {
    return this.last;
  }

  /** {@inheritDoc LogStore.termAt} */
  termAt(index: number): number {
    // A fractional, NaN or out-of-storage index reads undefined, so one range test suffices.
    const term = this.terms[index - this.first + this.head];
    if (
      term !== undefined &&
      typeof index === 'number' &&
      index >= this.first &&
      index <= this.last
    ) {
      return term;
    }
    if (index === this.first - 1) return this.compactTerm;
    throw this.outOfRange('read the term of entry', index, this.first - 1);
  }

  /** {@inheritDoc LogStore.typeAt} */
  typeAt(index: number): number {
    const type = this.types[index - this.first + this.head];
    if (
      type !== undefined &&
      typeof index === 'number' &&
      index >= this.first &&
      index <= this.last
    ) {
      return type;
    }
    throw this.outOfRange('read the type of entry', index, this.first);
  }

  /** {@inheritDoc LogStore.payloadAt} */
  payloadAt(index: number): Uint8Array {
    const slot = index - this.first + this.head;
    const start = this.starts[slot];
    if (
      start === undefined ||
      typeof index !== 'number' ||
      index < this.first ||
      index > this.last
    ) {
      throw this.outOfRange('read the payload of entry', index, this.first);
    }
    return this.arena.subarray(start, start + this.lengths[slot]!);
  }

  /** {@inheritDoc LogStore.append} */
  append(batch: EntryBatch): void {
    this.checkUsable();
    checkBatch('append entries', batch);
    if (batch.firstIndex !== this.last + 1) {
      throw new RangeError(
        `Cannot append entries: the batch starts at index ${batch.firstIndex}, expected ${this.last + 1}`,
      );
    }
    this.appendRange(batch, 0, batch.count);
  }

  /** {@inheritDoc LogStore.matchAndAppend} */
  matchAndAppend(prevIndex: number, prevTerm: number, batch: EntryBatch): MatchResult {
    this.checkUsable();
    const what = 'match entries';
    checkIndex(what, 'prevIndex', prevIndex);
    checkIndex(what, 'prevTerm', prevTerm);
    checkBatch(what, batch);
    if (batch.firstIndex !== prevIndex + 1) {
      throw new RangeError(
        `Cannot match entries: the batch starts at index ${batch.firstIndex}, expected prevIndex + 1 = ${prevIndex + 1}`,
      );
    }
    if (prevIndex < this.first - 1) {
      throw new RangeError(
        `Cannot match entries: prevIndex ${prevIndex} is below the compaction point ${this.first - 1}`,
      );
    }
    if (prevIndex > this.last) {
      return { ok: false, hintIndex: this.last + 1, hintTerm: 0 };
    }
    const localTerm = this.termAt(prevIndex);
    if (localTerm !== prevTerm) {
      return {
        ok: false,
        hintIndex: this.firstIndexOfTerm(prevIndex, localTerm),
        hintTerm: localTerm,
      };
    }
    const count = batch.count;
    const overlap = Math.min(this.last - prevIndex, count);
    const conflict =
      overlap === 0 ? 0 : this.findConflict(batch.terms, this.slotOf(prevIndex + 1), overlap);
    const lastNewIndex = prevIndex + count;
    if (conflict === count) return { ok: true, lastNewIndex, firstWrittenIndex: 0 };
    const firstWrittenIndex = prevIndex + 1 + conflict;
    // Entries past the batch that agree with it are kept (Raft §5.3): only a conflict truncates.
    const { last, head, arenaHead, arenaTail } = this;
    if (conflict < overlap) this.dropFrom(firstWrittenIndex);
    try {
      this.appendRange(batch, conflict, count);
    } catch (error) {
      // appendRange fails only before it moves or writes anything (LogFullError): undo the
      // truncation, which only changed bookkeeping, so a failed call leaves the log as it was.
      this.last = last;
      this.head = head;
      this.arenaHead = arenaHead;
      this.arenaTail = arenaTail;
      throw error;
    }
    return { ok: true, lastNewIndex, firstWrittenIndex };
  }

  /** {@inheritDoc LogStore.truncateFrom} */
  truncateFrom(index: number): void {
    this.checkUsable();
    checkIndex('truncate the log', 'index', index);
    if (index < this.first) {
      throw new RangeError(
        `Cannot truncate the log from index ${index}: entries up to ${this.first - 1} are compacted`,
      );
    }
    if (index > this.last + 1) {
      throw new RangeError(
        `Cannot truncate the log from index ${index}: the last index is ${this.last}`,
      );
    }
    this.dropFrom(index);
  }

  /** {@inheritDoc LogStore.compactTo} Compacting to or below the current compaction point does nothing. */
  compactTo(index: number): void {
    this.checkUsable();
    checkIndex('compact the log', 'index', index);
    if (index > this.last) {
      throw new RangeError(
        `Cannot compact the log to index ${index}: the last index is ${this.last}`,
      );
    }
    if (index < this.first) return;
    const term = this.termAt(index);
    if (index === this.last) {
      this.empty(index, term);
      return;
    }
    const slot = this.slotOf(index + 1);
    this.arenaHead = this.starts[slot]!;
    this.head = slot;
    this.first = index + 1;
    this.compactTerm = term;
  }

  /** {@inheritDoc LogStore.reset} */
  reset(index: number, term: number): void {
    this.checkUsable();
    checkIndex('reset the log', 'index', index);
    checkIndex('reset the log', 'term', term);
    if ((index === 0) !== (term === 0)) {
      throw new RangeError(
        `Cannot reset the log to index ${index} and term ${term}: the term is 0 exactly at index 0`,
      );
    }
    this.empty(index, term);
  }

  /** {@inheritDoc LogStore.slice} */
  slice(from: number, to: number, maxBytes: number): EntryBatch {
    this.checkUsable();
    checkIndex('slice the log', 'from', from);
    checkIndex('slice the log', 'to', to);
    if (
      typeof maxBytes !== 'number' ||
      !(maxBytes >= 0) ||
      (!Number.isInteger(maxBytes) && maxBytes !== Infinity)
    ) {
      throw new RangeError(
        `Cannot slice the log: maxBytes is ${String(maxBytes)}, expected a non-negative integer or Infinity`,
      );
    }
    if (from < this.first || to > this.last + 1 || from > to) {
      throw new RangeError(
        `Cannot slice entries ${from}..${to - 1}: the log holds ${this.first}..${this.last}`,
      );
    }
    if (from === to) return emptyBatch(from);
    const slot = this.slotOf(from);
    const base = this.starts[slot]!;
    const starts = this.starts;
    const lengths = this.lengths;
    // At least one entry, then as many as fit in maxBytes (etcd's limitSize).
    let n = 1;
    let end = base + lengths[slot]!;
    const nMax = to - from;
    while (n < nMax) {
      const next = starts[slot + n]! + lengths[slot + n]!;
      if (next - base > maxBytes) break;
      end = next;
      n++;
    }
    // A slice lives as long as the Ready or message that carries it.
    const { terms, types, ends } = transientEntryArrays(n);
    terms.set(this.terms.subarray(slot, slot + n));
    types.set(this.types.subarray(slot, slot + n));
    for (let k = 0; k < n; k++) ends[k] = starts[slot + k]! + lengths[slot + k]! - base;
    const data = transientBytes(end - base);
    data.set(this.arena.subarray(base, end));
    return { firstIndex: from, count: n, terms, types, ends, data };
  }

  /** {@inheritDoc LogStore.payloadBytes} */
  payloadBytes(): number {
    this.checkUsable();
    return this.arenaTail - this.arenaHead;
  }

  // ---- introspection (benchmarks, tests) ---------------------------------------------------

  /** Bytes the log's storage occupies now: entry arrays plus arena, live or not. */
  memoryBytes(): number {
    return logMemoryBytes(this.capacity, this.arenaCapacity);
  }

  /** Entry slots and arena bytes currently allocated. */
  storageCapacity(): { readonly entries: number; readonly payloadBytes: number } {
    return { entries: this.capacity, payloadBytes: this.arenaCapacity };
  }

  /**
   * Checks the layout invariants (payloads back to back, inside the arena, live slots inside
   * the arrays); throws AssertionError naming the first broken one. Cost O(entries): for tests.
   */
  checkInvariants(): void {
    const count = this.last - this.first + 1;
    assert(count >= 0, () => `first ${this.first} is past last ${this.last} + 1`);
    assert(
      this.head >= 0 && this.head + count <= this.capacity,
      () => `slots ${this.head}+${count} exceed ${this.capacity}`,
    );
    assert(
      this.terms.length === this.capacity && this.types.length === this.capacity,
      () => 'stale views',
    );
    assert(this.arena.length === this.arenaCapacity, () => 'stale arena view');
    assert(
      0 <= this.arenaHead &&
        this.arenaHead <= this.arenaTail &&
        this.arenaTail <= this.arenaCapacity,
      () => `arena ${this.arenaHead}..${this.arenaTail} outside ${this.arenaCapacity}`,
    );
    let offset = this.arenaHead;
    for (let s = this.head; s < this.head + count; s++) {
      assert(
        this.starts[s] === offset,
        () => `slot ${s} starts at ${this.starts[s]}, expected ${offset}`,
      );
      offset += this.lengths[s]!;
      const term = this.terms[s]!;
      assert(Number.isSafeInteger(term) && term >= 1, () => `slot ${s} has term ${term}`);
    }
    assert(
      offset === this.arenaTail,
      () => `payloads end at ${offset}, arena tail is ${this.arenaTail}`,
    );
  }

  // ---- internals ---------------------------------------------------------------------------

  protected slotOf(index: number): number {
    return this.head + index - this.first;
  }

  private outOfRange(what: string, index: number, lowest: number): Error {
    this.checkUsable();
    if (typeof index !== 'number') {
      return new TypeError(
        `Cannot ${what} ${String(index)}: the index is ${typeof index}, expected a number`,
      );
    }
    const held =
      this.last < this.first && lowest === this.first
        ? `the log is empty (compacted up to ${this.first - 1})`
        : `the log holds ${lowest}..${this.last}`;
    return new RangeError(`Cannot ${what} ${index}: ${held}`);
  }

  /** Lowest index j <= `index` such that every entry j..index has term `term` (>= first - 1). */
  private firstIndexOfTerm(index: number, term: number): number {
    const terms = this.terms;
    let j = index;
    while (j > this.first && terms[this.slotOf(j - 1)] === term) j--;
    if (j === this.first && this.compactTerm === term) j--;
    return j;
  }

  /** Drops entries `index ..` (first <= index <= last + 1); bookkeeping only. */
  private dropFrom(index: number): void {
    if (index > this.last) return;
    if (index === this.first) {
      this.empty(index - 1, this.compactTerm);
      return;
    }
    this.arenaTail = this.starts[this.slotOf(index)]!;
    this.last = index - 1;
  }

  /** Makes the log empty with compaction point (index, term); storage is reused from slot 0. */
  private empty(index: number, term: number): void {
    this.first = index + 1;
    this.last = index;
    this.compactTerm = term;
    this.head = 0;
    this.arenaHead = 0;
    this.arenaTail = 0;
  }

  /** Appends entries `from .. to - 1` of a validated batch at the tail. */
  private appendRange(batch: EntryBatch, from: number, to: number): void {
    const n = to - from;
    if (n === 0) return;
    const dataStart = from === 0 ? 0 : batch.ends[from - 1]!;
    const dataEnd = batch.ends[to - 1]!;
    const bytes = dataEnd - dataStart;
    this.reserve(n, bytes);
    const slot = this.head + this.last - this.first + 1;
    copyInto(this.terms, slot, batch.terms, from, n);
    copyInto(this.types, slot, batch.types, from, n);
    if (bytes > 0) copyInto(this.arena, this.arenaTail, batch.data, dataStart, bytes);
    this.writeEnds(batch.ends, from, n, slot, this.arenaTail, dataStart);
    this.arenaTail += bytes;
    this.last += n;
  }

  /**
   * Makes room for `entries` more entries and `bytes` more payload at the tail. Reclaims the
   * dead prefix in place when the live part (plus the request) fills at most half of the
   * storage (then the dead part is at least as large as what moves), otherwise grows
   * geometrically; either way moves are amortized O(1) per entry and byte.
   */
  private reserve(entries: number, bytes: number): void {
    const count = this.last - this.first + 1;
    const entriesFit = this.head + count + entries <= this.capacity;
    const bytesFit = this.arenaTail + bytes <= this.arenaCapacity;
    if (entriesFit && bytesFit) return;
    const entriesNeeded = count + entries;
    const bytesNeeded = this.arenaTail - this.arenaHead + bytes;
    let capacity = this.capacity;
    if (!entriesFit && 2 * entriesNeeded > capacity) {
      capacity = roundUp(Math.max(entriesNeeded, capacity * entriesGrowth), slotAlign);
    }
    let arenaCapacity = this.arenaCapacity;
    if (!bytesFit && 2 * bytesNeeded > arenaCapacity) {
      arenaCapacity = roundUp(Math.max(bytesNeeded, arenaCapacity * 2), arenaAlign);
    }
    if (logMemoryBytes(capacity, arenaCapacity) > this.memoryBytesMax) {
      // Growing geometrically would pass the limit: settle for what is needed, if that fits.
      capacity = Math.max(this.capacity, roundUp(entriesNeeded, slotAlign));
      arenaCapacity = Math.max(this.arenaCapacity, roundUp(bytesNeeded, arenaAlign));
      const memoryBytes = logMemoryBytes(capacity, arenaCapacity);
      if (memoryBytes > this.memoryBytesMax) {
        throw new LogFullError(
          `Cannot append ${entries} entries of ${bytes} payload bytes: the log would need ` +
            `${memoryBytes} bytes of memory, above its limit of ${this.memoryBytesMax}; ` +
            'compact the log after a snapshot, or raise memoryBytesMax',
        );
      }
    }
    this.relocate(capacity, arenaCapacity);
    this.capacity = capacity;
    this.arenaCapacity = arenaCapacity;
    this.head = 0;
    this.arenaTail -= this.arenaHead;
    this.arenaHead = 0;
  }
}
