/**
 * The persistence contract between a Raft driver (RaftConsensus) and stable storage.
 *
 * Durable means: after the returned promise resolves, a crash (kill -9, power loss with a
 * disk that honours fsync) cannot lose it. The driver acknowledges nothing that depends on a
 * write before that write resolves.
 */
import type { EntryBatch } from '../raft/batch.js';
import type { HardState, LogStore, SnapshotMeta } from '../raft/types.js';

/** A snapshot's metadata and the state machine's bytes. */
export interface StoredSnapshot {
  readonly meta: SnapshotMeta;
  readonly data: Uint8Array;
}

/** What a node finds in its storage at start. */
export interface PersistedState {
  readonly hardState: HardState;
  /** The latest complete snapshot, or null on a fresh node. */
  readonly snapshot: StoredSnapshot | null;
  /** The log after the snapshot, replayed into a fresh in-memory log. */
  readonly log: LogStore;
}

/** One Ready's worth of state to make durable, in this order: snapshot, entries, hard state. */
export interface PersistUpdate {
  readonly snapshot: StoredSnapshot | null;
  /**
   * Replaces any stored entries from `entries.firstIndex` on. Its `data` may be a slice of
   * Node's Buffer pool (`LogStore.slice`): copy it to keep it past the save.
   */
  readonly entries: EntryBatch | null;
  readonly hardState: HardState | null;
}

/** Stable storage for one Raft node. */
export interface RaftPersistence {
  /** Loads what was durable; called once, before any other method. */
  load(): Promise<PersistedState>;
  /** Writes an update; resolves once durable (fsync'd when `sync`; concurrent calls may share one fsync). */
  save(update: PersistUpdate, sync: boolean): Promise<void>;
  /** Stores a snapshot the local state machine made, atomically; resolves once durable. */
  saveSnapshot(snapshot: StoredSnapshot): Promise<void>;
  /**
   * Optional: does the slow part of a later `saveSnapshot` of the same snapshot (writing its
   * data) without holding up saves meanwhile; the snapshot counts only once saved.
   */
  prepareSnapshot?(snapshot: StoredSnapshot): Promise<void>;
  /**
   * Optional hint, off until called: while on, the fsync that makes saves durable blocks the
   * calling thread instead of running in a worker thread (rarer ones, such as a new WAL
   * segment's, may stay in the worker). RaftConsensus turns it on whenever the node does not
   * lead: a follower has nothing else to do while its append is made durable (its leader sends
   * it one at a time), and the hop to the worker and back is two thread wake-ups, which a
   * loaded machine makes slow. A leader keeps it off: it serves clients and ships appends
   * meanwhile.
   */
  setBlockingSync?(blocking: boolean): void;
  /** The latest durable snapshot, or null. */
  loadSnapshot(): Promise<StoredSnapshot | null>;
  /** Lets storage drop log records of entries <= index (covered by a durable snapshot). */
  compact(index: number): Promise<void>;
  /** Finishes writes in flight and releases files. */
  close(): Promise<void>;
}
