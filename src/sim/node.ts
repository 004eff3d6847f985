/**
 * One simulated server: a real {@link RaftCore}, its log, a {@link KvStateMachine}, and a
 * {@link DurableStore}, driven exactly as a production driver must drive the core:
 *
 * 1. on `tick`/`step`/`propose`/`readIndex`, if the core has a Ready: take it;
 * 2. send `Ready.messages` at once (leader requests may go before persisting);
 * 3. persist snapshot, entries and hard state — this takes virtual time, and a crash before it
 *    completes loses all of it; meanwhile send what `takeMessages()` hands out;
 * 4. then send `messagesAfterPersist` (responses, votes), restore a received snapshot, apply
 *    `committed` to the state machine, serve `readStates` once applied, call `advance()`;
 * 5. every so often take a state-machine snapshot, tell the core, and compact the log.
 *
 * Client requests arrive here too: writes are proposed on the leader and answered when their
 * entry is applied (or when another entry takes their index: certainly dropped); reads go
 * through ReadIndex and are answered once the state machine caught up with the read index.
 */
import { assert } from '../assert.js';
import type { RaftLimits } from '../config.js';
import { NotLeaderError, PhantomError } from '../errors.js';
import { KvStateMachine } from '../kv/state-machine.js';
import { EntryType, lastIndexOf, payloadOf } from '../raft/batch.js';
import { RaftCore } from '../raft/core.js';
import type {
  ConfState,
  Message,
  NodeId,
  ReadState,
  Ready,
  Role,
  SnapshotMeta,
} from '../raft/types.js';
import { DurableStore, type StoredSnapshot } from './durable.js';
import type { KvInput, KvOutput } from './history.js';
import type { Xoshiro128 } from './prng.js';
import { SafetyViolation, type SafetyMonitor } from './safety.js';
import { describeMessage, type Trace } from './trace.js';

/** A client's request to a node. */
export interface ClientRequest {
  readonly client: number;
  readonly requestId: number;
  readonly input: KvInput;
}

/** A node's answer. Everything but `result` means the request certainly had no effect. */
export type ClientReply =
  | { readonly kind: 'result'; readonly output: KvOutput }
  | { readonly kind: 'notLeader'; readonly leader: NodeId }
  | { readonly kind: 'dropped' }
  | { readonly kind: 'busy'; readonly reason: string };

/** Per-run settings of every node. */
export interface NodeSettings {
  readonly limits: Partial<RaftLimits>;
  /** Take a state-machine snapshot after this many applied entries. */
  readonly snapshotEveryEntries: number;
  /** Entries kept in the log below a snapshot, for followers slightly behind. */
  readonly compactKeepEntries: number;
  /** Virtual time one persist (write + fsync) takes, in [min, max] ms. */
  readonly persistMsMin: number;
  readonly persistMsMax: number;
  /** BROKEN ON PURPOSE when true: reads answered from the local state, no ReadIndex. */
  readonly staleReads: boolean;
  /** BROKEN ON PURPOSE when true: send every message before persisting (acks lie). */
  readonly sendBeforePersist: boolean;
  /** Pass `unsafeCommitByCountingReplicas` to the core (its known Figure 8 bug). */
  readonly unsafeCommit: boolean;
  /** Record the core's own trace events. */
  readonly coreTrace: boolean;
}

/** What a node needs from the simulation around it. */
export interface NodeHost {
  now(): number;
  readonly random: Xoshiro128;
  readonly trace: Trace;
  readonly safety: SafetyMonitor;
  readonly settings: NodeSettings;
  /** Puts a Raft message on the network; `snapshotData` travels with a SnapshotRequest. */
  sendRaft(from: SimNode, message: Message, snapshotData: Uint8Array | null): void;
  replyToClient(from: SimNode, request: ClientRequest, reply: ClientReply): void;
  /** Calls `node.onPersisted(incarnation)` after `delayMs`. */
  schedulePersisted(node: SimNode, delayMs: number, incarnation: number): void;
  nextRpcId(): number;
  /** Called after every `advance()` (membership bookkeeping). */
  onAdvanced(node: SimNode): void;
  /**
   * A leader moved its commit index: the entry must already be durable on a quorum of the
   * configuration in force when the commit was decided, one of `confs`.
   */
  onLeaderCommit(node: SimNode, commit: number, term: number, confs: readonly ConfState[]): void;
}

