/**
 * ReplicationManager: the seed's class for replicating between regions, in TypeScript. A
 * region is another PhantomDB cluster; see src/replication/README.md for the model. In short:
 *
 * - The regions, the primary and each region's durable cursor are replicated state
 *   ({@link RegionState}), changed through this region's Raft log, so every node agrees.
 * - The region's leader runs a {@link RegionLink} per region that ships the writes which
 *   originated here, in batches; receivers commit them through their own Raft and merge them
 *   with the ConflictResolver (`KvStateMachine.applyRemoteBatch`). Writes that arrived from
 *   elsewhere are never forwarded, so there are no loops.
 * - {@link awaitReplication} applies the strategy to a committed local write: SYNCHRONOUS
 *   waits for every region, SEMI_SYNCHRONOUS for the primary (any one region if none is set),
 *   ASYNCHRONOUS for none. A wait that cannot finish in `replicationTimeoutMs` — or that
 *   cannot finish at all because a region it needs is known unreachable — fails with
 *   {@link ReplicationTimeoutError} or, with fallback `async`, returns a receipt marked
 *   `fellBack`; fallbacks are counted per region and in total.
 * - The leader records acknowledged positions through Raft every `cursorRecordIntervalMs`.
 *
 * It is normally created by ConsensusManager, which is its {@link ReplicationHost}.
 *
 * @example
 * ```ts
 * const replication = manager.replication; // a ConsensusManager's
 * await replication.addRegion({ id: 'eu', url: 'http://10.0.2.1:7001', primary: true });
 * replication.setReplicationStrategy(ReplicationStrategy.SEMI_SYNCHRONOUS);
 * const receipt = await replication.replicateData('k', 'v'); // { acknowledged: ['eu'], ... }
 * ```
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { resolveReplicationLimits, type ReplicationLimits } from '../config.js';
import type { ConflictResolutionStrategy } from '../conflict/conflict-resolver.js';
import type { CommandResult } from '../consensus/raft-consensus.js';
import { PhantomError, ShutdownError } from '../errors.js';
import type { PutConditions } from '../kv/codec.js';
import type { KvResult, KvStateMachine, RemoteBatchResult } from '../kv/state-machine.js';
import { decodeShippedWrites, encodeRemoteBatchFromPacked } from '../kv/versioned-codec.js';
import { HttpRegionClient, type RegionClient } from './client.js';
import { RegionLink, type LinkContext } from './link.js';
import { encodeRegionCommand, type RegionCommandResult, type RegionState } from './region-state.js';
import {
  RegionMismatchError,
  RegionNotLeaderError,
  ReplicationStrategy,
  ReplicationTimeoutError,
  checkRegionId,
  checkReplicationStrategy,
  regionUrlOf,
  replicatedCommands,
  type Region,
  type RegionInfo,
  type ReplicationFallback,
  type ReplicationReceipt,
  type ReplicationStatus,
} from './types.js';
import type { RegionHeartbeatRequest, RegionAnswer, RegionBatchRequest } from './wire.js';

/** What the manager needs from the region it runs in (ConsensusManager implements it). */
export interface ReplicationHost {
  /** This region's id. */
  readonly region: string;
  /** The replicated key-value state. */
  readonly kv: KvStateMachine;
  /** The replicated region configuration. */
  readonly regionState: RegionState;
  isLeader(): boolean;
  /** The region leader this node knows of and its client URL, or null. */
  leader(): { readonly id: string; readonly url: string } | null;
  /** The current Raft term. */
  term(): number;
  /** The conflict strategy this node merges with (and proposes batches with). */
  conflictStrategy(): ConflictResolutionStrategy;
  /** Leader only: proposes a command; resolves once committed and applied on this node. */
  propose(command: string, data: Uint8Array): Promise<CommandResult>;
  /** Leader only: proposes a key-value write stamped with the leader's HLC. */
  write(
    key: string,
    value: Uint8Array | null,
    conditions?: PutConditions,
  ): Promise<{ index: number; term: number; result: KvResult }>;
}

/** Options of {@link ReplicationManager}. */
export interface ReplicationManagerOptions {
  readonly host: ReplicationHost;
  /** How requests reach other regions. Default: an {@link HttpRegionClient}. */
  readonly client?: RegionClient;
  readonly limits?: Partial<ReplicationLimits>;
  /** What a sync / semi-sync write does when its regions do not answer in time. Default 'fail'. */
  readonly fallback?: ReplicationFallback;
  readonly logger?: Logger;
  /** Backoff jitter source in [0, 1). Default Math.random. */
  readonly random?: () => number;
  /** Wall clock (ms since the epoch) for status and lag. Default Date.now. */
  readonly now?: () => number;
}

