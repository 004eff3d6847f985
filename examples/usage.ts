/**
 * The seed's usage example (consensus-and-replication.md, "Usage Example"), runnable: a
 * ConsensusManager for node1 in this process forms a three-node Raft cluster (region us-east)
 * with node2 and node3, and replicates to region1 (the primary) and region2. Everything but
 * node1 runs as local node processes that this script starts on free ports, with data in a
 * temp dir, and stops at the end.
 *
 * Run: npx tsx examples/usage.ts   (uses dist/ when built, else runs the sources through tsx)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConflictResolutionStrategy } from '../src/conflict/conflict-resolver.js';
import { ConsensusManager } from '../src/consensus/consensus-manager.js';
import type { RaftNodeInfo } from '../src/consensus/raft-consensus.js';
import { ReplicationStrategy } from '../src/replication/types.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const built = path.join(root, 'dist/node/main.js');
const decoder = new TextDecoder();

/** A port the OS says is free. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        resolve(typeof address === 'object' && address !== null ? address.port : 0),
      );
    });
  });
}

const dataDir = await mkdtemp(path.join(os.tmpdir(), 'phantomdb-usage-'));
const children: { name: string; child: ChildProcess; log: string }[] = [];

/** Starts `phantomdb` with `args`, its log in the temp dir. */
function startNode(name: string, args: string[]): void {
  const log = path.join(dataDir, `${name}.log`);
  const entry = existsSync(built)
    ? [built]
    : ['--import', 'tsx', path.join(root, 'src/node/main.ts')];
  const fd = openSync(log, 'a');
  const child = spawn(process.execPath, [...entry, ...args, '--log-level', 'warn'], {
    cwd: root,
    stdio: ['ignore', fd, fd],
  });
  children.push({ name, child, log });
}

