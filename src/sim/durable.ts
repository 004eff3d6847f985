/**
 * A node's stable storage in the simulator: what survives a crash. Only {@link DurableStore.save}
 * (called when a Ready's persistence completes) and {@link DurableStore.saveSnapshot} change it;
 * anything a Ready loop had not finished persisting when the node crashed is simply never
 * saved. A restart rebuilds the node from {@link DurableStore.load} alone.
 */
import { assert } from '../assert.js';
import { lastIndexOf, type EntryBatch } from '../raft/batch.js';
import type { HardState, LogStore, SnapshotMeta } from '../raft/types.js';
import { TsLog } from '../kernel/reference.js';

/** A snapshot as stored: metadata and the state machine's bytes. */
export interface StoredSnapshot {
  readonly meta: SnapshotMeta;
  readonly data: Uint8Array;
}

/** What a restarted node starts from. */
export interface LoadedState {
  readonly hardState: HardState;
  readonly snapshot: StoredSnapshot | null;
  /** A fresh log holding the durable entries after the compaction point. */
  readonly log: LogStore;
}

/** Sizing for the simulator's small logs. */
const logOptions = { entriesInitial: 64, payloadBytesInitial: 0 };

/** Creates an empty log sized for the simulator. */
export function createSimLog(): TsLog {
  return new TsLog(logOptions);
}

/** Per-node durable state: hard state, latest snapshot, and the log after its compaction point. */
export class DurableStore {
  private hardState: HardState = { term: 0, vote: '', commit: 0 };
  private snapshot: StoredSnapshot | null = null;
  /**
   * The last few snapshots, newest last. A SnapshotRequest the core queued before a newer
   * snapshot was taken still names the older one, so its bytes must stay readable for a while
   * (a real store keeps the last few files for the same reason).
   */
  private readonly recent: StoredSnapshot[] = [];
  private readonly log = createSimLog();
  /** Persist operations completed (for the summary). */
  saves = 0;

  /** The persisted hard state. */
  get persistedHardState(): HardState {
    return this.hardState;
  }

  /** The persisted snapshot, or null. */
  get persistedSnapshot(): StoredSnapshot | null {
    return this.snapshot;
  }

  /** Last durable log index. */
  lastIndex(): number {
    return this.log.lastIndex();
  }

  /**
   * Makes one Ready durable, in the contract's order: a received snapshot (which replaces the
   * log), then entries (replacing any stored from their first index), then the hard state.
   */
  save(
    snapshot: StoredSnapshot | null,
    entries: EntryBatch | null,
    hardState: HardState | null,
  ): void {
    if (snapshot !== null) {
      this.snapshot = snapshot;
      this.remember(snapshot);
      this.log.reset(snapshot.meta.index, snapshot.meta.term);
    }
    if (entries !== null && entries.count > 0) {
      const first = entries.firstIndex;
      assert(
        first >= this.log.firstIndex() && first <= this.log.lastIndex() + 1,
        () =>
          `entries ${first}..${lastIndexOf(entries)} do not attach to the durable log ${this.log.firstIndex()}..${this.log.lastIndex()}`,
      );
      if (first <= this.log.lastIndex()) this.log.truncateFrom(first);
      this.log.append(entries);
    }
    if (hardState !== null) this.hardState = hardState;
    this.saves++;
  }

  /** Stores a snapshot the node took itself, and drops durable entries up to `compactIndex`. */
  saveSnapshot(snapshot: StoredSnapshot, compactIndex: number): void {
    if (this.snapshot === null || snapshot.meta.index > this.snapshot.meta.index) {
      this.snapshot = snapshot;
    }
    this.remember(snapshot);
    const upTo = Math.min(compactIndex, this.log.lastIndex());
    if (upTo >= this.log.firstIndex()) this.log.compactTo(upTo);
  }

  /**
   * Whether entry `index` of term `term` survives a crash: held in the durable log, or
   * covered by the durable snapshot / compaction point (only committed entries get there).
   */
  holds(index: number, term: number): boolean {
    if (index <= this.log.firstIndex() - 1) return true;
    return index <= this.log.lastIndex() && this.log.termAt(index) === term;
  }

  /** A snapshot still held with this index and term, or undefined. */
  findSnapshot(index: number, term: number): StoredSnapshot | undefined {
    return this.recent.find(({ meta }) => meta.index === index && meta.term === term);
  }

  private remember(snapshot: StoredSnapshot): void {
    this.recent.push(snapshot);
    if (this.recent.length > 4) this.recent.shift();
  }

  /** Everything a restarted node may know, copied so the store stays independent of it. */
  load(): LoadedState {
    const log = createSimLog();
    const first = this.log.firstIndex();
    const last = this.log.lastIndex();
    if (first - 1 > 0) log.reset(first - 1, this.log.termAt(first - 1));
    if (last >= first) log.append(this.log.slice(first, last + 1, Number.MAX_SAFE_INTEGER));
    return { hardState: this.hardState, snapshot: this.snapshot, log };
  }
}