/** Counters since this node started, for metrics. */
export interface ReplicationCounters {
  /** Sync / semi-sync writes that fell back to async. */
  readonly fallbacks: number;
  /** Sync / semi-sync writes that failed with ReplicationTimeoutError. */
  readonly syncFailures: number;
  /** Batches received from other regions and committed here, and the writes they applied. */
  readonly receivedBatches: number;
  readonly receivedWrites: number;
  /** Received writes that were already applied (re-shipped). */
  readonly duplicateWrites: number;
}

interface Waiter {
  readonly index: number;
  readonly term: number;
  readonly strategy: ReplicationStrategy;
  /** Regions waited for; empty with `anyOne` means the first region to acknowledge. */
  readonly required: readonly string[];
  readonly anyOne: boolean;
  readonly regions: readonly string[];
  readonly startedMs: number;
  readonly resolve: (receipt: ReplicationReceipt) => void;
  readonly reject: (error: Error) => void;
  timer: NodeJS.Timeout | null;
}

type MutableCounters = { -readonly [K in keyof ReplicationCounters]: number };

/** Replicates this region's writes to other regions; see the module comment. */
export class ReplicationManager {
  private readonly host: ReplicationHost;
  private readonly client: RegionClient;
  private readonly limits: ReplicationLimits;
  private readonly fallback: ReplicationFallback;
  private readonly logger: Logger | undefined;
  private readonly random: () => number;
  private readonly now: () => number;
  private strategy: ReplicationStrategy;
  private readonly links = new Map<string, RegionLink>();
  private readonly waiters = new Set<Waiter>();
  private readonly counters: MutableCounters = {
    fallbacks: 0,
    syncFailures: 0,
    receivedBatches: 0,
    receivedWrites: 0,
    duplicateWrites: 0,
  };
  /** Fallbacks counted for regions no longer linked (their links are gone). */
  private readonly fallbacksByRegion = new Map<string, number>();
  private ticker: NodeJS.Timeout | null = null;
  private running = false;
  private leading = false;
  private lastCursorRecordMs = 0;
  private cursorRecord: Promise<unknown> | null = null;
  private readonly linkContext: LinkContext;

  constructor(
    strategy: ReplicationStrategy = ReplicationStrategy.ASYNCHRONOUS,
    options: ReplicationManagerOptions,
  ) {
    checkReplicationStrategy(strategy);
    const host = (options as Partial<ReplicationManagerOptions> | undefined)?.host;
    if (typeof host !== 'object' || host === null) {
      throw new TypeError(
        'Invalid ReplicationManager options: a host (the region it replicates from) is required; ConsensusManager creates one',
      );
    }
    this.strategy = strategy;
    this.host = host;
    this.limits = resolveReplicationLimits(options.limits);
    this.fallback = options.fallback ?? 'fail';
    if (this.fallback !== 'fail' && this.fallback !== 'async') {
      throw new TypeError(`Invalid fallback: ${String(this.fallback)} (expected fail or async)`);
    }
    this.client =
      options.client ??
      new HttpRegionClient({ connectTimeoutMs: Math.min(2_000, this.limits.requestTimeoutMs) });
    this.logger = options.logger;
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
    this.linkContext = {
      region: host.region,
      kv: host.kv,
      client: this.client,
      limits: this.limits,
      logger: this.logger,
      random: this.random,
      now: this.now,
      conflictStrategy: () => host.conflictStrategy(),
      onProgress: () => this.checkWaiters(),
    };
  }

  // ---------------------------------------------------------------------------------------
  // Lifecycle

  /** Starts following leadership and regions. Returns false when already running. */
  initialize(): boolean {
    if (this.running) return false;
    this.running = true;
    const tickMs = Math.max(10, Math.min(100, Math.floor(this.limits.heartbeatIntervalMs / 5)));
    this.ticker = setInterval(() => this.reconcile(), tickMs);
    this.reconcile();
    return true;
  }

  /** Stops every link, fails waiting writes with ShutdownError, closes connections. */
  async shutdown(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    if (this.ticker !== null) clearInterval(this.ticker);
    this.ticker = null;
    const links = [...this.links.values()];
    this.stopLinks();
    this.settleAll('shutdown');
    await this.client.close();
    await Promise.all(links.map((link) => link.done));
    await this.cursorRecord?.catch(() => undefined);
  }

