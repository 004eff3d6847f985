/**
 * WasmLog: the Raft log resident in WebAssembly linear memory. Entry arrays and payload arena
 * live in the instance's memory; the host reads them through cached typed-array views (a term
 * lookup is a JS array read, not a call) and writes appended entries straight into the tail,
 * then makes one call to commit the payload locations. Only batch scans and relocation run in
 * WASM, and scans below `conflictScanThreshold` entries stay in JS, where the boundary
 * crossing and the copy into the stage cost more than the scan saves.
 *
 * Memory map of the instance (pointers from `heapBase`):
 *
 * ```
 * heapBase                 stage: f64[stageTerms]  incoming terms for the conflict scan
 * base = heapBase + 64 KiB arena u8[arenaCapacity] | terms f64[capacity] | starts u32[capacity]
 *                          | lengths u32[capacity] | types u8[capacity]
 * ```
 */
import { PackedLog, copyInto, copyLoopMax, logMemoryBytes } from './packed-log.js';
import type { LogOptions } from './packed-log.js';
import { ShutdownError } from '../errors.js';
import { LogFullError } from './errors.js';
import type { KernelBuild, KernelExports, KernelInstance } from './wasm.js';
import {
  acquireKernel,
  defaultKernelBuild,
  kernelFailure,
  kernelMemoryBytesMax,
  releaseKernel,
} from './wasm.js';

/** Bytes of the staging area for incoming terms (8,192 terms); longer scans go in chunks. */
export const stageBytes = 64 * 1024;

/**
 * Default overlap from which `matchAndAppend` scans for conflicts in WASM rather than in JS:
 * with the terms copied into the stage, WASM (SIMD) lost at 32 entries and won from 48 in the
 * "Threshold search" table of `npm run bench -- kernels`.
 */
export const conflictScanThresholdDefault = 48;

/**
 * Appends of fewer entries than this commit their payload locations with a JS loop over the
 * resident views rather than a WASM call: the call lost below 24 entries and tied or won from
 * there ("Threshold search" table of `npm run bench -- kernels`).
 */
export const commitThresholdDefault = 24;

/** Options of a {@link WasmLog}. */
export interface WasmLogOptions extends LogOptions {
  /** Kernel build to run. Default: {@link defaultKernelBuild} ('release' outside tests). */
  readonly build?: KernelBuild;
  /**
   * Overlaps of at least this many entries are scanned in WASM, shorter ones in JS over the
   * resident views. 0 always uses WASM, Infinity never. Default
   * {@link conflictScanThresholdDefault}.
   */
  readonly conflictScanThreshold?: number;
  /**
   * Appends of at least this many entries commit their payload locations in WASM, smaller ones
   * with a JS loop over the resident views. Default {@link commitThresholdDefault}.
   */
  readonly commitThreshold?: number;
}

const detached = {
  terms: new Float64Array(0),
  starts: new Uint32Array(0),
  lengths: new Uint32Array(0),
  types: new Uint8Array(0),
  arena: new Uint8Array(0),
};

/** The Raft log in WebAssembly memory; see the file comment. */
export class WasmLog extends PackedLog {
  /** The build this log runs. */
  readonly build: KernelBuild;
  /** See {@link WasmLogOptions.conflictScanThreshold}. */
  readonly conflictScanThreshold: number;
  /** See {@link WasmLogOptions.commitThreshold}. */
  readonly commitThreshold: number;
  private readonly kernel: KernelInstance;
  private readonly exports: KernelExports;
  private readonly stagePtr: number;
  private readonly base: number;
  private termsPtr = 0;
  private startsPtr = 0;
  private lengthsPtr = 0;
  private stage!: Float64Array;
  /** Set once the log is disposed or a kernel call failed; every later call throws it. */
  private failure: Error | null = null;

