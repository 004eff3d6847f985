// Checks a real three-node cluster of `node dist/node/main.js` processes on loopback: any node
// takes any request (followers forward to the leader), membership changes with --join, leader
// transfer, restart from the data dir, kill -9 failover (measured), and graceful stop with
// requests in flight. Steps share one cluster and run in order.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  call,
  cleanUp,
  startCluster,
  statusOf,
  waitFor,
  type Cluster,
  type NodeProcess,
} from './helpers.js';

const json = { 'content-type': 'application/json' };

describe('a three-node cluster', () => {
  let cluster: Cluster;
  let n4: NodeProcess;

  beforeAll(async () => {
    // Snapshots every 20 entries, keeping 20 behind: a node that misses more needs one.
    cluster = await startCluster(3, { joiners: 1, args: ['--snapshot-entries', '20'] });
    n4 = cluster.byId('n4');
  }, 30_000);

  afterAll(cleanUp);

  const members = (): NodeProcess[] => cluster.nodes.filter((node) => node.id !== 'n4');

  async function readEverywhere(nodes: NodeProcess[], key: string, value: string): Promise<void> {
    for (const node of nodes) {
      const read = await call('GET', `${node.url}/v1/kv/${key}`);
      expect(read.status, `${node.id} GET ${key}: ${read.text}`).toBe(200);
      expect(read.text, `${node.id} GET ${key}`).toBe(value);
    }
  }

  it('takes a write on any node and reads it linearizably from every node', async () => {
    const leader = await cluster.leader();
    for (const node of members()) {
      const put = await call('PUT', `${node.url}/v1/kv/from-${node.id}`, { body: node.id });
      expect(put.status, put.text).toBe(200);
      expect(put.headers.get('x-phantomdb-forwarded-to')).toBe(node === leader ? null : leader.id);
      // Linearizable: read at once from every node, the followers included.
      await readEverywhere(members(), `from-${node.id}`, node.id);
    }
    const refused = await call('PUT', `${members()[0]!.url}/v1/kv/from-n1?prevValue=nope`, {
      body: 'x',
    });
    expect(refused.status).toBe(412);
    expect(refused.json()).toMatchObject({
      error: { code: 'PRECONDITION_FAILED' },
      current: { value: 'n1' },
    });
    const deleted = await call('DELETE', `${members()[2]!.url}/v1/kv/from-n3`);
    expect(deleted.status).toBe(200);
    for (const node of members()) {
      expect((await call('GET', `${node.url}/v1/kv/from-n3`)).status).toBe(404);
    }
  });

  it('adds a --join node as a learner, promotes it to voter, and it catches up', async () => {
    const before = await statusOf(n4.url);
    expect(before.members).toEqual([]);
    const via = members()[0]!;
    const added = await call('POST', `${via.url}/v1/members`, {
      body: JSON.stringify({ id: 'n4', url: n4.url, learner: true }),
      headers: json,
    });
    expect(added.status, added.text).toBe(200);
    expect(added.json<{ members: unknown[] }>().members).toContainEqual({
      id: 'n4',
      url: n4.url,
      role: 'learner',
    });
    // It catches up from the leader: data written before it joined is there.
    await waitFor('n4 to catch up', async () => {
      const read = await call('GET', `${n4.url}/v1/kv/from-n1?consistency=stale`);
      return read.status === 200 && read.text === 'n1' ? true : undefined;
    });

    const promoted = await call('POST', `${n4.url}/v1/members`, {
      body: JSON.stringify({ id: 'n4', url: n4.url }),
      headers: json,
    });
    expect(promoted.status, promoted.text).toBe(200);
    for (const node of cluster.nodes) {
      await waitFor(`${node.id} to list n4 as a voter`, async () => {
        const status = await statusOf(node.url);
        return status.members.some((m) => m.id === 'n4' && m.role === 'voter') ? true : undefined;
      });
    }
    const put = await call('PUT', `${n4.url}/v1/kv/via-n4`, { body: 'joined' });
    expect(put.status, put.text).toBe(200);
    await readEverywhere(cluster.nodes, 'via-n4', 'joined');

    const again = await call('POST', `${via.url}/v1/members`, {
      body: JSON.stringify({ id: 'n4', url: n4.url }),
      headers: json,
    });
    expect(again.status).toBe(409);
  });

  it('removes a member, even the leader, which hands leadership over first', async () => {
    const moved = await call('POST', `${members()[0]!.url}/v1/leader/transfer`, {
      body: JSON.stringify({ to: 'n4' }),
      headers: json,
    });
    expect(moved.status, moved.text).toBe(200);
    expect((await cluster.leader()).id).toBe('n4');
    const removed = await call('DELETE', `${members()[1]!.url}/v1/members/n4`);
    expect(removed.status, removed.text).toBe(200);
    expect(removed.json<{ members: { id: string }[] }>().members.map((m) => m.id)).toEqual([
      'n1',
      'n2',
      'n3',
    ]);
    // The next leader removed n4, so no election timeout passed without one.
    const next = await cluster.leader();
    expect(next.id).not.toBe('n4');
    const handOver = n4
      .logLines()
      .find((line) => line['msg'] === 'Transferring leadership to ' + next.id);
    expect(handOver, n4.log()).toBeDefined();
    await n4.kill();
    const put = await call('PUT', `${members()[0]!.url}/v1/kv/after-removal`, { body: 'ok' });
    expect(put.status).toBe(200);
  });

  it('transfers leadership to a named node, asked through another follower', async () => {
    const leader = await cluster.leader();
    const [target, via] = members().filter((node) => node !== leader) as [NodeProcess, NodeProcess];
    const moved = await call('POST', `${via.url}/v1/leader/transfer`, {
      body: JSON.stringify({ to: target.id }),
      headers: json,
    });
    expect(moved.status, moved.text).toBe(200);
    expect(moved.json()).toMatchObject({ leader: target.id });
    expect((await cluster.leader()).id).toBe(target.id);
    const put = await call('PUT', `${leader.url}/v1/kv/after-transfer`, { body: 'yes' });
    expect(put.status).toBe(200);
    expect(put.headers.get('x-phantomdb-forwarded-to')).toBe(target.id);
  });

  it('restarts a follower from its data dir, whatever its flags say; it catches up by snapshot', async () => {
    const leader = await cluster.leader();
    const follower = members().find((node) => node !== leader)!;
    follower.signal('SIGTERM');
    expect(await follower.exit).toEqual({ code: 0, signal: null });
    const put = await call('PUT', `${leader.url}/v1/kv/while-down`, { body: 'missed' });
    expect(put.status).toBe(200);
    // More than the leader keeps behind its snapshot: catching up takes a snapshot.
    const puts = await Promise.all(
      Array.from({ length: 50 }, (_, k) =>
        call('PUT', `${leader.url}/v1/kv/missed-${k}`, { body: `m${k}` }),
      ),
    );
    expect(puts.every((answer) => answer.status === 200)).toBe(true);

    // Without --peers it would bootstrap a one-node cluster; its data dir says otherwise.
    const peersAt = follower.args.indexOf('--peers');
    follower.args.splice(peersAt, 2);
    follower.start();
    await follower.ready();
    const status = await statusOf(follower.url);
    expect(status.members.map((m) => m.id)).toEqual(['n1', 'n2', 'n3']);
    await waitFor(`${follower.id} to catch up`, async () => {
      const read = await call('GET', `${follower.url}/v1/kv/while-down?consistency=stale`);
      return read.text === 'missed' ? true : undefined;
    });
    expect((await call('GET', `${follower.url}/v1/kv/from-n1`)).text).toBe('n1');
    expect((await call('GET', `${follower.url}/v1/kv/missed-49?consistency=stale`)).text).toBe(
      'm49',
    );
    expect((await statusOf(follower.url)).leader).toBe(leader.id);
    const installs = follower
      .logLines()
      .filter((line) => line['msg'] === "Installing the leader's snapshot");
    expect(installs.length).toBeGreaterThan(0);
  });

  it('elects a new leader after kill -9 of the leader; the old one catches up', async () => {
    const leader = await cluster.leader();
    const others = members().filter((node) => node !== leader);
    await leader.kill();
    const killedAt = performance.now();
    let attempt = 0;
    const failoverMs = await waitFor(
      'a write acknowledged after the leader was killed',
      async () => {
        const node = others[attempt++ % others.length]!;
        const put = await call('PUT', `${node.url}/v1/kv/after-failover`, {
          body: 'new-leader',
          timeoutMs: 3_000,
        });
        return put.status === 200 ? performance.now() - killedAt : undefined;
      },
      20_000,
      10,
    );
    console.log(
      `failover: first write acknowledged ${Math.round(failoverMs)} ms after kill -9 of the leader`,
    );
    // The target is 2 s; the bound leaves room for a loaded machine.
    expect(failoverMs).toBeLessThan(5_000);

    leader.start();
    await leader.ready();
    await waitFor(`${leader.id} to catch up after restart`, async () => {
      const read = await call('GET', `${leader.url}/v1/kv/after-failover?consistency=stale`);
      return read.text === 'new-leader' ? true : undefined;
    });
    await readEverywhere(members(), 'after-failover', 'new-leader');
  });

  it('waits for requests in flight on SIGTERM, and exits at once on a second one', async () => {
    const leader = await cluster.leader();
    for (const node of members()) if (node !== leader) await node.kill();
    // No quorum: this write stays in flight until the request timeout (5 s).
    const pending = call('PUT', `${leader.url}/v1/kv/in-flight`, {
      body: 'x',
      timeoutMs: 20_000,
    }).catch((error: unknown) => error);
    await new Promise((resolve) => setTimeout(resolve, 200));
    leader.signal('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(leader.child, 'the node should still wait for its request').not.toBeNull();
    leader.signal('SIGTERM');
    expect(await leader.exit).toEqual({ code: 143, signal: null });
    const messages = leader.logLines().map((line) => String(line['msg']));
    expect(messages.some((message) => message.includes('SIGTERM again'))).toBe(true);
    await pending;
  });
});
