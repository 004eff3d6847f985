/**
 * MemoryPersistence: the {@link RaftPersistence} contract kept in memory, for tests, the
 * simulator-style examples and single-process demos. It models a disk honestly enough to test
 * crash recovery: a write done with `sync` is durable once its promise resolves; a write done
 * without `sync` sits in a "page cache" until the next synced write or `close()`. `crash()`
 * kills the instance like `kill -9` plus power loss: unsynced and in-flight writes are lost, the
 * dead instance refuses every later call, and a fresh instance over the surviving state takes
 * its place.
 *
 * @example
 * ```ts
 * const disk = new MemoryPersistence();
 * const node = new RaftConsensus('n1', nodes, { persistence: disk });
 * await node.initialize();
 * // ... kill it:
 * const revived = disk.crash();
 * const again = new RaftConsensus('n1', nodes, { persistence: revived });
 * ```
 */
import { StorageError } from '../errors.js';
import { createLog } from '../kernel/index.js';
import type { HardState, LogStore } from '../raft/types.js';
import type { PersistUpdate, PersistedState, RaftPersistence, StoredSnapshot } from './types.js';

/** Options of {@link MemoryPersistence}. */
export interface MemoryPersistenceOptions {
  /** Builds the logs handed out by `load()` and the durable copy. Default: the TS log twin. */
  readonly createLog?: () => LogStore;
  /**
   * Time a synced write takes before it is durable, in ms (0: at once). Lets tests crash a
   * node while writes are in flight; those writes are then lost.
   */
  readonly syncDelayMs?: number;
}

/** What survives a crash; shared by an instance and the one `crash()` returns. */
interface Disk {
  hardState: HardState;
  snapshot: StoredSnapshot | null;
  log: LogStore;
}

/** In-memory {@link RaftPersistence} with crash simulation; see the module comment. */
export class MemoryPersistence implements RaftPersistence {
  private readonly disk: Disk;
  private readonly newLog: () => LogStore;
  private readonly syncDelayMs: number;
  /** Writes accepted without sync: applied to the disk by the next synced write or close(). */
  private unsynced: PersistUpdate[] = [];
  private dead = false;
  private closed = false;
  /** Synced writes done so far (tests check that nothing was persisted behind their back). */
  private syncCount = 0;

  constructor(options: MemoryPersistenceOptions = {}, disk?: Disk) {
    this.newLog = options.createLog ?? (() => createLog({ kernel: 'ts' }));
    const delay = options.syncDelayMs ?? 0;
    if (!Number.isFinite(delay) || delay < 0) {
      throw new RangeError(`Invalid syncDelayMs: ${delay} (expected a non-negative number)`);
    }
    this.syncDelayMs = delay;
    this.disk = disk ?? {
      hardState: { term: 0, vote: '', commit: 0 },
      snapshot: null,
      log: this.newLog(),
    };
  }

  /** {@inheritDoc RaftPersistence.load} The log is a fresh copy owned by the caller. */
  async load(): Promise<PersistedState> {
    this.checkAlive('load');
    this.closed = false;
    await Promise.resolve();
    return {
      hardState: { ...this.disk.hardState },
      snapshot: this.disk.snapshot,
      log: copyLog(this.disk.log, this.newLog()),
    };
  }

  /** {@inheritDoc RaftPersistence.save} */
  async save(update: PersistUpdate, sync: boolean): Promise<void> {
    this.checkOpen('save');
    checkUpdate(update);
    if (!sync) {
      this.unsynced.push(update);
      return;
    }
    if (this.syncDelayMs > 0) {
      await new Promise((resolve) => setTimeout(resolve, this.syncDelayMs));
      // A crash while the fsync was in flight: the write never made it.
      this.checkOpen('save');
    }
    const pending = this.unsynced;
    this.unsynced = [];
    for (const earlier of pending) this.write(earlier);
    this.write(update);
    this.syncCount++;
  }

