/**
 * The data that enters and leaves the Raft core: messages, persistent state, configuration
 * and the Ready batch. Everything here is plain data, so it can be encoded on the wire, written
 * to the WAL and replayed by the simulator without translation.
 */
import type { EntryBatch } from './batch.js';

/** A member's id, unique in its cluster. '' means "none" (no vote, no known leader). */
export type NodeId = string;

/** The role a node plays in its current term. */
export type Role = 'follower' | 'preCandidate' | 'candidate' | 'leader';

/** What must survive a crash before anything depending on it is sent (Raft Figure 2). */
export interface HardState {
  readonly term: number;
  /** Who this node voted for in `term`, '' for nobody. */
  readonly vote: NodeId;
  /** Highest index known committed; persisting it is optional but saves re-applying. */
  readonly commit: number;
}

/**
 * Cluster membership. `votersOutgoing` is non-empty only in a joint configuration (C_old,new):
 * then a decision needs a majority of `voters` AND a majority of `votersOutgoing`.
 */
export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly votersOutgoing: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

/** One membership change; `url` is carried through the log for the node layer, opaque here. */
export interface ConfChangeItem {
  readonly type: 'addVoter' | 'addLearner' | 'removeNode';
  readonly id: NodeId;
  readonly url?: string;
}

/**
 * The payload of an {@link EntryType.ConfChange} entry. A non-empty `changes` enters a joint
 * configuration when it touches voters; an empty `changes` leaves the joint configuration.
 */
export interface ConfChange {
  readonly changes: readonly ConfChangeItem[];
}

/** What a snapshot covers: everything up to and including `index`, and the membership then. */
export interface SnapshotMeta {
  readonly index: number;
  readonly term: number;
  readonly conf: ConfState;
}

interface MessageBase {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
  /**
   * Opaque correlation id set by the receiving driver on a request and copied by the core into
   * the one response it produces for that request. The core never reads it otherwise.
   */
  readonly rpcId?: number;
}

/** RequestVote (and its Pre-Vote probe, which changes no state on the receiver). */
export interface VoteRequest extends MessageBase {
  readonly type: 'vote';
  readonly preVote: boolean;
  readonly lastLogIndex: number;
  readonly lastLogTerm: number;
  /** Set when the election follows TimeoutNow: receivers ignore their leader lease. */
  readonly transfer: boolean;
}

export interface VoteResponse extends MessageBase {
  readonly type: 'voteResp';
  readonly preVote: boolean;
  readonly granted: boolean;
  /**
   * On a refusal because the voter's log is more up to date: its commit index and the term
   * of its entry there. A candidate holding that entry learns it is committed (Log Matching
   * makes its prefix the voter's), which it may not know if the leader that committed it was
   * removed and is gone.
   */
  readonly commit?: { readonly index: number; readonly term: number };
}

/** AppendEntries. `entries.firstIndex` is `prevLogIndex + 1`. */
export interface AppendRequest extends MessageBase {
  readonly type: 'append';
  readonly prevLogIndex: number;
  readonly prevLogTerm: number;
  readonly entries: EntryBatch;
  readonly commit: number;
}

/**
 * Answer to an AppendRequest or SnapshotRequest. On success `matchIndex` is the last index
 * known to match the leader. On rejection, `rejectIndex` is the rejected `prevLogIndex` and
 * (`hintIndex`, `hintTerm`) let the leader skip a whole term at once: `hintTerm` is the
 * follower's term at `prevLogIndex` and `hintIndex` the first index of that term in its log,
 * or `hintTerm` 0 and `hintIndex` = follower's lastIndex + 1 when its log is too short.
 */
export interface AppendResponse extends MessageBase {
  readonly type: 'appendResp';
  readonly success: boolean;
  readonly matchIndex: number;
  readonly rejectIndex: number;
  readonly hintIndex: number;
  readonly hintTerm: number;
}

/** Leader liveness and commit propagation; `context` confirms leadership for ReadIndex. */
export interface HeartbeatRequest extends MessageBase {
  readonly type: 'heartbeat';
  readonly commit: number;
  readonly context: number;
}

export interface HeartbeatResponse extends MessageBase {
  readonly type: 'heartbeatResp';
  readonly context: number;
}

/**
 * InstallSnapshot. The core deals in metadata only: the driver attaches the snapshot's bytes
 * when sending and delivers the message only once all bytes have arrived and are stored.
 */
export interface SnapshotRequest extends MessageBase {
  readonly type: 'snapshot';
  readonly snapshot: SnapshotMeta;
}

/** Leadership transfer: the target starts an election at once, ignoring leases. */
export interface TimeoutNowRequest extends MessageBase {
  readonly type: 'timeoutNow';
}