  // ---------------------------------------------------------------------------------------
  // Regions (replicated state, changed through Raft on the leader)

  /**
   * Leader only: adds a region (or updates its URL / primary flag). Resolves true once the
   * change is applied here, false when the region was already exactly so. Rejects with
   * TypeError for a bad id or URL, NotLeaderError on a follower.
   */
  async addRegion(region: RegionInfo): Promise<boolean> {
    if (typeof region !== 'object' || region === null) {
      throw new TypeError('Invalid region: expected { id, url } or { id, host, port }');
    }
    checkRegionId(region.id);
    if (region.id === this.host.region) {
      throw new RangeError(`Cannot add region ${region.id}: that is this region`);
    }
    const url = regionUrlOf(region);
    if (region.primary !== undefined && typeof region.primary !== 'boolean') {
      throw new TypeError(`Invalid primary flag for region ${region.id}: expected a boolean`);
    }
    const result = await this.proposeRegions({
      op: 'add',
      id: region.id,
      url,
      ...(region.primary === undefined ? {} : { primary: region.primary }),
    });
    return result.kind === 'ok' && result.changed;
  }

  /** Leader only: removes a region; resolves false when there is no such region. */
  async removeRegion(regionId: string): Promise<boolean> {
    checkRegionId(regionId);
    const result = await this.proposeRegions({ op: 'remove', id: regionId });
    return result.kind === 'ok';
  }

  /** Every region, sorted by id. */
  getRegions(): Region[] {
    return this.host.regionState.list();
  }

  /** The primary region's id ('' when none). */
  getPrimaryRegion(): string {
    return this.host.regionState.primary;
  }

  /**
   * Leader only: makes `regionId` the primary ('' clears it). Resolves false when there is no
   * such region.
   */
  async setPrimaryRegion(regionId: string): Promise<boolean> {
    if (regionId !== '') checkRegionId(regionId);
    const result = await this.proposeRegions({ op: 'primary', id: regionId });
    return result.kind === 'ok';
  }

  private async proposeRegions(
    command: Parameters<typeof encodeRegionCommand>[0],
  ): Promise<RegionCommandResult> {
    const { result } = await this.host.propose(
      replicatedCommands.regions,
      encodeRegionCommand(command),
    );
    const outcome = result as RegionCommandResult;
    if (outcome.kind === 'invalid') throw outcome.error;
    this.reconcile();
    return outcome;
  }

  // ---------------------------------------------------------------------------------------
  // Strategy and writes

  /** Sets the strategy for writes from now on (on this node; set it alike on every node). */
  setReplicationStrategy(strategy: ReplicationStrategy): void {
    checkReplicationStrategy(strategy);
    this.strategy = strategy;
  }

  /** The strategy in force. */
  getReplicationStrategy(): ReplicationStrategy {
    return this.strategy;
  }

  /** What a sync or semi-sync write does when its regions do not answer in time. */
  getFallback(): ReplicationFallback {
    return this.fallback;
  }

  /**
   * Leader only: writes `key` = `value` in this region and replicates it under the strategy;
   * resolves with the receipt. Rejects like `awaitReplication`, and with NotLeaderError,
   * TimeoutError or BadRequestError (bad key or value) like any write.
   */
  async replicateData(key: string, value: string | Uint8Array): Promise<ReplicationReceipt> {
    if (typeof value !== 'string' && !(value instanceof Uint8Array)) {
      throw new TypeError('Invalid value: expected a string or a Uint8Array');
    }
    const bytes = typeof value === 'string' ? new TextEncoder().encode(value) : value;
    const { index, term } = await this.host.write(key, bytes);
    return this.awaitReplication(index, term);
  }

