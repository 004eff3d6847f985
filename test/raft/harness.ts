// A deterministic in-memory network of RaftCores for the scenario tests: it runs each node's
// Ready loop exactly as the contract says (send, persist, send after persist, apply, advance),
// keeps a durable store per node for crash/restart, and lets tests drop, cut or inspect links.
import { EntryType, payloadOf, type EntryBatch } from '../../src/raft/batch.js';
import { RaftCore, type RaftCoreOptions } from '../../src/raft/core.js';
import type {
  ConfState,
  HardState,
  LogStore,
  Message,
  NodeId,
  ReadState,
  Ready,
  SnapshotMeta,
} from '../../src/raft/types.js';
import type { RaftLimits } from '../../src/config.js';
import { createTestLog } from './test-log.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One applied entry, as the harness's state machine records it. */
export interface AppliedEntry {
  readonly index: number;
  readonly term: number;
  readonly type: number;
  readonly data: string;
}

/** What survives a crash: exactly what Ready handling wrote. */
export interface DurableStore {
  hardState: HardState;
  snapshot: SnapshotMeta | null;
  /** The state machine at the snapshot: the applied entries up to its index. */
  snapshotData: AppliedEntry[];
  log: LogStore;
}

/** A member of the test network. */
export interface TestNode {
  readonly id: NodeId;
  core: RaftCore;
  /** The in-memory log the core owns (read-only for tests). */
  log: LogStore;
  durable: DurableStore;
  /** The state machine: every entry applied, in order (restored from snapshots). */
  applied: AppliedEntry[];
  readStates: ReadState[];
  readies: Ready[];
  alive: boolean;
  /** Snapshot bytes received with a SnapshotRequest, waiting for the Ready that installs it. */
  incomingSnapshot: AppliedEntry[] | null;
}

/** Options of {@link Network}. */
export interface NetworkOptions {
  limits?: Partial<RaftLimits>;
  /** Seed of the per-node random sources (a node's source is seeded with seed + its position). */
  seed?: number;
  /** Extra members created without bootstrap membership (nodes that will join later). */
  joiners?: readonly NodeId[];
  learners?: readonly NodeId[];
  unsafeCommitByCountingReplicas?: boolean;
  /** Record every message handed to the network, for assertions. */
  recordMessages?: boolean;
  trace?: (event: string, fields: Record<string, unknown>) => void;
}

/** A small deterministic PRNG (mulberry32) for the cores' election jitter. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Text payload helper. */
export function bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Copies a log (durable copy, or the restored log of a restart). */
export function copyLog(source: LogStore): LogStore {
  const log = createTestLog();
  const first = source.firstIndex();
  const last = source.lastIndex();
  log.reset(first - 1, source.termAt(first - 1));
  if (last >= first) log.append(source.slice(first, last + 1, Infinity));
  return log;
}

/** The terms of a log from `from` to its end, for comparisons. */
export function termsOf(log: LogStore, from = log.firstIndex()): number[] {
  const terms: number[] = [];
  for (let index = from; index <= log.lastIndex(); index++) terms.push(log.termAt(index));
  return terms;
}

/** Builds a log holding entries of the given terms from index 1 (payload "i@t"). */
export function logWithTerms(terms: readonly number[]): LogStore {
  const log = createTestLog();
  terms.forEach((term, k) => {
    const batch: EntryBatch = {
      firstIndex: k + 1,
      count: 1,
      terms: new Float64Array([term]),
      types: new Uint8Array([EntryType.Normal]),
      ends: new Uint32Array([bytes(`${k + 1}@${term}`).length]),
      data: bytes(`${k + 1}@${term}`),
    };
    log.append(batch);
  });
  return log;
}

/**
 * A network of RaftCores. Messages queue in order; `deliverAll` / `stabilize` run until the
 * network is quiet. Tests shape delivery with `cut`, `isolate`, `dropIf` and `heal`.
 */
