/**
 * Core bugs the simulator found, with the seeds that show them. Seed numbers hold for the
 * simulator as it is now (changing the fault model reshuffles every run); the diagnosis and
 * the scripted regression in known-core-bugs.test.ts do not depend on it.
 *
 * While a bug is open its tests are marked "expected to fail"; set
 * PHANTOMDB_SIM_KNOWN_BUGS=fixed to require them to pass instead. When the core is fixed the
 * "expected to fail" tests go red: move the entry to `fixedCoreBugs` below.
 */
import type { BatchOptions } from '../../src/sim/runner.js';

/** One core bug found by the simulator. */
export interface KnownCoreBug {
  /** Stable name, used to tie scripted regressions to the entry. */
  readonly id: string;
  readonly title: string;
  /** Seeds (with options) that fail because of it. */
  readonly seeds: readonly { readonly seed: number; readonly options: BatchOptions }[];
  /** The property the simulator reports. */
  readonly property: string;
  readonly diagnosis: string;
}

/** Open bugs (none at the moment). */
export const knownCoreBugs: readonly KnownCoreBug[] = [];

/** Bugs fixed since they were found, kept as regressions that must pass. */
export const fixedCoreBugs: readonly KnownCoreBug[] = [
  {
    id: 'stuck-full-window',
    title:
      'a follower whose in-flight window filled up while its answers were lost never catches up',
    seeds: [
      { seed: 200, options: { churn: false } },
      { seed: 496, options: { churn: false } },
      { seed: 2392, options: {} },
    ],
    property: 'liveness',
    diagnosis:
      'RaftCore.onHeartbeatResponse sees the follower in replicate state with a full inflight ' +
      'window and calls sendEmptyAppend, which returns without sending anything when ' +
      'progress.next - 1 is below log.firstIndex() - 1 (the entries were compacted meanwhile). ' +
      'Nothing else ever frees the window, so the leader only sends heartbeats (commit = ' +
      'min(match, commit)) and the follower stays behind forever. Suggested fix: in that case ' +
      'fall back to what maybeSendAppend does for compacted entries (becomeProbe() then ' +
      'maybeSendAppend(to, true), which sends the snapshot). Fixed in the core since (same ' +
      'fix); these seeds failed before it.',
  },
];

/** Whether the open bugs are expected fixed (PHANTOMDB_SIM_KNOWN_BUGS=fixed). */
export const expectKnownBugsFixed = process.env['PHANTOMDB_SIM_KNOWN_BUGS'] === 'fixed';