/** Counters for the run summary. */
export interface NodeStats {
  snapshotsTaken: number;
  snapshotsInstalled: number;
  restarts: number;
}

const emptyConf: ConfState = { voters: [], votersOutgoing: [], learners: [] };
const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

/** A simulated server. */
export class SimNode {
  /** Bumped at every crash; events of an older incarnation are ignored. */
  incarnation = 0;
  alive = false;
  /** Removed from the cluster; never restarted. */
  removed = false;
  /** Set when applied entries or an installed snapshot may have changed the membership. */
  confChanged = false;
  readonly durable = new DurableStore();
  readonly stats: NodeStats = { snapshotsTaken: 0, snapshotsInstalled: 0, restarts: 0 };
  private coreInstance: RaftCore | null = null;
  private logInstance: ReturnType<DurableStore['load']>['log'] | null = null;
  private kvInstance = new KvStateMachine();
  private readyInFlight: Ready | null = null;
  private role: Role = 'follower';
  private leaderHint: NodeId = '';
  private lastCommit = 0;
  private lastTerm = 0;
  private snapshotIndex = 0;
  private readContext = 0;
  private readonly pendingProposals = new Map<number, { term: number; request: ClientRequest }>();
  private readonly pendingReads = new Map<number, ClientRequest>();
  private waitingReads: { state: ReadState; request: ClientRequest }[] = [];
  private readonly incomingSnapshots = new Map<string, Uint8Array>();
  /**
   * The membership before the last `advance()`, when that advance applied a change: a commit
   * reported in the next Ready may have been decided under either configuration.
   */
  private confBeforeAdvance: ConfState | null = null;

  constructor(
    readonly id: NodeId,
    /** Membership on first boot: the bootstrap voters, or nobody for a node joining later. */
    private readonly bootstrapConf: ConfState,
    private readonly host: NodeHost,
  ) {}

  /** A node created to join an existing cluster later. */
  static joining(id: NodeId, host: NodeHost): SimNode {
    return new SimNode(id, emptyConf, host);
  }

  /** The running core (only while alive). */
  get core(): RaftCore {
    assert(this.coreInstance !== null, () => `${this.id} is not running`);
    return this.coreInstance;
  }

  /** The state machine (the last one, when crashed). */
  get kv(): KvStateMachine {
    return this.kvInstance;
  }

  /** Whether a Ready is being persisted. */
  get busy(): boolean {
    return this.readyInFlight !== null;
  }

  /** Boots (or reboots) from durable state only. */
  start(): void {
    assert(!this.alive && !this.removed, () => `${this.id} started twice or after removal`);
    const loaded = this.durable.load();
    this.kvInstance = new KvStateMachine();
    let applied = 0;
    if (loaded.snapshot !== null) {
      this.kvInstance.restore(loaded.snapshot.data);
      applied = loaded.snapshot.meta.index;
      assert(this.kvInstance.appliedIndex === applied, 'snapshot data and meta disagree');
    }
    this.logInstance = loaded.log;
    const random = this.host.random.fork();
    const trace = this.host.trace;
    this.coreInstance = new RaftCore({
      id: this.id,
      limits: this.host.settings.limits,
      random: () => random.float(),
      log: loaded.log,
      hardState: loaded.hardState,
      conf: loaded.snapshot?.meta.conf ?? this.bootstrapConf,
      snapshot: loaded.snapshot?.meta ?? null,
      applied,
      ...(this.host.settings.coreTrace
        ? {
            trace: (event: string, fields: Record<string, unknown>) => {
              trace.record(
                this.host.now(),
                this.id,
                () => `core ${event} ${JSON.stringify(fields)}`,
              );
            },
          }
        : {}),
      ...(this.host.settings.unsafeCommit ? { unsafeCommitByCountingReplicas: true } : {}),
    });
    this.alive = true;
    this.role = 'follower';
    this.leaderHint = '';
    this.snapshotIndex = applied;
    this.lastTerm = loaded.hardState.term;
    this.confBeforeAdvance = null;
    // Across a restart the commit index may not fall below what was persisted.
    const status = this.core.status();
    this.host.safety.checkCommitMonotonic(this.id, status.commit, loaded.hardState.commit);
    this.lastCommit = status.commit;
    this.host.trace.record(
      this.host.now(),
      this.id,
      () =>
        `start: term ${loaded.hardState.term} vote '${loaded.hardState.vote}' commit ${loaded.hardState.commit} snapshot ${loaded.snapshot?.meta.index ?? '-'} log ${loaded.log.firstIndex()}..${loaded.log.lastIndex()}`,
    );
    this.pump();
  }

