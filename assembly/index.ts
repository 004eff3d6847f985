// The WebAssembly kernels of @phantomdb/consensus, over raw linear memory.
//
// The host (src/kernel/) owns the layout: it decides where the log's arrays and the staging
// areas sit, writes inputs through cached typed-array views and calls these exports with
// pointers and counts. So that a call costs only the boundary crossing (~7 ns):
// - nothing here allocates (the module is built with the stub runtime, and a test checks that
//   memory never grows over 100,000 calls), and memory grows only through `grow`;
// - export signatures use i32/u32 and f64 only (no i64: BigInt at the boundary);
// - loops use raw load/store on precomputed pointers (checked indexing is a call per element);
// - ranges are checked once per call with `assert`, which the release builds compile out.
//
// The same source builds with SIMD (release, debug) and without (scalar): `ASC_FEATURE_SIMD`
// is a compile-time constant, so the scalar build carries none of the v128 code.

/** Start of memory the host may use: past the static data, 16-byte aligned. */
export function heapBase(): usize {
  return (__heap_base + 15) & ~(<usize>15);
}

// Checks that [ptr, ptr + bytes) lies inside memory. Debug builds only.
function checkRange(ptr: usize, bytes: usize): void {
  assert(ptr + bytes >= ptr && ptr + bytes <= (<usize>memory.size()) << 16, 'range outside memory');
}

/**
 * Grows memory so that it spans at least `bytesEnd` bytes. The only place memory grows: the
 * host rebuilds every view after a call that returned > 0. Returns the pages added (0 when
 * memory was large enough) or -1 when the maximum memory would be exceeded (nothing changed).
 */
export function grow(bytesEnd: f64): i32 {
  const pagesNeeded = <i32>Math.ceil(bytesEnd / 65536);
  const pages = memory.size();
  if (pagesNeeded <= pages) return 0;
  if (memory.grow(pagesNeeded - pages) < 0) return -1;
  return pagesNeeded - pages;
}

// ---- the Raft log -------------------------------------------------------------------------
//
// Layout from `base` (host-chosen): arena u8[arenaCapacity], then terms f64[capacity],
// starts u32[capacity], lengths u32[capacity], types u8[capacity]. Live entries are slots
// head .. head + count - 1; live payload bytes arenaHead .. arenaHead + liveBytes - 1.

/**
 * Moves the live entries to slot 0 and the live payloads to arena offset 0, from storage of
 * (capacity, arenaCapacity) to storage of (newCapacity >= capacity, newArenaCapacity >=
 * arenaCapacity) at the same base, and rebases the payload starts. Regions only move up or
 * stay, so moving the last region first never overwrites data still to be moved
 * (memory.copy handles the overlap within one region).
 */
export function relocate(
  base: usize,
  head: u32,
  count: u32,
  capacity: u32,
  arenaCapacity: u32,
  arenaHead: u32,
  liveBytes: u32,
  newCapacity: u32,
  newArenaCapacity: u32,
): void {
  assert(newCapacity >= capacity && newArenaCapacity >= arenaCapacity, 'relocate shrinks');
  assert(head + count <= capacity && arenaHead + liveBytes <= arenaCapacity, 'live part outside');
  const oldTerms = base + arenaCapacity;
  const oldStarts = oldTerms + ((<usize>capacity) << 3);
  const oldLengths = oldStarts + ((<usize>capacity) << 2);
  const oldTypes = oldLengths + ((<usize>capacity) << 2);
  const terms = base + newArenaCapacity;
  const starts = terms + ((<usize>newCapacity) << 3);
  const lengths = starts + ((<usize>newCapacity) << 2);
  const types = lengths + ((<usize>newCapacity) << 2);
  checkRange(base, types + newCapacity - base);
  memory.copy(types, oldTypes + head, count);
  memory.copy(lengths, oldLengths + ((<usize>head) << 2), (<usize>count) << 2);
  memory.copy(starts, oldStarts + ((<usize>head) << 2), (<usize>count) << 2);
  memory.copy(terms, oldTerms + ((<usize>head) << 3), (<usize>count) << 3);
  memory.copy(base, base + arenaHead, liveBytes);
  if (arenaHead != 0) {
    const end = starts + ((<usize>count) << 2);
    for (let p = starts; p < end; p += 4) store<u32>(p, load<u32>(p) - arenaHead);
  }
}

/**
 * Commits an append: `lengths[0 .. n - 1]` hold the batch's payload end offsets (relative to
 * the batch's data, written there by the host), whose payloads the host copied to the arena
 * at `arenaOffset` from batch offset `dataBase`. Turns them into arena starts and lengths.
 */
