// The cluster benchmark's harness: /proc, Prometheus and CPU-profile parsing, options, report
// rendering on fixed inputs; a real phase (forked load generator) against an in-process HTTP
// server that counts what it receives; and, when etcd is installed, a real three-member etcd.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { request } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { findEtcd, startEtcdCluster } from '../../bench/cluster/clusters.js';
import type { BenchCluster } from '../../bench/cluster/clusters.js';
import { categorize, summarizeProfile } from '../../bench/cluster/cpu-profile.js';
import type { CpuProfile } from '../../bench/cluster/cpu-profile.js';
import { keyOf, preparePut, valueOf } from '../../bench/cluster/load-generator.js';
import { parseClusterOptions } from '../../bench/cluster/options.js';
import { runPhase } from '../../bench/cluster/phase.js';
import {
  cpuPercentOf,
  parseContextSwitches,
  parseMachineStat,
  readContextSwitches,
  parseProcStat,
  parseRssBytes,
  readCpuTicks,
  readRssBytes,
  systemCpuPercentOf,
} from '../../bench/cluster/procfs.js';
import { findFsyncHistogram, parsePrometheusText, sumOf } from '../../bench/cluster/prometheus.js';
import type { PhaseResult } from '../../bench/cluster/report.js';
import {
  markdownTable,
  medianPhases,
  niceCeiling,
  phaseTable,
  ratioTable,
  renderChart,
} from '../../bench/cluster/report.js';

describe('procfs', () => {
  it('reads utime and stime after a command name with spaces and parentheses', () => {
    const line = '4242 (node (my) app) S 1 4242 4242 0 -1 4194560 100 0 0 0 731 42 0 0 20 0 11 0';
    expect(parseProcStat(line)).toEqual({ userTicks: 731, systemTicks: 42 });
    expect(() => parseProcStat('garbage')).toThrow(RangeError);
  });

  it('reads VmRSS in bytes, and nothing from a zombie', () => {
    expect(parseRssBytes('Name:\tnode\nVmRSS:\t  123456 kB\nThreads:\t7\n')).toBe(123456 * 1024);
    expect(parseRssBytes('Name:\tnode\nState:\tZ (zombie)\n')).toBeUndefined();
  });

  it('reads context switches, and sums them over the threads of a live process', () => {
    const status = 'Name:\tnode\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n';
    expect(parseContextSwitches(status)).toEqual({ voluntary: 120, involuntary: 7 });
    const own = readContextSwitches(process.pid)!;
    expect(own.voluntary + own.involuntary).toBeGreaterThan(0);
    expect(readContextSwitches(2 ** 22 + 1)).toBeUndefined();
  });

  it('counts idle and iowait as not busy', () => {
    const machine = parseMachineStat('cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 1 2 3 4 5 6 7 8\n');
    expect(machine).toEqual({ busyTicks: 160, totalTicks: 1000 });
  });

  it('sees this process use CPU and memory, and a dead pid as gone', () => {
    const before = readCpuTicks(process.pid);
    const startMs = performance.now();
    let spin = 0;
    while (performance.now() - startMs < 300) spin++;
    const after = readCpuTicks(process.pid);
    expect(spin).toBeGreaterThan(0);
    const percent = cpuPercentOf(before, after, performance.now() - startMs);
    expect(percent).toBeGreaterThan(10);
    expect(readRssBytes(process.pid)).toBeGreaterThan(10 * 2 ** 20);
    expect(readCpuTicks(2 ** 22 + 1)).toBeUndefined();
    expect(cpuPercentOf(before, undefined, 1000)).toBeUndefined();
    const system = systemCpuPercentOf(before, after, performance.now() - startMs)!;
    expect(system).toBeGreaterThanOrEqual(0);
    expect(system).toBeLessThanOrEqual(percent!);
  });
});

