// Checks replication over real HTTP in one process: the /v1/replication/* routes of a node
// (answers, refusals of bad bodies, strategy and identity checks) through HttpRegionClient, and
// ConsensusManagers serving their own listener (`listen`): a three-member region over HTTP Raft
// whose followers answer 421 with the leader's URL, which a sending region follows.
import { afterAll, describe, expect, it } from 'vitest';
import { ConflictResolutionStrategy } from '../../src/conflict/conflict-resolver.js';
import { ConsensusManager } from '../../src/consensus/consensus-manager.js';
import { KvStateMachine } from '../../src/kv/state-machine.js';
import { encodeShippedWrites, encodeStampedCommand } from '../../src/kv/versioned-codec.js';
import { HttpRegionClient, RegionRequestError } from '../../src/replication/client.js';
import { Secret } from '../../src/security/secret.js';
import { peerRoutePaths } from '../../src/transport/server.js';
import { ReplicationStrategy } from '../../src/replication/types.js';
import { encodeBody } from '../../src/replication/wire.js';
import { call, cleanUp, freePort, startInProcessNode, waitFor } from '../node/helpers.js';

const client = new HttpRegionClient();
const managers: ConsensusManager[] = [];
afterAll(async () => {
  await client.close();
  await Promise.all(managers.map((manager) => manager.shutdown()));
  await cleanUp();
});

const lts = ConflictResolutionStrategy.LATEST_TIMESTAMP;
const cbor = { 'content-type': 'application/cbor' };

