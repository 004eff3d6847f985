/**
 * The node's Prometheus metrics, in a prom-client Registry of its own (several nodes in one
 * process, as in tests, must not share the global registry). Names follow etcd's where an
 * etcd operator would look for them: `phantomdb_wal_fsync_duration_seconds` is etcd's
 * `etcd_disk_wal_fsync_duration_seconds`, `phantomdb_proposals_total{outcome}` its
 * `proposals_committed_total` / `proposals_failed_total`.
 *
 * Gauges of Raft state and the storage counters are read when scraped, from {@link
 * MetricsSource}; request counts, proposal outcomes, RPC errors and fsync latency are recorded
 * as they happen.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { mirroredCounter } from '../replication/metrics.js';
import type { StorageStats } from '../storage/file-persistence.js';

/** What the metrics read at scrape time. */
export interface MetricsSource {
  readonly nodeId: string;
  raft(): {
    readonly state: string;
    readonly term: number;
    readonly commitIndex: number;
    readonly lastApplied: number;
    readonly leader: string;
    readonly members: number;
  };
  storage(): StorageStats;
  keys(): number;
}

/** Every role a node reports, one time series each (1 for the current one). */
const roles = ['follower', 'preCandidate', 'candidate', 'leader'] as const;

/** The node's metrics. */
export class NodeMetrics {
  /** The registry `/metrics` renders. */
  readonly registry = new Registry();
  private readonly requests: Counter<'route' | 'method' | 'status'>;
  private readonly requestSeconds: Histogram<'route' | 'method'>;
  private readonly proposals: Counter<'outcome'>;
  private readonly rpcErrors: Counter<'peer' | 'reason'>;
  private readonly fsyncSeconds: Histogram<'outcome'>;
  private readonly forwards: Counter<'outcome'>;

  constructor(source: MetricsSource) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ node: source.nodeId });
    collectDefaultMetrics({ register: this.registry, prefix: 'phantomdb_' });

    this.requests = new Counter({
      name: 'phantomdb_http_requests_total',
      help: 'Client API requests answered, by route pattern, method and status',
      labelNames: ['route', 'method', 'status'],
      registers,
    });
    this.requestSeconds = new Histogram({
      name: 'phantomdb_http_request_duration_seconds',
      help: 'Time to answer a client API request, forwarding included',
      labelNames: ['route', 'method'],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.proposals = new Counter({
      name: 'phantomdb_proposals_total',
      help: 'Commands this node proposed as leader: committed (and applied) or failed',
      labelNames: ['outcome'],
      registers,
    });
    this.rpcErrors = new Counter({
      name: 'phantomdb_peer_rpc_errors_total',
      help: 'Raft messages to a peer that got no useful answer, by peer and reason',
      labelNames: ['peer', 'reason'],
      registers,
    });
    this.forwards = new Counter({
      name: 'phantomdb_forwarded_requests_total',
      help: 'Client requests this node forwarded to the leader, by outcome',
      labelNames: ['outcome'],
      registers,
    });
    this.fsyncSeconds = new Histogram({
      name: 'phantomdb_wal_fsync_duration_seconds',
      help: 'Latency of WAL fdatasync calls (one per group commit)',
      labelNames: ['outcome'],
      // etcd's buckets: 1 ms doubling to about 8 s.
      buckets: Array.from({ length: 14 }, (_, k) => 0.001 * 2 ** k),
      registers,
    });

    const raft = (): ReturnType<MetricsSource['raft']> => source.raft();
    new Gauge({
      name: 'phantomdb_raft_term',
      help: 'Current Raft term',
      registers,
      collect() {
        this.set(raft().term);
      },
    });
    new Gauge({
      name: 'phantomdb_raft_role',
      help: 'Raft role of this node: 1 for the current role, 0 for the others',
      labelNames: ['role'],
      registers,
      collect() {
        const state = raft().state;
        for (const role of roles) this.set({ role }, state === role ? 1 : 0);
      },
    });
    new Gauge({
      name: 'phantomdb_raft_has_leader',
      help: '1 when this node knows a leader, else 0',
      registers,
      collect() {
        this.set(raft().leader === '' ? 0 : 1);
      },
    });
    new Gauge({
      name: 'phantomdb_raft_commit_index',
      help: 'Highest log index known committed',
      registers,
      collect() {
        this.set(raft().commitIndex);
      },
    });
    new Gauge({
      name: 'phantomdb_raft_applied_index',
      help: 'Highest log index applied to the key-value state machine on this node',
      registers,
      collect() {
        this.set(raft().lastApplied);
      },
    });
    new Gauge({
      name: 'phantomdb_raft_members',
      help: 'Members (voters and learners) in the configuration this node knows',
      registers,
      collect() {
        this.set(raft().members);
      },
    });
    new Gauge({
      name: 'phantomdb_kv_keys',
      help: 'Keys held by the key-value state machine',
      registers,
      collect() {
        this.set(source.keys());
      },
    });

    // Storage counters live in FilePersistence; each scrape adds what grew since the last.
    const storageCounter = (name: string, help: string, field: keyof StorageStats): void =>
      mirroredCounter(this.registry, name, help, () => source.storage()[field]);
    storageCounter('phantomdb_wal_fsyncs_total', 'WAL fdatasync calls', 'fsyncs');
    storageCounter('phantomdb_wal_writes_total', 'WAL writes (one per group commit)', 'writes');
    storageCounter(
      'phantomdb_wal_saves_total',
      'Raft Ready saves made durable by an fsync (concurrent saves share one: group commit)',
      'syncedSaves',
    );
    storageCounter('phantomdb_wal_bytes_written_total', 'Bytes written to the WAL', 'bytesWritten');
    storageCounter(
      'phantomdb_snapshots_written_total',
      'State-machine snapshots written to disk',
      'snapshotsWritten',
    );
  }

  /** Counts one answered client request and its latency. */
  onRequest(route: string, method: string, status: number, seconds: number): void {
    this.requests.inc({ route, method, status: String(status) });
    this.requestSeconds.observe({ route, method }, seconds);
  }

  /** Counts a proposal that was committed and applied, or that failed. */
  onProposal(committed: boolean): void {
    this.proposals.inc({ outcome: committed ? 'committed' : 'failed' });
  }

  /** Counts a Raft message to `peer` that failed (`reason` from PeerUnreachableError). */
  onRpcError(peer: string, reason: string): void {
    this.rpcErrors.inc({ peer, reason });
  }

  /** Counts a request forwarded to the leader: answered by it, or failed on the way. */
  onForward(outcome: 'answered' | 'retried' | 'failed'): void {
    this.forwards.inc({ outcome });
  }

  /** Records one WAL fdatasync. */
  onDatasync(seconds: number, failed: boolean): void {
    this.fsyncSeconds.observe({ outcome: failed ? 'failed' : 'ok' }, seconds);
  }

  /** The Prometheus text exposition and its content type. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
