/**
 * The stateless batch kernels in WebAssembly: HLC comparison, version-vector comparison and the
 * quorum index. Two ways in:
 *
 * - copy-in (`compareHlcWasm`, `compareVersionVectorWasm`, `quorumIndexWasm`): the caller's
 *   typed arrays are copied into a scratch area of one shared instance per build, the kernel
 *   runs, the results are copied out. Long batches go in chunks, so the scratch never grows.
 * - resident ({@link HlcBatchStage}, {@link VersionVectorBatchStage}): the caller writes its
 *   inputs straight into views of WASM memory and makes one call; nothing is copied.
 */
import { copyLoopMax } from './packed-log.js';
import type { HlcColumns } from './reference.js';
import { checkHlcArgs, checkVersionVectorArgs, quorumIndexUnchecked } from './reference.js';
import type { KernelBuild, KernelExports } from './wasm.js';
import { defaultKernelBuild, instantiateKernel, kernelFailure } from './wasm.js';

/** Stamps per chunk of the copy-in HLC path, and rows per chunk of the VV path at most. */
const chunkMax = 4096;
/** Bytes of the copy-in scratch: HLC needs 33 bytes per stamp pair, VV 16 per counter pair. */
const scratchBytes = 512 * 1024 + chunkMax;

interface Scratch {
  readonly build: KernelBuild;
  readonly exports: KernelExports;
  readonly ptr: number;
  readonly aWall: Float64Array;
  readonly bWall: Float64Array;
  readonly aLogical: Uint32Array;
  readonly aNode: Uint32Array;
  readonly bLogical: Uint32Array;
  readonly bNode: Uint32Array;
  readonly out: Int8Array;
  /** The whole scratch as f64 (quorum input; VV rows a at 0, b at the middle). */
  readonly f64: Float64Array;
  /** Where VV results go (after both halves). */
  readonly vvOut: Int8Array;
}

const scratches = new Map<KernelBuild, Scratch>();

/** Sizes memory once (grows before any view exists), then binds views that never detach. */
function growOnce(exports: KernelExports, bytesEnd: number, build: KernelBuild): void {
  let grown: number;
  try {
    grown = exports.grow(bytesEnd);
  } catch (error) {
    throw kernelFailure('grow', build, error);
  }
  if (grown < 0) {
    throw new RangeError(
      `Cannot size the ${build} kernel's memory to ${bytesEnd} bytes: above its maximum`,
    );
  }
}

function scratchOf(build: KernelBuild): Scratch {
  let scratch = scratches.get(build);
  if (scratch === undefined) {
    const kernel = instantiateKernel(build);
    const ptr = kernel.heapBase;
    growOnce(kernel.exports, ptr + scratchBytes, build);
    const buffer = kernel.exports.memory.buffer;
    const f64 = new Float64Array(buffer, ptr, (scratchBytes - chunkMax) / 8);
    const at = (offset: number): number => ptr + offset;
    scratch = {
      build,
      exports: kernel.exports,
      ptr,
      aWall: new Float64Array(buffer, at(0), chunkMax),
      bWall: new Float64Array(buffer, at(chunkMax * 8), chunkMax),
      aLogical: new Uint32Array(buffer, at(chunkMax * 16), chunkMax),
      aNode: new Uint32Array(buffer, at(chunkMax * 20), chunkMax),
      bLogical: new Uint32Array(buffer, at(chunkMax * 24), chunkMax),
      bNode: new Uint32Array(buffer, at(chunkMax * 28), chunkMax),
      out: new Int8Array(buffer, at(chunkMax * 32), chunkMax),
      f64,
      vvOut: new Int8Array(buffer, at(scratchBytes - chunkMax), chunkMax),
    };
    scratches.set(build, scratch);
  }
  return scratch;
}

/** Copies `n` values; a loop below `copyLoopMax` elements is cheaper than `subarray` + `set`. */
function copyIn<T extends Float64Array | Uint32Array>(
  to: T,
  from: T,
  start: number,
  n: number,
): void {
  if (n < copyLoopMax) {
    for (let k = 0; k < n; k++) to[k] = from[start + k]!;
  } else {
    to.set(from.subarray(start, start + n));
  }
}

function copyOut(to: Int8Array, at: number, from: Int8Array, n: number): void {
  if (n < copyLoopMax) {
    for (let k = 0; k < n; k++) to[at + k] = from[k]!;
  } else {
    to.set(from.subarray(0, n), at);
  }
}

/** `compareHlcBatch` in WASM, inputs copied in and results copied out (checks arguments). */
export function compareHlcWasm(
  a: HlcColumns,
  b: HlcColumns,
  n: number,
  out: Int8Array,
  build: KernelBuild = defaultKernelBuild(),
): void {
  checkHlcArgs(a, b, n, out);
  compareHlcWasmUnchecked(a, b, n, out, build);
}

