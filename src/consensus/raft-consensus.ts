/**
 * RaftConsensus: the seed's class, driving the pure {@link RaftCore} with real timers, a
 * persistence layer and transport callbacks. It runs the Ready loop of src/raft/README.md:
 * send what may go early, persist, send what had to wait, apply, then advance; and it turns the
 * core's data into promises: `submitCommand` resolves once the command is committed and applied
 * here, `linearizableRead` once the state machine reflects every write committed before it.
 *
 * @example
 * ```ts
 * const transport = new LocalTransport();
 * const nodes = [1, 2, 3].map((k) => ({ id: `n${k}`, host: '127.0.0.1', port: 7000 + k }));
 * const rafts = nodes.map((node) => new RaftConsensus(node.id, nodes));
 * for (const raft of rafts) {
 *   raft.registerApplyCommandCallback((command, data) => console.log(command, data));
 *   transport.connect(raft);
 *   await raft.initialize();
 * }
 * // once a leader is elected:
 * await leader.submitCommand('SET', 'x=1'); // { index, term, result }
 * ```
 */
import {
  checkIntegerBounds,
  resolveRaftLimits,
  timerDelayMsMax,
  type IntegerBoundsTable,
  type RaftLimits,
} from '../config.js';
import {
  BadRequestError,
  NotLeaderError,
  PhantomError,
  ProposalDroppedError,
  ShutdownError,
  StorageError,
  TimeoutError,
} from '../errors.js';
import { transientBytes } from '../bytes.js';
import { EntryType, payloadOf, type EntryBatch } from '../raft/batch.js';
import { decodeConfChange, isJoint } from '../raft/conf-change.js';
import { RaftCore, withRpcId, type RaftStatus } from '../raft/core.js';
import type {
  AppendRequest,
  AppendResponse,
  ConfChange,
  ConfState,
  HeartbeatRequest,
  HeartbeatResponse,
  Message,
  NodeId,
  ReadState,
  Ready,
  Role,
  SnapshotMeta,
  SnapshotRequest,
  TimeoutNowRequest,
  VoteRequest,
  VoteResponse,
} from '../raft/types.js';
import { MemoryPersistence } from '../storage/memory.js';
import type { RaftPersistence, StoredSnapshot } from '../storage/types.js';
import { nodeUrl } from '../transport/url.js';

/** A cluster member as the seed describes it; `url` defaults to `http://host:port`. */
export interface RaftNodeInfo {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly url?: string;
}

/** A member with its role, as reported by {@link RaftConsensus.getMembers}. */
export interface RaftMember extends RaftNodeInfo {
  readonly url: string;
  readonly role: 'voter' | 'learner';
}

/** The node's role (the seed's RaftState; `preCandidate` is a follower running a Pre-Vote). */
export type RaftState = Role;

/** What `submitCommand` resolves with: where the command went and what applying it returned. */
export interface CommandResult {
  readonly index: number;
  readonly term: number;
  /** The value the apply callback returned for this entry on this node. */
  readonly result: unknown;
}

/** Applies one committed command to the state machine; may return a result or a promise. */
export type ApplyCommandCallback = (
  command: string,
  data: string | Uint8Array,
  entry: { readonly index: number; readonly term: number },
) => unknown;

/**
 * Encodes a state captured by {@link SnapshotCallbacks.capture}. `signal` aborts when the node
 * stops or fails first (it may be aborted already when the encoder is called): the node no
 * longer waits for the bytes, so the encoder may stop early and let go of what it holds
 * (hashicorp/raft's `FSMSnapshot.Release`).
 */
export type SnapshotEncoder = (signal: AbortSignal) => Uint8Array | Promise<Uint8Array>;

/** Snapshots of the application's state machine, taken and restored by the driver. */
export interface SnapshotCallbacks {
  /**
   * The state machine's state now (all applied entries reflected). Nothing is applied until
   * the promise, if one is returned, settles.
   */
  take(): Uint8Array | Promise<Uint8Array>;
  /**
   * Optional, used instead of `take()` for the snapshots taken as the log grows: captures the
   * state now (nothing is applied until the promise, if one is returned, settles) and returns
   * how to encode it. The encoder is called once, soon after, while entries go on being
   * applied, so encoding a large state does not stop the Ready loop: hashicorp/raft's
   * `FSM.Snapshot` and `FSMSnapshot.Persist`.
   */
  capture?(): SnapshotEncoder | Promise<SnapshotEncoder>;
  /** Replaces the state machine's state with a snapshot's. */
  restore(data: Uint8Array): void | Promise<void>;
}

/**
 * What `callbacks` capture of the state now: their own `capture()`, or `take()`'s bytes as they
 * are (nothing is applied until the promise, if one is returned, settles).
 */
export async function captureOrTake(callbacks: SnapshotCallbacks): Promise<SnapshotEncoder> {
  if (callbacks.capture !== undefined) return callbacks.capture();
  const data = await callbacks.take();
  return () => data;
}

/** Sends a RequestVote (or Pre-Vote) to `to`; resolves with its answer or null (no answer). */
export type SendRequestVoteCallback = (
  to: RaftNodeInfo,
  request: VoteRequest,
) => Promise<VoteResponse | null>;
/**
 * Sends an AppendEntries to `to`; resolves with its answer or null. The request's entries may
 * be a slice of Node's Buffer pool (`LogStore.slice`): copy them to keep them past the send.
 */
export type SendAppendEntriesCallback = (
  to: RaftNodeInfo,
  request: AppendRequest,
) => Promise<AppendResponse | null>;
/** Sends a heartbeat to `to`; resolves with its answer or null. */
export type SendHeartbeatCallback = (
  to: RaftNodeInfo,
  request: HeartbeatRequest,
) => Promise<HeartbeatResponse | null>;
/** Sends a snapshot (metadata and the state machine's bytes) to `to`; resolves with its answer. */
export type SendSnapshotCallback = (
  to: RaftNodeInfo,
  request: SnapshotRequest,
  data: Uint8Array,
) => Promise<AppendResponse | null>;
/** Sends TimeoutNow (leadership transfer) to `to`; it has no answer. */
export type SendTimeoutNowCallback = (
  to: RaftNodeInfo,
  request: TimeoutNowRequest,
) => Promise<void>;
/** Any message, for transports that handle every type alike; `snapshotData` with snapshots. */
export type SendMessageCallback = (
  to: RaftNodeInfo,
  message: Message,
  snapshotData?: Uint8Array,
) => Promise<Message | null>;

/** Options of {@link RaftConsensus}. */
export interface RaftConsensusOptions {
  /** Stable storage. Default: a {@link MemoryPersistence} (nothing survives the process). */
  readonly persistence?: RaftPersistence;
  /** Length of one core tick. Default 100 ms (so elections take 1-2 s with default limits). */
  readonly tickIntervalMs?: number;
  /** Core limits (src/config.ts). */
  readonly limits?: Partial<RaftLimits>;
  /** Random source for election jitter. Default Math.random. */
  readonly random?: () => number;
  /** How long `submitCommand` and membership changes wait. Default 10 s. */
  readonly proposalTimeoutMs?: number;
  /** How long `linearizableRead` waits. Default: proposalTimeoutMs. */
  readonly readTimeoutMs?: number;
  /**
   * Take a state machine snapshot every N applied entries (0: never). Default 100,000, as
   * etcd's `--snapshot-count`: the application serializes its state machine on this thread
   * (in one go with `take()`, a stall that at every 10,000 entries showed in p99 latency under
   * load). Each member's snapshots are shifted by its place among the members (by N/3 in a
   * three-node cluster), so that they do not all slow down at once; the first comes after N/2
   * to 3N/2.
   */
  readonly snapshotEveryEntries?: number;
  /** Entries kept in the log behind a snapshot, for slow followers. Default 1,000. */
  readonly compactKeepEntries?: number;
  /**
   * Start with no membership and wait to be added by the cluster's leader (`addMember` there),
   * instead of bootstrapping a cluster from `nodes`. Ignored when storage holds state.
   */
  readonly join?: boolean;
  /** How `addMember` makes a new voter (see {@link MemberPromotion}). Default: auto. */
  readonly promotion?: Partial<MemberPromotion>;
  /** Receives the core's trace events (role changes, elections, commits). */
  readonly trace?: (event: string, fields: Record<string, unknown>) => void;
  /** Told about problems that do not stop the node (a failing peer, a throwing callback). */
  readonly onError?: (error: unknown) => void;
}