  /**
   * Applies the strategy to the local write committed at `index`: resolves once the regions it
   * needs have acknowledged it (at once under ASYNCHRONOUS). When they do not in
   * `replicationTimeoutMs`, or one of them is known unreachable, or this node stops leading,
   * rejects with {@link ReplicationTimeoutError} — or, with fallback 'async', resolves with a
   * receipt whose `fellBack` is true.
   */
  awaitReplication(index: number, term: number): Promise<ReplicationReceipt> {
    if (!Number.isSafeInteger(index) || index < 1) {
      throw new RangeError(`Invalid index: ${index}`);
    }
    const strategy = this.strategy;
    const regions = this.host.regionState.list().map((region) => region.id);
    const primary = this.host.regionState.primary;
    const anyOne = strategy === ReplicationStrategy.SEMI_SYNCHRONOUS && primary === '';
    const required =
      strategy === ReplicationStrategy.SYNCHRONOUS
        ? regions
        : strategy === ReplicationStrategy.SEMI_SYNCHRONOUS && primary !== ''
          ? [primary]
          : [];
    // Leadership may have been won since the last tick: links must exist before judging.
    this.reconcile();
    return new Promise<ReplicationReceipt>((resolve, reject) => {
      const waiter: Waiter = {
        index,
        term,
        strategy,
        required,
        anyOne: anyOne && regions.length > 0,
        regions,
        startedMs: performance.now(),
        resolve,
        reject,
        timer: null,
      };
      if (this.satisfied(waiter)) {
        resolve(this.receiptOf(waiter, ''));
        return;
      }
      if (!this.running || !this.leading) {
        this.decide(
          waiter,
          this.running
            ? 'this node is not the leader of its region, which ships the writes'
            : 'replication is not running on this node',
        );
        return;
      }
      const down = this.knownDown(waiter);
      if (down !== '') {
        this.decide(waiter, down);
        return;
      }
      waiter.timer = setTimeout(() => {
        this.waiters.delete(waiter);
        this.decide(waiter, `no acknowledgement within ${this.limits.replicationTimeoutMs} ms`);
      }, this.limits.replicationTimeoutMs);
      this.waiters.add(waiter);
    });
  }

  /** Called by the host after it applied a local write: the links have something to ship. */
  onLocalWrite(): void {
    if (!this.leading) return;
    for (const link of this.links.values()) link.wake();
  }

  // ---------------------------------------------------------------------------------------
  // Receiving (another region's leader ships here)

  /**
   * Takes a batch shipped by another region: validates it, commits it through this region's
   * Raft (merging on apply) and answers with the origin's position here. A batch already
   * applied, or one that would leave a gap, is answered at once without a proposal (the
   * position tells the sender where to resume). Leader only: RegionNotLeaderError elsewhere.
   */
  async handleShip(request: RegionBatchRequest): Promise<RegionAnswer> {
    this.requireLeader();
    this.checkPeer(request.origin, request.strategy);
    const { kv } = this.host;
    decodeShippedWrites(request.items, request, kv.limits);
    const strategy = this.host.conflictStrategy();
    const position = kv.inboundPosition(request.origin);
    if (request.toIndex <= position || request.fromIndex > position + 1) {
      return { region: this.host.region, position, strategy };
    }
    const payload = encodeRemoteBatchFromPacked(
      {
        origin: request.origin,
        fromIndex: request.fromIndex,
        toIndex: request.toIndex,
        strategy,
      },
      request.items,
    );
    const { result } = await this.host.propose(replicatedCommands.remoteBatch, payload);
    const outcome = result as RemoteBatchResult;
    if (outcome.kind === 'invalid') throw outcome.error;
    if (outcome.kind === 'applied') {
      this.counters.receivedBatches++;
      this.counters.receivedWrites += outcome.applied;
      this.counters.duplicateWrites += outcome.duplicates;
    }
    return { region: this.host.region, position: outcome.position, strategy };
  }

  /** Answers another region's heartbeat with this region's id, strategy and its position. */
  handleHeartbeat(request: RegionHeartbeatRequest): RegionAnswer {
    this.requireLeader();
    this.checkPeer(request.origin, request.strategy);
    return {
      region: this.host.region,
      position: this.host.kv.inboundPosition(request.origin),
      strategy: this.host.conflictStrategy(),
    };
  }

  private requireLeader(): void {
    if (!this.running) throw new ShutdownError('Cannot take replication requests: shut down');
    if (this.host.isLeader()) return;
    const leader = this.host.leader();
    throw new RegionNotLeaderError(leader?.id ?? '', leader?.url ?? '');
  }

  private checkPeer(origin: string, strategy: ConflictResolutionStrategy): void {
    if (origin === this.host.region) {
      throw new RegionMismatchError(
        `Cannot take replication from region ${origin}: that is this region (two regions share an id, or a region lists itself)`,
      );
    }
    const mine = this.host.conflictStrategy();
    if (strategy !== mine) {
      throw new RegionMismatchError(
        `Cannot take replication from region ${origin}: it resolves conflicts with ${strategy}, this region with ${mine}; regions must use the same strategy to converge`,
      );
    }
  }

