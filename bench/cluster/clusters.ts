/**
 * The two systems under test, each a three-member cluster on loopback with its data on disk:
 * our node (`node dist/node/main.js`, flags from ../shared/DESIGN.md "Contracts") and etcd
 * (fsync on, its default). Both expose the same small surface to the benchmark: members with
 * pids, the current leader, and the leader's fsync counters.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { request } from 'undici';
import { findFsyncHistogram, parsePrometheusText, sumOf } from './prometheus.js';
import { freePorts, startProcess, stopProcess, waitFor } from './processes.js';
import type { ManagedProcess } from './processes.js';

/** Which request the load generator sends: each system's own "put this key" call. */
export type PutProtocol = 'phantomdb' | 'etcd';

/** One member of a running cluster. */
export interface ClusterMember {
  readonly id: string;
  readonly clientUrl: string;
  readonly process: ManagedProcess;
}

/** What a member's metrics say about its WAL fsyncs, cumulative since it started. */
export interface FsyncCounters {
  /** The histogram the figures come from, e.g. `etcd_disk_wal_fsync_duration_seconds`. */
  readonly metric: string;
  readonly count: number;
  readonly seconds: number;
}

/** A running three-member cluster. */
export interface BenchCluster {
  readonly protocol: PutProtocol;
  /**
   * Which system this is in the report: 'phantomdb', 'etcd', or 'baseline' (our node from
   * another build, `--baseline`, to compare a change against in the same run).
   */
  readonly system: string;
  /** Name and version, for the report. */
  readonly label: string;
  readonly members: readonly ClusterMember[];
  /** The member that currently leads, with its term (asked of every member, they must agree). */
  findLeader(): Promise<{ member: ClusterMember; term: number }>;
  /** The member's `/metrics` text. */
  readMetrics(member: ClusterMember): Promise<string>;
  /**
   * The fsync counters in a member's metrics text, or undefined when it has no fsync histogram.
   */
  fsyncsIn(metricsText: string): FsyncCounters | undefined;
  /** Stops every member (SIGTERM, then SIGKILL); resolves with how each exited. */
  stop(): Promise<Record<string, number | string>>;
}

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

/** Path of the built node entry point. */
export const nodeMainPath = join(repoRoot, 'dist', 'node', 'main.js');

async function getJson(url: string, init?: { method: string; body: string }): Promise<unknown> {
  const response = await request(url, {
    method: init?.method === 'POST' ? 'POST' : 'GET',
    body: init?.body,
    headers: init === undefined ? {} : { 'content-type': 'application/json' },
    headersTimeout: 2_000,
    bodyTimeout: 2_000,
  });
  const text = await response.body.text();
  if (response.statusCode !== 200) {
    throw new Error(`${url} answered ${response.statusCode}: ${text.slice(0, 200)}`);
  }
  return JSON.parse(text) as unknown;
}

async function readMetricsText(member: ClusterMember): Promise<string> {
  const response = await request(`${member.clientUrl}/metrics`, {
    headersTimeout: 5_000,
    bodyTimeout: 5_000,
  });
  const text = await response.body.text();
  if (response.statusCode !== 200) {
    throw new Error(`${member.clientUrl}/metrics answered ${response.statusCode}`);
  }
  return text;
}

function fsyncCountersIn(text: string, preferred?: string): FsyncCounters | undefined {
  const samples = parsePrometheusText(text);
  const metric = preferred ?? findFsyncHistogram(samples);
  if (metric === undefined) return undefined;
  const count = sumOf(samples, `${metric}_count`);
  if (count === undefined) return undefined;
  return { metric, count, seconds: sumOf(samples, `${metric}_sum`) ?? NaN };
}

/** Options shared by both cluster kinds. */
export interface ClusterOptions {
  /** Parent of the members' data directories (on the disk to measure, not a tmpfs). */
  readonly dataDir: string;
  /** Where member logs go. */
  readonly logDir: string;
}

