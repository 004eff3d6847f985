/**
 * One measured phase: a closed-loop PUT load at one concurrency against one cluster's leader,
 * with the members' CPU, memory and fsync counters read at the edges of the measured window.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createHistogram } from 'node:perf_hooks';
import type { BenchCluster } from './clusters.js';
import type {
  GeneratorDone,
  GeneratorMessage,
  GeneratorProgress,
  GeneratorRun,
} from './load-generator.js';
import { wallClockMs } from './load-generator.js';
import {
  clockTicksPerSecondOf,
  cpuPercentOf,
  readContextSwitches,
  readCpuTicks,
  readMachineTicks,
  readRssBytes,
  systemCpuPercentOf,
} from './procfs.js';
import type { ContextSwitches, CpuTicks } from './procfs.js';
import type { MemberFigures, PhaseResult } from './report.js';
import { applyPriority, sleep } from './processes.js';

const generatorPath = fileURLToPath(new URL('./load-generator.ts', import.meta.url));

/** Settings of one phase. */
export interface PhaseSpec {
  readonly connections: number;
  readonly round: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly keys: number;
  readonly valueBytes: number;
  readonly generators: number;
  readonly seed: number;
  /** Called about once a second with a line describing progress. */
  readonly onProgress: (line: string) => void;
}

/** The measured window on the monotonic clock, to cut CPU profiles to it. */
export interface PhaseWindow {
  readonly startMonotonicUs: number;
  readonly endMonotonicUs: number;
}

/** Every member's `/metrics` text at the start and the end of the measured window. */
export interface PhaseMetrics {
  readonly start: Readonly<Record<string, string>>;
  readonly end: Readonly<Record<string, string>>;
}

function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

interface Generator {
  readonly child: ChildProcess;
  readonly ready: Promise<void>;
  readonly done: Promise<GeneratorDone>;
  measuredOps: number;
  warmupOps: number;
  errors: number;
  /** Answers per second between its last two progress messages. */
  rate: number;
  lastProgress: GeneratorProgress | undefined;
}

function startGenerator(): Generator {
  const child = fork(generatorPath, [], {
    execArgv: ['--import', import.meta.resolve('tsx')],
    env: { ...process.env, PHANTOMDB_BENCH_GENERATOR: '1' },
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    // Its own session, so that it gets the benchmark's priority without lending it to the
    // harness's session; it exits when the IPC channel closes, so it never outlives us.
    detached: true,
  });
  if (child.pid !== undefined) applyPriority(child.pid);
  let onReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => {
    onReady = resolve;
  });
  const generator: Generator = {
    child,
    ready,
    done: new Promise<GeneratorDone>((resolve, reject) => {
      child.on('message', (message: GeneratorMessage) => {
        if (message.type === 'ready') onReady();
        if (message.type === 'progress') {
          const previous = generator.lastProgress;
          if (previous !== undefined && message.atMs > previous.atMs) {
            const done = message.measuredOps + message.warmupOps;
            const before = previous.measuredOps + previous.warmupOps;
            generator.rate = ((done - before) * 1000) / (message.atMs - previous.atMs);
          }
          generator.lastProgress = message;
          generator.measuredOps = message.measuredOps;
          generator.warmupOps = message.warmupOps;
          generator.errors = message.errors;
        }
        if (message.type === 'done') resolve(message);
      });
      child.once('exit', (code, signal) =>
        reject(new Error(`The load generator exited early (${code ?? signal ?? 'unknown'})`)),
      );
    }),
    measuredOps: 0,
    warmupOps: 0,
    errors: 0,
    rate: 0,
    lastProgress: undefined,
  };
  // An early exit must not go unhandled while nobody awaits `done` yet.
  generator.done.catch(() => undefined);
  return generator;
}

interface EdgeReading {
  readonly atMs: number;
  readonly members: readonly (CpuTicks | undefined)[];
  readonly others: readonly (CpuTicks | undefined)[];
  readonly generators: readonly (CpuTicks | undefined)[];
  readonly machine: ReturnType<typeof readMachineTicks>;
  readonly harness: NodeJS.CpuUsage;
  readonly switches: readonly (ContextSwitches | undefined)[];
}

function sumCpu(
  before: readonly (CpuTicks | undefined)[],
  after: readonly (CpuTicks | undefined)[],
  elapsedMs: number,
): number | undefined {
  let total = 0;
  for (const [i, reading] of before.entries()) {
    const percent = cpuPercentOf(reading, after[i], elapsedMs);
    if (percent === undefined) return undefined;
    total += percent;
  }
  return total;
}

/**
 * Runs one phase against `cluster`'s leader. `idle` are the other clusters (still running, idle),
 * whose CPU is reported so that its share of the machine is visible.
 */
