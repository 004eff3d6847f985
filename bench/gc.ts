/**
 * What replication leaves to the garbage collector: RaftConsensus clusters of 1 and 3 nodes in
 * one process (memory persistence, messages handed over by a direct call, no HTTP, no key-value
 * store) commit commands of 100 bytes in a closed loop, one at a time, and V8 reports every
 * scavenge (`--trace-gc-nvp`). Per command: bytes allocated, bytes that survived a scavenge,
 * bytes promoted to the old generation, and the mean scavenge pause.
 *
 * Why it matters: at 1 connection the cluster's p99 is set by scavenges (bench/README.md,
 * "What the tail at 1 connection is"), whose pause grows with the bytes they copy. A node alone
 * promotes almost nothing; whatever a 3-node cluster promotes beyond that is replication's.
 *
 * `--ballast=<kind>,...` asks which objects those bytes are: it measures the 3-node cluster
 * without and with an 8 KB array attached to every object of those kinds (bench/gc-ballast.ts
 * lists them); each object kept past a scavenge adds 8 KB to what survives.
 *
 * Run alone with `npx tsx bench/gc.ts [--seconds=N] [--ballast=<kinds>]` (default 6 measured
 * seconds after 1 s of warm-up per cluster), or as the `gc` section of `npm run bench`.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { RaftConsensus, type RaftNodeInfo } from '../src/consensus/raft-consensus.js';
import { MemoryPersistence } from '../src/storage/memory.js';
import { ballastKinds, installBallast, type BallastKind } from './gc-ballast.js';
import { parseGcTrace, youngKinds, type GcEvent } from './cluster/gc-trace.js';

const warmupMs = 1_000;
const payload = new Uint8Array(100).fill(7);
const measuredMarker = 'phantomdb-bench-gc: measuring';

interface ClusterGcFigures {
  readonly label: string;
  readonly commands: number;
  readonly scavenges: number;
  readonly allocatedBytes: number;
  readonly survivedBytes: number;
  readonly promotedBytes: number;
  readonly pauseMs: number;
}

/** The child: one cluster, warm-up, then the measured loop; the parent reads its GC trace. */
async function runCluster(nodeCount: number, seconds: number): Promise<void> {
  const infos: RaftNodeInfo[] = Array.from({ length: nodeCount }, (_, k) => ({
    id: `n${k + 1}`,
    host: '127.0.0.1',
    port: 7001 + k,
  }));
  const nodes = new Map<string, RaftConsensus>();
  for (const info of infos) {
    const raft = new RaftConsensus(info.id, infos, {
      persistence: new MemoryPersistence(),
      tickIntervalMs: 50,
    });
    raft.registerApplyCommandCallback(() => null);
    raft.registerSnapshotCallbacks({ take: () => new Uint8Array(0), restore: () => undefined });
    raft.registerSendCallback((to, message) => nodes.get(to.id)!.handleMessage(message));
    nodes.set(info.id, raft);
  }
  for (const raft of nodes.values()) await raft.initialize();
  let leader: RaftConsensus | undefined;
  while (
    (leader = [...nodes.values()].find((raft) => raft.getState() === 'leader')) === undefined
  ) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const loop = async (ms: number): Promise<number> => {
    const end = performance.now() + ms;
    let commands = 0;
    while (performance.now() < end) {
      await leader.submitCommand('PUT', payload);
      commands++;
    }
    return commands;
  };
  await loop(warmupMs);
  console.log(measuredMarker);
  const commands = await loop(seconds * 1000);
  console.log(JSON.stringify({ commands }));
  for (const raft of nodes.values()) await raft.shutdown();
}

