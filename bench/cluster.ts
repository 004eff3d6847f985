/**
 * `npm run bench -- cluster`: a durable three-node PhantomDB cluster and a three-member etcd
 * cluster on loopback, driven by the same closed-loop load (PUTs of 100-byte values at 1, 16,
 * 64 and 256 connections, to the leader), measured alternately in one run. Prints and writes
 * to bench/results/<timestamp>/ a Markdown table (throughput, p50/p99/max latency, writes per
 * fsync, CPU and memory per node, the load generator's CPU), the ours/etcd ratios and an SVG
 * chart. With `--profile`, runs our nodes under `node --cpu-prof` (a fresh cluster per
 * concurrency) and summarizes where their main thread spends its time.
 *
 * Flags: `npm run bench -- cluster --help` (or `npx tsx bench/cluster.ts --help`); the
 * methodology is in bench/README.md.
 */
import { mkdir, mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { gzipSync } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { findEtcd, startEtcdCluster, startPhantomCluster } from './cluster/clusters.js';
import type { BenchCluster } from './cluster/clusters.js';
import { summarizeProfile } from './cluster/cpu-profile.js';
import {
  gcFiguresOf,
  gcTable,
  parseGcTrace,
  v8StartOf,
  v8StartProbeImport,
  withCurrentGcFields,
} from './cluster/gc-trace.js';
import type { GcEvent } from './cluster/gc-trace.js';
import type { CpuProfile, ProfileSummary } from './cluster/cpu-profile.js';
import { clusterHelpText, parseClusterOptions } from './cluster/options.js';
import type { ClusterBenchOptions } from './cluster/options.js';
import { runPhase } from './cluster/phase.js';
import type { PhaseMetrics, PhaseWindow } from './cluster/phase.js';
import {
  killAllNow,
  registerTempDir,
  removeTempDir,
  setChildPriority,
  sleep,
} from './cluster/processes.js';
import {
  formatMs,
  markdownTable,
  medianPhases,
  phaseTable,
  ratioTable,
  renderChart,
  systemOf,
} from './cluster/report.js';
import type { MemberFigures, PhaseResult } from './cluster/report.js';

const repoRoot = fileURLToPath(new URL('../', import.meta.url));

/** The message printed when etcd is not installed. */
export const etcdMissingMessage =
  'etcd not found; install it with `apt-get install etcd-server` to compare';

function timestamp(): string {
  return new Date()
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replaceAll(':', '-');
}

/** Prints a progress line: rewritten in place on a terminal, one line per 5 s otherwise. */
function makeProgress(): { show: (line: string) => void; done: () => void } {
  let lastPrintMs = 0;
  let shown = false;
  return {
    show(line) {
      if (process.stderr.isTTY) {
        process.stderr.write(`\r\x1b[2K  ${line}`);
        shown = true;
      } else if (performance.now() - lastPrintMs > 5000) {
        process.stderr.write(`  ${line}\n`);
        lastPrintMs = performance.now();
      }
    },
    done() {
      if (shown) process.stderr.write('\r\x1b[2K');
      shown = false;
      lastPrintMs = 0;
    },
  };
}

function phaseLine(result: PhaseResult): string {
  const errors = Object.values(result.errors).reduce((sum, count) => sum + count, 0);
  return (
    `${systemOf(result).padEnd(9)} c=${String(result.connections).padEnd(4)} ` +
    `${Math.round(result.opsPerSecond).toLocaleString('en-US').padStart(7)} ops/s  ` +
    `p50 ${formatMs(result.latencyMs.p50)} ms  p99 ${formatMs(result.latencyMs.p99)} ms  ` +
    `max ${formatMs(result.latencyMs.max)} ms  errors ${errors}` +
    (result.writesPerFsync === undefined
      ? ''
      : `  ${result.writesPerFsync.toFixed(1)} writes/fsync`) +
    (result.leaderChange === undefined ? '' : `  ⚠ ${result.leaderChange}`)
  );
}

function environmentLines(options: ClusterBenchOptions, labels: readonly string[]): string[] {
  return [
    `- Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB RAM, Node ${process.version}`,
    `- Systems: ${labels.join(', ')}; three members each on 127.0.0.1, data under ${options.dataRoot}`,
    `- Load: closed loop per connection (undici Client, keep-alive), PUT of ${options.valueBytes}-byte values ` +
      `to the leader, keys drawn uniformly from ${options.keys.toLocaleString('en-US')}; ` +
      (options.startWarmupMs > 0
        ? `each cluster first warmed up once for ${options.startWarmupMs / 1000} s at ${options.concurrencies[0]} connections, not measured; `
        : '') +
      `${options.warmupMs / 1000} s warm-up + ${options.durationMs / 1000} s measured per phase; ` +
      `${options.generators} generator process(es)` +
      (options.rounds > 1 ? `; ${options.rounds} rounds` : '') +
      (options.nice !== 0 ? `; members and generators at nice ${options.nice}` : ''),
    `- Latency: HDR histogram (node:perf_hooks createHistogram, 3 significant digits) of every measured request`,
    `- CPU: /proc/<pid>/stat utime+stime over the measured window, % of one core, all threads; ` +
      `RSS: largest VmRSS sampled once a second`,
    `- writes/fsync: acknowledged PUTs ÷ leader WAL fsyncs in the window (from its /metrics)`,
  ];
}

/**
 * Starts three of our nodes: this checkout's build (or `--node-main`) with our flags, or the
 * `--baseline` build with its flags, reported as 'baseline'. `extraExecArgs` go after the
 * build's `node` flags (GC tracing, CPU profiling).
 */
function startOurCluster(
  options: ClusterBenchOptions,
  build: 'phantomdb' | 'baseline',
  run: { dataDir: string; logDir: string; extraExecArgs: readonly string[] },
): Promise<BenchCluster> {
  const baseline = build === 'baseline';
  const mainPath = baseline ? options.baseline : options.nodeMain;
  return startPhantomCluster({
    dataDir: run.dataDir,
    logDir: run.logDir,
    nodeArgs: baseline ? options.baselineArgs : options.nodeArgs,
    nodeExecArgs: [
      ...(baseline ? options.baselineExecArgs : options.nodeExecArgs),
      ...run.extraExecArgs,
    ],
    ...(mainPath === undefined ? {} : { mainPath }),
    ...(baseline ? { system: 'baseline' } : {}),
  });
}

/** Runs the benchmark: both systems, alternately, at each concurrency. */
async function runComparison(options: ClusterBenchOptions, outDir: string): Promise<void> {
  const progress = makeProgress();
  const dataDir = await mkdtemp(join(options.dataRoot, 'phantomdb-bench-cluster-'));
  registerTempDir(dataDir);
  const logDir = join(outDir, 'logs');
  await mkdir(logDir, { recursive: true });
  const clusters = new Map<string, BenchCluster>();
  const phases: PhaseResult[] = [];
  const windows = new Map<PhaseResult, { cluster: BenchCluster; window: PhaseWindow }>();
  const notes: string[] = [];
  try {
    if (options.targets.includes('etcd')) {
      const etcdPath = findEtcd(options.etcdPath);
      if (etcdPath === undefined) {
        console.log(etcdMissingMessage);
        notes.push(etcdMissingMessage);
      } else {
        console.log(`Starting a three-member etcd cluster (${etcdPath}) ...`);
        await mkdir(join(dataDir, 'etcd'));
        clusters.set(
          'etcd',
          await startEtcdCluster(etcdPath, { dataDir: join(dataDir, 'etcd'), logDir }),
        );
      }
    }
    const gcTraceArgs = options.gc ? ['--trace-gc-nvp', `--import=${v8StartProbeImport}`] : [];
    if (options.targets.includes('phantomdb')) {
      console.log(
        `Starting a three-node PhantomDB cluster (node ${options.nodeMain ?? 'dist/node/main.js'}) ...`,
      );
      await mkdir(join(dataDir, 'phantomdb'));
      clusters.set(
        'phantomdb',
        await startOurCluster(options, 'phantomdb', {
          dataDir: join(dataDir, 'phantomdb'),
          logDir,
          extraExecArgs: gcTraceArgs,
        }),
      );
      if (options.baseline !== undefined) {
        console.log(`Starting a three-node baseline cluster (node ${options.baseline}) ...`);
        await mkdir(join(dataDir, 'baseline'));
        clusters.set(
          'baseline',
          await startOurCluster(options, 'baseline', {
            dataDir: join(dataDir, 'baseline'),
            logDir,
            extraExecArgs: gcTraceArgs,
          }),
        );
      }
    }
    const order = [...clusters.keys()];
    if (options.startWarmupMs > 0) {
      const connections = options.concurrencies[0]!;
      console.log(
        `Warming up ${order.join(' and ')} once: ${options.startWarmupMs / 1000} s at ${connections} connections, not measured`,
      );
      for (const [system, cluster] of clusters) {
        const idle = [...clusters.values()].filter((other) => other !== cluster);
        // A phase whose warm-up is the whole point; its 1 s measured window is only shown, so
        // that errors or a leader change during the warm-up do not go unseen.
        const { result } = await runPhase(cluster, idle, {
          connections,
          round: 0,
          warmupMs: options.startWarmupMs,
          durationMs: 1000,
          keys: options.keys,
          valueBytes: options.valueBytes,
          generators: options.generators,
          seed: 0,
          onProgress: (line) => progress.show(`${line}  (start warm-up of ${system})`),
        });
        progress.done();
        console.log(`start warm-up, its last second: ${phaseLine(result)}`);
        // As after every phase: the next cluster's phase must not start on this one's disk work.
        await sleep(1000);
      }
    }
    console.log(
      `Measuring ${order.join(' and ')} at ${options.concurrencies.join(', ')} connections, ` +
        `${options.warmupMs / 1000} s warm-up + ${options.durationMs / 1000} s each; results in ${outDir}\n`,
    );
    for (let round = 1; round <= options.rounds; round++) {
      for (const [levelIndex, connections] of options.concurrencies.entries()) {
        // Alternate which system goes first, so neither always runs on the fresher state.
        const turn = (levelIndex + round) % 2 === 1 ? order : [...order].reverse();
        for (const system of turn) {
          const cluster = clusters.get(system)!;
          const idle = [...clusters.values()].filter((other) => other !== cluster);
          const { result, window, metrics } = await runPhase(cluster, idle, {
            connections,
            round,
            warmupMs: options.warmupMs,
            durationMs: options.durationMs,
            keys: options.keys,
            valueBytes: options.valueBytes,
            generators: options.generators,
            seed: round * 1000 + levelIndex * 10 + (cluster.protocol === 'etcd' ? 1 : 0),
            onProgress: progress.show,
          });
          progress.done();
          console.log((options.rounds > 1 ? `#${round} ` : '') + phaseLine(result));
          phases.push(result);
          windows.set(result, { cluster, window });
          await saveMetrics(outDir, `${system}-c${connections}-r${round}`, metrics);
          // Let background work of the last phase (etcd's backend commit, our snapshot) settle.
          await sleep(1000);
        }
      }
    }
  } finally {
    progress.done();
    for (const cluster of clusters.values()) {
      const outcomes = await cluster.stop();
      // etcd ends on SIGTERM by dying of it after its graceful stop; our node exits 0.
      const unclean = Object.entries(outcomes).filter(
        ([, outcome]) => outcome !== 0 && outcome !== 'SIGTERM',
      );
      if (unclean.length > 0) {
        notes.push(
          `${cluster.label} stop: ${unclean.map(([id, outcome]) => `${id} ${String(outcome)}`).join(', ')}`,
        );
      }
    }
    removeTempDir(dataDir);
  }
  await writeResults(
    options,
    outDir,
    // Read once every member has stopped, so that every window's trace is complete.
    options.gc ? await withGcFigures(phases, windows, notes) : phases,
    notes,
    [...clusters.values()].map((c) => c.label),
  );
}

/**
 * `phases` with each traced member's collections in its measured window. A member whose log
 * holds no trace gets no figures and a line in `notes`, so that a missing trace is not read as
 * a member that never collected.
 */
export async function withGcFigures(
  phases: readonly PhaseResult[],
  windows: ReadonlyMap<PhaseResult, { cluster: BenchCluster; window: PhaseWindow }>,
  notes: string[],
): Promise<PhaseResult[]> {
  interface Trace {
    readonly events: GcEvent[];
    /** When the member's V8 started (the zero of its trace), monotonic µs. */
    readonly v8StartUs: number;
  }
  // By log path; null: no usable trace (noted once).
  const traces = new Map<string, Trace | null>();
  const traceOf = async (logPath: string): Promise<Trace | null> => {
    let trace = traces.get(logPath);
    if (trace === undefined) {
      const text = await readFile(logPath, 'utf8').catch(() => '');
      const events = parseGcTrace(text);
      const v8StartUs = v8StartOf(text);
      trace = events.length > 0 && v8StartUs !== undefined ? { events, v8StartUs } : null;
      traces.set(logPath, trace);
      if (trace === null) {
        notes.push(`--gc: no usable GC trace in ${logPath}; its member has no GC figures`);
      }
    }
    return trace;
  };
  const traced: PhaseResult[] = [];
  for (const phase of phases) {
    const where = windows.get(phase);
    if (where === undefined || where.cluster.protocol !== 'phantomdb') {
      traced.push(phase);
      continue;
    }
    const members: MemberFigures[] = [];
    for (const figures of phase.members) {
      const member = where.cluster.members.find((candidate) => candidate.id === figures.id);
      const trace = member === undefined ? null : await traceOf(member.process.logPath);
      if (trace === null) {
        members.push(figures);
        continue;
      }
      const gc = gcFiguresOf(
        trace.events,
        (where.window.startMonotonicUs - trace.v8StartUs) / 1000,
        (where.window.endMonotonicUs - trace.v8StartUs) / 1000,
      );
      members.push({ ...figures, gc });
    }
    traced.push({ ...phase, members });
  }
  return traced;
}

/** Keeps every member's /metrics at both edges of a phase, as evidence for the report. */
async function saveMetrics(outDir: string, phase: string, metrics: PhaseMetrics): Promise<void> {
  const dir = join(outDir, 'metrics');
  await mkdir(dir, { recursive: true });
  for (const [edge, texts] of Object.entries(metrics)) {
    for (const [id, text] of Object.entries(texts as Record<string, string>)) {
      // etcd's metrics are 150 kB a scrape; compressed they are a tenth of that.
      await writeFile(join(dir, `${phase}-${edge}-${id}.prom.gz`), gzipSync(text));
    }
  }
}

async function writeResults(
  options: ClusterBenchOptions,
  outDir: string,
  phases: readonly PhaseResult[],
  notes: readonly string[],
  labels: readonly string[],
): Promise<void> {
  const shown = medianPhases(phases);
  const table = phaseTable(shown, phases);
  const ratios = ratioTable(shown);
  const baselineRatios = ratioTable(shown, 'baseline');
  const collections = gcTable(phases);
  const fsyncMetrics = [
    ...new Set(phases.map((p) => `${p.protocol}: ${p.fsyncMetric ?? 'none exposed'}`)),
  ];
  const idleCpu = phases
    .filter((p) => p.idleClusterCpuPercent !== undefined)
    .map((p) => `${systemOf(p)} c=${p.connections}: ${p.idleClusterCpuPercent!.toFixed(1)}%`);
  const outside = phases.map((p) => p.outsideCpuPercent);
  const contended =
    Math.max(...outside) > 20
      ? `Other processes on this machine used ${Math.min(...outside).toFixed(0)}–` +
        `${Math.max(...outside).toFixed(0)}% of a core during the phases (outside CPU), so the ` +
        'figures are lower bounds of what an idle machine gives.'
      : undefined;
  const changes = phases
    .filter((p) => p.leaderChange !== undefined)
    .map((p) => `${systemOf(p)} c=${p.connections}: ${p.leaderChange!}`);
  const firstErrors = phases
    .filter((p) => p.firstError !== undefined)
    .map((p) => `${systemOf(p)} c=${p.connections}: ${p.firstError!}`);
  const markdown = [
    `# Cluster benchmark, ${new Date().toISOString()}`,
    '',
    ...environmentLines(options, labels),
    '',
    ...(options.rounds > 1
      ? [
          `Each row is the round of median throughput out of ${options.rounds}; every round below.`,
          '',
        ]
      : []),
    table,
    '',
    ...(ratios === undefined ? [] : ['Ours / etcd:', '', ratios, '']),
    ...(baselineRatios === undefined ? [] : ['Ours / baseline:', '', baselineRatios, '']),
    ...(collections === undefined
      ? []
      : [
          'Garbage collections of our members in each measured window (`--gc`, from ' +
            '`node --trace-gc-nvp`):',
          '',
          collections,
          '',
        ]),
    `fsync metric read: ${fsyncMetrics.join('; ')}`,
    '',
    ...(idleCpu.length > 0
      ? [`CPU of the idle cluster during each phase (all members): ${idleCpu.join(', ')}`, '']
      : []),
    ...(contended === undefined ? [] : [`⚠ ${contended}`, '']),
    ...(changes.length > 0
      ? ['Leader changes during a phase (⚠):', ...changes.map((c) => `- ${c}`), '']
      : []),
    ...(firstErrors.length > 0
      ? ['First error per phase:', ...firstErrors.map((e) => `- ${e}`), '']
      : []),
    ...(notes.length > 0 ? ['Notes:', ...notes.map((n) => `- ${n}`), ''] : []),
    ...(options.rounds > 1 ? ['Every round:', '', phaseTable(phases), ''] : []),
  ].join('\n');
  await writeFile(join(outDir, 'results.md'), markdown);
  await writeFile(
    join(outDir, 'results.json'),
    JSON.stringify({ options, phases, notes }, null, 2),
  );
  await writeFile(
    join(outDir, 'chart.svg'),
    renderChart(shown, `PUT ${options.valueBytes} B, 3 members, fsync on — ${labels.join(' vs ')}`),
  );
  console.log(`\n${table}\n`);
  if (ratios !== undefined) console.log(`Ours / etcd:\n\n${ratios}\n`);
  if (baselineRatios !== undefined) console.log(`Ours / baseline:\n\n${baselineRatios}\n`);
  if (collections !== undefined) console.log(`Garbage collections:\n\n${collections}\n`);
  if (contended !== undefined) console.log(`⚠ ${contended}`);
  for (const line of [...changes, ...notes]) console.log(line);
  console.log(`Results: ${join(outDir, 'results.md')}, chart.svg, results.json`);
}

/** Profiles our nodes: one fresh cluster per concurrency, every node under --cpu-prof. */
async function runProfile(options: ClusterBenchOptions, outDir: string): Promise<void> {
  const progress = makeProgress();
  const sections: string[] = [
    `# Where our nodes spend their time, ${new Date().toISOString()}`,
    '',
  ];
  sections.push(...environmentLines(options, ['PhantomDB (node --cpu-prof)']), '');
  for (const connections of options.concurrencies) {
    const profileDir = join(outDir, 'profiles', `c${connections}`);
    await mkdir(profileDir, { recursive: true });
    const dataDir = await mkdtemp(join(options.dataRoot, 'phantomdb-bench-profile-'));
    registerTempDir(dataDir);
    let cluster: BenchCluster | undefined;
    let result: PhaseResult;
    let window: PhaseWindow;
    const pidToId = new Map<number, string>();
    try {
      console.log(`Profiling a fresh PhantomDB cluster at ${connections} connections ...`);
      cluster = await startOurCluster(options, 'phantomdb', {
        dataDir,
        logDir: profileDir,
        extraExecArgs: ['--cpu-prof', `--cpu-prof-dir=${profileDir}`],
      });
      for (const member of cluster.members) pidToId.set(member.process.pid, member.id);
      let metrics: PhaseMetrics;
      ({ result, window, metrics } = await runPhase(cluster, [], {
        connections,
        round: 1,
        warmupMs: options.warmupMs,
        durationMs: options.durationMs,
        keys: options.keys,
        valueBytes: options.valueBytes,
        generators: options.generators,
        seed: 100 + connections,
        onProgress: progress.show,
      }));
      progress.done();
      console.log(phaseLine(result));
      await saveMetrics(outDir, `profile-c${connections}`, metrics);
    } finally {
      progress.done();
      const outcomes = (await cluster?.stop()) ?? {};
      for (const [id, outcome] of Object.entries(outcomes)) {
        if (outcome !== 0)
          console.log(`  ${id} stopped with ${String(outcome)} (its profile may be missing)`);
      }
      removeTempDir(dataDir);
    }
    sections.push(`## ${connections} connections`, '', phaseTable([result]), '');
    const files = (await readdir(profileDir)).filter((name) => name.endsWith('.cpuprofile'));
    if (files.length === 0) {
      sections.push('No .cpuprofile was written: the nodes did not exit normally on SIGTERM.', '');
      continue;
    }
    for (const file of files.sort()) {
      const pid = Number(/\.(\d+)\.\d+\.\d+\.cpuprofile$/.exec(file)?.[1]);
      const id = pidToId.get(pid) ?? `pid ${pid}`;
      const role = id === result.leaderId ? 'leader' : 'follower';
      const profile = JSON.parse(await readFile(join(profileDir, file), 'utf8')) as CpuProfile;
      const summary = summarizeProfile(
        profile,
        // The checkout the profiled node runs from: its dist/ is "ours".
        options.nodeMain === undefined
          ? repoRoot
          : join(dirname(dirname(dirname(options.nodeMain))), '/'),
        window.startMonotonicUs,
        window.endMonotonicUs,
      );
      const member = result.members.find((m) => m.id === id);
      sections.push(...profileSection(`${id} (${role}), ${file}`, summary, member?.cpuPercent));
      console.log(
        `  ${id} (${role}): ${[...summary.byOwner.entries()]
          .slice(0, 6)
          .map(([owner, msSelf]) => `${owner} ${((msSelf * 100) / summary.sampledMs).toFixed(0)}%`)
          .join(', ')}`,
      );
    }
  }
  await writeFile(join(outDir, 'profile.md'), sections.join('\n'));
  console.log(
    `\nProfile summary: ${join(outDir, 'profile.md')}; raw profiles under ${join(outDir, 'profiles')} (open in Chrome DevTools)`,
  );
}

function profileSection(
  title: string,
  summary: ProfileSummary,
  cpuPercent: number | undefined,
): string[] {
  const percent = (ms: number): string => `${((ms * 100) / summary.sampledMs).toFixed(1)}%`;
  return [
    `### ${title}`,
    '',
    `Main-thread samples over ${(summary.sampledMs / 1000).toFixed(1)} s` +
      (summary.windowApplied
        ? ' (the measured window)'
        : ' (whole profile: the window did not match its clock)') +
      `; the process used ${cpuPercent === undefined ? 'n/a' : cpuPercent.toFixed(0)}% of a core over all its threads.`,
    '',
    markdownTable(
      ['owner (builtins charged to their caller)', 'self ms', 'share'],
      [...summary.byOwner.entries()].map(([owner, ms]) => [owner, ms.toFixed(0), percent(ms)]),
    ),
    '',
    markdownTable(
      ['raw category', 'self ms', 'share'],
      [...summary.byCategory.entries()].map(([category, ms]) => [
        category,
        ms.toFixed(0),
        percent(ms),
      ]),
    ),
    '',
    'Top self time:',
    '',
    markdownTable(
      ['function', 'where', 'category', 'self ms', 'share'],
      summary.topSelf.map((f) => [
        f.name,
        f.location,
        f.category,
        f.selfMs.toFixed(0),
        percent(f.selfMs),
      ]),
    ),
    '',
    'Our functions by inclusive time (self + callees):',
    '',
    markdownTable(
      ['function', 'where', 'total ms', 'share'],
      summary.topOursInclusive.map((f) => [
        f.name,
        f.location,
        f.selfMs.toFixed(0),
        percent(f.selfMs),
      ]),
    ),
    '',
  ];
}

/** The `cluster` section of `npm run bench`. */
export async function run(): Promise<void> {
  const { options, help, ignored } = parseClusterOptions(process.argv.slice(2), process.env);
  if (help) {
    console.log(clusterHelpText());
    return;
  }
  if (ignored.length > 0)
    console.log(`(cluster: ignoring flags ${ignored.map((f) => `--${f}`).join(', ')})`);
  if (options.nice !== 0) {
    setChildPriority(options.nice);
    console.log(`(cluster: members and generators run at nice ${options.nice})`);
  }
  if (options.renderFrom !== undefined) {
    // Re-renders the tables and chart of an earlier run from its results.json.
    const saved = JSON.parse(await readFile(join(options.renderFrom, 'results.json'), 'utf8')) as {
      options: ClusterBenchOptions;
      phases: PhaseResult[];
      notes: string[];
    };
    saved.phases = saved.phases.map(withCurrentGcFields);
    const labels = [...new Set(saved.phases.map((phase) => phase.label))];
    await writeResults(saved.options, options.renderFrom, saved.phases, saved.notes, labels);
    return;
  }
  const outDir = options.outDir ?? join(repoRoot, 'bench', 'results', timestamp());
  await mkdir(outDir, { recursive: true });
  try {
    if (options.profile) await runProfile(options, outDir);
    else await runComparison(options, outDir);
  } catch (error) {
    killAllNow();
    throw error;
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await run();
}