/**
 * The rule by which `addMember` turns a node into a voter. `auto`: the node first joins as a
 * learner (it receives the log but does not count in any quorum), and is promoted through
 * joint consensus once it is at most `lagEntriesMax` entries behind the leader's log; a node
 * that has not caught up within `timeoutMs` stays a learner (add it again to retry). So a
 * blank node never becomes a voter that a quorum waits for while it downloads the log, which
 * could stall writes (with 2 of 4 voters able to commit, one of them blank, every write would
 * wait for it). `immediate`: the node becomes a voter at once (hashicorp/raft's AddVoter).
 */
export interface MemberPromotion {
  readonly mode: 'auto' | 'immediate';
  readonly lagEntriesMax: number;
  readonly timeoutMs: number;
}

/** Defaults of {@link MemberPromotion}: a caught-up learner is within one large batch. */
export const memberPromotionDefaults: MemberPromotion = {
  mode: 'auto',
  lagEntriesMax: 1_000,
  timeoutMs: 60_000,
};

/**
 * The bounds of {@link MemberPromotion}'s numbers, in the order they are checked. This is the
 * one source of truth for them: the constructor checks `promotion` against it, and so do the
 * node's `--promotion-lag-entries` and `--promotion-timeout-ms` (src/node/config.ts), which name
 * the flag. Both are whole numbers (a fractional entry count or millisecond means nothing). The
 * node caps them as typo guards (`flagMax`); the library does not, as a caller may mean "however
 * far behind" or "however long it takes", except that the timeout is one setTimeout, which
 * cannot wait past `timerDelayMsMax`.
 */
export const memberPromotionBounds: IntegerBoundsTable<Exclude<keyof MemberPromotion, 'mode'>> = {
  lagEntriesMax: { min: 0, max: Number.MAX_SAFE_INTEGER, flagMax: 1e9 },
  timeoutMs: { min: 1, max: timerDelayMsMax, flagMax: 86_400_000 },
};

/** What {@link RaftConsensus.status} reports. */
export interface RaftConsensusStatus {
  readonly id: NodeId;
  readonly state: RaftState;
  readonly term: number;
  readonly leader: NodeId;
  readonly commitIndex: number;
  readonly lastApplied: number;
  readonly members: readonly RaftMember[];
  /** The core's own status (null before initialize). */
  readonly raft: RaftStatus | null;
}

interface PendingProposal {
  readonly term: number;
  readonly resolve: (result: CommandResult) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

interface PendingRequest {
  /** Number of Readys handed out when the request was stepped: its answer is in the next. */
  readonly readySeq: number;
  readonly resolve: (message: Message | null) => void;
}

interface PendingRead {
  readonly resolve: (value: { index: number }) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
  /** Set once a quorum confirmed the read: serve it when applied reaches it. */
  index: number;
}

interface Waiter {
  readonly done: () => boolean;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });
const commandVersion = 1;
const snapshotEnvelopeVersion = 1;
const emptyConf: ConfState = { voters: [], votersOutgoing: [], learners: [] };
const incomingSnapshotsMax = 4;

/**
 * One Raft node: the seed's RaftConsensus. Create it, register the callbacks, `initialize()`,
 * and feed it the peers' requests through the `handle*` methods.
 */
export class RaftConsensus {
  private readonly nodeId: NodeId;
  private readonly persistence: RaftPersistence;
  private readonly tickIntervalMs: number;
  private readonly limits: RaftLimits;
  private readonly random: () => number;
  private readonly proposalTimeoutMs: number;
  private readonly readTimeoutMs: number;
  private readonly snapshotEveryEntries: number;
  private readonly compactKeepEntries: number;
  private readonly join: boolean;
  private readonly promotion: MemberPromotion;
  /** Promotions under way (auto rule), by node id. */
  private readonly promotions = new Map<NodeId, Promise<void>>();
  private readonly trace: ((event: string, fields: Record<string, unknown>) => void) | undefined;
  private readonly onError: (error: unknown) => void;

  /** Member directory: everything known about each member's address. */
  private readonly members = new Map<NodeId, RaftNodeInfo>();
  private core: RaftCore | null = null;
  private state: 'new' | 'starting' | 'running' | 'stopped' | 'failed' = 'new';
  private failure: Error | null = null;
  private ticker: NodeJS.Timeout | null = null;

  private applyCallback: ApplyCommandCallback | null = null;
  private applyBorrowsData = false;
  private snapshotCallbacks: SnapshotCallbacks | null = null;
  private sendVote: SendRequestVoteCallback | null = null;
  private sendAppend: SendAppendEntriesCallback | null = null;
  private sendHeartbeat: SendHeartbeatCallback | null = null;
  private sendSnapshot: SendSnapshotCallback | null = null;
  private sendTimeoutNow: SendTimeoutNowCallback | null = null;
  private sendAny: SendMessageCallback | null = null;

  private loopRunning = false;
  private loopScheduled = false;
  private earlySendScheduled = false;
  private loopDone: Promise<void> = Promise.resolve();
  private readyCount = 0;
  private rpcSeq = 0;
  private readSeq = 0;
  private readonly pendingRequests = new Map<number, PendingRequest>();
  private readonly pendingProposals = new Map<number, PendingProposal>();
  private readonly pendingReads = new Map<number, PendingRead>();
  private readonly waiters = new Set<Waiter>();
  /** Snapshot bytes received with a SnapshotRequest, by "index:term", until installed. */
  private readonly incomingSnapshots = new Map<string, Uint8Array>();
  private lastApplied = 0;
  private lastAppliedTerm = 0;
  private snapshotIndex = 0;
  /**
   * The index of the next snapshot, planned after the snapshot at `after` under the current
   * membership; null after a membership change (see plannedSnapshotIndex).
   */
  private snapshotPlan: { readonly after: number; readonly at: number } | null = null;
  /**
   * The snapshot taken (see takeSnapshot): `snapshot` is null while its data is encoded and
   * written, then set until the loop saves it; null when none is under way.
   */
  private snapshotPreparing: { snapshot: StoredSnapshot | null } | null = null;
  /** The last snapshot data write started; shutdown waits for it before closing storage. */
  private snapshotWrites: Promise<void> = Promise.resolve();
  /**
   * Aborted when the node stops or fails: a snapshot's encoding under way is dropped, as is
   * one started after (it would never be saved).
   */
  private readonly stopping = new AbortController();
  private role: Role = 'follower';
  private leader: NodeId = '';

  constructor(nodeId: string, nodes: readonly RaftNodeInfo[], options: RaftConsensusOptions = {}) {
    if (typeof nodeId !== 'string' || nodeId === '') {
      throw new TypeError(`Invalid node id: ${JSON.stringify(nodeId)}`);
    }
    const list: unknown = nodes;
    if (!Array.isArray(list)) throw new TypeError('Invalid nodes: expected an array');
    for (const node of nodes) checkNodeInfo(node);
    const ids = new Set(nodes.map((node) => node.id));
    if (ids.size !== nodes.length) throw new TypeError('Invalid nodes: an id appears twice');
    if (options.join !== true && !ids.has(nodeId)) {
      throw new TypeError(`Invalid nodes: ${nodeId} is not among them (use join to join later)`);
    }
    this.nodeId = nodeId;
    this.persistence = options.persistence ?? new MemoryPersistence();
    this.tickIntervalMs = timerDelay('tickIntervalMs', options.tickIntervalMs ?? 100);
    this.limits = resolveRaftLimits(options.limits);
    this.random = options.random ?? Math.random;
    this.proposalTimeoutMs = timerDelay('proposalTimeoutMs', options.proposalTimeoutMs ?? 10_000);
    this.readTimeoutMs = timerDelay(
      'readTimeoutMs',
      options.readTimeoutMs ?? this.proposalTimeoutMs,
    );
    this.snapshotEveryEntries = nonNegative(
      'snapshotEveryEntries',
      options.snapshotEveryEntries ?? 100_000,
    );
    this.compactKeepEntries = nonNegative(
      'compactKeepEntries',
      options.compactKeepEntries ?? 1_000,
    );
    this.join = options.join === true;
    this.promotion = resolvePromotion(options.promotion);
    this.trace = options.trace;
    this.onError = options.onError ?? (() => {});
    for (const node of nodes) this.members.set(node.id, withUrl(node));
  }

