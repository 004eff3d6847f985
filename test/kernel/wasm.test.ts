// WebAssembly specifics of the kernels: no allocation per call (memory size constant over
// 100,000 calls), views rebuilt after growth, traps and failed assertions turned into typed
// errors that disable the log, memory limits, the module cache and the instance pool.
import { afterEach, describe, expect, it } from 'vitest';
import { AssertionError } from '../../src/assert.js';
import { ShutdownError } from '../../src/errors.js';
import { EntryBatchBuilder, EntryType } from '../../src/raft/batch.js';
import {
  HlcBatchStage,
  KernelError,
  LogFullError,
  VersionVectorBatchStage,
  WasmLog,
  compareHlcWasm,
  compareVersionVectorWasm,
  createLog,
  kernelPoolStats,
  quorumIndexWasm,
} from '../../src/kernel/index.js';
import type { KernelBuild } from '../../src/kernel/index.js';
import { clearKernelPool, instantiateKernel, kernelModule } from '../../src/kernel/wasm.js';
import { patternPayload } from './support.js';

const builds: readonly KernelBuild[] = ['debug', 'release', 'scalar'];

function oneEntry(index: number, term: number, size = 16): ReturnType<EntryBatchBuilder['finish']> {
  const builder = new EntryBatchBuilder(index, 1, size);
  builder.add(term, EntryType.Normal, patternPayload(size, index));
  return builder.finish();
}

const logs: WasmLog[] = [];
function makeLog(options: ConstructorParameters<typeof WasmLog>[0] = {}): WasmLog {
  const log = new WasmLog(options);
  logs.push(log);
  return log;
}
afterEach(() => {
  logs.splice(0).forEach((log) => log.dispose());
});

describe.each(builds)('the %s build', (build) => {
  it('does not grow memory over 100,000 kernel calls', () => {
    // Thresholds 0: every append and every match below makes its WASM call.
    const log = makeLog({ build, conflictScanThreshold: 0, commitThreshold: 0 });
    const builder = new EntryBatchBuilder(1, 64);
    for (let i = 0; i < 64; i++) builder.add(1, EntryType.Normal, patternPayload(16, i));
    log.append(builder.finish());
    const tail = oneEntry(65, 2);
    const overlap = log.slice(33, 65, Infinity);
    const hlc = new HlcBatchStage(64, { build });
    const vv = new VersionVectorBatchStage(64, 5, { build });
    const matchIndexes = new Float64Array([5, 9, 7, 3, 11]);
    const columns = {
      wall: new Float64Array(64),
      logical: new Uint32Array(64),
      node: new Uint32Array(64),
    };
    const out = new Int8Array(64);
    // Prime every path once (the shared scratch instance is created on first use).
    compareHlcWasm(columns, columns, 64, out, build);
    compareVersionVectorWasm(new Float64Array(320), new Float64Array(320), 64, 5, out, build);
    quorumIndexWasm(matchIndexes, 5, build);
    const before = [log.memoryBufferBytes(), hlc.memoryBufferBytes(), vv.memoryBufferBytes()];
    let calls = 0;
    while (calls < 100_000) {
      log.append(tail); // writeEnds
      log.truncateFrom(65);
      expect(log.matchAndAppend(32, 1, overlap).ok).toBe(true); // findConflict
      hlc.compare(64);
      vv.compare(64);
      compareHlcWasm(columns, columns, 64, out, build);
      compareVersionVectorWasm(new Float64Array(320), new Float64Array(320), 64, 5, out, build);
      expect(quorumIndexWasm(matchIndexes, 5, build)).toBe(7);
      calls += 7;
    }
    expect([log.memoryBufferBytes(), hlc.memoryBufferBytes(), vv.memoryBufferBytes()]).toEqual(
      before,
    );
  });

  it('fits a default log in the initial memory (4 pages): creating one grows nothing', () => {
    clearKernelPool(); // a pooled instance may have grown for an earlier log
    const log = makeLog({ build });
    expect(log.memoryBufferBytes()).toBe(4 * 65536);
  });

  it('rebuilds its views when memory grows', () => {
    const log = makeLog({ build, entriesInitial: 16, payloadBytesInitial: 1 });
    log.append(oneEntry(1, 1, 100));
    const early = log.payloadAt(1);
    const bytesBefore = log.memoryBufferBytes();
    const builder = new EntryBatchBuilder(2, 20_000, 20_000 * 600);
    for (let i = 0; i < 20_000; i++) builder.add(2, EntryType.Normal, patternPayload(600, i));
    log.append(builder.finish());
    // Grown by far more than a page (12 MB of payloads): the old buffer is detached.
    expect(log.memoryBufferBytes()).toBeGreaterThan(bytesBefore + 150 * 65536);
    expect(early.length).toBe(0);
    expect(Array.from(log.payloadAt(1))).toEqual(Array.from(patternPayload(100, 1)));
    expect(Array.from(log.payloadAt(20_001))).toEqual(Array.from(patternPayload(600, 19_999)));
    expect(log.termAt(20_001)).toBe(2);
    log.checkInvariants();
  });

  it('turns a kernel failure into a typed error and refuses further use', () => {
    const log = makeLog({ build, commitThreshold: 0 });
    log.append(oneEntry(1, 1));
    // Simulate a host bug: a pointer far outside memory reaches writeEnds.
    (log as unknown as { startsPtr: number }).startsPtr = 0x7ff00000;
    let error: unknown;
    try {
      log.append(oneEntry(2, 1));
    } catch (caught) {
      error = caught;
    }
    if (build === 'debug') {
      // The debug build checks the range itself and fails its assertion.
      expect(error).toBeInstanceOf(AssertionError);
      expect((error as Error).message).toMatch(
        /WebAssembly kernel assertion failed: range outside memory/,
      );
    } else {
      expect(error).toBeInstanceOf(KernelError);
      expect((error as KernelError).code).toBe('INTERNAL');
      expect((error as Error).message).toMatch(
        new RegExp(
          `^The ${build} WebAssembly kernel failed in writeEnds \\(RuntimeError: memory access out of bounds\\)`,
        ),
      );
    }
    expect(() => log.lastIndex()).toThrow(error);
    expect(() => log.termAt(1)).toThrow(error);
    expect(() => log.append(oneEntry(2, 1))).toThrow(error);
    expect(() => log.reset(5, 1)).toThrow(error);
    const returned = kernelPoolStats.returned;
    log.dispose(); // a failed instance never goes back to the pool
    expect(kernelPoolStats.returned).toBe(returned);
  });
});

