/**
 * Settings of the cluster benchmark: `--name=value` flags (the `=` form, because
 * bench/index.ts takes bare words as section names) or `BENCH_CLUSTER_<NAME>` variables.
 */
import { tmpdir } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { PutProtocol } from './clusters.js';

/** Validated settings. */
export interface ClusterBenchOptions {
  readonly durationMs: number;
  readonly warmupMs: number;
  /**
   * Unmeasured load each cluster gets once, after it starts and before its first phase, at the
   * first concurrency: a fresh node compiles its hot paths under the first seconds of load.
   */
  readonly startWarmupMs: number;
  readonly concurrencies: readonly number[];
  readonly targets: readonly PutProtocol[];
  readonly keys: number;
  readonly valueBytes: number;
  readonly generators: number;
  /** How many times to run every phase (the table shows the round of median throughput). */
  readonly rounds: number;
  /** Scheduling priority of every process the benchmark starts (0: unchanged). */
  readonly nice: number;
  /** Profile our nodes (`node --cpu-prof`), a fresh cluster per concurrency. */
  readonly profile: boolean;
  /** Trace our nodes' garbage collections (`node --trace-gc-nvp`) and report them per member. */
  readonly gc: boolean;
  readonly dataRoot: string;
  readonly etcdPath: string | undefined;
  readonly nodeArgs: readonly string[];
  /** Extra flags for `node` itself when it runs our node (before dist/node/main.js). */
  readonly nodeExecArgs: readonly string[];
  /** Another build's dist/node/main.js, run as a third cluster ('baseline') to compare with. */
  readonly baseline: string | undefined;
  /** Flags for the baseline's node and `node` (default: the same as ours), for flag what-ifs. */
  readonly baselineArgs: readonly string[];
  readonly baselineExecArgs: readonly string[];
  /** Our node's entry point (default: this checkout's dist/node/main.js). */
  readonly nodeMain: string | undefined;
  readonly outDir: string | undefined;
  /** Re-render results.md and chart.svg of this earlier run's directory instead of running. */
  readonly renderFrom: string | undefined;
}

const flags = {
  'duration-s': { type: 'string', help: 'measured seconds per phase (default 10)' },
  'warmup-s': { type: 'string', help: 'warm-up seconds before each phase (default 2)' },
  'start-warmup-s': {
    type: 'string',
    help: 'unmeasured seconds of load each cluster gets once, before its first phase (default 10)',
  },
  concurrency: {
    type: 'string',
    help: 'connection counts, comma separated (default 1,16,64,256; with --profile 64,256)',
  },
  targets: {
    type: 'string',
    help: 'phantomdb,etcd (default both; with --profile phantomdb only)',
  },
  keys: { type: 'string', help: 'size of the key space written to (default 10000)' },
  'value-bytes': { type: 'string', help: 'bytes per value (default 100)' },
  generators: {
    type: 'string',
    help: 'load generator processes sharing the connections (default 1)',
  },
  rounds: {
    type: 'string',
    help: 'run every phase N times, alternating systems; the table shows the median (default 1)',
  },
  nice: {
    type: 'string',
    help:
      'priority (process and autogroup nice) of members and generators, -20..19 (default 0: ' +
      'unchanged; <0 needs root); for a machine shared with other work',
  },
  profile: {
    type: 'boolean',
    help: 'run our nodes under node --cpu-prof and summarize where their time goes',
  },
  gc: {
    type: 'boolean',
    help: "run our nodes with node --trace-gc-nvp and report each member's collections",
  },
  'data-root': {
    type: 'string',
    help: 'where the clusters keep their data (default the OS temp dir; must be a real disk)',
  },
  etcd: { type: 'string', help: 'path of the etcd binary (default: etcd on the PATH)' },
  'node-args': {
    type: 'string',
    help: 'extra flags for our node, space separated, e.g. "--tick-ms=50"',
  },
  'node-exec-args': {
    type: 'string',
    help: 'extra flags for node running our node, e.g. "--max-semi-space-size=64 --import=./x.mjs"',
  },
  'node-main': {
    type: 'string',
    help: "our node's entry point (default dist/node/main.js of this checkout)",
  },
  baseline: {
    type: 'string',
    help: 'dist/node/main.js of another build, run alongside as "baseline" (before/after a change)',
  },
  'baseline-args': {
    type: 'string',
    help: "the baseline's --node-args (default: ours), to compare one flag in the same run",
  },
  'baseline-exec-args': {
    type: 'string',
    help: "the baseline's --node-exec-args (default: ours)",
  },
  out: { type: 'string', help: 'results directory (default bench/results/<timestamp>)' },
  'render-from': {
    type: 'string',
    help: 'redraw results.md and chart.svg of an earlier run directory from its results.json',
  },
  help: { type: 'boolean', help: 'print this help' },
} as const;

/** Flags that take a space-separated list of flags, where empty means none. */
const flagLists: ReadonlySet<keyof typeof flags> = new Set<keyof typeof flags>([
  'node-args',
  'node-exec-args',
  'baseline-args',
  'baseline-exec-args',
]);