/** Options for our node. */
export interface PhantomClusterOptions extends ClusterOptions {
  /** Extra node flags, e.g. `--tick-ms=50`. */
  readonly nodeArgs: readonly string[];
  /** Extra flags for the node's `node` process, e.g. `--cpu-prof`. */
  readonly nodeExecArgs: readonly string[];
  /** The node entry point to run (default: this checkout's dist/node/main.js). */
  readonly mainPath?: string;
  /** The system name in the report (default 'phantomdb'). */
  readonly system?: string;
}

/** Starts three of our nodes on free ports and waits until they agree on a leader. */
export async function startPhantomCluster(options: PhantomClusterOptions): Promise<BenchCluster> {
  const mainPath = options.mainPath ?? nodeMainPath;
  const system = options.system ?? 'phantomdb';
  if (!existsSync(mainPath)) {
    throw new Error(`Cannot start the PhantomDB cluster: ${mainPath} is missing (npm run build)`);
  }
  const ids = ['n1', 'n2', 'n3'];
  const ports = await freePorts(ids.length);
  const urls = ports.map((port) => `http://127.0.0.1:${port}`);
  const peers = ids.map((id, i) => `${id}=${urls[i]!}`).join(',');
  const members: ClusterMember[] = [];
  try {
    for (const [i, id] of ids.entries()) {
      const dataDir = join(options.dataDir, id);
      await mkdir(dataDir, { recursive: true });
      const args = [
        ...options.nodeExecArgs,
        mainPath,
        `--id=${id}`,
        `--listen=127.0.0.1:${ports[i]!}`,
        `--peers=${peers}`,
        `--data-dir=${dataDir}`,
        '--log-level=warn',
        ...options.nodeArgs,
      ];
      members.push({
        id,
        clientUrl: urls[i]!,
        process: startProcess(`${system} ${id}`, process.execPath, args, {
          logPath: join(options.logDir, `${system}-${id}.log`),
          cwd: options.dataDir,
        }),
      });
    }
    const cluster: BenchCluster = {
      protocol: 'phantomdb',
      system,
      label:
        system === 'phantomdb'
          ? `PhantomDB ${readOwnVersion()}`
          : `PhantomDB ${system} (${mainPath})`,
      members,
      async findLeader() {
        const statuses = await Promise.all(
          members.map(async (member) => {
            if (member.process.hasExited()) {
              throw new Error(`${member.id} exited (${String(await member.process.exited)})`);
            }
            return (await getJson(`${member.clientUrl}/v1/status`)) as {
              id: string;
              state: string;
              term: number;
              leader: string | null;
            };
          }),
        );
        const leaderIds = new Set(statuses.map((status) => status.leader));
        const leaderId = statuses[0]?.leader;
        if (leaderIds.size !== 1 || leaderId === null || leaderId === undefined) {
          throw new Error(
            `no agreed leader yet: ${statuses.map((s) => `${s.id}→${String(s.leader)}`).join(' ')}`,
          );
        }
        const member = members.find((candidate) => candidate.id === leaderId);
        const status = statuses.find((candidate) => candidate.id === leaderId);
        if (member === undefined || status === undefined || status.state !== 'leader') {
          throw new Error(`leader ${leaderId} does not say it leads`);
        }
        return { member, term: status.term };
      },
      readMetrics: readMetricsText,
      fsyncsIn: (text) => fsyncCountersIn(text),
      stop: () => stopMembers(members),
    };
    await waitFor('the PhantomDB cluster to elect a leader', () => cluster.findLeader(), 30_000);
    return cluster;
  } catch (error) {
    await stopMembers(members);
    throw error;
  }
}

async function stopMembers(
  members: readonly ClusterMember[],
): Promise<Record<string, number | string>> {
  const outcomes = await Promise.all(members.map((member) => stopProcess(member.process)));
  return Object.fromEntries(members.map((member, i) => [member.id, outcomes[i]!]));
}

function readOwnVersion(): string {
  const text = readFileSync(join(repoRoot, 'package.json'), 'utf8');
  return (JSON.parse(text) as { version: string }).version;
}

