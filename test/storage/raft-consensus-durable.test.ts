// RaftConsensus on FilePersistence: a 3-node cluster (in-process transport) commits commands
// with snapshots and compaction on, every node is shut down and restarted from its data
// directory, and the restarted cluster still has every committed command, its term and its
// membership — checked by reading the state machines and the directories.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalTransport } from '../../src/consensus/local-transport.js';
import { RaftConsensus } from '../../src/consensus/raft-consensus.js';
import type { RaftNodeInfo } from '../../src/consensus/raft-consensus.js';
import { FilePersistence } from '../../src/storage/file-persistence.js';
import { createTestLog, tempDir } from './helpers/entries.js';

const decoder = new TextDecoder();
const encoder = new TextEncoder();

interface Node {
  readonly raft: RaftConsensus;
  readonly values: Map<string, string>;
}

const infos: RaftNodeInfo[] = ['n1', 'n2', 'n3'].map((id, k) => ({
  id,
  host: '127.0.0.1',
  port: 7001 + k,
}));

function startNode(transport: LocalTransport, root: string, info: RaftNodeInfo): Node {
  const values = new Map<string, string>();
  const persistence = new FilePersistence({
    dir: join(root, info.id),
    createLog: createTestLog,
    onWarning: () => undefined,
  });
  const raft = new RaftConsensus(info.id, infos, {
    persistence,
    tickIntervalMs: 10,
    proposalTimeoutMs: 5_000,
    snapshotEveryEntries: 40,
    compactKeepEntries: 5,
  });
  raft.registerApplyCommandCallback((command, data) => {
    if (command !== 'SET') return undefined;
    const [key, value] = (typeof data === 'string' ? data : decoder.decode(data)).split('=');
    values.set(key!, value!);
    return undefined;
  });
  raft.registerSnapshotCallbacks({
    take: () => encoder.encode(JSON.stringify([...values])),
    restore: (data) => {
      values.clear();
      if (data.length > 0) {
        for (const [key, value] of JSON.parse(decoder.decode(data)) as [string, string][]) {
          values.set(key, value);
        }
      }
    },
  });
  transport.connect(raft);
  return { raft, values };
}

async function waitUntil(
  condition: () => boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function leaderOf(nodes: readonly Node[]): Promise<Node> {
  let leader: Node | undefined;
  await waitUntil(() => {
    leader = nodes.find((node) => node.raft.getState() === 'leader');
    return (
      leader !== undefined &&
      nodes.every((node) => node.raft.getLeader() === leader!.raft.status().id)
    );
  }, 'a leader');
  return leader!;
}

describe('RaftConsensus on FilePersistence', () => {
  let root: Awaited<ReturnType<typeof tempDir>>;
  let running: Node[] = [];

  beforeEach(async () => {
    root = await tempDir('phantomdb-raft-durable-');
  });

  afterEach(async () => {
    await Promise.all(running.map((node) => node.raft.shutdown()));
    running = [];
    await root.remove();
  });

  it('keeps every committed command, the term and the membership across a full restart', async () => {
    let transport = new LocalTransport();
    running = infos.map((info) => startNode(transport, root.path, info));
    for (const node of running) await node.raft.initialize();
    let leader = await leaderOf(running);
    for (let round = 0; round < 10; round++) {
      await Promise.all(
        Array.from({ length: 15 }, (_, k) =>
          leader.raft.submitCommand('SET', `k${round * 15 + k}=v${round}`),
        ),
      );
    }
    const commit = leader.raft.getCommitIndex();
    await waitUntil(
      () => running.every((node) => node.raft.getLastApplied() >= commit),
      'all applied',
    );
    const term = leader.raft.getCurrentTerm();
    for (const node of running) expect(node.values.size).toBe(150);
    // Snapshots were taken and the WAL compacted behind them.
    for (const info of infos) {
      expect((await readdir(join(root.path, info.id, 'snap'))).length).toBeGreaterThan(0);
    }

    await Promise.all(running.map((node) => node.raft.shutdown()));
    transport = new LocalTransport();
    running = infos.map((info) => startNode(transport, root.path, info));
    for (const node of running) await node.raft.initialize();
    // Before any new leader commits anything, each node already holds the snapshot state.
    for (const node of running) {
      expect(node.raft.getCurrentTerm()).toBeGreaterThanOrEqual(term);
      expect(
        node.raft
          .getMembers()
          .map((member) => member.id)
          .sort(),
      ).toEqual(['n1', 'n2', 'n3']);
    }
    leader = await leaderOf(running);
    await leader.raft.submitCommand('SET', 'after=restart');
    const again = leader.raft.getCommitIndex();
    await waitUntil(
      () => running.every((node) => node.raft.getLastApplied() >= again),
      'all applied after restart',
    );
    for (const node of running) {
      expect(node.values.size).toBe(151);
      for (let i = 0; i < 150; i++) expect(node.values.get(`k${i}`)).toBe(`v${Math.floor(i / 15)}`);
      expect(node.values.get('after')).toBe('restart');
    }
    expect(leader.raft.getCurrentTerm()).toBeGreaterThan(term);
  });
});
