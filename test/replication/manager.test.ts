// Checks ReplicationManager and ConsensusManager with regions in one process: each region is a
// Raft cluster of ConsensusManagers (LocalTransport, 10 ms ticks), regions talk through a
// LocalRegionNetwork that can delay or cut them. Covers the replicated region configuration,
// each strategy's wait, fail vs fallback, leader changes at either end, cursors recorded
// through Raft, catching up after the log was compacted, conflicts, and status and receipts.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConflictResolutionStrategy } from '../../src/conflict/conflict-resolver.js';
import { NotLeaderError } from '../../src/errors.js';
import { KvSnapshotCapture } from '../../src/kv/snapshot-capture.js';
import { LocalRegionNetwork } from '../../src/replication/local-network.js';
import {
  ReplicationStrategy,
  ReplicationTimeoutError,
  type ReplicationFallback,
} from '../../src/replication/types.js';
import {
  setRegionReachable,
  startRegion,
  valueOn,
  waitFor,
  type TestRegion,
} from './in-process.js';

const started: TestRegion[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((region) => region.shutdown()));
});

async function region(
  network: LocalRegionNetwork,
  id: string,
  size = 1,
  config: Parameters<typeof startRegion>[3] = {},
): Promise<TestRegion> {
  const made = await startRegion(network, id, size, config);
  started.push(made);
  await made.leader();
  return made;
}

/** A lone member of region us that snapshots every 3 entries, with the application's snapshots. */
async function snapshottingRegion(
  network: LocalRegionNetwork,
  appSnapshots: NonNullable<Parameters<typeof startRegion>[3]>['appSnapshots'],
): Promise<TestRegion> {
  return region(network, 'us', 1, {
    raft: { tickIntervalMs: 10, snapshotEveryEntries: 3 },
    appSnapshots,
  });
}

/** Full mesh: every region adds every other. */
async function mesh(...regions: TestRegion[]): Promise<void> {
  for (const from of regions) {
    const leader = await from.leader();
    for (const to of regions) {
      if (to !== from) await leader.manager.addReplicationRegion({ id: to.id, url: to.url });
    }
  }
}

describe('regions are replicated state', () => {
  it('every node of the region agrees on regions and primary; only the leader changes them', async () => {
    const network = new LocalRegionNetwork();
    const us = await region(network, 'us', 3);
    const eu = await region(network, 'eu');
    const leader = await us.leader();
    expect(
      await leader.manager.addReplicationRegion({ id: 'eu', url: eu.url, primary: true }),
    ).toBe(true);
    expect(
      await leader.manager.addReplicationRegion({ id: 'eu', url: eu.url, primary: true }),
    ).toBe(false);
    expect(
      await leader.manager.replication.addRegion({ id: 'ap', host: 'ap.test', port: 7001 }),
    ).toBe(true);
    for (const node of us.nodes) {
      await waitFor(`${node.id} to learn the regions`, () =>
        node.manager.replication.getRegions().length === 2 ? true : undefined,
      );
      expect(node.manager.replication.getRegions()).toEqual([
        { id: 'ap', url: 'http://ap.test:7001', primary: false },
        { id: 'eu', url: eu.url, primary: true },
      ]);
      expect(node.manager.replication.getPrimaryRegion()).toBe('eu');
    }
    const follower = us.nodes.find((node) => node !== leader)!;
    await expect(
      follower.manager.addReplicationRegion({ id: 'sa', url: 'http://sa.test' }),
    ).rejects.toBeInstanceOf(NotLeaderError);
    await expect(leader.manager.addReplicationRegion({ id: 'us', url: us.url })).rejects.toThrow(
      /Cannot add region us: that is this region/,
    );
    await expect(
      leader.manager.addReplicationRegion({ id: 'bad id', url: eu.url }),
    ).rejects.toThrow(TypeError);
    await expect(
      leader.manager.addReplicationRegion({ id: 'x', url: 'ftp://x.test' }),
    ).rejects.toThrow(/must be http/);
    expect(await leader.manager.replication.setPrimaryRegion('ap')).toBe(true);
    expect(await leader.manager.replication.setPrimaryRegion('nowhere')).toBe(false);
    expect(await leader.manager.removeReplicationRegion('ap')).toBe(true);
    expect(await leader.manager.removeReplicationRegion('ap')).toBe(false);
    expect(leader.manager.replication.getPrimaryRegion()).toBe('');
  });
});

