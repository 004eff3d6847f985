/**
 * One deterministic run of a simulated cluster: real RaftCore instances, virtual time, a lossy
 * reordering duplicating network with partitions that come and go, crashes that lose whatever
 * was not yet persisted, snapshots and InstallSnapshot, membership churn, and clients
 * whose history is checked for linearizability at the end.
 *
 * Every random choice is drawn from one xoshiro128** generator seeded with the run's seed
 * (nodes' cores get streams forked from it in a fixed order), events with equal times run in
 * the order they were scheduled, and nothing reads the wall clock: the same seed replays the
 * same run, byte for byte of its trace.
 *
 * A run has two phases. Chaos: faults are injected every few hundred virtual milliseconds.
 * Calm: at `chaosMs` every fault heals (links restored, loss off, crashed members restarted)
 * and clients stop starting operations; within `convergeMs` a leader must be elected and every
 * member must apply the same entries and hold the same state, or the run fails for liveness.
 */
import { AssertionError } from '../assert.js';
import type { RaftLimits } from '../config.js';
import { isJoint, membersOf } from '../raft/conf-change.js';
import type { ConfChange, ConfState, Message, NodeId } from '../raft/types.js';
import { SimClient, type ClientHost, type ClientSettings } from './client.js';
import { formatHistory, pairEvents, type HistoryEvent } from './history.js';
import { checkOperations, explainResult, type CheckResult } from './linearizability.js';
import { Network, calmConditions } from './network.js';
import {
  SimNode,
  type ClientReply,
  type ClientRequest,
  type NodeHost,
  type NodeSettings,
} from './node.js';
import { Xoshiro128 } from './prng.js';
import { SafetyMonitor, SafetyViolation } from './safety.js';
import { Trace, describeMessage } from './trace.js';
import { EventQueue } from './event-queue.js';

/** What to simulate. Everything not given is drawn from the seed. */
export interface SimulationOptions {
  readonly seed: number;
  /** Voters at bootstrap (default 5). */
  readonly nodes?: number;
  /** Add and remove members (learners, voters, joint changes) as a fault (default true). */
  readonly churn?: boolean;
  /** Fault mix (default: drawn per seed). */
  readonly faults?: FaultProfile;
  /** BROKEN ON PURPOSE: serve reads from any node's local state (checker self-test). */
  readonly staleReads?: boolean;
  /** BROKEN ON PURPOSE: the driver sends acknowledgements before persisting. */
  readonly sendBeforePersist?: boolean;
  /** Run the core with its known Figure 8 bug (`unsafeCommitByCountingReplicas`). */
  readonly unsafeCommit?: boolean;
  /** Record the core's own trace events too (slower; used when replaying a failure). */
  readonly coreTrace?: boolean;
  /** Trace records kept for the failure report (default 200). */
  readonly traceTail?: number;
  /** Fold every trace line into a digest (determinism checks). */
  readonly traceDigest?: boolean;
  /** Keep every trace line. */
  readonly traceKeepAll?: boolean;
  /** Length of the chaos phase in virtual ms (default: drawn in 3000..8000). */
  readonly chaosMs?: number;
  /** Bound on convergence after healing, virtual ms (default 10000). */
  readonly convergeMs?: number;
  /** Search bound of the linearizability check (default 5,000,000 steps). */
  readonly checkerStepsMax?: number;
}

/** Why a run failed. */
export interface SimulationFailure {
  /** The broken property, e.g. "election safety", "linearizability", "liveness". */
  readonly property: string;
  readonly message: string;
  /** Virtual time of the failure. */
  readonly atMs: number;
}

/** Everything a run reports. */
export interface SimulationResult {
  readonly seed: number;
  readonly failure: SimulationFailure | null;
  readonly virtualMs: number;
  readonly events: number;
  readonly messagesSent: number;
  readonly messagesDelivered: number;
  readonly elections: number;
  readonly crashes: number;
  readonly snapshotsTaken: number;
  readonly snapshotsInstalled: number;
  readonly confChanges: number;
  /** Client operations by outcome (ok / failed for certain / unknown). */
  readonly operations: { readonly ok: number; readonly failed: number; readonly unknown: number };
  /** The linearizability verdict (null when the run failed before the check). */
  readonly check: CheckResult | null;
  /** The last trace lines, oldest first. */
  readonly traceTail: readonly string[];
  /** FNV-1a 64 of the whole trace (with `traceDigest`). */
  readonly traceDigest: string | null;
  /** The whole trace (with `traceKeepAll`). */
  readonly traceLines: readonly string[];
  /** The client history in the simulator's JSON lines format. */
  history(): string;
  /** A one-line description of the run's drawn parameters. */
  readonly parameters: string;
}

