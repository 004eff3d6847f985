// The LogStore the core tests run on: the kernel's TypeScript twin by default, the WASM log
// (debug build, with assertions) when PHANTOMDB_TEST_KERNEL=wasm or after useTestKernel('wasm');
// the core must work with both.
import { createLog, type KernelKind } from '../../src/kernel/index.js';
import type { LogStore } from '../../src/raft/types.js';

let kernel: KernelKind = process.env['PHANTOMDB_TEST_KERNEL'] === 'wasm' ? 'wasm' : 'ts';

/** Switches the kernel of the logs created from now on; returns the previous one. */
export function useTestKernel(kind: KernelKind): KernelKind {
  const previous = kernel;
  kernel = kind;
  return previous;
}

/** A fresh, empty log for a test node. */
export function createTestLog(): LogStore {
  return kernel === 'wasm' ? createLog({ kernel, build: 'debug' }) : createLog({ kernel });
}
