/**
 * Runs many seeds and sums them up; formats a failing run for humans. Used by the `sim` CLI
 * and, in process, by the test suite.
 */
import { runSimulation, type SimulationOptions, type SimulationResult } from './simulation.js';

/** Options shared by every seed of a batch. */
export type BatchOptions = Omit<SimulationOptions, 'seed'>;

/** Totals over a batch of seeds. */
export interface BatchSummary {
  readonly seedsRun: number;
  readonly failures: readonly SimulationResult[];
  readonly virtualMs: number;
  readonly events: number;
  readonly messagesSent: number;
  readonly elections: number;
  readonly crashes: number;
  readonly snapshotsTaken: number;
  readonly snapshotsInstalled: number;
  readonly confChanges: number;
  readonly operations: { ok: number; failed: number; unknown: number };
  /** Operations given to the linearizability checker (every operation of every checked run). */
  readonly operationsChecked: number;
  readonly checkMs: number;
  readonly wallMs: number;
}

/**
 * Runs `seeds` in order. Stops at the first failure when `failFast`; `onResult` sees each run
 * as it ends (for progress output).
 */
export function runSeeds(
  seeds: Iterable<number>,
  options: BatchOptions,
  control: { failFast?: boolean; onResult?: (result: SimulationResult) => void } = {},
): BatchSummary {
  const started = performance.now();
  const failures: SimulationResult[] = [];
  const totals = {
    seedsRun: 0,
    virtualMs: 0,
    events: 0,
    messagesSent: 0,
    elections: 0,
    crashes: 0,
    snapshotsTaken: 0,
    snapshotsInstalled: 0,
    confChanges: 0,
    operationsChecked: 0,
    checkMs: 0,
  };
  const operations = { ok: 0, failed: 0, unknown: 0 };
  for (const seed of seeds) {
    const result = runSimulation({ ...options, seed });
    totals.seedsRun++;
    totals.virtualMs += result.virtualMs;
    totals.events += result.events;
    totals.messagesSent += result.messagesSent;
    totals.elections += result.elections;
    totals.crashes += result.crashes;
    totals.snapshotsTaken += result.snapshotsTaken;
    totals.snapshotsInstalled += result.snapshotsInstalled;
    totals.confChanges += result.confChanges;
    operations.ok += result.operations.ok;
    operations.failed += result.operations.failed;
    operations.unknown += result.operations.unknown;
    if (result.check !== null) {
      totals.operationsChecked += result.check.operations;
      totals.checkMs += result.check.elapsedMs;
    }
    control.onResult?.(result);
    if (result.failure !== null) {
      failures.push(result);
      if (control.failFast === true) break;
    }
  }
  return { ...totals, failures, operations, wallMs: performance.now() - started };
}

/** The summary in a few lines. */
export function formatSummary(summary: BatchSummary): string {
  const passed = summary.seedsRun - summary.failures.length;
  const failedSeeds =
    summary.failures.length === 0
      ? ''
      : ` (failing seeds: ${summary.failures.map((failure) => failure.seed).join(', ')})`;
  const { ok, failed, unknown } = summary.operations;
  return [
    `seeds: ${summary.seedsRun} run, ${passed} passed, ${summary.failures.length} failed${failedSeeds}`,
    `virtual time: ${(summary.virtualMs / 1000).toFixed(1)} s; events: ${summary.events}; messages sent: ${summary.messagesSent}`,
    `elections: ${summary.elections}; crashes: ${summary.crashes}; snapshots: ${summary.snapshotsTaken} taken, ${summary.snapshotsInstalled} installed; membership changes applied: ${summary.confChanges}`,
    `client operations: ${ok + failed + unknown} (${ok} ok, ${unknown} unknown outcome, ${failed} certainly failed); ops checked for linearizability: ${summary.operationsChecked} in ${(summary.checkMs / 1000).toFixed(2)} s`,
    `wall time: ${(summary.wallMs / 1000).toFixed(1)} s`,
  ].join('\n');
}

/** The flags that replay `result` alone. */
export function replayCommand(result: SimulationResult, options: BatchOptions): string {
  const flags = [`--seed ${result.seed}`];
  if (options.nodes !== undefined) flags.push(`--nodes ${options.nodes}`);
  if (options.churn === false) flags.push('--no-churn');
  if (options.faults !== undefined) flags.push(`--faults ${options.faults}`);
  if (options.staleReads === true) flags.push('--stale-reads');
  if (options.unsafeCommit === true) flags.push('--unsafe-commit');
  if (options.sendBeforePersist === true) flags.push('--send-before-persist');
  return `npm run sim -- ${flags.join(' ')}`;
}

/**
 * A failing run for humans: seed, property, message, how to replay, and the last trace lines.
 * The seed is replayed with the core's own trace events switched on (the core's trace is a
 * pure sink, so the replay must fail identically; if it does not, that is reported, because
 * it would mean the run was not deterministic).
 */
export function formatFailure(
  result: SimulationResult,
  options: BatchOptions,
  tailLines = 200,
): string {
  const failure = result.failure;
  if (failure === null) return `seed ${result.seed}: passed`;
  const replay = runSimulation({
    ...options,
    seed: result.seed,
    coreTrace: true,
    traceTail: tailLines,
  });
  const same =
    replay.failure !== null &&
    replay.failure.property === failure.property &&
    replay.failure.message === failure.message;
  const trace = same ? replay.traceTail : result.traceTail.slice(-tailLines);
  return [
    `seed ${result.seed} FAILED at ${failure.atMs.toFixed(3)} ms (virtual): ${failure.message}`,
    `parameters: ${result.parameters}`,
    `replay: ${replayCommand(result, options)}`,
    same
      ? `last ${trace.length} events (replayed with core trace):`
      : `WARNING: the replay did not fail the same way (${replay.failure?.message ?? 'it passed'}): the run is not deterministic. Last ${trace.length} events of the original run:`,
    ...trace,
  ].join('\n');
}