type SimEvent =
  | { readonly kind: 'tick'; readonly node: SimNode; readonly incarnation: number }
  | {
      readonly kind: 'deliver';
      readonly message: Message;
      readonly snapshotData: Uint8Array | null;
      readonly sender: SimNode;
      readonly senderIncarnation: number;
    }
  | { readonly kind: 'persisted'; readonly node: SimNode; readonly incarnation: number }
  | {
      readonly kind: 'unreachable';
      readonly node: SimNode;
      readonly incarnation: number;
      readonly peer: NodeId;
    }
  | {
      readonly kind: 'snapshotReport';
      readonly node: SimNode;
      readonly incarnation: number;
      readonly peer: NodeId;
      readonly ok: boolean;
    }
  | { readonly kind: 'clientRequest'; readonly node: NodeId; readonly request: ClientRequest }
  | {
      readonly kind: 'clientReply';
      readonly client: SimClient;
      readonly requestId: number;
      readonly reply: ClientReply;
    }
  | { readonly kind: 'clientWake'; readonly client: SimClient }
  | { readonly kind: 'clientTimeout'; readonly client: SimClient; readonly requestId: number }
  | { readonly kind: 'fault' }
  | { readonly kind: 'restart'; readonly node: SimNode }
  | { readonly kind: 'heal' }
  | { readonly kind: 'converged?' }
  | { readonly kind: 'nemesis' };

/**
 * The Figure 8 nemesis, a scripted fault in stages (Raft paper, Figure 8): cut the leader L
 * off with one follower while clients keep writing to it; let the majority elect M and cut M
 * off soon after, before its entries spread; reconnect L so that it may lead again with its
 * old-term entries; crash L as soon as its commit index moves; reconnect M. A core that
 * commits entries of an earlier term by counting replicas loses a committed entry here.
 */
interface Nemesis {
  stage: 'awaitNewLeader' | 'isolateNewLeader' | 'awaitOldLeader' | 'awaitCommit';
  readonly oldLeader: SimNode;
  readonly follower: NodeId;
  readonly oldTerm: number;
  newLeader: SimNode | null;
  commitBefore: number;
  deadline: number;
}

const tickMs = 10;

type FaultKind =
  | 'crash'
  | 'crashLeader'
  | 'reboot'
  | 'partition'
  | 'isolateLeader'
  | 'asymmetric'
  | 'partial'
  | 'heal'
  | 'conditions'
  | 'transfer'
  | 'churn'
  | 'figure8';

/** The fault mixes a run can draw (or be given). */
export type FaultProfile = 'mixed' | 'leaders' | 'network';

/** Every fault profile, for argument checking. */
export const faultProfileNames: readonly FaultProfile[] = ['mixed', 'leaders', 'network'];

/**
 * Fault mixes; each run draws one. "leaders" keeps deposing leaders in quick succession,
 * which is what it takes to reach the interleavings of Raft's Figure 8.
 */
const faultProfiles: Readonly<Record<FaultProfile, Readonly<Record<FaultKind, number>>>> = {
  mixed: {
    crash: 12,
    crashLeader: 8,
    reboot: 5,
    partition: 15,
    isolateLeader: 10,
    asymmetric: 10,
    partial: 7,
    heal: 15,
    conditions: 8,
    transfer: 5,
    churn: 10,
    figure8: 4,
  },
  leaders: {
    crash: 5,
    crashLeader: 35,
    reboot: 5,
    partition: 5,
    isolateLeader: 25,
    asymmetric: 3,
    partial: 2,
    heal: 15,
    conditions: 2,
    transfer: 3,
    churn: 5,
    figure8: 15,
  },
  network: {
    crash: 5,
    crashLeader: 3,
    reboot: 2,
    partition: 25,
    isolateLeader: 10,
    asymmetric: 20,
    partial: 15,
    heal: 15,
    conditions: 10,
    transfer: 3,
    churn: 5,
    figure8: 2,
  },
};

/** Runs one seed to completion and reports; never throws for a failing run. */
export function runSimulation(options: SimulationOptions): SimulationResult {
  return new Simulation(options).run();
}

class Simulation implements NodeHost, ClientHost {
  readonly random: Xoshiro128;
  readonly trace: Trace;
  readonly safety = new SafetyMonitor();
  readonly settings: NodeSettings;
  private readonly queue = new EventQueue<SimEvent>();
  private readonly network: Network;
  private readonly nodes = new Map<NodeId, SimNode>();
  private readonly tickMsOf = new Map<NodeId, number>();
  private readonly clients: SimClient[] = [];
  private readonly clientSettings: ClientSettings;
  private readonly historyEvents: { event: HistoryEvent; t: number }[] = [];
  private time = 0;
  private rpcSeq = 0;
  private nodeSeq = 0;
  private readonly chaosMs: number;
  private readonly convergeMs: number;
  private readonly faultGapMsMax: number;
  private readonly faultProfile: FaultProfile;
  private readonly faultWeights: Readonly<Record<FaultKind, number>>;
  private readonly chaosConditions: ReturnType<typeof calmConditions>;
  private calm = false;
  private converged = false;
  /** Membership as applied by the most advanced node, and at which index. */
  private conf: ConfState;
  private confIndex = 0;
  /** Nodes started to join, not yet seen in an applied configuration. */
  private readonly joining = new Set<NodeId>();
  private counters = { events: 0, sent: 0, delivered: 0, crashes: 0, confChanges: 0 };
  private readonly parameters: string;
  private nemesis: Nemesis | null = null;

