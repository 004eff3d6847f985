/**
 * A {@link StorageFs} that times every `datasync` of the file system it wraps. FilePersistence
 * calls `datasync` only on WAL segments (snapshot files use `sync`), so these are exactly the
 * group-commit fsyncs every acknowledged write waits for: the node's fsync latency histogram.
 *
 * Wrapping the file system keeps metrics out of the storage module, which stays free of any
 * observer, and the same seam lets tests inject disk faults into a whole node.
 */
import { performance } from 'node:perf_hooks';
import type { StorageFile, StorageFs } from '../storage/fs.js';

/** Called after each datasync with its duration and whether it failed. */
export type DatasyncObserver = (seconds: number, failed: boolean) => void;

/** Wraps `fs` so that `observe` hears of every datasync of every file it opens. */
export function timedFs(fs: StorageFs, observe: DatasyncObserver): StorageFs {
  return {
    async open(path, mode) {
      return timedFile(await fs.open(path, mode), observe);
    },
    readFile: (path) => fs.readFile(path),
    readdir: (path) => fs.readdir(path),
    mkdir: (path) => fs.mkdir(path),
    rename: (from, to) => fs.rename(from, to),
    unlink: (path) => fs.unlink(path),
    syncDir: (path) => fs.syncDir(path),
  };
}

function timedFile(file: StorageFile, observe: DatasyncObserver): StorageFile {
  return {
    write: (chunks, position) => file.write(chunks, position),
    async datasync(blocking) {
      const started = performance.now();
      try {
        await file.datasync(blocking);
      } catch (error) {
        observe((performance.now() - started) / 1000, true);
        throw error;
      }
      observe((performance.now() - started) / 1000, false);
    },
    sync: () => file.sync(),
    truncate: (size) => file.truncate(size),
    close: () => file.close(),
  };
}
