/**
 * ConsensusManager: the seed's facade over the three components — {@link RaftConsensus}
 * (consensus inside a region), {@link ReplicationManager} (between regions) and
 * {@link ConflictResolver} (merging what other regions send) — around one replicated state:
 * the versioned key-value store ({@link KvStateMachine}) and the region configuration
 * ({@link RegionState}). The data flow is DESIGN.md's: a write goes to the leader, is stamped
 * with the leader's hybrid logical clock, committed through Raft and applied (getting its dot);
 * committed local writes are then shipped to every region by the leader, and the strategy
 * decides how long the writer waits for them.
 *
 * The Raft log carries four kinds of command (see `replicatedCommands`): `kv` (local writes),
 * `replication` (batches from other regions), `regions` (region changes and cursors), and any
 * other name, which goes to the application's callback (`registerApplyCommandCallback`).
 * Snapshots hold the key-value state, the region state and, when given, the application's.
 *
 * Peer messages: with `listen`, the manager serves its own HTTP listener (the Raft peer routes
 * and `/v1/replication/*`) and talks to peers over HTTP; without it, wire `manager.raft` to a
 * transport yourself (e.g. LocalTransport) and route `/v1/replication/*` to
 * `manager.replication` (mountReplicationRoutes does it for a hyper-express server, as the
 * node does).
 *
 * @example
 * ```ts
 * const manager = new ConsensusManager({
 *   nodeId: 'node1',
 *   raftNodes: [{ id: 'node1', host: '127.0.0.1', port: 8001 }],
 *   region: 'us-east',
 *   replicationStrategy: ReplicationStrategy.ASYNCHRONOUS,
 *   conflictResolutionStrategy: ConflictResolutionStrategy.LATEST_TIMESTAMP,
 *   listen: true,
 * });
 * await manager.initialize();
 * await manager.addReplicationRegion({ id: 'eu-west', host: '10.0.2.1', port: 7001 });
 * const receipt = await manager.replicateData('k', 'v');
 * await manager.shutdown();
 * ```
 */
import { crc32 } from 'node:zlib';
import { Server } from 'hyper-express';
import type { Logger } from 'pino';
import { pino } from 'pino';
import type { ConflictLimits, KvLimits, ReplicationLimits } from '../config.js';
import { resolveConflictLimits, resolveReplicationLimits } from '../config.js';
import {
  ConflictResolutionStrategy,
  ConflictResolver,
  type CustomConflictResolver,
  type ResolutionStats,
} from '../conflict/conflict-resolver.js';
import type { Version } from '../conflict/dvv.js';
import { Hlc } from '../conflict/hlc.js';
import { BadRequestError, StorageError } from '../errors.js';
import type { DeleteConditions, PutConditions } from '../kv/codec.js';
import { KvStateMachine, type KvResult, type RemoteBatchResult } from '../kv/state-machine.js';
import {
  decodeStampedCommand,
  encodeStampedCommand,
  stampedCommandMarker,
} from '../kv/versioned-codec.js';
import { HttpRegionClient, type RegionClient } from '../replication/client.js';
import { RegionState, type RegionCommandResult } from '../replication/region-state.js';
import {
  ReplicationManager,
  type ReplicationCounters,
  type ReplicationHost,
} from '../replication/replication-manager.js';
import { mountReplicationRoutes } from '../replication/routes.js';
import {
  ReplicationStrategy,
  checkRegionId,
  replicatedCommands,
  type RegionInfo,
  type ReplicationFallback,
  type ReplicationReceipt,
  type ReplicationStatus,
} from '../replication/types.js';
import { RequestSigner } from '../security/request-signer.js';
import { Secret, secretBytesMin } from '../security/secret.js';
import { HttpPeerTransport } from '../transport/client.js';
import { closeServer, installErrorHandlers } from '../transport/http.js';
import { mountPeerRoutes, type PeerRoutes } from '../transport/server.js';
import {
  RaftConsensus,
  captureOrTake,
  type ApplyCommandCallback,
  type CommandResult,
  type RaftConsensusOptions,
  type RaftMember,
  type RaftNodeInfo,
  type RaftState,
  type SnapshotCallbacks,
  type SnapshotEncoder,
} from './raft-consensus.js';