describe('strategies', () => {
  it('SYNCHRONOUS waits for every region, SEMI_SYNCHRONOUS for the primary, ASYNCHRONOUS for none', async () => {
    const network = new LocalRegionNetwork();
    const us = await region(network, 'us');
    const eu = await region(network, 'eu');
    const ap = await region(network, 'ap');
    await mesh(us, eu, ap);
    const origin = (await us.leader()).manager;
    await origin.replication.setPrimaryRegion('eu');
    // ap is far away: 150 ms each way; eu is near.
    network.setDelay(ap.url, 150);
    await waitFor('links to connect', () =>
      origin.replication.areAllRegionsConnected() ? true : undefined,
    );

    origin.replication.setReplicationStrategy(ReplicationStrategy.SYNCHRONOUS);
    const sync = await origin.replicateData('sync', 'x');
    expect(sync.acknowledged).toEqual(['ap', 'eu']);
    expect(sync.required).toEqual(['ap', 'eu']);
    expect(sync.waitedMs).toBeGreaterThanOrEqual(250);
    // Acknowledged means committed there: readable at once.
    expect(valueOn(ap.nodes[0]!, 'sync')).toBe('x');
    expect(valueOn(eu.nodes[0]!, 'sync')).toBe('x');

    origin.replication.setReplicationStrategy(ReplicationStrategy.SEMI_SYNCHRONOUS);
    const semi = await origin.replicateData('semi', 'y');
    expect(semi.required).toEqual(['eu']);
    expect(semi.acknowledged).toEqual(['eu']);
    expect(semi.pending).toEqual(['ap']);
    expect(semi.waitedMs).toBeLessThan(250);
    expect(valueOn(eu.nodes[0]!, 'semi')).toBe('y');

    origin.replication.setReplicationStrategy(ReplicationStrategy.ASYNCHRONOUS);
    const async = await origin.replicateData('async', 'z');
    expect(async).toMatchObject({ acknowledged: [], pending: ['ap', 'eu'], fellBack: false });
    for (const target of [eu, ap]) {
      await waitFor(`${target.id} to converge`, () =>
        valueOn(target.nodes[0]!, 'async') === 'z' && valueOn(target.nodes[0]!, 'semi') === 'y'
          ? true
          : undefined,
      );
    }
  });

  it('SEMI_SYNCHRONOUS without a primary waits for the first region to acknowledge', async () => {
    const network = new LocalRegionNetwork();
    const us = await region(network, 'us', 1, {
      replicationStrategy: ReplicationStrategy.SEMI_SYNCHRONOUS,
    });
    const eu = await region(network, 'eu');
    const ap = await region(network, 'ap');
    await mesh(us, eu, ap);
    network.setReachable(ap.url, false);
    const receipt = await (await us.leader()).manager.replicateData('k', 'v');
    expect(receipt).toMatchObject({ acknowledged: ['eu'], pending: ['ap'], fellBack: false });
  });

  for (const fallback of ['fail', 'async'] as ReplicationFallback[]) {
    it(`a sync write whose region is down ${fallback === 'fail' ? 'fails, saying it is committed' : 'falls back to async, visibly'}`, async () => {
      const network = new LocalRegionNetwork();
      const us = await region(network, 'us', 1, {
        replicationStrategy: ReplicationStrategy.SYNCHRONOUS,
        replicationFallback: fallback,
      });
      const eu = await region(network, 'eu');
      await mesh(us, eu);
      const origin = (await us.leader()).manager;
      await origin.replicateData('before', '1');
      network.setReachable(eu.url, false);
      // A heartbeat finds out; a write that begins now knows eu is down.
      await waitFor('eu to be seen down', () =>
        origin.getReplicationStatus()[0]!.connected ? undefined : true,
      );
      // Known down: decided without waiting the timeout. Then a slow (not down) region: the
      // timeout decides.
      const outcomes: unknown[] = [];
      for (const setup of ['down', 'slow'] as const) {
        if (setup === 'slow') {
          network.setReachable(eu.url, true);
          await waitFor('eu back', () =>
            origin.replication.areAllRegionsConnected() ? true : undefined,
          );
          network.setDelay(eu.url, 700);
        }
        const started = performance.now();
        const write = origin.replicateData(`during-${setup}`, '2');
        if (fallback === 'fail') {
          const error = await write.then(
            () => null,
            (reason: unknown) => reason,
          );
          expect(error).toBeInstanceOf(ReplicationTimeoutError);
          const failure = error as ReplicationTimeoutError;
          expect(failure.code).toBe('REGION_UNAVAILABLE');
          expect(failure.message).toMatch(
            /is committed in region us and will still be shipped, but region eu did not acknowledge it \(SYNCHRONOUS\)/,
          );
          expect(failure.receipt).toMatchObject({ pending: ['eu'], fellBack: false });
          outcomes.push(failure.receipt);
        } else {
          const receipt = await write;
          expect(receipt).toMatchObject({ fellBack: true, pending: ['eu'], acknowledged: [] });
          expect(receipt.reason).toMatch(
            setup === 'down' ? /region eu is unreachable/ : /within 1000 ms/,
          );
          outcomes.push(receipt);
        }
        const elapsed = performance.now() - started;
        if (setup === 'down') expect(elapsed).toBeLessThan(900);
        else expect(elapsed).toBeGreaterThanOrEqual(950);
        // Committed here either way.
        expect(valueOn(us.nodes[0]!, `during-${setup}`)).toBe('2');
      }
      network.setDelay(eu.url, 0);
      await waitFor('eu to get every write', () =>
        valueOn(eu.nodes[0]!, 'during-down') === '2' && valueOn(eu.nodes[0]!, 'during-slow') === '2'
          ? true
          : undefined,
      );
      const counters = origin.getReplicationCounters();
      const status = origin.getReplicationStatus()[0]!;
      if (fallback === 'async') {
        expect(counters.fallbacks).toBe(2);
        expect(status.fallbacks).toBe(2);
        expect(counters.syncFailures).toBe(0);
      } else {
        expect(counters.syncFailures).toBe(2);
        expect(status.fallbacks).toBe(0);
      }
      expect(outcomes).toHaveLength(2);
    });
  }
});

