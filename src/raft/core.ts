/**
 * RaftCore: the Raft state machine, deterministic and free of I/O. Time enters through
 * `tick()`, messages through `step()`, proposals through `propose()`; everything the core wants
 * done leaves as data in a `Ready` (persist these entries, send these messages, apply these
 * committed entries), and `advance()` tells it the Ready was handled. The same inputs always
 * produce the same outputs, which is what lets the simulator replay any failure from a seed.
 *
 * The shape follows etcd-raft: one step function and one tick function per role, swapped on
 * every role change. Where this file is terse, src/raft/README.md is the user manual.
 */
import { assert } from '../assert.js';
import { checkInteger, resolveRaftLimits, type RaftLimits } from '../config.js';
import { NotLeaderError, PhantomError } from '../errors.js';
import {
  EntryType,
  emptyBatch,
  lastIndexOf,
  payloadBytesOf,
  payloadOf,
  type EntryBatch,
} from './batch.js';
import {
  applyConfChange,
  checkConfState,
  decodeConfChange,
  describeConfChangeProblem,
  encodeConfChange,
  isJoint,
  isVoter,
  membersOf,
} from './conf-change.js';
import { Progress, type ProgressState } from './progress.js';
import { CommitQuorum, jointResult } from './quorum.js';
import type {
  AppendRequest,
  AppendResponse,
  ConfChange,
  ConfState,
  HardState,
  HeartbeatRequest,
  HeartbeatResponse,
  LogStore,
  MatchResult,
  Message,
  NodeId,
  ReadState,
  Ready,
  Role,
  SnapshotMeta,
  SnapshotRequest,
  SoftState,
  TimeoutNowRequest,
  VoteRequest,
  VoteResponse,
} from './types.js';

/** How to build a {@link RaftCore}: its identity, limits, and the state it restarts from. */
export interface RaftCoreOptions {
  /** This node's id; never '' (which means "none"). */
  id: NodeId;
  /** Overrides of the defaults in src/config.ts, validated with `resolveRaftLimits`. */
  limits?: Partial<RaftLimits>;
  /** Seeded source of numbers in [0, 1): the only randomness the core uses. */
  random: () => number;
  /** Entries after the last snapshot, already restored from storage. The core owns it. */
  log: LogStore;
  /** `{ term: 0, vote: '', commit: 0 }` on first boot. */
  hardState: HardState;
  /** Membership as of `applied` (on first boot: the bootstrap voters). */
  conf: ConfState;
  /** The latest snapshot this node holds, or null. */
  snapshot: SnapshotMeta | null;
  /** The state machine reflects the entries up to and including this index. */
  applied: number;
  /** Optional sink for state transitions; must not call back into the core. */
  trace?: (event: string, fields: Record<string, unknown>) => void;
  /**
   * FOR TESTING ONLY — builds a core with the bug Raft's Figure 8 warns about: a leader
   * commits an entry of an earlier term as soon as a majority holds it, and, so that the bug
   * can show, a new leader does not append its Noop entry. Committed entries can then be lost.
   * The simulator uses it to prove that its safety checks catch real bugs. Off by default.
   */
  unsafeCommitByCountingReplicas?: boolean;
}

/** The leader's view of one member, as reported by {@link RaftCore.status}. */
export interface ProgressStatus {
  readonly match: number;
  readonly next: number;
  readonly state: ProgressState;
  readonly learner: boolean;
  readonly recentActive: boolean;
  /** Appends in flight and their payload bytes. */
  readonly inflightMessages: number;
  readonly inflightBytes: number;
}

/** A snapshot of the core's state for operators, tests and the simulator. */
export interface RaftStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: number;
  readonly vote: NodeId;
  readonly leader: NodeId;
  readonly commit: number;
  readonly applied: number;
  readonly firstIndex: number;
  readonly lastIndex: number;
  /** Highest index this node knows to be durable in its own storage. */
  readonly persisted: number;
  readonly conf: ConfState;
  /** Index of the latest snapshot held (-1 when none). */
  readonly snapshotIndex: number;
  /** Target of a leadership transfer in progress ('' when none). */
  readonly transferee: NodeId;
  /** Per member, on the leader only (empty elsewhere); includes the leader itself. */
  readonly progress: Readonly<Record<NodeId, ProgressStatus>>;
}

/** A ReadIndex request waiting for a quorum to confirm this node is still the leader. */
interface PendingRead {
  /** Internal sequence number carried as the heartbeat context. */
  readonly seq: number;
  readonly context: number;
  readonly index: number;
  readonly acks: Set<NodeId>;
}

/** What the last Ready handed out, remembered until `advance()`. */
interface Outstanding {
  /** Last entry index handed out for persisting (0: none); lowered if truncated meanwhile. */
  lastEntryIndex: number;
  /** Snapshot handed out (null: none). */
  readonly snapshot: SnapshotMeta | null;
  /** Whether a newer snapshot replaced the log after this Ready was built. */
  snapshotSuperseded: boolean;
  /**
   * Whether the membership was replaced by an installed snapshot after this Ready was built:
   * conf changes among `committed` are then already reflected in the snapshot's conf.
   */
  confSuperseded: boolean;
  readonly committed: EntryBatch | null;
}

const noLimit = Number.MAX_SAFE_INTEGER;
const emptyPayload = new Uint8Array(0);
const noMessages: readonly Message[] = Object.freeze([]);

/**
 * A copy of `message` carrying `rpcId`. Not `{ ...message, rpcId }`: on Node 20 (V8 11.3) a copy
 * made by a spread and then given a property the original lacks outlives scavenges. Copying a
 * message-like object that way in a loop promoted 650 MB in 3 s against 0.2 MB with
 * Object.assign, and `npm run bench -- gc` (3 nodes) promoted 1,957 B per command against 24 B
 * once this copy and RaftConsensus.handleRequest's no longer used a spread.
 */
export function withRpcId<T extends Message>(message: T, rpcId: number): T {
  return Object.assign({}, message, { rpcId });
}

/**
 * The Raft consensus state machine. Drive it with `tick`/`step`/`propose`, then loop
 * `hasReady` → `ready` → (persist, send, apply) → `advance`. See src/raft/README.md.
 */
export class RaftCore {
  /** This node's id. */
  readonly id: NodeId;
  private readonly limits: RaftLimits;
  private readonly random: () => number;
  private readonly log: LogStore;
  private readonly trace: ((event: string, fields: Record<string, unknown>) => void) | undefined;
  private readonly unsafeCommit: boolean;

  private term: number;
  private vote: NodeId;
  private commit: number;
  private role: Role = 'follower';
  private leader: NodeId = '';
  private conf: ConfState;
  private commitQuorum: CommitQuorum;
  private readonly progress = new Map<NodeId, Progress>();
  private readonly votes = new Map<NodeId, boolean>();

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  private transferee: NodeId = '';
  private transferElapsed = 0;
  /** Leader: index of the latest conf change it appended; none may follow until it applies. */
  private pendingConfIndex = 0;
  /** Leader: payload bytes it appended in its term that are not yet committed. */
  private uncommittedBytes = 0;
  /** Leader: entries were appended since the last broadcast (proposals batch until ready()). */
  private appendPending = false;

  /** Latest snapshot this node holds (taken locally or installed from a leader). */
  private snapshot: SnapshotMeta | null;
  /** State machine reflects entries <= applied (confirmed by advance()). */
  private applied: number;
  /** Last committed index handed out in a Ready (applied once advanced). */
  private applying: number;
  /** Highest index known durable with its current contents. */
  private persistedIndex: number;
  /** First index not yet handed out in a Ready for persisting. */
  private unstableFrom: number;
  /** A snapshot received from the leader, to hand out in the next Ready. */
  private receivedSnapshot: SnapshotMeta | null = null;
  private outstanding: Outstanding | null = null;
  /** The commit index at the last invariant check: it must never go back. */
  private commitFloor = 0;
  private lastSoftState: SoftState;
  private lastHardState: HardState;

  private messages: Message[] = [];
  /** Scratch arrays of the one-entry batches `appendEntry` hands the log. */
  private readonly oneTerm = new Float64Array(1);
  private readonly oneType = new Uint8Array(1);
  private readonly oneEnd = new Uint32Array(1);
  private messagesAfterPersist: Message[] = [];
  private readStates: ReadState[] = [];
  private pendingReads: PendingRead[] = [];
  /** Reads asked of a new leader before it committed an entry of its term. */
  private readsAwaitingCommit: number[] = [];
  private readSeq = 0;