/** The seed's ConsensusConfig, typed, with what a TypeScript deployment needs besides. */
export interface ConsensusConfig {
  /** This node's id, one of `raftNodes` (unless joining). */
  readonly nodeId: string;
  /** The members of this region's Raft cluster. */
  readonly raftNodes: readonly RaftNodeInfo[];
  /**
   * This region's id (1-64 letters, digits, '.', '_', '-'): the same on every node of the
   * cluster, different from every other region's, and never changed. Default 'default'.
   */
  readonly region?: string;
  /** Default ASYNCHRONOUS. */
  readonly replicationStrategy?: ReplicationStrategy;
  /** Default LATEST_TIMESTAMP; every region must use the same. */
  readonly conflictResolutionStrategy?: ConflictResolutionStrategy;
  /** What a sync / semi-sync write does when its regions do not answer in time. Default 'fail'. */
  readonly replicationFallback?: ReplicationFallback;
  readonly replicationLimits?: Partial<ReplicationLimits>;
  /** Clock offset bound (skew detection) and sibling bound of MULTI_VALUE. */
  readonly conflictLimits?: Partial<ConflictLimits>;
  readonly kvLimits?: Partial<KvLimits>;
  /** Options of the RaftConsensus (persistence, tick, timeouts, join, ...). */
  readonly raft?: RaftConsensusOptions;
  /** How requests reach other regions. Default: HTTP. */
  readonly regionClient?: RegionClient;
  /**
   * Serve Raft peers and other regions on an HTTP listener of this manager's own: `true`
   * listens on this node's host and port from `raftNodes`. Default: no listener (wire
   * `raft` and `replication` yourself).
   */
  readonly listen?: boolean | { readonly host: string; readonly port: number };
  /**
   * Shared by the region's members (at least 16 bytes): with `listen`, every peer RPC this
   * manager sends is signed with it and every one it receives must be (401 otherwise, and
   * nothing changes). Default: peers are not authenticated.
   */
  readonly clusterSecret?: Secret;
  /**
   * Shared by every region that replicates with this one: region requests sent by the default
   * HTTP region client are signed with it, and, with `listen`, received ones must be.
   * Default: the cluster secret.
   */
  readonly regionSecret?: Secret;
  /** Where problems and region events are logged. Default: silent. */
  readonly logger?: Logger;
  /** The application's own state, for commands it submits: included in snapshots. */
  readonly appSnapshots?: SnapshotCallbacks;
  /** Physical clock of the HLC, in ms since the epoch (tests inject one). Default Date.now. */
  readonly wallClockMs?: () => number;
}

/** What a key-value write returns. */
export interface WriteOutcome {
  readonly index: number;
  readonly term: number;
  readonly result: KvResult;
  /** How the write replicated to other regions; null when it changed nothing. */
  readonly replication: ReplicationReceipt | null;
}

/** Raft commands the manager applies itself; the application's callback never sees them. */
const reservedCommands = new Set<string>(Object.values(replicatedCommands));
const envelopeMagic = [0x50, 0x43, 0x4d, 0x53]; // "PCMS"
const envelopeVersion = 1;
const plainKvMagic = [0x50, 0x4b, 0x56, 0x53]; // "PKVS"
const encoder = new TextEncoder();

/** The seed's ConsensusManager; see the module comment. */
export class ConsensusManager implements ReplicationHost {
  /** Consensus inside this region. */
  readonly raft: RaftConsensus;
  /** Replication to other regions. */
  readonly replication: ReplicationManager;
  /** Merges other regions' writes; its stats are `getConflictResolutionStats()`. */
  readonly conflictResolver: ConflictResolver;
  /** The replicated key-value state. */
  readonly kv: KvStateMachine;
  /** The replicated region configuration. */
  readonly regionState = new RegionState();
  /** This region's id. */
  readonly region: string;
  /** The hybrid logical clock that stamps writes this node proposes as leader. */
  readonly clock: Hlc;

