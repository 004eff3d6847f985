/**
 * Limits and defaults, in one place. Each section is a plain object of defaults plus a
 * validator that throws RangeError naming the bad field; components validate at construction.
 * Names carry their unit last (`electionTicks`, `segmentBytesMax`).
 */

/** Checks that `value` is an integer in [min, max]; throws RangeError naming `field` otherwise. */
export function checkInteger(
  field: string,
  value: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new RangeError(
      `Invalid ${field}: ${String(value)} (expected an integer in ${min}..${max})`,
    );
  }
}

/**
 * The range of one integer limit: it must be an integer in `min..max`; when `atLeast` names
 * another limit of the same group, no less than that limit's value; when `below` names one,
 * less than it. `flagMax` is a tighter maximum that only the node's flag applies
 * (src/node/config.ts), for a bound that is a typo guard there but not a rule of the library:
 * the library accepts up to `max`.
 */
export interface IntegerBounds<Field extends string> {
  readonly min: number;
  readonly max: number;
  readonly atLeast?: Field;
  readonly below?: Field;
  readonly flagMax?: number;
}

/**
 * The bounds of each integer field of one group of limits, in the order they are checked: a
 * field named by `atLeast` or `below` comes first, so its value is known to be good when it
 * bounds another.
 */
export type IntegerBoundsTable<Field extends string> = {
  readonly [F in Field]: IntegerBounds<Field>;
};

/**
 * Checks each field of `limits` that `bounds` lists, in the table's order; throws RangeError
 * naming `${prefix}${field}` on the first bad one. `flagMax` is not applied (see
 * {@link IntegerBounds}).
 */
export function checkIntegerBounds<Field extends string>(
  limits: Readonly<Record<Field, number>>,
  bounds: IntegerBoundsTable<Field>,
  prefix = '',
): void {
  for (const field of Object.keys(bounds) as Field[]) {
    const { min, max, atLeast, below } = bounds[field];
    checkInteger(
      `${prefix}${field}`,
      limits[field],
      atLeast === undefined ? min : Math.max(min, limits[atLeast]),
      below === undefined ? max : Math.min(max, limits[below] - 1),
    );
  }
}

/**
 * The longest delay `setTimeout` honours (2^31 - 1 ms, about 24.8 days): Node fires a longer
 * timer after 1 ms instead, so a timeout above it would expire at once.
 */
export const timerDelayMsMax = 2 ** 31 - 1;

/** Tunables of the Raft core. Time is counted in ticks; the driver decides a tick's length. */
export interface RaftLimits {
  /** Ticks without hearing from a leader before a follower campaigns (randomized in [n, 2n)). */
  readonly electionTicks: number;
  /** Ticks between leader heartbeats; must be well below electionTicks. */
  readonly heartbeatTicks: number;
  /** Probe a peer with Pre-Vote before a real election, so a partitioned node cannot disrupt. */
  readonly preVote: boolean;
  /** A leader that hears from no quorum within an election timeout steps down. */
  readonly checkQuorum: boolean;
  /** AppendEntries messages in flight to one follower in the replicate state. */
  readonly inflightMessagesMax: number;
  /** Payload bytes in flight to one follower. */
  readonly inflightBytesMax: number;
  /** Payload bytes in one AppendEntries message (at least one entry is always sent). */
  readonly messageBytesMax: number;
  /** Payload bytes of proposals appended but not yet committed; past it proposals are refused. */
  readonly uncommittedBytesMax: number;
  /** Payload bytes of committed entries handed out in one Ready. */
  readonly committedBytesPerReadyMax: number;
}

/** Defaults of {@link RaftLimits}; with a 100 ms tick the election timeout is 1-2 s. */
export const raftDefaults: RaftLimits = {
  electionTicks: 10,
  heartbeatTicks: 1,
  preVote: true,
  checkQuorum: true,
  inflightMessagesMax: 256,
  inflightBytesMax: 32 * 1024 * 1024,
  messageBytesMax: 1024 * 1024,
  uncommittedBytesMax: 64 * 1024 * 1024,
  committedBytesPerReadyMax: 4 * 1024 * 1024,
};

/** The node's largest `--election-ticks`: 1,000 s at the default 100 ms tick. */
const electionTicksFlagMax = 10_000;

