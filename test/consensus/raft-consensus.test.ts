// RaftConsensus end to end over the in-process transport with real (fast) timers: elections,
// commands committed and applied everywhere, linearizable reads, typed errors, restarts from
// MemoryPersistence, snapshots, membership changes and leadership transfer.
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalTransport } from '../../src/consensus/local-transport.js';
import {
  RaftConsensus,
  decodeCommand,
  encodeCommand,
  nextIndexInSeries,
} from '../../src/consensus/raft-consensus.js';
import {
  BadRequestError,
  NotLeaderError,
  ProposalDroppedError,
  ShutdownError,
  StorageError,
  TimeoutError,
} from '../../src/errors.js';
import type { AppendRequest, Message } from '../../src/raft/types.js';
import { MemoryPersistence } from '../../src/storage/memory.js';
import type { StoredSnapshot } from '../../src/storage/types.js';
import {
  makeNode,
  nodeInfos,
  startCluster,
  stopAll,
  waitForLeader,
  waitUntil,
  type ClusterNode,
} from './cluster.js';

let running: ClusterNode[] = [];
afterEach(async () => {
  await stopAll(running);
  running = [];
});

/** Storage that writes snapshot data beside the log, which a test can hold back. */
class PreparingPersistence extends MemoryPersistence {
  /** The index of every snapshot prepared. */
  readonly prepared: number[] = [];
  /** 'close' when closed; tests add their own events to order them. */
  readonly events: string[] = [];
  private gate: Promise<void> = Promise.resolve();
  private open = (): void => undefined;

  /** Holds the snapshot writes that start from now on until {@link release}. */
  hold(): void {
    this.gate = new Promise((resolve) => (this.open = resolve));
  }

  release(): void {
    this.open();
  }

  async prepareSnapshot(snapshot: StoredSnapshot): Promise<void> {
    this.prepared.push(snapshot.meta.index);
    await this.gate;
  }

  override async close(): Promise<void> {
    this.events.push('close');
    await super.close();
  }
}

async function cluster(count: number, options = {}, storage?: () => MemoryPersistence) {
  const started = await startCluster(count, options, storage);
  running.push(...started.nodes);
  return started;
}