  constructor(options: WasmLogOptions = {}) {
    super(options);
    const threshold = options.conflictScanThreshold ?? conflictScanThresholdDefault;
    if (typeof threshold !== 'number' || !(threshold >= 0)) {
      throw new RangeError(
        `Invalid conflictScanThreshold: ${String(threshold)} (expected a number >= 0)`,
      );
    }
    this.conflictScanThreshold = threshold;
    const commit = options.commitThreshold ?? commitThresholdDefault;
    if (typeof commit !== 'number' || !(commit >= 0)) {
      throw new RangeError(`Invalid commitThreshold: ${String(commit)} (expected a number >= 0)`);
    }
    this.commitThreshold = commit;
    this.kernel = acquireKernel(options.build ?? defaultKernelBuild());
    this.build = this.kernel.build;
    this.exports = this.kernel.exports;
    this.stagePtr = this.kernel.heapBase;
    this.base = this.stagePtr + stageBytes;
    const bytesEnd = this.base + logMemoryBytes(this.capacity, this.arenaCapacity);
    if (bytesEnd > kernelMemoryBytesMax || this.exports.grow(bytesEnd) < 0) {
      releaseKernel(this.kernel);
      throw new LogFullError(
        `Cannot create the log: ${bytesEnd} bytes exceed the WebAssembly memory maximum of ${kernelMemoryBytesMax}`,
      );
    }
    this.bindViews(this.capacity, this.arenaCapacity);
  }

  /**
   * Hands the instance back to the pool for the next log; afterwards every call throws
   * ShutdownError.
   * Optional (a dropped log is garbage-collected with its instance), but it makes creating the
   * next log several times cheaper: see "Creating a log" in `npm run bench -- kernels`.
   */
  dispose(): void {
    if (this.failure !== null) return;
    this.poison(new ShutdownError('Cannot use the log: it was disposed'));
    releaseKernel(this.kernel);
  }

  /** The WASM memory's current size in bytes (tests watch it for unexpected growth). */
  memoryBufferBytes(): number {
    return this.exports.memory.buffer.byteLength;
  }

  /**
   * The staging area for a caller that decodes incoming terms straight into WASM memory
   * (see {@link findConflictStaged}). Valid until the log next grows: fetch it per batch.
   */
  stagedTerms(): Float64Array {
    this.checkUsable();
    return this.stage;
  }

  /**
   * The conflict scan with its input already resident: the first k < n where the staged term
   * `stagedTerms()[k]` differs from `termAt(index + k)`, or n. Requires
   * `firstIndex() <= index` and `index + n - 1 <= lastIndex()`.
   */
  findConflictStaged(index: number, n: number): number {
    this.checkUsable();
    if (!Number.isSafeInteger(n) || n < 0 || n > this.stage.length) {
      throw new RangeError(
        `Cannot scan staged terms: n is ${n}, expected an integer in 0..${this.stage.length}`,
      );
    }
    if (!Number.isSafeInteger(index) || index < this.first || index + n - 1 > this.last) {
      throw new RangeError(
        `Cannot scan staged terms against entries ${index}..${index + n - 1}: the log holds ${this.first}..${this.last}`,
      );
    }
    try {
      return this.exports.findConflict(this.stagePtr, this.termsPtr + this.slotOf(index) * 8, n);
    } catch (error) {
      throw this.fail('findConflict', error);
    }
  }

  /** {@inheritDoc LogStore.lastIndex} */
  override lastIndex(): number {
    if (this.failure !== null) throw this.failure;
    return this.last;
  }

  /** {@inheritDoc LogStore.firstIndex} */
  override firstIndex(): number {
    if (this.failure !== null) throw this.failure;
    return this.first;
  }

  // ---- kernels -----------------------------------------------------------------------------

  protected override writeEnds(
    ends: Uint32Array,
    from: number,
    n: number,
    slot: number,
    arenaOffset: number,
    dataBase: number,
  ): void {
    // Below the threshold the boundary crossing costs more than the loop: the twin's loop runs
    // over the resident views instead, with the same result.
    if (n < this.commitThreshold) {
      super.writeEnds(ends, from, n, slot, arenaOffset, dataBase);
      return;
    }
    // The batch's ends go straight into the resident lengths; WASM turns them into
    // starts/lengths in place. No staging, no second copy.
    copyInto(this.lengths, slot, ends, from, n);
    try {
      this.exports.writeEnds(
        this.startsPtr + slot * 4,
        this.lengthsPtr + slot * 4,
        n,
        arenaOffset,
        dataBase,
      );
    } catch (error) {
      throw this.fail('writeEnds', error);
    }
  }