  // ---------------------------------------------------------------------------------------
  // Status

  /** Per region: connection, acknowledged index, lag and counters (see ReplicationStatus). */
  getReplicationStatus(): ReplicationStatus[] {
    const { kv, regionState } = this.host;
    const lastLocal = kv.lastLocalIndex;
    const nowMs = this.now();
    return regionState.list().map((region) => {
      const link = this.leading ? this.links.get(region.id) : undefined;
      const durableCursor = regionState.cursor(region.id);
      const acked = link?.position ?? durableCursor;
      const pending = kv.pendingLocalWrites(acked);
      return {
        regionId: region.id,
        url: region.url,
        primary: region.primary,
        live: link !== undefined,
        connected: link?.connected ?? false,
        lastHeartbeatMs: link?.lastContactMs ?? null,
        roundTripMs: link?.roundTripMs ?? null,
        lastAckedIndex: acked,
        durableCursor,
        lagEntries: Math.max(0, lastLocal - acked),
        lagMs: pending.oldest === null ? 0 : Math.max(0, nowMs - pending.oldest.wallMs),
        pending: pending.count,
        lastError: link?.lastError ?? null,
        shippedWrites: link?.shippedWrites ?? 0,
        ackedWrites: link?.ackedWrites ?? 0,
        shippedBatches: link?.shippedBatches ?? 0,
        fallbacks: (link?.fallbacks ?? 0) + (this.fallbacksByRegion.get(region.id) ?? 0),
      };
    });
  }

  /**
   * True when this node leads and the last exchange with every region succeeded (true with no
   * regions). A follower does not talk to regions, so it answers false when there are any.
   */
  areAllRegionsConnected(): boolean {
    const regions = this.host.regionState.list();
    if (regions.length === 0) return true;
    if (!this.leading) return false;
    return regions.every((region) => this.links.get(region.id)?.connected === true);
  }

  /** Counters since start, for metrics. */
  getCounters(): ReplicationCounters {
    return { ...this.counters };
  }

  // ---------------------------------------------------------------------------------------
  // Internals

  /** Follows leadership and the region list: links exist exactly on the leader. */
  private reconcile(): void {
    if (!this.running) return;
    const leading = this.host.isLeader();
    if (!leading) {
      if (this.leading) {
        this.leading = false;
        this.stopLinks();
        this.settleAll('leadership');
      }
      return;
    }
    const becameLeader = !this.leading;
    this.leading = true;
    const regions = this.host.regionState.list();
    const wanted = new Map(regions.map((region) => [region.id, region]));
    for (const [id, link] of this.links) {
      const region = wanted.get(id);
      if (region === undefined || region.url !== link.url) {
        this.retireLink(link);
      }
    }
    for (const region of regions) {
      if (!this.links.has(region.id)) {
        const link = new RegionLink(
          this.linkContext,
          region.id,
          region.url,
          this.host.regionState.cursor(region.id),
        );
        this.links.set(region.id, link);
      }
    }
    if (becameLeader)
      this.logger?.info({ regions: regions.map((r) => r.id) }, 'Shipping to regions');
    this.recordCursors();
    // A region removed while writes waited for it no longer holds them up.
    this.checkWaiters();
  }

  private retireLink(link: RegionLink): void {
    link.stop();
    this.links.delete(link.id);
    if (link.fallbacks > 0) {
      this.fallbacksByRegion.set(
        link.id,
        (this.fallbacksByRegion.get(link.id) ?? 0) + link.fallbacks,
      );
    }
  }

  private stopLinks(): void {
    for (const link of [...this.links.values()]) this.retireLink(link);
  }

  /** Proposes the positions regions acknowledged, at most once per interval, one at a time. */
  private recordCursors(): void {
    if (this.cursorRecord !== null) return;
    const nowMs = performance.now();
    if (nowMs - this.lastCursorRecordMs < this.limits.cursorRecordIntervalMs) return;
    const cursors: Record<string, number> = {};
    let any = false;
    for (const link of this.links.values()) {
      if (link.position > this.host.regionState.cursor(link.id)) {
        cursors[link.id] = link.position;
        any = true;
      }
    }
    if (!any) return;
    this.lastCursorRecordMs = nowMs;
    this.cursorRecord = this.host
      .propose(replicatedCommands.regions, encodeRegionCommand({ op: 'cursors', cursors }))
      .catch((error: unknown) => {
        // Lost leadership or a slow commit: the next leader or interval records them.
        if (!(error instanceof PhantomError)) {
          this.logger?.warn({ err: error }, 'Cannot record region cursors');
        }
      })
      .finally(() => {
        this.cursorRecord = null;
      });
  }