  private readonly nodeId: string;
  private readonly logger: Logger;
  private readonly appSnapshots: SnapshotCallbacks | undefined;
  private readonly listenAt: { host: string; port: number } | null;
  private readonly peerSigner: RequestSigner | null;
  private readonly regionSigner: RequestSigner | null;
  /** Limits of replication between regions (batch sizes, timeouts), validated. */
  readonly replicationLimits: ReplicationLimits;
  private applyCallback: ApplyCommandCallback | null = null;
  private state: 'new' | 'running' | 'stopped' = 'new';
  private server: Server | null = null;
  private peerRoutes: PeerRoutes | null = null;
  private transport: HttpPeerTransport | null = null;
  private peerWatcher: NodeJS.Timeout | null = null;
  private peerSignature = '';
  private observedClock: Version['siblings'][number]['hlc'] | null = null;
  private regionMismatchLogged = false;

  constructor(config: ConsensusConfig) {
    if (typeof config !== 'object' || config === null) {
      throw new TypeError('Invalid config: expected a ConsensusConfig object');
    }
    this.nodeId = config.nodeId;
    this.region = config.region ?? 'default';
    checkRegionId(this.region, 'region');
    this.logger = config.logger ?? pino({ level: 'silent' });
    this.appSnapshots = config.appSnapshots;
    const conflictLimits = resolveConflictLimits(config.conflictLimits);
    const replicationLimits = resolveReplicationLimits(config.replicationLimits);
    this.replicationLimits = replicationLimits;
    this.clock = new Hlc({
      node: this.region,
      maxClockOffsetMs: conflictLimits.maxClockOffsetMs,
      ...(config.wallClockMs === undefined ? {} : { wallClockMs: config.wallClockMs }),
    });
    this.conflictResolver = new ConflictResolver(
      config.conflictResolutionStrategy ?? ConflictResolutionStrategy.LATEST_TIMESTAMP,
      {
        ...conflictLimits,
        ...(config.wallClockMs === undefined ? {} : { wallClockMs: config.wallClockMs }),
      },
    );
    this.kv = new KvStateMachine({
      region: this.region,
      conflictResolver: this.conflictResolver,
      ...(config.kvLimits === undefined ? {} : { limits: config.kvLimits }),
    });
    this.peerSigner = signerOf('clusterSecret', config.clusterSecret, 'peer');
    this.regionSigner =
      signerOf('regionSecret', config.regionSecret, 'region') ??
      signerOf('clusterSecret', config.clusterSecret, 'region');
    this.raft = new RaftConsensus(config.nodeId, config.raftNodes, config.raft ?? {});
    // Borrowed: the key-value and region state machines copy what they keep, and apply()
    // copies for the application's callback.
    this.raft.registerApplyCommandCallback(
      (command, data, entry) => this.apply(command, data, entry),
      { borrowData: true },
    );
    this.raft.registerSnapshotCallbacks({
      // Only the bootstrap snapshot, inside initialize(): no shutdown can abort it yet.
      take: async () => (await this.captureSnapshot())(new AbortController().signal),
      capture: () => this.captureSnapshot(),
      restore: (data) => this.restoreSnapshot(data),
    });
    this.replication = new ReplicationManager(
      config.replicationStrategy ?? ReplicationStrategy.ASYNCHRONOUS,
      {
        host: this,
        limits: replicationLimits,
        fallback: config.replicationFallback ?? 'fail',
        logger: this.logger.child({ component: 'replication' }),
        ...(config.regionClient !== undefined
          ? { client: config.regionClient }
          : this.regionSigner !== null
            ? { client: new HttpRegionClient({ interceptors: [this.regionSigner.interceptor()] }) }
            : {}),
      },
    );
    const listen = config.listen ?? false;
    if (listen === true) {
      const self = config.raftNodes.find((node) => node.id === config.nodeId);
      if (self === undefined) {
        throw new TypeError(`Invalid listen: ${config.nodeId} is not among raftNodes`);
      }
      this.listenAt = { host: self.host, port: self.port };
    } else {
      this.listenAt = listen === false ? null : { host: listen.host, port: listen.port };
    }
  }

  // ---------------------------------------------------------------------------------------
  // Lifecycle

