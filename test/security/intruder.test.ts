// A 3-node cluster with a cluster secret and client tokens (real processes) under a write load,
// attacked by an outsider: a node with the wrong secret that campaigns, and hand-made votes
// with a huge term, appends, timeout-now, snapshot chunks, forged forwards, join attempts and
// region batches (unsigned, wrongly signed, forged signatures). Checks that every one gets 401
// (403 for a token without the scope), writes keep being acked, the term does not move and
// nothing joins; then that a read-only token cannot change anything (403).
import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { emptyBatch } from '../../src/raft/batch.js';
import type { Message } from '../../src/raft/types.js';
import { encodeBody, replicationRoutePaths } from '../../src/replication/wire.js';
import { RequestSigner } from '../../src/security/request-signer.js';
import { Secret } from '../../src/security/secret.js';
import { encodeMessage, encodeSnapshotChunk } from '../../src/transport/codec.js';
import {
  SecureCluster,
  acquireMachineLock,
  bearer,
  call,
  clusterSecret,
  freePort,
  securityTempDir,
  sleep,
  tearDownAfterAll,
  tokens,
  writeSecretFile,
  writeTokensFile,
  wrongSecret,
  type Answer,
  type Status,
} from './support.js';

let release: (() => Promise<void>) | undefined;
let cluster: SecureCluster | undefined;
let dir = '';

beforeAll(async () => {
  release = await acquireMachineLock();
  dir = await securityTempDir('intruder-files');
  const secretFile = await writeSecretFile(dir, 'secret', clusterSecret);
  const tokensFile = await writeTokensFile(dir);
  cluster = await SecureCluster.start({
    size: 3,
    label: 'intruder',
    // A longer election timeout than the default: a 2-core machine running a cluster, a load
    // and an attacker must not see a legitimate election that would blur what is measured.
    args: [
      '--cluster-secret-file',
      secretFile,
      '--tokens-file',
      tokensFile,
      '--election-ticks',
      '20',
    ],
  });
}, 60_000);

tearDownAfterAll(() => ({ release, clusters: [cluster], dir }));

function theCluster(): SecureCluster {
  if (cluster === undefined) throw new Error('the cluster did not start');
  return cluster;
}