  constructor(private readonly options: SimulationOptions) {
    this.random = new Xoshiro128(options.seed);
    const random = this.random;
    this.trace = new Trace({
      ringSize: options.traceTail ?? 200,
      digest: options.traceDigest === true,
      keepAll: options.traceKeepAll === true,
    });
    this.network = new Network(random.fork());
    const voters = options.nodes ?? 5;
    if (!Number.isSafeInteger(voters) || voters < 1 || voters > 9) {
      throw new RangeError(`Invalid nodes: ${String(voters)} (expected 1..9)`);
    }
    const limits: Partial<RaftLimits> = {
      electionTicks: 10,
      heartbeatTicks: random.between(1, 3),
      inflightMessagesMax: random.between(1, 16),
      messageBytesMax: random.pick([64, 512, 4096, 64 * 1024]),
    };
    this.settings = {
      limits,
      snapshotEveryEntries: random.between(5, 80),
      compactKeepEntries: random.between(0, 20),
      persistMsMin: 0.1,
      persistMsMax: random.pick([0.5, 2, 8]),
      staleReads: options.staleReads === true,
      sendBeforePersist: options.sendBeforePersist === true,
      unsafeCommit: options.unsafeCommit === true,
      coreTrace: options.coreTrace === true,
    };
    this.chaosConditions = {
      lossRate: random.pick([0, 0.01, 0.05, 0.15]),
      duplicateRate: random.pick([0, 0.02, 0.1]),
      latencyMsMin: 0.5,
      latencyMsMax: random.pick([2, 5, 15]),
      slowRate: random.pick([0, 0.02, 0.1]),
      slowMsMax: random.pick([20, 80, 250]),
    };
    const keyCount = random.between(2, 5);
    this.clientSettings = {
      keys: Array.from({ length: keyCount }, (_, k) => `k${k}`),
      requestTimeoutMs: random.pick([150, 300, 600]),
      operationDeadlineMs: 1500,
      thinkMsMax: random.pick([5, 20, 60]),
      retryMs: 10,
    };
    this.chaosMs = options.chaosMs ?? random.between(3000, 8000);
    this.convergeMs = options.convergeMs ?? 10_000;
    this.faultGapMsMax = random.pick([150, 400, 900]);
    // Always drawn, so that giving a profile changes nothing else about the run.
    const drawnProfile = random.pick<FaultProfile>(['mixed', 'mixed', 'leaders', 'network']);
    this.faultProfile = options.faults ?? drawnProfile;
    const weights = { ...faultProfiles[this.faultProfile] };
    if (options.churn === false) weights.churn = 0;
    this.faultWeights = weights;
    const clientCount = random.between(2, 6);
    const ids = Array.from({ length: voters }, () => `n${++this.nodeSeq}`);
    this.conf = { voters: ids, votersOutgoing: [], learners: [] };
    for (const id of ids) this.addNode(new SimNode(id, this.conf, this));
    for (let k = 1; k <= clientCount; k++) {
      this.clients.push(new SimClient(k, this, this.clientSettings));
    }
    this.parameters =
      `nodes ${voters}, clients ${clientCount}, keys ${keyCount}, chaos ${this.chaosMs} ms, ` +
      `loss ${this.chaosConditions.lossRate}, dup ${this.chaosConditions.duplicateRate}, ` +
      `latency ${this.chaosConditions.latencyMsMin}..${this.chaosConditions.latencyMsMax} ms ` +
      `(slow ${this.chaosConditions.slowRate} up to ${this.chaosConditions.slowMsMax} ms), ` +
      `faults ${this.faultProfile} every <= ${this.faultGapMsMax} ms, heartbeat ${limits.heartbeatTicks} ticks, ` +
      `inflight ${limits.inflightMessagesMax}, message ${limits.messageBytesMax} B, ` +
      `snapshot every ${this.settings.snapshotEveryEntries} keep ${this.settings.compactKeepEntries}, ` +
      `persist <= ${this.settings.persistMsMax} ms, request timeout ${this.clientSettings.requestTimeoutMs} ms` +
      `${options.churn === false ? ', no churn' : ''}${options.staleReads === true ? ', STALE READS' : ''}` +
      `${options.unsafeCommit === true ? ', UNSAFE COMMIT' : ''}` +
      `${options.sendBeforePersist === true ? ', SEND BEFORE PERSIST' : ''}`;
  }

  // ---------------------------------------------------------------------------------------
  // The run