export class Network {
  readonly nodes = new Map<NodeId, TestNode>();
  queue: Message[] = [];
  /** Every message that entered the network (when recordMessages). */
  readonly sent: Message[] = [];
  /** Requests the cores dropped without answering (allowed, but counted). */
  droppedRequests = 0;
  private rpcSeq = 0;
  /** Per node: rpcIds of requests it stepped, with the response type each must get. */
  private readonly outstandingRpcs = new Map<NodeId, Map<number, Message['type']>>();
  private readonly cuts = new Set<string>();
  private dropFilters: ((message: Message) => boolean)[] = [];
  private readonly options: NetworkOptions;

  constructor(
    voters: readonly NodeId[],
    options: NetworkOptions = {},
    logs: ReadonlyMap<NodeId, LogStore> = new Map(),
    hardStates: ReadonlyMap<NodeId, HardState> = new Map(),
  ) {
    this.options = options;
    const conf: ConfState = { voters, votersOutgoing: [], learners: options.learners ?? [] };
    const all = [...voters, ...(options.learners ?? []), ...(options.joiners ?? [])];
    all.forEach((id, position) => {
      const joining = options.joiners?.includes(id) === true;
      const nodeConf = joining ? { voters: [], votersOutgoing: [], learners: [] } : conf;
      const log = logs.get(id) ?? createTestLog();
      const hardState = hardStates.get(id) ?? { term: 0, vote: '', commit: 0 };
      const snapshot = joining ? null : { index: 0, term: 0, conf: nodeConf };
      const durable: DurableStore = {
        hardState,
        snapshot,
        snapshotData: [],
        log: copyLog(log),
      };
      const node: TestNode = {
        id,
        core: this.buildCore(id, position, log, hardState, nodeConf, snapshot, 0),
        log,
        durable,
        applied: [],
        readStates: [],
        readies: [],
        alive: true,
        incomingSnapshot: null,
      };
      this.nodes.set(id, node);
    });
  }

  private buildCore(
    id: NodeId,
    position: number,
    log: LogStore,
    hardState: HardState,
    conf: ConfState,
    snapshot: SnapshotMeta | null,
    applied: number,
  ): RaftCore {
    const options: RaftCoreOptions = {
      id,
      random: mulberry32((this.options.seed ?? 1) * 7919 + position),
      log,
      hardState,
      conf,
      snapshot,
      applied,
    };
    if (this.options.limits !== undefined) options.limits = this.options.limits;
    if (this.options.trace !== undefined) options.trace = this.options.trace;
    if (this.options.unsafeCommitByCountingReplicas === true) {
      options.unsafeCommitByCountingReplicas = true;
    }
    return new RaftCore(options);
  }

  node(id: NodeId): TestNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  core(id: NodeId): RaftCore {
    return this.node(id).core;
  }

  /** Handles every pending Ready of every live node, queueing the messages. */
  processReadies(): boolean {
    let any = false;
    for (const node of this.nodes.values()) {
      while (node.alive && node.core.hasReady()) {
        any = true;
        this.handleReady(node);
      }
    }
    return any;
  }

  /** One node's Ready, in the contract's order. */
  handleReady(node: TestNode): Ready {
    const ready = node.core.ready();
    node.readies.push(ready);
    this.checkReadyContract(node, ready);
    for (const message of ready.messages) this.enqueue(message);
    const { durable } = node;
    if (ready.snapshot !== null) {
      durable.snapshot = ready.snapshot;
      durable.snapshotData = node.incomingSnapshot ?? [];
      durable.log.reset(ready.snapshot.index, ready.snapshot.term);
    }
    if (ready.entries !== null) writeEntries(durable.log, ready.entries);
    if (ready.hardState !== null) durable.hardState = ready.hardState;
    for (const message of ready.messagesAfterPersist) this.enqueue(message);
    if (ready.snapshot !== null) {
      node.applied = [...(node.incomingSnapshot ?? [])];
      node.incomingSnapshot = null;
    }
    if (ready.committed !== null) {
      const batch = ready.committed;
      for (let k = 0; k < batch.count; k++) {
        const index = batch.firstIndex + k;
        const last = node.applied.at(-1);
        if (last !== undefined && last.index !== index - 1) {
          throw new Error(`${node.id} applies ${index} after ${last.index}`);
        }
        node.applied.push({
          index,
          term: batch.terms[k]!,
          type: batch.types[k]!,
          data: decoder.decode(payloadOf(batch, k)),
        });
      }
    }
    node.readStates.push(...ready.readStates);
    node.core.advance();
    return ready;
  }

