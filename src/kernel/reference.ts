/**
 * The TypeScript twins of the WebAssembly kernels: the same layouts and algorithms in plain
 * TypeScript over typed arrays. They are the reference the WASM builds are tested against, the
 * baseline of every benchmark, and the fallback below the batch sizes where WASM pays.
 *
 * No I/O and no `node:*` import here or in what this file imports: the pure Raft core
 * (src/raft) imports {@link quorumIndex} and may construct a {@link TsLog}.
 *
 * @example
 * ```ts
 * const log = new TsLog();
 * const batch = new EntryBatchBuilder(1);
 * batch.add(1, EntryType.Normal, new TextEncoder().encode('x=1'));
 * log.append(batch.finish());
 * log.termAt(1); // 1
 * quorumIndex(new Float64Array([5, 9, 7]), 3); // 7
 * ```
 */
import type { LogOptions } from './packed-log.js';
import { PackedLog } from './packed-log.js';

export type { LogOptions } from './packed-log.js';
export { entryOverheadBytes } from './packed-log.js';

/**
 * The Raft log in plain TypeScript: the same packed layout, growth policy and lazy compaction
 * as the WebAssembly log, over typed arrays owned by the JS heap.
 */
export class TsLog extends PackedLog {
  constructor(options: LogOptions = {}) {
    super(options);
    this.terms = new Float64Array(this.capacity);
    this.starts = new Uint32Array(this.capacity);
    this.lengths = new Uint32Array(this.capacity);
    this.types = new Uint8Array(this.capacity);
    this.arena = new Uint8Array(this.arenaCapacity);
  }

  protected override relocate(capacity: number, arenaCapacity: number): void {
    const head = this.head;
    const count = this.last - this.first + 1;
    const arenaHead = this.arenaHead;
    const liveBytes = this.arenaTail - arenaHead;
    if (capacity === this.capacity) {
      this.terms.copyWithin(0, head, head + count);
      this.starts.copyWithin(0, head, head + count);
      this.lengths.copyWithin(0, head, head + count);
      this.types.copyWithin(0, head, head + count);
    } else {
      this.terms = moved(this.terms, new Float64Array(capacity), head, count);
      this.starts = moved(this.starts, new Uint32Array(capacity), head, count);
      this.lengths = moved(this.lengths, new Uint32Array(capacity), head, count);
      this.types = moved(this.types, new Uint8Array(capacity), head, count);
    }
    if (arenaCapacity === this.arenaCapacity) {
      this.arena.copyWithin(0, arenaHead, arenaHead + liveBytes);
    } else {
      this.arena = moved(this.arena, new Uint8Array(arenaCapacity), arenaHead, liveBytes);
    }
    const starts = this.starts;
    for (let s = 0; s < count; s++) starts[s] = starts[s]! - arenaHead;
  }
}

function moved<T extends Float64Array | Uint32Array | Uint8Array>(
  from: T,
  to: T,
  start: number,
  n: number,
): T {
  to.set(from.subarray(start, start + n));
  return to;
}

// ---- quorum ----------------------------------------------------------------------------------

let quorumScratch = new Float64Array(64);

/** Throws RangeError unless `count` is an integer in 0..`length`. */
export function checkQuorumArgs(matchIndexes: Float64Array, count: number): void {
  if (!(matchIndexes instanceof Float64Array)) {
    throw new TypeError('Cannot compute the quorum index: matchIndexes is not a Float64Array');
  }
  if (!Number.isSafeInteger(count) || count < 0 || count > matchIndexes.length) {
    throw new RangeError(
      `Cannot compute the quorum index: count is ${count}, expected an integer in 0..${matchIndexes.length}`,
    );
  }
}

/**
 * The highest index held by a majority of `count` voters, given each voter's match index in
 * `matchIndexes[0 .. count - 1]` (not modified). For `count` 0 it returns
 * `Number.MAX_SAFE_INTEGER`, so a joint configuration's commit index is simply
 * `min(quorumIndex(voters), quorumIndex(outgoing))` with an empty outgoing set not constraining.
 *
 * @example
 * ```ts
 * quorumIndex(new Float64Array([9, 5, 7, 3]), 4); // 5: three of four voters hold 5
 * ```
 */