  run(): SimulationResult {
    let failure: SimulationFailure | null = null;
    let check: CheckResult | null = null;
    this.trace.record(0, 'sim', () => `seed ${this.options.seed}: ${this.parameters}`);
    try {
      this.network.conditions = { ...this.chaosConditions };
      for (const node of this.nodes.values()) this.startNode(node);
      for (const client of this.clients) {
        this.queue.push(this.random.float() * 100, { kind: 'clientWake', client });
      }
      this.queue.push(this.nextFaultDelay(), { kind: 'fault' });
      this.queue.push(this.chaosMs, { kind: 'heal' });
      const deadline = this.chaosMs + this.convergeMs;
      while (!this.converged) {
        const next = this.queue.pop();
        if (next === undefined || next.time > deadline) {
          this.time = Math.min(next?.time ?? deadline, deadline);
          throw new SafetyViolation(
            'liveness',
            `no convergence within ${this.convergeMs} ms after faults healed: ${this.describeCluster()}`,
          );
        }
        this.time = next.time;
        this.counters.events++;
        this.dispatch(next.item);
      }
      const operations = pairEvents(this.historyEvents.map(({ event }) => event));
      check = checkOperations(operations, null, {
        stepsMax: this.options.checkerStepsMax ?? 5_000_000,
      });
      if (check.verdict !== 'linearizable') {
        throw new SafetyViolation(
          'linearizability',
          `${check.verdict === 'unknown' ? 'UNDECIDED (not a pass)' : 'the client history is not linearizable'}\n${explainResult(check)}`,
        );
      }
    } catch (error) {
      failure = this.toFailure(error);
    }
    const stats = this.collectStats();
    const historyEvents = this.historyEvents;
    return {
      seed: this.options.seed,
      failure,
      virtualMs: this.time,
      events: this.counters.events,
      messagesSent: this.counters.sent,
      messagesDelivered: this.counters.delivered,
      elections: this.safety.elections,
      crashes: this.counters.crashes,
      snapshotsTaken: stats.snapshotsTaken,
      snapshotsInstalled: stats.snapshotsInstalled,
      confChanges: this.counters.confChanges,
      operations: stats.operations,
      check,
      traceTail: this.trace.tail(),
      traceDigest: this.options.traceDigest === true ? this.trace.digest() : null,
      traceLines: this.trace.lines(),
      history: () => formatHistory(historyEvents),
      parameters: this.parameters,
    };
  }

  private toFailure(error: unknown): SimulationFailure {
    if (error instanceof SafetyViolation) {
      this.trace.record(this.time, 'sim', () => `FAILED ${error.message}`);
      return { property: error.property, message: error.message, atMs: this.time };
    }
    const property = error instanceof AssertionError ? 'core or driver assertion' : 'exception';
    const message =
      error instanceof Error
        ? `${error.name}: ${error.message}\n${error.stack ?? ''}`
        : String(error);
    this.trace.record(this.time, 'sim', () => `FAILED ${property}: ${message.split('\n')[0]!}`);
    return { property, message, atMs: this.time };
  }

  private collectStats() {
    let snapshotsTaken = 0;
    let snapshotsInstalled = 0;
    for (const node of this.nodes.values()) {
      snapshotsTaken += node.stats.snapshotsTaken;
      snapshotsInstalled += node.stats.snapshotsInstalled;
    }
    const operations = { ok: 0, failed: 0, unknown: 0 };
    for (const client of this.clients) {
      operations.ok += client.stats.ok;
      operations.failed += client.stats.failed;
      operations.unknown += client.stats.unknown;
    }
    return { snapshotsTaken, snapshotsInstalled, operations };
  }

  private dispatch(event: SimEvent): void {
    switch (event.kind) {
      case 'tick':
        if (event.node.alive && event.node.incarnation === event.incarnation) {
          event.node.tick();
          this.scheduleTick(event.node);
        }
        break;
      case 'deliver':
        this.onDeliver(event);
        break;
      case 'persisted':
        event.node.onPersisted(event.incarnation);
        break;
      case 'unreachable':
        if (event.node.incarnation === event.incarnation) event.node.reportUnreachable(event.peer);
        break;
      case 'snapshotReport':
        if (event.node.incarnation === event.incarnation) {
          event.node.reportSnapshot(event.peer, event.ok);
        }
        break;
      case 'clientRequest': {
        const node = this.nodes.get(event.node);
        if (node?.alive === true) node.onClientRequest(event.request);
        break;
      }
      case 'clientReply':
        event.client.onReply(event.requestId, event.reply);
        break;
      case 'clientWake':
        if (!this.calm) event.client.wake();
        break;
      case 'clientTimeout':
        event.client.onTimeout(event.requestId);
        break;
      case 'fault':
        if (!this.calm) {
          // Other faults wait while the Figure 8 nemesis runs its script.
          if (this.nemesis === null) this.injectFault();
          this.queue.push(this.time + this.nextFaultDelay(), { kind: 'fault' });
        }
        break;
      case 'nemesis':
        this.stepNemesis();
        break;
      case 'restart':
        if (!event.node.alive && !event.node.removed) this.startNode(event.node);
        break;
      case 'heal':
        this.heal();
        break;
      case 'converged?':
        if (this.isConverged()) {
          this.converged = true;
          this.trace.record(this.time, 'sim', () => `converged: ${this.describeCluster()}`);
        } else {
          this.queue.push(this.time + 50, { kind: 'converged?' });
        }
        break;
    }
  }

  // ---------------------------------------------------------------------------------------
  // NodeHost and ClientHost

  now(): number {
    return this.time;
  }