  /**
   * Starts Raft (recovering state from its persistence), replication and, with `listen`, the
   * HTTP listener. Resolves true once running, false when called twice.
   */
  async initialize(): Promise<boolean> {
    if (this.state !== 'new') return false;
    this.conflictResolver.initialize();
    if (!(await this.raft.initialize())) return false;
    this.state = 'running';
    if (this.listenAt !== null) {
      try {
        await this.openListener(this.listenAt);
      } catch (error) {
        await this.shutdown();
        throw new Error(
          `Cannot listen on ${this.listenAt.host}:${this.listenAt.port}: ${(error as Error).message}`,
          { cause: error },
        );
      }
    }
    this.replication.initialize();
    return true;
  }

  /** Stops replication, Raft and the listener; pending operations fail with ShutdownError. */
  async shutdown(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    if (this.peerWatcher !== null) clearInterval(this.peerWatcher);
    this.peerWatcher = null;
    await this.replication.shutdown();
    await this.raft.shutdown();
    this.peerRoutes?.close();
    await this.transport?.close().catch(() => undefined);
    if (this.server !== null) closeServer(this.server);
    this.conflictResolver.shutdown();
  }

  // ---------------------------------------------------------------------------------------
  // The seed's methods

  /**
   * Leader only: proposes an application command; resolves once committed and applied here
   * with what the application's callback returned. The names `kv`, `replication` and
   * `regions` are reserved (TypeError).
   */
  submitCommand(command: string, data: string | Uint8Array): Promise<CommandResult> {
    if (typeof command === 'string' && reservedCommands.has(command)) {
      throw new TypeError(
        `Invalid command '${command}': ${[...reservedCommands].join(', ')} are reserved; use put/delete for key-value writes`,
      );
    }
    return this.raft.submitCommand(command, data);
  }

  /** Registers the application's state machine for the commands it submits. */
  registerApplyCommandCallback(callback: ApplyCommandCallback): void {
    if (typeof callback !== 'function') {
      throw new TypeError('Invalid apply callback: expected a function');
    }
    this.applyCallback = callback;
  }

  /** Sets the function the CUSTOM strategy uses (register it alike on every node). */
  registerCustomConflictResolver(resolver: CustomConflictResolver): void {
    this.conflictResolver.registerCustomResolver(resolver);
  }

  /** Leader only: adds a region (see ReplicationManager.addRegion). */
  addReplicationRegion(region: RegionInfo): Promise<boolean> {
    return this.replication.addRegion(region);
  }

  /** Leader only: removes a region; false when there is none with this id. */
  removeReplicationRegion(regionId: string): Promise<boolean> {
    return this.replication.removeRegion(regionId);
  }

  /** Leader only: writes `key` = `value` here and replicates it under the strategy. */
  replicateData(key: string, value: string | Uint8Array): Promise<ReplicationReceipt> {
    return this.replication.replicateData(key, value);
  }

  /**
   * Leader only: adds a member of this region's Raft cluster, a learner or a voter (a voter by
   * the promotion rule: with the default `auto`, a learner first, promoted once caught up).
   * The new node starts with `join` and waits to be added.
   */
  addMember(node: RaftNodeInfo, options: { learner?: boolean } = {}): Promise<void> {
    return this.raft.addMember(node, options);
  }

  /** Leader only: removes a member (this node included) through joint consensus. */
  removeMember(id: string): Promise<void> {
    return this.raft.removeMember(id);
  }

  /** Leader only: hands leadership to `to` (default: the most up-to-date other voter). */
  transferLeadership(to?: string): Promise<void> {
    return this.raft.transferLeadership(to);
  }

  /** The members of this region's Raft cluster, with their roles. */
  getMembers(): RaftMember[] {
    return this.raft.getMembers();
  }

  /** The region leader's id ('' when none is known). */
  getLeader(): string {
    return this.raft.getLeader();
  }

  getCurrentTerm(): number {
    return this.raft.getCurrentTerm();
  }

  /** This node's Raft role. */
  getNodeState(): RaftState {
    return this.raft.getState();
  }

  getCommitIndex(): number {
    return this.raft.getCommitIndex();
  }

  getLastApplied(): number {
    return this.raft.getLastApplied();
  }

  /** Per region: connection, acknowledged index, lag (see ReplicationStatus). */
  getReplicationStatus(): ReplicationStatus[] {
    return this.replication.getReplicationStatus();
  }