describe('RaftConsensus over the in-process transport', () => {
  it('elects one leader that every node knows', async () => {
    const { nodes } = await cluster(3);
    const leader = await waitForLeader(nodes);
    expect(leader.raft.getCurrentTerm()).toBeGreaterThanOrEqual(1);
    for (const node of nodes) {
      expect(node.raft.getLeader()).toBe(leader.info.id);
      expect(node.raft.status().members.map((member) => member.id)).toEqual(['n1', 'n2', 'n3']);
    }
  });

  it('commits and applies commands on every node, in order, with the apply result', async () => {
    const { nodes } = await cluster(3);
    const leader = await waitForLeader(nodes);
    const first = await leader.raft.submitCommand('SET', 'x=1');
    const second = await leader.raft.submitCommand('SET', new TextEncoder().encode('x=2'));
    expect(second.index).toBe(first.index + 1);
    expect(first.result).toBeUndefined();
    expect(second.result).toBe('1');
    await waitUntil(() => nodes.every((node) => node.raft.getLastApplied() >= second.index));
    for (const node of nodes) {
      expect(node.machine.values.get('x')).toBe('2');
      expect(node.raft.getCommitIndex()).toBeGreaterThanOrEqual(second.index);
    }
    // Many concurrent commands: all applied exactly once, in one order everywhere.
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, k) => leader.raft.submitCommand('SET', `k${k}=${k}`)),
    );
    const last = Math.max(...results.map((result) => result.index));
    await waitUntil(() => nodes.every((node) => node.raft.getLastApplied() >= last));
    for (const node of nodes) {
      expect(node.machine.applied).toEqual(leader.machine.applied);
      expect(node.machine.values.size).toBe(51);
    }
  });

  it("hands the apply callback its own bytes, or with borrowData a view of the entry's", async () => {
    const infos = nodeInfos(1);
    const node = makeNode(new LocalTransport(), infos[0]!, infos);
    running.push(node);
    const seen: { borrowed: boolean; data: Uint8Array }[] = [];
    let borrowed = false;
    const register = (borrowData: boolean): void => {
      borrowed = borrowData;
      node.raft.registerApplyCommandCallback(
        (_command, data) => void seen.push({ borrowed, data: data as Uint8Array }),
        { borrowData },
      );
    };
    register(false);
    await node.raft.initialize();
    await waitForLeader([node]);
    await node.raft.submitCommand('PUT', Uint8Array.from([1, 2]));
    register(true);
    await node.raft.submitCommand('PUT', Uint8Array.from([3, 4]));
    expect(seen.map(({ borrowed, data }) => [borrowed, Array.from(data)])).toEqual([
      [false, [1, 2]],
      [true, [3, 4]],
    ]);
    // A copy has a buffer of its own; a view shares the log slice's (a pool slab here).
    expect(seen[0]!.data.buffer.byteLength).toBe(2);
    expect(seen[1]!.data.buffer.byteLength).toBeGreaterThan(2);
  });

  it('serves linearizable reads on the leader only', async () => {
    const { nodes } = await cluster(3);
    const leader = await waitForLeader(nodes);
    const write = await leader.raft.submitCommand('SET', 'y=1');
    const read = await leader.raft.linearizableRead();
    expect(read.index).toBeGreaterThanOrEqual(write.index);
    const follower = nodes.find((node) => node !== leader)!;
    await expect(follower.raft.linearizableRead()).rejects.toBeInstanceOf(NotLeaderError);
  });

  it('rejects with NotLeaderError naming the leader on a follower', async () => {
    const { nodes } = await cluster(3);
    const leader = await waitForLeader(nodes);
    const follower = nodes.find((node) => node !== leader)!;
    const error = await follower.raft
      .submitCommand('SET', 'x=1')
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(NotLeaderError);
    expect(error).toMatchObject({ code: 'NOT_LEADER', leaderId: leader.info.id });
  });

  it('rejects with TimeoutError when no quorum answers, and ShutdownError after shutdown', async () => {
    const { nodes, transport } = await cluster(3, { proposalTimeoutMs: 200 });
    const leader = await waitForLeader(nodes);
    transport.isolate(leader.info.id);
    const error = await leader.raft.submitCommand('SET', 'x=1').catch((caught: unknown) => caught);
    // Either the command timed out, or CheckQuorum made the leader step down first.
    expect(error instanceof TimeoutError || error instanceof NotLeaderError).toBe(true);
    await leader.raft.shutdown();
    await expect(leader.raft.submitCommand('SET', 'x=1')).rejects.toBeInstanceOf(ShutdownError);
    expect(await leader.raft.initialize()).toBe(false);
  });

  it('rejects with ProposalDroppedError when another leader overwrote the entry', async () => {
    const { nodes, transport } = await cluster(3, { proposalTimeoutMs: 10_000 });
    const old = await waitForLeader(nodes);
    transport.isolate(old.info.id);
    const doomed = old.raft.submitCommand('SET', 'lost=1').catch((caught: unknown) => caught);
    const others = nodes.filter((node) => node !== old);
    const leader = await waitForLeader(others);
    await leader.raft.submitCommand('SET', 'kept=1');
    await leader.raft.submitCommand('SET', 'kept=2');
    transport.heal();
    const error = await doomed;
    expect(error).toBeInstanceOf(ProposalDroppedError);
    await waitUntil(() => old.machine.values.get('kept') === '2');
    expect(old.machine.values.has('lost')).toBe(false);
  });

  it('a command that throws in the state machine rejects with that error, and counts as applied', async () => {
    const { nodes } = await cluster(1);
    const [node] = nodes;
    await waitForLeader(nodes);
    await expect(node!.raft.submitCommand('FAIL', 'boom')).rejects.toThrow(/command failed: boom/);
    const next = await node!.raft.submitCommand('SET', 'a=1');
    expect(node!.machine.values.get('a')).toBe('1');
    expect(next.index).toBeGreaterThan(1);
  });

  it('wires through the seed-style per-type callbacks as well', async () => {
    const infos = nodeInfos(3);
    const rafts = new Map<string, RaftConsensus>();
    const deliver = async <T extends Message>(id: string, message: Message): Promise<T | null> => {
      await new Promise((resolve) => setImmediate(resolve));
      return (await rafts.get(id)!.handleMessage(message)) as T | null;
    };
    for (const info of infos) {
      const raft = new RaftConsensus(info.id, infos, { tickIntervalMs: 10 });
      raft.registerSendRequestVoteCallback((to, request) => deliver(to.id, request));
      raft.registerSendAppendEntriesCallback((to, request) => deliver(to.id, request));
      raft.registerSendHeartbeatCallback((to, request) => deliver(to.id, request));
      raft.registerSendTimeoutNowCallback(async (to, request) => {
        await deliver(to.id, request);
      });
      rafts.set(info.id, raft);
      running.push({ info, raft, machine: null as never, persistence: null as never });
    }
    for (const raft of rafts.values()) await raft.initialize();
    await waitUntil(() => [...rafts.values()].some((raft) => raft.getState() === 'leader'));
    const leader = [...rafts.values()].find((raft) => raft.getState() === 'leader')!;
    const { index } = await leader.submitCommand('SET', 'z=1');
    await waitUntil(() => [...rafts.values()].every((raft) => raft.getLastApplied() >= index));
  });
});