  nextRpcId(): number {
    return ++this.rpcSeq;
  }

  sendRaft(from: SimNode, message: Message, snapshotData: Uint8Array | null): void {
    this.counters.sent++;
    const target = this.nodes.get(message.to);
    const senderIncarnation = from.incarnation;
    if (target === undefined || !target.alive || this.network.isCut(from.id, message.to)) {
      // The transport cannot connect: it tells the core, as a real one would.
      this.trace.record(this.time, from.id, () => `unreachable ${describeMessage(message)}`);
      this.queue.push(this.time, {
        kind: 'unreachable',
        node: from,
        incarnation: senderIncarnation,
        peer: message.to,
      });
      if (message.type === 'snapshot') {
        this.queue.push(this.time, {
          kind: 'snapshotReport',
          node: from,
          incarnation: senderIncarnation,
          peer: message.to,
          ok: false,
        });
      }
      return;
    }
    if (this.network.drawLoss()) {
      this.trace.record(this.time, from.id, () => `lost ${describeMessage(message)}`);
      if (message.type === 'snapshot') {
        this.queue.push(this.time + this.clientSettings.requestTimeoutMs, {
          kind: 'snapshotReport',
          node: from,
          incarnation: senderIncarnation,
          peer: message.to,
          ok: false,
        });
      }
      return;
    }
    const event: SimEvent = {
      kind: 'deliver',
      message,
      snapshotData,
      sender: from,
      senderIncarnation,
    };
    this.queue.push(this.time + this.network.drawLatency(), event);
    if (this.network.drawDuplicate()) {
      this.queue.push(this.time + this.network.drawLatency(), event);
    }
  }

  private onDeliver(event: Extract<SimEvent, { kind: 'deliver' }>): void {
    const { message, sender } = event;
    const target = this.nodes.get(message.to);
    const delivered =
      target !== undefined && target.alive && !this.network.isCut(message.from, message.to);
    if (message.type === 'snapshot') {
      this.queue.push(this.time + this.network.drawLatency(), {
        kind: 'snapshotReport',
        node: sender,
        incarnation: event.senderIncarnation,
        peer: message.to,
        ok: delivered,
      });
    }
    if (!delivered) {
      this.trace.record(this.time, message.to, () => `dropped ${describeMessage(message)}`);
      return;
    }
    this.counters.delivered++;
    target.deliver(message, event.snapshotData);
  }

  replyToClient(from: SimNode, request: ClientRequest, reply: ClientReply): void {
    const client = this.clients[request.client - 1]!;
    this.trace.record(
      this.time,
      from.id,
      () => `reply ${client.process}#${request.requestId} ${describeReply(reply)}`,
    );
    if (this.network.drawLoss()) return;
    this.queue.push(this.time + this.network.drawLatency(), {
      kind: 'clientReply',
      client,
      requestId: request.requestId,
      reply,
    });
  }

  schedulePersisted(node: SimNode, delayMs: number, incarnation: number): void {
    this.queue.push(this.time + delayMs, { kind: 'persisted', node, incarnation });
  }

  onAdvanced(node: SimNode): void {
    if (!node.confChanged) return;
    node.confChanged = false;
    const applied = node.kv.appliedIndex;
    if (applied <= this.confIndex) return;
    const conf = node.core.status().conf;
    const changed = describeConf(conf) !== describeConf(this.conf);
    this.conf = conf;
    this.confIndex = applied;
    if (!changed) return;
    this.counters.confChanges++;
    this.trace.record(this.time, node.id, () => `membership at ${applied}: ${describeConf(conf)}`);
    const members = new Set(membersOf(conf));
    for (const id of [...this.joining]) if (members.has(id)) this.joining.delete(id);
    // A member removed by a committed change is shut down, as an operator would.
    for (const other of this.nodes.values()) {
      if (!members.has(other.id) && !this.joining.has(other.id) && !other.removed) {
        other.crash();
        other.removed = true;
        this.trace.record(this.time, other.id, () => 'removed from the cluster: shut down');
      }
    }
  }

  onLeaderCommit(leader: SimNode, commit: number, term: number, confs: readonly ConfState[]): void {
    // Durable before acknowledged: a committed entry must survive any crash, so a majority of
    // each voter set (both, while joint) must hold it in stable storage already.
    const holds = (id: NodeId) => this.nodes.get(id)?.durable.holds(commit, term) === true;
    const quorumHolds = (conf: ConfState) =>
      [conf.voters, conf.votersOutgoing].every(
        (voters) => voters.length === 0 || voters.filter(holds).length > voters.length / 2,
      );
    if (confs.some(quorumHolds)) return;
    const conf = confs[0]!;
    throw new SafetyViolation(
      'durability',
      `${leader.id} committed ${commit}/${term}, but only ${[...new Set([...conf.voters, ...conf.votersOutgoing])].filter(holds).join(',') || 'nobody'} of ${describeConf(conf)} hold it durably`,
    );
  }

  memberIds(): readonly NodeId[] {
    return membersOf(this.conf);
  }