  private stepRole: (message: Message) => void = (message) => this.stepFollower(message);
  private tickRole: () => void = () => this.tickElection();

  constructor(options: RaftCoreOptions) {
    if (typeof options.id !== 'string' || options.id === '') {
      throw new TypeError(
        `Invalid id: ${JSON.stringify(options.id)} (expected a non-empty string)`,
      );
    }
    if (typeof options.random !== 'function') {
      throw new TypeError('Invalid random: expected a function returning numbers in [0, 1)');
    }
    this.id = options.id;
    this.limits = resolveRaftLimits(options.limits);
    this.random = options.random;
    this.log = options.log;
    this.trace = options.trace;
    this.unsafeCommit = options.unsafeCommitByCountingReplicas === true;

    const { hardState } = options;
    checkInteger('hardState.term', hardState.term, 0);
    checkInteger('hardState.commit', hardState.commit, 0);
    if (typeof hardState.vote !== 'string') {
      throw new TypeError('Invalid hardState.vote: expected a string');
    }
    checkConfState(options.conf, 'conf');
    checkInteger('applied', options.applied, 0);

    const firstIndex = this.log.firstIndex();
    const lastIndex = this.log.lastIndex();
    let snapshot = options.snapshot;
    if (snapshot !== null) {
      checkInteger('snapshot.index', snapshot.index, 0);
      checkInteger('snapshot.term', snapshot.term, 0);
      checkConfState(snapshot.conf, 'snapshot.conf');
      if (snapshot.index < firstIndex - 1 || snapshot.index > lastIndex) {
        throw new RangeError(
          `Cannot start: the snapshot is at index ${snapshot.index} but the log holds ${firstIndex - 1}..${lastIndex}`,
        );
      }
      if (this.log.termAt(snapshot.index) !== snapshot.term) {
        throw new RangeError(
          `Cannot start: the snapshot at index ${snapshot.index} has term ${snapshot.term}, the log has ${this.log.termAt(snapshot.index)}`,
        );
      }
    } else if (firstIndex > 1) {
      throw new RangeError(
        `Cannot start: the log is compacted up to ${firstIndex - 1} but no snapshot was given`,
      );
    } else if (options.applied === 0 && options.conf.voters.length > 0) {
      // A bootstrapped node that never snapshotted: its membership at index 0 is exactly the
      // bootstrap configuration, which is what a node joining later must be sent.
      snapshot = { index: 0, term: 0, conf: options.conf };
    }
    if (options.applied < firstIndex - 1) {
      throw new RangeError(
        `Cannot start: applied is ${options.applied} but the log is compacted up to ${firstIndex - 1}`,
      );
    }
    // The commit index may lag in storage (persisting it is optional), but whatever was
    // applied or snapshotted was committed.
    const commit = Math.max(hardState.commit, options.applied, firstIndex - 1);
    if (commit > lastIndex) {
      throw new RangeError(
        `Cannot start: commit is ${commit} but the log ends at ${lastIndex} (storage lost entries)`,
      );
    }
    this.snapshot = snapshot;
    this.term = hardState.term;
    this.vote = hardState.vote;
    this.commit = commit;
    this.applied = options.applied;
    this.applying = options.applied;
    this.persistedIndex = lastIndex;
    this.unstableFrom = lastIndex + 1;
    this.conf = copyConf(options.conf);
    this.commitQuorum = new CommitQuorum(this.conf);
    this.lastHardState = { term: hardState.term, vote: hardState.vote, commit: hardState.commit };
    this.lastSoftState = { leader: '', role: 'follower' };
    this.becomeFollower(this.term, '');
    this.checkInvariants();
  }

  // ---------------------------------------------------------------------------------------
  // Inputs

  /** Advances logical time by one tick (election and heartbeat timers run on ticks). */
  tick(): void {
    this.tickRole();
    this.checkInvariants();
  }

  /**
   * Feeds one message from a peer. Messages not addressed to this node, from itself, or
   * well-typed but nonsensical (bad indexes, impossible answers) are ignored without changing
   * any state; a request ignored that way gets no response.
   */
  step(message: Message): void {
    if (!this.isWellFormed(message)) {
      this.traceEvent('ignore', { reason: 'malformed', type: message.type, from: message.from });
      return;
    }
    if (!this.filterByTerm(message)) {
      this.checkInvariants();
      return;
    }
    if (message.type === 'vote') {
      this.onVoteRequest(message);
    } else {
      if (message.type === 'voteResp') this.learnCommit(message);
      this.stepRole(message);
    }
    this.checkInvariants();
  }

  /**
   * Leader only: appends a Normal entry and returns where it went. It is sent with the next
   * Ready (proposals made between two Readys share one append per follower). Throws
   * NotLeaderError elsewhere, PhantomError LEADERSHIP_TRANSFER while a transfer is under way,
   * and PhantomError TOO_MANY_REQUESTS past `uncommittedBytesMax`.
   */
  propose(data: Uint8Array): { index: number; term: number } {
    if (!(data instanceof Uint8Array)) {
      throw new TypeError('Cannot propose: the payload must be a Uint8Array');
    }
    this.checkCanPropose();
    // An entry alone is always accepted so that one payload bigger than the bound does not
    // wedge the leader; beyond that the bound pushes back on clients.
    if (
      this.uncommittedBytes > 0 &&
      this.uncommittedBytes + data.length > this.limits.uncommittedBytesMax
    ) {
      throw new PhantomError(
        'TOO_MANY_REQUESTS',
        `Cannot propose: ${this.uncommittedBytes} bytes are waiting to commit (limit ${this.limits.uncommittedBytesMax}); retry later`,
      );
    }
    const index = this.appendEntry(EntryType.Normal, data);
    this.checkInvariants();
    return { index, term: this.term };
  }

  /**
   * Leader only: appends a membership change. Changes touching voters enter a joint
   * configuration, which the leader leaves on its own once the joint entry is applied. Throws
   * PhantomError CONF_CHANGE_IN_PROGRESS while an earlier change is not applied yet, and
   * RangeError for a change that does not apply to the current membership.
   */
  proposeConfChange(change: ConfChange): { index: number; term: number } {
    checkConfChangeShape(change);
    this.checkCanPropose();
    if (this.pendingConfIndex > this.applied) {
      throw new PhantomError(
        'CONF_CHANGE_IN_PROGRESS',
        `Cannot change membership: the change at index ${this.pendingConfIndex} is not applied yet (applied ${this.applied})`,
      );
    }
    const problem = describeConfChangeProblem(this.conf, change);
    if (problem !== null) throw new RangeError(problem);
    const index = this.appendEntry(EntryType.ConfChange, encodeConfChange(change));
    this.pendingConfIndex = index;
    this.checkInvariants();
    return { index, term: this.term };
  }

  /**
   * Leader only: asks for a linearizable read point. A later Ready carries
   * `{ index, context }` once a quorum confirmed this node was still the leader after the
   * call; the read may be served once the state machine has applied `index`. A new leader
   * first commits an entry of its own term (its Noop), because only then does it know the
   * full commit index. `context` must not be pending already. Pending reads are dropped if
   * this node stops being the leader; the driver fails them on the role change.
   */
  readIndex(context: number): void {
    if (typeof context !== 'number' || !Number.isFinite(context)) {
      throw new TypeError(`Invalid read context: ${String(context)} (expected a finite number)`);
    }
    if (this.role !== 'leader') throw new NotLeaderError(this.leader);
    if (
      this.readsAwaitingCommit.includes(context) ||
      this.pendingReads.some((read) => read.context === context)
    ) {
      throw new RangeError(`Cannot read: context ${context} is already pending`);
    }
    if (!this.committedInTerm()) {
      this.readsAwaitingCommit.push(context);
      return;
    }
    this.registerRead(context);
    this.checkInvariants();
  }