export function quorumIndex(matchIndexes: Float64Array, count: number): number {
  checkQuorumArgs(matchIndexes, count);
  return quorumIndexUnchecked(matchIndexes, count);
}

/** {@link quorumIndex} without argument checks. */
export function quorumIndexUnchecked(matchIndexes: Float64Array, count: number): number {
  if (count === 0) return Number.MAX_SAFE_INTEGER;
  if (quorumScratch.length < count)
    quorumScratch = new Float64Array(Math.max(count, 2 * quorumScratch.length));
  const values = quorumScratch;
  for (let i = 0; i < count; i++) values[i] = matchIndexes[i]!;
  // The (count - 1) >> 1 smallest value (0-based) is held by count - ((count - 1) >> 1) voters,
  // which is a majority: floor(count / 2) + 1.
  return selectKth(values, count, (count - 1) >> 1);
}

/**
 * The k-th smallest (0-based) of `values[0 .. n - 1]`, reordering them: Hoare quickselect with
 * a median-of-three pivot, insertion sort below 16 elements. The WASM kernel is the same code.
 */
export function selectKth(values: Float64Array, n: number, k: number): number {
  let lo = 0;
  let hi = n - 1;
  while (hi - lo >= 16) {
    const mid = (lo + hi) >>> 1;
    if (values[mid]! < values[lo]!) swap(values, mid, lo);
    if (values[hi]! < values[lo]!) swap(values, hi, lo);
    if (values[hi]! < values[mid]!) swap(values, hi, mid);
    const pivot = values[mid]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (values[i]! < pivot) i++;
      while (values[j]! > pivot) j--;
      if (i <= j) {
        swap(values, i, j);
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return values[k]!;
  }
  for (let i = lo + 1; i <= hi; i++) {
    const value = values[i]!;
    let j = i - 1;
    while (j >= lo && values[j]! > value) {
      values[j + 1] = values[j]!;
      j--;
    }
    values[j + 1] = value;
  }
  return values[k]!;
}

function swap(values: Float64Array, i: number, j: number): void {
  const t = values[i]!;
  values[i] = values[j]!;
  values[j] = t;
}

// ---- clocks ----------------------------------------------------------------------------------

/** Hybrid logical clock stamps, structure of arrays: stamp k is (wall[k], logical[k], node[k]). */
export interface HlcColumns {
  wall: Float64Array;
  logical: Uint32Array;
  node: Uint32Array;
}

function isHlcColumns(columns: HlcColumns): boolean {
  return (
    typeof columns === 'object' &&
    columns !== null &&
    columns.wall instanceof Float64Array &&
    columns.logical instanceof Uint32Array &&
    columns.node instanceof Uint32Array
  );
}

/** Throws TypeError/RangeError unless every column of `a`, `b` and `out` holds `n` values. */
export function checkHlcArgs(a: HlcColumns, b: HlcColumns, n: number, out: Int8Array): void {
  if (!isHlcColumns(a) || !isHlcColumns(b)) {
    throw new TypeError(
      'Cannot compare clocks: a and b must be HlcColumns (Float64Array wall, Uint32Array logical and node)',
    );
  }
  if (!(out instanceof Int8Array))
    throw new TypeError('Cannot compare clocks: out is not an Int8Array');
  if (
    !Number.isSafeInteger(n) ||
    n < 0 ||
    n > a.wall.length ||
    n > a.logical.length ||
    n > a.node.length ||
    n > b.wall.length ||
    n > b.logical.length ||
    n > b.node.length ||
    n > out.length
  ) {
    const room = Math.min(
      a.wall.length,
      a.logical.length,
      a.node.length,
      b.wall.length,
      b.logical.length,
      b.node.length,
      out.length,
    );
    throw new RangeError(
      `Cannot compare clocks: n is ${n}, expected an integer in 0..${room} (the shortest column)`,
    );
  }
}

/**
 * `out[k]` = -1, 0 or 1 as stamp `a[k]` is before, equal to or after `b[k]`, ordering by wall
 * time, then logical counter, then node id. (A NaN wall is neither before nor after any other,
 * so the logical counter decides; every implementation agrees on that.)
 */
export function compareHlcBatch(a: HlcColumns, b: HlcColumns, n: number, out: Int8Array): void {
  checkHlcArgs(a, b, n, out);
  compareHlcUnchecked(a, b, n, out, 0);
}

/** {@link compareHlcBatch} of stamps `offset .. offset + n - 1`, without argument checks. */
export function compareHlcUnchecked(
  a: HlcColumns,
  b: HlcColumns,
  n: number,
  out: Int8Array,
  offset: number,
): void {
  const aWall = a.wall;
  const bWall = b.wall;
  const aLogical = a.logical;
  const bLogical = b.logical;
  const aNode = a.node;
  const bNode = b.node;
  for (let k = offset; k < offset + n; k++) {
    const wa = aWall[k]!;
    const wb = bWall[k]!;
    let order: number;
    if (wa < wb) order = -1;
    else if (wa > wb) order = 1;
    else {
      const la = aLogical[k]!;
      const lb = bLogical[k]!;
      if (la < lb) order = -1;
      else if (la > lb) order = 1;
      else {
        const na = aNode[k]!;
        const nb = bNode[k]!;
        order = na < nb ? -1 : na > nb ? 1 : 0;
      }
    }
    out[k] = order;
  }
}

/** Version vector order: {@link compareVersionVectorBatch} writes these values. */
export const VersionOrder = {
  Equal: 0,
  Before: 1,
  After: 2,
  Concurrent: 3,
} as const;

/** Throws TypeError/RangeError unless `a`, `b` hold `n` vectors of `width` and `out` `n` slots. */
export function checkVersionVectorArgs(
  a: Float64Array,
  b: Float64Array,
  n: number,
  width: number,
  out: Int8Array,
): void {
  if (!(a instanceof Float64Array) || !(b instanceof Float64Array)) {
    throw new TypeError('Cannot compare version vectors: a and b must be Float64Arrays');
  }
  if (!(out instanceof Int8Array)) {
    throw new TypeError('Cannot compare version vectors: out is not an Int8Array');
  }
  if (!Number.isSafeInteger(width) || width < 0 || width > 65536) {
    throw new RangeError(
      `Cannot compare version vectors: width is ${width}, expected an integer in 0..65536`,
    );
  }
  const room = Math.min(
    width === 0 ? out.length : Math.floor(Math.min(a.length, b.length) / width),
    out.length,
  );
  if (!Number.isSafeInteger(n) || n < 0 || n > room) {
    throw new RangeError(
      `Cannot compare version vectors: n is ${n}, expected an integer in 0..${room} (what a, b and out hold)`,
    );
  }
}

/**
 * Compares `n` pairs of version vectors of `width` counters each, stored row-major: vector k
 * is `a[k * width .. (k + 1) * width - 1]`. `out[k]` is 0 when equal, 1 when a[k] is before
 * b[k] (every counter <=, one <), 2 when after, 3 when concurrent (see {@link VersionOrder}).
 */
export function compareVersionVectorBatch(
  a: Float64Array,
  b: Float64Array,
  n: number,
  width: number,
  out: Int8Array,
): void {
  checkVersionVectorArgs(a, b, n, width, out);
  compareVersionVectorUnchecked(a, b, n, width, out, 0);
}

/** {@link compareVersionVectorBatch} of vectors `offset .. offset + n - 1`, without checks. */
export function compareVersionVectorUnchecked(
  a: Float64Array,
  b: Float64Array,
  n: number,
  width: number,
  out: Int8Array,
  offset: number,
): void {
  for (let k = offset; k < offset + n; k++) {
    let before = 0;
    let after = 0;
    const row = k * width;
    for (let i = row; i < row + width; i++) {
      const x = a[i]!;
      const y = b[i]!;
      if (x < y) before = 1;
      else if (x > y) after = 2;
    }
    out[k] = before | after;
  }
}