export function writeEnds(
  startsPtr: usize,
  lengthsPtr: usize,
  n: u32,
  arenaOffset: u32,
  dataBase: u32,
): void {
  checkRange(startsPtr, (<usize>n) << 2);
  checkRange(lengthsPtr, (<usize>n) << 2);
  let previous = dataBase;
  const delta = arenaOffset - dataBase;
  for (let k: usize = 0; k < <usize>n; k++) {
    const p = k << 2;
    const end = load<u32>(lengthsPtr + p);
    assert(end >= previous, 'payload ends decrease');
    store<u32>(startsPtr + p, previous + delta);
    store<u32>(lengthsPtr + p, end - previous);
    previous = end;
  }
}

/**
 * The AppendEntries conflict scan: the first k < n where `a[k] != b[k]` (f64 terms), or n.
 * With SIMD it compares eight terms per step (four f64x2 lanes pairs), then pins the lane down
 * with the scalar loop.
 */
export function findConflict(a: usize, b: usize, n: u32): u32 {
  checkRange(a, (<usize>n) << 3);
  checkRange(b, (<usize>n) << 3);
  let k: u32 = 0;
  if (ASC_FEATURE_SIMD) {
    while (k + 8 <= n) {
      const pa = a + ((<usize>k) << 3);
      const pb = b + ((<usize>k) << 3);
      const d0 = f64x2.ne(v128.load(pa), v128.load(pb));
      const d1 = f64x2.ne(v128.load(pa, 16), v128.load(pb, 16));
      const d2 = f64x2.ne(v128.load(pa, 32), v128.load(pb, 32));
      const d3 = f64x2.ne(v128.load(pa, 48), v128.load(pb, 48));
      if (v128.any_true(v128.or(v128.or(d0, d1), v128.or(d2, d3)))) break;
      k += 8;
    }
  }
  for (; k < n; k++) {
    const p = (<usize>k) << 3;
    if (load<f64>(a + p) != load<f64>(b + p)) return k;
  }
  return n;
}

// ---- quorum -------------------------------------------------------------------------------

/**
 * The highest value held by a majority of `count` match indexes at `ptr` (reordered in
 * place): the ((count - 1) >> 1)-th smallest. Returns 2^53 - 1 for count 0. Same quickselect
 * as the TypeScript twin.
 */