describe('leader changes and durable cursors', () => {
  it('a new origin leader resumes from the region position; nothing is lost or applied twice', async () => {
    const network = new LocalRegionNetwork();
    const us = await region(network, 'us', 3);
    const eu = await region(network, 'eu');
    await mesh(us, eu);
    const first = await us.leader();
    for (let k = 0; k < 20; k++) await first.manager.put(`a${k}`, `${k}`);
    // The cursor is recorded through Raft: every node of us knows it.
    const acked = first.manager.kv.lastLocalIndex;
    for (const node of us.nodes) {
      await waitFor(`${node.id} to record eu's cursor`, () =>
        node.manager.regionState.cursor('eu') >= acked ? true : undefined,
      );
    }
    // eu goes away; us writes more; the us leader dies; eu comes back.
    network.setReachable(eu.url, false);
    for (let k = 0; k < 10; k++) await first.manager.put(`b${k}`, `${k}`);
    us.transport.isolate(first.id);
    await first.manager.shutdown();
    const second = await waitFor('a new us leader', () =>
      us.nodes.find((node) => node !== first && node.manager.isLeader()),
    );
    for (let k = 0; k < 5; k++) await second.manager.put(`c${k}`, `${k}`);
    network.setReachable(eu.url, true);
    const euNode = eu.nodes[0]!;
    await waitFor('eu to catch up', () =>
      valueOn(euNode, 'b9') === '9' && valueOn(euNode, 'c4') === '4' ? true : undefined,
    );
    expect(euNode.manager.kv.size).toBe(35);
    const counters = euNode.manager.getReplicationCounters();
    // Every write arrived exactly once as new; re-sent ones (if any) were recognised.
    expect(counters.receivedWrites).toBe(35);
    const status = second.manager.getReplicationStatus()[0]!;
    expect(status).toMatchObject({
      regionId: 'eu',
      live: true,
      connected: true,
      pending: 0,
      lagEntries: 0,
    });
  });

  it('a region that was down gets everything even after the origin compacted its log and restarted', async () => {
    const network = new LocalRegionNetwork();
    const us = await region(network, 'us', 1, {
      raft: { tickIntervalMs: 10, snapshotEveryEntries: 10, compactKeepEntries: 0 },
    });
    const eu = await region(network, 'eu');
    await mesh(us, eu);
    network.setReachable(eu.url, false);
    const origin = await us.leader();
    for (let k = 0; k < 60; k++) await origin.manager.put(`k${k % 40}`, `${k}`);
    const raft = origin.manager.raft.status().raft!;
    expect(raft.firstIndex).toBeGreaterThan(20);
    const status = origin.manager.getReplicationStatus()[0]!;
    expect(status).toMatchObject({ connected: false, pending: 40 });
    expect(status.lagEntries).toBeGreaterThan(50);
    expect(status.lagMs).toBeGreaterThanOrEqual(0);
    expect(status.lastError).toMatch(/unreachable/);
    const restarted = await us.restart(origin);
    await us.leader();
    network.setReachable(eu.url, true);
    await waitFor('eu to get the latest value of every key', () => {
      for (let k = 20; k < 60; k++) {
        if (valueOn(eu.nodes[0]!, `k${k % 40}`) !== `${k}`) return undefined;
      }
      return true;
    });
    expect(eu.nodes[0]!.manager.kv.size).toBe(40);
    expect(restarted.manager.getReplicationStatus()[0]).toMatchObject({ pending: 0, lagMs: 0 });
  });

  it('a sender follows the receiving region to its leader (421 with the leader URL)', async () => {
    const network = new LocalRegionNetwork();
    const us = await region(network, 'us');
    const eu = await region(network, 'eu', 3);
    const euLeader = await eu.leader();
    const follower = eu.nodes.find((node) => node !== euLeader)!;
    // A follower that has not heard from the new leader yet answers 421 without its URL.
    await waitFor(`${follower.id} to know its leader`, () =>
      follower.manager.getLeader() === euLeader.id ? true : undefined,
    );
    const origin = (await us.leader()).manager;
    await origin.addReplicationRegion({ id: 'eu', url: follower.url });
    origin.replication.setReplicationStrategy(ReplicationStrategy.SYNCHRONOUS);
    const receipt = await origin.replicateData('k', 'v');
    expect(receipt.acknowledged).toEqual(['eu']);
    for (const node of eu.nodes) {
      await waitFor(`${node.id} to apply`, () => (valueOn(node, 'k') === 'v' ? true : undefined));
    }
  });

  it('a region with another id or conflict strategy is refused, with the reason in status', async () => {
    const network = new LocalRegionNetwork();
    const us = await region(network, 'us');
    const eu = await region(network, 'eu', 1, {
      conflictResolutionStrategy: ConflictResolutionStrategy.LWW_REGISTER,
    });
    const ap = await region(network, 'ap');
    const origin = (await us.leader()).manager;
    await origin.addReplicationRegion({ id: 'eu', url: eu.url });
    await origin.addReplicationRegion({ id: 'sa', url: ap.url });
    await origin.put('k', 'v');
    const errors = await waitFor('both links to report a mismatch', () => {
      const status = origin.getReplicationStatus();
      return status.every((entry) => entry.lastError !== null)
        ? status.map((entry) => entry.lastError)
        : undefined;
    });
    // Whichever side notices first explains it: here the receiver, which checks every
    // heartbeat and batch.
    expect(errors[0]).toMatch(
      /it resolves conflicts with LATEST_TIMESTAMP, this region with LWW_REGISTER; regions must use the same strategy/,
    );
    expect(errors[1]).toMatch(/belongs to region ap, not sa/);
    expect(eu.nodes[0]!.manager.get('k')).toBeUndefined();
    expect(ap.nodes[0]!.manager.get('k')).toBeUndefined();
  });
});