/** Where etcd is: `$ETCD` or --etcd, else `etcd` on the PATH, else undefined. */
export function findEtcd(explicit: string | undefined): string | undefined {
  if (explicit !== undefined && explicit !== '') return existsSync(explicit) ? explicit : undefined;
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir === '') continue;
    const candidate = join(dir, 'etcd');
    if (existsSync(candidate)) return candidate;
  }
  return existsSync('/usr/bin/etcd') ? '/usr/bin/etcd' : undefined;
}

/** Starts a three-member etcd cluster on free ports and waits until it has a leader. */
export async function startEtcdCluster(
  etcdPath: string,
  options: ClusterOptions,
): Promise<BenchCluster> {
  const ids = ['e1', 'e2', 'e3'];
  const ports = await freePorts(ids.length * 2);
  const clientUrls = ids.map((_id, i) => `http://127.0.0.1:${ports[2 * i]!}`);
  const peerUrls = ids.map((_id, i) => `http://127.0.0.1:${ports[2 * i + 1]!}`);
  const initialCluster = ids.map((id, i) => `${id}=${peerUrls[i]!}`).join(',');
  const token = `phantomdb-bench-${process.pid}-${Date.now()}`;
  const version = (() => {
    try {
      const text = execFileSync(etcdPath, ['--version'], { encoding: 'utf8' });
      return /etcd Version: (\S+)/.exec(text)?.[1] ?? 'unknown version';
    } catch {
      return 'unknown version';
    }
  })();
  const members: ClusterMember[] = [];
  try {
    for (const [i, id] of ids.entries()) {
      const dataDir = join(options.dataDir, id);
      const args = [
        `--name=${id}`,
        `--data-dir=${dataDir}`,
        `--listen-client-urls=${clientUrls[i]!}`,
        `--advertise-client-urls=${clientUrls[i]!}`,
        `--listen-peer-urls=${peerUrls[i]!}`,
        `--initial-advertise-peer-urls=${peerUrls[i]!}`,
        `--initial-cluster=${initialCluster}`,
        `--initial-cluster-token=${token}`,
        '--initial-cluster-state=new',
        '--logger=zap',
        '--log-level=warn',
      ];
      members.push({
        id,
        clientUrl: clientUrls[i]!,
        process: startProcess(`etcd ${id}`, etcdPath, args, {
          logPath: join(options.logDir, `etcd-${id}.log`),
          cwd: options.dataDir,
        }),
      });
    }
    const cluster: BenchCluster = {
      protocol: 'etcd',
      system: 'etcd',
      label: `etcd ${version}`,
      members,
      async findLeader() {
        const statuses = await Promise.all(
          members.map(async (member) => {
            if (member.process.hasExited()) {
              throw new Error(`${member.id} exited (${String(await member.process.exited)})`);
            }
            // The gateway renders uint64 fields as JSON strings.
            return (await getJson(`${member.clientUrl}/v3/maintenance/status`, {
              method: 'POST',
              body: '{}',
            })) as { header: { member_id: string }; leader?: string; raftTerm?: string };
          }),
        );
        const leaders = new Set(statuses.map((status) => status.leader));
        const leaderId = statuses[0]?.leader;
        if (leaders.size !== 1 || leaderId === undefined || leaderId === '0') {
          throw new Error('no agreed leader yet');
        }
        const index = statuses.findIndex((status) => status.header.member_id === leaderId);
        if (index < 0) throw new Error(`leader ${leaderId} is not among the members`);
        return { member: members[index]!, term: Number(statuses[index]!.raftTerm ?? NaN) };
      },
      readMetrics: readMetricsText,
      fsyncsIn: (text) => fsyncCountersIn(text, 'etcd_disk_wal_fsync_duration_seconds'),
      stop: () => stopMembers(members),
    };
    await waitFor('the etcd cluster to elect a leader', () => cluster.findLeader(), 30_000);
    return cluster;
  } catch (error) {
    await stopMembers(members);
    throw error;
  }
}