/** The `--help` text. */
export function clusterHelpText(): string {
  const rows = Object.entries(flags).map(
    ([name, spec]) =>
      `${`  --${name}${spec.type === 'string' ? '=V' : ''}`.padEnd(23)} ${spec.help}`,
  );
  return [
    'npm run bench -- cluster [--flag=value ...]   (or: npx tsx bench/cluster.ts [flags])',
    '',
    'A durable three-node PhantomDB cluster and a three-member etcd cluster on loopback, the',
    'same closed-loop PUT load against each leader, alternately. Each flag may also be given',
    'as BENCH_CLUSTER_<NAME> (upper case, dashes as underscores); an empty variable counts',
    'as unset, except for the *-args flags, where it means no flags.',
    '',
    ...rows,
    '',
  ].join('\n');
}

function positiveInteger(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < 1) {
    throw new RangeError(`Invalid --${name}=${text}: expected a positive integer`);
  }
  return value;
}

function positiveSeconds(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback * 1000;
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0 || (name === 'duration-s' && value === 0)) {
    throw new RangeError(`Invalid --${name}=${text}: expected a number of seconds`);
  }
  return Math.round(value * 1000);
}

function niceValue(text: string | undefined): number {
  if (text === undefined) return 0;
  const value = Number(text);
  if (!/^-?\d+$/.test(text) || value < -20 || value > 19) {
    throw new RangeError(`Invalid --nice=${text}: expected an integer in -20..19`);
  }
  return value;
}

/**
 * Parses the flags among `argv` (other words, the section names, are skipped; unknown flags
 * are reported in `ignored`, since `npm run bench` passes every section's flags to each).
 */
export function parseClusterOptions(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): { options: ClusterBenchOptions; help: boolean; ignored: string[] } {
  const options = Object.fromEntries(
    Object.entries(flags).map(([name, spec]) => [name, { type: spec.type }]),
  ) as Record<string, { type: 'string' | 'boolean' }>;
  const parsed = parseArgs({
    args: argv.filter((arg) => arg.startsWith('--') && arg !== '--'),
    options,
    strict: false,
    allowPositionals: true,
  });
  const ignored = Object.keys(parsed.values).filter((name) => !(name in flags));
  const value = (name: keyof typeof flags): string | undefined => {
    const given = parsed.values[name];
    if (typeof given === 'string') return given;
    if (given === true) return 'true';
    const fromEnv = env[`BENCH_CLUSTER_${name.toUpperCase().replaceAll('-', '_')}`];
    // An empty variable is unset, except for a list of flags: there it means none, as `--x=`
    // does (an empty BENCH_CLUSTER_BASELINE_EXEC_ARGS must not give the baseline ours).
    return fromEnv === '' && !flagLists.has(name) ? undefined : fromEnv;
  };
  const flag = (name: keyof typeof flags): boolean => /^(1|true|yes|on)$/i.test(value(name) ?? '');

  const profile = flag('profile');
  const concurrencies = (value('concurrency') ?? (profile ? '64,256' : '1,16,64,256'))
    .split(',')
    .map((item) => positiveInteger('concurrency', item.trim(), 1));
  const targets = (value('targets') ?? (profile ? 'phantomdb' : 'phantomdb,etcd'))
    .split(',')
    .map((item) => item.trim());
  for (const target of targets) {
    if (target !== 'phantomdb' && target !== 'etcd') {
      throw new RangeError(`Invalid --targets item "${target}": expected phantomdb or etcd`);
    }
  }
  // Absolute: the nodes run with their data directory as working directory.
  const baseline = absolute(value('baseline'));
  const gc = flag('gc');
  for (const [name, given] of [
    ['baseline', baseline !== undefined],
    ['gc', gc],
  ] as const) {
    if (given && !targets.includes('phantomdb')) {
      throw new RangeError(
        `Invalid --${name}: it applies to our cluster, so --targets needs phantomdb`,
      );
    }
    if (given && profile) {
      throw new RangeError(`Invalid --${name}: --profile runs no comparison to apply it to`);
    }
  }
  return {
    help: flag('help'),
    ignored,
    options: {
      durationMs: positiveSeconds('duration-s', value('duration-s'), 10),
      warmupMs: positiveSeconds('warmup-s', value('warmup-s'), 2),
      startWarmupMs: positiveSeconds('start-warmup-s', value('start-warmup-s'), 10),
      concurrencies,
      targets: targets as PutProtocol[],
      keys: positiveInteger('keys', value('keys'), 10_000),
      valueBytes: positiveInteger('value-bytes', value('value-bytes'), 100),
      generators: positiveInteger('generators', value('generators'), 1),
      rounds: positiveInteger('rounds', value('rounds'), 1),
      nice: niceValue(value('nice')),
      profile,
      gc,
      dataRoot: value('data-root') ?? tmpdir(),
      etcdPath: value('etcd'),
      nodeArgs: words(value('node-args')),
      nodeExecArgs: words(value('node-exec-args')),
      baseline,
      baselineArgs: words(value('baseline-args') ?? value('node-args')),
      baselineExecArgs: words(value('baseline-exec-args') ?? value('node-exec-args')),
      nodeMain: absolute(value('node-main')),
      outDir: value('out'),
      renderFrom: value('render-from'),
    },
  };
}

function words(text: string | undefined): string[] {
  return (text ?? '').split(' ').filter((word) => word !== '');
}

function absolute(path: string | undefined): string | undefined {
  return path === undefined ? undefined : resolve(path);
}