  sendToNode(client: SimClient, node: NodeId, request: ClientRequest): void {
    this.trace.record(
      this.time,
      client.process,
      () => `request #${request.requestId} to ${node}: ${JSON.stringify(request.input)}`,
    );
    if (this.network.drawLoss()) return;
    this.queue.push(this.time + this.network.drawLatency(), {
      kind: 'clientRequest',
      node,
      request,
    });
  }

  scheduleTimeout(client: SimClient, delayMs: number, requestId: number): void {
    this.queue.push(this.time + delayMs, { kind: 'clientTimeout', client, requestId });
  }

  scheduleWake(client: SimClient, delayMs: number): void {
    this.queue.push(this.time + delayMs, { kind: 'clientWake', client });
  }

  record(event: HistoryEvent): void {
    // Numbered as lines of the written history file (its header is line 1), so that the
    // checker's explanations point into the file that --history-out writes.
    const numbered = { ...event, line: this.historyEvents.length + 2 };
    this.historyEvents.push({ event: numbered, t: Math.round(this.time * 1000) / 1000 });
    this.trace.record(
      this.time,
      event.process,
      () => `history line ${numbered.line} ${JSON.stringify(event)}`,
    );
  }

  // ---------------------------------------------------------------------------------------
  // Nodes, faults, healing

  private addNode(node: SimNode): void {
    this.nodes.set(node.id, node);
    // Clocks drift: each node's tick is within ±5 % of nominal.
    this.tickMsOf.set(node.id, tickMs * (0.95 + this.random.float() * 0.1));
  }

  private startNode(node: SimNode): void {
    node.start();
    this.scheduleTick(node);
  }

  private scheduleTick(node: SimNode): void {
    this.queue.push(this.time + this.tickMsOf.get(node.id)!, {
      kind: 'tick',
      node,
      incarnation: node.incarnation,
    });
  }

  private nextFaultDelay(): number {
    return 20 + this.random.float() * this.faultGapMsMax;
  }

