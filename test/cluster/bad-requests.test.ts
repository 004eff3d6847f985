// Bad requests against a real 3-node cluster — malformed JSON and CBOR, huge bodies, unknown
// routes, bad keys, wrong methods, bad query flags, garbage on the peer routes — each get a
// 4xx with an {"error":{"code","message"}} body (JSON, or CBOR when the request was CBOR), on
// the leader and on a follower, while a writer keeps getting its writes acked and no node exits.
import { describe, expect, it } from 'vitest';
import {
  ackedPuts,
  checkUniqueWrites,
  testSeed,
  useClusterResources,
  waitUntil,
} from './checks.js';
import { decode as decodeCbor } from 'cbor-x';
import { parseErrorBody, type ErrorBody } from './client.js';
import { Cluster, type HttpAnswer } from './harness.js';
import { HistoryRecorder } from './recorder.js';
import { uniqueWrites, Workload } from './workload.js';

const resources = useClusterResources();

interface BadRequest {
  readonly label: string;
  readonly method: 'GET' | 'PUT' | 'POST' | 'DELETE' | 'PATCH';
  readonly path: string;
  readonly body?: string | Uint8Array;
  readonly headers?: Record<string, string>;
  /** Acceptable statuses (the most fitting first). */
  readonly statuses: readonly number[];
}

const json = { 'content-type': 'application/json' };
const cbor = { 'content-type': 'application/cbor' };

const badRequests: readonly BadRequest[] = [
  {
    label: 'malformed JSON member',
    method: 'POST',
    path: '/v1/members',
    body: '{"id": "n9", "url":',
    headers: json,
    statuses: [400],
  },
  {
    label: 'JSON member of the wrong shape',
    method: 'POST',
    path: '/v1/members',
    body: '["n9"]',
    headers: json,
    statuses: [400],
  },
  {
    label: 'member without url',
    method: 'POST',
    path: '/v1/members',
    body: '{"id":"n9"}',
    headers: json,
    statuses: [400],
  },
  {
    label: 'member with a bad url',
    method: 'POST',
    path: '/v1/members',
    body: '{"id":"n9","url":"not a url"}',
    headers: json,
    statuses: [400],
  },
  {
    label: 'malformed CBOR member',
    method: 'POST',
    path: '/v1/members',
    body: new Uint8Array([0xbf, 0x61, 0x69, 0xff, 0xff, 0x00]),
    headers: cbor,
    statuses: [400],
  },
  {
    label: 'truncated CBOR transfer',
    method: 'POST',
    path: '/v1/leader/transfer',
    body: new Uint8Array([0xa1, 0x62, 0x74]),
    headers: cbor,
    statuses: [400],
  },
  {
    label: 'malformed JSON transfer',
    method: 'POST',
    path: '/v1/leader/transfer',
    body: '{to: n2}',
    headers: json,
    statuses: [400],
  },
  {
    label: 'transfer to an unknown member',
    method: 'POST',
    path: '/v1/leader/transfer',
    body: '{"to":"nobody"}',
    headers: json,
    statuses: [404, 400],
  },
  {
    label: 'remove an unknown member',
    method: 'DELETE',
    path: '/v1/members/nobody',
    statuses: [404],
  },
  {
    label: 'unsupported media type',
    method: 'POST',
    path: '/v1/members',
    body: '<id/>',
    headers: { 'content-type': 'application/xml' },
    statuses: [415, 400],
  },
  {
    label: 'value over the limit (1 MiB)',
    method: 'PUT',
    path: '/v1/kv/big',
    body: 'x'.repeat(1024 * 1024),
    statuses: [413],
  },
  {
    label: 'huge admin body (9 MiB)',
    method: 'POST',
    path: '/v1/members',
    body: `{"id":"${'n'.repeat(9 * 1024 * 1024)}"}`,
    headers: json,
    statuses: [413],
  },
  { label: 'unknown route', method: 'GET', path: '/v1/nope', statuses: [404] },
  { label: 'unknown top-level route', method: 'GET', path: '/nope/at/all', statuses: [404] },
  { label: 'empty key', method: 'PUT', path: '/v1/kv/', body: 'v', statuses: [400, 404] },
  {
    label: 'key over the limit',
    method: 'PUT',
    path: `/v1/kv/${'k'.repeat(5000)}`,
    body: 'v',
    statuses: [400, 414, 431],
  },
  {
    label: 'key that is not UTF-8',
    method: 'PUT',
    path: '/v1/kv/%FF%FE',
    body: 'v',
    statuses: [400],
  },
  { label: 'broken percent-encoding', method: 'GET', path: '/v1/kv/a%E0%A4%A', statuses: [400] },
  { label: 'PATCH a key', method: 'PATCH', path: '/v1/kv/k', body: 'v', statuses: [405] },
  { label: 'POST a key', method: 'POST', path: '/v1/kv/k', body: 'v', statuses: [405] },
  { label: 'PUT the status', method: 'PUT', path: '/v1/status', body: '{}', statuses: [405] },
  { label: 'DELETE healthz', method: 'DELETE', path: '/healthz', statuses: [405] },
  { label: 'GET a peer route', method: 'GET', path: '/raft/append', statuses: [405] },
  {
    label: 'bad prevExist',
    method: 'PUT',
    path: '/v1/kv/k?prevExist=maybe',
    body: 'v',
    statuses: [400],
  },
  {
    label: 'bad consistency',
    method: 'GET',
    path: '/v1/kv/k?consistency=eventual-ish',
    statuses: [400],
  },
  {
    label: 'garbage on /raft/append',
    method: 'POST',
    path: '/raft/append',
    body: new Uint8Array([0xff, 0xfe, 0xfd, 0x00]),
    headers: cbor,
    statuses: [400],
  },
  {
    label: 'JSON on /raft/vote',
    method: 'POST',
    path: '/raft/vote',
    body: '{"type":"vote"}',
    headers: json,
    statuses: [415, 400],
  },
];