  // ---------------------------------------------------------------------------------------
  // Lifecycle

  /**
   * Loads the persisted state (or bootstraps the cluster membership from `nodes` on first
   * boot, durably), then starts ticking. Resolves true once running, false when called twice
   * or after shutdown; rejects when storage cannot be read.
   */
  async initialize(): Promise<boolean> {
    if (this.state !== 'new') return false;
    this.state = 'starting';
    try {
      const persisted = await this.persistence.load();
      let snapshot = persisted.snapshot;
      const fresh =
        persisted.hardState.term === 0 && snapshot === null && persisted.log.lastIndex() === 0;
      if (fresh && !this.join) {
        // The bootstrap membership becomes a snapshot at index 0, so a restarted node takes
        // its membership from storage, never again from its arguments.
        const conf: ConfState = {
          voters: [...this.members.keys()],
          votersOutgoing: [],
          learners: [],
        };
        const app =
          this.snapshotCallbacks === null ? new Uint8Array(0) : await this.snapshotCallbacks.take();
        snapshot = {
          meta: { index: 0, term: 0, conf },
          data: encodeSnapshotData(this.encodeMembers(), app),
        };
        await this.persistence.saveSnapshot(snapshot);
      }
      let conf = emptyConf;
      let applied = 0;
      if (snapshot !== null) {
        await this.restoreSnapshot(snapshot);
        conf = snapshot.meta.conf;
        applied = snapshot.meta.index;
      }
      const coreOptions = {
        id: this.nodeId,
        limits: this.limits,
        random: this.random,
        log: persisted.log,
        hardState: persisted.hardState,
        conf,
        snapshot: snapshot?.meta ?? null,
        applied,
        ...(this.trace === undefined ? {} : { trace: this.trace }),
      };
      this.core = new RaftCore(coreOptions);
      this.chooseSyncThread(this.role);
      this.lastApplied = applied;
      this.lastAppliedTerm = snapshot?.meta.term ?? 0;
      this.snapshotIndex = applied;
    } catch (error) {
      this.state = 'failed';
      this.failure = error instanceof Error ? error : new Error(String(error));
      throw error;
    }
    if (this.state !== 'starting') return false;
    this.state = 'running';
    const status = this.core.status();
    // A lone voter need not wait an election timeout to lead itself.
    if (status.conf.voters.length === 1 && status.conf.voters[0] === this.nodeId) {
      this.core.campaign();
    }
    this.ticker = setInterval(() => this.onTick(), this.tickIntervalMs);
    this.schedule();
    return true;
  }

  /**
   * Stops ticking and answering, waits for the Ready being handled, closes storage, and
   * rejects everything still pending with ShutdownError.
   */
  async shutdown(): Promise<void> {
    if (this.state === 'stopped') return;
    const wasRunning = this.state === 'running' || this.state === 'starting';
    this.state = 'stopped';
    if (this.ticker !== null) clearInterval(this.ticker);
    this.ticker = null;
    // An encoding under way is dropped; a file being written is waited for, before storage
    // closes.
    this.stopping.abort(new ShutdownError());
    await this.loopDone;
    await this.snapshotWrites;
    this.rejectAll(new ShutdownError());
    if (wasRunning) {
      try {
        await this.persistence.close();
      } catch (error) {
        this.onError(error);
      }
    }
  }

  // ---------------------------------------------------------------------------------------
  // Callbacks

  /**
   * Registers the state machine: called once per committed command, in log order. Byte data
   * is the callback's own copy, unless `borrowData` is set: then it is a view of the committed
   * batch, which a state machine that copies what it keeps reads without a copy per entry
   * (ConsensusManager's does). A view that is kept, past the callback or its promise, pins
   * the batch's memory (a pool slab of 8 KiB, or the whole batch's data).
   */
  registerApplyCommandCallback(
    callback: ApplyCommandCallback,
    options: { readonly borrowData?: boolean } = {},
  ): void {
    this.applyCallback = checkFunction(callback, 'apply callback');
    this.applyBorrowsData = options.borrowData === true;
  }

  /** Registers snapshot support; without it the log is never compacted. */
  registerSnapshotCallbacks(callbacks: SnapshotCallbacks): void {
    if (
      typeof callbacks.take !== 'function' ||
      typeof callbacks.restore !== 'function' ||
      (callbacks.capture !== undefined && typeof callbacks.capture !== 'function')
    ) {
      throw new TypeError(
        'Invalid snapshot callbacks: expected take(), restore(data) and, if given, capture()',
      );
    }
    this.snapshotCallbacks = callbacks;
  }

  /** Registers how RequestVote reaches a peer. */
  registerSendRequestVoteCallback(callback: SendRequestVoteCallback): void {
    this.sendVote = checkFunction(callback, 'send vote callback');
  }

  /** Registers how AppendEntries reaches a peer. */
  registerSendAppendEntriesCallback(callback: SendAppendEntriesCallback): void {
    this.sendAppend = checkFunction(callback, 'send append callback');
  }

  /** Registers how heartbeats reach a peer. */
  registerSendHeartbeatCallback(callback: SendHeartbeatCallback): void {
    this.sendHeartbeat = checkFunction(callback, 'send heartbeat callback');
  }

  /** Registers how snapshots reach a peer. */
  registerSendSnapshotCallback(callback: SendSnapshotCallback): void {
    this.sendSnapshot = checkFunction(callback, 'send snapshot callback');
  }

  /** Registers how TimeoutNow reaches a peer. */
  registerSendTimeoutNowCallback(callback: SendTimeoutNowCallback): void {
    this.sendTimeoutNow = checkFunction(callback, 'send timeoutNow callback');
  }

  /** Registers one callback for every message type without a specific callback. */
  registerSendCallback(callback: SendMessageCallback): void {
    this.sendAny = checkFunction(callback, 'send callback');
  }

  // ---------------------------------------------------------------------------------------
  // Incoming requests (resolve with the response after it is durable; null for no answer)

  /** Handles a RequestVote / Pre-Vote. */
  handleRequestVote(request: VoteRequest): Promise<VoteResponse | null> {
    checkType(request, 'vote');
    return this.handleRequest(request) as Promise<VoteResponse | null>;
  }

  /** Handles an AppendEntries. */
  handleAppendEntries(request: AppendRequest): Promise<AppendResponse | null> {
    checkType(request, 'append');
    return this.handleRequest(request) as Promise<AppendResponse | null>;
  }

  /** Handles a heartbeat. */
  handleHeartbeat(request: HeartbeatRequest): Promise<HeartbeatResponse | null> {
    checkType(request, 'heartbeat');
    return this.handleRequest(request) as Promise<HeartbeatResponse | null>;
  }