async function failure(promise: Promise<unknown>): Promise<RegionRequestError> {
  const error = await promise.then(
    () => null,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(RegionRequestError);
  return error as RegionRequestError;
}

describe('replication routes of a node', () => {
  it('answer heartbeats and batches, and refuse what they cannot take with a clear error', async () => {
    const { node, url } = await startInProcessNode(['--region', 'eu', '--id', 'eu-1']);
    try {
      await waitFor('the node to lead', () => (node.isLeader() ? true : undefined));
      expect(await client.heartbeat(url, { origin: 'us', strategy: lts }, 2_000)).toEqual({
        region: 'eu',
        position: 0,
        strategy: lts,
      });
      // What 'us' would ship: its latest local writes, packed.
      const us = new KvStateMachine({ region: 'us' });
      us.apply(
        1,
        encodeStampedCommand(
          { wallMs: 5, logical: 0, node: 'us' },
          us.encodePut('k', new TextEncoder().encode('v')),
        ),
      );
      const { items, toIndex } = us.localChangesSince(0, 10, 1 << 20);
      const request = {
        origin: 'us',
        fromIndex: 1,
        toIndex,
        strategy: lts,
        items: encodeShippedWrites(items),
      };
      expect(await client.ship(url, request, 2_000)).toMatchObject({ region: 'eu', position: 1 });
      expect((await call('GET', `${url}/v1/kv/k`)).text).toBe('v');
      // Again: a duplicate, answered without a proposal.
      expect(await client.ship(url, request, 2_000)).toMatchObject({ position: 1 });
      // A batch that would skip index 2 gets the position to resume from.
      expect(
        await client.ship(
          url,
          { ...request, fromIndex: 3, toIndex: 3, items: encodeShippedWrites([]) },
          2_000,
        ),
      ).toMatchObject({ position: 1 });

      const mismatch = await failure(
        client.heartbeat(
          url,
          { origin: 'us', strategy: ConflictResolutionStrategy.MULTI_VALUE },
          2_000,
        ),
      );
      expect(mismatch).toMatchObject({ reason: 'status', details: { status: 400 } });
      expect(mismatch.message).toMatch(
        /it resolves conflicts with MULTI_VALUE, this region with LATEST_TIMESTAMP/,
      );
      const loop = await failure(client.heartbeat(url, { origin: 'eu', strategy: lts }, 2_000));
      expect(loop.message).toMatch(/that is this region/);

      const path = `${url}/v1/replication/batch`;
      const asJson = await call('POST', path, {
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
      expect(asJson.status).toBe(415);
      const garbage = await call('POST', path, { headers: cbor, body: Uint8Array.of(0xbf, 0xff) });
      expect(garbage.status).toBe(400);
      expect(garbage.json<{ error: { code: string } }>().error.code).toBe('BAD_REQUEST');
      const badItems = await call('POST', path, {
        headers: cbor,
        body: encodeBody({ ...request, items: Uint8Array.of(1, 0, 0, 0, 9) }),
      });
      expect(badItems.status).toBe(400);
      expect(badItems.json<{ error: { message: string } }>().error.message).toMatch(
        /Cannot decode shipped writes/,
      );
      const huge = await call('POST', path, {
        headers: { ...cbor, 'content-length': String(64 * 1024 * 1024) },
        body: new Uint8Array(16),
      }).catch(() => null);
      // Refused from the declared length (413), or the connection cut for the lie.
      if (huge !== null) expect(huge.status).toBe(413);
      expect((await call('GET', path)).status).toBe(405);
      expect((await call('GET', `${url}/healthz`)).status).toBe(200);
    } finally {
      await node.stop();
    }
  });
});

describe('ConsensusManager with its own listener', () => {
  it('serves HTTP Raft and replication; a follower sends the sender to its leader', async () => {
    const ports = [await freePort(), await freePort(), await freePort(), await freePort()];
    const euNodes = ports
      .slice(0, 3)
      .map((port, k) => ({ id: `eu-${k + 1}`, host: '127.0.0.1', port }));
    const fast = { tickIntervalMs: 20 };
    for (const info of euNodes) {
      managers.push(
        new ConsensusManager({
          nodeId: info.id,
          raftNodes: euNodes,
          region: 'eu',
          listen: true,
          raft: fast,
        }),
      );
    }
    const usManager = new ConsensusManager({
      nodeId: 'us-1',
      raftNodes: [{ id: 'us-1', host: '127.0.0.1', port: ports[3]! }],
      region: 'us',
      listen: true,
      raft: fast,
      replicationStrategy: ReplicationStrategy.SYNCHRONOUS,
    });
    managers.push(usManager);
    await Promise.all(managers.map((manager) => manager.initialize()));
    const euLeader = await waitFor(
      'an eu leader',
      () => managers.slice(0, 3).find((m) => m.isLeader()),
      10_000,
    );
    const follower = managers.slice(0, 3).find((manager) => manager !== euLeader)!;
    await waitFor('the follower to know its leader', () =>
      follower.getLeader() === euLeader.raft.status().id ? true : undefined,
    );
    const followerUrl = `http://127.0.0.1:${euNodes[managers.indexOf(follower)]!.port}`;
    const leaderUrl = `http://127.0.0.1:${euNodes[managers.indexOf(euLeader)]!.port}`;
    const redirected = await failure(
      client.heartbeat(followerUrl, { origin: 'us', strategy: lts }, 2_000),
    );
    expect(redirected).toMatchObject({ reason: 'notLeader', details: { status: 421, leaderUrl } });

    await waitFor('us to lead', () => (usManager.isLeader() ? true : undefined));
    await usManager.addReplicationRegion({ id: 'eu', url: followerUrl });
    const receipt = await usManager.replicateData('k', 'v');
    expect(receipt.acknowledged).toEqual(['eu']);
    for (const manager of managers.slice(0, 3)) {
      await waitFor('every eu member to apply it', () =>
        manager.get('k') === undefined ? undefined : true,
      );
    }
    expect(usManager.getReplicationStatus()[0]).toMatchObject({
      connected: true,
      lastAckedIndex: receipt.index,
    });
  });

  it('with secrets, signs its peer and region requests and refuses unsigned ones', async () => {
    const ports = [await freePort(), await freePort(), await freePort()];
    const regionSecret = Secret.fromText('region-secret-shared-by-eu-and-us');
    const euNodes = ports
      .slice(0, 2)
      .map((port, k) => ({ id: `eu-${k + 1}`, host: '127.0.0.1', port }));
    const secured = euNodes.map(
      (info) =>
        new ConsensusManager({
          nodeId: info.id,
          raftNodes: euNodes,
          region: 'eu',
          listen: true,
          raft: { tickIntervalMs: 20 },
          clusterSecret: Secret.fromText('cluster-secret-of-region-eu-only'),
          regionSecret,
        }),
    );
    const us = new ConsensusManager({
      nodeId: 'us-1',
      raftNodes: [{ id: 'us-1', host: '127.0.0.1', port: ports[2]! }],
      region: 'us',
      listen: true,
      raft: { tickIntervalMs: 20 },
      replicationStrategy: ReplicationStrategy.SYNCHRONOUS,
      clusterSecret: Secret.fromText('cluster-secret-of-region-us-only'),
      regionSecret,
    });
    managers.push(...secured, us);
    await Promise.all([...secured, us].map((manager) => manager.initialize()));
    // Two members elect a leader only if their signed votes pass each other's check.
    const euLeader = await waitFor('an eu leader', () => secured.find((m) => m.isLeader()), 10_000);
    const leaderUrl = `http://127.0.0.1:${euNodes[secured.indexOf(euLeader)]!.port}`;
    const term = euLeader.getCurrentTerm();

    const unsigned = await failure(
      client.heartbeat(leaderUrl, { origin: 'us', strategy: lts }, 2_000),
    );
    expect(unsigned.details).toMatchObject({ status: 401 });
    const vote = await call('POST', leaderUrl + peerRoutePaths.vote, {
      headers: cbor,
      body: new Uint8Array([0xa0]),
    });
    expect(vote.status).toBe(401);
    expect(euLeader.getCurrentTerm()).toBe(term);

    await waitFor('us to lead', () => (us.isLeader() ? true : undefined));
    await us.addReplicationRegion({ id: 'eu', url: leaderUrl });
    const receipt = await us.replicateData('k', 'v');
    expect(receipt.acknowledged).toEqual(['eu']);
    expect(
      () =>
        new ConsensusManager({
          nodeId: 'x',
          raftNodes: [],
          clusterSecret: Secret.fromText('short'),
        }),
    ).toThrow(/at least 16 bytes/);
  });
});