describe('conflicts between regions', () => {
  for (const strategy of [
    ConflictResolutionStrategy.LATEST_TIMESTAMP,
    ConflictResolutionStrategy.LWW_REGISTER,
    ConflictResolutionStrategy.MULTI_VALUE,
  ]) {
    it(`concurrent writes of one key converge identically under ${strategy}`, async () => {
      const network = new LocalRegionNetwork();
      const config = { conflictResolutionStrategy: strategy };
      const us = await region(network, 'us', 1, config);
      const eu = await region(network, 'eu', 3, config);
      await mesh(us, eu);
      setRegionReachable(network, us, false);
      setRegionReachable(network, eu, false);
      await (await us.leader()).manager.put('k', 'from-us');
      await (await eu.leader()).manager.put('k', 'from-eu');
      setRegionReachable(network, us, true);
      setRegionReachable(network, eu, true);
      const nodes = [...us.nodes, ...eu.nodes];
      const shapes = await waitFor('every node to hold both writes', () => {
        const all = nodes.map((node) => {
          const version = node.manager.getVersion('k');
          return version === undefined
            ? ''
            : JSON.stringify({
                values: version.siblings.map((s) =>
                  new TextDecoder().decode(s.value ?? new Uint8Array()),
                ),
                context: [...version.context],
              });
        });
        return all.every(
          (one) => one === all[0] && one.includes('"eu",1') && one.includes('"us",1'),
        )
          ? all
          : undefined;
      });
      const settled = JSON.parse(shapes[0]!) as { values: string[] };
      expect(settled.values).toHaveLength(
        strategy === ConflictResolutionStrategy.MULTI_VALUE ? 2 : 1,
      );
      const stats = (await us.leader()).manager.getConflictResolutionStats();
      expect(stats.totalConflicts).toBeGreaterThanOrEqual(1);
    });
  }

  it('MULTI_VALUE siblings collapse after a write that saw them, in every region', async () => {
    const network = new LocalRegionNetwork();
    const config = { conflictResolutionStrategy: ConflictResolutionStrategy.MULTI_VALUE };
    const us = await region(network, 'us', 1, config);
    const eu = await region(network, 'eu', 1, config);
    await mesh(us, eu);
    network.setReachable(us.url, false);
    network.setReachable(eu.url, false);
    await us.nodes[0]!.manager.put('k', 'a');
    await eu.nodes[0]!.manager.put('k', 'b');
    network.setReachable(us.url, true);
    network.setReachable(eu.url, true);
    for (const node of [us.nodes[0]!, eu.nodes[0]!]) {
      await waitFor('both siblings', () =>
        node.manager.getVersion('k')?.siblings.length === 2 ? true : undefined,
      );
    }
    await us.nodes[0]!.manager.put('k', 'resolved');
    for (const node of [us.nodes[0]!, eu.nodes[0]!]) {
      await waitFor('one value', () => {
        const siblings = node.manager.getVersion('k')?.siblings ?? [];
        return siblings.length === 1 && valueOn(node, 'k') === 'resolved' ? true : undefined;
      });
    }
  });
});