  /** Handles an InstallSnapshot with the snapshot's bytes (all of them, already received). */
  handleInstallSnapshot(
    request: SnapshotRequest,
    data: Uint8Array,
  ): Promise<AppendResponse | null> {
    checkType(request, 'snapshot');
    if (!(data instanceof Uint8Array)) throw new TypeError('Snapshot data must be a Uint8Array');
    if (this.state === 'running') {
      // Kept until a Ready installs this snapshot or a newer one; a few at most (the core
      // answers an older one at once without installing it).
      this.incomingSnapshots.set(`${request.snapshot.index}:${request.snapshot.term}`, data);
      while (this.incomingSnapshots.size > incomingSnapshotsMax) {
        let oldest = '';
        let oldestIndex = Infinity;
        for (const key of this.incomingSnapshots.keys()) {
          const index = Number(key.split(':')[0]);
          if (index < oldestIndex) {
            oldestIndex = index;
            oldest = key;
          }
        }
        this.incomingSnapshots.delete(oldest);
      }
    }
    return this.handleRequest(request) as Promise<AppendResponse | null>;
  }

  /** Handles TimeoutNow: start an election at once (leadership transfer). */
  async handleTimeoutNow(request: TimeoutNowRequest): Promise<void> {
    checkType(request, 'timeoutNow');
    if (this.state !== 'running' || this.core === null) return;
    this.core.step(request);
    this.schedule();
    await Promise.resolve();
  }

  /**
   * Handles any message from a peer: requests resolve with their response, responses and
   * TimeoutNow with null. For transports that route every type through one handler.
   */
  async handleMessage(message: Message, snapshotData?: Uint8Array): Promise<Message | null> {
    switch (message.type) {
      case 'vote':
        return this.handleRequestVote(message);
      case 'append':
        return this.handleAppendEntries(message);
      case 'heartbeat':
        return this.handleHeartbeat(message);
      case 'snapshot':
        if (snapshotData === undefined) {
          throw new TypeError('Cannot handle a snapshot request without its data');
        }
        return this.handleInstallSnapshot(message, snapshotData);
      case 'timeoutNow':
        await this.handleTimeoutNow(message);
        return null;
      case 'voteResp':
      case 'appendResp':
      case 'heartbeatResp':
        this.stepResponse(message);
        return null;
      default:
        throw new TypeError(`Unknown message type ${JSON.stringify((message as Message).type)}`);
    }
  }

  private handleRequest(request: Message): Promise<Message | null> {
    if (this.state !== 'running' || this.core === null) return Promise.resolve(null);
    const rpcId = ++this.rpcSeq;
    const answered = new Promise<Message | null>((resolve) => {
      this.pendingRequests.set(rpcId, { readySeq: this.readyCount, resolve });
    });
    this.core.step(withRpcId(request, rpcId));
    this.schedule();
    return answered;
  }

  // ---------------------------------------------------------------------------------------
  // Client operations