export async function runPhase(
  cluster: BenchCluster,
  idle: readonly BenchCluster[],
  spec: PhaseSpec,
): Promise<{ result: PhaseResult; window: PhaseWindow; metrics: PhaseMetrics }> {
  const { member: leader, term } = await cluster.findLeader();
  const counts = Array.from(
    { length: Math.min(spec.generators, spec.connections) },
    (_u, i) =>
      Math.floor(spec.connections / spec.generators) +
      (i < spec.connections % spec.generators ? 1 : 0),
  ).filter((count) => count > 0);
  const generators = counts.map(() => startGenerator());
  try {
    await Promise.all(generators.map((generator) => generator.ready));
    const measureStartMs = wallClockMs() + spec.warmupMs;
    const measureEndMs = measureStartMs + spec.durationMs;
    for (const [i, generator] of generators.entries()) {
      const run: GeneratorRun = {
        type: 'run',
        origin: leader.clientUrl,
        protocol: cluster.protocol,
        connections: counts[i]!,
        keys: spec.keys,
        valueBytes: spec.valueBytes,
        seed: spec.seed * 1000 + i,
        measureStartMs,
        measureEndMs,
      };
      generator.child.send(run);
    }
    const pids = {
      members: cluster.members.map((member) => member.process.pid),
      others: idle.flatMap((other) => other.members.map((member) => member.process.pid)),
      generators: generators.map((generator) => generator.child.pid!),
    };
    const readEdge = (): EdgeReading => ({
      atMs: wallClockMs(),
      members: pids.members.map(readCpuTicks),
      others: pids.others.map(readCpuTicks),
      generators: pids.generators.map(readCpuTicks),
      machine: readMachineTicks(),
      harness: process.cpuUsage(),
      switches: pids.members.map(readContextSwitches),
    });
    const rssMax = pids.members.map(() => 0);
    const sampleRss = (): void => {
      for (const [i, pid] of pids.members.entries()) {
        rssMax[i] = Math.max(rssMax[i]!, readRssBytes(pid) ?? 0);
      }
    };

    // Warm-up, with progress.
    const progress = (stage: string): void => {
      const errors = generators.reduce((sum, g) => sum + g.errors, 0);
      const rate = generators.reduce((sum, g) => sum + g.rate, 0);
      spec.onProgress(
        `${cluster.protocol.padEnd(9)} c=${String(spec.connections).padEnd(4)} ${stage}  ` +
          `${Math.round(rate).toLocaleString('en-US')} ops/s  errors ${errors}`,
      );
    };
    while (wallClockMs() < measureStartMs - 1000) {
      await sleep(Math.min(1000, measureStartMs - wallClockMs() - 1000));
      progress(
        `warm-up ${((spec.warmupMs - (measureStartMs - wallClockMs())) / 1000).toFixed(0)}/${spec.warmupMs / 1000} s`,
      );
    }
    await sleep(Math.max(0, measureStartMs - wallClockMs()));
    const start = readEdge();
    const startMonotonicUs = monotonicUs();
    const metricsBefore = await readAllMetrics(cluster);
    sampleRss();
    while (wallClockMs() < measureEndMs - 1000) {
      await sleep(Math.min(1000, measureEndMs - wallClockMs() - 1000));
      sampleRss();
      progress(
        `measure ${((wallClockMs() - measureStartMs) / 1000).toFixed(0)}/${spec.durationMs / 1000} s`,
      );
    }
    await sleep(Math.max(0, measureEndMs - wallClockMs()));
    const end = readEdge();
    const endMonotonicUs = monotonicUs();
    const metricsAfter = await readAllMetrics(cluster);
    sampleRss();
    const outcomes = await Promise.all(generators.map((generator) => generator.done));

    const histogram = createHistogram({ lowest: 1, highest: 3_600_000_000, figures: 3 });
    let ops = 0;
    const errors: Record<string, number> = {};
    let firstError: string | undefined;
    const timeline = new Array<number>(Math.ceil(spec.durationMs / 1000)).fill(0);
    for (const outcome of outcomes) {
      for (const latencyUs of outcome.latenciesUs)
        histogram.record(Math.max(1, Math.round(latencyUs)));
      ops += outcome.latenciesUs.length;
      for (const [kind, count] of Object.entries(outcome.errors)) {
        errors[kind] = (errors[kind] ?? 0) + count;
      }
      firstError ??= outcome.firstError;
      outcome.opsPerSecond.forEach((count, i) => {
        if (i < timeline.length) timeline[i] = timeline[i]! + count;
      });
    }
    const windowMs = spec.durationMs;
    const after = await cluster.findLeader().catch((error: unknown) => ({
      member: undefined,
      term: NaN,
      error: (error as Error).message,
    }));
    const leaderChange =
      after.member === undefined
        ? `no leader after the phase (${'error' in after ? after.error : ''})`
        : after.member.id !== leader.id || after.term !== term
          ? `leader ${leader.id} term ${term} → ${after.member.id} term ${after.term}`
          : undefined;
    const elapsedMs = end.atMs - start.atMs;
    const members: MemberFigures[] = cluster.members.map((member, i) => ({
      id: member.id,
      isLeader: member.id === leader.id,
      cpuPercent: cpuPercentOf(start.members[i], end.members[i], elapsedMs),
      systemCpuPercent: systemCpuPercentOf(start.members[i], end.members[i], elapsedMs),
      rssBytesMax: rssMax[i] === 0 ? undefined : rssMax[i],
    }));
    const fsyncDeltas = Object.fromEntries(
      cluster.members.map((member) => {
        const before = fsyncsOf(cluster, metricsBefore[member.id]);
        const after = fsyncsOf(cluster, metricsAfter[member.id]);
        const delta =
          before === undefined || after === undefined
            ? undefined
            : {
                metric: after.metric,
                count: after.count - before.count,
                seconds: after.seconds - before.seconds,
              };
        return [member.id, delta];
      }),
    );
    const fsyncs = fsyncDeltas[leader.id];
    const memberFsyncsPerSecond: Record<string, number> = {};
    for (const [id, delta] of Object.entries(fsyncDeltas)) {
      if (delta !== undefined) memberFsyncsPerSecond[id] = (delta.count * 1000) / elapsedMs;
    }
    const ticksPerSecond = clockTicksPerSecondOf();
    const machineCorePercent =
      ((end.machine.busyTicks - start.machine.busyTicks) * 100_000) / ticksPerSecond / elapsedMs;
    const harnessPercent =
      (end.harness.user + end.harness.system - start.harness.user - start.harness.system) /
      10 /
      elapsedMs;
    const ownPercent =
      (sumCpu(start.members, end.members, elapsedMs) ?? 0) +
      (sumCpu(start.others, end.others, elapsedMs) ?? 0) +
      (sumCpu(start.generators, end.generators, elapsedMs) ?? 0) +
      harnessPercent;
    const ms = (value: number): number => value / 1000;
    const result: PhaseResult = {
      protocol: cluster.protocol,
      system: cluster.system,
      label: cluster.label,
      connections: spec.connections,
      round: spec.round,
      windowMs,
      ops,
      opsPerSecond: (ops * 1000) / windowMs,
      latencyMs: {
        p50: ms(histogram.percentile(50)),
        p90: ms(histogram.percentile(90)),
        p99: ms(histogram.percentile(99)),
        p999: ms(histogram.percentile(99.9)),
        max: ms(histogram.max),
        mean: ms(histogram.mean),
      },
      errors,
      ...(firstError === undefined ? {} : { firstError }),
      timeline,
      leaderId: leader.id,
      ...(leaderChange === undefined ? {} : { leaderChange }),
      writesPerFsync: fsyncs === undefined || fsyncs.count === 0 ? undefined : ops / fsyncs.count,
      leaderFsyncsPerSecond: fsyncs === undefined ? undefined : (fsyncs.count * 1000) / elapsedMs,
      leaderFsyncMeanMs:
        fsyncs === undefined || fsyncs.count === 0
          ? undefined
          : (fsyncs.seconds * 1000) / fsyncs.count,
      leaderFsyncBusy: fsyncs === undefined ? undefined : (fsyncs.seconds * 1000) / elapsedMs,
      fsyncMetric: fsyncs?.metric,
      members,
      generatorCpuPercent: sumCpu(start.generators, end.generators, elapsedMs),
      idleClusterCpuPercent:
        idle.length === 0 ? undefined : sumCpu(start.others, end.others, elapsedMs),
      machineBusyPercent:
        ((end.machine.busyTicks - start.machine.busyTicks) * 100) /
        Math.max(1, end.machine.totalTicks - start.machine.totalTicks),
      outsideCpuPercent: Math.max(0, machineCorePercent - ownPercent),
      wakeupsPerWrite: perWrite(start.switches, end.switches, 'voluntary', ops),
      preemptionsPerWrite: perWrite(start.switches, end.switches, 'involuntary', ops),
      memberFsyncsPerSecond,
    };
    return {
      result,
      window: { startMonotonicUs, endMonotonicUs },
      metrics: { start: metricsBefore, end: metricsAfter },
    };
  } finally {
    for (const generator of generators) {
      if (generator.child.exitCode === null && generator.child.signalCode === null) {
        generator.child.kill('SIGKILL');
      }
    }
  }
}

function perWrite(
  before: readonly (ContextSwitches | undefined)[],
  after: readonly (ContextSwitches | undefined)[],
  kind: keyof ContextSwitches,
  ops: number,
): number | undefined {
  if (ops === 0) return undefined;
  let total = 0;
  for (const [i, reading] of before.entries()) {
    const later = after[i];
    if (reading === undefined || later === undefined) return undefined;
    total += later[kind] - reading[kind];
  }
  return total / ops;
}

/** Every member's metrics text; a member that does not answer gets an empty text. */
async function readAllMetrics(cluster: BenchCluster): Promise<Record<string, string>> {
  const texts = await Promise.all(
    cluster.members.map((member) => cluster.readMetrics(member).catch(() => '')),
  );
  return Object.fromEntries(cluster.members.map((member, i) => [member.id, texts[i]!]));
}

function fsyncsOf(cluster: BenchCluster, text: string | undefined) {
  if (text === undefined || text === '') return undefined;
  try {
    return cluster.fsyncsIn(text);
  } catch {
    return undefined;
  }
}
