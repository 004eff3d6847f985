// Regions in one process for the replication tests: each region is a Raft cluster of
// ConsensusManagers joined by a LocalTransport (fast ticks, in-memory storage unless given),
// and all regions share one LocalRegionNetwork, so outages can be played without sockets.
import { LocalTransport } from '../../src/consensus/local-transport.js';
import { ConsensusManager, type ConsensusConfig } from '../../src/consensus/consensus-manager.js';
import type { LocalRegionNetwork } from '../../src/replication/local-network.js';
import { MemoryPersistence } from '../../src/storage/memory.js';

/** One node of a test region. */
export interface TestNode {
  readonly id: string;
  readonly url: string;
  manager: ConsensusManager;
  persistence: MemoryPersistence;
}

/** A region: its nodes, their Raft network and the shared region network. */
export interface TestRegion {
  readonly id: string;
  readonly nodes: TestNode[];
  readonly transport: LocalTransport;
  /** The URL other regions use (the first node's). */
  readonly url: string;
  /** The node that leads now (waits for one all running nodes agree on). */
  leader(timeoutMs?: number): Promise<TestNode>;
  /** Crashes a node and starts it again from what its storage kept. */
  restart(node: TestNode): Promise<TestNode>;
  shutdown(): Promise<void>;
}

/** Settings every test region uses unless overridden: 10 ms ticks, 50 ms heartbeats. */
export const fastRegionConfig: Partial<ConsensusConfig> = {
  raft: { tickIntervalMs: 10, proposalTimeoutMs: 3_000 },
  replicationLimits: {
    heartbeatIntervalMs: 50,
    replicationTimeoutMs: 1_000,
    requestTimeoutMs: 1_000,
    cursorRecordIntervalMs: 50,
    backoffBaseMs: 20,
    backoffMaxMs: 200,
  },
};

/** Starts a region of `size` nodes on `network`. */
export async function startRegion(
  network: LocalRegionNetwork,
  id: string,
  size = 1,
  config: Partial<ConsensusConfig> = {},
): Promise<TestRegion> {
  const transport = new LocalTransport();
  const infos = Array.from({ length: size }, (_, k) => ({
    id: `${id}-n${k + 1}`,
    host: `${id}-n${k + 1}.test`,
    port: 80,
    url: `http://${id}-n${k + 1}.test`,
  }));
  const make = (info: (typeof infos)[number], persistence: MemoryPersistence): TestNode => {
    const manager = new ConsensusManager({
      ...fastRegionConfig,
      ...config,
      raft: { ...fastRegionConfig.raft, ...config.raft, persistence },
      replicationLimits: { ...fastRegionConfig.replicationLimits, ...config.replicationLimits },
      nodeId: info.id,
      raftNodes: infos,
      region: id,
      regionClient: network.client(),
    });
    transport.connect(manager.raft);
    network.register(info.url, manager.replication);
    return { id: info.id, url: info.url, manager, persistence };
  };
  const nodes = infos.map((info) => make(info, new MemoryPersistence()));
  await Promise.all(nodes.map((node) => node.manager.initialize()));
  const region: TestRegion = {
    id,
    nodes,
    transport,
    url: infos[0]!.url,
    async leader(timeoutMs = 5_000) {
      return waitFor(
        `a leader in region ${id}`,
        () => {
          const leaders = nodes.filter((node) => node.manager.isLeader());
          return leaders.length === 1 ? leaders[0] : undefined;
        },
        timeoutMs,
      );
    },
    async restart(node) {
      // A crash: what was not fsynced is lost, then the process is gone.
      const survived = node.persistence.crash();
      await node.manager.shutdown();
      transport.disconnect(node.id);
      const info = infos.find((candidate) => candidate.id === node.id)!;
      const restarted = make(info, survived);
      nodes[nodes.indexOf(node)] = restarted;
      await restarted.manager.initialize();
      return restarted;
    },
    async shutdown() {
      await Promise.all(nodes.map((node) => node.manager.shutdown()));
      for (const info of infos) network.unregister(info.url);
    },
  };
  return region;
}

/** Cuts (or restores) every node of `region` off the region network. */
export function setRegionReachable(
  network: LocalRegionNetwork,
  region: TestRegion,
  reachable: boolean,
): void {
  for (const node of region.nodes) network.setReachable(node.url, reachable);
}

/** Polls `probe` until it returns something other than undefined. */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 5_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline)
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** The text value of `key` on `node`, or undefined. */
export function valueOn(node: TestNode, key: string): string | undefined {
  const value = node.manager.get(key);
  return value === undefined ? undefined : new TextDecoder().decode(value);
}