  /**
   * Leader only: hands leadership to voter `to`. The leader brings it up to date, sends it
   * TimeoutNow (it then campaigns at once, bypassing leases), and refuses proposals until the
   * transfer ends; it gives up after an election timeout. Transferring to itself is a no-op.
   */
  transferLeadership(to: NodeId): void {
    if (typeof to !== 'string' || to === '') {
      throw new TypeError(`Invalid transfer target: ${JSON.stringify(to)}`);
    }
    if (this.role !== 'leader') throw new NotLeaderError(this.leader);
    if (to === this.id) return;
    if (!this.conf.voters.includes(to)) {
      throw new RangeError(`Cannot transfer leadership to ${to}: it is not a voter`);
    }
    if (this.transferee === to) return;
    this.abortTransfer('replaced');
    this.transferee = to;
    this.transferElapsed = 0;
    this.traceEvent('transferStart', { to });
    const progress = this.progressOf(to);
    if (progress.match === this.log.lastIndex()) {
      this.sendTimeoutNow(to);
    } else {
      this.maybeSendAppend(to, true);
    }
    this.checkInvariants();
  }

  /**
   * Starts an election now (Pre-Vote first when enabled). For tests and for bootstrapping a
   * one-node cluster. Ignored on a leader, on a node that is not a voter, and while committed
   * membership changes are not applied yet.
   */
  campaign(): void {
    this.hup(false);
    this.checkInvariants();
  }

  // ---------------------------------------------------------------------------------------
  // The Ready loop

  /** Whether `ready()` has anything to hand out (false while a Ready awaits `advance()`). */
  hasReady(): boolean {
    if (this.outstanding !== null) return false;
    this.flushAppends();
    return (
      this.softStateChanged() ||
      this.hardStateChanged() ||
      this.unstableFrom <= this.log.lastIndex() ||
      this.receivedSnapshot !== null ||
      this.commit > this.applying ||
      this.messages.length > 0 ||
      this.messagesAfterPersist.length > 0 ||
      this.readStates.length > 0
    );
  }

  /**
   * Everything to do, as data; see `Ready` in types.ts for the order rules. Exactly one Ready
   * is outstanding at a time: call `advance()` once it is fully handled.
   */
  ready(): Ready {
    if (this.outstanding !== null) {
      throw new TypeError('Cannot build a Ready: advance() was not called for the previous one');
    }
    this.flushAppends();
    const softState = this.softStateChanged() ? { leader: this.leader, role: this.role } : null;
    const hardChanged = this.hardStateChanged();
    const hardState = hardChanged
      ? { term: this.term, vote: this.vote, commit: this.commit }
      : null;
    const mustSyncHardState =
      hardChanged &&
      (this.term !== this.lastHardState.term || this.vote !== this.lastHardState.vote);
    const lastIndex = this.log.lastIndex();
    const entries =
      this.unstableFrom <= lastIndex
        ? this.log.slice(this.unstableFrom, lastIndex + 1, noLimit)
        : null;
    const snapshot = this.receivedSnapshot;
    // After a snapshot, nothing may be applied before the state machine is restored from it:
    // committed entries wait for the next Ready.
    let committed: EntryBatch | null = null;
    if (snapshot === null && this.commit > this.applying) {
      committed = this.log.slice(
        this.applying + 1,
        this.commit + 1,
        this.limits.committedBytesPerReadyMax,
      );
    }
    const ready: Ready = {
      softState,
      hardState,
      entries,
      snapshot,
      committed,
      messages: this.messages,
      messagesAfterPersist: this.messagesAfterPersist,
      readStates: this.readStates,
      mustSync: mustSyncHardState || entries !== null || snapshot !== null,
    };
    this.messages = [];
    this.messagesAfterPersist = [];
    this.readStates = [];
    if (softState !== null) this.lastSoftState = softState;
    if (hardState !== null) this.lastHardState = hardState;
    this.unstableFrom = lastIndex + 1;
    this.receivedSnapshot = null;
    if (committed !== null) this.applying = lastIndexOf(committed);
    this.outstanding = {
      lastEntryIndex: entries === null ? 0 : lastIndexOf(entries),
      snapshot,
      snapshotSuperseded: false,
      confSuperseded: false,
      committed,
    };
    return ready;
  }

  /**
   * The leader requests that may leave now — what the next Ready's `messages` would carry
   * (appends of the entries proposed since the last Ready, heartbeats, snapshots,
   * TimeoutNow) — taken out of it. Callable at any time, also while a Ready is outstanding:
   * these requests never wait for persistence (see `Ready.messages`), so a driver that is
   * waiting for the fsync of one Ready need not hold back the appends of proposals made
   * meanwhile until the next one. The leader still counts its own log toward a commit only up
   * to what `advance()` confirmed durable.
   */
  takeMessages(): readonly Message[] {
    this.flushAppends();
    if (this.messages.length === 0) return noMessages;
    const messages = this.messages;
    this.messages = [];
    return messages;
  }

  /**
   * The last Ready was fully handled: its snapshot, entries and hard state are durable, its
   * messages sent, its committed entries applied. Membership changes among them take effect
   * now.
   */
  advance(): void {
    const outstanding = this.outstanding;
    if (outstanding === null) {
      throw new TypeError('Cannot advance: no Ready is outstanding');
    }
    this.outstanding = null;
    if (outstanding.snapshot !== null) {
      // The state machine was restored from this snapshot, even if a newer one has arrived
      // since (that one comes in the next Ready).
      this.applied = Math.max(this.applied, outstanding.snapshot.index);
      this.applying = Math.max(this.applying, this.applied);
      if (!outstanding.snapshotSuperseded) {
        this.persistedIndex = Math.max(this.persistedIndex, outstanding.snapshot.index);
      }
    }
    // Entries truncated after this Ready was built were already cut from lastEntryIndex and
    // from unstableFrom; what remains below both is durable with its current contents.
    this.persistedIndex = Math.max(
      this.persistedIndex,
      Math.min(outstanding.lastEntryIndex, this.unstableFrom - 1),
    );
    const { committed } = outstanding;
    if (committed !== null) {
      for (let k = 0; k < committed.count && !outstanding.confSuperseded; k++) {
        if (committed.types[k] === EntryType.ConfChange) {
          this.applyConfEntry(committed.firstIndex + k, payloadOf(committed, k));
        }
      }
      this.applied = Math.max(this.applied, lastIndexOf(committed));
    }
    if (this.role === 'leader') {
      // The leader's own vote in the commit quorum is its durable log, known only now.
      this.progressOf(this.id).maybeUpdate(this.persistedIndex);
      if (this.maybeCommit()) this.bcastAppend(true);
      // Joint consensus is a means, not a destination: once the joint entry is applied, the
      // leader proposes the empty change that moves everyone to C_new.
      if (isJoint(this.conf) && this.applied >= this.pendingConfIndex) {
        const index = this.appendEntry(EntryType.ConfChange, encodeConfChange({ changes: [] }));
        this.pendingConfIndex = index;
        this.traceEvent('leaveJoint', { index });
      }
    }
    this.checkInvariants();
  }

  /**
   * The application wrote a snapshot of its state machine at `meta.index` (<= applied), with
   * `meta.conf` the membership as of that index. It becomes what the leader sends to
   * followers that need compacted entries.
   */
  snapshotCreated(meta: SnapshotMeta): void {
    checkInteger('snapshot.index', meta.index, 0);
    checkInteger('snapshot.term', meta.term, 0);
    checkConfState(meta.conf, 'snapshot.conf');
    if (meta.index > this.applied) {
      throw new RangeError(
        `Cannot record a snapshot at index ${meta.index}: only ${this.applied} is applied`,
      );
    }
    if (this.snapshot !== null && meta.index < this.snapshot.index) {
      throw new RangeError(
        `Cannot record a snapshot at index ${meta.index}: a newer one at ${this.snapshot.index} exists`,
      );
    }
    if (meta.index >= this.log.firstIndex() - 1 && this.log.termAt(meta.index) !== meta.term) {
      throw new RangeError(
        `Cannot record a snapshot at index ${meta.index}: its term is ${meta.term}, the log has ${this.log.termAt(meta.index)}`,
      );
    }
    this.snapshot = { index: meta.index, term: meta.term, conf: copyConf(meta.conf) };
  }

  /** Drops log entries up to `index`, which must be covered by the latest snapshot. */
  compact(index: number): void {
    checkInteger('compact index', index, 0);
    if (this.snapshot === null || index > this.snapshot.index) {
      throw new RangeError(
        `Cannot compact up to ${index}: the latest snapshot is at ${this.snapshot?.index ?? 'none'}`,
      );
    }
    if (index <= this.log.firstIndex() - 1) return;
    this.log.compactTo(index);
    this.checkInvariants();
  }