  /** Conflicts this node merged since it started. */
  getConflictResolutionStats(): ResolutionStats {
    return this.conflictResolver.getResolutionStats();
  }

  // ---------------------------------------------------------------------------------------
  // Key-value

  /**
   * Leader only: puts `key` (etcd v2 conditions allowed), then waits for regions as the
   * strategy says. Rejects with ReplicationTimeoutError when they do not acknowledge in time
   * (the write is committed here), NotLeaderError, TimeoutError, BadRequestError.
   */
  async put(
    key: string,
    value: string | Uint8Array,
    conditions: PutConditions = {},
  ): Promise<WriteOutcome> {
    const bytes = typeof value === 'string' ? encoder.encode(value) : value;
    return this.replicated(await this.write(key, bytes, conditions));
  }

  /** Leader only: deletes `key` (a tombstone that replicates like a write). */
  async delete(key: string, conditions: DeleteConditions = {}): Promise<WriteOutcome> {
    return this.replicated(await this.write(key, null, conditions));
  }

  /** The value of `key` on this node (no read barrier: see `read`), or undefined. */
  get(key: string): Uint8Array | undefined {
    return this.kv.get(key);
  }

  /** Every sibling of `key` on this node (MULTI_VALUE), or undefined when never written. */
  getVersion(key: string): Version | undefined {
    return this.kv.getVersion(key);
  }

  /** Leader only: a linearizable read of `key` (ReadIndex, then the local state). */
  async read(key: string): Promise<Version | undefined> {
    await this.raft.linearizableRead();
    return this.kv.getVersion(key);
  }

  /**
   * Leader only: proposes a v1 key-value command (src/kv/codec.ts) stamped with this node's
   * HLC; resolves with the state machine's result once applied here. No replication wait.
   */
  async proposeKv(payload: Uint8Array): Promise<{ index: number; term: number; result: KvResult }> {
    if (!(payload instanceof Uint8Array) || payload[0] === stampedCommandMarker) {
      throw new TypeError('Invalid key-value command: expected an unstamped (v1) command');
    }
    // Not kept in a local: the pooled stamp would stay reachable until the command is applied.
    const { index, term, result } = await this.raft.submitCommand(
      replicatedCommands.kv,
      encodeStampedCommand(this.clock.now(), payload),
    );
    return { index, term, result: result as KvResult };
  }

  /** Applies the strategy to a write's outcome (nothing to wait for unless it changed state). */
  async replicated(outcome: {
    index: number;
    term: number;
    result: KvResult;
  }): Promise<WriteOutcome> {
    // Built field by field: a spread adding `replication` would outlive scavenges (withRpcId).
    const { index, term, result } = outcome;
    if (result.kind !== 'ok') return { index, term, result, replication: null };
    const replication = await this.replication.awaitReplication(index, term);
    return { index, term, result, replication };
  }

  /** Replication counters (fallbacks, received batches), for metrics. */
  getReplicationCounters(): ReplicationCounters {
    return this.replication.getCounters();
  }

  // ---------------------------------------------------------------------------------------
  // ReplicationHost

  isLeader(): boolean {
    return this.raft.getState() === 'leader';
  }

  leader(): { id: string; url: string } | null {
    const id = this.raft.getLeader();
    if (id === '') return null;
    const member = this.raft.getMembers().find((candidate) => candidate.id === id);
    return { id, url: member?.url ?? '' };
  }

  term(): number {
    return this.raft.getCurrentTerm();
  }

  conflictStrategy(): ConflictResolutionStrategy {
    return this.conflictResolver.getResolutionStrategy();
  }

  propose(command: string, data: Uint8Array): Promise<CommandResult> {
    return this.raft.submitCommand(command, data);
  }

  write(
    key: string,
    value: Uint8Array | null,
    conditions: PutConditions = {},
  ): Promise<{ index: number; term: number; result: KvResult }> {
    const payload =
      value === null
        ? this.kv.encodeDelete(key, conditions)
        : this.kv.encodePut(key, value, conditions);
    return this.proposeKv(payload);
  }

  // ---------------------------------------------------------------------------------------
  // Apply and snapshots