  /**
   * The contract on messages: requests a leader may send early in `messages`, everything else
   * after persistence; each request stepped since the last Ready answered at most once, now,
   * with its rpcId and the right response type.
   */
  private checkReadyContract(node: TestNode, ready: Ready): void {
    for (const message of ready.messages) {
      if (!['append', 'heartbeat', 'snapshot', 'timeoutNow'].includes(message.type)) {
        throw new Error(`${node.id}: ${message.type} in Ready.messages`);
      }
      if (message.rpcId !== undefined) throw new Error(`${node.id}: request with an rpcId`);
    }
    const outstanding = this.outstandingRpcs.get(node.id) ?? new Map<number, Message['type']>();
    for (const message of ready.messagesAfterPersist) {
      if (['append', 'heartbeat', 'snapshot', 'timeoutNow'].includes(message.type)) {
        throw new Error(`${node.id}: ${message.type} in Ready.messagesAfterPersist`);
      }
      if (message.type === 'vote') continue;
      if (message.rpcId === undefined) throw new Error(`${node.id}: response without rpcId`);
      const expected = outstanding.get(message.rpcId);
      if (expected !== message.type) {
        throw new Error(
          `${node.id}: ${message.type} for rpcId ${message.rpcId}, expected ${String(expected)}`,
        );
      }
      outstanding.delete(message.rpcId);
    }
    this.droppedRequests += outstanding.size;
    outstanding.clear();
  }

  private enqueue(message: Message): void {
    if (this.options.recordMessages === true) this.sent.push(message);
    this.queue.push(message);
  }

  /** Whether the network would deliver `message` now. */
  private passes(message: Message): boolean {
    if (this.cuts.has(`${message.from}>${message.to}`)) return false;
    const to = this.nodes.get(message.to);
    const from = this.nodes.get(message.from);
    if (to === undefined || !to.alive || from === undefined || !from.alive) return false;
    return !this.dropFilters.some((drop) => drop(message));
  }

  /** Delivers the queued messages once (new ones produced meanwhile wait). */
  deliverQueued(): number {
    const batch = this.queue;
    this.queue = [];
    let delivered = 0;
    for (const message of batch) {
      if (!this.passes(message)) {
        this.onLost(message);
        continue;
      }
      const target = this.node(message.to);
      if (message.type === 'snapshot') {
        target.incomingSnapshot = this.node(message.from).durable.snapshotData.filter(
          (entry) => entry.index <= message.snapshot.index,
        );
      }
      const responseType = responseTypeOf(message.type);
      if (responseType !== null) {
        const rpcId = ++this.rpcSeq;
        let outstanding = this.outstandingRpcs.get(target.id);
        if (outstanding === undefined) {
          outstanding = new Map();
          this.outstandingRpcs.set(target.id, outstanding);
        }
        outstanding.set(rpcId, responseType);
        target.core.step({ ...message, rpcId });
        if (message.type === 'snapshot')
          this.node(message.from).core.reportSnapshot(target.id, true);
      } else {
        target.core.step(message);
      }
      delivered++;
    }
    return delivered;
  }

  /**
   * Delivers, drops or keeps (for later, so reordering them) each queued message as `decide`
   * says; the messages produced meanwhile queue behind the kept ones.
   */
  deliverSome(decide: (message: Message) => 'deliver' | 'drop' | 'keep'): void {
    const batch = this.queue;
    this.queue = [];
    const deliver: Message[] = [];
    const keep: Message[] = [];
    for (const message of batch) {
      const decision = decide(message);
      if (decision === 'deliver') deliver.push(message);
      else if (decision === 'keep') keep.push(message);
      else this.onLost(message);
    }
    this.queue = deliver;
    this.deliverQueued();
    this.queue = [...keep, ...this.queue];
  }