describe('memory limits', () => {
  it('reports a failed grow as -1 and leaves memory alone', () => {
    const { exports } = instantiateKernel('release');
    const bytes = exports.memory.buffer.byteLength;
    expect(exports.grow(3 * 1024 * 1024 * 1024)).toBe(-1);
    expect(exports.memory.buffer.byteLength).toBe(bytes);
    expect(exports.grow(bytes)).toBe(0);
  });

  it('refuses entries past the module maximum with LogFullError, log unchanged', () => {
    const log = makeLog({ memoryBytesMax: 4 * 1024 * 1024 * 1024 });
    log.append(oneEntry(1, 1));
    // 2 GiB of (untouched, so never committed) payload: more than the module's maximum memory.
    const huge = {
      ...oneEntry(2, 1),
      data: new Uint8Array(2 ** 31),
      ends: new Uint32Array([2 ** 31]),
    };
    expect(() => log.append(huge)).toThrow(LogFullError);
    expect(() => log.append(huge)).toThrow(
      /the WebAssembly memory cannot grow to \d+ bytes \(maximum 2147483648\)/,
    );
    expect([log.firstIndex(), log.lastIndex(), log.payloadBytes()]).toEqual([1, 1, 16]);
    log.append(oneEntry(2, 1));
    expect(log.lastIndex()).toBe(2);
  });
});

describe('loading and pooling', () => {
  it('compiles each build once per process', () => {
    expect(kernelModule('release')).toBe(kernelModule('release'));
    expect(kernelModule('debug')).not.toBe(kernelModule('release'));
  });

  it('rejects unknown kernels and builds', () => {
    expect(() => createLog({ kernel: 'rust' as 'ts' })).toThrow(TypeError);
    expect(() => createLog({ build: 'fast' as 'release' })).toThrow(
      new TypeError(`Unknown kernel build "fast": expected 'release', 'debug' or 'scalar'`),
    );
    expect(() => new WasmLog({ conflictScanThreshold: -1 })).toThrow(RangeError);
  });

  it('hands a disposed log’s instance to the next log, which starts empty', () => {
    const first = new WasmLog({ build: 'scalar' });
    first.append(oneEntry(1, 3));
    first.dispose();
    first.dispose(); // idempotent
    expect(() => first.append(oneEntry(2, 3))).toThrow(ShutdownError);
    expect(() => first.append(oneEntry(2, 3))).toThrow('Cannot use the log: it was disposed');
    expect(() => first.termAt(1)).toThrow('Cannot use the log: it was disposed');
    const reused = kernelPoolStats.reused;
    const second = makeLog({ build: 'scalar' });
    expect(kernelPoolStats.reused).toBe(reused + 1);
    expect([second.firstIndex(), second.lastIndex(), second.termAt(0)]).toEqual([1, 0, 0]);
    second.append(oneEntry(1, 4));
    expect(second.termAt(1)).toBe(4);
  });
});

describe('garbage collection', () => {
  it('collects dropped logs: more than V8 can hold live are created in one synchronous loop', () => {
    // About 12,000 live WASM memories exhaust V8's address space reservations on this machine;
    // logs dropped without dispose() must not pile up (no FinalizationRegistry holds them).
    let log: WasmLog | null = null;
    for (let i = 0; i < 16_000; i++) {
      log = new WasmLog();
      log.append(oneEntry(1, 1));
    }
    expect(log!.termAt(1)).toBe(1);
  });
});

describe('resident conflict scan', () => {
  it('compares staged terms with the log', () => {
    const log = makeLog();
    const builder = new EntryBatchBuilder(1, 100);
    for (let i = 0; i < 100; i++) builder.add(1 + (i >> 4), EntryType.Normal, new Uint8Array(0));
    log.append(builder.finish());
    const staged = log.stagedTerms();
    for (let k = 0; k < 50; k++) staged[k] = log.termAt(21 + k);
    expect(log.findConflictStaged(21, 50)).toBe(50);
    staged[37] = 99;
    expect(log.findConflictStaged(21, 50)).toBe(37);
    expect(() => log.findConflictStaged(90, 50)).toThrow(RangeError);
    expect(() => log.findConflictStaged(1, staged.length + 1)).toThrow(RangeError);
  });
});
