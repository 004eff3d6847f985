/**
 * DirectoryLock: one process (and one storage object in it) per data directory.
 *
 * Two nodes writing one WAL interleave records and lose data, so a data directory is claimed
 * with a lock file holding the owner's pid and the machine's boot id. A lock is stale, and taken
 * over, when its pid is not a live process (the owner was killed), when it was written before
 * the last reboot (the pid may be reused by now), or when it is incomplete (a crash while it was
 * written). Node has no flock(2), so the lock is advisory: it stops the classic mistake
 * (starting a second node on the same directory), not a determined racer.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { StorageError } from '../errors.js';
import { writeFully } from './fs.js';
import type { StorageFs } from './fs.js';

/** Name of the lock file inside a data directory. */
export const lockFileName = 'LOCK';

/** Changes at every boot (Linux); '-' where the platform has none, leaving the pid check alone. */
const bootId = readBootId();

function readBootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || '-';
  } catch {
    return '-';
  }
}

/** Directories locked by this process: the pid check cannot tell two owners in one process apart. */
const lockedInThisProcess = new Set<string>();

/** A held lock on a data directory; release it with {@link DirectoryLock.release}. */
export class DirectoryLock {
  private released = false;

  private constructor(
    private readonly fs: StorageFs,
    /** The directory, as an absolute path. */
    readonly dir: string,
    private readonly path: string,
  ) {}

  /**
   * Claims `dir` (which must exist). Throws StorageError STORAGE_FAILED when another storage in
   * this process or another live process holds it.
   */
  static async acquire(fs: StorageFs, dir: string): Promise<DirectoryLock> {
    const absolute = resolve(dir);
    const path = join(absolute, lockFileName);
    if (lockedInThisProcess.has(absolute)) {
      throw new StorageError(
        'STORAGE_FAILED',
        `Cannot open ${absolute}: another storage in this process (pid ${process.pid}) holds it`,
      );
    }
    lockedInThisProcess.add(absolute);
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          const file = await fs.open(path, 'createNew');
          try {
            await writeFully(file, [new TextEncoder().encode(`${process.pid} ${bootId}\n`)], 0);
            await file.sync();
          } finally {
            await file.close();
          }
          return new DirectoryLock(fs, absolute, path);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw error;
        }
        const owner = await readOwner(fs, path);
        if (owner !== null && owner !== process.pid && isAlive(owner)) {
          throw new StorageError(
            'STORAGE_FAILED',
            `Cannot open ${absolute}: it is locked by process ${owner} (${path}); two nodes on one data directory would corrupt it`,
          );
        }
        // The owner is gone (killed, or a previous run of a process that had our pid): stale.
        await fs.unlink(path).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== 'ENOENT') throw error;
        });
      }
    } catch (error) {
      lockedInThisProcess.delete(absolute);
      if (error instanceof StorageError) throw error;
      throw new StorageError('STORAGE_FAILED', `Cannot lock ${absolute}: ${String(error)}`, {
        cause: error,
      });
    }
  }

  /** Removes the lock file. Idempotent. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    try {
      await this.fs.unlink(this.path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    } finally {
      lockedInThisProcess.delete(this.dir);
    }
  }
}

/**
 * The pid of the lock's owner if it may still be running: null for an incomplete lock file or
 * one written before the last reboot.
 */
async function readOwner(fs: StorageFs, path: string): Promise<number | null> {
  try {
    const text = new TextDecoder().decode(await fs.readFile(path));
    const match = /^(\d+) (\S*)\n$/.exec(text);
    if (match === null || match[2] !== bootId) return null;
    const pid = Number(match[1]);
    return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