/** Runs one cluster in a child node with the GC trace on, and sums its measured scavenges. */
function measure(
  nodeCount: number,
  seconds: number,
  ballast: readonly BallastKind[] = [],
): Promise<ClusterGcFigures> {
  const args = ['--import', 'tsx', '--trace-gc-nvp', fileURLToPath(import.meta.url), '--child'];
  if (ballast.length > 0) args.push(`--ballast=${ballast.join(',')}`);
  const child = spawn(process.execPath, [...args, `--nodes=${nodeCount}`, `--seconds=${seconds}`], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => (output += chunk));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => {
      const lines = output.split('\n');
      const from = lines.indexOf(measuredMarker);
      const result = lines.find((line) => line.startsWith('{"commands"'));
      if (code !== 0 || from < 0 || result === undefined) {
        reject(new Error(`bench/gc child (${nodeCount} nodes) exited with ${code}`));
        return;
      }
      const young = parseGcTrace(lines.slice(from + 1).join('\n')).filter((event) =>
        youngKinds.has(event.kind),
      );
      const sum = (of: (event: GcEvent) => number): number =>
        young.reduce((total, event) => total + of(event), 0);
      resolve({
        label:
          ballast.length === 0 ? `${nodeCount}` : `${nodeCount}, ballast: ${ballast.join(', ')}`,
        commands: (JSON.parse(result) as { commands: number }).commands,
        scavenges: young.length,
        allocatedBytes: sum((event) => event.allocatedBytes),
        survivedBytes: sum((event) => event.survivedBytes),
        promotedBytes: sum((event) => event.promotedBytes),
        pauseMs: sum((event) => event.pauseMs),
      });
    });
  });
}

function secondsOption(): number {
  const arg = process.argv.find((value) => value.startsWith('--seconds='));
  const seconds = arg === undefined ? 6 : Number(arg.slice('--seconds='.length));
  if (!(seconds > 0))
    throw new RangeError(`Invalid --seconds: ${arg} (expected a positive number)`);
  return seconds;
}

function ballastOption(): BallastKind[] {
  const arg = process.argv.find((value) => value.startsWith('--ballast='));
  if (arg === undefined) return [];
  const kinds = arg
    .slice('--ballast='.length)
    .split(',')
    .filter((kind) => kind !== '');
  const unknown = kinds.filter((kind) => !(kind in ballastKinds));
  if (kinds.length === 0 || unknown.length > 0) {
    throw new RangeError(
      `Invalid --ballast: ${unknown.join(', ') || 'none given'} (kinds: ${Object.keys(ballastKinds).join(', ')})`,
    );
  }
  return kinds as BallastKind[];
}

export async function run(): Promise<void> {
  const seconds = secondsOption();
  const ballast = ballastOption();
  console.log(
    `RaftConsensus in one process, memory persistence, direct calls; commands of ${payload.length} bytes, one at a time; ${seconds} s measured after ${warmupMs / 1000} s of warm-up`,
  );
  console.log('');
  console.log(
    '| nodes | commands/s | scavenges | allocated B/cmd | survived B/cmd | promoted B/cmd | mean pause ms |',
  );
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  const runs: [number, BallastKind[]][] =
    ballast.length === 0
      ? [
          [1, []],
          [3, []],
        ]
      : [
          [3, []],
          [3, ballast],
        ];
  for (const [nodeCount, kinds] of runs) {
    const figures = await measure(nodeCount, seconds, kinds);
    const per = (bytes: number): string =>
      Math.round(bytes / figures.commands).toLocaleString('en-US');
    console.log(
      `| ${figures.label} | ${Math.round(figures.commands / seconds).toLocaleString('en-US')} | ${figures.scavenges} | ${per(figures.allocatedBytes)} | ${per(figures.survivedBytes)} | ${per(figures.promotedBytes)} | ${(figures.pauseMs / Math.max(1, figures.scavenges)).toFixed(2)} |`,
    );
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  if (process.argv.includes('--child')) {
    installBallast(ballastOption());
    const nodesArg = process.argv.find((value) => value.startsWith('--nodes='));
    await runCluster(Number(nodesArg?.slice('--nodes='.length) ?? 3), secondsOption());
  } else {
    await run();
  }
}
