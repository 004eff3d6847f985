/**
 * Loading the WebAssembly kernels: one compiled `WebAssembly.Module` per build and process,
 * raw instances (no loader, no bindings: raw exports cost one boundary crossing), a small pool
 * of idle instances, and the translation of traps into typed errors.
 *
 * Each log owns one instance and its memory. Creating one costs tens of µs and V8 reserves a
 * large virtual range per memory (about 12,000 live memories exhaust it on this machine), so a
 * disposed log hands its instance to a small pool that the next log takes it from. A log that
 * is dropped without `dispose()` is simply garbage-collected with its instance: deliberately no
 * FinalizationRegistry, whose held instances would stay alive until its callbacks run (never,
 * in a long synchronous loop such as a simulator's) and exhaust the address space.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { AssertionError } from '../assert.js';
import { KernelError } from './errors.js';

// The compiler's libs (ES2023 + @types/node) carry no WebAssembly types; this is the part used.
/** A WebAssembly linear memory. */
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
/** A compiled WebAssembly module (opaque). */
export type WasmModule = object;
interface WasmApi {
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (
    module: WasmModule,
    imports: Record<string, Record<string, unknown>>,
  ) => { readonly exports: object };
}
const wasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** Which compilation of assembly/index.ts to run (see asconfig.json). */
export type KernelBuild = 'release' | 'debug' | 'scalar';

/** The raw exports of assembly/index.ts. Pointers, counts and sizes are numbers. */
export interface KernelExports {
  readonly memory: WasmMemory;
  heapBase(): number;
  grow(bytesEnd: number): number;
  relocate(
    base: number,
    head: number,
    count: number,
    capacity: number,
    arenaCapacity: number,
    arenaHead: number,
    liveBytes: number,
    newCapacity: number,
    newArenaCapacity: number,
  ): void;
  writeEnds(
    startsPtr: number,
    lengthsPtr: number,
    n: number,
    arenaOffset: number,
    dataBase: number,
  ): void;
  findConflict(a: number, b: number, n: number): number;
  quorumIndex(ptr: number, count: number): number;
  compareHlc(
    aWall: number,
    aLogical: number,
    aNode: number,
    bWall: number,
    bLogical: number,
    bNode: number,
    out: number,
    n: number,
  ): void;
  compareVersionVectors(a: number, b: number, out: number, n: number, width: number): void;
}

/** An instance of a kernel build. */
export interface KernelInstance {
  readonly build: KernelBuild;
  readonly exports: KernelExports;
  /** First byte the host may lay data out from (past the module's static data). */
  readonly heapBase: number;
}

/** The module's maximum memory (asconfig.json `maximumMemory`, 32768 pages). */
export const kernelMemoryBytesMax = 32768 * 65536;

// Literal `new URL(..., import.meta.url)` per file: resolves from src/kernel (tsx, vitest) and
// from dist/kernel (the tsc output) alike, and bundlers recognise the pattern.
const wasmUrls: Record<KernelBuild, URL> = {
  release: new URL('../../build/kernel.wasm', import.meta.url),
  debug: new URL('../../build/kernel.debug.wasm', import.meta.url),
  scalar: new URL('../../build/kernel.scalar.wasm', import.meta.url),
};

const modules = new Map<KernelBuild, WasmModule>();

let defaultBuild: KernelBuild | null = null;

/**
 * The build used when a caller names none: `PHANTOMDB_KERNEL_BUILD` if set; else 'debug' under
 * vitest (VITEST is set), so every test runs the kernels with their assertions on; else
 * 'release'. Read once: looking up process.env costs some 100 ns, more than a kernel call.
 */
export function defaultKernelBuild(): KernelBuild {
  if (defaultBuild === null) {
    const fromEnv = process.env['PHANTOMDB_KERNEL_BUILD'];
    if (fromEnv !== undefined && fromEnv !== '') {
      checkBuild(fromEnv);
      defaultBuild = fromEnv;
    } else {
      defaultBuild = process.env['VITEST'] !== undefined ? 'debug' : 'release';
    }
  }
  return defaultBuild;
}

/** Throws TypeError unless `build` names a kernel build. */
export function checkBuild(build: unknown): asserts build is KernelBuild {
  if (build !== 'release' && build !== 'debug' && build !== 'scalar') {
    throw new TypeError(
      `Unknown kernel build ${JSON.stringify(build)}: expected 'release', 'debug' or 'scalar'`,
    );
  }
}