/** The error body of an answer: JSON, or CBOR when the node answered in CBOR. */
function errorBodyOf(answer: HttpAnswer): ErrorBody | undefined {
  const contentType = String(answer.headers['content-type'] ?? '');
  if (!contentType.startsWith('application/cbor')) return parseErrorBody(answer.text);
  try {
    return parseErrorBody(JSON.stringify(decodeCbor(answer.bytes)));
  } catch {
    return undefined;
  }
}

describe('bad requests', () => {
  it('get clear 4xx answers on leader and follower while writes keep being acked', async () => {
    const name = 'bad-requests';
    const seed = testSeed(name);
    const cluster = resources.cluster(await Cluster.start({ size: 3, name }));
    const leader = await cluster.waitForLeader();
    const follower = cluster.ids().find((id) => id !== leader)!;
    const recorder = new HistoryRecorder();
    const writers = resources.workload(
      new Workload({
        recorder,
        clients: 2,
        operations: uniqueWrites('b-'),
        targets: () => cluster.targets(),
        seed,
        prefix: 'w',
        timeoutMs: 5_000,
      }),
    );
    writers.start();
    await waitUntil(
      () => ackedPuts(recorder).length >= 10,
      15_000,
      () => recorder.summary(),
    );

    const problems: string[] = [];
    const seenAnswers: string[] = [];
    const startAcks = ackedPuts(recorder).length;
    for (const id of [leader, follower]) {
      for (const bad of badRequests) {
        let answer;
        try {
          answer = await cluster.http(id, bad.method, bad.path, {
            ...(bad.body === undefined ? {} : { body: bad.body }),
            ...(bad.headers === undefined ? {} : { headers: bad.headers }),
            timeoutMs: 10_000,
          });
        } catch (error) {
          problems.push(`${id} ${bad.label}: no answer (${String(error)})`);
          continue;
        }
        const body = errorBodyOf(answer);
        if (id === follower)
          seenAnswers.push(`${bad.label}: ${answer.status} ${body?.error.code ?? '?'}`);
        const ok =
          bad.statuses.includes(answer.status) &&
          body !== undefined &&
          body.error.code !== '' &&
          body.error.message !== '';
        if (!ok) {
          problems.push(
            `${id} ${bad.label}: ${bad.method} ${bad.path.slice(0, 60)} -> ${answer.status} ${answer.text.slice(0, 160)} (expected ${bad.statuses.join('/')} with an error body)`,
          );
        }
      }
    }
    await waitUntil(
      () => ackedPuts(recorder).length >= startAcks + 10,
      15_000,
      () => `writes stalled during the bad requests: ${recorder.summary()}`,
    );
    await writers.stop();
    const exited = cluster.ids().filter((id) => cluster.node(id).state !== 'running');
    expect(exited, await cluster.logTails()).toEqual([]);
    const writeFailures = recorder.ops.filter((op) => op.outcome?.kind !== 'ok');
    console.log(`${name}: answers of the follower ${follower}:\n  ${seenAnswers.join('\n  ')}`);
    console.log(
      `${name}: ${badRequests.length * 2} bad requests sent; ${recorder.summary()}; ${problems.length} answers not as the contract says`,
    );
    expect(problems, problems.join('\n')).toEqual([]);
    expect(writeFailures.map((op) => op.outcome)).toEqual([]);
    await cluster.waitConverged({ timeoutMs: 20_000 });
    await checkUniqueWrites(cluster, recorder, cluster.ids(), 'b-');
  }, 120_000);
});