describe('prometheus', () => {
  const text = [
    '# HELP etcd_disk_wal_fsync_duration_seconds The latency distributions of fsync.',
    '# TYPE etcd_disk_wal_fsync_duration_seconds histogram',
    'etcd_disk_wal_fsync_duration_seconds_bucket{le="0.001"} 10',
    'etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"} 12',
    'etcd_disk_wal_fsync_duration_seconds_sum 0.0125',
    'etcd_disk_wal_fsync_duration_seconds_count 12',
    'snapshot_fsync_seconds_count 3',
    'http_requests_total{route="/v1/kv/:key",msg="say \\"hi\\""} 7',
    'http_requests_total{route="/v1/status"} 2 1700000000000',
  ].join('\n');

  it('parses samples, labels with escapes, +Inf and timestamps', () => {
    const samples = parsePrometheusText(text);
    expect(samples).toHaveLength(7);
    expect(samples[1]).toMatchObject({ labels: { le: '+Inf' }, value: 12 });
    expect(samples[5]!.labels).toEqual({ route: '/v1/kv/:key', msg: 'say "hi"' });
    expect(sumOf(samples, 'http_requests_total')).toBe(9);
    expect(sumOf(samples, 'absent_total')).toBeUndefined();
    expect(() => parsePrometheusText('not a metric line at all {')).toThrow(RangeError);
  });

  it('prefers the WAL fsync histogram, and finds none where there is none', () => {
    expect(findFsyncHistogram(parsePrometheusText(text))).toBe(
      'etcd_disk_wal_fsync_duration_seconds',
    );
    expect(findFsyncHistogram(parsePrometheusText('up 1\n'))).toBeUndefined();
  });
});

describe('cpu profile summary', () => {
  const root = '/repo/';
  // (root) -> onRequest (ours) -> decode (cbor-x) -> JSON.parse (builtin); plus idle and GC.
  const profile: CpuProfile = {
    nodes: [
      { id: 1, callFrame: frame('(root)', ''), children: [2, 5, 6] },
      { id: 2, callFrame: frame('onRequest', 'file:///repo/dist/node/api.js'), children: [3] },
      {
        id: 3,
        callFrame: frame('decode', 'file:///repo/node_modules/cbor-x/decode.js'),
        children: [4],
      },
      { id: 4, callFrame: frame('parse', '') },
      { id: 5, callFrame: frame('(idle)', '') },
      { id: 6, callFrame: frame('(garbage collector)', '') },
    ],
    startTime: 1_000_000,
    endTime: 1_010_000,
    // One sample per ms: 2 in onRequest, 3 in decode, 1 in JSON.parse, 3 idle, 1 GC.
    samples: [2, 2, 3, 3, 3, 4, 5, 5, 5, 6, 5],
    timeDeltas: [0, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000],
  };

  it('categorizes frames by owner', () => {
    expect(categorize('file:///repo/dist/storage/file-persistence.js', 'f', root)).toBe(
      'ours: storage',
    );
    expect(categorize('file:///repo/node_modules/undici/lib/x.js', 'f', root)).toBe('undici');
    expect(categorize('file:///repo/node_modules/@pinojs/redact/index.js', 'f', root)).toBe(
      '@pinojs/redact',
    );
    expect(categorize('node:internal/fs/promises', 'f', root)).toBe('node: fs');
    expect(categorize('node:net', 'f', root)).toBe('node: net');
    expect(categorize('wasm://wasm/abc', 'wasm-function[20]', root)).toBe('wasm');
    expect(categorize('', 'writev', root)).toBe('V8 builtin / native');
    expect(categorize('', '(program)', root)).toMatch(/^program/);
  });

  it('adds self time per category and charges builtins to their caller', () => {
    const summary = summarizeProfile(profile, root);
    expect(summary.windowApplied).toBe(false);
    expect(summary.sampledMs).toBe(10);
    expect(Object.fromEntries(summary.byCategory)).toEqual({
      'cbor-x': 3,
      idle: 3,
      'ours: node': 2,
      'V8 builtin / native': 1,
      GC: 1,
    });
    expect(summary.byOwner.get('cbor-x')).toBe(4);
    expect(summary.topSelf[0]).toMatchObject({ name: 'decode', selfMs: 3 });
    expect(summary.topOursInclusive[0]).toMatchObject({ name: 'onRequest', selfMs: 6 });
  });

  it('keeps only the samples inside the window', () => {
    const summary = summarizeProfile(profile, root, 1_002_000, 1_005_000);
    expect(summary.windowApplied).toBe(true);
    expect(summary.sampledMs).toBe(3);
    expect(Object.fromEntries(summary.byCategory)).toEqual({ 'cbor-x': 3 });
  });

  function frame(functionName: string, url: string): CpuProfile['nodes'][number]['callFrame'] {
    return { functionName, url, lineNumber: 0, columnNumber: 0 };
  }
});

