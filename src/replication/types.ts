/**
 * The vocabulary of multi-region replication: strategies, region descriptions, the receipt a
 * replicated write returns, per-region status, and the errors replication raises.
 */
import { NotLeaderError, PhantomError } from '../errors.js';
import { nodeUrl } from '../transport/url.js';

/** When a write that originated here counts as done; see src/replication/README.md. */
export const ReplicationStrategy = {
  /** Committed here AND acknowledged (committed) by every region. */
  SYNCHRONOUS: 'SYNCHRONOUS',
  /** Committed here AND acknowledged by the primary region (any one region when none is set). */
  SEMI_SYNCHRONOUS: 'SEMI_SYNCHRONOUS',
  /** Committed here; shipped in the background. */
  ASYNCHRONOUS: 'ASYNCHRONOUS',
} as const;
/** One of {@link ReplicationStrategy}'s values. */
export type ReplicationStrategy = (typeof ReplicationStrategy)[keyof typeof ReplicationStrategy];

const strategies = new Set<string>(Object.values(ReplicationStrategy));

/** Throws TypeError unless `strategy` is a {@link ReplicationStrategy}. */
export function checkReplicationStrategy(
  strategy: unknown,
): asserts strategy is ReplicationStrategy {
  if (typeof strategy !== 'string' || !strategies.has(strategy)) {
    throw new TypeError(
      `Invalid replication strategy: ${String(strategy)} (expected one of ${[...strategies].join(', ')})`,
    );
  }
}

/**
 * What a sync or semi-sync write does when its regions do not acknowledge it in time:
 * `fail` rejects with {@link ReplicationTimeoutError} (the write stays committed here and
 * still ships), `async` falls back to asynchronous replication and says so in the receipt.
 */
export type ReplicationFallback = 'fail' | 'async';

/**
 * A region: another PhantomDB cluster (or single node), reached at the client URL of any of
 * its nodes. Given as `url`, or as the seed's `host` and `port`.
 */
export interface RegionInfo {
  readonly id: string;
  readonly url?: string;
  readonly host?: string;
  readonly port?: number;
  /** The region semi-synchronous writes wait for. */
  readonly primary?: boolean;
}

/** A region as the replicated state holds it. */
export interface Region {
  readonly id: string;
  /** Origin of the region's client API, e.g. `http://10.0.2.1:7001`. */
  readonly url: string;
  readonly primary: boolean;
}