  private apply(
    command: string,
    data: string | Uint8Array,
    entry: { readonly index: number; readonly term: number },
  ): unknown {
    const { index } = entry;
    // Entries without a command (no-ops, membership changes) take an index too.
    for (let skipped = this.kv.appliedIndex + 1; skipped < index; skipped++) {
      this.kv.skip(skipped);
    }
    if (reservedCommands.has(command) && typeof data === 'string') {
      this.kv.skip(index);
      return {
        kind: 'invalid',
        index,
        error: new BadRequestError(`Cannot apply entry ${index}: '${command}' data is text`),
      };
    }
    switch (command) {
      case replicatedCommands.kv: {
        this.checkStampRegion(data as Uint8Array, index);
        const result = this.kv.apply(index, data as Uint8Array);
        this.observeClock();
        if (result.kind === 'ok') this.replication.onLocalWrite();
        return result;
      }
      case replicatedCommands.remoteBatch: {
        const result: RemoteBatchResult = this.kv.applyRemoteBatch(index, data as Uint8Array);
        this.observeClock();
        if (result.kind === 'invalid') {
          this.logger.warn({ index, err: result.error }, 'Skipped an invalid batch from a region');
        }
        return result;
      }
      case replicatedCommands.regions: {
        this.kv.skip(index);
        const result: RegionCommandResult = this.regionState.apply(data as Uint8Array);
        return result;
      }
      default:
        this.kv.skip(index);
        return this.applyCallback?.(command, typeof data === 'string' ? data : data.slice(), entry);
    }
  }

  /**
   * Every node of a cluster must run with the same region: the leader stamps writes with its
   * own, and a node configured differently would give them other dots than its peers do.
   * The state machine cannot refuse (every replica must apply alike), so say it loudly.
   */
  private checkStampRegion(payload: Uint8Array, index: number): void {
    if (this.regionMismatchLogged || payload[0] !== stampedCommandMarker) return;
    let stampRegion: string;
    try {
      stampRegion = decodeStampedCommand(payload).hlc.node;
    } catch {
      return; // the state machine reports a corrupt command itself
    }
    if (stampRegion === this.region) return;
    this.regionMismatchLogged = true;
    this.logger.error(
      { index, region: this.region, leaderRegion: stampRegion },
      `Misconfigured: this node runs in region ${this.region} but its leader stamps writes as region ${stampRegion}; every node of a cluster needs the same region`,
    );
  }

  /** The leader's clock moves past every write applied, so later stamps sort after them. */
  private observeClock(): void {
    const high = this.kv.clockHigh;
    if (high === null || high === this.observedClock) return;
    this.observedClock = high;
    try {
      this.clock.update(high);
    } catch (error) {
      this.logger.warn({ err: error }, 'Cannot move the clock past an applied write');
    }
  }

  /**
   * Captures the key-value state, the region positions and the application's state now; the
   * key-value state is encoded later, a slice of keys per turn (KvSnapshotCapture).
   */
  private async captureSnapshot(): Promise<SnapshotEncoder> {
    const regions = this.regionState.encode();
    const kv = this.kv.captureSnapshot();
    let app: SnapshotEncoder;
    try {
      app =
        this.appSnapshots === undefined
          ? () => new Uint8Array(0)
          : await captureOrTake(this.appSnapshots);
    } catch (error) {
      kv.release();
      throw error;
    }
    // Both encoders are called, whatever the other does: each may hold state until it runs.
    return async (signal) => {
      // An application encoder that throws must not leave the key-value encoding's rejection
      // (an abort, later) unhandled.
      const [kvBytes, appBytes] = await Promise.all([
        kv.encode(signal),
        (async () => app(signal))(),
      ]);
      return encodeEnvelope(kvBytes, regions, appBytes);
    };
  }