  /**
   * Proposes a command; resolves once it is committed and applied on this node, with the
   * apply callback's result. Rejects with NotLeaderError (naming the leader when known),
   * TimeoutError (the outcome is then unknown), ProposalDroppedError (another leader's entry
   * took its place), ShutdownError, or PhantomError TOO_MANY_REQUESTS / LEADERSHIP_TRANSFER.
   */
  submitCommand(command: string, data: string | Uint8Array): Promise<CommandResult> {
    if (typeof command !== 'string') throw new TypeError('Invalid command: expected a string');
    if (typeof data !== 'string' && !(data instanceof Uint8Array)) {
      throw new TypeError('Invalid command data: expected a string or a Uint8Array');
    }
    const core = this.runningCore();
    if (core instanceof Error) return Promise.reject(core);
    let placed: { index: number; term: number };
    try {
      placed = core.propose(encodeCommand(command, data));
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    this.schedule();
    return new Promise<CommandResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pendingProposals.delete(placed.index);
        reject(
          new TimeoutError(
            `Command at index ${placed.index} was not applied within ${this.proposalTimeoutMs} ms; it may still be`,
          ),
        );
      }, this.proposalTimeoutMs);
      this.pendingProposals.set(placed.index, { term: placed.term, resolve, reject, timer });
    });
  }

  /**
   * Leader only: resolves once a quorum confirmed this node still leads and the local state
   * machine has applied everything committed before the call; reading it then is linearizable.
   */
  linearizableRead(): Promise<{ index: number }> {
    const core = this.runningCore();
    if (core instanceof Error) return Promise.reject(core);
    const context = ++this.readSeq;
    try {
      core.readIndex(context);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    this.schedule();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pendingReads.delete(context);
        reject(new TimeoutError(`Read was not confirmed within ${this.readTimeoutMs} ms`));
      }, this.readTimeoutMs);
      this.pendingReads.set(context, { resolve, reject, timer, index: -1 });
    });
  }

  /**
   * Leader only: adds a member, a learner or a voter; adding an existing learner as a voter
   * promotes it. A voter joins by the promotion rule (`promotion`, see {@link MemberPromotion}):
   * with `auto`, as a learner first, promoted once caught up. Resolves once the node is a
   * voter (or learner) in force here; rejects with TimeoutError if a learner does not catch up
   * in time (it then stays a learner).
   */
  async addMember(node: RaftNodeInfo, options: { learner?: boolean } = {}): Promise<void> {
    checkNodeInfo(node);
    const info = withUrl(node);
    const addAs = (type: 'addLearner' | 'addVoter') =>
      this.changeMembership({ changes: [{ type, id: info.id, url: info.url! }] }, (conf) =>
        (type === 'addLearner' ? conf.learners : conf.voters).includes(info.id),
      );
    if (options.learner === true) {
      await addAs('addLearner');
      return;
    }
    if (this.promotion.mode === 'immediate') {
      await addAs('addVoter');
      return;
    }
    // A second request for a node being promoted (an operator retrying after a timeout)
    // waits for the same promotion instead of starting another.
    const running = this.promotions.get(info.id);
    if (running !== undefined) return running;
    const promotion = (async () => {
      const conf = this.core?.status().conf ?? emptyConf;
      if (conf.voters.includes(info.id)) return;
      if (!conf.learners.includes(info.id)) await addAs('addLearner');
      await this.waitForCatchUp(info.id);
      await addAs('addVoter');
    })().finally(() => this.promotions.delete(info.id));
    this.promotions.set(info.id, promotion);
    return promotion;
  }

  /** Waits until learner `id` is within `promotion.lagEntriesMax` of the leader's log. */
  private async waitForCatchUp(id: NodeId): Promise<void> {
    const { lagEntriesMax, timeoutMs } = this.promotion;
    // It must at least hold the entry that made it a learner, so a learner added long ago
    // and gone silent is not promoted on stale progress.
    const addedAt = this.core?.status().lastIndex ?? 0;
    let lag = Number.POSITIVE_INFINITY;
    try {
      await this.waitFor(
        () => {
          const status = this.core?.status();
          if (status === undefined || status.role !== 'leader') {
            throw new NotLeaderError(status?.leader ?? '');
          }
          if (!status.conf.learners.includes(id)) {
            throw new RangeError(`Cannot promote ${id}: it is no longer a learner`);
          }
          const match = status.progress[id]?.match ?? 0;
          lag = status.lastIndex - match;
          return match >= addedAt && lag <= lagEntriesMax;
        },
        timeoutMs,
        '',
      );
    } catch (error) {
      if (!(error instanceof TimeoutError)) throw error;
      throw new TimeoutError(
        `Member ${id} was added as a learner but did not catch up within ${timeoutMs} ms (${Number.isFinite(lag) ? `${lag} entries behind` : 'no progress'}, promoted at ${lagEntriesMax}); it stays a learner: add it again as a voter to retry`,
      );
    }
  }

  /** Leader only: removes a member. Resolves once the new configuration is in force here. */
  async removeMember(id: NodeId): Promise<void> {
    if (typeof id !== 'string' || id === '') throw new TypeError(`Invalid member id: ${id}`);
    await this.changeMembership(
      { changes: [{ type: 'removeNode', id }] },
      (conf) => !conf.voters.includes(id) && !conf.learners.includes(id),
    );
  }

  private async changeMembership(
    change: ConfChange,
    inForce: (conf: ConfState) => boolean,
  ): Promise<void> {
    const core = this.runningCore();
    if (core instanceof Error) throw core;
    const { index } = core.proposeConfChange(change);
    this.schedule();
    await this.waitFor(
      () => {
        const conf = this.core?.status().conf ?? emptyConf;
        return this.lastApplied >= index && !isJoint(conf) && inForce(conf);
      },
      this.proposalTimeoutMs,
      `Membership change at index ${index} did not take effect within ${this.proposalTimeoutMs} ms`,
    );
  }

  /**
   * Leader only: hands leadership to `to` (default: the most up-to-date other voter) and
   * resolves once this node sees it lead; rejects with TimeoutError if the transfer is given up.
   */
  async transferLeadership(to?: NodeId): Promise<void> {
    const core = this.runningCore();
    if (core instanceof Error) throw core;
    const status = core.status();
    if (status.role !== 'leader') throw new NotLeaderError(status.leader);
    let target = to;
    if (target === undefined) {
      let best = -1;
      for (const id of status.conf.voters) {
        const match = status.progress[id]?.match ?? -1;
        if (id !== this.nodeId && match > best) {
          best = match;
          target = id;
        }
      }
      if (target === undefined) {
        throw new RangeError('Cannot transfer leadership: there is no other voter');
      }
    }
    core.transferLeadership(target);
    this.schedule();
    const wanted = target;
    const timeoutMs = 2 * this.limits.electionTicks * this.tickIntervalMs;
    await this.waitFor(
      () => {
        if (this.leader === wanted) return true;
        const now = this.core?.status();
        if (now !== undefined && now.role === 'leader' && now.transferee === '') {
          throw new TimeoutError(`Leadership transfer to ${wanted} was given up`);
        }
        return false;
      },
      timeoutMs,
      `Leadership transfer to ${wanted} did not finish within ${timeoutMs} ms`,
    );
  }

  // ---------------------------------------------------------------------------------------
  // Getters (the seed's)

  /** Id of the leader this node knows of ('' when none). */
  getLeader(): string {
    return this.leader;
  }

  /** Current term (0 before initialize). */
  getCurrentTerm(): number {
    return this.core?.status().term ?? 0;
  }

  /** This node's role. */
  getState(): RaftState {
    return this.role;
  }

  /** Highest index known committed. */
  getCommitIndex(): number {
    return this.core?.status().commit ?? 0;
  }

  /** Highest index applied to the state machine on this node. */
  getLastApplied(): number {
    return this.lastApplied;
  }

  /** The current members with their addresses and roles. */
  getMembers(): RaftMember[] {
    const conf = this.core?.status().conf ?? emptyConf;
    const voters = new Set([...conf.voters, ...conf.votersOutgoing]);
    const result: RaftMember[] = [];
    for (const id of [...voters, ...conf.learners]) {
      const info = this.members.get(id) ?? { id, host: '', port: 0, url: '' };
      result.push({ ...info, url: info.url ?? '', role: voters.has(id) ? 'voter' : 'learner' });
    }
    return result;
  }

  /** Everything at once, for `/v1/status` and operators. */
  status(): RaftConsensusStatus {
    return {
      id: this.nodeId,
      state: this.role,
      term: this.getCurrentTerm(),
      leader: this.leader,
      commitIndex: this.getCommitIndex(),
      lastApplied: this.lastApplied,
      members: this.getMembers(),
      raft: this.core?.status() ?? null,
    };
  }

  // ---------------------------------------------------------------------------------------
  // The Ready loop

  private onTick(): void {
    if (this.state !== 'running' || this.core === null) return;
    this.core.tick();
    this.schedule();
  }

  /**
   * Runs the Ready loop soon, once (events arriving meanwhile join the same run). While the
   * loop waits for a Ready's fsync, a leader's new requests (appends of the proposals made
   * meanwhile, answers to followers' acknowledgements) leave at once instead of waiting for
   * the next Ready: the followers' fsyncs then overlap the leader's.
   */
  private schedule(): void {
    if (this.loopRunning && this.role === 'leader') this.scheduleEarlySend();
    if (this.loopScheduled || this.loopRunning || this.state !== 'running') return;
    this.loopScheduled = true;
    // A microtask, not a turn of the event loop: the Ready loop starts as soon as the code
    // that stepped or proposed returns, which is what a lone request waits for (under load the
    // loop is running already, and what arrives meanwhile goes out as early sends).
    queueMicrotask(() => {
      this.loopScheduled = false;
      if (this.loopRunning || this.state !== 'running') return;
      this.loopRunning = true;
      this.loopDone = this.runLoop().finally(() => {
        this.loopRunning = false;
        // Something may have been stepped, or a snapshot's file written, while the last Ready
        // was in flight.
        if (this.core?.hasReady() === true || this.snapshotWritten()) {
          this.schedule();
        }
      });
    });
  }

  /** Sends the core's pending leader requests soon (one turn later: proposals batch up). */
  private scheduleEarlySend(): void {
    if (this.earlySendScheduled) return;
    this.earlySendScheduled = true;
    setImmediate(() => {
      this.earlySendScheduled = false;
      if (this.state !== 'running' || this.core === null || !this.loopRunning) return;
      for (const message of this.core.takeMessages()) this.send(message);
    });
  }

  private async runLoop(): Promise<void> {
    const core = this.core;
    if (core === null) return;
    try {
      for (;;) {
        while (this.state === 'running' && core.hasReady()) {
          const ready = core.ready();
          this.readyCount++;
          await this.handleReady(ready, this.readyCount);
          core.advance();
          await this.afterAdvance(core);
        }
        // A snapshot's file written while the loop had no Ready; what is stepped while it is
        // saved makes new Readys.
        if (this.state !== 'running' || !this.snapshotWritten()) break;
        await this.saveSnapshot(core);
      }
      if (this.state === 'running') {
        // No Ready left: every request stepped so far was answered or dropped by the core.
        for (const pending of this.pendingRequests.values()) pending.resolve(null);
        this.pendingRequests.clear();
      }
    } catch (error) {
      this.fail(error);
    }
  }

  /** One Ready, in the order of src/raft/README.md. */
  private async handleReady(ready: Ready, readySeq: number): Promise<void> {
    if (ready.softState !== null) this.onSoftState(ready.softState.role, ready.softState.leader);
    // 1. Leader requests may leave before the leader's own write is durable.
    for (const message of ready.messages) this.send(message);
    // 2. Persist: snapshot, entries, hard state.
    let snapshot: StoredSnapshot | null = null;
    if (ready.snapshot !== null) {
      const key = `${ready.snapshot.index}:${ready.snapshot.term}`;
      const data = this.incomingSnapshots.get(key);
      if (data === undefined) {
        throw new StorageError('STORAGE_FAILED', `Snapshot ${key} arrived without its data`);
      }
      for (const stored of [...this.incomingSnapshots.keys()]) {
        if (Number(stored.split(':')[0]) <= ready.snapshot.index)
          this.incomingSnapshots.delete(stored);
      }
      snapshot = { meta: ready.snapshot, data };
    }
    if (snapshot !== null || ready.entries !== null || ready.hardState !== null) {
      const saved = this.persistence.save(
        { snapshot, entries: ready.entries, hardState: ready.hardState },
        ready.mustSync,
      );
      if (ready.mustSync) {
        await saved;
      } else {
        // Only the commit index changed: nothing here promises it to anyone, and the entries
        // up to it are durable already, so answering and applying need not wait for this
        // write (etcd does not sync it either). The storage keeps its writes in order; if
        // this one fails, the storage fails every later save too, and the node with it.
        saved.catch((error: unknown) => {
          if (this.state === 'running') this.fail(error);
        });
      }
    }
    // 3. What depended on persistence: responses (votes, acks) and vote requests.
    for (const message of ready.messagesAfterPersist) {
      if (message.rpcId !== undefined) {
        const pending = this.pendingRequests.get(message.rpcId);
        this.pendingRequests.delete(message.rpcId);
        pending?.resolve(message);
      } else {
        this.send(message);
      }
    }
    // Requests stepped before this Ready that got no answer were dropped by the core.
    for (const [rpcId, pending] of this.pendingRequests) {
      if (pending.readySeq < readySeq) {
        this.pendingRequests.delete(rpcId);
        pending.resolve(null);
      }
    }
    // 4. Apply: the snapshot first, then committed entries in order.
    if (snapshot !== null) {
      await this.restoreSnapshot(snapshot);
      this.lastApplied = snapshot.meta.index;
      this.lastAppliedTerm = snapshot.meta.term;
      this.snapshotIndex = snapshot.meta.index;
      for (const [index, proposal] of this.pendingProposals) {
        if (index <= snapshot.meta.index) {
          this.settleProposal(index, proposal, null);
        }
      }
    }
    if (ready.committed !== null) await this.applyEntries(ready.committed);
    // 5. Reads confirmed by a quorum, served once applied.
    for (const read of ready.readStates) this.onReadState(read);
    this.serveReads();
  }

  private async afterAdvance(core: RaftCore): Promise<void> {
    this.checkWaiters();
    if (this.snapshotWritten()) await this.saveSnapshot(core);
    if (
      this.state === 'running' &&
      this.snapshotCallbacks !== null &&
      this.snapshotEveryEntries > 0 &&
      this.snapshotPreparing === null &&
      this.lastApplied >= this.plannedSnapshotIndex(core)
    ) {
      await this.takeSnapshot(core);
    }
  }

  /**
   * Where this member takes its next snapshot, planned again after each snapshot and each
   * membership change. A snapshot slows its member down: `take()` stops the Ready loop, and
   * even a `capture()` is encoded on the same thread. Members that all took it at the same
   * index (they apply the same entries) slowed down together, and a commit waited for them.
   * Each member's snapshots are shifted by its place among the members instead (voters first,
   * then learners), so the others cover for it. A node that is not among them (one that
   * joined, before the membership that names it reaches it) takes none.
   */
  private plannedSnapshotIndex(core: RaftCore): number {
    if (this.snapshotPlan?.after !== this.snapshotIndex) {
      const { conf } = core.status();
      const members = [...[...conf.voters].sort(), ...[...conf.learners].sort()];
      const place = members.indexOf(this.nodeId);
      const every = this.snapshotEveryEntries;
      this.snapshotPlan = {
        after: this.snapshotIndex,
        at:
          place < 0
            ? Infinity
            : nextIndexInSeries(
                this.snapshotIndex,
                every,
                Math.floor((every * place) / members.length),
              ),
      };
    }
    return this.snapshotPlan.at;
  }

  private async applyEntries(batch: EntryBatch): Promise<void> {
    for (let k = 0; k < batch.count; k++) {
      const index = batch.firstIndex + k;
      const term = batch.terms[k]!;
      const type = batch.types[k]!;
      const payload = payloadOf(batch, k);
      let result: unknown = undefined;
      let failure: Error | null = null;
      if (type === EntryType.Normal) {
        try {
          const { command, data } = decodeCommand(payload, this.applyBorrowsData);
          if (this.applyCallback !== null) {
            result = await this.applyCallback(command, data, { index, term });
          }
        } catch (error) {
          // The state machine must be deterministic, so a command that fails here fails on
          // every node: it counts as applied, and its proposer learns the error.
          failure = error instanceof Error ? error : new Error(String(error));
          this.onError(failure);
        }
      } else if (type === EntryType.ConfChange) {
        this.onConfChangeApplied(payload);
      }
      this.lastApplied = index;
      this.lastAppliedTerm = term;
      const proposal = this.pendingProposals.get(index);
      if (proposal !== undefined) {
        if (proposal.term !== term) {
          this.settleProposal(
            index,
            proposal,
            new ProposalDroppedError(
              `Command at index ${index} (term ${proposal.term}) was replaced by an entry of term ${term}`,
            ),
          );
        } else if (failure !== null) {
          this.settleProposal(index, proposal, failure);
        } else {
          clearTimeout(proposal.timer);
          this.pendingProposals.delete(index);
          proposal.resolve({ index, term, result });
        }
      }
    }
  }

  private settleProposal(index: number, proposal: PendingProposal, error: Error | null): void {
    clearTimeout(proposal.timer);
    this.pendingProposals.delete(index);
    proposal.reject(
      error ??
        new TimeoutError(
          `Command at index ${index}: a snapshot replaced the log before it was applied here; its outcome is unknown`,
        ),
    );
  }

  private onConfChangeApplied(payload: Uint8Array): void {
    // Planned again once the core has applied the change (see plannedSnapshotIndex).
    this.snapshotPlan = null;
    try {
      const change = decodeConfChange(payload);
      for (const item of change.changes) {
        if (item.type === 'removeNode') continue;
        if (item.url !== undefined && item.url !== '') {
          this.members.set(item.id, infoFromUrl(item.id, item.url));
        } else if (!this.members.has(item.id)) {
          this.members.set(item.id, { id: item.id, host: '', port: 0, url: '' });
        }
      }
    } catch (error) {
      // The core skips an undecodable change the same way; nothing to record.
      this.onError(error);
    }
  }

  private onSoftState(role: Role, leader: NodeId): void {
    const wasLeader = this.role === 'leader';
    this.role = role;
    this.leader = leader;
    this.chooseSyncThread(role);
    if (wasLeader && role !== 'leader') {
      // Reads not yet confirmed can no longer be: the core dropped them with its leadership.
      for (const [context, read] of this.pendingReads) {
        if (read.index < 0) {
          clearTimeout(read.timer);
          this.pendingReads.delete(context);
          read.reject(new NotLeaderError(leader));
        }
      }
    }
  }

  /**
   * Only a leader has work to do while its own fsync runs (clients, appends to ship); any
   * other role waits for its fsyncs on the main thread, saving two thread wake-ups on every
   * acknowledgement a leader waits for (see RaftPersistence.setBlockingSync).
   */
  private chooseSyncThread(role: Role): void {
    this.persistence.setBlockingSync?.(role !== 'leader');
  }

  private onReadState(read: ReadState): void {
    const pending = this.pendingReads.get(read.context);
    if (pending !== undefined) pending.index = read.index;
  }

  private serveReads(): void {
    for (const [context, read] of this.pendingReads) {
      if (read.index >= 0 && this.lastApplied >= read.index) {
        clearTimeout(read.timer);
        this.pendingReads.delete(context);
        read.resolve({ index: read.index });
      }
    }
  }

  /**
   * Takes the state machine's snapshot: captures it in the loop, then encodes it and, with
   * storage that can prepare it, writes its data while the loop goes on (writing a few MB
   * durably in the loop held up every request for as long); the loop saves it once written
   * ({@link saveSnapshot}).
   */
  private async takeSnapshot(core: RaftCore): Promise<void> {
    const callbacks = this.snapshotCallbacks;
    if (callbacks === null) return;
    // Nothing is applied while this runs (applies happen only in this loop), so the state
    // machine is exactly at lastApplied.
    const meta: SnapshotMeta = {
      index: this.lastApplied,
      term: this.lastAppliedTerm,
      conf: core.status().conf,
    };
    const members = this.encodeMembers();
    const encode = await captureOrTake(callbacks);
    const preparing: { snapshot: StoredSnapshot | null } = { snapshot: null };
    this.snapshotPreparing = preparing;
    const { signal } = this.stopping;
    this.snapshotWrites = (async () => {
      const data = await untilAborted(encode(signal), signal);
      const snapshot = { meta, data: encodeSnapshotData(members, data) };
      // Stopping: it would never be saved.
      if (this.state !== 'running') return;
      await this.persistence.prepareSnapshot?.(snapshot);
      preparing.snapshot = snapshot;
      // Saved by the loop after its current Ready, or now if it is idle.
      this.schedule();
    })().catch((error: unknown) => {
      if (this.state !== 'stopped') this.fail(error);
    });
  }

  /** Whether a snapshot taken is written and waits for the loop to save it. */
  private snapshotWritten(): boolean {
    return this.snapshotPreparing !== null && this.snapshotPreparing.snapshot !== null;
  }

  /**
   * Saves the snapshot whose data is written, tells the core, and compacts the log behind it.
   * A snapshot from the leader, installed meanwhile, supersedes it.
   */
  private async saveSnapshot(core: RaftCore): Promise<void> {
    const snapshot = this.snapshotPreparing!.snapshot!;
    this.snapshotPreparing = null;
    const { meta } = snapshot;
    if (meta.index <= this.snapshotIndex) return;
    await this.persistence.saveSnapshot(snapshot);
    core.snapshotCreated(meta);
    this.snapshotIndex = meta.index;
    const compactTo = meta.index - this.compactKeepEntries;
    if (compactTo >= core.status().firstIndex) {
      core.compact(compactTo);
      await this.persistence.compact(compactTo);
    }
  }

  private async restoreSnapshot(snapshot: StoredSnapshot): Promise<void> {
    const { members, app } = decodeSnapshot(snapshot.data);
    for (const member of members) this.members.set(member.id, member);
    if (this.snapshotCallbacks !== null) {
      await this.snapshotCallbacks.restore(app);
    } else if (app.length > 0) {
      throw new StorageError(
        'STORAGE_FAILED',
        `Cannot restore snapshot ${snapshot.meta.index}: no snapshot callbacks are registered`,
      );
    }
  }

  /** The members' ids and addresses, as a snapshot holds them. */
  private encodeMembers(): Uint8Array {
    return encoder.encode(
      JSON.stringify([...this.members.values()].map((member) => withUrl(member))),
    );
  }

  // ---------------------------------------------------------------------------------------
  // Outgoing messages

  private send(message: Message): void {
    void this.deliver(message).catch((error: unknown) => this.onError(error));
  }

  private async deliver(message: Message): Promise<void> {
    const to = this.members.get(message.to) ?? { id: message.to, host: '', port: 0 };
    let response: Message | null = null;
    try {
      switch (message.type) {
        case 'vote':
          response = this.sendVote
            ? await this.sendVote(to, message)
            : await this.sendGeneric(to, message);
          break;
        case 'append':
          response = this.sendAppend
            ? await this.sendAppend(to, message)
            : await this.sendGeneric(to, message);
          break;
        case 'heartbeat':
          response = this.sendHeartbeat
            ? await this.sendHeartbeat(to, message)
            : await this.sendGeneric(to, message);
          break;
        case 'snapshot':
          response = await this.deliverSnapshot(to, message);
          break;
        case 'timeoutNow':
          if (this.sendTimeoutNow) await this.sendTimeoutNow(to, message);
          else await this.sendGeneric(to, message);
          break;
        default:
          return;
      }
    } catch (error) {
      this.onError(error);
      if (this.state === 'running' && this.core !== null) {
        this.core.reportUnreachable(message.to);
        if (message.type === 'snapshot') this.core.reportSnapshot(message.to, false);
        this.schedule();
      }
      return;
    }
    if (response !== null) this.stepResponse(response);
  }

  private async deliverSnapshot(
    to: RaftNodeInfo,
    message: SnapshotRequest,
  ): Promise<Message | null> {
    const stored = await this.persistence.loadSnapshot();
    if (stored === null || stored.meta.index < message.snapshot.index) {
      throw new StorageError(
        'STORAGE_FAILED',
        `Cannot send snapshot ${message.snapshot.index}: storage holds ${stored?.meta.index ?? 'none'}`,
      );
    }
    // Storage may hold a newer snapshot than the core asked for; the follower takes either.
    const request: SnapshotRequest = { ...message, snapshot: stored.meta };
    const response = this.sendSnapshot
      ? await this.sendSnapshot(to, request, stored.data)
      : await this.sendGeneric(to, request, stored.data);
    if (this.state === 'running' && this.core !== null) {
      this.core.reportSnapshot(message.to, response !== null);
      this.schedule();
    }
    return response;
  }

  private sendGeneric(
    to: RaftNodeInfo,
    message: Message,
    data?: Uint8Array,
  ): Promise<Message | null> {
    if (this.sendAny === null) {
      return Promise.reject(
        new Error(`Cannot send ${message.type} to ${message.to}: no send callback is registered`),
      );
    }
    return this.sendAny(to, message, data);
  }

  private stepResponse(response: Message): void {
    if (this.state !== 'running' || this.core === null) return;
    if (typeof response !== 'object' || response === null || response.to !== this.nodeId) return;
    this.core.step(response);
    this.schedule();
  }

  // ---------------------------------------------------------------------------------------
  // Helpers

  private runningCore(): RaftCore | Error {
    if (this.state === 'failed') return this.failure ?? new ShutdownError();
    if (this.state !== 'running' || this.core === null) {
      return new ShutdownError('Cannot complete: the node is not running');
    }
    return this.core;
  }

  private waitFor(done: () => boolean, timeoutMs: number, message: string): Promise<void> {
    return new Promise((resolve, reject) => {
      try {
        if (done()) {
          resolve();
          return;
        }
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      const waiter: Waiter = {
        done,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          reject(new TimeoutError(message));
        }, timeoutMs),
      };
      this.waiters.add(waiter);
    });
  }

  private checkWaiters(): void {
    for (const waiter of this.waiters) {
      let finished: boolean;
      try {
        finished = waiter.done();
      } catch (error) {
        clearTimeout(waiter.timer);
        this.waiters.delete(waiter);
        waiter.reject(error instanceof Error ? error : new Error(String(error)));
        continue;
      }
      if (finished) {
        clearTimeout(waiter.timer);
        this.waiters.delete(waiter);
        waiter.resolve();
      }
    }
  }

  /** Storage failed (or the loop hit a bug): stop for good, telling everyone waiting why. */
  private fail(error: unknown): void {
    // A second failure (the loop's save rejecting after a commit-index write failed) is the
    // same storage failure seen again.
    if (this.state === 'failed') return;
    const failure = error instanceof Error ? error : new Error(String(error));
    this.onError(failure);
    this.failure = failure;
    this.state = 'failed';
    if (this.ticker !== null) clearInterval(this.ticker);
    this.ticker = null;
    const reason =
      failure instanceof PhantomError
        ? failure
        : new StorageError('STORAGE_FAILED', `The node stopped: ${failure.message}`, {
            cause: failure,
          });
    this.stopping.abort(reason);
    this.rejectAll(reason);
  }

  private rejectAll(error: Error): void {
    for (const proposal of this.pendingProposals.values()) {
      clearTimeout(proposal.timer);
      proposal.reject(error);
    }
    this.pendingProposals.clear();
    for (const read of this.pendingReads.values()) {
      clearTimeout(read.timer);
      read.reject(error);
    }
    this.pendingReads.clear();
    for (const waiter of this.waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
    }
    this.waiters.clear();
    for (const pending of this.pendingRequests.values()) pending.resolve(null);
    this.pendingRequests.clear();
  }
}

