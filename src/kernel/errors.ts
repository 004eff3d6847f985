/**
 * Errors of the log and the WebAssembly kernels. Caller mistakes are TypeError/RangeError and
 * are thrown before anything reaches WASM; these classes cover what remains.
 */
import { PhantomError } from '../errors.js';

/**
 * The log cannot take the entries without passing its memory limit (`memoryBytesMax`, or the
 * WASM module's maximum memory). The log is unchanged; reads still work. Compacting the log
 * after a snapshot frees room. Answered like a full disk (507).
 */
export class LogFullError extends PhantomError {
  override readonly name = 'LogFullError';
  constructor(message: string) {
    super('STORAGE_FAILED', message);
  }
}

/**
 * A WebAssembly kernel trapped (RuntimeError: unreachable, out of bounds, ...) or could not be
 * loaded. A trap mid-call may have left the instance half-updated, so the log that owns it
 * refuses every later call with this same error.
 */
export class KernelError extends PhantomError {
  override readonly name = 'KernelError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('INTERNAL', message, options);
  }
}