  private async restoreSnapshot(data: Uint8Array): Promise<void> {
    if (data.length === 0) {
      // Written before any state existed (no callbacks then): an empty state.
      this.kv.restore(new KvStateMachine({ region: this.region }).snapshot());
      this.regionState.restore(new Uint8Array(0));
      return;
    }
    if (plainKvMagic.every((byte, k) => data[k] === byte)) {
      // A node's data from before the manager: the key-value state alone.
      this.kv.restore(data);
      this.regionState.restore(new Uint8Array(0));
      return;
    }
    const corrupt = (message: string): never => {
      throw new StorageError('CORRUPT_LOG', `Cannot restore snapshot: ${message}`);
    };
    if (data.length < 21 || !envelopeMagic.every((byte, k) => data[k] === byte)) {
      corrupt('it starts with neither "PCMS" nor "PKVS"');
    }
    if (data[4] !== envelopeVersion) corrupt(`envelope version is ${data[4]}, expected 1`);
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const stored = view.getUint32(data.length - 4, true);
    if (stored !== crc32(data.subarray(0, data.length - 4))) corrupt('envelope checksum mismatch');
    const parts: Uint8Array[] = [];
    let at = 5;
    for (let k = 0; k < 3; k++) {
      if (at + 4 > data.length - 4) corrupt('truncated envelope');
      const length = view.getUint32(at, true);
      if (at + 4 + length > data.length - 4) corrupt('truncated envelope');
      parts.push(data.subarray(at + 4, at + 4 + length));
      at += 4 + length;
    }
    if (at !== data.length - 4) corrupt(`${data.length - 4 - at} trailing bytes in the envelope`);
    const [kv, regions, app] = parts as [Uint8Array, Uint8Array, Uint8Array];
    this.kv.restore(kv);
    this.regionState.restore(regions);
    if (this.appSnapshots !== undefined) await this.appSnapshots.restore(app);
    this.observeClock();
  }

  // ---------------------------------------------------------------------------------------
  // Own HTTP listener

  private async openListener(at: { host: string; port: number }): Promise<void> {
    const logger = this.logger;
    const server = new Server({ auto_close: false });
    this.peerRoutes = mountPeerRoutes(server, {
      handler: (message, data) => this.raft.handleMessage(message, data),
      logger: logger.child({ component: 'peers' }),
      localId: this.nodeId,
      signer: this.peerSigner,
    });
    mountReplicationRoutes(server, this.replication, {
      bodyBytesMax: this.replicationLimits.batchBodyBytesMax,
      logger,
      signer: this.regionSigner,
    });
    installErrorHandlers(server, logger);
    this.transport = new HttpPeerTransport({
      logger: logger.child({ component: 'peers' }),
      interceptors: this.peerSigner === null ? [] : [this.peerSigner.interceptor()],
    });
    const transport = this.transport;
    this.raft.registerSendCallback((_to, message, data) => transport.send(message, data));
    this.watchPeers();
    this.peerWatcher = setInterval(() => this.watchPeers(), 100);
    await server.listen(at.port, at.host);
    this.server = server;
  }

  /** Keeps the peer transport's address book in step with the membership. */
  private watchPeers(): void {
    const members = this.raft.getMembers();
    const signature = members.map((m) => `${m.id}=${m.url}`).join(',');
    if (signature === this.peerSignature || this.transport === null) return;
    this.peerSignature = signature;
    const peers = new Map<string, string>();
    for (const member of members) {
      if (member.id !== this.nodeId && member.url !== '') peers.set(member.id, member.url);
    }
    this.transport.setPeers(peers);
  }
}

/** "PCMS" | u8 1 | u32 kv bytes | kv | u32 region bytes | regions | u32 app bytes | app | u32 CRC. */
function encodeEnvelope(kv: Uint8Array, regions: Uint8Array, app: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 1 + 4 + kv.length + 4 + regions.length + 4 + app.length + 4);
  const view = new DataView(out.buffer);
  out.set(envelopeMagic, 0);
  out[4] = envelopeVersion;
  let at = 5;
  for (const part of [kv, regions, app]) {
    view.setUint32(at, part.length, true);
    out.set(part, at + 4);
    at += 4 + part.length;
  }
  view.setUint32(at, crc32(out.subarray(0, at)), true);
  return out;
}

/** A signer for `purpose` from a secret option, checked for length; null without one. */
function signerOf(
  name: string,
  secret: Secret | undefined,
  purpose: 'peer' | 'region',
): RequestSigner | null {
  if (secret === undefined) return null;
  if (!(secret instanceof Secret) || secret.length < secretBytesMin) {
    throw new TypeError(`Invalid ${name}: a Secret of at least ${secretBytesMin} bytes`);
  }
  return new RequestSigner(secret, purpose);
}