// -----------------------------------------------------------------------------------------
// Encodings

/**
 * A command entry's payload: version byte, flags (bit 0: data was a string), the command's
 * UTF-8 length as an unsigned LEB128 varint, the command, then the data bytes. The result is
 * a slice of Node's Buffer pool ({@link transientBytes}): meant to be proposed and dropped,
 * copy it to keep it.
 */
export function encodeCommand(command: string, data: string | Uint8Array): Uint8Array {
  const commandBytes = commandBytesOf(command);
  const dataBytes = typeof data === 'string' ? encoder.encode(data) : data;
  const varint: number[] = [];
  let length = commandBytes.length;
  do {
    let byte = length & 0x7f;
    length >>>= 7;
    if (length > 0) byte |= 0x80;
    varint.push(byte);
  } while (length > 0);
  const out = transientBytes(2 + varint.length + commandBytes.length + dataBytes.length);
  out[0] = commandVersion;
  out[1] = typeof data === 'string' ? 1 : 0;
  out.set(varint, 2);
  out.set(commandBytes, 2 + varint.length);
  out.set(dataBytes, 2 + varint.length + commandBytes.length);
  return out;
}

/**
 * Decodes {@link encodeCommand}'s format; throws BadRequestError on a malformed payload. Byte
 * data is a copy, or with `borrow` a view of `payload`.
 */