  /** A driver learns that a snapshot transfer failed; other losses go unnoticed. */
  private onLost(message: Message): void {
    if (message.type !== 'snapshot') return;
    const sender = this.nodes.get(message.from);
    if (sender?.alive === true) sender.core.reportSnapshot(message.to, false);
  }

  /** Runs Ready loops and deliveries until nothing moves. */
  stabilize(roundsMax = 1000): void {
    for (let round = 0; round < roundsMax; round++) {
      const readied = this.processReadies();
      if (this.queue.length === 0 && !readied) return;
      this.deliverQueued();
    }
    throw new Error('network did not stabilize');
  }

  /** Ticks every live node `times` times, stabilizing after each tick. */
  tickAll(times = 1): void {
    for (let k = 0; k < times; k++) {
      for (const node of this.nodes.values()) if (node.alive) node.core.tick();
      this.stabilize();
    }
  }

  /** Ticks one node `times` times, stabilizing after each tick. */
  tick(id: NodeId, times = 1): void {
    for (let k = 0; k < times; k++) {
      this.node(id).core.tick();
      this.stabilize();
    }
  }

  /** Makes `id` campaign and stabilizes. */
  campaign(id: NodeId): void {
    this.core(id).campaign();
    this.stabilize();
  }

  /** Elects `id` (campaign + stabilize) and checks that it won. */
  elect(id: NodeId): void {
    this.campaign(id);
    if (this.core(id).status().role !== 'leader') {
      throw new Error(`${id} did not win: ${JSON.stringify(this.core(id).status().role)}`);
    }
  }

  /** Proposes a text command on `id` and stabilizes. */
  propose(id: NodeId, text: string): { index: number; term: number } {
    const result = this.core(id).propose(bytes(text));
    this.stabilize();
    return result;
  }

  /** Drops messages both ways between `a` and `b`. */
  cut(a: NodeId, b: NodeId): void {
    this.cuts.add(`${a}>${b}`);
    this.cuts.add(`${b}>${a}`);
  }

  /** Drops messages from `a` to `b` only. */
  cutOneWay(a: NodeId, b: NodeId): void {
    this.cuts.add(`${a}>${b}`);
  }