/** The integer fields of {@link RaftLimits} (the others are switches). */
export type RaftIntegerLimit = Exclude<keyof RaftLimits, 'preVote' | 'checkQuorum'>;

/**
 * The bounds of each integer {@link RaftLimits} field, in the order they are checked. This is
 * the one source of truth for them: {@link resolveRaftLimits} checks against it, and so do the
 * node's `--election-ticks` and `--heartbeat-ticks` (src/node/config.ts), which name the flag.
 * The library puts no maximum on a tick count, because the driver decides a tick's length (a
 * 1 ms tick needs a hundred times the ticks of a 100 ms one); the node, whose tick is
 * `--tick-ms`, caps `--election-ticks` as a typo guard (`flagMax`), and so `--heartbeat-ticks`
 * below it.
 */
export const raftLimitBounds: IntegerBoundsTable<RaftIntegerLimit> = {
  // At least 2, so that a heartbeat interval (at least 1 tick) fits below it.
  electionTicks: { min: 2, max: Number.MAX_SAFE_INTEGER, flagMax: electionTicksFlagMax },
  // A leader heartbeats within every election timeout, or its followers would campaign. The
  // flagMax follows from --election-ticks' and only gives the flag a readable range message.
  heartbeatTicks: {
    min: 1,
    max: Number.MAX_SAFE_INTEGER,
    below: 'electionTicks',
    flagMax: electionTicksFlagMax - 1,
  },
  inflightMessagesMax: { min: 1, max: Number.MAX_SAFE_INTEGER },
  inflightBytesMax: { min: 1, max: Number.MAX_SAFE_INTEGER },
  messageBytesMax: { min: 1, max: Number.MAX_SAFE_INTEGER },
  uncommittedBytesMax: { min: 1, max: Number.MAX_SAFE_INTEGER },
  committedBytesPerReadyMax: { min: 1, max: Number.MAX_SAFE_INTEGER },
};

/**
 * Fills in defaults and validates against {@link raftLimitBounds}; throws RangeError on the
 * first bad field.
 */
export function resolveRaftLimits(overrides: Partial<RaftLimits> = {}): RaftLimits {
  const limits = { ...raftDefaults, ...overrides };
  checkIntegerBounds(limits, raftLimitBounds);
  return limits;
}

/** Tunables of the durable storage (write-ahead log and snapshots). */
export interface StorageLimits {
  /** A WAL segment past this size is closed and a new one started (a record is never split). */
  readonly segmentBytesMax: number;
  /** Bytes of WAL records written by one group commit (one write + one fdatasync). */
  readonly groupCommitBytesMax: number;
  /**
   * Payload bytes of one WAL record: larger entry batches are split over several records (an
   * entry bigger than this still gets one record of its own; entries are never split).
   */
  readonly recordBytesMax: number;
  /** Snapshot files kept on disk; older ones are deleted once a newer one is durable. */
  readonly snapshotsRetained: number;
}

/** Defaults of {@link StorageLimits} (etcd uses 64 MiB segments too). */
export const storageDefaults: StorageLimits = {
  segmentBytesMax: 64 * 1024 * 1024,
  groupCommitBytesMax: 16 * 1024 * 1024,
  recordBytesMax: 16 * 1024 * 1024,
  snapshotsRetained: 3,
};

/** Fills in defaults and validates; throws RangeError on the first bad field. */
export function resolveStorageLimits(overrides: Partial<StorageLimits> = {}): StorageLimits {
  const limits = { ...storageDefaults, ...overrides };
  checkInteger('segmentBytesMax', limits.segmentBytesMax, 4096, 2 ** 32 - 1);
  checkInteger('groupCommitBytesMax', limits.groupCommitBytesMax, 4096);
  checkInteger('recordBytesMax', limits.recordBytesMax, 64, 2 ** 31);
  checkInteger('snapshotsRetained', limits.snapshotsRetained, 1, 1000);
  return limits;
}

/**
 * Tunables of the peer transport (HTTP + CBOR between Raft members). Sizes bound what a
 * receiver buffers per request; times bound how long a sender waits before it reports a peer
 * unreachable to the core.
 */