export function quorumIndex(ptr: usize, count: u32): f64 {
  if (count == 0) return 9007199254740991;
  checkRange(ptr, (<usize>count) << 3);
  const k = <i32>((count - 1) >> 1);
  let lo: i32 = 0;
  let hi = <i32>count - 1;
  while (hi - lo >= 16) {
    const mid = (lo + hi) >>> 1;
    if (at(ptr, mid) < at(ptr, lo)) swap(ptr, mid, lo);
    if (at(ptr, hi) < at(ptr, lo)) swap(ptr, hi, lo);
    if (at(ptr, hi) < at(ptr, mid)) swap(ptr, hi, mid);
    const pivot = at(ptr, mid);
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (at(ptr, i) < pivot) i++;
      while (at(ptr, j) > pivot) j--;
      if (i <= j) {
        swap(ptr, i, j);
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return at(ptr, k);
  }
  for (let i = lo + 1; i <= hi; i++) {
    const value = at(ptr, i);
    let j = i - 1;
    while (j >= lo && at(ptr, j) > value) {
      store<f64>(ptr + ((<usize>(j + 1)) << 3), at(ptr, j));
      j--;
    }
    store<f64>(ptr + ((<usize>(j + 1)) << 3), value);
  }
  return at(ptr, k);
}

function at(ptr: usize, i: i32): f64 {
  return load<f64>(ptr + ((<usize>i) << 3));
}

function swap(ptr: usize, i: i32, j: i32): void {
  const pi = ptr + ((<usize>i) << 3);
  const pj = ptr + ((<usize>j) << 3);
  const t = load<f64>(pi);
  store<f64>(pi, load<f64>(pj));
  store<f64>(pj, t);
}

// ---- clocks -------------------------------------------------------------------------------

/**
 * out[k] = -1 | 0 | 1 as HLC stamp a[k] is before / equal to / after b[k], ordering by wall
 * (f64), then logical (u32), then node (u32). Columns are separate arrays (structure of arrays).
 */
export function compareHlc(
  aWall: usize,
  aLogical: usize,
  aNode: usize,
  bWall: usize,
  bLogical: usize,
  bNode: usize,
  out: usize,
  n: u32,
): void {
  checkRange(aWall, (<usize>n) << 3);
  checkRange(bWall, (<usize>n) << 3);
  checkRange(aLogical, (<usize>n) << 2);
  checkRange(bLogical, (<usize>n) << 2);
  checkRange(aNode, (<usize>n) << 2);
  checkRange(bNode, (<usize>n) << 2);
  checkRange(out, <usize>n);
  let k: usize = 0;
  if (ASC_FEATURE_SIMD) {
    // Four stamps per step, branch-free. Comparison masks are all ones where true; "equal"
    // is "neither less nor greater" so that NaN walls fall through to the logical counter
    // exactly as in the scalar loop. The i64 wall masks are narrowed to i32 lanes by taking
    // their low halves, the result lt - gt (-1 | 0 | 1) narrowed to bytes.
    for (; k + 4 <= <usize>n; k += 4) {
      const pw = k << 3;
      const wa0 = v128.load(aWall + pw);
      const wb0 = v128.load(bWall + pw);
      const wa1 = v128.load(aWall + pw, 16);
      const wb1 = v128.load(bWall + pw, 16);
      const wallLt = i32x4.shuffle(f64x2.lt(wa0, wb0), f64x2.lt(wa1, wb1), 0, 2, 4, 6);
      const wallGt = i32x4.shuffle(f64x2.gt(wa0, wb0), f64x2.gt(wa1, wb1), 0, 2, 4, 6);
      const pu = k << 2;
      const la = v128.load(aLogical + pu);
      const lb = v128.load(bLogical + pu);
      const na = v128.load(aNode + pu);
      const nb = v128.load(bNode + pu);
      const logicalLt = i32x4.lt_u(la, lb);
      const logicalGt = i32x4.gt_u(la, lb);
      const wallEq = v128.not(v128.or(wallLt, wallGt));
      const logicalEq = v128.not(v128.or(logicalLt, logicalGt));
      const lt = v128.or(
        wallLt,
        v128.and(wallEq, v128.or(logicalLt, v128.and(logicalEq, i32x4.lt_u(na, nb)))),
      );
      const gt = v128.or(
        wallGt,
        v128.and(wallEq, v128.or(logicalGt, v128.and(logicalEq, i32x4.gt_u(na, nb)))),
      );
      const order = i32x4.sub(lt, gt);
      const bytes = i8x16.narrow_i16x8_s(
        i16x8.narrow_i32x4_s(order, order),
        i16x8.narrow_i32x4_s(order, order),
      );
      store<i32>(out + k, i32x4.extract_lane(bytes, 0));
    }
  }
  for (; k < <usize>n; k++) {
    const wa = load<f64>(aWall + (k << 3));
    const wb = load<f64>(bWall + (k << 3));
    let order: i32;
    if (wa < wb) order = -1;
    else if (wa > wb) order = 1;
    else {
      const la = load<u32>(aLogical + (k << 2));
      const lb = load<u32>(bLogical + (k << 2));
      if (la < lb) order = -1;
      else if (la > lb) order = 1;
      else {
        const na = load<u32>(aNode + (k << 2));
        const nb = load<u32>(bNode + (k << 2));
        order = na < nb ? -1 : na > nb ? 1 : 0;
      }
    }
    store<i8>(out + k, <i8>order);
  }
}

/**
 * Compares n pairs of version vectors of `width` f64 counters, row-major at `a` and `b`:
 * out[k] = 0 equal, 1 a before b, 2 a after b, 3 concurrent. With SIMD, two counters per step.
 */
export function compareVersionVectors(a: usize, b: usize, out: usize, n: u32, width: u32): void {
  const rowBytes = (<usize>width) << 3;
  checkRange(a, <usize>n * rowBytes);
  checkRange(b, <usize>n * rowBytes);
  checkRange(out, <usize>n);
  const pairsBytes = ((<usize>width) & ~(<usize>1)) << 3;
  for (let k: usize = 0; k < <usize>n; k++) {
    const pa = a + k * rowBytes;
    const pb = b + k * rowBytes;
    let before = 0;
    let after = 0;
    let i: usize = 0;
    if (ASC_FEATURE_SIMD) {
      let lt = i64x2.splat(0);
      let gt = i64x2.splat(0);
      for (; i < pairsBytes; i += 16) {
        const x = v128.load(pa + i);
        const y = v128.load(pb + i);
        lt = v128.or(lt, f64x2.lt(x, y));
        gt = v128.or(gt, f64x2.gt(x, y));
      }
      before = <i32>v128.any_true(lt);
      after = (<i32>v128.any_true(gt)) << 1;
    }
    for (; i < rowBytes; i += 8) {
      const x = load<f64>(pa + i);
      const y = load<f64>(pb + i);
      if (x < y) before = 1;
      else if (x > y) after = 2;
    }
    store<i8>(out + k, <i8>(before | after));
  }
}