describe('ConsensusManager', () => {
  it("encodes an application's own capture beside the key-value state; a failed one lets the key-value capture go", async () => {
    const network = new LocalRegionNetwork();
    let appState = '';
    let failCapture = false;
    const encoded: string[] = [];
    const released = vi.spyOn(KvSnapshotCapture.prototype, 'release');
    try {
      const us = await snapshottingRegion(network, {
        take: () => new TextEncoder().encode(appState),
        capture: () => {
          if (failCapture) throw new Error('cannot capture');
          const captured = appState;
          return () => {
            encoded.push(captured);
            return new TextEncoder().encode(captured);
          };
        },
        restore: (data) => {
          appState = new TextDecoder().decode(data);
        },
      });
      const manager = (await us.leader()).manager;
      manager.registerApplyCommandCallback((_command, data) => {
        appState += String(data);
        return appState.length;
      });
      await manager.submitCommand('WRITE', 'a');
      for (let k = 0; k < 5; k++) await manager.put(`k${k}`, 'v');
      // The first is the bootstrap snapshot, taken before any command.
      await waitFor('a snapshot encoded', () => (encoded.length > 1 ? true : undefined));
      expect(encoded[0]).toBe('');
      expect(encoded.slice(1)).toEqual(encoded.slice(1).map(() => 'a'));
      expect(released).not.toHaveBeenCalled();
      failCapture = true;
      const failed = (async () => {
        for (let k = 0; k < 10; k++) await manager.put(`later${k}`, 'v');
      })();
      await expect(failed).rejects.toThrow(/cannot capture/);
      expect(released).toHaveBeenCalledTimes(1);
    } finally {
      released.mockRestore();
    }
  });

  it('aborts both encoders of a snapshot under way when it shuts down', async () => {
    const network = new LocalRegionNetwork();
    const signals: AbortSignal[] = [];
    const encode = vi.spyOn(KvSnapshotCapture.prototype, 'encode');
    try {
      const us = await snapshottingRegion(network, {
        take: () => new Uint8Array(0),
        // After the bootstrap snapshot, an encoder that never ends: the node must stop waiting
        // for it.
        capture: () => (signal) => {
          signals.push(signal);
          return signals.length === 1
            ? new Uint8Array(0)
            : new Promise<Uint8Array>(() => undefined);
        },
        restore: () => undefined,
      });
      const manager = (await us.leader()).manager;
      for (let k = 0; k < 5; k++) await manager.put(`k${k}`, 'v');
      await waitFor('a second snapshot encoding', () => (signals.length > 1 ? true : undefined));
      await manager.shutdown();
      expect(signals[1]!.aborted).toBe(true);
      // The key-value capture was handed the same signal, so it stops with the application's.
      expect(encode.mock.calls.at(-1)![0]).toBe(signals[1]);
    } finally {
      encode.mockRestore();
    }
  });

  it('fails, with nothing left unhandled, when the application encoder throws while the key-value one runs', async () => {
    const network = new LocalRegionNetwork();
    let failEncoding = false;
    const us = await snapshottingRegion(network, {
      take: () => new Uint8Array(0),
      capture: () => () => {
        if (failEncoding) throw new Error('cannot encode');
        return new Uint8Array(0);
      },
      restore: () => undefined,
    });
    const manager = (await us.leader()).manager;
    // More keys than one turn of the key-value encoding writes, so it is still running when
    // the application's encoder throws, and the node's failure aborts it.
    for (let k = 0; k < 600; k++) await manager.put(`k${k}`, 'v');
    failEncoding = true;
    // Until the next snapshot is taken (one may still be encoded from before). Storage in
    // memory never yields to the event loop, so each put does, as I/O would: the encoding
    // takes its turns in between.
    let refused: unknown = null;
    for (let k = 0; refused === null && k < 1_000; k++) {
      await manager.put(`later${k}`, 'v').catch((error: unknown) => {
        refused = error;
      });
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(String(refused)).toMatch(/cannot encode/);
    // The aborted key-value encoding rejects at its next turn; vitest fails the run if that
    // rejection is unhandled.
    await new Promise((resolve) => setTimeout(resolve, 20));
  });

  it("gives the application's callback byte data of its own, not a view of the log's", async () => {
    // ConsensusManager borrows each entry's bytes from RaftConsensus (its key-value state
    // machine copies what it keeps), so it must copy for the application, which may keep them.
    const network = new LocalRegionNetwork();
    const us = await snapshottingRegion(network, {
      take: () => new Uint8Array(0),
      restore: () => undefined,
    });
    const manager = (await us.leader()).manager;
    const received: Uint8Array[] = [];
    manager.registerApplyCommandCallback((_command, data) => {
      if (typeof data !== 'string') received.push(data);
    });
    await manager.put('k', 'value');
    // The key-value state machine reads borrowed bytes too, and must keep a copy of its own.
    const stored = manager.get('k')!;
    expect(new TextDecoder().decode(stored)).toBe('value');
    expect([stored.byteOffset, stored.buffer.byteLength]).toEqual([0, 5]);
    await manager.submitCommand('BYTES', Uint8Array.from([1, 2, 3]));
    expect(received).toHaveLength(1);
    const data = received[0]!;
    expect(Array.from(data)).toEqual([1, 2, 3]);
    expect([data.byteOffset, data.buffer.byteLength]).toEqual([0, 3]);
  });

  it('passes application commands to the callback, reserves its own, and snapshots both states', async () => {
    const network = new LocalRegionNetwork();
    const applied: string[] = [];
    let appState = '';
    const us = await snapshottingRegion(network, {
      take: () => new TextEncoder().encode(appState),
      restore: (data) => {
        appState = new TextDecoder().decode(data);
      },
    });
    const manager = (await us.leader()).manager;
    manager.registerApplyCommandCallback((command, data) => {
      applied.push(`${command}:${String(data)}`);
      appState += String(data);
      return appState.length;
    });
    expect((await manager.submitCommand('WRITE', 'key1:value1')).result).toBe(11);
    expect(() => manager.submitCommand('kv', 'x')).toThrow(/reserved/);
    for (let k = 0; k < 5; k++) await manager.put(`k${k}`, 'v');
    expect(applied).toEqual(['WRITE:key1:value1']);
    appState = 'lost';
    const restarted = await us.restart(us.nodes[0]!);
    await us.leader();
    await waitFor('the state to come back', () =>
      restarted.manager.get('k4') !== undefined && appState === 'key1:value1' ? true : undefined,
    );
    expect(restarted.manager.getLastApplied()).toBeGreaterThanOrEqual(7);
    expect(restarted.manager.getNodeState()).toBe('leader');
    expect(restarted.manager.getLeader()).toBe('us-n1');
    expect(restarted.manager.getCurrentTerm()).toBeGreaterThanOrEqual(2);
    expect(restarted.manager.getCommitIndex()).toBeGreaterThanOrEqual(7);
  });
});
