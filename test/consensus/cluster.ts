// Helpers for RaftConsensus tests: a cluster of real nodes with fast timers over the in-process
// transport, a small key-value state machine with snapshots, and polling waits.
import { LocalTransport } from '../../src/consensus/local-transport.js';
import {
  RaftConsensus,
  type RaftConsensusOptions,
  type RaftNodeInfo,
} from '../../src/consensus/raft-consensus.js';
import { MemoryPersistence } from '../../src/storage/memory.js';

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** A key-value state machine: "SET" with data "key=value". */
export class KvMachine {
  readonly values = new Map<string, string>();
  readonly applied: number[] = [];

  apply(command: string, data: string | Uint8Array, index: number): unknown {
    this.applied.push(index);
    const text = typeof data === 'string' ? data : decoder.decode(data);
    if (command === 'SET') {
      const [key, value] = text.split('=') as [string, string];
      const previous = this.values.get(key);
      this.values.set(key, value);
      return previous;
    }
    if (command === 'FAIL') throw new Error(`command failed: ${text}`);
    return undefined;
  }

  take(): Uint8Array {
    return encoder.encode(JSON.stringify([...this.values]));
  }

  restore(data: Uint8Array): void {
    this.values.clear();
    if (data.length === 0) return;
    for (const [key, value] of JSON.parse(decoder.decode(data)) as [string, string][]) {
      this.values.set(key, value);
    }
  }
}

/** One member of a test cluster. */
export interface ClusterNode {
  readonly info: RaftNodeInfo;
  raft: RaftConsensus;
  machine: KvMachine;
  persistence: MemoryPersistence;
}

/** Options shared by the nodes of a test cluster (fast ticks by default). */
export const fastOptions: RaftConsensusOptions = {
  tickIntervalMs: 10,
  proposalTimeoutMs: 3_000,
};

/** Builds a node wired to the transport, not yet initialized. */
export function makeNode(
  transport: LocalTransport,
  info: RaftNodeInfo,
  nodes: readonly RaftNodeInfo[],
  options: RaftConsensusOptions = {},
  persistence = new MemoryPersistence(),
): ClusterNode {
  const machine = new KvMachine();
  const raft = new RaftConsensus(info.id, nodes, { ...fastOptions, persistence, ...options });
  raft.registerApplyCommandCallback((command, data, entry) =>
    machine.apply(command, data, entry.index),
  );
  raft.registerSnapshotCallbacks({
    take: () => machine.take(),
    restore: (data) => machine.restore(data),
  });
  transport.connect(raft);
  return { info, raft, machine, persistence };
}

/** Node infos n1..nK on made-up ports. */
export function nodeInfos(count: number): RaftNodeInfo[] {
  return Array.from({ length: count }, (_, k) => ({
    id: `n${k + 1}`,
    host: '127.0.0.1',
    port: 7001 + k,
  }));
}

/** A started cluster of `count` nodes over one LocalTransport, each on `storage()`. */
export async function startCluster(
  count: number,
  options: RaftConsensusOptions = {},
  storage: () => MemoryPersistence = () => new MemoryPersistence(),
): Promise<{ transport: LocalTransport; nodes: ClusterNode[] }> {
  const transport = new LocalTransport();
  const infos = nodeInfos(count);
  const nodes = infos.map((info) => makeNode(transport, info, infos, options, storage()));
  for (const node of nodes) await node.raft.initialize();
  return { transport, nodes };
}

/** Polls `condition` every 5 ms until it holds; throws after `timeoutMs`. */
export async function waitUntil(
  condition: () => boolean,
  timeoutMs = 5_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Waits until exactly one running node leads and every other running node follows it. */
export async function waitForLeader(
  nodes: readonly ClusterNode[],
  timeoutMs = 5_000,
): Promise<ClusterNode> {
  let leader: ClusterNode | undefined;
  await waitUntil(
    () => {
      const leaders = nodes.filter((node) => node.raft.getState() === 'leader');
      if (leaders.length !== 1) return false;
      leader = leaders[0]!;
      const id = leader.info.id;
      return nodes.every((node) => node.raft.getLeader() === id);
    },
    timeoutMs,
    'a leader',
  );
  return leader!;
}

/** Shuts every node down. */
export async function stopAll(nodes: readonly ClusterNode[]): Promise<void> {
  await Promise.all(nodes.map((node) => node.raft.shutdown()));
}