describe('options', () => {
  it('has the documented defaults and reads the environment', () => {
    const { options, help, ignored } = parseClusterOptions(['cluster', '--'], {});
    expect(help).toBe(false);
    expect(ignored).toEqual([]);
    expect(options).toMatchObject({
      durationMs: 10_000,
      warmupMs: 2_000,
      startWarmupMs: 10_000,
      concurrencies: [1, 16, 64, 256],
      targets: ['phantomdb', 'etcd'],
      valueBytes: 100,
      generators: 1,
      profile: false,
    });
    const fromEnv = parseClusterOptions([], { BENCH_CLUSTER_DURATION_S: '2.5' }).options;
    expect(fromEnv.durationMs).toBe(2_500);
    expect(parseClusterOptions(['--start-warmup-s=0'], {}).options.startWarmupMs).toBe(0);
    expect(() => parseClusterOptions(['--start-warmup-s=-1'], {})).toThrow(RangeError);
  });

  it('profiles our node at 64 and 256 connections by default', () => {
    const { options } = parseClusterOptions(['--profile', '--node-args=--tick-ms=50 -x'], {});
    expect(options.concurrencies).toEqual([64, 256]);
    expect(options.targets).toEqual(['phantomdb']);
    expect(options.nodeArgs).toEqual(['--tick-ms=50', '-x']);
  });

  it('gives the baseline our flags unless told otherwise, and absolute entry points', () => {
    const same = parseClusterOptions(
      ['--baseline=b/main.js', '--node-args=--tick-ms=50', '--node-exec-args=--x'],
      {},
    ).options;
    expect(same.baseline).toBe(resolve('b/main.js'));
    expect(same.baselineArgs).toEqual(['--tick-ms=50']);
    expect(same.baselineExecArgs).toEqual(['--x']);
    const other = parseClusterOptions(
      [
        '--node-main=a/main.js',
        '--node-exec-args=--x',
        '--baseline-exec-args=',
        '--baseline-args=--y',
      ],
      {},
    ).options;
    expect(other.nodeMain).toBe(resolve('a/main.js'));
    expect(other.baselineExecArgs).toEqual([]);
    expect(other.baselineArgs).toEqual(['--y']);
  });

  it('takes an empty flag list from the environment as none, not as unset', () => {
    const { options } = parseClusterOptions(['--baseline=b/main.js', '--node-exec-args=--x'], {
      BENCH_CLUSTER_BASELINE_EXEC_ARGS: '',
      BENCH_CLUSTER_DURATION_S: '',
    });
    expect(options.baselineExecArgs).toEqual([]);
    expect(options.durationMs).toBe(10_000);
  });

  it('refuses --baseline and --gc where no cluster of ours is compared', () => {
    for (const flag of ['--baseline=b/main.js', '--gc']) {
      expect(() => parseClusterOptions([flag, '--targets=etcd'], {})).toThrow(
        /--targets needs phantomdb/,
      );
      expect(() => parseClusterOptions([flag, '--profile'], {})).toThrow(/--profile runs no/);
    }
    expect(parseClusterOptions(['--gc'], {}).options.gc).toBe(true);
    expect(parseClusterOptions([], { BENCH_CLUSTER_GC: '1' }).options.gc).toBe(true);
  });

  it('rejects bad values and reports flags it does not know', () => {
    expect(() => parseClusterOptions(['--concurrency=1,x'], {})).toThrow(RangeError);
    expect(() => parseClusterOptions(['--duration-s=0'], {})).toThrow(RangeError);
    expect(() => parseClusterOptions(['--targets=consul'], {})).toThrow(/consul/);
    expect(() => parseClusterOptions(['--nice=-21'], {})).toThrow(RangeError);
    expect(parseClusterOptions(['--nice=-5', '--rounds=3'], {}).options).toMatchObject({
      nice: -5,
      rounds: 3,
    });
    expect(parseClusterOptions(['--entries=5'], {}).ignored).toEqual(['entries']);
  });
});