export interface TransportLimits {
  /** Largest body of a vote, append, heartbeat or timeout-now request or response. */
  readonly messageBodyBytesMax: number;
  /** Snapshot bytes a sender puts in one `/raft/snapshot` chunk. */
  readonly snapshotChunkBytes: number;
  /** Largest `/raft/snapshot` request body a receiver accepts (one chunk plus its envelope). */
  readonly snapshotChunkBodyBytesMax: number;
  /** Largest whole snapshot a receiver assembles from chunks. */
  readonly snapshotBytesMax: number;
  /** Partial snapshot transfers a receiver holds at once (at most one per sender). */
  readonly snapshotTransfersMax: number;
  /** A partial transfer that receives no chunk for this long is discarded. */
  readonly snapshotTransferIdleMs: number;
  /** Deadline of a vote, append, heartbeat or timeout-now request, queueing included. */
  readonly rpcTimeoutMs: number;
  /** Deadline of one snapshot chunk; the last one includes the receiver installing it. */
  readonly snapshotChunkTimeoutMs: number;
  /** Deadline of opening a TCP connection to a peer. */
  readonly connectTimeoutMs: number;
  /** Connections per peer for votes, heartbeats, timeout-now and snapshot chunks. */
  readonly controlConnectionsPerPeer: number;
  /**
   * How long an append without entries (a new commit index for a follower) waits for an
   * append with entries to travel with, when nothing else is queued for that peer; 0 sends
   * it at once. Only followers' knowledge of the commit index is delayed, never a commit.
   */
  readonly commitLingerMs: number;
  /** First delay before a failed peer is tried again; doubles per failure, with jitter. */
  readonly backoffBaseMs: number;
  /** Longest delay before a failed peer is tried again. */
  readonly backoffMaxMs: number;
  /** Deepest nesting of CBOR arrays and maps a decoder accepts. */
  readonly cborDepthMax: number;
}

/** Defaults of {@link TransportLimits}, sized for a LAN cluster with a 100 ms tick. */
export const transportDefaults: TransportLimits = {
  messageBodyBytesMax: 8 * 1024 * 1024,
  snapshotChunkBytes: 1024 * 1024,
  snapshotChunkBodyBytesMax: 2 * 1024 * 1024,
  snapshotBytesMax: 1024 * 1024 * 1024,
  snapshotTransfersMax: 4,
  snapshotTransferIdleMs: 30_000,
  rpcTimeoutMs: 2_000,
  snapshotChunkTimeoutMs: 10_000,
  connectTimeoutMs: 1_000,
  controlConnectionsPerPeer: 2,
  commitLingerMs: 2,
  backoffBaseMs: 50,
  backoffMaxMs: 1_000,
  cborDepthMax: 16,
};

/** Room a snapshot chunk's envelope (offsets, the SnapshotRequest) needs beside its bytes. */
export const snapshotChunkEnvelopeBytesMax = 64 * 1024;

/** Fills in defaults and validates; throws RangeError on the first bad field. */
export function resolveTransportLimits(overrides: Partial<TransportLimits> = {}): TransportLimits {
  const limits = { ...transportDefaults, ...overrides };
  checkInteger('messageBodyBytesMax', limits.messageBodyBytesMax, 1024);
  checkInteger('snapshotChunkBodyBytesMax', limits.snapshotChunkBodyBytesMax, 2 * 1024);
  checkInteger(
    'snapshotChunkBytes',
    limits.snapshotChunkBytes,
    1,
    Math.max(1, limits.snapshotChunkBodyBytesMax - snapshotChunkEnvelopeBytesMax),
  );
  checkInteger('snapshotBytesMax', limits.snapshotBytesMax, 0, 2 ** 32 - 1);
  checkInteger('snapshotTransfersMax', limits.snapshotTransfersMax, 1);
  checkInteger('snapshotTransferIdleMs', limits.snapshotTransferIdleMs, 1, timerDelayMsMax);
  checkInteger('rpcTimeoutMs', limits.rpcTimeoutMs, 1, timerDelayMsMax);
  checkInteger('snapshotChunkTimeoutMs', limits.snapshotChunkTimeoutMs, 1, timerDelayMsMax);
  checkInteger('connectTimeoutMs', limits.connectTimeoutMs, 1, timerDelayMsMax);
  checkInteger('controlConnectionsPerPeer', limits.controlConnectionsPerPeer, 1, 64);
  checkInteger('commitLingerMs', limits.commitLingerMs, 0, 1000);
  checkInteger('backoffBaseMs', limits.backoffBaseMs, 0, timerDelayMsMax);
  checkInteger('backoffMaxMs', limits.backoffMaxMs, limits.backoffBaseMs, timerDelayMsMax);
  checkInteger('cborDepthMax', limits.cborDepthMax, 4, 1024);
  return limits;
}