/** Storage that records what RaftConsensus tells it about blocking fsyncs. */
class SyncThreadPersistence extends MemoryPersistence {
  readonly blocking: boolean[] = [];

  setBlockingSync(blocking: boolean): void {
    this.blocking.push(blocking);
  }
}

describe('durability', () => {
  it('has only a leader wait for its fsyncs off the main thread', async () => {
    const transport = new LocalTransport();
    const infos = nodeInfos(3);
    const nodes = infos.map((info) =>
      makeNode(transport, info, infos, {}, new SyncThreadPersistence()),
    );
    running.push(...nodes);
    const told = (node: ClusterNode): boolean[] =>
      (node.persistence as SyncThreadPersistence).blocking;
    for (const node of nodes) {
      await node.raft.initialize();
      expect(told(node)).toEqual([true]);
    }
    const leader = await waitForLeader(nodes);
    const lastTold = (node: ClusterNode): boolean | undefined => told(node).at(-1);
    for (const node of nodes) expect(lastTold(node)).toBe(node !== leader);
    const target = nodes.find((node) => node !== leader)!;
    await leader.raft.transferLeadership(target.info.id);
    await waitUntil(() => lastTold(target) === false, 5_000, 'the new leader told');
    expect(lastTold(leader)).toBe(true);
  });

  it('answers AppendEntries only once the entries are durable', async () => {
    const infos = nodeInfos(2);
    const persistence = new MemoryPersistence({ syncDelayMs: 30 });
    const follower = new RaftConsensus('n2', infos, { tickIntervalMs: 1_000, persistence });
    running.push({ info: infos[1]!, raft: follower, machine: null as never, persistence });
    await follower.initialize();
    const builder = (await import('../../src/raft/batch.js')).EntryBatchBuilder;
    const batch = new builder(1);
    batch.add(1, 0, new TextEncoder().encode('x'));
    const request: AppendRequest = {
      type: 'append',
      from: 'n1',
      to: 'n2',
      term: 1,
      prevLogIndex: 0,
      prevLogTerm: 0,
      entries: batch.finish(),
      commit: 0,
    };
    const started = Date.now();
    const response = await follower.handleAppendEntries(request);
    expect(Date.now() - started).toBeGreaterThanOrEqual(25);
    expect(response).toMatchObject({ type: 'appendResp', success: true, matchIndex: 1 });
    expect(persistence.durable().lastIndex).toBe(1);
    expect(persistence.durable().hardState.term).toBe(1);
  });

  it('a crashed node restarts from storage, taking its membership from there, not from its arguments', async () => {
    const transport = new LocalTransport();
    const infos = nodeInfos(3);
    const nodes = infos.map((info) => makeNode(transport, info, infos));
    running.push(...nodes);
    for (const node of nodes) await node.raft.initialize();
    const leader = await waitForLeader(nodes);
    for (let k = 0; k < 5; k++) await leader.raft.submitCommand('SET', `v=${k}`);
    const victim = nodes.find((node) => node !== leader)!;
    await waitUntil(() => victim.machine.values.get('v') === '4');
    // kill -9: storage keeps what was durable, the process state is gone.
    const revived = victim.persistence.crash();
    await victim.raft.shutdown();
    transport.disconnect(victim.info.id);
    const bogus = [{ id: victim.info.id, host: 'elsewhere', port: 1 }];
    const restarted = makeNode(transport, victim.info, bogus, {}, revived);
    running.push(restarted);
    await restarted.raft.initialize();
    expect(restarted.raft.getMembers().map((member) => member.id)).toEqual(['n1', 'n2', 'n3']);
    await leader.raft.submitCommand('SET', 'v=5');
    await waitUntil(() => restarted.machine.values.get('v') === '5');
    expect(restarted.raft.getCurrentTerm()).toBe(leader.raft.getCurrentTerm());
  });

  it('stops and fails pending work with StorageError when storage fails', async () => {
    const persistence = new MemoryPersistence();
    const failing = Object.assign(Object.create(persistence) as MemoryPersistence, {
      load: () => persistence.load(),
      saveSnapshot: (snapshot: never) => persistence.saveSnapshot(snapshot),
      save: () => Promise.reject(new StorageError('DISK_FULL', 'no space left on device')),
    });
    const raft = new RaftConsensus('n1', nodeInfos(1), {
      tickIntervalMs: 10,
      persistence: failing,
    });
    running.push({ info: nodeInfos(1)[0]!, raft, machine: null as never, persistence });
    await raft.initialize();
    await waitUntil(() => raft.status().raft?.role === 'leader');
    await expect(raft.submitCommand('SET', 'x=1')).rejects.toMatchObject({ code: 'DISK_FULL' });
  });
});