/** {@link compareHlcWasm} without argument checks. */
export function compareHlcWasmUnchecked(
  a: HlcColumns,
  b: HlcColumns,
  n: number,
  out: Int8Array,
  build: KernelBuild,
): void {
  const s = scratchOf(build);
  const ptr = s.ptr;
  for (let done = 0; done < n; done += chunkMax) {
    const chunk = Math.min(chunkMax, n - done);
    copyIn(s.aWall, a.wall, done, chunk);
    copyIn(s.bWall, b.wall, done, chunk);
    copyIn(s.aLogical, a.logical, done, chunk);
    copyIn(s.aNode, a.node, done, chunk);
    copyIn(s.bLogical, b.logical, done, chunk);
    copyIn(s.bNode, b.node, done, chunk);
    try {
      s.exports.compareHlc(
        ptr,
        ptr + chunkMax * 16,
        ptr + chunkMax * 20,
        ptr + chunkMax * 8,
        ptr + chunkMax * 24,
        ptr + chunkMax * 28,
        ptr + chunkMax * 32,
        chunk,
      );
    } catch (error) {
      throw kernelFailure('compareHlc', build, error);
    }
    copyOut(out, done, s.out, chunk);
  }
}

/** `compareVersionVectorBatch` in WASM, inputs copied in and results copied out. */
export function compareVersionVectorWasm(
  a: Float64Array,
  b: Float64Array,
  n: number,
  width: number,
  out: Int8Array,
  build: KernelBuild = defaultKernelBuild(),
): void {
  checkVersionVectorArgs(a, b, n, width, out);
  compareVersionVectorWasmUnchecked(a, b, n, width, out, build);
}

/** {@link compareVersionVectorWasm} without argument checks. */
export function compareVersionVectorWasmUnchecked(
  a: Float64Array,
  b: Float64Array,
  n: number,
  width: number,
  out: Int8Array,
  build: KernelBuild,
): void {
  const s = scratchOf(build);
  const half = s.f64.length / 2;
  const rowsMax = width === 0 ? chunkMax : Math.min(chunkMax, Math.floor(half / width));
  if (rowsMax === 0) {
    throw new RangeError(
      `Cannot compare version vectors of width ${width} in WASM: a row exceeds the scratch area`,
    );
  }
  const aView = s.f64.subarray(0, half);
  const bView = s.f64.subarray(half);
  for (let done = 0; done < n; done += rowsMax) {
    const rows = Math.min(rowsMax, n - done);
    copyIn(aView, a, done * width, rows * width);
    copyIn(bView, b, done * width, rows * width);
    try {
      s.exports.compareVersionVectors(
        s.ptr,
        s.ptr + half * 8,
        s.ptr + scratchBytes - chunkMax,
        rows,
        width,
      );
    } catch (error) {
      throw kernelFailure('compareVersionVectors', build, error);
    }
    copyOut(out, done, s.vvOut, rows);
  }
}

/**
 * `quorumIndex` in WASM (input copied into scratch, not modified). Counts beyond the scratch
 * (65,024 voters) fall back to the TypeScript twin.
 */
export function quorumIndexWasm(
  matchIndexes: Float64Array,
  count: number,
  build: KernelBuild = defaultKernelBuild(),
): number {
  if (!Number.isSafeInteger(count) || count < 0 || count > matchIndexes.length) {
    throw new RangeError(
      `Cannot compute the quorum index: count is ${count}, expected an integer in 0..${matchIndexes.length}`,
    );
  }
  const s = scratchOf(build);
  if (count > s.f64.length) return quorumIndexUnchecked(matchIndexes, count);
  copyIn(s.f64, matchIndexes, 0, count);
  try {
    return s.exports.quorumIndex(s.ptr, count);
  } catch (error) {
    throw kernelFailure('quorumIndex', build, error);
  }
}

// ---- resident stages ---------------------------------------------------------------------

/**
 * HLC stamps resident in WASM memory: fill `a`, `b` (views into the instance's memory) with up
 * to `capacity` stamps, call {@link compare}, read `out`. One instance per stage; its memory is
 * sized in the constructor and never grows, so the views stay valid for the stage's life.
 *
 * @example
 * ```ts
 * const stage = new HlcBatchStage(1024);
 * stage.a.wall[0] = 1700000000000; stage.b.wall[0] = 1700000000001;
 * stage.compare(1);
 * stage.out[0]; // -1
 * ```
 */
export class HlcBatchStage {
  readonly capacity: number;
  readonly a: HlcColumns;
  readonly b: HlcColumns;
  readonly out: Int8Array;
  readonly build: KernelBuild;
  private readonly exports: KernelExports;
  private readonly ptr: number;