  /** Stops at once: everything not yet durable is lost, in-flight client work goes unanswered. */
  crash(): void {
    if (!this.alive) return;
    this.alive = false;
    this.incarnation++;
    this.coreInstance = null;
    this.logInstance = null;
    this.readyInFlight = null;
    this.pendingProposals.clear();
    this.pendingReads.clear();
    this.waitingReads = [];
    this.incomingSnapshots.clear();
    this.host.safety.onCrash(this.id);
    this.host.trace.record(this.host.now(), this.id, () => 'crash');
  }

  /** One unit of logical time. */
  tick(): void {
    if (!this.alive) return;
    this.core.tick();
    this.pump();
  }

  /** A message from the network (`snapshotData` with a SnapshotRequest). */
  deliver(message: Message, snapshotData: Uint8Array | null): void {
    if (!this.alive) return;
    let input = message;
    if (
      message.type === 'vote' ||
      message.type === 'append' ||
      message.type === 'heartbeat' ||
      message.type === 'snapshot'
    ) {
      const rpcId = this.host.nextRpcId();
      input = { ...message, rpcId };
      this.host.safety.onRequest(this.id, rpcId, message.type);
    }
    if (message.type === 'snapshot') {
      assert(snapshotData !== null, 'a snapshot request arrived without its data');
      this.incomingSnapshots.set(snapshotKey(message.snapshot), snapshotData);
    }
    this.host.trace.record(this.host.now(), this.id, () => `recv ${describeMessage(input)}`);
    this.core.step(input);
    this.pump();
  }

  /** The transport could not reach `peer`. */
  reportUnreachable(peer: NodeId): void {
    if (!this.alive) return;
    this.core.reportUnreachable(peer);
    this.pump();
  }

  /** Outcome of sending a snapshot to `peer`. */
  reportSnapshot(peer: NodeId, ok: boolean): void {
    if (!this.alive) return;
    this.core.reportSnapshot(peer, ok);
    this.pump();
  }

  /** Asks this node, as leader, to hand leadership to `to`; false when it cannot. */
  transferLeadership(to: NodeId): boolean {
    if (!this.alive || this.role !== 'leader') return false;
    try {
      this.core.transferLeadership(to);
    } catch (error) {
      if (error instanceof NotLeaderError || error instanceof RangeError) return false;
      throw error;
    }
    this.pump();
    return true;
  }

  /** Proposes a membership change as leader; returns its index, or an error message. */
  proposeConfChange(change: Parameters<RaftCore['proposeConfChange']>[0]): number | string {
    if (!this.alive || this.role !== 'leader') return 'not leader';
    try {
      const { index } = this.core.proposeConfChange(change);
      this.pump();
      return index;
    } catch (error) {
      if (error instanceof PhantomError || error instanceof RangeError) return error.message;
      throw error;
    }
  }