describe('snapshots, membership and transfer', () => {
  it('plans each snapshot on its series, half to one and a half periods after the last', () => {
    // Three voters, every 90 entries: in step they snapshot 30 entries apart.
    expect([0, 30, 60].map((phase) => nextIndexInSeries(0, 90, phase))).toEqual([90, 120, 60]);
    expect([90, 120, 60].map((last, k) => nextIndexInSeries(last, 90, k * 30))).toEqual([
      180, 210, 150,
    ]);
    fc.assert(
      fc.property(
        fc.nat(1_000_000),
        fc.integer({ min: 1, max: 100_000 }),
        fc.nat(99_999),
        (last, every, rawPhase) => {
          const phase = rawPhase % every;
          const next = nextIndexInSeries(last, every, phase);
          const from = last + Math.ceil(every / 2);
          expect(next).toBeGreaterThanOrEqual(from);
          expect(next).toBeLessThan(from + every);
          expect((next - phase) % every).toBe(0);
        },
      ),
    );
  });

  it('has the voters snapshot at different indexes, so they never all pause at once', async () => {
    const options = { snapshotEveryEntries: 30, compactKeepEntries: 0 };
    const { nodes } = await cluster(3, options, () => new PreparingPersistence());
    const leader = await waitForLeader(nodes);
    for (let k = 0; k < 100; k++) await leader.raft.submitCommand('SET', `k${k}=${k}`);
    const prepared = (node: ClusterNode): number[] =>
      (node.persistence as PreparingPersistence).prepared;
    await waitUntil(() => nodes.every((node) => prepared(node).length >= 2), 5_000, 'snapshots');
    // n1, n2, n3 in that order among the voters: series 0, 10 and 20 modulo 30, the first
    // point of each at least 15 entries in. A snapshot is taken after a whole applied batch,
    // so it may land a few entries past its point.
    const planned = [30, 40, 20];
    nodes.forEach((node, k) => {
      expect(prepared(node)[0]).toBeGreaterThanOrEqual(planned[k]!);
      expect(prepared(node)[0]).toBeLessThan(planned[k]! + 10);
    });
    const all = nodes.flatMap(prepared);
    expect(new Set(all).size).toBe(all.length);
  });

  it('a follower that fell behind a compaction catches up from a snapshot', async () => {
    const { nodes, transport } = await cluster(3, {
      snapshotEveryEntries: 5,
      compactKeepEntries: 0,
    });
    const leader = await waitForLeader(nodes);
    const lagging = nodes.find((node) => node !== leader)!;
    transport.isolate(lagging.info.id);
    for (let k = 0; k < 20; k++) await leader.raft.submitCommand('SET', `k${k}=${k}`);
    expect(leader.raft.status().raft!.firstIndex).toBeGreaterThan(
      lagging.raft.getLastApplied() + 1,
    );
    transport.heal();
    await waitUntil(() => lagging.machine.values.get('k19') === '19', 5_000, 'catch-up');
    expect(lagging.raft.status().raft!.snapshotIndex).toBeGreaterThan(0);
    expect([...lagging.machine.values]).toEqual([...leader.machine.values]);
  });

  /** A lone node, not started, that snapshots every 5 entries and keeps no log behind them. */
  function aloneSnapshotting(persistence: MemoryPersistence): ClusterNode {
    const infos = nodeInfos(1);
    const node = makeNode(
      new LocalTransport(),
      infos[0]!,
      infos,
      { snapshotEveryEntries: 5, compactKeepEntries: 0 },
      persistence,
    );
    running.push(node);
    return node;
  }

  /**
   * Starts a lone node on `persistence` with its snapshot writes held, and commits until it has
   * taken its first snapshot, whose write is then held. Call inside a try that releases it:
   * shutting down waits for the write, so a failed check must not leave it held.
   */
  async function aloneWithSnapshotHeld(persistence: PreparingPersistence): Promise<ClusterNode> {
    persistence.hold();
    const node = aloneSnapshotting(persistence);
    await node.raft.initialize();
    await waitForLeader([node]);
    for (let k = 0; k < 6; k++) await node.raft.submitCommand('SET', `k${k}=${k}`);
    expect(persistence.prepared).toHaveLength(1);
    return node;
  }

  it('commits on while a snapshot is written, then records it and compacts the log', async () => {
    const persistence = new PreparingPersistence();
    try {
      const node = await aloneWithSnapshotHeld(persistence);
      const snapshotIndex = persistence.prepared[0]!;
      // The loop goes on: commands commit, and no second snapshot starts meanwhile.
      for (let k = 6; k < 20; k++) await node.raft.submitCommand('SET', `k${k}=${k}`);
      expect(node.machine.values.get('k19')).toBe('19');
      expect(persistence.prepared).toHaveLength(1);
      expect(node.raft.status().raft!.snapshotIndex).toBe(0);
      // Only the membership snapshot of the start is stored.
      expect((await persistence.loadSnapshot())?.meta.index).toBe(0);
      persistence.release();
      await waitUntil(
        () => node.raft.status().raft!.snapshotIndex === snapshotIndex,
        5_000,
        'the snapshot recorded',
      );
      expect((await persistence.loadSnapshot())?.meta.index).toBe(snapshotIndex);
      expect(node.raft.status().raft!.firstIndex).toBe(snapshotIndex + 1);
    } finally {
      persistence.release();
    }
  });

  it('saves a snapshot written while Readys keep coming, without waiting for the loop to drain', async () => {
    // A command arrives during every save, as under a steady load: the loop always finds a new
    // Ready when it has handled one.
    let loaded: ClusterNode | null = null;
    const commands: Promise<unknown>[] = [];
    const persistence = new (class extends PreparingPersistence {
      override async save(...args: Parameters<MemoryPersistence['save']>): Promise<void> {
        if (loaded !== null) {
          commands.push(loaded.raft.submitCommand('SET', `load=${commands.length}`));
          // As long as an fsync: timers run meanwhile.
          await new Promise((resolve) => setTimeout(resolve, 1));
        }
        return super.save(...args);
      }
    })();
    try {
      const node = await aloneWithSnapshotHeld(persistence);
      const snapshotIndex = persistence.prepared[0]!;
      loaded = node;
      await node.raft.submitCommand('SET', 'start=1');
      persistence.release();
      await waitUntil(
        () => node.raft.status().raft!.snapshotIndex >= snapshotIndex,
        2_000,
        'the snapshot saved under load',
      );
      expect(commands.length).toBeGreaterThan(0);
      loaded = null;
      await Promise.all(commands);
    } finally {
      loaded = null;
      persistence.release();
    }
  });

  it('shuts down only once a snapshot being written is done, and closes storage after it', async () => {
    const persistence = new PreparingPersistence();
    const { events } = persistence;
    try {
      const node = await aloneWithSnapshotHeld(persistence);
      const stopped = node.raft.shutdown().then(() => events.push('stopped'));
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(events).toEqual([]);
      events.push('released');
      persistence.release();
      await stopped;
      expect(events).toEqual(['released', 'close', 'stopped']);
      // Written but never saved: storage still holds only the membership snapshot of the start.
      expect((await persistence.loadSnapshot())?.meta.index).toBe(0);
    } finally {
      persistence.release();
    }
  });

  it('stops an encoding under way when it shuts down, without waiting for it', async () => {
    const persistence = new PreparingPersistence();
    const { events } = persistence;
    const node = aloneSnapshotting(persistence);
    const signals: AbortSignal[] = [];
    node.raft.registerSnapshotCallbacks({
      take: () => node.machine.take(),
      // An encoder that never ends: the node must stop waiting for it.
      capture: () => (signal) => {
        signals.push(signal);
        return new Promise<Uint8Array>(() => undefined);
      },
      restore: (data) => node.machine.restore(data),
    });
    await node.raft.initialize();
    await waitForLeader([node]);
    for (let k = 0; k < 6; k++) await node.raft.submitCommand('SET', `k${k}=${k}`);
    expect(signals).toHaveLength(1);
    expect(signals[0]!.aborted).toBe(false);
    await node.raft.shutdown();
    expect(signals[0]!.aborted).toBe(true);
    expect(events).toEqual(['close']);
    expect(persistence.prepared).toEqual([]);
  });

  it('shuts down when asked to while applying the entry a snapshot is due at', async () => {
    const infos = nodeInfos(1);
    const node = makeNode(new LocalTransport(), infos[0]!, infos, {
      snapshotEveryEntries: 1,
      compactKeepEntries: 0,
    });
    running.push(node);
    let stopAt = 0;
    let stopped: Promise<void> | null = null;
    let shutdownReturned = false;
    node.raft.registerApplyCommandCallback((command, data, entry) => {
      if (entry.index === stopAt) {
        stopped = node.raft.shutdown().then(() => {
          shutdownReturned = true;
        });
      }
      return node.machine.apply(command, data, entry.index);
    });
    const signals: AbortSignal[] = [];
    node.raft.registerSnapshotCallbacks({
      take: () => node.machine.take(),
      // Once the node is asked to stop, an encoder that never ends.
      capture: () => (signal) => {
        signals.push(signal);
        return stopped === null ? node.machine.take() : new Promise<Uint8Array>(() => undefined);
      },
      restore: (data) => node.machine.restore(data),
    });
    await node.raft.initialize();
    await waitForLeader([node]);
    await node.raft.submitCommand('SET', 'a=1');
    // Every entry is a snapshot's: the next one's Ready takes one after applying it.
    stopAt = node.raft.status().raft!.lastIndex + 1;
    // Applied before the shutdown rejects what is pending, or rejected: either way.
    await node.raft.submitCommand('SET', 'b=2').catch(() => undefined);
    expect(stopped).not.toBeNull();
    await waitUntil(() => shutdownReturned, 2_000, 'the shutdown to return');
    expect(signals.length).toBeGreaterThan(0);
    expect(signals.every((signal) => signal.aborted)).toBe(true);
  });

  it('applies on while a captured snapshot is encoded, and stores the state at the capture', async () => {
    const persistence = new MemoryPersistence();
    const node = aloneSnapshotting(persistence);
    let finishEncoding = (): void => undefined;
    const encodingHeld = new Promise<void>((resolve) => (finishEncoding = resolve));
    const captures: { index: number; data: Uint8Array }[] = [];
    node.raft.registerSnapshotCallbacks({
      take: () => node.machine.take(),
      capture: () => {
        // The state now; encoded once the test lets it, as a large state would be.
        const capture = { index: node.machine.applied.at(-1) ?? 0, data: node.machine.take() };
        captures.push(capture);
        return async () => {
          await encodingHeld;
          return capture.data;
        };
      },
      restore: (data) => node.machine.restore(data),
    });
    try {
      await node.raft.initialize();
      await waitForLeader([node]);
      for (let k = 0; k < 6; k++) await node.raft.submitCommand('SET', `k${k}=${k}`);
      expect(captures).toHaveLength(1);
      // The loop goes on: commands commit and apply, and no second snapshot starts meanwhile.
      for (let k = 6; k < 20; k++) await node.raft.submitCommand('SET', `k${k}=${k}`);
      expect(node.machine.values.get('k19')).toBe('19');
      expect(captures).toHaveLength(1);
      expect(node.raft.status().raft!.snapshotIndex).toBe(0);
      finishEncoding();
      const { index, data } = captures[0]!;
      await waitUntil(() => node.raft.status().raft!.snapshotIndex >= index, 5_000, 'saved');
      const stored = (await persistence.loadSnapshot())!;
      expect(stored.meta.index).toBe(index);
      // The application's bytes end the snapshot's data: those of the capture, not of later.
      expect(stored.data.subarray(stored.data.length - data.length)).toEqual(data);
    } finally {
      finishEncoding();
    }
  });

  it('fails like a storage failure when a captured snapshot cannot be encoded', async () => {
    const node = aloneSnapshotting(new MemoryPersistence());
    node.raft.registerSnapshotCallbacks({
      take: () => node.machine.take(),
      capture: () => () => Promise.reject(new StorageError('CORRUPT_LOG', 'cannot encode')),
      restore: (data) => node.machine.restore(data),
    });
    await node.raft.initialize();
    await waitForLeader([node]);
    // The snapshot is due after 5 entries; the command that meets the failure, or the next,
    // is refused with it.
    let refused: unknown = null;
    for (let k = 0; k < 10 && refused === null; k++) {
      await node.raft.submitCommand('SET', `k${k}=${k}`).catch((error: unknown) => {
        refused = error;
      });
    }
    expect(refused).toMatchObject({ code: 'CORRUPT_LOG' });
    await expect(node.raft.submitCommand('SET', 'after=1')).rejects.toMatchObject({
      code: 'CORRUPT_LOG',
    });
  });

  it("drops its own snapshot, still being written, for the leader's newer one", async () => {
    const options = { snapshotEveryEntries: 5, compactKeepEntries: 0 };
    const { nodes, transport } = await cluster(3, options, () => new PreparingPersistence());
    const leader = await waitForLeader(nodes);
    const follower = nodes.find((node) => node !== leader)!;
    const storage = follower.persistence as PreparingPersistence;
    storage.hold();
    try {
      for (let k = 0; k < 6; k++) await leader.raft.submitCommand('SET', `k${k}=${k}`);
      await waitUntil(() => storage.prepared.length === 1, 5_000, "the follower's snapshot");
      const own = storage.prepared[0]!;
      // While its snapshot is being written, it misses enough for the leader to send its own.
      transport.isolate(follower.info.id);
      for (let k = 6; k < 30; k++) await leader.raft.submitCommand('SET', `k${k}=${k}`);
      transport.heal();
      await waitUntil(
        () => follower.machine.values.get('k29') === '29',
        5_000,
        "the leader's snapshot installed",
      );
      const installed = follower.raft.status().raft!.snapshotIndex;
      expect(installed).toBeGreaterThan(own);
      storage.release();
      // Its own, older snapshot is dropped; it stays a working member.
      await leader.raft.submitCommand('SET', 'after=1');
      await waitUntil(() => follower.machine.values.get('after') === '1', 5_000, 'a new write');
      expect(follower.raft.status().raft!.snapshotIndex).toBeGreaterThanOrEqual(installed);
      expect(follower.raft.getState()).toBe('follower');
      expect((await storage.loadSnapshot())!.meta.index).toBeGreaterThanOrEqual(installed);
      expect([...follower.machine.values]).toEqual([...leader.machine.values]);
    } finally {
      storage.release();
    }
  });

  it('adds a node that joins with no state, then removes another', async () => {
    const { nodes, transport } = await cluster(3);
    const leader = await waitForLeader(nodes);
    await leader.raft.submitCommand('SET', 'before=1');
    const info = { id: 'n4', host: '127.0.0.1', port: 7004 };
    const joiner = makeNode(transport, info, [], { join: true });
    running.push(joiner);
    await joiner.raft.initialize();
    await leader.raft.addMember(info);
    expect(leader.raft.getMembers().map((member) => [member.id, member.role])).toEqual([
      ['n1', 'voter'],
      ['n2', 'voter'],
      ['n3', 'voter'],
      ['n4', 'voter'],
    ]);
    await leader.raft.submitCommand('SET', 'after=1');
    await waitUntil(() => joiner.machine.values.get('after') === '1');
    expect(joiner.machine.values.get('before')).toBe('1');
    expect(joiner.raft.getMembers().find((member) => member.id === 'n4')?.url).toBe(
      'http://127.0.0.1:7004',
    );
    const removed = nodes.find((node) => node !== leader)!;
    await leader.raft.removeMember(removed.info.id);
    expect(leader.raft.getMembers().map((member) => member.id)).not.toContain(removed.info.id);
    await expect(leader.raft.removeMember('nobody')).rejects.toBeInstanceOf(RangeError);
  });

  it('has a node that joined with no state take its own snapshots', async () => {
    // The default compactKeepEntries keeps the log: the joiner catches up by entries, not by
    // the leader's snapshot, so it must plan its first snapshot itself.
    const options = { snapshotEveryEntries: 20 };
    const { nodes, transport } = await cluster(3, options);
    const leader = await waitForLeader(nodes);
    const info = { id: 'n4', host: '127.0.0.1', port: 7004 };
    const storage = new PreparingPersistence();
    const joiner = makeNode(transport, info, [], { ...options, join: true }, storage);
    running.push(joiner);
    await joiner.raft.initialize();
    await leader.raft.addMember(info);
    for (let k = 0; k < 60; k++) await leader.raft.submitCommand('SET', `k${k}=${k}`);
    await waitUntil(() => storage.prepared.length >= 2, 5_000, "the joiner's snapshots");
    expect(joiner.raft.status().raft!.snapshotIndex).toBeGreaterThan(0);
  });

  it('makes a new voter a learner first and promotes it once it has caught up (auto)', async () => {
    const { nodes, transport } = await cluster(3, { promotion: { timeoutMs: 400 } });
    const leader = await waitForLeader(nodes);
    for (let k = 0; k < 30; k++) await leader.raft.submitCommand('SET', `k${k}=${k}`);
    const info = { id: 'n4', host: '127.0.0.1', port: 7004 };
    const joiner = makeNode(transport, info, [], { join: true });
    running.push(joiner);
    await joiner.raft.initialize();
    // Cut off, it cannot catch up: the addition stops at the learner stage, and a quorum of
    // the three voters keeps committing meanwhile.
    transport.isolate('n4');
    const first = leader.raft.addMember(info);
    // A retry while the first is under way joins it rather than starting a second promotion.
    const retry = leader.raft.addMember(info);
    const outcomes = await Promise.allSettled([first, retry]);
    const stuck = outcomes[0].status === 'rejected' ? (outcomes[0].reason as unknown) : null;
    expect(stuck).toBeInstanceOf(TimeoutError);
    expect(outcomes[1].status === 'rejected' && outcomes[1].reason).toBe(stuck);
    expect((stuck as Error).message).toMatch(/n4 was added as a learner but did not catch up/);
    const roles = () => leader.raft.getMembers().map((member) => [member.id, member.role]);
    expect(roles()).toContainEqual(['n4', 'learner']);
    await leader.raft.submitCommand('SET', 'during=1');

    transport.heal();
    await leader.raft.addMember(info);
    expect(roles()).toContainEqual(['n4', 'voter']);
    // Promoted only once it held the log: it has everything written before.
    await waitUntil(() => joiner.machine.values.get('during') === '1');
    expect(joiner.machine.values.get('k29')).toBe('29');
  });

  it('makes a new voter vote at once with the immediate rule', async () => {
    const { nodes, transport } = await cluster(3, { promotion: { mode: 'immediate' } });
    const leader = await waitForLeader(nodes);
    const info = { id: 'n4', host: '127.0.0.1', port: 7004 };
    const joiner = makeNode(transport, info, [], { join: true });
    running.push(joiner);
    await joiner.raft.initialize();
    transport.isolate('n4');
    await leader.raft.addMember(info);
    expect(leader.raft.getMembers().map((member) => member.role)).toEqual([
      'voter',
      'voter',
      'voter',
      'voter',
    ]);
    const alone = [{ id: 'x', host: '127.0.0.1', port: 7009 }];
    expect(() => new RaftConsensus('x', alone, { promotion: { mode: 'later' as 'auto' } })).toThrow(
      /Invalid promotion.mode: later/,
    );
  });

  it('derives a member url from host and port when none is given, IPv6 in brackets', async () => {
    const infos = [
      { id: 'n1', host: '::1', port: 7001 },
      { id: 'n2', host: '127.0.0.1', port: 7002 },
      { id: 'n3', host: 'n3.example.com', port: 7003, url: 'https://n3.example.com:7443' },
    ];
    const raft = new RaftConsensus('n1', infos, { tickIntervalMs: 1_000 });
    running.push({ info: infos[0]!, raft, machine: null as never, persistence: null as never });
    await raft.initialize();
    expect(raft.getMembers().map((member) => [member.id, member.url])).toEqual([
      ['n1', 'http://[::1]:7001'],
      ['n2', 'http://127.0.0.1:7002'],
      ['n3', 'https://n3.example.com:7443'],
    ]);
  });

  it('transfers leadership to the chosen node', async () => {
    const { nodes } = await cluster(3);
    const leader = await waitForLeader(nodes);
    const target = nodes.find((node) => node !== leader)!;
    await leader.raft.transferLeadership(target.info.id);
    expect(target.raft.getState()).toBe('leader');
    const { index } = await target.raft.submitCommand('SET', 'moved=1');
    await waitUntil(() => nodes.every((node) => node.raft.getLastApplied() >= index));
  });
});