  /** Cuts `id` off from every other node. */
  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) if (other !== id) this.cut(id, other);
  }

  /** Splits the network into groups that cannot talk to each other. */
  partition(...groups: NodeId[][]): void {
    for (const group of groups) {
      for (const other of groups) {
        if (other === group) continue;
        for (const a of group) for (const b of other) this.cutOneWay(a, b);
      }
    }
  }

  /** Drops every message for which `drop` returns true (until heal). */
  dropIf(drop: (message: Message) => boolean): void {
    this.dropFilters.push(drop);
  }

  /** Restores every link and removes every drop filter. */
  heal(): void {
    this.cuts.clear();
    this.dropFilters = [];
  }

  /** Kills `id`: it loses everything not durable; queued messages to and from it are lost. */
  crash(id: NodeId): void {
    const node = this.node(id);
    node.alive = false;
    this.outstandingRpcs.delete(id);
    const lost = this.queue.filter((message) => message.to === id || message.from === id);
    this.queue = this.queue.filter((message) => message.to !== id && message.from !== id);
    for (const message of lost) this.onLost(message);
  }

  /** Restarts `id` from its durable store, as a real driver would on boot. */
  restart(id: NodeId): void {
    const node = this.node(id);
    const position = [...this.nodes.keys()].indexOf(id);
    const { durable } = node;
    const log = copyLog(durable.log);
    disposeLog(node.log);
    // The state machine is in memory: it comes back from the snapshot, and the committed
    // entries after it are applied again through Readys.
    const snapshot = durable.snapshot;
    const applied = snapshot?.index ?? 0;
    const conf = snapshot?.conf ?? { voters: [], votersOutgoing: [], learners: [] };
    node.core = this.buildCore(id, position, log, durable.hardState, conf, snapshot, applied);
    node.log = log;
    node.applied = [...durable.snapshotData];
    node.readStates = [];
    node.incomingSnapshot = null;
    node.alive = true;
  }

  /** Adds a node created to join (no membership), for conf change tests. */
  addJoiner(id: NodeId): TestNode {
    const log = createTestLog();
    const empty: ConfState = { voters: [], votersOutgoing: [], learners: [] };
    const node: TestNode = {
      id,
      core: this.buildCore(
        id,
        this.nodes.size,
        log,
        { term: 0, vote: '', commit: 0 },
        empty,
        null,
        0,
      ),
      log,
      durable: {
        hardState: { term: 0, vote: '', commit: 0 },
        snapshot: null,
        snapshotData: [],
        log: createTestLog(),
      },
      applied: [],
      readStates: [],
      readies: [],
      alive: true,
      incomingSnapshot: null,
    };
    this.nodes.set(id, node);
    return node;
  }

  /** Releases every log (WASM logs hold instances; thousands of runs would exhaust memory). */
  dispose(): void {
    for (const node of this.nodes.values()) {
      disposeLog(node.log);
      disposeLog(node.durable.log);
    }
  }

  /** Leaders by term among live nodes. */
  leaders(): TestNode[] {
    return [...this.nodes.values()].filter(
      (node) => node.alive && node.core.status().role === 'leader',
    );
  }

  /** The one live leader; throws if there is not exactly one. */
  leader(): TestNode {
    const leaders = this.leaders();
    if (leaders.length !== 1) {
      throw new Error(`expected one leader, found ${leaders.map((node) => node.id).join(',')}`);
    }
    return leaders[0]!;
  }

  /** Takes a snapshot on `id` at its applied index and compacts the log up to `compactTo`. */
  snapshotAndCompact(id: NodeId, compactTo?: number): SnapshotMeta {
    const node = this.node(id);
    const status = node.core.status();
    const index = status.applied;
    const meta: SnapshotMeta = {
      index,
      term: node.durable.log.termAt(index),
      conf: status.conf,
    };
    node.core.snapshotCreated(meta);
    node.durable.snapshot = meta;
    node.durable.snapshotData = node.applied.filter((entry) => entry.index <= index);
    node.core.compact(compactTo ?? index);
    node.durable.log.compactTo(compactTo ?? index);
    return meta;
  }
}

/** Hands a WASM log's instance back to the kernel's pool (no-op for the TS twin). */
export function disposeLog(log: LogStore): void {
  const disposable = log as LogStore & { dispose?: () => void };
  if (typeof disposable.dispose === 'function') disposable.dispose();
}

function responseTypeOf(type: Message['type']): Message['type'] | null {
  switch (type) {
    case 'vote':
      return 'voteResp';
    case 'append':
    case 'snapshot':
      return 'appendResp';
    case 'heartbeat':
      return 'heartbeatResp';
    default:
      return null;
  }
}

/** Writes a Ready's entries to a durable log, replacing any from their first index on. */
export function writeEntries(log: LogStore, entries: EntryBatch): void {
  if (entries.count === 0) return;
  if (entries.firstIndex <= log.lastIndex()) log.truncateFrom(entries.firstIndex);
  if (entries.firstIndex !== log.lastIndex() + 1) {
    throw new Error(
      `durable log gap: entries from ${entries.firstIndex}, log ends at ${log.lastIndex()}`,
    );
  }
  log.append(entries);
}

/** The applied data of a node, without Noop and ConfChange entries. */
export function appliedCommands(node: TestNode): string[] {
  return node.applied.filter((entry) => entry.type === EntryType.Normal).map((entry) => entry.data);
}
