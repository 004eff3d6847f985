/**
 * Prometheus metrics of replication between regions, registered into a node's prom-client
 * Registry and read from the ConsensusManager when scraped: per region connectivity, round
 * trip, acknowledged index, lag in entries and seconds, pending writes, writes and batches
 * shipped and acknowledged, fallbacks; sync failures; batches and writes received from other
 * regions; and conflicts resolved by outcome.
 *
 * Shipping counters live in the leader's links and start again when leadership moves; the
 * counters here only ever grow (a value that went down is a new link, counted from zero).
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { ResolutionStats } from '../conflict/conflict-resolver.js';
import type { ReplicationCounters } from './replication-manager.js';
import type { ReplicationStatus } from './types.js';

/** What the metrics read at scrape time (a ConsensusManager). */
export interface ReplicationMetricsSource {
  getReplicationStatus(): ReplicationStatus[];
  getReplicationCounters(): ReplicationCounters;
  getConflictResolutionStats(): ResolutionStats;
}

/**
 * A counter that mirrors a monotonic count kept elsewhere (storage, replication): each scrape
 * adds what the count grew by since the last one.
 */
export function mirroredCounter(
  registry: Registry,
  name: string,
  help: string,
  value: () => number,
): void {
  let seen = 0;
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      const now = value();
      if (now > seen) this.inc(now - seen);
      seen = now;
    },
  });
}

/** Registers the replication metrics into `registry`. */
export function registerReplicationMetrics(
  registry: Registry,
  source: ReplicationMetricsSource,
): void {
  const registers = [registry];
  const perRegion = (
    name: string,
    help: string,
    value: (status: ReplicationStatus) => number | null,
  ): void => {
    new Gauge({
      name,
      help,
      labelNames: ['region'],
      registers,
      collect() {
        this.reset();
        for (const status of source.getReplicationStatus()) {
          const measured = value(status);
          if (measured !== null) this.set({ region: status.regionId }, measured);
        }
      },
    });
  };
  perRegion(
    'phantomdb_replication_region_connected',
    'Whether the last exchange with the region succeeded (1) or not (0); reported by the leader',
    (status) => (status.live ? (status.connected ? 1 : 0) : null),
  );
  perRegion(
    'phantomdb_replication_round_trip_seconds',
    'Round trip of the last answer from the region',
    (status) => (status.roundTripMs === null ? null : status.roundTripMs / 1000),
  );
  perRegion(
    'phantomdb_replication_acked_index',
    "Highest index of this region's log the region acknowledged",
    (status) => status.lastAckedIndex,
  );
  perRegion(
    'phantomdb_replication_lag_entries',
    'Log entries between what the region acknowledged and the latest local write',
    (status) => status.lagEntries,
  );
  perRegion(
    'phantomdb_replication_lag_seconds',
    'Age of the oldest local write the region has not acknowledged (by its HLC)',
    (status) => status.lagMs / 1000,
  );
  perRegion(
    'phantomdb_replication_pending_writes',
    'Local writes (latest per key) the region has not acknowledged',
    (status) => status.pending,
  );

  const perRegionCounter = (
    name: string,
    help: string,
    value: (status: ReplicationStatus) => number,
  ): void => {
    const seen = new Map<string, number>();
    new Counter({
      name,
      help,
      labelNames: ['region'],
      registers,
      collect() {
        for (const status of source.getReplicationStatus()) {
          const now = value(status);
          const before = seen.get(status.regionId) ?? 0;
          // Lower than last time: a new link (leadership moved) counting from zero.
          const grown = now >= before ? now - before : now;
          if (grown > 0) this.inc({ region: status.regionId }, grown);
          seen.set(status.regionId, now);
        }
      },
    });
  };
  perRegionCounter(
    'phantomdb_replication_shipped_writes_total',
    'Writes shipped to the region by this node as leader',
    (status) => status.shippedWrites,
  );
  perRegionCounter(
    'phantomdb_replication_acked_writes_total',
    'Writes the region acknowledged (committed) to this node as leader',
    (status) => status.ackedWrites,
  );
  perRegionCounter(
    'phantomdb_replication_shipped_batches_total',
    'Batches shipped to the region by this node as leader',
    (status) => status.shippedBatches,
  );
  perRegionCounter(
    'phantomdb_replication_fallbacks_total',
    'Sync or semi-sync writes that fell back to async while waiting for the region',
    (status) => status.fallbacks,
  );

  const counter = (name: string, help: string, value: () => number): void =>
    mirroredCounter(registry, name, help, value);
  const counters = (): ReplicationCounters => source.getReplicationCounters();
  counter(
    'phantomdb_replication_sync_failures_total',
    'Sync or semi-sync writes that failed because their regions did not acknowledge them in time',
    () => counters().syncFailures,
  );
  counter(
    'phantomdb_replication_received_batches_total',
    'Batches from other regions committed through this region as leader',
    () => counters().receivedBatches,
  );
  counter(
    'phantomdb_replication_received_writes_total',
    'Writes from other regions applied for the first time',
    () => counters().receivedWrites,
  );
  counter(
    'phantomdb_replication_duplicate_writes_total',
    'Writes from other regions received again and skipped (re-shipped after a leader change)',
    () => counters().duplicateWrites,
  );

  const outcomes = [
    ['timestamp', 'resolvedByTimestamp'],
    ['lww', 'resolvedByLWW'],
    ['multi_value', 'resolvedByMultiValue'],
    ['custom', 'resolvedByCustom'],
    ['unresolved', 'unresolvedConflicts'],
  ] as const;
  const seenConflicts = new Map<string, number>();
  new Counter({
    name: 'phantomdb_conflicts_total',
    help: 'Writes from other regions merged with a local version, by how they were resolved',
    labelNames: ['outcome'],
    registers,
    collect() {
      const stats = source.getConflictResolutionStats();
      for (const [outcome, field] of outcomes) {
        const now = stats[field];
        const grown = now - (seenConflicts.get(outcome) ?? 0);
        if (grown > 0) this.inc({ outcome }, grown);
        seenConflicts.set(outcome, now);
      }
    },
  });
}