  /** {@inheritDoc RaftPersistence.saveSnapshot} */
  async saveSnapshot(snapshot: StoredSnapshot): Promise<void> {
    this.checkOpen('save a snapshot');
    if (this.disk.snapshot !== null && snapshot.meta.index < this.disk.snapshot.meta.index) {
      throw new RangeError(
        `Cannot save a snapshot at index ${snapshot.meta.index}: a newer one at ${this.disk.snapshot.meta.index} is stored`,
      );
    }
    if (this.syncDelayMs > 0) {
      await new Promise((resolve) => setTimeout(resolve, this.syncDelayMs));
      this.checkOpen('save a snapshot');
    }
    this.disk.snapshot = { meta: snapshot.meta, data: snapshot.data.slice() };
  }

  /** {@inheritDoc RaftPersistence.loadSnapshot} */
  async loadSnapshot(): Promise<StoredSnapshot | null> {
    this.checkAlive('load a snapshot');
    await Promise.resolve();
    return this.disk.snapshot;
  }

  /** {@inheritDoc RaftPersistence.compact} Never past the stored snapshot. */
  async compact(index: number): Promise<void> {
    this.checkOpen('compact');
    await Promise.resolve();
    const limit = Math.min(index, this.disk.snapshot?.meta.index ?? 0, this.disk.log.lastIndex());
    if (limit >= this.disk.log.firstIndex()) this.disk.log.compactTo(limit);
  }

  /** {@inheritDoc RaftPersistence.close} Unsynced writes become durable, as with a clean exit. */
  async close(): Promise<void> {
    if (this.dead || this.closed) return;
    await Promise.resolve();
    const pending = this.unsynced;
    this.unsynced = [];
    for (const update of pending) this.write(update);
    this.closed = true;
  }

  /**
   * Kills this instance as a crash would: unsynced and in-flight writes are lost and every
   * later call on it fails. Returns a fresh instance over what was durable, to restart with.
   */
  crash(): MemoryPersistence {
    this.dead = true;
    this.unsynced = [];
    return new MemoryPersistence(
      { createLog: this.newLog, syncDelayMs: this.syncDelayMs },
      this.disk,
    );
  }

  /** What a restart would find (for assertions in tests). */
  durable(): {
    hardState: HardState;
    snapshotIndex: number;
    firstIndex: number;
    lastIndex: number;
    syncs: number;
  } {
    return {
      hardState: { ...this.disk.hardState },
      snapshotIndex: this.disk.snapshot?.meta.index ?? -1,
      firstIndex: this.disk.log.firstIndex(),
      lastIndex: this.disk.log.lastIndex(),
      syncs: this.syncCount,
    };
  }

  private write(update: PersistUpdate): void {
    const { disk } = this;
    if (update.snapshot !== null) {
      disk.snapshot = { meta: update.snapshot.meta, data: update.snapshot.data.slice() };
      disk.log.reset(update.snapshot.meta.index, update.snapshot.meta.term);
    }
    const entries = update.entries;
    if (entries !== null && entries.count > 0) {
      if (entries.firstIndex < disk.log.firstIndex()) {
        throw new StorageError(
          'STORAGE_FAILED',
          `Cannot write entries from ${entries.firstIndex}: entries up to ${disk.log.firstIndex() - 1} are compacted`,
        );
      }
      if (entries.firstIndex <= disk.log.lastIndex()) disk.log.truncateFrom(entries.firstIndex);
      disk.log.append(entries);
    }
    if (update.hardState !== null) disk.hardState = { ...update.hardState };
  }

  private checkAlive(what: string): void {
    if (this.dead) {
      throw new StorageError('STORAGE_FAILED', `Cannot ${what}: the storage crashed`);
    }
  }

  private checkOpen(what: string): void {
    this.checkAlive(what);
    if (this.closed)
      throw new StorageError('STORAGE_FAILED', `Cannot ${what}: the storage is closed`);
  }
}

function checkUpdate(update: PersistUpdate): void {
  if (update.entries !== null && update.entries.count > 0) {
    const { entries } = update;
    if (!Number.isSafeInteger(entries.firstIndex) || entries.firstIndex < 1) {
      throw new RangeError(`Cannot save entries from index ${entries.firstIndex}`);
    }
  }
}

function copyLog(source: LogStore, target: LogStore): LogStore {
  const first = source.firstIndex();
  const last = source.lastIndex();
  target.reset(first - 1, source.termAt(first - 1));
  if (last >= first) target.append(source.slice(first, last + 1, Infinity));
  return target;
}