/** Limits of the key-value state machine (src/kv); a put beyond them is refused. */
export interface KvLimits {
  /** UTF-8 bytes of a key. */
  readonly keyBytesMax: number;
  /** Bytes of a value. */
  readonly valueBytesMax: number;
}

/** Defaults of {@link KvLimits}: a put stays well below one Raft message (messageBytesMax). */
export const kvDefaults: KvLimits = {
  keyBytesMax: 4 * 1024,
  valueBytesMax: 512 * 1024,
};

/** Fills in defaults and validates; throws RangeError on the first bad field. */
export function resolveKvLimits(overrides: Partial<KvLimits> = {}): KvLimits {
  const limits = { ...kvDefaults, ...overrides };
  checkInteger('keyBytesMax', limits.keyBytesMax, 1, 65_535);
  checkInteger('valueBytesMax', limits.valueBytesMax, 0, 2 ** 32 - 1);
  return limits;
}

/** Tunables of conflict resolution between regions (src/conflict). */
export interface ConflictLimits {
  /**
   * A received HLC timestamp whose wall time is further ahead of the local wall clock than this
   * is skew-suspect: counted and flagged, though the clock still moves past it.
   */
  readonly maxClockOffsetMs: number;
  /**
   * Siblings a MULTI_VALUE key keeps. Past it the oldest by HLC are discarded and counted in
   * `resolvedByBound`; a safety valve, not a resolution strategy.
   */
  readonly siblingsMax: number;
}

/** Defaults of {@link ConflictLimits}: CockroachDB's default max offset, a generous bound. */
export const conflictDefaults: ConflictLimits = {
  maxClockOffsetMs: 500,
  siblingsMax: 32,
};

/** Fills in defaults and validates; throws RangeError on the first bad field. */
export function resolveConflictLimits(overrides: Partial<ConflictLimits> = {}): ConflictLimits {
  const limits = { ...conflictDefaults, ...overrides };
  checkInteger('maxClockOffsetMs', limits.maxClockOffsetMs, 0);
  checkInteger('siblingsMax', limits.siblingsMax, 1, 65_536);
  return limits;
}

/** Tunables of replication between regions (src/replication). */
export interface ReplicationLimits {
  /** Writes in one shipped batch. */
  readonly batchWritesMax: number;
  /** Value bytes in one shipped batch (at least one write is always shipped). */
  readonly batchBytesMax: number;
  /** Largest `/v1/replication/batch` body a receiver accepts. */
  readonly batchBodyBytesMax: number;
  /** An idle leader probes each region this often (connectivity, round trip, position). */
  readonly heartbeatIntervalMs: number;
  /** Deadline of one request to a region; a batch's includes the receiver's commit. */
  readonly requestTimeoutMs: number;
  /** How long a sync or semi-sync write waits for its regions before failing or falling back. */
  readonly replicationTimeoutMs: number;
  /** How often the leader records acknowledged positions through Raft (durable cursors). */
  readonly cursorRecordIntervalMs: number;
  /** First delay before a failing region is tried again; doubles per failure, with jitter. */
  readonly backoffBaseMs: number;
  /** Longest delay before a failing region is tried again. */
  readonly backoffMaxMs: number;
}

/** Defaults of {@link ReplicationLimits}, for regions a WAN round trip apart. */
export const replicationDefaults: ReplicationLimits = {
  batchWritesMax: 1024,
  batchBytesMax: 1024 * 1024,
  batchBodyBytesMax: 16 * 1024 * 1024,
  heartbeatIntervalMs: 500,
  requestTimeoutMs: 5_000,
  replicationTimeoutMs: 2_000,
  cursorRecordIntervalMs: 1_000,
  backoffBaseMs: 100,
  backoffMaxMs: 5_000,
};

/**
 * The bounds of each {@link ReplicationLimits} field (every one is an integer), in the order
 * they are checked. This is the one source of truth for them: {@link resolveReplicationLimits}
 * checks against it, and so does the node's `--replication-timeout-ms` (src/node/config.ts),
 * which names the flag. The node caps that flag by a rule of its own instead of a `flagMax`: it
 * must be below the node's `--request-timeout-ms` (whose own maximum thus caps it too), because
 * a write waits for its regions inside a client's request.
 */
