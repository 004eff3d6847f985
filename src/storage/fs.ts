/**
 * The few file-system calls durable storage makes, behind an interface so that tests can inject
 * faults (ENOSPC, EIO, short writes, a crash between two calls) or model a power loss. The
 * storage never touches `node:fs` except through a {@link StorageFs}.
 */
import { fdatasync, fdatasyncSync, writeSync, writevSync } from 'node:fs';
import { open, readFile, readdir, mkdir, rename, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';

/** An open file. Positions are absolute byte offsets; nothing here keeps a cursor. */
export interface StorageFile {
  /**
   * Writes `chunks` back to back starting at `position`; returns how many bytes were written,
   * which may be fewer than asked (a short write), never more.
   */
  write(chunks: readonly Uint8Array[], position: number): Promise<number>;
  /**
   * Flushes the file's data (and the size, when it changed) to stable storage. With
   * `blocking`, the calling thread waits for the disk itself: it saves the hop to a worker
   * thread and back (two thread wake-ups), and runs nothing else until the disk answers. A
   * failure still comes as a rejection.
   */
  datasync(blocking?: boolean): Promise<void>;
  /** Flushes data and all metadata (fsync), needed before renaming a new file into place. */
  sync(): Promise<void>;
  /** Cuts the file to `size` bytes. */
  truncate(size: number): Promise<void>;
  close(): Promise<void>;
}

/** How a file is opened: create a new one (fail if it exists), or write an existing one. */
export type OpenMode = 'createNew' | 'readWrite';

/** The file-system calls used by the storage, each failing with a Node-style `code` error. */
export interface StorageFs {
  open(path: string, mode: OpenMode): Promise<StorageFile>;
  readFile(path: string): Promise<Uint8Array>;
  /** Names in a directory (no `.`/`..`), in no particular order. */
  readdir(path: string): Promise<string[]>;
  /** Creates a directory and its parents; succeeds when it exists. */
  mkdir(path: string): Promise<void>;
  /** Atomically replaces `to` with `from`. */
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** fsyncs a directory, making the creations, renames and removals in it durable. */
  syncDir(path: string): Promise<void>;
}

/**
 * Writes up to this many bytes on the calling thread instead of in libuv's thread pool. A WAL
 * append of a few kilobytes only copies into the page cache (microseconds), while the hop to
 * a pool thread and back costs two thread wake-ups, more on a busy machine; the fdatasync that
 * follows, which does wait for the disk, stays in the pool unless the caller asks it to block.
 */
const inlineWriteBytesMax = 256 * 1024;

class NodeFile implements StorageFile {
  /** Syncs under way through the callback API, which FileHandle.close() does not wait for. */
  private readonly syncing = new Set<Promise<void>>();

  constructor(private readonly handle: FileHandle) {}

  async write(chunks: readonly Uint8Array[], position: number): Promise<number> {
    let bytes = 0;
    for (const chunk of chunks) bytes += chunk.length;
    if (bytes <= inlineWriteBytesMax) {
      return chunks.length === 1
        ? writeSync(this.handle.fd, chunks[0]!, 0, bytes, position)
        : writevSync(this.handle.fd, chunks, position);
    }
    if (chunks.length === 1) {
      const chunk = chunks[0]!;
      const { bytesWritten } = await this.handle.write(chunk, 0, chunk.length, position);
      return bytesWritten;
    }
    const { bytesWritten } = await this.handle.writev(chunks as Uint8Array[], position);
    return bytesWritten;
  }

  async datasync(blocking = false): Promise<void> {
    if (blocking) {
      fdatasyncSync(this.handle.fd);
      return;
    }
    // The callback form on the handle's descriptor: FileHandle.datasync() allocates a stats
    // array outside V8's heap for every call (three mallocs), though fdatasync returns none.
    // close() waits for it, so the descriptor is never closed (and reused) under it.
    const fd = this.handle.fd;
    const synced = new Promise<void>((resolve, reject) => {
      fdatasync(fd, (error) => (error === null ? resolve() : reject(error)));
    });
    this.syncing.add(synced);
    try {
      await synced;
    } finally {
      this.syncing.delete(synced);
    }
  }

  sync(): Promise<void> {
    return this.handle.sync();
  }

  truncate(size: number): Promise<void> {
    return this.handle.truncate(size);
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.syncing);
    await this.handle.close();
  }
}

/** The real file system, through `node:fs/promises`. */
export const nodeFs: StorageFs = {
  async open(path, mode) {
    return new NodeFile(await open(path, mode === 'createNew' ? 'wx' : 'r+'));
  },
  async readFile(path) {
    const buffer = await readFile(path);
    // A plain Uint8Array view: callers hand slices of it out, and Buffer is a surprise there.
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  },
  readdir(path) {
    return readdir(path);
  },
  async mkdir(path) {
    await mkdir(path, { recursive: true });
  },
  rename(from, to) {
    return rename(from, to);
  },
  unlink(path) {
    return unlink(path);
  },
  async syncDir(path) {
    const handle = await open(path, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
};

/** Writes all of `chunks` at `position`, looping over short writes. */
export async function writeFully(
  file: StorageFile,
  chunks: readonly Uint8Array[],
  position: number,
): Promise<void> {
  let pending = chunks.filter((chunk) => chunk.length > 0);
  let offset = position;
  while (pending.length > 0) {
    const written = await file.write(pending, offset);
    if (!Number.isSafeInteger(written) || written <= 0) {
      // A write that makes no progress would loop forever; the kernel reports ENOSPC instead,
      // so this is a broken StorageFs.
      throw Object.assign(new Error(`write at ${offset} made no progress (${written} bytes)`), {
        code: 'EIO',
      });
    }
    offset += written;
    let skip = written;
    const rest: Uint8Array[] = [];
    for (const chunk of pending) {
      if (skip >= chunk.length) {
        skip -= chunk.length;
      } else {
        rest.push(skip === 0 ? chunk : chunk.subarray(skip));
        skip = 0;
      }
    }
    pending = rest;
  }
}
