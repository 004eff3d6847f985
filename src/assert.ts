/**
 * Invariant checks. A failed assertion is a bug in this project, never bad input: it throws
 * {@link AssertionError} so the process crashes loudly instead of going on with broken state.
 * Bad input from callers or peers gets a typed error instead (see `errors.ts`).
 *
 * @example
 * ```ts
 * assert(commitIndex <= lastIndex, () => `commit ${commitIndex} is past last index ${lastIndex}`);
 * ```
 */
export class AssertionError extends Error {
  override readonly name = 'AssertionError';
}

/** Throws {@link AssertionError} when `condition` is falsy; the message may be built lazily. */
export function assert(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) {
    throw new AssertionError(typeof message === 'string' ? message : message());
  }
}
