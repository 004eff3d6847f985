/**
 * The kernels: the Raft log resident in WebAssembly memory (or its TypeScript twin), the quorum
 * commit index, and batch comparisons of hybrid logical clocks and version vectors.
 *
 * Every kernel has a plain-TypeScript twin in `reference.ts`; the functions here dispatch to
 * WASM only from the batch size where it measured faster (bench/kernels.ts), and to the twin
 * below it.
 *
 * @example
 * ```ts
 * import { createLog } from './kernel/index.js';
 * const log = createLog();                       // WASM, release build (debug under vitest)
 * const twin = createLog({ kernel: 'ts' });      // the TypeScript twin
 * const checked = createLog({ build: 'debug' }); // WASM with assertions
 * ```
 */
import type { LogStore } from '../raft/types.js';
import type { LogOptions } from './packed-log.js';
import type { HlcColumns } from './reference.js';
import {
  TsLog,
  checkQuorumArgs,
  quorumIndexUnchecked,
  checkHlcArgs,
  checkVersionVectorArgs,
  compareHlcUnchecked,
  compareVersionVectorUnchecked,
} from './reference.js';
import {
  compareHlcWasmUnchecked,
  compareVersionVectorWasmUnchecked,
  quorumIndexWasm,
} from './batch-compare.js';
import type { KernelBuild } from './wasm.js';
import { checkBuild, defaultKernelBuild } from './wasm.js';
import { WasmLog } from './wasm-log.js';

export type { LogOptions } from './packed-log.js';
export { PackedLog, entryOverheadBytes, logDefaults } from './packed-log.js';
export type { HlcColumns } from './reference.js';
export { TsLog, VersionOrder } from './reference.js';
export type { WasmLogOptions } from './wasm-log.js';
export { WasmLog, commitThresholdDefault, conflictScanThresholdDefault } from './wasm-log.js';
export type { KernelBuild } from './wasm.js';
export { defaultKernelBuild, kernelPoolStats } from './wasm.js';
export {
  HlcBatchStage,
  VersionVectorBatchStage,
  compareHlcWasm,
  compareVersionVectorWasm,
  quorumIndexWasm,
} from './batch-compare.js';
export { KernelError, LogFullError } from './errors.js';

/** Which implementation of the log to run. */
export type KernelKind = 'wasm' | 'ts';

/** Options of {@link createLog}. */
export interface CreateLogOptions extends LogOptions {
  /** 'wasm' (default): the log in WebAssembly memory; 'ts': the TypeScript twin. */
  readonly kernel?: KernelKind;
  /**
   * WASM build: 'release', 'debug' (assertions) or 'scalar' (no SIMD). Default
   * {@link defaultKernelBuild}: 'release', but 'debug' under vitest.
   */
  readonly build?: KernelBuild;
  /** See {@link WasmLogOptions.conflictScanThreshold}; ignored by the TypeScript twin. */
  readonly conflictScanThreshold?: number;
  /** See {@link WasmLogOptions.commitThreshold}; ignored by the TypeScript twin. */
  readonly commitThreshold?: number;
}

/**
 * A new, empty Raft log (first index 1, compaction point (0, 0)). The WASM log keeps its entries
 * in the memory of its own instance; call `dispose()` on a {@link WasmLog} you drop to hand the
 * instance to the next log at once (it is reclaimed on garbage collection otherwise).
 */
export function createLog(options: CreateLogOptions = {}): LogStore & PackedLogLike {
  const kernel = options.kernel ?? 'wasm';
  if (kernel === 'ts') return new TsLog(options);
  if (kernel !== 'wasm') {
    throw new TypeError(`Unknown kernel ${JSON.stringify(kernel)}: expected 'wasm' or 'ts'`);
  }
  if (options.build !== undefined) checkBuild(options.build);
  return new WasmLog(options);
}

/** What both logs offer beyond {@link LogStore}. */
export interface PackedLogLike {
  /** Bytes the log's storage occupies now (entry arrays plus arena). */
  memoryBytes(): number;
  /** Checks layout invariants (tests); throws AssertionError. */
  checkInvariants(): void;
}

/**
 * Voter count from which {@link quorumIndex} runs in WASM: below it (3 and 5 voters, the usual
 * clusters) the TypeScript twin is faster, as the research note predicted; WASM (copy-in
 * included) won from 7 voters in the quorumIndex table of `npm run bench -- kernels`.
 */
export const quorumWasmThreshold = 7;

/**
 * The highest index held by a majority of `count` voters (see the twin in reference.ts, which
 * the pure Raft core uses). Dispatches to WASM from {@link quorumWasmThreshold} voters.
 */
export function quorumIndex(matchIndexes: Float64Array, count: number): number {
  checkQuorumArgs(matchIndexes, count);
  return count < quorumWasmThreshold
    ? quorumIndexUnchecked(matchIndexes, count)
    : quorumIndexWasm(matchIndexes, count);
}

/**
 * Batch size from which {@link compareHlcBatch} runs in WASM: copying six columns in and the
 * result out costs about what the SIMD kernel saves up to 512 stamps; from 1024 WASM won
 * (compareHlcBatch table of `npm run bench -- kernels`). With the stamps already in WASM
 * memory ({@link HlcBatchStage}) it wins from 16.
 */
export const hlcWasmThreshold = 1024;
/**
 * Batch size from which {@link compareVersionVectorBatch} runs in WASM: copy-in included it tied
 * at 32 vectors of 5 counters and won from 64 (compareVersionVectorBatch table of
 * `npm run bench -- kernels`; narrower vectors need larger batches).
 */
export const versionVectorWasmThreshold = 64;

/**
 * out[k] = -1 | 0 | 1 as HLC stamp a[k] is before / equal to / after b[k], ordering by
 * (wall, logical, node). Runs the TypeScript twin below {@link hlcWasmThreshold} stamps and
 * WASM from there; for inputs already in WASM memory use {@link HlcBatchStage}.
 */
export function compareHlcBatch(a: HlcColumns, b: HlcColumns, n: number, out: Int8Array): void {
  checkHlcArgs(a, b, n, out);
  if (n < hlcWasmThreshold) compareHlcUnchecked(a, b, n, out, 0);
  else compareHlcWasmUnchecked(a, b, n, out, defaultKernelBuild());
}

/**
 * a and b: n version vectors of `width` counters each, row-major. out[k] = 0 equal, 1 a before
 * b (a < b), 2 a after b, 3 concurrent. Runs the TypeScript twin below
 * {@link versionVectorWasmThreshold} vectors and WASM from there; for inputs already in WASM
 * memory use {@link VersionVectorBatchStage}.
 */
export function compareVersionVectorBatch(
  a: Float64Array,
  b: Float64Array,
  n: number,
  width: number,
  out: Int8Array,
): void {
  checkVersionVectorArgs(a, b, n, width, out);
  if (n < versionVectorWasmThreshold) compareVersionVectorUnchecked(a, b, n, width, out, 0);
  else compareVersionVectorWasmUnchecked(a, b, n, width, out, defaultKernelBuild());
}