  /** The transport could not reach `id`: stop streaming to it and probe instead. */
  reportUnreachable(id: NodeId): void {
    if (this.role !== 'leader') return;
    const progress = this.progress.get(id);
    if (progress === undefined || id === this.id) return;
    if (progress.state === 'replicate') progress.becomeProbe();
  }

  /** Outcome of sending a snapshot to `id`. On failure the leader retries after a heartbeat. */
  reportSnapshot(id: NodeId, ok: boolean): void {
    if (this.role !== 'leader') return;
    const progress = this.progress.get(id);
    if (progress === undefined || progress.state !== 'snapshot') return;
    if (!ok) progress.pendingSnapshot = 0;
    progress.becomeProbe();
    // Success: wait for the follower's answer before probing. Failure: wait for a heartbeat
    // response, which shows the follower is reachable again.
    progress.probeSent = true;
    this.traceEvent('snapshotReported', { to: id, ok });
  }

  /** The core's state, for operators, tests and the simulator. */
  status(): RaftStatus {
    const progress: Record<NodeId, ProgressStatus> = {};
    if (this.role === 'leader') {
      for (const [id, value] of this.progress) {
        progress[id] = {
          match: value.match,
          next: value.next,
          state: value.state,
          learner: value.isLearner,
          recentActive: value.recentActive,
          inflightMessages: value.inflights.count,
          inflightBytes: value.inflights.byteCount,
        };
      }
    }
    return {
      id: this.id,
      role: this.role,
      term: this.term,
      vote: this.vote,
      leader: this.leader,
      commit: this.commit,
      applied: this.applied,
      firstIndex: this.log.firstIndex(),
      lastIndex: this.log.lastIndex(),
      persisted: this.persistedIndex,
      conf: copyConf(this.conf),
      snapshotIndex: this.snapshot?.index ?? -1,
      transferee: this.transferee,
      progress,
    };
  }

  // ---------------------------------------------------------------------------------------
  // Role changes

  private becomeFollower(term: number, leader: NodeId): void {
    this.reset(term);
    this.role = 'follower';
    this.leader = leader;
    this.stepRole = (message) => this.stepFollower(message);
    this.tickRole = () => this.tickElection();
    this.traceEvent('becomeFollower', { term, leader });
  }

  private becomePreCandidate(): void {
    assert(this.role !== 'leader', 'a leader cannot become a pre-candidate');
    // Pre-Vote changes neither term nor vote: a node that cannot win (partitioned, or with a
    // stale log) must not disturb the cluster by raising terms (thesis §9.6).
    this.votes.clear();
    this.role = 'preCandidate';
    this.leader = '';
    this.stepRole = (message) => this.stepCandidate(message);
    this.tickRole = () => this.tickElection();
    this.traceEvent('becomePreCandidate', { term: this.term });
  }

  private becomeCandidate(): void {
    assert(this.role !== 'leader', 'a leader cannot become a candidate');
    this.reset(this.term + 1);
    this.setVote(this.id);
    this.role = 'candidate';
    this.stepRole = (message) => this.stepCandidate(message);
    this.tickRole = () => this.tickElection();
    this.traceEvent('becomeCandidate', { term: this.term });
  }

  private becomeLeader(): void {
    assert(this.role === 'candidate', () => `${this.role} cannot become leader`);
    this.reset(this.term);
    this.role = 'leader';
    this.leader = this.id;
    this.stepRole = (message) => this.stepLeader(message);
    this.tickRole = () => this.tickHeartbeat();
    const self = this.progressOf(this.id);
    self.recentActive = true;
    self.maybeUpdate(this.persistedIndex);
    self.becomeReplicate();
    // Entries at or below lastIndex may include conf changes not applied yet; the leader
    // cannot know, so it proposes no change of its own until all of them are applied.
    this.pendingConfIndex = this.log.lastIndex();
    this.traceEvent('becomeLeader', { term: this.term, lastIndex: this.log.lastIndex() });
    if (!this.unsafeCommit) {
      // Figure 8: entries of earlier terms commit only through an entry of this term, so the
      // leader appends one at once instead of waiting for a client.
      this.appendEntry(EntryType.Noop, emptyPayload);
    }
    this.bcastAppend(true);
    this.appendPending = false;
  }

  /** Common to every role change: timers, votes and per-role state start afresh. */
  private reset(term: number): void {
    if (term !== this.term) {
      assert(term > this.term, () => `term going back from ${this.term} to ${term}`);
      this.term = term;
      this.vote = '';
    }
    this.leader = '';
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout =
      this.limits.electionTicks + Math.floor(this.random() * this.limits.electionTicks);
    assert(
      this.randomizedElectionTimeout >= this.limits.electionTicks &&
        this.randomizedElectionTimeout < 2 * this.limits.electionTicks,
      () =>
        `random source returned a number outside [0, 1): timeout ${this.randomizedElectionTimeout}`,
    );
    this.abortTransfer('role change');
    this.votes.clear();
    this.pendingConfIndex = 0;
    this.uncommittedBytes = 0;
    this.appendPending = false;
    this.pendingReads = [];
    this.readsAwaitingCommit = [];
    this.resetProgress();
  }

  private resetProgress(): void {
    this.progress.clear();
    const next = this.log.lastIndex() + 1;
    for (const id of membersOf(this.conf)) {
      const progress = this.newProgress(id, next);
      if (id === this.id) progress.maybeUpdate(this.persistedIndex);
      this.progress.set(id, progress);
    }
  }

  private newProgress(id: NodeId, next: number): Progress {
    return new Progress(
      id,
      next,
      this.limits.inflightMessagesMax,
      this.limits.inflightBytesMax,
      !isVoter(this.conf, id),
    );
  }

  private setVote(id: NodeId): void {
    // One vote per term: a second, different vote in the same term could elect two leaders.
    assert(
      this.vote === '' || this.vote === id,
      () => `voting for ${id} in term ${this.term} after voting for ${this.vote}`,
    );
    this.vote = id;
  }