  constructor(capacity = 4096, options: { readonly build?: KernelBuild } = {}) {
    if (!Number.isSafeInteger(capacity) || capacity < 1 || capacity > 2 ** 24) {
      throw new RangeError(`Invalid capacity: ${capacity} (expected an integer in 1..${2 ** 24})`);
    }
    const kernel = instantiateKernel(options.build ?? defaultKernelBuild());
    this.build = kernel.build;
    this.exports = kernel.exports;
    this.capacity = capacity;
    const c = roundUp16(capacity);
    this.ptr = kernel.heapBase;
    growOnce(this.exports, this.ptr + c * 33, this.build);
    const buffer = this.exports.memory.buffer;
    const p = this.ptr;
    this.a = {
      wall: new Float64Array(buffer, p, capacity),
      logical: new Uint32Array(buffer, p + c * 16, capacity),
      node: new Uint32Array(buffer, p + c * 20, capacity),
    };
    this.b = {
      wall: new Float64Array(buffer, p + c * 8, capacity),
      logical: new Uint32Array(buffer, p + c * 24, capacity),
      node: new Uint32Array(buffer, p + c * 28, capacity),
    };
    this.out = new Int8Array(buffer, p + c * 32, capacity);
  }

  /** out[k] = -1 | 0 | 1 as a[k] is before / equal to / after b[k], for k < n. */
  compare(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0 || n > this.capacity) {
      throw new RangeError(
        `Cannot compare clocks: n is ${n}, expected an integer in 0..${this.capacity}`,
      );
    }
    const c = roundUp16(this.capacity);
    const p = this.ptr;
    try {
      this.exports.compareHlc(
        p,
        p + c * 16,
        p + c * 20,
        p + c * 8,
        p + c * 24,
        p + c * 28,
        p + c * 32,
        n,
      );
    } catch (error) {
      throw kernelFailure('compareHlc', this.build, error);
    }
  }

  /** The WASM memory's size in bytes (tests watch it for unexpected growth). */
  memoryBufferBytes(): number {
    return this.exports.memory.buffer.byteLength;
  }
}

/**
 * Version vectors resident in WASM memory: `capacity` rows of `width` counters in `a` and `b`
 * (row-major views into the instance's memory); {@link compare} writes `out` (0 equal,
 * 1 before, 2 after, 3 concurrent). Memory is sized once; the views never detach.
 */
export class VersionVectorBatchStage {
  readonly capacity: number;
  readonly width: number;
  readonly a: Float64Array;
  readonly b: Float64Array;
  readonly out: Int8Array;
  readonly build: KernelBuild;
  private readonly exports: KernelExports;
  private readonly ptr: number;

  constructor(capacity: number, width: number, options: { readonly build?: KernelBuild } = {}) {
    if (!Number.isSafeInteger(capacity) || capacity < 1 || capacity > 2 ** 24) {
      throw new RangeError(`Invalid capacity: ${capacity} (expected an integer in 1..${2 ** 24})`);
    }
    if (!Number.isSafeInteger(width) || width < 1 || width > 65536 || capacity * width > 2 ** 26) {
      throw new RangeError(
        `Invalid width: ${width} (expected an integer in 1..65536 with capacity * width <= ${2 ** 26})`,
      );
    }
    const kernel = instantiateKernel(options.build ?? defaultKernelBuild());
    this.build = kernel.build;
    this.exports = kernel.exports;
    this.capacity = capacity;
    this.width = width;
    this.ptr = kernel.heapBase;
    const rowsBytes = capacity * width * 8;
    growOnce(this.exports, this.ptr + 2 * rowsBytes + capacity, this.build);
    const buffer = this.exports.memory.buffer;
    this.a = new Float64Array(buffer, this.ptr, capacity * width);
    this.b = new Float64Array(buffer, this.ptr + rowsBytes, capacity * width);
    this.out = new Int8Array(buffer, this.ptr + 2 * rowsBytes, capacity);
  }

  /** Compares rows 0 .. n - 1 of `a` and `b` into `out`. */
  compare(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0 || n > this.capacity) {
      throw new RangeError(
        `Cannot compare version vectors: n is ${n}, expected an integer in 0..${this.capacity}`,
      );
    }
    const rowsBytes = this.capacity * this.width * 8;
    try {
      this.exports.compareVersionVectors(
        this.ptr,
        this.ptr + rowsBytes,
        this.ptr + 2 * rowsBytes,
        n,
        this.width,
      );
    } catch (error) {
      throw kernelFailure('compareVersionVectors', this.build, error);
    }
  }

  /** The WASM memory's size in bytes (tests watch it for unexpected growth). */
  memoryBufferBytes(): number {
    return this.exports.memory.buffer.byteLength;
  }
}

function roundUp16(value: number): number {
  return Math.ceil(value / 16) * 16;
}