describe('command encoding', () => {
  it('round-trips any command and data (property)', () => {
    fc.assert(
      fc.property(fc.string(), fc.oneof(fc.string(), fc.uint8Array()), (command, data) => {
        const decoded = decodeCommand(encodeCommand(command, data));
        expect(decoded.command).toBe(command);
        expect(decoded.data).toEqual(data);
      }),
    );
  });

  it('decodes byte data as a copy, or as a view of the payload when borrowing', () => {
    const payload = encodeCommand('PUT', Uint8Array.from([4, 5, 6]));
    const copied = decodeCommand(payload).data as Uint8Array;
    const borrowed = decodeCommand(payload, true).data as Uint8Array;
    expect(Array.from(copied)).toEqual([4, 5, 6]);
    expect(Array.from(borrowed)).toEqual([4, 5, 6]);
    expect(copied.buffer).not.toBe(payload.buffer);
    expect(borrowed.buffer).toBe(payload.buffer);
    expect(borrowed.byteOffset).toBe(payload.byteOffset + payload.length - 3);
  });

  it('converts each name exactly in any sequence of names (the last-name caches)', () => {
    const utf8 = new TextEncoder();
    const text = new TextDecoder();
    const names = fc.oneof(
      fc.constantFrom('kv', 'x', '', '\uD800', '\uFFFD', 'é'),
      fc.string({ unit: 'binary', maxLength: 4 }),
    );
    fc.assert(
      fc.property(fc.array(names, { maxLength: 12 }), (sequence) => {
        for (const name of sequence) {
          // What a name becomes through UTF-8 (a lone surrogate becomes U+FFFD).
          const expected = text.decode(utf8.encode(name));
          expect(decodeCommand(encodeCommand(name, 'd')).command).toBe(expected);
        }
      }),
    );
  });

  it('rejects garbage with BadRequestError only', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
        try {
          decodeCommand(bytes);
        } catch (error) {
          expect(error).toBeInstanceOf(BadRequestError);
        }
      }),
    );
    expect(() => decodeCommand(new Uint8Array([9, 0, 0]))).toThrow(BadRequestError);
  });
});