/** Region ids: also URL path segments and metric labels, so kept plain. */
const regionIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Throws TypeError unless `id` is a region id (1-64 letters, digits, '.', '_', '-'). */
export function checkRegionId(id: unknown, what = 'region id'): asserts id is string {
  if (typeof id !== 'string' || !regionIdPattern.test(id)) {
    throw new TypeError(
      `Invalid ${what} ${JSON.stringify(id)}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
}

/**
 * The normalized URL origin of `region` (from `url`, or `http://host:port`); throws TypeError
 * when it is not an http(s) URL or neither form is given.
 */
export function regionUrlOf(region: RegionInfo): string {
  let text: string;
  if (region.url !== undefined) {
    if (typeof region.url !== 'string') throw new TypeError(`Invalid url for region ${region.id}`);
    text = region.url;
  } else {
    const { host, port } = region;
    if (typeof host !== 'string' || host === '' || !Number.isInteger(port)) {
      throw new TypeError(`Invalid region ${region.id}: give a url, or a host and a port`);
    }
    if (port! < 1 || port! > 65535) {
      throw new RangeError(`Invalid port for region ${region.id}: ${port}`);
    }
    text = nodeUrl('http', host, port!);
  }
  let parsed: URL;
  try {
    parsed = new URL(text);
  } catch {
    throw new TypeError(`Invalid url for region ${region.id}: ${JSON.stringify(text)}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new TypeError(`Invalid url for region ${region.id}: it must be http:// or https://`);
  }
  return parsed.origin;
}

/** What a replicated write returns: where it went and which regions have it. */
export interface ReplicationReceipt {
  /** The write's index and term in this region's log. */
  readonly index: number;
  readonly term: number;
  /** The strategy it was replicated under. */
  readonly strategy: ReplicationStrategy;
  /** Regions that had committed it (or a later write of its key) when this was returned. */
  readonly acknowledged: readonly string[];
  /** Regions that had not; they will get it in the background. */
  readonly pending: readonly string[];
  /** Regions the strategy waited for. */
  readonly required: readonly string[];
  /** True when the strategy's wait was given up and the write fell back to asynchronous. */
  readonly fellBack: boolean;
  /** Why it fell back ('' when it did not). */
  readonly reason: string;
  /** Time spent waiting for acknowledgements. */
  readonly waitedMs: number;
}

/** One region's replication status, as seen from this node. */
export interface ReplicationStatus {
  readonly regionId: string;
  readonly url: string;
  readonly primary: boolean;
  /**
   * True on the leader, which ships to the region: the connection fields are live. On a
   * follower they are empty and the index comes from the durable cursor.
   */
  readonly live: boolean;
  /** The last exchange with the region (ship or heartbeat) succeeded. */
  readonly connected: boolean;
  /** When the region last answered (ms since the epoch), or null. */
  readonly lastHeartbeatMs: number | null;
  /** Round trip of that answer, or null. */
  readonly roundTripMs: number | null;
  /** Highest index of this region's log that the region acknowledged. */
  readonly lastAckedIndex: number;
  /** The same, as last recorded through this region's Raft log (what a new leader starts from). */
  readonly durableCursor: number;
  /** Log entries between that index and this region's latest local write (0 when caught up). */
  readonly lagEntries: number;
  /** Age of the oldest local write the region has not acknowledged, by its HLC (0 when none). */
  readonly lagMs: number;
  /** Local writes (latest per key) the region has not acknowledged. */
  readonly pending: number;
  /** Why the last exchange failed, or null. */
  readonly lastError: string | null;
  /** Writes shipped to and acknowledged by the region since this node became leader. */
  readonly shippedWrites: number;
  readonly ackedWrites: number;
  readonly shippedBatches: number;
  /** Sync or semi-sync writes that fell back to async while waiting for this region. */
  readonly fallbacks: number;
}

/**
 * A sync or semi-sync write was committed here but its regions did not acknowledge it in time
 * (and the fallback setting is `fail`). The write is durable in this region and will still be
 * shipped; `receipt` says which regions have it.
 */
export class ReplicationTimeoutError extends PhantomError {
  override readonly name = 'ReplicationTimeoutError';
  constructor(
    readonly receipt: ReplicationReceipt,
    message: string,
  ) {
    super('REGION_UNAVAILABLE', message);
  }
}

/**
 * This node cannot take a region's request because it is not its region's leader; the
 * leader's client URL is `leaderUrl` ('' when unknown), where the sender should go instead.
 */
export class RegionNotLeaderError extends NotLeaderError {
  constructor(
    leaderId: string,
    readonly leaderUrl: string,
  ) {
    super(
      leaderId,
      leaderId === ''
        ? 'Cannot take replication requests: this node is not its region leader and knows none'
        : `Cannot take replication requests: this node is not its region leader; ${leaderId} is (${leaderUrl || 'URL unknown'})`,
    );
  }
}

/** A region answered, but with a different identity or settings than this region expects. */
export class RegionMismatchError extends PhantomError {
  override readonly name = 'RegionMismatchError';
  constructor(message: string) {
    super('BAD_REQUEST', message);
  }
}

/**
 * Names of the Raft commands the replicated state applies: key-value writes (the node's `kv`,
 * unchanged), batches from other regions, and region changes. Applications cannot submit them.
 */
export const replicatedCommands = {
  kv: 'kv',
  remoteBatch: 'replication',
  regions: 'regions',
} as const;
