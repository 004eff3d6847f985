/**
 * Short-lived byte buffers without a memory allocation of their own.
 *
 * V8 keeps a typed array of more than 64 bytes outside its heap: every `new Uint8Array(200)`
 * is a malloc, a backing store the next scavenge must sweep, and a free. On this machine
 * that cost about 0.8 µs against 0.1 µs for a slice of Node's Buffer pool, and, worse, the
 * frees of a scavenge piled up in glibc's fastbins until the next large allocation merged
 * them all at once: the leader's main thread then stalled for a millisecond or more outside
 * any garbage collection (bench/README.md, performance log). A write used to make about
 * eleven such arrays on the leader.
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
 *   typed array over `bytes.buffer` must start at `bytes.byteOffset`).
 */
export function transientBytes(length: number): Uint8Array {
  if (length >= pooledBytesMax) return new Uint8Array(length);
  const pooled = Buffer.allocUnsafe(length);
  return new Uint8Array(pooled.buffer, pooled.byteOffset, length);
}
