/**
 * Checks and figures shared by the cluster fault tests: lifecycle hooks (one cluster at a time
 * on the machine, teardown even on failure), durability of acknowledged writes, convergence of
 * replicas, the linearizability verdict, failover time and write gaps.
 */
import { copyFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { KvClient } from './client.js';
import { acquireMachineLock, type Cluster } from './harness.js';
import { killAllNodeProcesses } from './processes.js';
import type { HistoryRecorder, OpRecord } from './recorder.js';
import type { Workload } from './workload.js';

/** Things a test started that must be stopped whatever happens. */
export interface Resources {
  /** Registers a cluster for teardown after the test. */
  cluster(cluster: Cluster): Cluster;
  /** Registers a workload to stop after the test (before the cluster goes down). */
  workload(workload: Workload): Workload;
}

/**
 * Installs the hooks of a cluster test file: takes the machine-wide cluster lock before the
 * first test and releases it after the last; after each test stops the workloads and tears
 * down the clusters it registered (also when the test failed or timed out).
 */
export function useClusterResources(): Resources {
  let release: (() => Promise<void>) | undefined;
  const clusters: Cluster[] = [];
  const workloads: Workload[] = [];
  beforeAll(async () => {
    release = await acquireMachineLock();
  }, 320_000);
  afterEach(async () => {
    await Promise.all(workloads.splice(0).map((workload) => workload.stop()));
    await Promise.all(clusters.splice(0).map((cluster) => cluster.teardown()));
  }, 60_000);
  afterAll(async () => {
    killAllNodeProcesses();
    await release?.();
  });
  return {
    cluster: (cluster) => {
      clusters.push(cluster);
      return cluster;
    },
    workload: (workload) => {
      workloads.push(workload);
      return workload;
    },
  };
}

/** Seed for a test: PHANTOMDB_CLUSTER_SEED if set (to replay), else random. Printed. */
export function testSeed(name: string): number {
  const fromEnv = process.env['PHANTOMDB_CLUSTER_SEED'];
  const seed =
    fromEnv !== undefined && fromEnv !== '' ? Number(fromEnv) : Math.floor(Math.random() * 2 ** 31);
  console.log(
    `${name}: seed ${seed} (replay the client and fault choices with PHANTOMDB_CLUSTER_SEED=${seed})`,
  );
  return seed;
}

/** Completed writes that were acknowledged with 200 ('ok' and applied). */
export function ackedPuts(recorder: HistoryRecorder): OpRecord[] {
  return recorder.ops.filter(
    (op) => op.request.f === 'put' && op.outcome?.kind === 'ok' && op.outcome.result === 'ok',
  );
}

/**
 * Appends a final linearizable read of every key (through `nodeId`) to the history, after the
 * cluster is healed and quiet, so the checker also judges the end state against the acks.
 */
export async function recordFinalReads(
  cluster: Cluster,
  recorder: HistoryRecorder,
  keys: readonly string[],
  nodeId: string,
): Promise<void> {
  const kv = new KvClient({ timeoutMs: 10_000 });
  try {
    for (const key of keys) {
      const record = recorder.invoke('final', nodeId, { f: 'get', key });
      recorder.complete(record, await kv.run(cluster.node(nodeId).url, { f: 'get', key }));
    }
  } finally {
    await kv.close();
  }
}

/**
 * Durability of unique-key writes, judged on every node in `ids` after they converged:
 * - an acked write's value is there (a linearizable read through one of the nodes, rotating,
 *   and a stale local read on each);
 * - a write that certainly failed is absent;
 * - a write with an unknown outcome is absent or has its value, the same on every node.
 * Returns the number of writes checked.
 */
export async function checkUniqueWrites(
  cluster: Cluster,
  recorder: HistoryRecorder,
  ids: readonly string[],
  prefix: string,
): Promise<number> {
  const writes = recorder.ops.filter(
    (op) => op.request.f === 'put' && op.request.key.startsWith(prefix),
  );
  const kv = new KvClient({ timeoutMs: 10_000 });
  const problems: string[] = [];
  const checkOne = async (op: OpRecord, position: number): Promise<void> => {
    try {
      await checkWrite(op, position);
    } catch (error) {
      problems.push(String(error));
    }
  };
  const checkWrite = async (op: OpRecord, position: number): Promise<void> => {
    if (op.request.f !== 'put') return;
    const { key, value } = op.request;
    const kind = op.outcome?.kind ?? 'unknown';
    const reader = ids[position % ids.length]!;
    const linearizable = await kv.run(cluster.node(reader).url, { f: 'get', key });
    if (linearizable.kind !== 'ok') {
      problems.push(`${reader}: linearizable GET ${key} failed: ${JSON.stringify(linearizable)}`);
      return;
    }
    const local = await Promise.all(ids.map((id) => getStale(kv, cluster.node(id).url, key)));
    const seen = new Set([linearizable.value ?? null, ...local]);
    if (seen.size > 1) {
      problems.push(`${key} differs between reads: ${[...seen].map(String).join(' / ')}`);
    }
    if (kind === 'ok' && (seen.size > 1 || linearizable.value !== value)) {
      problems.push(
        `acked ${key}=${value} (sent to ${op.node}, ${JSON.stringify(op.outcome)}) reads ${String(linearizable.value)} through ${reader}`,
      );
    }
    if (kind === 'fail' && linearizable.value !== null) {
      problems.push(
        `${key}=${value} failed for certain (${JSON.stringify(op.outcome)}) yet reads ${String(linearizable.value)}`,
      );
    }
  };
  try {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < writes.length && problems.length < 20) {
        const position = next++;
        await checkOne(writes[position]!, position);
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
  } finally {
    await kv.close();
  }
  expect(problems, problems.join('\n')).toEqual([]);
  return writes.length;
}

/** `GET ?consistency=stale`: the node's local value (null = absent); throws on other answers. */
async function getStale(kv: KvClient, url: string, key: string): Promise<string | null> {
  const response = await request(`${url}/v1/kv/${encodeURIComponent(key)}?consistency=stale`, {
    dispatcher: kv.dispatcher,
    signal: AbortSignal.timeout(5_000),
  });
  const text = await response.body.text();
  if (response.statusCode === 200) return text;
  if (response.statusCode === 404) return null;
  throw new Error(`stale GET ${key} on ${url}: ${response.statusCode} ${text.slice(0, 200)}`);
}

/**
 * Every node in `ids` holds the same value for every key in `keys` (stale local reads, after
 * convergence). Returns the values.
 */
export async function checkSameValues(
  cluster: Cluster,
  ids: readonly string[],
  keys: readonly string[],
): Promise<Map<string, string | null>> {
  const kv = new KvClient({ timeoutMs: 5_000 });
  const values = new Map<string, string | null>();
  const problems: string[] = [];
  try {
    for (const key of keys) {
      const seen = new Map<string, string | null>();
      for (const id of ids) {
        try {
          seen.set(id, await getStale(kv, cluster.node(id).url, key));
        } catch (error) {
          problems.push(String(error));
        }
      }
      const distinct = new Set(seen.values());
      if (distinct.size !== 1 || seen.size !== ids.length) {
        problems.push(`${key}: ${JSON.stringify(Object.fromEntries(seen))}`);
      } else {
        values.set(key, [...distinct][0] as string | null);
      }
    }
  } finally {
    await kv.close();
  }
  expect(problems, `replicas differ:\n${problems.join('\n')}`).toEqual([]);
  return values;
}

/**
 * Writes the history, runs the checker CLI, prints ops count and verdict, and expects
 * "linearizable". A failing history is copied next to the temp dir (kept) for study.
 */
export async function expectLinearizable(
  recorder: HistoryRecorder,
  cluster: Cluster,
  name: string,
): Promise<void> {
  const file = path.join(cluster.dir, `${name}.history.jsonl`);
  const report = await recorder.writeAndCheck(file);
  console.log(`${name}: ${recorder.summary()}\n${report.output}`);
  if (report.exitCode !== 0) {
    const kept = path.join(os.tmpdir(), `phantomdb-${name}-${Date.now()}.history.jsonl`);
    await copyFile(file, kept);
    console.log(`${name}: history kept at ${kept}`);
  }
  expect(report.exitCode, report.output).toBe(0);
}

/** The longest time between two consecutive acknowledged writes in [fromMs, toMs]. */
export function longestAckGap(
  recorder: HistoryRecorder,
  fromMs = 0,
  toMs = Infinity,
): { gapMs: number; afterMs: number } {
  const times = ackedPuts(recorder)
    .map((op) => op.completedAtMs)
    .filter((t) => t >= fromMs && t <= toMs)
    .sort((a, b) => a - b);
  let gapMs = 0;
  let afterMs = fromMs;
  for (let k = 1; k < times.length; k++) {
    const gap = times[k]! - times[k - 1]!;
    if (gap > gapMs) {
      gapMs = gap;
      afterMs = times[k - 1]!;
    }
  }
  return { gapMs, afterMs };
}

/** Waits until `predicate` holds, polling; throws `message()` after `timeoutMs`. */
export async function waitUntil(
  predicate: () => boolean | Promise<boolean>,
  timeoutMs: number,
  message: () => string | Promise<string>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(await message());
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