export const replicationLimitBounds: IntegerBoundsTable<keyof ReplicationLimits> = {
  batchWritesMax: { min: 1, max: 1_000_000 },
  batchBytesMax: { min: 1, max: Number.MAX_SAFE_INTEGER },
  batchBodyBytesMax: { min: 1024, max: Number.MAX_SAFE_INTEGER },
  // Each time below feeds a timer: past timerDelayMsMax it would fire at once.
  heartbeatIntervalMs: { min: 1, max: timerDelayMsMax },
  requestTimeoutMs: { min: 1, max: timerDelayMsMax },
  replicationTimeoutMs: { min: 1, max: timerDelayMsMax },
  cursorRecordIntervalMs: { min: 1, max: timerDelayMsMax },
  backoffBaseMs: { min: 0, max: timerDelayMsMax },
  backoffMaxMs: { min: 0, max: timerDelayMsMax, atLeast: 'backoffBaseMs' },
};

/**
 * Fills in defaults and validates against {@link replicationLimitBounds}; throws RangeError on
 * the first bad field.
 */
export function resolveReplicationLimits(
  overrides: Partial<ReplicationLimits> = {},
): ReplicationLimits {
  const limits = { ...replicationDefaults, ...overrides };
  checkIntegerBounds(limits, replicationLimitBounds);
  return limits;
}

/**
 * Tunables of a node's security and overload protection (src/security, src/node): how a
 * signed peer request's clock may differ, and how much work clients may hold in flight.
 */
export interface SecurityLimits {
  /**
   * How far a signed peer or region request's timestamp may be from this node's clock, either
   * way. Requests outside the window are refused, so a captured request cannot be replayed
   * later; inside it Raft and region messages are harmless to repeat and forwarded client
   * requests are refused by nonce.
   */
  readonly authClockSkewMs: number;
  /** Nonces of forwarded client requests remembered to refuse replays inside the window. */
  readonly replayNoncesMax: number;
  /** Client requests in flight per client (bearer token, else remote address); past it 429. */
  readonly clientRequestsInFlightMax: number;
  /** Client requests in flight on this node in all; past it 503 OVERLOADED. */
  readonly requestsInFlightMax: number;
  /**
   * How long a request's body may take to arrive once its route started reading it; a slower
   * one (or one whose client disconnected) is dropped with 400, freeing what it held.
   */
  readonly bodyReadTimeoutMs: number;
}

/**
 * Defaults of {@link SecurityLimits}: a 30 s skew window (NTP keeps clocks far closer), and
 * in-flight caps well above what the cluster benchmark's 256 concurrent clients need.
 */
export const securityDefaults: SecurityLimits = {
  authClockSkewMs: 30_000,
  replayNoncesMax: 65_536,
  clientRequestsInFlightMax: 1_024,
  requestsInFlightMax: 8_192,
  bodyReadTimeoutMs: 30_000,
};

/**
 * The bounds of each {@link SecurityLimits} field (every one is an integer), in the order they
 * are checked: a field named by `atLeast` comes first, so its value is known to be good when it
 * serves as a minimum. This is the one source of truth for them: {@link resolveSecurityLimits}
 * checks against it, and so do the node's flags (src/node/config.ts), which name the flag.
 */
export const securityLimitBounds: IntegerBoundsTable<keyof SecurityLimits> = {
  authClockSkewMs: { min: 1_000, max: 3_600_000 },
  replayNoncesMax: { min: 1_024, max: 10_000_000 },
  clientRequestsInFlightMax: { min: 1, max: 1_000_000 },
  // A node-wide cap below the per-client one would make the per-client cap unreachable.
  requestsInFlightMax: { min: 1, max: 1_000_000, atLeast: 'clientRequestsInFlightMax' },
  bodyReadTimeoutMs: { min: 1, max: 3_600_000 },
};

/**
 * Fills in defaults and validates against {@link securityLimitBounds}; throws RangeError on the
 * first bad field.
 */
export function resolveSecurityLimits(overrides: Partial<SecurityLimits> = {}): SecurityLimits {
  const limits = { ...securityDefaults, ...overrides };
  checkIntegerBounds(limits, securityLimitBounds);
  return limits;
}