export function decodeCommand(
  payload: Uint8Array,
  borrow = false,
): { command: string; data: string | Uint8Array } {
  if (payload.length < 3 || payload[0] !== commandVersion) {
    throw new BadRequestError('Cannot decode a command: unknown version or too short');
  }
  const flags = payload[1]!;
  let length = 0;
  let shift = 0;
  let offset = 2;
  for (;;) {
    if (offset >= payload.length || shift > 28) {
      throw new BadRequestError('Cannot decode a command: truncated length');
    }
    const byte = payload[offset++]!;
    length |= (byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) break;
    shift += 7;
  }
  if (offset + length > payload.length) {
    throw new BadRequestError('Cannot decode a command: truncated command');
  }
  try {
    const command = commandOf(payload, offset, length);
    const rest = payload.subarray(offset + length);
    return {
      command,
      data: (flags & 1) === 1 ? decoder.decode(rest) : borrow ? rest : rest.slice(),
    };
  } catch {
    throw new BadRequestError('Cannot decode a command: invalid UTF-8');
  }
}

/**
 * The last command name encoded, and the last one decoded, with its UTF-8: an application
 * uses a handful of names (the node only "kv"), and converting the same one for every entry
 * costs more than the rest of the envelope. Two caches, each filled only by its own
 * conversion, so a name that does not survive the round trip (a lone surrogate) stays exact.
 */