describe('requests', () => {
  it('writes the same key and 100-byte value through each API', () => {
    const ours = preparePut('phantomdb', 42, 100);
    expect(ours).toMatchObject({ method: 'PUT', path: '/v1/kv/bench-000042' });
    expect(ours.body).toHaveLength(100);
    const etcd = preparePut('etcd', 42, 100);
    expect(etcd).toMatchObject({ method: 'POST', path: '/v3/kv/put' });
    const json = JSON.parse(etcd.body.toString()) as { key: string; value: string };
    expect(Buffer.from(json.key, 'base64').toString()).toBe(keyOf(42));
    expect(Buffer.from(json.value, 'base64')).toEqual(valueOf(42, 100));
    expect(valueOf(7, 100).equals(valueOf(8, 100))).toBe(false);
  });
});

describe('report', () => {
  it('escapes cells and picks round axis bounds', () => {
    expect(markdownTable(['a|b'], [['1']])).toBe('| a\\|b |\n| --- |\n| 1 |');
    expect(niceCeiling(7_300)).toBe(10_000);
    expect(niceCeiling(2_100)).toBe(2_500);
    expect(niceCeiling(0)).toBe(1);
  });

  it('gives ours/etcd ratios and draws one line per system', () => {
    const phases = [
      phase('phantomdb', 16, 3000, 12),
      phase('etcd', 16, 4000, 10),
      phase('phantomdb', 64, 5000, 40),
      phase('etcd', 64, 6000, 20),
    ];
    const ratios = ratioTable(phases)!;
    expect(ratios).toContain('| 16 | 3,000 | 4,000 | 0.75× | 12.0 | 10.0 | 1.20× |');
    expect(ratios).toContain('| 64 | 5,000 | 6,000 | 0.83× | 40.0 | 20.0 | 2.00× |');
    expect(ratioTable(phases.filter((p) => p.protocol === 'etcd'))).toBeUndefined();
    const svg = renderChart(phases, 'a <title>');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('a &lt;title&gt;');
    expect(svg.match(/<polyline/g)).toHaveLength(4);
  });

  it('compares ours with a baseline build measured in the same run', () => {
    const phases = [
      phase('phantomdb', 16, 3000, 12),
      { ...phase('phantomdb', 16, 1500, 24), system: 'baseline', label: 'old build' },
      phase('etcd', 16, 2000, 10),
    ];
    expect(ratioTable(phases, 'baseline')).toContain(
      '| 16 | 3,000 | 1,500 | 2.00× | 12.0 | 24.0 | 0.50× |',
    );
    expect(ratioTable(phases)).toContain('| 16 | 3,000 | 2,000 | 1.50× |');
    expect(medianPhases(phases)).toHaveLength(3);
    expect(phaseTable(phases)).toContain('| 16 | baseline | 1,500 |');
    const svg = renderChart(phases, 'three systems');
    expect(svg).toContain('old build');
  });

  it('shows the round of median throughput, with the spreads of throughput and p99 over rounds', () => {
    const rounds = [
      phase('etcd', 16, 4000, 10, 1),
      phase('etcd', 16, 1000, 90, 2),
      phase('etcd', 16, 3000, 20, 3),
      phase('phantomdb', 16, 2000, 30, 1),
    ];
    const shown = medianPhases(rounds);
    expect(shown.map((p) => [p.protocol, p.round])).toEqual([
      ['etcd', 3],
      ['phantomdb', 1],
    ]);
    const table = phaseTable(shown, rounds);
    expect(table).toMatch(
      /\| 16 \| etcd \| 3,000 \| 1,000–4,000 \(3\) \| [^|]+ \| 20\.0 \| 10\.0–90\.0 \| /,
    );
    expect(table).toMatch(/\| 16 \| phantomdb \| 2,000 \| {2}\| [^|]+ \| 30\.0 \| {2}\| /);
    expect(phaseTable(rounds)).toContain('| 16 | etcd #2 | 1,000 |');
  });

  function phase(
    protocol: 'phantomdb' | 'etcd',
    connections: number,
    opsPerSecond: number,
    p99: number,
    round = 1,
  ): PhaseResult {
    return {
      protocol,
      label: protocol,
      connections,
      round,
      windowMs: 1000,
      ops: opsPerSecond,
      opsPerSecond,
      latencyMs: { p50: 1, p90: 1, p99, p999: p99, max: p99, mean: 1 },
      errors: {},
      timeline: [opsPerSecond],
      leaderId: 'n1',
      writesPerFsync: undefined,
      leaderFsyncsPerSecond: undefined,
      leaderFsyncMeanMs: undefined,
      leaderFsyncBusy: undefined,
      fsyncMetric: undefined,
      members: [],
      generatorCpuPercent: undefined,
      idleClusterCpuPercent: undefined,
      machineBusyPercent: 0,
      outsideCpuPercent: 0,
      wakeupsPerWrite: undefined,
      preemptionsPerWrite: undefined,
      memberFsyncsPerSecond: {},
    };
  }
});