/** Every message the core sends or receives. */
export type Message =
  | VoteRequest
  | VoteResponse
  | AppendRequest
  | AppendResponse
  | HeartbeatRequest
  | HeartbeatResponse
  | SnapshotRequest
  | TimeoutNowRequest;

/** Message types that expect exactly one response (possibly none if the core drops them). */
export type RequestMessage = VoteRequest | AppendRequest | HeartbeatRequest | SnapshotRequest;

/** Volatile state worth reporting when it changes. */
export interface SoftState {
  readonly leader: NodeId;
  readonly role: Role;
}

/** A linearizable read that may be served once `applied >= index`. */
export interface ReadState {
  readonly index: number;
  readonly context: number;
}

/**
 * Everything the core wants done, as data. The driver handles a Ready in this order
 * (etcd-raft's rules): send `messages` (may go before persisting); persist `snapshot`, then
 * `entries`, then `hardState`, fsyncing when `mustSync`; send `messagesAfterPersist`; apply
 * `committed` in order; serve `readStates` once applied; then call `advance()`. Its batches
 * and the appends among its messages come from `LogStore.slice`: copy the entries you keep.
 */
export interface Ready {
  readonly softState: SoftState | null;
  readonly hardState: HardState | null;
  /** Entries to append to stable storage; they replace any stored entries from `firstIndex` on. */
  readonly entries: EntryBatch | null;
  /** A snapshot received from the leader, to persist and restore before applying anything. */
  readonly snapshot: SnapshotMeta | null;
  /** Committed entries to apply, in order, starting at applied + 1. */
  readonly committed: EntryBatch | null;
  /** Leader-side requests that may be sent before this Ready is persisted. */
  readonly messages: readonly Message[];
  /** Messages that must wait until this Ready's snapshot, entries and hard state are durable. */
  readonly messagesAfterPersist: readonly Message[];
  readonly readStates: readonly ReadState[];
  /** Whether persisting this Ready needs an fsync (term, vote or entries changed). */
  readonly mustSync: boolean;
}

/** Outcome of AppendEntries matching on a follower's log (see `LogStore.matchAndAppend`). */
export type MatchResult =
  | {
      readonly ok: true;
      /** Index of the last entry of the request: prevLogIndex + count. */
      readonly lastNewIndex: number;
      /** First index that was written (conflict replaced or new); 0 when nothing changed. */
      readonly firstWrittenIndex: number;
    }
  | {
      readonly ok: false;
      readonly hintIndex: number;
      readonly hintTerm: number;
    };

/**
 * The in-memory Raft log (WASM-resident, or its TypeScript twin). Indexes are 1-based; after
 * compaction the log keeps the index and term of the last compacted entry, so `termAt` answers
 * for `firstIndex() - 1` too. Range errors are caller bugs and throw RangeError.
 */
export interface LogStore {
  /** Index of the first entry held (`lastIndex() + 1` when empty). */
  firstIndex(): number;
  /** Index of the last entry, or of the snapshot/compaction point when empty. */
  lastIndex(): number;
  /** Term of entry `index`, for `firstIndex() - 1 <= index <= lastIndex()`. */
  termAt(index: number): number;
  /** {@link EntryType} of entry `index`, for `firstIndex() <= index <= lastIndex()`. */
  typeAt(index: number): number;
  /** Payload of entry `index` as a view; valid until the next mutation of the log. */
  payloadAt(index: number): Uint8Array;
  /**
   * Appends a batch whose `firstIndex` is `lastIndex() + 1`. The log copies the entries: the
   * caller may reuse the batch's arrays afterwards (the core does, for its proposals).
   */
  append(batch: EntryBatch): void;
  /**
   * AppendEntries matching in one call: checks (prevIndex, prevTerm); on a match finds the
   * first entry of `batch` whose term differs from the log's, truncates there and appends the
   * rest. Requires `prevIndex >= firstIndex() - 1` and `batch.firstIndex === prevIndex + 1`.
   */
  matchAndAppend(prevIndex: number, prevTerm: number, batch: EntryBatch): MatchResult;
  /** Drops entries `index ..`; `index` must be >= firstIndex() (compacted entries are final). */
  truncateFrom(index: number): void;
  /** Drops entries `.. index` after a snapshot at `index` (index <= lastIndex()). */
  compactTo(index: number): void;
  /** Empties the log and sets the compaction point to (index, term), after installing a snapshot. */
  reset(index: number, term: number): void;
  /**
   * Entries `from .. to - 1` copied out as a batch, stopping early past `maxBytes` (>= 1 entry).
   * A small batch's `data`, and its `terms`, `types` and `ends`, are slices of Node's Buffer
   * pool (src/bytes.ts): it is meant to be written, sent or applied and dropped; copy what
   * you keep.
   */
  slice(from: number, to: number, maxBytes: number): EntryBatch;
  /** Payload bytes held. */
  payloadBytes(): number;
}