  /** A client request; answered through the host, now or later, or never if this node dies. */
  onClientRequest(request: ClientRequest): void {
    if (!this.alive) return;
    const { input } = request;
    if (input.f === 'get') {
      if (this.host.settings.staleReads) {
        // The deliberately broken variant: any node answers from its own state machine.
        this.reply(request, {
          kind: 'result',
          output: { kind: 'ok', value: this.read(input.key) },
        });
        return;
      }
      if (this.role !== 'leader') {
        this.reply(request, { kind: 'notLeader', leader: this.leaderHint });
        return;
      }
      const context = ++this.readContext;
      try {
        this.core.readIndex(context);
      } catch (error) {
        if (error instanceof NotLeaderError) {
          this.reply(request, { kind: 'notLeader', leader: error.leaderId });
          return;
        }
        throw error;
      }
      this.pendingReads.set(context, request);
      this.pump();
      return;
    }
    if (this.role !== 'leader') {
      this.reply(request, { kind: 'notLeader', leader: this.leaderHint });
      return;
    }
    let payload: Uint8Array;
    switch (input.f) {
      case 'put':
        payload = this.kv.encodePut(input.key, utf8.encode(input.value), {
          ...(input.prevValue === undefined ? {} : { prevValue: utf8.encode(input.prevValue) }),
          ...(input.prevExist === undefined ? {} : { prevExist: input.prevExist }),
        });
        break;
      case 'delete':
        payload = this.kv.encodeDelete(
          input.key,
          input.prevValue === undefined ? {} : { prevValue: utf8.encode(input.prevValue) },
        );
        break;
      case 'append':
        throw new TypeError('The simulated store has no append');
    }
    try {
      const { index, term } = this.core.propose(payload);
      this.pendingProposals.set(index, { term, request });
    } catch (error) {
      if (error instanceof NotLeaderError) {
        this.reply(request, { kind: 'notLeader', leader: error.leaderId });
        return;
      }
      if (error instanceof PhantomError) {
        this.reply(request, { kind: 'busy', reason: error.code });
        return;
      }
      throw error;
    }
    this.pump();
  }

  /** Takes and starts handling a Ready if there is one and none is in flight. */
  pump(): void {
    if (!this.alive) return;
    if (this.readyInFlight !== null) {
      this.takeWhilePersisting();
      return;
    }
    if (!this.core.hasReady()) return;
    const ready = this.core.ready();
    const { safety } = this.host;
    const log = this.logInstance!;
    if (ready.softState !== null) this.onSoftState(ready.softState.role, ready.softState.leader);
    if (ready.entries !== null) safety.onEntries(this.id, ready.entries, log);
    if (ready.hardState !== null) {
      const { term, commit } = ready.hardState;
      if (term < this.lastTerm) {
        throw new SafetyViolation(
          'term monotonicity',
          `${this.id}'s term went back from ${this.lastTerm} to ${term}`,
        );
      }
      this.lastTerm = term;
      safety.checkCommitMonotonic(this.id, commit, this.lastCommit);
      if (this.role === 'leader' && commit > this.lastCommit) {
        const confs = [this.core.status().conf];
        if (this.confBeforeAdvance !== null) confs.push(this.confBeforeAdvance);
        this.host.onLeaderCommit(this, commit, log.termAt(commit), confs);
      }
      this.lastCommit = commit;
      safety.onCommit(this.id, commit, log);
    }
    safety.onReadyMessages(this.id, ready.messages, ready.messagesAfterPersist);
    this.host.trace.record(this.host.now(), this.id, () => describeReady(ready));
    for (const message of ready.messages) this.send(message);
    if (this.host.settings.sendBeforePersist) {
      // The deliberately broken driver: votes and acknowledgements leave before the state
      // they promise is durable.
      for (const message of ready.messagesAfterPersist) this.send(message);
    }
    this.readyInFlight = ready;
    this.confBeforeAdvance = null;
    const { persistMsMin, persistMsMax } = this.host.settings;
    const nothingToPersist =
      ready.entries === null && ready.hardState === null && ready.snapshot === null;
    const delay = nothingToPersist
      ? 0
      : persistMsMin + this.host.random.float() * (persistMsMax - persistMsMin);
    this.host.schedulePersisted(this, delay, this.incarnation);
  }

  /**
   * While a Ready's write is in flight, as RaftConsensus does: the requests of proposals made
   * meanwhile leave at once (`takeMessages`), so followers can acknowledge entries this node
   * has not even started to write.
   */
  private takeWhilePersisting(): void {
    const messages = this.core.takeMessages();
    if (messages.length === 0) return;
    this.host.safety.onEarlyMessages(this.id, messages);
    for (const message of messages) this.send(message);
  }

