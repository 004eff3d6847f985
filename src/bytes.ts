/**
 * Short-lived byte buffers without a memory allocation of their own.
 *
 * V8 keeps a typed array of more than 64 bytes outside its heap: every `new Uint8Array(200)`
 * is a malloc, a backing store the next scavenge must sweep, and a free. On this machine that
 * cost about 0.8 µs against 0.1 µs for a slice of Node's Buffer pool. At 1 connection the
 * leader's main thread was also seen running for a millisecond or more in glibc's
 * `malloc_consolidate`, merging such freed chunks. The leader made about eleven of these
 * arrays per write; with this, four, and its p99 at 1 connection dropped (bench/README.md,
 * performance log, row 20).
 */

/** Node hands out pool slices below half its pool size (Buffer.poolSize, 8 KiB). */
const pooledBytesMax = Buffer.poolSize >>> 1;

/**
 * A plain Uint8Array of `length` bytes, carved from Node's shared Buffer pool when small.
 *
 * - Its contents are NOT zeroed: the caller must write every byte before anything reads it
 *   (a byte left alone could hold another request's data).
 * - It must be short-lived: while any view lives, it keeps its whole 8 KiB pool slab alive.
 *   Never keep one in long-lived state; copy out what must stay.
 * - Its `buffer` is shared with other slices: address it through `byteOffset` (a DataView or
 *   typed array over `bytes.buffer` must start at `bytes.byteOffset`). Node starts every pool
 *   slice on a multiple of 8, so Float64Array views at 8-byte offsets from it work (the WAL
 *   encoder's do; the test checks the alignment).
 */
export function transientBytes(length: number): Uint8Array {
  if (length >= pooledBytesMax) return new Uint8Array(length);
  const pooled = Buffer.allocUnsafe(length);
  return new Uint8Array(pooled.buffer, pooled.byteOffset, length);
}

/** {@link transientBytes} filled with zeros; only a pool slice needs the fill. */
export function transientZeroedBytes(length: number): Uint8Array {
  return length >= pooledBytesMax ? new Uint8Array(length) : transientBytes(length).fill(0);
}
