/**
 * A connector for undici whose sockets read into one buffer shared by every connection of the
 * process (Node's `onread` option) and hand undici a copy from Node's Buffer pool.
 *
 * Without it, Node allocates a fresh 64 KiB buffer with malloc for every socket read, then
 * shrinks it to what came. A request that large makes glibc first merge all the small chunks
 * freed since its last one (`malloc_consolidate`); on a leader at 1 connection the peer reads
 * made most of those calls (4,908 in 4 s, against 451 with this). Fewer calls alone do not
 * shorten the merging, which the next large request does anyway: what shortened it is freeing
 * fewer small chunks (bench/README.md, row 23). A peer's answers are a few hundred bytes, so
 * the copy comes from the pool and nothing is malloc'd per read.
 *
 * For plain TCP only: a TLS socket does not read through `onread`.
 */
import type { Socket } from 'node:net';
import { buildConnector } from 'undici';

/** libuv's own read size: one read takes whatever the kernel holds, up to this. */
const readBufferBytes = 64 * 1024;

/**
 * Reads are synchronous on the one JS thread and each is copied out before the callback
 * returns, so one buffer serves every socket.
 */
let sharedReadBuffer: Buffer | null = null;

function pushPooledCopy(this: Socket, bytesRead: number, buffer: Uint8Array): boolean {
  const chunk = Buffer.allocUnsafe(bytesRead);
  chunk.set(buffer.subarray(0, bytesRead));
  // false (the readable side is full) stops reading until undici reads again.
  return this.push(chunk);
}

/** undici's own connector for `http:` origins, with the pooled reads above. */
export function pooledReadConnector(connectTimeoutMs: number): buildConnector.connector {
  sharedReadBuffer ??= Buffer.allocUnsafeSlow(readBufferBytes);
  return buildConnector({
    timeout: connectTimeoutMs,
    onread: { buffer: sharedReadBuffer, callback: pushPooledCopy },
  });
}