  /** The in-flight Ready is durable: finish handling it (steps 4 and 5 above). */
  onPersisted(incarnation: number): void {
    if (!this.alive || incarnation !== this.incarnation) return;
    const ready = this.readyInFlight;
    assert(ready !== null, 'persisted without a Ready in flight');
    let snapshot: StoredSnapshot | null = null;
    if (ready.snapshot !== null) {
      const data = this.incomingSnapshots.get(snapshotKey(ready.snapshot));
      if (data === undefined) {
        throw new SafetyViolation(
          'ready contract',
          `${this.id}'s Ready carries snapshot ${snapshotKey(ready.snapshot)}, which it never received`,
        );
      }
      snapshot = { meta: ready.snapshot, data };
    }
    this.durable.save(snapshot, ready.entries, ready.hardState);
    if (!this.host.settings.sendBeforePersist) {
      for (const message of ready.messagesAfterPersist) this.send(message);
    }
    if (snapshot !== null) this.installSnapshot(snapshot);
    if (ready.committed !== null) this.applyCommitted(ready.committed);
    for (const state of ready.readStates) {
      const request = this.pendingReads.get(state.context);
      if (request === undefined) continue;
      this.pendingReads.delete(state.context);
      this.waitingReads.push({ state, request });
    }
    this.serveReads();
    this.readyInFlight = null;
    const confBefore = this.confChanged ? this.core.status().conf : null;
    this.core.advance();
    this.confBeforeAdvance = confBefore;
    const applied =
      ready.committed !== null || ready.snapshot !== null
        ? this.core.status().applied
        : this.kv.appliedIndex;
    if (applied !== this.kv.appliedIndex) {
      throw new SafetyViolation(
        'ready contract',
        `${this.id}'s core says applied ${applied}, its state machine applied ${this.kv.appliedIndex}`,
      );
    }
    this.maybeSnapshot();
    this.host.onAdvanced(this);
    this.pump();
  }

  /** The KV value of `key` as a string (null when absent). */
  read(key: string): string | null {
    const value = this.kv.get(key);
    return value === undefined ? null : utf8Decoder.decode(value);
  }

  private onSoftState(role: Role, leader: NodeId): void {
    const wasLeader = this.role === 'leader';
    this.role = role;
    this.leaderHint = leader;
    if (role === 'leader') {
      this.host.safety.onLeader(this.id, this.core.status().term, this.logInstance!);
    } else if (wasLeader) {
      // The core drops pending ReadIndex requests when it loses leadership; tell the clients
      // now instead of letting them time out. Reads have no effect, so this is certain.
      for (const request of this.pendingReads.values()) {
        this.reply(request, { kind: 'notLeader', leader });
      }
      this.pendingReads.clear();
    }
  }

  private installSnapshot(snapshot: StoredSnapshot): void {
    this.kv.restore(snapshot.data);
    assert(
      this.kv.appliedIndex === snapshot.meta.index,
      () => `snapshot ${snapshot.meta.index} restores applied ${this.kv.appliedIndex}`,
    );
    this.snapshotIndex = snapshot.meta.index;
    this.stats.snapshotsInstalled++;
    this.confChanged = true;
    // Proposals below the snapshot were applied or overwritten in entries we never saw: their
    // fate is unknown here, so their clients time out.
    for (const index of [...this.pendingProposals.keys()]) {
      if (index <= snapshot.meta.index) this.pendingProposals.delete(index);
    }
    this.incomingSnapshots.clear();
    this.host.trace.record(
      this.host.now(),
      this.id,
      () => `installed snapshot ${snapshot.meta.index}`,
    );
  }