  protected override relocate(capacity: number, arenaCapacity: number): void {
    this.checkUsable();
    const bytesEnd = this.base + logMemoryBytes(capacity, arenaCapacity);
    let grown: number;
    try {
      grown = bytesEnd > kernelMemoryBytesMax ? -1 : this.exports.grow(bytesEnd);
    } catch (error) {
      throw this.fail('grow', error);
    }
    if (grown < 0) {
      throw new LogFullError(
        `Cannot grow the log to ${capacity} entries and ${arenaCapacity} payload bytes: ` +
          `the WebAssembly memory cannot grow to ${bytesEnd} bytes (maximum ${kernelMemoryBytesMax})`,
      );
    }
    try {
      this.exports.relocate(
        this.base,
        this.head,
        this.last - this.first + 1,
        this.capacity,
        this.arenaCapacity,
        this.arenaHead,
        this.arenaTail - this.arenaHead,
        capacity,
        arenaCapacity,
      );
    } catch (error) {
      throw this.fail('relocate', error);
    }
    // Growing detached every view of the old buffer, and relocating moved the regions.
    this.bindViews(capacity, arenaCapacity);
  }

  protected override findConflict(batchTerms: Float64Array, slot: number, n: number): number {
    if (n < this.conflictScanThreshold) return super.findConflict(batchTerms, slot, n);
    const stage = this.stage;
    const chunkMax = stage.length;
    let done = 0;
    try {
      while (done < n) {
        const chunk = Math.min(n - done, chunkMax);
        if (chunk < copyLoopMax) {
          for (let k = 0; k < chunk; k++) stage[k] = batchTerms[done + k]!;
        } else {
          stage.set(batchTerms.subarray(done, done + chunk));
        }
        const k = this.exports.findConflict(
          this.stagePtr,
          this.termsPtr + (slot + done) * 8,
          chunk,
        );
        if (k < chunk) return done + k;
        done += chunk;
      }
    } catch (error) {
      throw this.fail('findConflict', error);
    }
    return n;
  }

  // ---- internals ---------------------------------------------------------------------------

  /** (Re)builds every view over the current memory buffer for the given capacities. */
  private bindViews(capacity: number, arenaCapacity: number): void {
    const buffer = this.exports.memory.buffer;
    this.stage = new Float64Array(buffer, this.stagePtr, stageBytes / 8);
    this.arena = new Uint8Array(buffer, this.base, arenaCapacity);
    this.termsPtr = this.base + arenaCapacity;
    this.startsPtr = this.termsPtr + capacity * 8;
    this.lengthsPtr = this.startsPtr + capacity * 4;
    this.terms = new Float64Array(buffer, this.termsPtr, capacity);
    this.starts = new Uint32Array(buffer, this.startsPtr, capacity);
    this.lengths = new Uint32Array(buffer, this.lengthsPtr, capacity);
    this.types = new Uint8Array(buffer, this.lengthsPtr + capacity * 4, capacity);
  }

  protected override checkUsable(): void {
    if (this.failure !== null) throw this.failure;
  }

  /** Makes every later call throw `error`: reads fall off their fast path on empty views. */
  private poison(error: Error): void {
    this.failure = error;
    Object.assign(this, detached);
    this.capacity = 0;
    this.arenaCapacity = 0;
    this.first = 1;
    this.last = 0;
  }

  private fail(call: string, error: unknown): Error {
    const failure = kernelFailure(call, this.build, error);
    // The instance may be half-updated: never hand it to another log (dispose() is a no-op).
    this.poison(failure);
    return failure;
  }
}