/** Writers putting fresh keys through every node, recording when each ack came. */
function startWriteLoad(target: SecureCluster, writers: number) {
  const acks: number[] = [];
  const failures: string[] = [];
  let stopped = false;
  const loops = Array.from({ length: writers }, async (_, w) => {
    for (let n = 0; !stopped; n++) {
      const id = `n${((w + n) % 3) + 1}`;
      try {
        const answer = await target.http(id, 'PUT', `/v1/kv/load-${w}-${n}`, {
          headers: bearer('readwrite'),
          body: `value-${w}-${n}`,
        });
        if (answer.status === 200) acks.push(Date.now());
        else failures.push(`${answer.status} ${answer.text.slice(0, 200)}`);
      } catch (error) {
        failures.push(String(error));
      }
    }
  });
  return {
    acks,
    failures,
    stop: async () => {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

describe('an outsider against a cluster with a secret', () => {
  it('gets 401 for every vote, append, forward and join, and disrupts nothing', async () => {
    const target = theCluster();
    const leader = await target.waitForLeader();
    const termBefore = leader.term;
    const members = target.nodes.map((node) => node.id);

    // The intruder node: the right addresses, the wrong secret, a short election timeout.
    const intruderPort = await freePort();
    const wrongSecretFile = await writeSecretFile(dir, 'wrong-secret', wrongSecret);
    const peers = target.nodes.map((node) => `${node.id}=${node.baseUrl}`);
    const intruder = target.add('n4', intruderPort, [
      '--peers',
      [...peers, `n4=http://127.0.0.1:${intruderPort}`].join(','),
      '--cluster-secret-file',
      wrongSecretFile,
      '--election-ticks',
      '3',
      '--tick-ms',
      '50',
    ]);

    const load = startWriteLoad(target, 3);
    await sleep(500);
    await intruder.start();
    const attackStarted = Date.now();
    const answers: { what: string; answer: Answer }[] = [];
    const wrongSigner = new RequestSigner(Secret.fromText(wrongSecret), 'peer');
    const hugeTerm = termBefore + 1_000_000;

    const raw = async (
      what: string,
      id: string,
      path: string,
      body: Uint8Array | string,
      headers: Record<string, string>,
      method: 'POST' | 'PUT' = 'POST',
    ): Promise<void> => {
      const answer = await call(`${target.node(id).baseUrl}${path}`, { method, headers, body });
      answers.push({ what: `${what} -> ${id}`, answer });
    };
    // CBOR bodies; errors asked for as JSON (the region routes answer in the request's format).
    const cbor = { 'content-type': 'application/cbor', accept: 'application/json' };
    const forged = (): Record<string, string> => ({
      'x-phantomdb-signature': `v1 ts=${Date.now()} nonce=${randomBytes(16).toString('base64url')} sig=${randomBytes(32).toString('base64url')}`,
    });
    const wronglySigned = (path: string, body: Uint8Array, headers: Record<string, string>) => ({
      ...headers,
      'x-phantomdb-signature': wrongSigner.sign({ method: 'POST', path, headers, body }).header,
    });

    let bursts = 0;
    while (Date.now() - attackStarted < 5_000) {
      bursts++;
      for (const id of members) {
        const vote: Message = {
          type: 'vote',
          from: 'n4',
          to: id,
          term: hugeTerm + bursts,
          preVote: false,
          lastLogIndex: 1e9,
          lastLogTerm: hugeTerm,
          transfer: true,
        };
        const append: Message = {
          type: 'append',
          from: 'n4',
          to: id,
          term: hugeTerm + bursts,
          prevLogIndex: 0,
          prevLogTerm: 0,
          entries: emptyBatch(1),
          commit: 1e6,
        };
        const timeoutNow: Message = { type: 'timeoutNow', from: 'n4', to: id, term: hugeTerm };
        const voteBytes = encodeMessage(vote);
        const appendBytes = encodeMessage(append);
        const chunk = encodeSnapshotChunk({
          from: 'n4',
          transferId: bursts,
          offset: 0,
          total: 3,
          done: true,
          data: new Uint8Array([1, 2, 3]),
          request: {
            type: 'snapshot',
            from: 'n4',
            to: id,
            term: hugeTerm,
            snapshot: {
              index: 1e6,
              term: hugeTerm,
              conf: { voters: ['n4'], votersOutgoing: [], learners: [] },
            },
          },
          crc32: 0,
        });
        await Promise.all([
          raw('unsigned vote', id, '/raft/vote', voteBytes, cbor),
          raw(
            'vote signed with the wrong secret',
            id,
            '/raft/vote',
            voteBytes,
            wronglySigned('/raft/vote', voteBytes, cbor),
          ),
          raw('vote with a forged signature', id, '/raft/vote', voteBytes, {
            ...cbor,
            ...forged(),
          }),
          raw('unsigned append', id, '/raft/append', appendBytes, cbor),
          raw(
            'append signed with the wrong secret',
            id,
            '/raft/append',
            appendBytes,
            wronglySigned('/raft/append', appendBytes, cbor),
          ),
          raw('unsigned timeout-now', id, '/raft/timeout-now', encodeMessage(timeoutNow), cbor),
          raw('unsigned snapshot', id, '/raft/snapshot', chunk, cbor),
          raw(
            'forged forward of a write',
            id,
            `/v1/kv/intruder-${bursts}`,
            'x',
            {
              ...bearer('readwrite'),
              'x-phantomdb-forwarded-by': members.find((m) => m !== id)!,
              'x-phantomdb-target': id,
            },
            'PUT',
          ),
          raw(
            'forward with a forged signature',
            id,
            `/v1/kv/intruder-${bursts}`,
            'x',
            {
              ...bearer('readwrite'),
              ...forged(),
              'x-phantomdb-forwarded-by': members.find((m) => m !== id)!,
              'x-phantomdb-target': id,
            },
            'PUT',
          ),
          raw(
            'join without a token',
            id,
            '/v1/members',
            JSON.stringify({ id: 'n4', url: `http://127.0.0.1:${intruderPort}` }),
            {
              'content-type': 'application/json',
            },
          ),
          raw(
            'join with a readwrite token',
            id,
            '/v1/members',
            JSON.stringify({ id: 'n4', url: `http://127.0.0.1:${intruderPort}` }),
            {
              'content-type': 'application/json',
              ...bearer('readwrite'),
            },
          ),
          raw(
            'join forwarded by a forged member',
            id,
            '/v1/members',
            JSON.stringify({ id: 'n4', url: `http://127.0.0.1:${intruderPort}` }),
            {
              'content-type': 'application/json',
              ...bearer('admin'),
              'x-phantomdb-forwarded-by': 'n4',
              'x-phantomdb-target': id,
            },
          ),
          raw(
            'unsigned region heartbeat',
            id,
            replicationRoutePaths.heartbeat,
            encodeBody({ origin: 'evil', strategy: 'LATEST_TIMESTAMP' }),
            cbor,
          ),
          raw('unsigned region batch', id, replicationRoutePaths.batch, randomBytes(64), cbor),
        ]);
      }
      await sleep(100);
    }
    const attackEnded = Date.now();
    await sleep(500);
    await load.stop();

    // Every attempt was refused as unauthenticated (403: a valid token without the scope).
    const unexpected = answers.filter(({ what, answer }) =>
      what.startsWith('join with a readwrite token')
        ? answer.status !== 403
        : answer.status !== 401,
    );
    expect(
      unexpected.map(({ what, answer }) => `${what}: ${answer.status} ${answer.text}`),
    ).toEqual([]);
    for (const { answer } of answers) {
      expect(JSON.parse(answer.text)).toMatchObject({
        error: { code: answer.status === 401 ? 'UNAUTHORIZED' : 'FORBIDDEN' },
      });
    }

    // Writes kept being acknowledged while it lasted, without a stall.
    const during = load.acks.filter((at) => at >= attackStarted && at <= attackEnded);
    const gaps = during.slice(1).map((at, k) => at - during[k]!);
    const longestGapMs = Math.max(0, ...gaps);
    console.log(
      `INTRUDER: ${answers.length} forged requests in ${bursts} bursts over ${attackEnded - attackStarted} ms, all refused; ${during.length} writes acked meanwhile, longest gap ${longestGapMs} ms; ${load.failures.length} writes failed`,
    );
    expect(load.failures).toEqual([]);
    expect(during.length).toBeGreaterThan(50);
    expect(longestGapMs).toBeLessThan(1_000);

    // The term did not move, nobody joined, no forged write landed.
    const after = (await Promise.all(members.map((id) => target.status(id)))) as Status[];
    for (const status of after) {
      expect(status.term).toBe(termBefore);
      expect(status.members.map((member) => member.id).sort()).toEqual(members);
    }
    const forgedKey = await target.http('n1', 'GET', '/v1/kv/intruder-1', {
      headers: bearer('read'),
    });
    expect(forgedKey.status).toBe(404);
    // The intruder's own Raft traffic was refused too: its log says so.
    const intruderLog = await target.log('n4');
    expect(intruderLog).toMatch(/401 UNAUTHORIZED/);
    await intruder.kill();
  }, 60_000);

  it('refuses writes and admin requests of a read-only token (403), and nothing changes', async () => {
    const target = theCluster();
    const leader = await target.waitForLeader(['n1', 'n2', 'n3']);
    const follower = ['n1', 'n2', 'n3'].find((id) => id !== leader.id)!;
    const put = await target.http(leader.id, 'PUT', '/v1/kv/guarded', {
      headers: bearer('readwrite'),
      body: 'original',
    });
    expect(put.status).toBe(200);
    await sleep(300);
    const before = (await target.status(leader.id))!;

    const attempts: [string, string, Parameters<SecureCluster['http']>[1], string, string?][] = [];
    for (const id of [leader.id, follower]) {
      attempts.push(
        [id, 'write', 'PUT', '/v1/kv/guarded', 'changed'],
        [id, 'create', 'PUT', '/v1/kv/new-key?prevExist=false', 'x'],
        [id, 'delete', 'DELETE', '/v1/kv/guarded'],
        [
          id,
          'add member',
          'POST',
          '/v1/members',
          JSON.stringify({ id: 'n9', url: 'http://127.0.0.1:1' }),
        ],
        [id, 'remove member', 'DELETE', '/v1/members/n3'],
        [id, 'transfer', 'POST', '/v1/leader/transfer', '{}'],
        [
          id,
          'add region',
          'POST',
          '/v1/regions',
          JSON.stringify({ id: 'eu', url: 'http://127.0.0.1:1' }),
        ],
        [id, 'remove region', 'DELETE', '/v1/regions/eu'],
      );
    }
    for (const [id, what, method, path, body] of attempts) {
      const headers = { ...bearer('read'), 'content-type': 'application/json' };
      const answer = await target.http(id, method, path, {
        headers,
        ...(body === undefined ? {} : { body }),
      });
      expect(answer.status, `${what} via ${id}: ${answer.text}`).toBe(403);
      expect(JSON.parse(answer.text)).toMatchObject({ error: { code: 'FORBIDDEN' } });
      expect((JSON.parse(answer.text) as { error: { message: string } }).error.message).toMatch(
        /has scope read; .* needs (readwrite|admin)/,
      );
      // No token, and a token nobody issued: 401 with a Bearer challenge.
      for (const authorization of [undefined, `Bearer ${tokens.read}x`]) {
        const refused = await target.http(id, method, path, {
          headers: authorization === undefined ? {} : { authorization },
          ...(body === undefined ? {} : { body }),
        });
        expect(refused.status, `${what} via ${id} with ${String(authorization)}`).toBe(401);
        expect(refused.headers['www-authenticate']).toBe('Bearer realm="phantomdb"');
      }
    }
    // The read token reads, through the leader and a follower.
    for (const id of [leader.id, follower]) {
      const read = await target.http(id, 'GET', '/v1/kv/guarded', { headers: bearer('read') });
      expect(read.status).toBe(200);
      expect(read.text).toBe('original');
    }
    const after = (await target.status(leader.id))!;
    expect(after.lastApplied).toBe(before.lastApplied);
    expect(after.term).toBe(before.term);
    expect(after.members.map((m) => m.id).sort()).toEqual(['n1', 'n2', 'n3']);
    // The secret is in no log line and no status answer.
    for (const node of target.nodes) expect(await target.log(node.id)).not.toContain(clusterSecret);
    const statusText = (
      await target.http(leader.id, 'GET', '/v1/status', { headers: bearer('read') })
    ).text;
    expect(statusText).not.toContain(clusterSecret);
    console.log(
      `READ-ONLY TOKEN: ${attempts.length} writes/admin requests refused with 403 (and 401 without or with a wrong token); applied index stayed ${after.lastApplied}`,
    );
  }, 60_000);
});