async function waitUntil<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  ms = 20_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch {
      // Not up yet.
    }
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function http(method: string, url: string, body?: unknown): Promise<Response> {
  return fetch(url, {
    method,
    signal: AbortSignal.timeout(5_000),
    ...(body === undefined
      ? {}
      : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
  });
}

let consensusManager: ConsensusManager | null = null;
try {
  // Create Raft node information (the seed's three nodes, on this machine).
  const [p1, p2, p3, r1, r2] = await Promise.all([1, 2, 3, 4, 5].map(() => freePort()));
  const raftNodes: RaftNodeInfo[] = [
    { id: 'node1', host: '127.0.0.1', port: p1! },
    { id: 'node2', host: '127.0.0.1', port: p2! },
    { id: 'node3', host: '127.0.0.1', port: p3! },
  ];
  const peers = raftNodes.map((node) => `${node.id}=http://${node.host}:${node.port}`).join(',');
  for (const node of raftNodes.slice(1)) {
    startNode(node.id, [
      ...['--id', node.id, '--listen', `127.0.0.1:${node.port}`, '--peers', peers],
      ...['--data-dir', path.join(dataDir, node.id), '--region', 'us-east'],
    ]);
  }
  for (const [id, port] of [
    ['region1', r1!],
    ['region2', r2!],
  ] as const) {
    startNode(id, [
      ...['--id', `${id}-a`, '--listen', `127.0.0.1:${port}`, '--region', id],
      ...['--data-dir', path.join(dataDir, id)],
    ]);
  }

  // Create consensus configuration, and create and initialize the consensus manager.
  consensusManager = new ConsensusManager({
    nodeId: 'node1',
    raftNodes,
    region: 'us-east',
    replicationStrategy: ReplicationStrategy.ASYNCHRONOUS,
    conflictResolutionStrategy: ConflictResolutionStrategy.LATEST_TIMESTAMP,
    listen: true,
  });
  const manager = consensusManager;
  const applied = new Map<string, string>();
  manager.registerApplyCommandCallback((command, data) => {
    if (command !== 'WRITE') return undefined;
    const [key, value] = String(data).split(':') as [string, string];
    applied.set(key, value);
    return applied.size;
  });
  await manager.initialize();

  // The seed calls everything on node1, so make node1 the leader.
  const leader = await waitUntil('a us-east leader', () => {
    const id = manager.getLeader();
    return id === '' ? undefined : id;
  });
  if (leader !== 'node1') {
    const port = raftNodes.find((node) => node.id === leader)!.port;
    await http('POST', `http://127.0.0.1:${port}/v1/leader/transfer`, { to: 'node1' });
    await waitUntil('node1 to lead', () => (manager.isLeader() ? true : undefined));
  }
  for (const port of [r1!, r2!]) {
    await waitUntil('the regions to start', async () =>
      (await http('GET', `http://127.0.0.1:${port}/healthz`)).ok ? true : undefined,
    );
  }

  // Add replication regions (the seed's RegionInfo("region1", host, port, primary)).
  await manager.addReplicationRegion({
    id: 'region1',
    host: '127.0.0.1',
    port: r1!,
    primary: true,
  });
  await manager.addReplicationRegion({ id: 'region2', host: '127.0.0.1', port: r2! });
  // The regions replicate back (a full mesh), configured over their HTTP API.
  for (const [from, others] of [
    [
      r1!,
      [
        ['us-east', p1!],
        ['region2', r2!],
      ],
    ],
    [
      r2!,
      [
        ['us-east', p1!],
        ['region1', r1!],
      ],
    ],
  ] as const) {
    for (const [id, port] of others) {
      await http('POST', `http://127.0.0.1:${from}/v1/regions`, {
        id,
        url: `http://127.0.0.1:${port}`,
      });
    }
  }

  // Submit commands.
  const written = await manager.submitCommand('WRITE', 'key1:value1');
  console.log(
    `submitCommand("WRITE", "key1:value1") -> index ${written.index}; key1 = ${applied.get('key1')}`,
  );

  // Replicate data.
  const receipt = await manager.replicateData('test_key', 'test_value');
  console.log('replicateData("test_key", "test_value") ->', receipt);
  manager.replication.setReplicationStrategy(ReplicationStrategy.SEMI_SYNCHRONOUS);
  const semi = await manager.replicateData('semi_key', 'acknowledged by the primary');
  console.log('replicateData under SEMI_SYNCHRONOUS -> acknowledged by', semi.acknowledged);

  for (const [id, port] of [
    ['region1', r1!],
    ['region2', r2!],
  ] as const) {
    const value = await waitUntil(`test_key in ${id}`, async () => {
      const answer = await http('GET', `http://127.0.0.1:${port}/v1/kv/test_key?consistency=stale`);
      return answer.ok ? await answer.text() : undefined;
    });
    console.log(`${id} reads test_key = ${value}`);
  }
  await fetch(`http://127.0.0.1:${r2!}/v1/kv/from_region2`, {
    method: 'PUT',
    body: 'hello from region2',
    signal: AbortSignal.timeout(5_000),
  });
  const back = await waitUntil('region2 write in us-east', () => manager.get('from_region2'));
  console.log(`us-east reads from_region2 (written in region2) = "${decoder.decode(back)}"`);

  // Check status.
  console.log(`Current leader: ${manager.getLeader()}`);
  console.log(`Commit index: ${manager.getCommitIndex()}`);
  console.log(
    `Term: ${manager.getCurrentTerm()}, state: ${manager.getNodeState()}, applied: ${manager.getLastApplied()}`,
  );
  for (const status of manager.getReplicationStatus()) {
    console.log(
      `Region ${status.regionId}${status.primary ? ' (primary)' : ''}: connected=${status.connected} ackedIndex=${status.lastAckedIndex} lagEntries=${status.lagEntries} rtt=${status.roundTripMs} ms`,
    );
  }
  console.log('Conflict resolution stats:', manager.getConflictResolutionStats());
} catch (error) {
  for (const { name, log } of children) {
    console.error(`--- ${name} log ---\n${existsSync(log) ? readFileSync(log, 'utf8') : ''}`);
  }
  throw error;
} finally {
  // Shutdown.
  await consensusManager?.shutdown();
  await Promise.all(
    children.map(
      ({ child }) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const force = setTimeout(() => child.kill('SIGKILL'), 5_000);
          child.once('exit', () => {
            clearTimeout(force);
            resolve();
          });
          child.kill('SIGTERM');
        }),
    ),
  );
  await rm(dataDir, { recursive: true, force: true });
}