  private satisfied(waiter: Waiter): boolean {
    if (waiter.anyOne) {
      return waiter.regions.some((id) => (this.links.get(id)?.position ?? 0) >= waiter.index);
    }
    return waiter.required.every((id) => {
      // A region removed meanwhile is no longer waited for.
      if (this.host.regionState.get(id) === undefined) return true;
      return (this.links.get(id)?.position ?? 0) >= waiter.index;
    });
  }

  /** Why the waiter cannot finish now ('' when it still can). */
  private knownDown(waiter: Waiter): string {
    const needed = waiter.anyOne ? waiter.regions : waiter.required;
    const down = needed.filter((id) => {
      const link = this.links.get(id);
      return link !== undefined && link.failing && link.position < waiter.index;
    });
    if (down.length === 0 || (waiter.anyOne && down.length < needed.length)) return '';
    return down
      .map((id) => `region ${id} is unreachable (${this.links.get(id)?.lastError ?? 'no answer'})`)
      .join('; ');
  }

  private checkWaiters(): void {
    for (const waiter of this.waiters) {
      if (this.satisfied(waiter)) {
        this.waiters.delete(waiter);
        if (waiter.timer !== null) clearTimeout(waiter.timer);
        waiter.resolve(this.receiptOf(waiter, ''));
      }
    }
  }

  private settleAll(why: 'leadership' | 'shutdown'): void {
    for (const waiter of [...this.waiters]) {
      this.waiters.delete(waiter);
      if (waiter.timer !== null) clearTimeout(waiter.timer);
      if (why === 'shutdown') {
        waiter.reject(
          new ShutdownError(
            `Cannot confirm replication of index ${waiter.index}: this node is shutting down (the write is committed and ships from the next leader)`,
          ),
        );
      } else {
        this.decide(waiter, 'this node stopped leading its region; the new leader ships it');
      }
    }
  }

  /** The wait is over without every acknowledgement: fail or fall back, never silently. */
  private decide(waiter: Waiter, reason: string): void {
    const missing = (waiter.anyOne ? waiter.regions : waiter.required).filter(
      (id) => (this.links.get(id)?.position ?? 0) < waiter.index,
    );
    if (this.fallback === 'async') {
      this.counters.fallbacks++;
      for (const id of missing) {
        const link = this.links.get(id);
        if (link !== undefined) link.fallbacks++;
        else this.fallbacksByRegion.set(id, (this.fallbacksByRegion.get(id) ?? 0) + 1);
      }
      this.logger?.warn(
        { index: waiter.index, strategy: waiter.strategy, missing, reason },
        `Write at index ${waiter.index} fell back to asynchronous replication: ${reason}`,
      );
      waiter.resolve(this.receiptOf(waiter, reason));
      return;
    }
    this.counters.syncFailures++;
    const receipt = this.receiptOf(waiter, '');
    const who = waiter.anyOne
      ? `no region (of ${waiter.regions.join(', ')})`
      : missing.length === 1
        ? `region ${missing[0]}`
        : `regions ${missing.join(', ')}`;
    waiter.reject(
      new ReplicationTimeoutError(
        receipt,
        `Write at index ${waiter.index} is committed in region ${this.host.region} and will still be shipped, but ${who} did not acknowledge it (${waiter.strategy}): ${reason}`,
      ),
    );
  }

  private receiptOf(waiter: Waiter, fallbackReason: string): ReplicationReceipt {
    const acknowledged: string[] = [];
    const pending: string[] = [];
    for (const id of waiter.regions) {
      if ((this.links.get(id)?.position ?? 0) >= waiter.index) acknowledged.push(id);
      else pending.push(id);
    }
    return {
      index: waiter.index,
      term: waiter.term,
      strategy: waiter.strategy,
      acknowledged,
      pending,
      required: waiter.anyOne ? [] : waiter.required,
      fellBack: fallbackReason !== '',
      reason: fallbackReason,
      waitedMs: Math.round((performance.now() - waiter.startedMs) * 10) / 10,
    };
  }
}