let encodedCommand = '';
let encodedCommandBytes = new Uint8Array(0);
let decodedCommand = '';
let decodedCommandBytes = new Uint8Array(0);

function commandBytesOf(command: string): Uint8Array {
  if (command !== encodedCommand || encodedCommandBytes.length === 0) {
    encodedCommandBytes = encoder.encode(command);
    encodedCommand = command;
  }
  return encodedCommandBytes;
}

/** Decodes `payload[offset, offset + length)` (throws on invalid UTF-8). */
function commandOf(payload: Uint8Array, offset: number, length: number): string {
  const known = decodedCommandBytes;
  if (known.length === length && length > 0) {
    let same = true;
    for (let k = 0; k < length && same; k++) same = payload[offset + k] === known[k];
    if (same) return decodedCommand;
  }
  const command = decoder.decode(payload.subarray(offset, offset + length));
  decodedCommand = command;
  decodedCommandBytes = payload.slice(offset, offset + length);
  return command;
}

/** `work`'s result, or `signal`'s reason as soon as it aborts, without waiting for `work`. */
function untilAborted<T>(work: T | Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    // Not waited for, and its failure is no one's concern any more.
    Promise.resolve(work).catch(() => undefined);
    return Promise.reject(signal.reason as Error);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    Promise.resolve(work)
      .then(resolve, reject)
      .finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * A snapshot's data: envelope version, u32 length and JSON of the members, the application's
 * bytes.
 */
function encodeSnapshotData(members: Uint8Array, app: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + members.length + app.length);
  out[0] = snapshotEnvelopeVersion;
  new DataView(out.buffer).setUint32(1, members.length);
  out.set(members, 5);
  out.set(app, 5 + members.length);
  return out;
}

function decodeSnapshot(data: Uint8Array): { members: RaftNodeInfo[]; app: Uint8Array } {
  if (data.length < 5 || data[0] !== snapshotEnvelopeVersion) {
    throw new StorageError('CORRUPT_LOG', 'Cannot read a snapshot: unknown envelope version');
  }
  const length = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(1);
  if (5 + length > data.length) {
    throw new StorageError('CORRUPT_LOG', 'Cannot read a snapshot: truncated member list');
  }
  let members: unknown;
  try {
    members = JSON.parse(decoder.decode(data.subarray(5, 5 + length)));
  } catch {
    throw new StorageError('CORRUPT_LOG', 'Cannot read a snapshot: member list is not JSON');
  }
  if (!Array.isArray(members)) {
    throw new StorageError('CORRUPT_LOG', 'Cannot read a snapshot: member list is not an array');
  }
  const result: RaftNodeInfo[] = [];
  for (const member of members as unknown[]) {
    const { id, host, port, url } = (member ?? {}) as Record<string, unknown>;
    if (typeof id !== 'string' || typeof host !== 'string' || typeof port !== 'number') {
      throw new StorageError('CORRUPT_LOG', 'Cannot read a snapshot: malformed member');
    }
    result.push(typeof url === 'string' ? { id, host, port, url } : { id, host, port });
  }
  return { members: result, app: data.subarray(5 + length) };
}

function withUrl(node: RaftNodeInfo): RaftNodeInfo {
  return node.url !== undefined ? node : { ...node, url: nodeUrl('http', node.host, node.port) };
}

function infoFromUrl(id: NodeId, url: string): RaftNodeInfo {
  try {
    const parsed = new URL(url);
    const port =
      parsed.port === '' ? (parsed.protocol === 'https:' ? 443 : 80) : Number(parsed.port);
    return { id, host: parsed.hostname, port, url };
  } catch {
    return { id, host: '', port: 0, url };
  }
}

function checkNodeInfo(node: RaftNodeInfo): void {
  if (typeof node !== 'object' || node === null) throw new TypeError('Invalid node: not an object');
  if (typeof node.id !== 'string' || node.id === '') {
    throw new TypeError(`Invalid node id: ${JSON.stringify(node.id)}`);
  }
  if (typeof node.host !== 'string') throw new TypeError(`Invalid host for node ${node.id}`);
  if (!Number.isInteger(node.port) || node.port < 0 || node.port > 65535) {
    throw new RangeError(`Invalid port for node ${node.id}: ${node.port}`);
  }
  if (node.url !== undefined && typeof node.url !== 'string') {
    throw new TypeError(`Invalid url for node ${node.id}`);
  }
}

function checkType(message: Message, type: Message['type']): void {
  if (typeof message !== 'object' || message === null || message.type !== type) {
    throw new TypeError(`Expected a ${type} message`);
  }
}

function checkFunction<T>(value: T, what: string): T {
  if (typeof value !== 'function') throw new TypeError(`Invalid ${what}: expected a function`);
  return value;
}

function resolvePromotion(given: Partial<MemberPromotion> = {}): MemberPromotion {
  const promotion = { ...memberPromotionDefaults, ...given };
  if (promotion.mode !== 'auto' && promotion.mode !== 'immediate') {
    throw new RangeError(`Invalid promotion.mode: ${String(promotion.mode)} (auto or immediate)`);
  }
  checkIntegerBounds(promotion, memberPromotionBounds, 'promotion.');
  return promotion;
}

/** A positive delay that a timer keeps: Node fires one longer than timerDelayMsMax at once. */
function timerDelay(field: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0 || value > timerDelayMsMax) {
    throw new RangeError(
      `Invalid ${field}: ${value} (expected a positive number of ms up to ${timerDelayMsMax})`,
    );
  }
  return value;
}

function nonNegative(field: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`Invalid ${field}: ${value} (expected a non-negative integer)`);
  }
  return value;
}

/**
 * The first index of a member's snapshot series (the indexes `phase` modulo `every`) that is
 * at least half a period after its last snapshot at `last`: one every `every` entries once in
 * step, between half and one and a half periods after a snapshot that was not (the first one,
 * or one installed from the leader).
 */
export function nextIndexInSeries(last: number, every: number, phase: number): number {
  const from = last + Math.ceil(every / 2);
  return from + ((((phase - from) % every) + every) % every);
}