describe('a phase against a counting HTTP server', () => {
  it('drives a closed loop per connection and counts answers, latencies and errors', async () => {
    let received = 0;
    let open = 0;
    let openMax = 0;
    const server = createServer((req, res) => {
      received++;
      open++;
      openMax = Math.max(openMax, open);
      req.resume();
      req.on('end', () => {
        // Every 10th request fails, the rest answer after 2 ms.
        setTimeout(() => {
          open--;
          if (received % 10 === 0) res.writeHead(503).end('busy');
          else res.writeHead(200, { 'content-type': 'application/json' }).end('{"index":1}');
        }, 2);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const member = {
      id: 'n1',
      clientUrl: url,
      process: {
        name: 'fake',
        pid: process.pid,
        child: undefined as never,
        logPath: '/dev/null',
        exited: new Promise<number>(() => undefined),
        hasExited: () => false,
      },
    };
    const cluster: BenchCluster = {
      protocol: 'phantomdb',
      system: 'phantomdb',
      label: 'counting server',
      members: [member],
      findLeader: () => Promise.resolve({ member, term: 1 }),
      readMetrics: () => Promise.resolve('fake_wal_fsync_seconds_count 5\n'),
      fsyncsIn: () => undefined,
      stop: () => Promise.resolve({}),
    };
    try {
      const { result, window } = await runPhase(cluster, [], {
        connections: 4,
        round: 1,
        warmupMs: 300,
        durationMs: 1000,
        keys: 100,
        valueBytes: 100,
        generators: 2,
        seed: 1,
        onProgress: () => undefined,
      });
      expect(openMax).toBeLessThanOrEqual(4);
      expect(result.ops).toBeGreaterThan(50);
      expect(result.ops).toBeLessThan(received);
      expect(result.opsPerSecond).toBeCloseTo(result.ops, 5);
      expect(result.errors['status 503']).toBeGreaterThan(0);
      expect(result.firstError).toBe('503 busy');
      expect(result.latencyMs.p50).toBeGreaterThanOrEqual(2);
      expect(result.latencyMs.max).toBeGreaterThanOrEqual(result.latencyMs.p99);
      expect(result.timeline.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(result.ops);
      expect(result.generatorCpuPercent).toBeGreaterThan(0);
      expect(result.members[0]!.rssBytesMax).toBeGreaterThan(0);
      expect(result.members[0]!.systemCpuPercent).toBeLessThanOrEqual(
        result.members[0]!.cpuPercent!,
      );
      expect(result.writesPerFsync).toBeUndefined();
      // The fake member is this process: its threads block at least once per request.
      expect(result.wakeupsPerWrite).toBeGreaterThan(0);
      expect(window.endMonotonicUs - window.startMonotonicUs).toBeGreaterThan(900_000);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

const etcdPath = findEtcd(undefined);

describe.skipIf(etcdPath === undefined)('a real etcd cluster', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('starts three members, takes a PUT through the JSON gateway, counts fsyncs, stops', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'phantomdb-bench-test-'));
    dirs.push(dir);
    const cluster = await startEtcdCluster(etcdPath!, { dataDir: dir, logDir: dir });
    try {
      const { member } = await cluster.findLeader();
      const put = preparePut('etcd', 1, 100);
      const before = cluster.fsyncsIn(await cluster.readMetrics(member))!;
      const response = await request(`${member.clientUrl}${put.path}`, {
        method: put.method,
        body: put.body,
        headers: put.headers,
      });
      expect(response.statusCode).toBe(200);
      expect(((await response.body.json()) as { header: object }).header).toBeDefined();
      const after = cluster.fsyncsIn(await cluster.readMetrics(member))!;
      expect(after.metric).toBe('etcd_disk_wal_fsync_duration_seconds');
      expect(after.count).toBeGreaterThan(before.count);
    } finally {
      const outcomes = await cluster.stop();
      expect(Object.keys(outcomes)).toEqual(['e1', 'e2', 'e3']);
    }
    for (const member of cluster.members) expect(member.process.hasExited()).toBe(true);
  });
});