/** The compiled module of `build`, compiled synchronously on first use and cached. */
export function kernelModule(build: KernelBuild): WasmModule {
  let module = modules.get(build);
  if (module === undefined) {
    const url = wasmUrls[build];
    let bytes: Buffer;
    try {
      bytes = readFileSync(fileURLToPath(url));
    } catch (error) {
      throw new KernelError(
        `Cannot load the ${build} WebAssembly kernel from ${fileURLToPath(url)}: ` +
          `${(error as Error).message}; run \`npm run build:wasm\``,
        { cause: error },
      );
    }
    module = new wasmApi.Module(bytes);
    modules.set(build, module);
  }
  return module;
}

/** Reads the AssemblyScript string at `ptr` (UTF-16, byte length stored just before it). */
function readString(memory: WasmMemory, ptr: number): string {
  if (ptr === 0) return '';
  const bytes = new Uint32Array(memory.buffer, ptr - 4, 1)[0]!;
  return String.fromCharCode(...new Uint16Array(memory.buffer, ptr, bytes >>> 1));
}

/** Instantiates `build` afresh. Debug builds report failed assertions as AssertionError. */
export function instantiateKernel(build: KernelBuild): KernelInstance {
  checkBuild(build);
  const module = kernelModule(build);
  let memory: WasmMemory | null = null;
  const abort = (message: number, file: number, line: number, column: number): never => {
    const text = memory === null ? '' : readString(memory, message);
    const where = memory === null ? '' : readString(memory, file);
    throw new AssertionError(
      `WebAssembly kernel assertion failed: ${text} (${where}:${line}:${column})`,
    );
  };
  let instance: { readonly exports: object };
  try {
    instance = new wasmApi.Instance(module, { env: { abort } });
  } catch (error) {
    throw new KernelError(
      `Cannot instantiate the ${build} WebAssembly kernel: ${(error as Error).message}`,
      { cause: error },
    );
  }
  const exports = instance.exports as unknown as KernelExports;
  memory = exports.memory;
  return { build, exports, heapBase: exports.heapBase() };
}

/**
 * Turns an exception out of a kernel call into the error to throw: our own AssertionError
 * (debug builds) passes through; a trap becomes a {@link KernelError} naming the call.
 */
export function kernelFailure(call: string, build: KernelBuild, error: unknown): Error {
  if (error instanceof AssertionError) return error;
  const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return new KernelError(
    `The ${build} WebAssembly kernel failed in ${call} (${detail}); the log that called it is unusable`,
    { cause: error },
  );
}

// ---- pool --------------------------------------------------------------------------------

/** Idle instances kept per build; beyond it they are left to the garbage collector. */
export const kernelPoolSizeMax = 32;
/** Instances whose memory grew past this are not pooled (their memory cannot shrink). */
const pooledMemoryBytesMax = 4 * 1024 * 1024;

const pools: Record<KernelBuild, KernelInstance[]> = { release: [], debug: [], scalar: [] };

/** Counters of the pool, for tests and benchmarks. */
export const kernelPoolStats = { created: 0, reused: 0, returned: 0, dropped: 0 };

/** An instance of `build` from the pool, or a new one. Its memory holds stale bytes. */
export function acquireKernel(build: KernelBuild): KernelInstance {
  checkBuild(build);
  const pooled = pools[build].pop();
  if (pooled !== undefined) {
    kernelPoolStats.reused++;
    return pooled;
  }
  kernelPoolStats.created++;
  return instantiateKernel(build);
}

/** Gives an instance back once nothing uses it any more. */
export function releaseKernel(instance: KernelInstance): void {
  const pool = pools[instance.build];
  if (
    pool.length < kernelPoolSizeMax &&
    instance.exports.memory.buffer.byteLength <= pooledMemoryBytesMax
  ) {
    pool.push(instance);
    kernelPoolStats.returned++;
  } else {
    kernelPoolStats.dropped++;
  }
}

/** Empties the pools (tests). */
export function clearKernelPool(): void {
  for (const build of ['release', 'debug', 'scalar'] as const) pools[build].length = 0;
}