  // ---------------------------------------------------------------------------------------
  // Ticks

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup(false);
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.transferee !== '') {
      this.transferElapsed++;
      if (this.transferElapsed >= this.limits.electionTicks) this.abortTransfer('timed out');
    }
    if (this.electionElapsed >= this.limits.electionTicks) {
      this.electionElapsed = 0;
      if (this.limits.checkQuorum) {
        // CheckQuorum: a leader cut off from a majority steps down after an election timeout,
        // so its clients learn to go elsewhere and a lease-holding follower majority can
        // elect a new leader without it.
        const active = jointResult(this.conf, (id) =>
          id === this.id ? true : this.progress.get(id)?.recentActive === true,
        );
        for (const [id, progress] of this.progress) progress.recentActive = id === this.id;
        if (active !== 'won') {
          this.traceEvent('checkQuorumFailed', { term: this.term });
          this.becomeFollower(this.term, '');
          return;
        }
      }
    }
    if (this.heartbeatElapsed >= this.limits.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.bcastHeartbeat(this.pendingReads.at(-1)?.seq ?? 0);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Elections

  /** Whether this node may campaign: it votes in the current configuration. */
  private promotable(): boolean {
    return isVoter(this.conf, this.id);
  }

  private hup(transfer: boolean): void {
    if (this.role === 'leader') {
      this.traceEvent('ignore', { reason: 'campaign while leader' });
      return;
    }
    if (!this.promotable()) {
      this.traceEvent('ignore', { reason: 'campaign while not a voter' });
      return;
    }
    // A committed membership change not applied yet may change who votes: campaigning under
    // the old configuration could count the wrong voters.
    if (this.hasUnappliedConfChange()) {
      this.traceEvent('ignore', { reason: 'campaign with unapplied conf change' });
      return;
    }
    // Transfers skip Pre-Vote: the old leader asked for this election, so there is no
    // partition to guard against, and followers' leases are bypassed anyway.
    if (this.limits.preVote && !transfer) {
      this.campaignPreVote();
    } else {
      this.campaignVote(transfer);
    }
  }

  private hasUnappliedConfChange(): boolean {
    for (let index = this.applying + 1; index <= this.commit; index++) {
      if (this.log.typeAt(index) === EntryType.ConfChange) return true;
    }
    return false;
  }

  private campaignPreVote(): void {
    this.becomePreCandidate();
    this.votes.set(this.id, true);
    if (this.tally() === 'won') {
      this.campaignVote(false);
      return;
    }
    this.requestVotes(true, this.term + 1, false);
  }

  private campaignVote(transfer: boolean): void {
    this.becomeCandidate();
    this.votes.set(this.id, true);
    if (this.tally() === 'won') {
      this.becomeLeader();
      return;
    }
    this.requestVotes(false, this.term, transfer);
  }

  private requestVotes(preVote: boolean, term: number, transfer: boolean): void {
    const lastLogIndex = this.log.lastIndex();
    const lastLogTerm = this.log.termAt(lastLogIndex);
    for (const id of membersOf(this.conf)) {
      if (id === this.id || !isVoter(this.conf, id)) continue;
      const request: VoteRequest = {
        type: 'vote',
        from: this.id,
        to: id,
        term,
        preVote,
        lastLogIndex,
        lastLogTerm,
        transfer,
      };
      // Vote requests wait for persistence: the candidate's new term and self-vote must be
      // durable before anyone can act on them.
      this.messagesAfterPersist.push(request);
    }
  }

  private tally(): 'won' | 'lost' | 'pending' {
    return jointResult(this.conf, (id) => this.votes.get(id));
  }

  private onVoteRequest(message: VoteRequest): void {
    const lastIndex = this.log.lastIndex();
    const lastTerm = this.log.termAt(lastIndex);
    // Election restriction (§5.4.1): only a candidate whose log is at least as up to date as
    // ours may get our vote, so every leader holds every committed entry.
    const upToDate =
      message.lastLogTerm > lastTerm ||
      (message.lastLogTerm === lastTerm && message.lastLogIndex >= lastIndex);
    const canVote =
      this.vote === message.from ||
      (this.vote === '' && this.leader === '') ||
      (message.preVote && message.term > this.term);
    const granted = canVote && upToDate;
    if (granted && !message.preVote) {
      this.electionElapsed = 0;
      this.setVote(message.from);
    }
    // A granted pre-vote answers in the term it was asked for (the candidate's future term);
    // anything else answers in ours, which makes a stale candidate step down.
    if (granted) {
      this.respond(message, {
        type: 'voteResp',
        from: this.id,
        to: message.from,
        term: message.preVote ? message.term : this.term,
        preVote: message.preVote,
        granted,
      });
    } else {
      this.respond(message, this.voteRefusal(message, !upToDate));
    }
    this.traceEvent('vote', { to: message.from, preVote: message.preVote, granted });
  }

  // ---------------------------------------------------------------------------------------
  // Step: checks common to every role, then the role's own step function

  /** Rejects messages the core must not act on: wrong address, impossible numbers. */
  private isWellFormed(message: Message): boolean {
    if (message.to !== this.id || message.from === this.id || message.from === '') return false;
    if (typeof message.from !== 'string') return false;
    if (!Number.isSafeInteger(message.term) || message.term < 0) return false;
    switch (message.type) {
      case 'vote':
        return isIndex(message.lastLogIndex) && isIndex(message.lastLogTerm);
      case 'append':
        return (
          isIndex(message.prevLogIndex) &&
          isIndex(message.prevLogTerm) &&
          isIndex(message.commit) &&
          message.entries.firstIndex === message.prevLogIndex + 1 &&
          Number.isSafeInteger(message.entries.count) &&
          message.entries.count >= 0
        );
      case 'appendResp':
        return (
          isIndex(message.matchIndex) &&
          isIndex(message.rejectIndex) &&
          isIndex(message.hintIndex) &&
          isIndex(message.hintTerm)
        );
      case 'heartbeat':
        return isIndex(message.commit) && isIndex(message.context);
      case 'heartbeatResp':
        return isIndex(message.context);
      case 'snapshot': {
        const meta = message.snapshot;
        if (!isIndex(meta.index) || !isIndex(meta.term)) return false;
        try {
          checkConfState(meta.conf, 'snapshot.conf');
        } catch {
          return false;
        }
        return true;
      }
      case 'voteResp':
      case 'timeoutNow':
        return true;
      default:
        return false;
    }
  }

  /**
   * Term rules shared by every role (§5.1): a higher term makes us a follower (with two
   * exceptions for leases and Pre-Vote), a lower term marks a stale sender. Returns whether
   * the message should go on to the role's step function.
   */
  private filterByTerm(message: Message): boolean {
    if (message.term > this.term) {
      if (message.type === 'vote') {
        // Leader lease (thesis §4.2.3): a node that heard from a live leader within the
        // minimum election timeout refuses to help depose it, so a node that rejoins after a
        // partition cannot disrupt a healthy cluster. Transfers are asked for by the leader.
        const inLease =
          this.limits.checkQuorum &&
          this.leader !== '' &&
          this.electionElapsed < this.limits.electionTicks;
        if (inLease && !message.transfer) {
          this.traceEvent('ignore', { reason: 'vote within lease', from: message.from });
          this.respond(message, this.voteRefusal(message));
          return false;
        }
        // A pre-vote is a question about the future: it changes no state here.
        if (message.preVote) return true;
        this.becomeFollower(message.term, '');
        return true;
      }
      if (message.type === 'voteResp' && message.preVote && message.granted) {
        // A granted pre-vote comes in the term we will campaign for; we raise our own term
        // only when the real election starts.
        return true;
      }
      const fromLeader =
        message.type === 'append' || message.type === 'heartbeat' || message.type === 'snapshot';
      this.becomeFollower(message.term, fromLeader ? message.from : '');
      return true;
    }
    if (message.term < this.term) {
      // A stale leader or candidate learns our term from the answer and steps down; without
      // it, a leader cut off by CheckQuorum-minded followers could linger. Other stale
      // messages (answers to old requests) carry nothing we can use.
      switch (message.type) {
        case 'append':
        case 'snapshot':
          this.respond(
            message,
            this.appendResponse(
              message.from,
              false,
              0,
              message.type === 'append' ? message.prevLogIndex : 0,
              this.log.lastIndex() + 1,
              0,
            ),
          );
          break;
        case 'heartbeat':
          this.respond(message, this.heartbeatResponse(message.from, message.context));
          break;
        case 'vote':
          this.respond(message, this.voteRefusal(message));
          break;
        default:
          break;
      }
      this.traceEvent('ignore', { reason: 'stale term', type: message.type, from: message.from });
      return false;
    }
    return true;
  }

  private stepFollower(message: Message): void {
    switch (message.type) {
      case 'append':
        this.electionElapsed = 0;
        this.leader = message.from;
        this.onAppend(message);
        break;
      case 'heartbeat':
        this.electionElapsed = 0;
        this.leader = message.from;
        this.onHeartbeat(message);
        break;
      case 'snapshot':
        this.electionElapsed = 0;
        this.leader = message.from;
        this.onSnapshot(message);
        break;
      case 'timeoutNow':
        this.traceEvent('timeoutNow', { from: message.from });
        this.hup(true);
        break;
      default:
        // Responses arriving after we stopped being leader or candidate.
        break;
    }
  }

  private stepCandidate(message: Message): void {
    switch (message.type) {
      case 'append':
      case 'heartbeat':
      case 'snapshot':
        // Someone won this term (a pre-candidate may also see the current leader here).
        this.becomeFollower(message.term, message.from);
        this.stepFollower(message);
        break;
      case 'voteResp': {
        // Only answers for the election we are running count.
        if (message.preVote !== (this.role === 'preCandidate')) return;
        this.votes.set(message.from, message.granted);
        const result = this.tally();
        this.traceEvent('poll', { from: message.from, granted: message.granted, result });
        if (result === 'won') {
          if (this.role === 'preCandidate') {
            this.campaignVote(false);
          } else {
            this.becomeLeader();
          }
        } else if (result === 'lost') {
          // A lost pre-vote answered in our term, a lost vote too: stay in it as follower.
          this.becomeFollower(this.term, '');
        }
        break;
      }
      default:
        break;
    }
  }

  private stepLeader(message: Message): void {
    const progress = this.progress.get(message.from);
    switch (message.type) {
      case 'appendResp':
        if (progress !== undefined) this.onAppendResponse(message, progress);
        break;
      case 'heartbeatResp':
        if (progress !== undefined) this.onHeartbeatResponse(message, progress);
        break;
      case 'append':
      case 'heartbeat':
      case 'snapshot':
        // Another leader in our term would break election safety; it can only be a corrupt
        // or misbehaving peer, so the message is dropped rather than believed.
        this.traceEvent('ignore', { reason: 'second leader in term', from: message.from });
        break;
      default:
        break;
    }
  }

  // ---------------------------------------------------------------------------------------
  // Follower: AppendEntries, heartbeats, snapshots

  /**
   * A node created to join an existing cluster has no membership and no history; its
   * configuration must come from a snapshot, because membership changes in the log are
   * deltas against a configuration it does not know.
   */
  private isUnbootstrapped(): boolean {
    return (
      this.snapshot === null &&
      this.log.lastIndex() === 0 &&
      this.conf.voters.length === 0 &&
      this.conf.learners.length === 0
    );
  }

  private onAppend(message: AppendRequest): void {
    const lastIndex = this.log.lastIndex();
    if (this.isUnbootstrapped()) {
      // Hint (0, 0) asks the leader for its snapshot, whatever its log holds.
      this.respond(
        message,
        this.appendResponse(message.from, false, 0, message.prevLogIndex, 0, 0),
      );
      return;
    }
    if (message.prevLogIndex < this.commit) {
      // Everything up to our commit index matches the leader already (committed entries are
      // the same everywhere); tell it where we are instead of re-checking old entries.
      this.respond(message, this.appendResponse(message.from, true, this.commit, 0, 0, 0));
      return;
    }
    if (message.prevLogIndex > lastIndex) {
      this.respond(
        message,
        this.appendResponse(message.from, false, 0, message.prevLogIndex, lastIndex + 1, 0),
      );
      return;
    }
    assert(this.commit >= this.log.firstIndex() - 1, 'commit below the compaction point');
    let result: MatchResult;
    try {
      result = this.log.matchAndAppend(message.prevLogIndex, message.prevLogTerm, message.entries);
    } catch (error) {
      // The log checks a batch before changing anything; an inconsistent batch (that the
      // transport should have refused) is dropped like any other nonsensical request.
      if (error instanceof RangeError || error instanceof TypeError) {
        this.traceEvent('ignore', { reason: String(error), from: message.from });
        return;
      }
      throw error;
    }
    if (!result.ok) {
      this.respond(
        message,
        this.appendResponse(
          message.from,
          false,
          0,
          message.prevLogIndex,
          result.hintIndex,
          result.hintTerm,
        ),
      );
      return;
    }
    if (result.firstWrittenIndex > 0) {
      // Log Matching guarantees committed entries agree everywhere: overwriting one means a
      // leader without them was elected, which Raft rules out.
      assert(
        result.firstWrittenIndex > this.commit,
        () =>
          `append overwrote committed entry ${result.firstWrittenIndex} (commit ${this.commit})`,
      );
      this.onLogWritten(result.firstWrittenIndex);
    }
    // Only entries known to match the leader (up to the last one of this request) may be
    // committed: our log may still hold a diverging suffix past it.
    this.commitTo(Math.min(message.commit, result.lastNewIndex));
    this.respond(message, this.appendResponse(message.from, true, result.lastNewIndex, 0, 0, 0));
  }

  private onHeartbeat(message: HeartbeatRequest): void {
    // The leader sends min(match, commit), so this index is in the part of our log known to
    // match it; the min with lastIndex guards against a peer that is wrong about that.
    this.commitTo(Math.min(message.commit, this.log.lastIndex()));
    this.respond(message, this.heartbeatResponse(message.from, message.context));
  }

  private onSnapshot(message: SnapshotRequest): void {
    const meta = message.snapshot;
    const unbootstrapped = this.isUnbootstrapped();
    if (!unbootstrapped && meta.index <= this.commit) {
      this.respond(message, this.appendResponse(message.from, true, this.commit, 0, 0, 0));
      return;
    }
    const firstIndex = this.log.firstIndex();
    if (
      !unbootstrapped &&
      meta.index <= this.log.lastIndex() &&
      meta.index >= firstIndex - 1 &&
      this.log.termAt(meta.index) === meta.term
    ) {
      // Our log already holds the snapshot's last entry, hence (Log Matching) everything
      // before it: no need to throw the log away, just learn that it is committed.
      this.commitTo(meta.index);
      this.respond(message, this.appendResponse(message.from, true, this.commit, 0, 0, 0));
      return;
    }
    const oldCommit = this.commit;
    this.log.reset(meta.index, meta.term);
    this.commit = meta.index;
    this.conf = copyConf(meta.conf);
    this.commitQuorum = new CommitQuorum(this.conf);
    this.snapshot = { index: meta.index, term: meta.term, conf: copyConf(meta.conf) };
    this.receivedSnapshot = this.snapshot;
    // Entries up to our old commit were durable and equal to the leader's; nothing beyond is
    // known to be, until the snapshot itself is persisted.
    this.persistedIndex = Math.min(this.persistedIndex, oldCommit);
    this.unstableFrom = meta.index + 1;
    if (this.outstanding !== null) {
      this.outstanding.lastEntryIndex = Math.min(this.outstanding.lastEntryIndex, oldCommit);
      this.outstanding.snapshotSuperseded = true;
      this.outstanding.confSuperseded = true;
    }
    this.resetProgress();
    this.traceEvent('snapshotInstall', { index: meta.index, term: meta.term });
    this.respond(message, this.appendResponse(message.from, true, meta.index, 0, 0, 0));
  }

  /** Entries from `index` on were replaced or added in the log (not yet persisted). */
  private onLogWritten(index: number): void {
    this.unstableFrom = Math.min(this.unstableFrom, index);
    this.persistedIndex = Math.min(this.persistedIndex, index - 1);
    if (this.outstanding !== null) {
      this.outstanding.lastEntryIndex = Math.min(this.outstanding.lastEntryIndex, index - 1);
    }
  }

  /**
   * A refusal in our term. When our log is the more up to date (`logAhead`), it carries our
   * commit index and its term (see `learnCommit`, on the candidate's side).
   */
  private voteRefusal(message: VoteRequest, logAhead = false): VoteResponse {
    const refusal: VoteResponse = {
      type: 'voteResp',
      from: this.id,
      to: message.from,
      term: this.term,
      preVote: message.preVote,
      granted: false,
    };
    if (!logAhead || this.commit < this.log.firstIndex()) return refusal;
    // A spread copy given a property its source lacks outlives scavenges (see withRpcId).
    return Object.assign(refusal, {
      commit: { index: this.commit, term: this.log.termAt(this.commit) },
    });
  }

  /**
   * A voter that refused us for its longer log told us its commit index: if we hold that
   * entry with the same term, everything up to it is committed here too. Without this, a
   * node whose leader removed itself (and is gone) before telling it the membership change
   * committed would campaign forever under the joint configuration, needing the vote of the
   * removed node, whose longer log refuses it.
   */
  private learnCommit(message: VoteResponse): void {
    const known = message.commit;
    if (known === undefined || known.index <= this.commit) return;
    if (known.index > this.log.lastIndex() || known.index < this.log.firstIndex()) return;
    if (this.log.termAt(known.index) !== known.term) return;
    this.traceEvent('commitLearned', { from: message.from, index: known.index });
    this.commitTo(known.index);
  }

  private commitTo(index: number): void {
    if (index <= this.commit) return;
    assert(
      index <= this.log.lastIndex(),
      () => `commit ${index} past last index ${this.log.lastIndex()}`,
    );
    this.commit = index;
  }

  // ---------------------------------------------------------------------------------------
  // Leader: replication

  private checkCanPropose(): void {
    if (this.role !== 'leader') throw new NotLeaderError(this.leader);
    if (this.transferee !== '') {
      throw new PhantomError(
        'LEADERSHIP_TRANSFER',
        `Cannot propose: leadership is being transferred to ${this.transferee}`,
      );
    }
  }

  /** Appends one entry of this term to the leader's log; sent with the next Ready. */
  private appendEntry(type: EntryType, payload: Uint8Array): number {
    assert(this.role === 'leader', 'only a leader appends entries of its own');
    const index = this.log.lastIndex() + 1;
    // A one-entry batch over the payload itself and three reused one-element arrays: the log
    // copies what it appends (LogStore.append), so nothing is allocated or copied per proposal
    // beyond that copy.
    this.oneTerm[0] = this.term;
    this.oneType[0] = type;
    this.oneEnd[0] = payload.length;
    this.log.append({
      firstIndex: index,
      count: 1,
      terms: this.oneTerm,
      types: this.oneType,
      ends: this.oneEnd,
      data: payload,
    });
    this.onLogWritten(index);
    this.uncommittedBytes += payload.length;
    this.progressOf(this.id).next = index + 1;
    this.appendPending = true;
    return index;
  }

  /** Proposals accumulate between Readys and go out as one append per follower. */
  private flushAppends(): void {
    if (!this.appendPending) return;
    this.appendPending = false;
    if (this.role !== 'leader') return;
    // A lone voter commits as soon as its own log is durable: nothing to send.
    this.bcastAppend(false);
  }

  private bcastAppend(sendIfEmpty: boolean): void {
    for (const id of this.progress.keys()) {
      if (id === this.id) continue;
      this.sendAppends(id, sendIfEmpty);
    }
  }

  /** Sends as many appends to `to` as flow control allows (pipelining in replicate). */
  private sendAppends(to: NodeId, sendIfEmpty: boolean): void {
    let sent = this.maybeSendAppend(to, sendIfEmpty);
    while (sent && this.progressOf(to).state === 'replicate') {
      sent = this.maybeSendAppend(to, false);
    }
  }

  /**
   * Sends one append (or the snapshot, when the entries it needs are compacted) unless flow
   * control holds it back. Returns whether a message was sent.
   */
  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const progress = this.progressOf(to);
    if (progress.isPaused()) return false;
    const prevLogIndex = progress.next - 1;
    if (prevLogIndex < this.log.firstIndex() - 1) return this.sendSnapshot(to, progress);
    const lastIndex = this.log.lastIndex();
    assert(
      progress.next <= lastIndex + 1,
      () => `next ${progress.next} past ${lastIndex + 1} for ${to}`,
    );
    const entries =
      progress.next > lastIndex
        ? emptyBatch(progress.next)
        : this.log.slice(progress.next, lastIndex + 1, this.limits.messageBytesMax);
    if (entries.count === 0 && !sendIfEmpty) return false;
    const request: AppendRequest = {
      type: 'append',
      from: this.id,
      to,
      term: this.term,
      prevLogIndex,
      prevLogTerm: this.log.termAt(prevLogIndex),
      entries,
      commit: this.commit,
    };
    // Appends may leave before the leader's own write is durable (thesis §10.2.1): the leader
    // counts itself toward the commit only up to what it has persisted.
    this.messages.push(request);
    progress.onAppendSent(entries.count, lastIndexOf(entries), payloadBytesOf(entries));
    return true;
  }

  private sendEmptyAppend(to: NodeId, progress: Progress): void {
    const prevLogIndex = progress.next - 1;
    if (prevLogIndex < this.log.firstIndex() - 1) {
      // The entries the window waits for were compacted meanwhile: nothing can free it any
      // more. Start over from match, which leads to the snapshot if match is compacted too.
      progress.becomeProbe();
      this.maybeSendAppend(to, true);
      return;
    }
    const request: AppendRequest = {
      type: 'append',
      from: this.id,
      to,
      term: this.term,
      prevLogIndex,
      prevLogTerm: this.log.termAt(prevLogIndex),
      entries: emptyBatch(progress.next),
      commit: this.commit,
    };
    this.messages.push(request);
  }

  private sendSnapshot(to: NodeId, progress: Progress): boolean {
    const snapshot = this.snapshot;
    if (snapshot === null) {
      this.traceEvent('snapshotUnavailable', { to });
      return false;
    }
    progress.becomeSnapshot(snapshot.index);
    const request: SnapshotRequest = {
      type: 'snapshot',
      from: this.id,
      to,
      term: this.term,
      snapshot,
    };
    this.messages.push(request);
    this.traceEvent('snapshotSend', { to, index: snapshot.index });
    return true;
  }

  private bcastHeartbeat(context: number): void {
    for (const [id, progress] of this.progress) {
      if (id === this.id) continue;
      const request: HeartbeatRequest = {
        type: 'heartbeat',
        from: this.id,
        to: id,
        term: this.term,
        // The follower may not hold our entries up to commit yet; up to match it does.
        commit: Math.min(progress.match, this.commit),
        context,
      };
      this.messages.push(request);
    }
  }

  private sendTimeoutNow(to: NodeId): void {
    const request: TimeoutNowRequest = { type: 'timeoutNow', from: this.id, to, term: this.term };
    this.messages.push(request);
    this.traceEvent('timeoutNowSend', { to });
  }

  private onAppendResponse(message: AppendResponse, progress: Progress): void {
    progress.recentActive = true;
    const lastIndex = this.log.lastIndex();
    if (!message.success) {
      if (message.hintIndex === 0 && message.hintTerm === 0) {
        // The follower has no state at all (a node joining the cluster): only a snapshot can
        // give it the membership its log must start from.
        if (progress.state !== 'snapshot') this.sendSnapshot(message.from, progress);
        return;
      }
      if (message.rejectIndex > lastIndex) {
        this.traceEvent('ignore', { reason: 'reject past last index', from: message.from });
        return;
      }
      if (progress.maybeDecrease(message.rejectIndex, this.nextFromHint(message))) {
        this.traceEvent('probe', { to: message.from, next: progress.next });
        this.maybeSendAppend(message.from, true);
      }
      return;
    }
    if (message.matchIndex > lastIndex) {
      // A follower claiming entries we never had: nonsense, and believing it would let the
      // leader commit entries that do not exist.
      this.traceEvent('ignore', { reason: 'match past last index', from: message.from });
      return;
    }
    const updated = progress.maybeUpdate(message.matchIndex);
    if (progress.state === 'replicate') {
      progress.inflights.freeLE(message.matchIndex);
    } else if (progress.state === 'probe' && (updated || message.matchIndex === progress.match)) {
      // A successful probe pins down where the logs agree, even when it tells us no more
      // than we knew (the follower was at match already): start streaming.
      progress.becomeReplicate();
    } else if (progress.state === 'snapshot' && progress.match + 1 >= this.log.firstIndex()) {
      // The follower holds the snapshot (or caught up otherwise): the log can serve it now.
      progress.becomeProbe();
      progress.becomeReplicate();
    }
    if (updated && this.maybeCommit()) {
      // Followers learn the new commit index from the next append.
      this.bcastAppend(true);
    } else {
      this.sendAppends(message.from, false);
    }
    if (message.from === this.transferee && progress.match === this.log.lastIndex()) {
      this.sendTimeoutNow(message.from);
    }
  }

  /**
   * Where to probe next after a rejection, using the follower's hint to skip a whole term of
   * mismatching entries per round trip instead of one entry.
   */
  private nextFromHint(message: AppendResponse): number {
    if (message.hintTerm === 0) return message.hintIndex;
    // Our log's terms never decrease with the index: binary search for the last entry at or
    // below the rejected index whose term is <= the follower's conflicting term.
    let lo = this.log.firstIndex() - 1;
    let hi = Math.min(message.rejectIndex, this.log.lastIndex());
    if (hi < lo || this.log.termAt(lo) > message.hintTerm) return message.hintIndex;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (this.log.termAt(mid) <= message.hintTerm) lo = mid;
      else hi = mid - 1;
    }
    // If we hold that term too, our logs may agree up to our last entry of it; otherwise the
    // follower's whole run of that term is wrong and we restart from its first entry.
    return this.log.termAt(lo) === message.hintTerm ? lo + 1 : message.hintIndex;
  }

  private onHeartbeatResponse(message: HeartbeatResponse, progress: Progress): void {
    progress.recentActive = true;
    // An answer shows the follower is reachable: a paused probe may go again.
    progress.probeSent = false;
    if (progress.state === 'replicate' && progress.inflights.full()) {
      // The appends that filled the window may all have been lost, and then no answer will
      // ever free it. One empty append past the window settles it: the follower either
      // confirms the entries (freeing the window) or rejects, sending us back to probing.
      this.sendEmptyAppend(message.from, progress);
    } else if (progress.match < this.log.lastIndex()) {
      this.maybeSendAppend(message.from, true);
    }
    if (message.context > 0) this.onReadAck(message.from, message.context);
  }

  /**
   * Advances commit to the highest index a quorum holds, counting the leader's own log only
   * up to what is durable. Returns whether it moved.
   */
  private maybeCommit(): boolean {
    const candidate = this.commitQuorum.committedIndex((id) =>
      id === this.id ? this.persistedIndex : (this.progress.get(id)?.match ?? 0),
    );
    if (candidate <= this.commit) return false;
    // Figure 8: a majority holding an entry of an earlier term does not make it committed —
    // a leader of an intermediate term could still overwrite it. Only an entry of our own
    // term, once on a majority, commits itself and everything before it.
    if (!this.unsafeCommit && this.log.termAt(candidate) !== this.term) return false;
    const previous = this.commit;
    this.commitTo(candidate);
    this.traceEvent('commit', { index: candidate, term: this.term });
    if (this.uncommittedBytes > 0) {
      for (let index = previous + 1; index <= candidate; index++) {
        if (this.log.termAt(index) === this.term) {
          this.uncommittedBytes -= this.log.payloadAt(index).length;
        }
      }
      this.uncommittedBytes = Math.max(0, this.uncommittedBytes);
    }
    if (this.readsAwaitingCommit.length > 0 && this.committedInTerm()) {
      const contexts = this.readsAwaitingCommit;
      this.readsAwaitingCommit = [];
      for (const context of contexts) this.registerRead(context);
    }
    return true;
  }

  // ---------------------------------------------------------------------------------------
  // Leader: ReadIndex

  private committedInTerm(): boolean {
    return this.log.termAt(this.commit) === this.term;
  }

  private registerRead(context: number): void {
    const acks = new Set<NodeId>([this.id]);
    if (jointResult(this.conf, (id) => (acks.has(id) ? true : undefined)) === 'won') {
      // A lone voter is its own quorum: nobody else could have been elected.
      this.readStates.push({ index: this.commit, context });
      return;
    }
    const seq = ++this.readSeq;
    this.pendingReads.push({ seq, context, index: this.commit, acks });
    this.bcastHeartbeat(seq);
  }

  private onReadAck(from: NodeId, seq: number): void {
    // A heartbeat response confirms leadership as of when that heartbeat was sent, which is
    // after every read with a sequence number up to its context was registered.
    for (const read of this.pendingReads) {
      if (read.seq > seq) break;
      read.acks.add(from);
    }
    while (this.pendingReads.length > 0) {
      const read = this.pendingReads[0]!;
      const result = jointResult(this.conf, (id) => (read.acks.has(id) ? true : undefined));
      if (result !== 'won') break;
      this.pendingReads.shift();
      this.readStates.push({ index: read.index, context: read.context });
    }
  }

  // ---------------------------------------------------------------------------------------
  // Membership

  private applyConfEntry(index: number, payload: Uint8Array): void {
    let change: ConfChange;
    try {
      change = decodeConfChange(payload);
    } catch (error) {
      // Every node skips the same bad entry the same way, so the replicas stay identical.
      this.traceEvent('confChangeSkipped', { index, reason: String(error) });
      return;
    }
    const problem = describeConfChangeProblem(this.conf, change);
    if (problem !== null) {
      this.traceEvent('confChangeSkipped', { index, reason: problem });
      return;
    }
    this.conf = applyConfChange(this.conf, change);
    this.commitQuorum = new CommitQuorum(this.conf);
    this.traceEvent('confChange', { index, conf: this.conf });
    if (this.role !== 'leader') {
      // Progress only matters to a leader; it is rebuilt on becoming one.
      return;
    }
    const members = new Set(membersOf(this.conf));
    for (const id of [...this.progress.keys()]) {
      if (!members.has(id)) this.progress.delete(id);
    }
    const next = this.log.lastIndex() + 1;
    for (const id of members) {
      const existing = this.progress.get(id);
      if (existing === undefined) {
        const progress = this.newProgress(id, next);
        // A new member counts as active until the next CheckQuorum round: it cannot have
        // answered yet, and must not make the leader step down at once.
        progress.recentActive = true;
        if (id === this.id) progress.maybeUpdate(this.persistedIndex);
        this.progress.set(id, progress);
      } else {
        existing.isLearner = !isVoter(this.conf, id);
      }
    }
    if (!isVoter(this.conf, this.id)) {
      // A leader removed from the configuration stops leading once the removal is applied;
      // the remaining voters elect a new leader among themselves (those that did not hear
      // that the change committed learn it from this node's answer to their vote requests).
      this.traceEvent('removedLeaderStepsDown', { index });
      this.becomeFollower(this.term, '');
      return;
    }
    if (this.transferee !== '' && !this.conf.voters.includes(this.transferee)) {
      this.abortTransfer('target removed');
    }
    // The quorum changed shape: the commit index may move, new members need the log.
    if (this.maybeCommit()) {
      this.bcastAppend(true);
    } else {
      this.bcastAppend(false);
    }
  }

  private abortTransfer(reason: string): void {
    if (this.transferee === '') return;
    this.traceEvent('transferAbort', { to: this.transferee, reason });
    this.transferee = '';
    this.transferElapsed = 0;
  }

  // ---------------------------------------------------------------------------------------
  // Helpers

  private progressOf(id: NodeId): Progress {
    const progress = this.progress.get(id);
    assert(progress !== undefined, () => `no progress for ${id}`);
    return progress;
  }

  private respond(request: Message, response: Message): void {
    // Every response waits for persistence: it may promise a vote, a term or entries.
    this.messagesAfterPersist.push(
      request.rpcId === undefined ? response : withRpcId(response, request.rpcId),
    );
  }

  private appendResponse(
    to: NodeId,
    success: boolean,
    matchIndex: number,
    rejectIndex: number,
    hintIndex: number,
    hintTerm: number,
  ): AppendResponse {
    return {
      type: 'appendResp',
      from: this.id,
      to,
      term: this.term,
      success,
      matchIndex,
      rejectIndex,
      hintIndex,
      hintTerm,
    };
  }

  private heartbeatResponse(to: NodeId, context: number): HeartbeatResponse {
    return { type: 'heartbeatResp', from: this.id, to, term: this.term, context };
  }

  private softStateChanged(): boolean {
    return this.lastSoftState.leader !== this.leader || this.lastSoftState.role !== this.role;
  }

  private hardStateChanged(): boolean {
    const last = this.lastHardState;
    return last.term !== this.term || last.vote !== this.vote || last.commit !== this.commit;
  }

  private traceEvent(event: string, fields: Record<string, unknown>): void {
    if (this.trace !== undefined) this.trace(event, { id: this.id, term: this.term, ...fields });
  }

  /** Invariants that hold between any two calls; a failure is a bug in this file. */
  private checkInvariants(): void {
    const firstIndex = this.log.firstIndex();
    const lastIndex = this.log.lastIndex();
    assert(this.commit <= lastIndex, () => `commit ${this.commit} > last index ${lastIndex}`);
    assert(this.commit >= firstIndex - 1, () => `commit ${this.commit} < compaction point`);
    assert(
      this.applied <= this.applying,
      () => `applied ${this.applied} > applying ${this.applying}`,
    );
    assert(this.applying <= this.commit, () => `applying ${this.applying} > commit ${this.commit}`);
    assert(
      this.persistedIndex <= lastIndex,
      () => `persisted ${this.persistedIndex} > ${lastIndex}`,
    );
    assert(
      this.unstableFrom <= lastIndex + 1,
      () => `unstable ${this.unstableFrom} > ${lastIndex + 1}`,
    );
    assert(this.term >= this.lastHardState.term, 'term went back');
    assert(
      this.commit >= this.commitFloor,
      () => `commit went back from ${this.commitFloor} to ${this.commit}`,
    );
    this.commitFloor = this.commit;
    assert((this.role === 'leader') === (this.leader === this.id), 'leader field out of sync');
    if (this.role === 'leader') {
      assert(isVoter(this.conf, this.id), 'leader is not a voter');
      assert(this.vote === this.id, 'leader did not vote for itself');
    }
  }
}

function isIndex(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0;
}

function copyConf(conf: ConfState): ConfState {
  return {
    voters: [...conf.voters],
    votersOutgoing: [...conf.votersOutgoing],
    learners: [...conf.learners],
  };
}

function checkConfChangeShape(change: ConfChange): void {
  const raw = change as unknown;
  if (typeof raw !== 'object' || raw === null || !Array.isArray((raw as ConfChange).changes)) {
    throw new TypeError('Invalid membership change: expected { changes: [...] }');
  }
  for (const item of (raw as { changes: unknown[] }).changes) {
    const { type, id, url } = (typeof item === 'object' && item !== null ? item : {}) as Record<
      string,
      unknown
    >;
    if (
      typeof type !== 'string' ||
      !['addVoter', 'addLearner', 'removeNode'].includes(type) ||
      typeof id !== 'string' ||
      id === '' ||
      (url !== undefined && typeof url !== 'string')
    ) {
      throw new TypeError(`Invalid membership change item: ${JSON.stringify(item)}`);
    }
  }
}
