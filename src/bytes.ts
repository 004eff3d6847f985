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

import { assert } from './assert.js';

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

const utf8Encoder = new TextEncoder();

/**
 * The length of `text` in UTF-8, without encoding it (a lone surrogate counts as the 3 bytes of
 * U+FFFD, as TextEncoder writes it). `TextEncoder.encode` returns an array with memory of its
 * own outside V8's heap: three mallocs, for a length.
 */
export function utf8ByteLength(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

/**
 * Writes `text` as UTF-8 into `target` from `offset`, which must leave {@link utf8ByteLength}
 * bytes of room; returns the bytes written. A short ASCII text is copied code by code: the
 * `subarray` that `encodeInto` needs would make V8 move a small array (64 bytes or less, kept
 * on its heap) out to memory of its own.
 */
export function writeUtf8(text: string, target: Uint8Array, offset: number): number {
  if (text.length <= shortTextMax) {
    // A typed array drops writes past its end without a word: a short target is our bug.
    assert(offset + text.length <= target.length, () => `no room for ${text.length} bytes`);
    let k = 0;
    for (; k < text.length; k++) {
      const code = text.charCodeAt(k);
      if (code >= 0x80) break;
      target[offset + k] = code;
    }
    if (k === text.length) return k;
  }
  return utf8Encoder.encodeInto(text, target.subarray(offset)).written;
}

/** Up to this many UTF-16 code units, {@link writeUtf8} tries the ASCII copy first. */
const shortTextMax = 64;

/**
 * The per-entry arrays of a short-lived batch of `count` entries (a log slice, a merged append,
 * a decoded one), as views over one {@link transientBytes} block, not filled. Small typed
 * arrays of their own stay on V8's heap only until something asks for their `buffer`, as the
 * codec does to write them as bytes; V8 then moves each one out with three mallocs, freed by a
 * later scavenge's sweep. On a leader at 1 connection that was about 17 of its 110 mallocs per
 * write (mallocs counted with their stacks, bench/README.md row 23).
 */
export function transientEntryArrays(count: number): {
  terms: Float64Array;
  types: Uint8Array;
  ends: Uint32Array;
} {
  const block = transientBytes(count * 13);
  const { buffer, byteOffset } = block;
  // Node starts every pool slice on a multiple of 8, so the terms can start the block.
  return {
    terms: new Float64Array(buffer, byteOffset, count),
    ends: new Uint32Array(buffer, byteOffset + count * 8, count),
    types: new Uint8Array(buffer, byteOffset + count * 12, count),
  };
}
