// RaftConsensus on the durable FilePersistence (WAL + snapshots in temp dirs): a 3-node cluster
// commits, snapshots and compacts, and a node shut down and reopened from its data directory
// comes back with its membership, term and state.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalTransport } from '../../src/consensus/local-transport.js';
import { FilePersistence } from '../../src/storage/file-persistence.js';
import { createLog } from '../../src/kernel/index.js';
import {
  makeNode,
  nodeInfos,
  stopAll,
  waitForLeader,
  waitUntil,
  type ClusterNode,
} from './cluster.js';
import type { MemoryPersistence } from '../../src/storage/memory.js';

let running: ClusterNode[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await stopAll(running);
  running = [];
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

function filePersistence(dir: string): MemoryPersistence {
  // makeNode's parameter is typed for the memory store; any RaftPersistence works.
  return new FilePersistence({
    dir,
    createLog: () => createLog({ kernel: 'ts' }),
  }) as unknown as MemoryPersistence;
}

describe('RaftConsensus on FilePersistence', () => {
  it('commits, snapshots, and restarts a node from its data directory', async () => {
    const root = await mkdtemp(join(tmpdir(), 'phantomdb-consensus-'));
    dirs.push(root);
    const transport = new LocalTransport();
    const infos = nodeInfos(3);
    const options = { snapshotEveryEntries: 10, compactKeepEntries: 2 };
    const nodes = infos.map((info) =>
      makeNode(transport, info, infos, options, filePersistence(join(root, info.id))),
    );
    running.push(...nodes);
    for (const node of nodes) await node.raft.initialize();
    const leader = await waitForLeader(nodes);
    for (let k = 0; k < 25; k++) await leader.raft.submitCommand('SET', `k${k}=${k}`);
    const victim = nodes.find((node) => node !== leader)!;
    await waitUntil(() => victim.machine.values.get('k24') === '24');
    expect(victim.raft.status().raft!.snapshotIndex).toBeGreaterThanOrEqual(20);
    const term = victim.raft.getCurrentTerm();
    await victim.raft.shutdown();
    transport.disconnect(victim.info.id);

    await leader.raft.submitCommand('SET', 'while=away');
    const reopened = makeNode(
      transport,
      victim.info,
      [victim.info],
      options,
      filePersistence(join(root, victim.info.id)),
    );
    running.push(reopened);
    await reopened.raft.initialize();
    // Membership and term come from the data directory, not from the arguments.
    expect(reopened.raft.getMembers().map((member) => member.id)).toEqual(['n1', 'n2', 'n3']);
    expect(reopened.raft.getCurrentTerm()).toBe(term);
    // The state machine came back from the snapshot plus the log, then caught up.
    // (snapshot at index >= 20: the Noop at 1 and k0..k18 at 2..20)
    expect(reopened.machine.values.get('k18')).toBe('18');
    await waitUntil(() => reopened.machine.values.get('while') === 'away');
    expect([...reopened.machine.values].sort()).toEqual([...leader.machine.values].sort());
  });
});