  private applyCommitted(batch: NonNullable<Ready['committed']>): void {
    this.host.safety.onApply(this.id, batch);
    for (let k = 0; k < batch.count; k++) {
      const index = batch.firstIndex + k;
      const term = batch.terms[k]!;
      const type = batch.types[k]!;
      const pending = this.pendingProposals.get(index);
      if (pending !== undefined) this.pendingProposals.delete(index);
      if (type !== EntryType.Normal) {
        if (type === EntryType.ConfChange) this.confChanged = true;
        this.kv.skip(index);
        if (pending !== undefined) this.reply(pending.request, { kind: 'dropped' });
        continue;
      }
      const result = this.kv.apply(index, payloadOf(batch, k));
      assert(result.kind !== 'invalid', () => `entry ${index} is not a valid command`);
      if (pending === undefined) continue;
      if (pending.term !== term) {
        // Another leader's entry took this index: ours can never commit anywhere.
        this.reply(pending.request, { kind: 'dropped' });
        continue;
      }
      const output: KvOutput =
        result.kind === 'ok'
          ? { kind: 'ok' }
          : { kind: 'failed', reason: result.kind === 'notFound' ? 'notFound' : 'precondition' };
      this.reply(pending.request, { kind: 'result', output });
    }
  }

  private serveReads(): void {
    if (this.waitingReads.length === 0) return;
    const applied = this.kv.appliedIndex;
    const still: typeof this.waitingReads = [];
    for (const waiting of this.waitingReads) {
      if (waiting.state.index > applied) {
        still.push(waiting);
        continue;
      }
      const { input } = waiting.request;
      this.reply(waiting.request, {
        kind: 'result',
        output: { kind: 'ok', value: this.read(input.key) },
      });
    }
    this.waitingReads = still;
  }

  private maybeSnapshot(): void {
    const { snapshotEveryEntries, compactKeepEntries } = this.host.settings;
    const applied = this.kv.appliedIndex;
    if (applied - this.snapshotIndex < snapshotEveryEntries) return;
    const status = this.core.status();
    const log = this.logInstance!;
    const meta: SnapshotMeta = { index: applied, term: log.termAt(applied), conf: status.conf };
    const compactIndex = Math.max(0, applied - compactKeepEntries);
    this.durable.saveSnapshot({ meta, data: this.kv.snapshot() }, compactIndex);
    this.core.snapshotCreated(meta);
    if (compactIndex > status.firstIndex - 1) this.core.compact(compactIndex);
    this.snapshotIndex = applied;
    this.stats.snapshotsTaken++;
    this.host.trace.record(
      this.host.now(),
      this.id,
      () => `snapshot at ${applied}/${meta.term}, compacted to ${compactIndex}`,
    );
  }

  private send(message: Message): void {
    let data: Uint8Array | null = null;
    if (message.type === 'snapshot') data = this.snapshotData(message.snapshot);
    this.host.sendRaft(this, message, data);
  }

  /** The bytes of the snapshot the core asks to send. */
  private snapshotData(meta: SnapshotMeta): Uint8Array {
    const stored = this.durable.findSnapshot(meta.index, meta.term);
    if (stored !== undefined) return stored.data;
    if (meta.index === 0) return new KvStateMachine().snapshot();
    const latest = this.durable.persistedSnapshot;
    throw new SafetyViolation(
      'ready contract',
      `${this.id} sends snapshot ${snapshotKey(meta)}, which it does not hold (latest ${latest === null ? 'none' : snapshotKey(latest.meta)})`,
    );
  }

  private reply(request: ClientRequest, reply: ClientReply): void {
    this.host.replyToClient(this, request, reply);
  }
}

function snapshotKey(meta: SnapshotMeta): string {
  return `${meta.index}/${meta.term}`;
}

function describeReady(ready: Ready): string {
  const parts = ['ready'];
  if (ready.softState !== null)
    parts.push(`${ready.softState.role} leader '${ready.softState.leader}'`);
  if (ready.hardState !== null) {
    const { term, vote, commit } = ready.hardState;
    parts.push(`hs t${term} v'${vote}' c${commit}`);
  }
  if (ready.entries !== null)
    parts.push(`entries ${ready.entries.firstIndex}..${lastIndexOf(ready.entries)}`);
  if (ready.snapshot !== null) parts.push(`snapshot ${snapshotKey(ready.snapshot)}`);
  if (ready.committed !== null)
    parts.push(`apply ${ready.committed.firstIndex}..${lastIndexOf(ready.committed)}`);
  if (ready.readStates.length > 0)
    parts.push(`reads ${ready.readStates.map((read) => read.index).join(',')}`);
  parts.push(`send ${ready.messages.length}+${ready.messagesAfterPersist.length}`);
  return parts.join(' ');
}