  private leader(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const node of this.nodes.values()) {
      if (!node.alive) continue;
      const status = node.core.status();
      if (status.role !== 'leader') continue;
      if (best === undefined || status.term > best.core.status().term) best = node;
    }
    return best;
  }

  private liveNodes(): SimNode[] {
    return [...this.nodes.values()].filter((node) => node.alive);
  }

  private injectFault(): void {
    const kind = this.pickFault();
    const members = membersOf(this.conf);
    const say = (text: string) => this.trace.record(this.time, 'sim', () => `fault: ${text}`);
    switch (kind) {
      case 'crash':
      case 'crashLeader': {
        // Down for a while; it restarts from its durable state only.
        const leader = this.leader();
        const candidates = this.liveNodes();
        if (candidates.length === 0) return;
        const victim =
          kind === 'crashLeader' && leader !== undefined ? leader : this.random.pick(candidates);
        victim.crash();
        this.counters.crashes++;
        const downMs =
          kind === 'crashLeader' ? 30 + this.random.float() * 400 : 50 + this.random.float() * 1500;
        say(`crash ${victim.id} for ${downMs.toFixed(0)} ms`);
        this.queue.push(this.time + downMs, { kind: 'restart', node: victim });
        return;
      }
      case 'reboot': {
        // Crash and restart at once: loses only what was not yet persisted.
        const candidates = this.liveNodes();
        if (candidates.length === 0) return;
        const victim = this.random.pick(candidates);
        victim.crash();
        this.counters.crashes++;
        this.startNode(victim);
        say(`reboot ${victim.id}`);
        return;
      }
      case 'partition': {
        // Symmetric partition into two sides.
        const shuffled = this.shuffle(members);
        const cut = this.random.between(1, Math.max(1, shuffled.length - 1));
        this.network.cutBetween(shuffled.slice(0, cut), shuffled.slice(cut));
        say(`partition ${shuffled.slice(0, cut).join(',')} | ${shuffled.slice(cut).join(',')}`);
        return;
      }
      case 'isolateLeader': {
        // The leader alone, or with a minority it can still replicate to but not commit with
        // (the setting of Raft's Figure 8).
        const leader = this.leader();
        if (leader === undefined) return;
        const others = this.shuffle(members.filter((id) => id !== leader.id));
        const minority = others.slice(
          0,
          this.random.int(Math.max(1, Math.floor((members.length - 1) / 2))),
        );
        const side = [leader.id, ...minority];
        this.network.cutBetween(
          side,
          members.filter((id) => !side.includes(id)),
        );
        say(
          `isolate leader ${leader.id}${minority.length > 0 ? ` with ${minority.join(',')}` : ''}`,
        );
        return;
      }
      case 'asymmetric': {
        // One node can send but not receive from some others (or the reverse).
        const node = this.random.pick(members);
        const others = members.filter((id) => id !== node && this.random.chance(0.6));
        const inbound = this.random.chance(0.5);
        for (const other of others) {
          if (inbound) this.network.cutOneWay(other, node);
          else this.network.cutOneWay(node, other);
        }
        say(
          `asymmetric: ${node} ${inbound ? 'hears nothing from' : 'cannot reach'} ${others.join(',') || 'nobody'}`,
        );
        return;
      }
      case 'partial': {
        // One link cut both ways; the two ends still reach everyone else.
        if (members.length < 2) return;
        const [a, b] = this.shuffle(members);
        this.network.cutBetween([a!], [b!]);
        say(`partial: cut ${a}-${b}`);
        return;
      }
      case 'heal':
        this.network.heal();
        say('network healed');
        return;
      case 'conditions':
        this.network.conditions = {
          ...this.chaosConditions,
          lossRate: this.random.pick([0, 0.01, 0.05, 0.2]),
          duplicateRate: this.random.pick([0, 0.02, 0.1]),
        };
        say(
          `loss ${this.network.conditions.lossRate}, dup ${this.network.conditions.duplicateRate}`,
        );
        return;
      case 'transfer': {
        const leader = this.leader();
        if (leader === undefined) return;
        const voters = this.conf.voters.filter((id) => id !== leader.id);
        if (voters.length === 0) return;
        const to = this.random.pick(voters);
        if (leader.transferLeadership(to)) say(`transfer leadership ${leader.id} -> ${to}`);
        return;
      }
      case 'churn':
        this.churn(say);
        return;
      case 'figure8': {
        const leader = this.leader();
        const others = members.filter((id) => id !== leader?.id);
        if (leader === undefined || others.length < 4) return;
        const follower = this.random.pick(others);
        this.network.heal();
        this.network.cutBetween(
          [leader.id, follower],
          members.filter((id) => id !== leader.id && id !== follower),
        );
        this.nemesis = {
          stage: 'awaitNewLeader',
          oldLeader: leader,
          follower,
          oldTerm: leader.core.status().term,
          newLeader: null,
          commitBefore: 0,
          deadline: this.time + 800,
        };
        say(`figure 8: cut leader ${leader.id} off with ${follower}`);
        this.queue.push(this.time + 5, { kind: 'nemesis' });
        return;
      }
    }
  }

  /** Advances the Figure 8 script; polls every 5 ms until its stage's deadline. */
  private stepNemesis(): void {
    const nemesis = this.nemesis;
    if (nemesis === null) return;
    const say = (text: string) => this.trace.record(this.time, 'sim', () => `figure 8: ${text}`);
    const end = (why: string) => {
      this.network.heal();
      this.nemesis = null;
      say(`${why}; network healed`);
    };
    if (this.calm) return end('calm phase');
    const { oldLeader } = nemesis;
    if (!oldLeader.alive) return end(`${oldLeader.id} is down`);
    const members = membersOf(this.conf);
    const poll = () => this.queue.push(this.time + 5, { kind: 'nemesis' });
    switch (nemesis.stage) {
      case 'awaitNewLeader': {
        const leader = this.leader();
        if (leader !== undefined && leader !== oldLeader && leader.id !== nemesis.follower) {
          nemesis.newLeader = leader;
          nemesis.stage = 'isolateNewLeader';
          // Give clients a moment to find it, but cut it off before its entries spread.
          this.queue.push(this.time + this.random.float() * 40, { kind: 'nemesis' });
          return;
        }
        if (this.time > nemesis.deadline) return end('no new leader');
        return poll();
      }
      case 'isolateNewLeader': {
        const newLeader = nemesis.newLeader!;
        this.network.heal();
        this.network.cutBetween([newLeader.id], members);
        say(`cut new leader ${newLeader.id} off; ${oldLeader.id} reconnected`);
        nemesis.stage = 'awaitOldLeader';
        nemesis.deadline = this.time + 1000;
        return poll();
      }
      case 'awaitOldLeader': {
        const status = oldLeader.core.status();
        if (status.role === 'leader' && status.term > nemesis.oldTerm) {
          nemesis.stage = 'awaitCommit';
          nemesis.commitBefore = status.commit;
          nemesis.deadline = this.time + 300;
          say(`${oldLeader.id} leads again in term ${status.term} at commit ${status.commit}`);
          return poll();
        }
        if (this.time > nemesis.deadline) return end(`${oldLeader.id} did not lead again`);
        return poll();
      }
      case 'awaitCommit': {
        const status = oldLeader.core.status();
        if (status.commit > nemesis.commitBefore || this.time > nemesis.deadline) {
          oldLeader.crash();
          this.counters.crashes++;
          this.queue.push(this.time + 100 + this.random.float() * 500, {
            kind: 'restart',
            node: oldLeader,
          });
          return end(`crashed ${oldLeader.id} at commit ${status.commit}`);
        }
        return poll();
      }
    }
  }

  /** Draws a fault kind from this run's profile. */
  private pickFault(): FaultKind {
    const weights = this.faultWeights;
    let total = 0;
    for (const weight of Object.values(weights)) total += weight;
    let roll = this.random.float() * total;
    for (const [kind, weight] of Object.entries(weights) as [FaultKind, number][]) {
      roll -= weight;
      if (roll < 0) return kind;
    }
    return 'heal';
  }

  /** One membership change, proposed on the current leader. */
  private churn(say: (text: string) => void): void {
    const leader = this.leader();
    if (leader === undefined || isJoint(this.conf)) return;
    const { voters, learners } = this.conf;
    const roll = this.random.float();
    let change: ConfChange;
    let joiner: SimNode | null = null;
    if (roll < 0.35 && voters.length + learners.length < 7) {
      joiner = SimNode.joining(`n${++this.nodeSeq}`, this);
      change = {
        changes: [{ type: this.random.chance(0.7) ? 'addLearner' : 'addVoter', id: joiner.id }],
      };
    } else if (roll < 0.6 && learners.length > 0) {
      change = { changes: [{ type: 'addVoter', id: this.random.pick(learners) }] };
    } else if (roll < 0.85 && voters.length + learners.length > 3) {
      const target = this.random.pick([...voters, ...learners]);
      if (voters.length === 1 && voters[0] === target) return;
      change = { changes: [{ type: 'removeNode', id: target }] };
    } else if (voters.length >= 3) {
      // Replace a voter in one joint change.
      joiner = SimNode.joining(`n${++this.nodeSeq}`, this);
      change = {
        changes: [
          { type: 'addVoter', id: joiner.id },
          { type: 'removeNode', id: this.random.pick(voters) },
        ],
      };
    } else {
      return;
    }
    if (joiner !== null) {
      this.addNode(joiner);
      this.joining.add(joiner.id);
      this.startNode(joiner);
    }
    const result = leader.proposeConfChange(change);
    const text = change.changes.map((item) => `${item.type} ${item.id}`).join(' + ');
    if (typeof result === 'string') {
      say(`conf change ${text} refused: ${result}`);
      if (joiner !== null) this.discardJoiner(joiner);
      return;
    }
    say(`conf change ${text} proposed by ${leader.id} at ${result}`);
  }

  private discardJoiner(joiner: SimNode): void {
    joiner.crash();
    joiner.removed = true;
    this.joining.delete(joiner.id);
  }

  private heal(): void {
    this.calm = true;
    this.network.heal();
    this.network.conditions = calmConditions();
    for (const client of this.clients) client.stop();
    // Every node not shut down comes back, members and would-be joiners alike; a joiner whose
    // change never committed just idles (it has no membership, so it never campaigns).
    for (const node of this.nodes.values()) {
      if (!node.removed && !node.alive) this.startNode(node);
    }
    this.trace.record(
      this.time,
      'sim',
      () => `heal: all links restored, loss off, members restarted`,
    );
    this.queue.push(this.time + 50, { kind: 'converged?' });
  }

  /** A leader leads every member, all apply the same entries and hold the same state. */
  private isConverged(): boolean {
    const leader = this.leader();
    if (leader === undefined) return false;
    const status = leader.core.status();
    if (status.commit !== status.lastIndex || isJoint(status.conf)) return false;
    const members = membersOf(status.conf);
    let state: Uint8Array | null = null;
    for (const id of members) {
      const node = this.nodes.get(id);
      if (node === undefined || !node.alive || node.busy) return false;
      if (node.kv.appliedIndex !== status.commit) return false;
      const snapshot = node.kv.snapshot();
      if (state === null) state = snapshot;
      else if (!equalBytes(state, snapshot)) {
        throw new SafetyViolation(
          'state machine safety',
          `${node.id} and ${members[0]!} applied up to ${status.commit} but hold different states`,
        );
      }
    }
    // Joiners that never made it in are not members; nothing else may still be pending.
    return this.clients.every((client) => !client.active);
  }

  private describeCluster(): string {
    const parts: string[] = [];
    for (const node of this.nodes.values()) {
      if (node.removed) continue;
      if (!node.alive) {
        parts.push(`${node.id} down`);
        continue;
      }
      const status = node.core.status();
      parts.push(
        `${node.id} ${status.role} t${status.term} leader '${status.leader}' commit ${status.commit} applied ${node.kv.appliedIndex} last ${status.lastIndex}`,
      );
    }
    return `${parts.join('; ')}; membership ${describeConf(this.conf)}; cut links ${this.network.describeCuts()}`;
  }

  private shuffle<T>(items: readonly T[]): T[] {
    const copy = [...items];
    for (let k = copy.length - 1; k > 0; k--) {
      const j = this.random.int(k + 1);
      [copy[k], copy[j]] = [copy[j]!, copy[k]!];
    }
    return copy;
  }
}

function describeConf(conf: ConfState): string {
  const outgoing =
    conf.votersOutgoing.length > 0 ? ` (joint with ${conf.votersOutgoing.join(',')})` : '';
  const learners = conf.learners.length > 0 ? ` learners ${conf.learners.join(',')}` : '';
  return `voters ${conf.voters.join(',')}${outgoing}${learners}`;
}

function describeReply(reply: ClientReply): string {
  switch (reply.kind) {
    case 'result':
      return JSON.stringify(reply.output);
    case 'notLeader':
      return `not leader (leader '${reply.leader}')`;
    case 'dropped':
      return 'dropped';
    case 'busy':
      return `busy ${reply.reason}`;
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return false;
  return true;
}
