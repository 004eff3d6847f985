// Checks the client HTTP API of one node running in this process (real HTTP on loopback, real
// storage in a temp dir): key-value semantics, 412/404 bodies, JSON vs CBOR, status, health,
// metrics, clear 4xx answers to bad requests, and a disk that fails (507, stale reads served).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PhantomNode } from '../../src/node/node.js';
import type { StorageFs } from '../../src/storage/fs.js';
import { hookedFs } from '../storage/helpers/hooked-fs.js';
import { call, cbor, cleanUp, startInProcessNode, type StatusBody } from './helpers.js';

interface ErrorBody {
  error: { code: string; message: string };
  index?: number;
  term?: number;
  current?: { value: unknown; valueBase64?: string } | null;
}

describe('client API of a one-node node', () => {
  let node: PhantomNode;
  let url: string;

  beforeAll(async () => {
    ({ node, url } = await startInProcessNode());
  });

  afterAll(async () => {
    await node.stop();
    await cleanUp();
  });

  const kv = (key: string): string => `${url}/v1/kv/${key}`;

  it('puts, gets and deletes a key, answering with the entry index and term', async () => {
    const put = await call('PUT', kv('greeting'), { body: 'hello' });
    expect(put.status).toBe(200);
    expect(put.headers.get('content-type')).toBe('application/json');
    const { index, term } = put.json<{ index: number; term: number }>();
    expect(index).toBeGreaterThan(0);
    expect(term).toBeGreaterThan(0);

    const get = await call('GET', kv('greeting'));
    expect(get.status).toBe(200);
    expect(get.headers.get('content-type')).toBe('application/octet-stream');
    expect(get.text).toBe('hello');
    expect(Number(get.headers.get('x-phantomdb-index'))).toBeGreaterThanOrEqual(index);

    const removed = await call('DELETE', kv('greeting'));
    expect(removed.status).toBe(200);
    expect(removed.json<{ index: number }>().index).toBeGreaterThan(index);

    const gone = await call('GET', kv('greeting'));
    expect(gone.status).toBe(404);
    expect(gone.json<ErrorBody>().error.code).toBe('KEY_NOT_FOUND');
    const again = await call('DELETE', kv('greeting'));
    expect(again.status).toBe(404);
    expect(again.json<ErrorBody>()).toMatchObject({ error: { code: 'KEY_NOT_FOUND' } });
  });

  it('stores binary values and keys with slashes, spaces and non-ASCII characters', async () => {
    const value = Uint8Array.from({ length: 300 }, (_, k) => (k * 7) % 256);
    for (const key of ['a/b/c', 'with space', 'ünï©ødé ✓', 'slash%2Finside', '+plus']) {
      const path = kv(encodeURIComponent(key));
      expect((await call('PUT', path, { body: value })).status).toBe(200);
      const read = await call('GET', path);
      expect(read.status).toBe(200);
      expect(read.bytes).toEqual(value);
    }
    // An unencoded slash is part of the key too.
    expect((await call('GET', kv('a/b/c'))).bytes).toEqual(value);
  });

  it('compare-and-set: applies on a match, 412 with the current value otherwise', async () => {
    await call('PUT', kv('cas'), { body: 'one' });
    const swapped = await call('PUT', `${kv('cas')}?prevValue=one`, { body: 'two' });
    expect(swapped.status).toBe(200);

    const refused = await call('PUT', `${kv('cas')}?prevValue=one`, { body: 'three' });
    expect(refused.status).toBe(412);
    const body = refused.json<ErrorBody>();
    expect(body.error.code).toBe('PRECONDITION_FAILED');
    expect(body.current).toEqual({
      value: 'two',
      valueBase64: Buffer.from('two').toString('base64'),
    });
    expect(body.index).toBeGreaterThan(swapped.json<{ index: number }>().index);
    expect((await call('GET', kv('cas'))).text).toBe('two');

    // A value that is not UTF-8 comes back in base64 only.
    await call('PUT', kv('binary-cas'), { body: Uint8Array.of(0xff, 0x00) });
    const binary = await call('PUT', `${kv('binary-cas')}?prevValue=x`, { body: 'y' });
    expect(binary.json<ErrorBody>().current).toEqual({ value: null, valueBase64: '/wA=' });

    // Percent escapes and '+' in prevValue are decoded to bytes.
    await call('PUT', kv('spaced'), { body: 'a b/ü' });
    const encoded = await call('PUT', `${kv('spaced')}?prevValue=a+b%2F%C3%BC`, { body: 'ok' });
    expect(encoded.status).toBe(200);

    const absent = await call('PUT', `${kv('no-such-key')}?prevValue=x`, { body: 'y' });
    expect(absent.status).toBe(404);
    expect(absent.json<ErrorBody>().error.code).toBe('KEY_NOT_FOUND');
  });

  it('create-only with prevExist=false, update-only with prevExist=true', async () => {
    const created = await call('PUT', `${kv('once')}?prevExist=false`, { body: 'first' });
    expect(created.status).toBe(200);
    const refused = await call('PUT', `${kv('once')}?prevExist=false`, { body: 'second' });
    expect(refused.status).toBe(412);
    expect(refused.json<ErrorBody>().current?.value).toBe('first');
    expect((await call('GET', kv('once'))).text).toBe('first');

    expect((await call('PUT', `${kv('once')}?prevExist=true`, { body: 'third' })).status).toBe(200);
    const missing = await call('PUT', `${kv('never')}?prevExist=true`, { body: 'x' });
    expect(missing.status).toBe(404);
    const both = await call('PUT', `${kv('once')}?prevExist=false&prevValue=third`, { body: 'x' });
    expect(both.status).toBe(400);
  });

  it('deletes only on a matching prevValue when one is given', async () => {
    await call('PUT', kv('guarded'), { body: 'keep' });
    const refused = await call('DELETE', `${kv('guarded')}?prevValue=other`);
    expect(refused.status).toBe(412);
    expect(refused.json<ErrorBody>().current?.value).toBe('keep');
    expect((await call('DELETE', `${kv('guarded')}?prevValue=keep`)).status).toBe(200);
  });

  it('serves stale reads locally and refuses an unknown consistency', async () => {
    await call('PUT', kv('stale'), { body: 'v' });
    const stale = await call('GET', `${kv('stale')}?consistency=stale`);
    expect(stale.status).toBe(200);
    expect(stale.text).toBe('v');
    expect((await call('GET', `${kv('stale')}?consistency=linearizable`)).text).toBe('v');
    expect((await call('GET', `${kv('stale-missing')}?consistency=stale`)).status).toBe(404);
    const bad = await call('GET', `${kv('stale')}?consistency=eventual`);
    expect(bad.status).toBe(400);
    expect(bad.json<ErrorBody>().error.message).toContain('linearizable or stale');
  });

  it('answers in CBOR when the client asks through Accept or Content-Type', async () => {
    const accept = { accept: 'application/cbor' };
    const put = await call('PUT', kv('cbor'), { body: 'v1', headers: accept });
    expect(put.status).toBe(200);
    expect(put.headers.get('content-type')).toBe('application/cbor');
    const placed = put.json<{ index: unknown; term: unknown }>();
    expect(Object.keys(placed).sort()).toEqual(['index', 'term']);
    expect(typeof placed.index).toBe('number');
    expect(typeof placed.term).toBe('number');

    // The PUT body is the value's bytes whatever the Content-Type says.
    const asCbor = await call('PUT', `${kv('cbor')}?prevValue=nope`, {
      body: 'v2',
      headers: { 'content-type': 'application/cbor' },
    });
    expect(asCbor.status).toBe(412);
    expect(asCbor.headers.get('content-type')).toBe('application/cbor');
    const body = asCbor.json<{ error: { code: string }; current: { value: Uint8Array } }>();
    expect(body.error.code).toBe('PRECONDITION_FAILED');
    expect(new Uint8Array(body.current.value)).toEqual(new TextEncoder().encode('v1'));
    // A plain CBOR byte string (major type 2), not a tagged typed array.
    expect(Buffer.from(asCbor.bytes).includes(Buffer.from([0x42, 0x76, 0x31]))).toBe(true);
    expect(Buffer.from(asCbor.bytes).includes(Buffer.from([0xd8, 0x40, 0x42]))).toBe(false);

    const status = await call('GET', `${url}/v1/status`, { headers: accept });
    expect(status.json<StatusBody>().id).toBe('n1');
    const missing = await call('GET', kv('cbor-missing'), { headers: accept });
    expect(missing.status).toBe(404);
    expect(missing.json<ErrorBody>().error.code).toBe('KEY_NOT_FOUND');
    // JSON wins when Accept rates it higher.
    const json = await call('GET', `${url}/v1/status`, {
      headers: { accept: 'application/cbor;q=0.5, application/json' },
    });
    expect(json.headers.get('content-type')).toBe('application/json');
  });

  it('reports status, members, health and metrics', async () => {
    const status = await call('GET', `${url}/v1/status`);
    expect(status.status).toBe(200);
    const body = status.json<StatusBody>();
    expect(body).toMatchObject({
      id: 'n1',
      url,
      state: 'leader',
      leader: 'n1',
      leaderUrl: url,
      members: [{ id: 'n1', url, role: 'voter' }],
      storageError: null,
    });
    expect(body.term).toBeGreaterThan(0);
    expect(body.lastApplied).toBeLessThanOrEqual(body.commitIndex);
    for (const field of [
      'id',
      'state',
      'term',
      'leader',
      'commitIndex',
      'lastApplied',
      'members',
    ]) {
      expect(body).toHaveProperty(field);
    }

    const members = await call('GET', `${url}/v1/members`);
    expect(members.json()).toEqual({ members: [{ id: 'n1', url, role: 'voter' }] });

    const health = await call('GET', `${url}/healthz`);
    expect(health.status).toBe(200);
    expect(health.json()).toMatchObject({ status: 'ok', id: 'n1', state: 'leader' });

    await call('PUT', kv('metered'), { body: 'x' });
    const metrics = await call('GET', `${url}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toContain('text/plain');
    for (const name of [
      'phantomdb_raft_term{node="n1"}',
      'phantomdb_raft_role{role="leader",node="n1"} 1',
      'phantomdb_raft_commit_index',
      'phantomdb_raft_applied_index',
      'phantomdb_proposals_total{outcome="committed",node="n1"}',
      'phantomdb_wal_fsync_duration_seconds_bucket',
      'phantomdb_wal_fsyncs_total',
      'phantomdb_http_requests_total{route="/v1/kv/{key}",method="PUT",status="200",node="n1"}',
    ]) {
      expect(metrics.text).toContain(name);
    }
    const fsyncs = /^phantomdb_wal_fsync_duration_seconds_count\{[^}]*outcome="ok"\} (\d+)$/m.exec(
      metrics.text,
    );
    expect(Number(fsyncs?.[1])).toBeGreaterThan(0);
  });

  it('acknowledges many concurrent writes, each at its own index, all readable', async () => {
    const count = 200;
    const answers = await Promise.all(
      Array.from({ length: count }, (_, k) => call('PUT', kv(`many-${k}`), { body: `v${k}` })),
    );
    expect(answers.map((answer) => answer.status)).toEqual(Array(count).fill(200));
    const indexes = new Set(answers.map((answer) => answer.json<{ index: number }>().index));
    expect(indexes.size).toBe(count);
    const reads = await Promise.all(
      Array.from({ length: count }, (_, k) => call('GET', kv(`many-${k}`))),
    );
    expect(reads.map((read) => read.text)).toEqual(
      Array.from({ length: count }, (_, k) => `v${k}`),
    );
  });

  it('answers bad requests with a clear 4xx and keeps serving', async () => {
    const json = { 'content-type': 'application/json' };
    const cases: {
      method: string;
      path: string;
      options?: Parameters<typeof call>[2];
      status: number;
      code: string;
      says?: string;
    }[] = [
      { method: 'GET', path: '/v1/kv/', status: 400, code: 'BAD_KEY', says: 'empty' },
      { method: 'PUT', path: '/v1/kv/', options: { body: 'x' }, status: 400, code: 'BAD_KEY' },
      { method: 'GET', path: '/v1/kv/%E2%82', status: 400, code: 'BAD_KEY', says: 'UTF-8' },
      { method: 'GET', path: '/v1/kv/%zz', status: 400, code: 'BAD_KEY' },
      {
        method: 'GET',
        path: `/v1/kv/${'k'.repeat(4097)}`,
        status: 400,
        code: 'BAD_KEY',
        says: '4096',
      },
      {
        method: 'PUT',
        path: '/v1/kv/big',
        options: { body: new Uint8Array(512 * 1024 + 1) },
        status: 413,
        code: 'PAYLOAD_TOO_LARGE',
      },
      {
        method: 'PUT',
        path: '/v1/kv/q?prevvalue=x',
        options: { body: 'x' },
        status: 400,
        code: 'BAD_REQUEST',
        says: 'prevValue, prevExist',
      },
      {
        method: 'PUT',
        path: '/v1/kv/q?prevExist=maybe',
        options: { body: 'x' },
        status: 400,
        code: 'BAD_REQUEST',
        says: 'true or false',
      },
      {
        method: 'PUT',
        path: '/v1/kv/q?prevValue=a&prevValue=b',
        options: { body: 'x' },
        status: 400,
        code: 'BAD_REQUEST',
        says: 'twice',
      },
      {
        method: 'PUT',
        path: '/v1/kv/q?prevValue=%G0',
        options: { body: 'x' },
        status: 400,
        code: 'BAD_REQUEST',
        says: 'percent',
      },
      { method: 'DELETE', path: '/v1/kv/q?prevExist=false', status: 400, code: 'BAD_REQUEST' },
      { method: 'POST', path: '/v1/kv/q', status: 405, code: 'METHOD_NOT_ALLOWED' },
      { method: 'PATCH', path: '/v1/status', status: 405, code: 'METHOD_NOT_ALLOWED' },
      { method: 'GET', path: '/v1/leader/transfer', status: 405, code: 'METHOD_NOT_ALLOWED' },
      { method: 'GET', path: '/v2/keys/x', status: 404, code: 'NOT_FOUND' },
      { method: 'GET', path: '/v1/kv', status: 404, code: 'NOT_FOUND' },
      {
        method: 'POST',
        path: '/v1/members',
        options: { body: '{"id":', headers: json },
        status: 400,
        code: 'BAD_REQUEST',
        says: 'JSON',
      },
      {
        method: 'POST',
        path: '/v1/members',
        options: {
          body: Uint8Array.of(0xbf, 0x61),
          headers: { 'content-type': 'application/cbor' },
        },
        status: 400,
        code: 'BAD_REQUEST',
        says: 'CBOR',
      },
      {
        method: 'POST',
        path: '/v1/members',
        options: { body: '[1]', headers: json },
        status: 400,
        code: 'BAD_REQUEST',
        says: 'object',
      },
      {
        method: 'POST',
        path: '/v1/members',
        options: {
          body: 'id=n2',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
        },
        status: 415,
        code: 'UNSUPPORTED_MEDIA_TYPE',
      },
      {
        method: 'POST',
        path: '/v1/members',
        options: { body: '{"url":"http://127.0.0.1:1"}', headers: json },
        status: 400,
        code: 'BAD_REQUEST',
        says: 'member id',
      },
      {
        method: 'POST',
        path: '/v1/members',
        options: { body: '{"id":"n2","url":"ftp://x"}', headers: json },
        status: 400,
        code: 'BAD_REQUEST',
        says: 'http',
      },
      {
        method: 'POST',
        path: '/v1/members',
        options: { body: '{"id":"n2","url":"http://h:1","voter":true}', headers: json },
        status: 400,
        code: 'BAD_REQUEST',
        says: 'unknown field',
      },
      {
        method: 'POST',
        path: '/v1/members',
        options: { body: '{"id":"n2","url":"http://h:1","learner":"yes"}', headers: json },
        status: 400,
        code: 'BAD_REQUEST',
      },
      {
        method: 'POST',
        path: '/v1/members',
        options: { body: JSON.stringify({ id: 'n2', url: 'x'.repeat(70_000) }), headers: json },
        status: 413,
        code: 'PAYLOAD_TOO_LARGE',
      },
      {
        method: 'POST',
        path: '/v1/members',
        options: { body: JSON.stringify({ id: 'n1', url: 'http://127.0.0.1:1' }), headers: json },
        status: 409,
        code: 'MEMBER_EXISTS',
      },
      { method: 'DELETE', path: '/v1/members/nobody', status: 404, code: 'UNKNOWN_MEMBER' },
      { method: 'DELETE', path: '/v1/members/bad%20id', status: 400, code: 'BAD_REQUEST' },
      {
        method: 'POST',
        path: '/v1/leader/transfer',
        status: 400,
        code: 'BAD_REQUEST',
        says: 'no other voter',
      },
      {
        method: 'POST',
        path: '/v1/leader/transfer',
        options: { body: '{"to":"n9"}', headers: json },
        status: 404,
        code: 'UNKNOWN_MEMBER',
      },
      {
        method: 'POST',
        path: '/v1/leader/transfer',
        options: { body: cbor({ to: 5 }), headers: { 'content-type': 'application/cbor' } },
        status: 400,
        code: 'BAD_REQUEST',
      },
    ];
    for (const { method, path, options, status, code, says } of cases) {
      const answer = await call(method, `${url}${path}`, options);
      const context = `${method} ${path.slice(0, 60)} -> ${answer.status} ${answer.text.slice(0, 200)}`;
      expect(answer.status, context).toBe(status);
      const body = answer.json<ErrorBody>();
      expect(body.error.code, context).toBe(code);
      expect(body.error.message.length, context).toBeGreaterThan(10);
      if (says !== undefined) expect(body.error.message, context).toContain(says);
      if (status === 405) expect(answer.headers.get('allow'), context).toBeTruthy();
    }
    const after = await call('PUT', kv('still-serving'), { body: 'yes' });
    expect(after.status).toBe(200);
    expect((await call('GET', kv('still-serving'))).text).toBe('yes');
  });
});

/** The real file system, except that datasync fails with ENOSPC once `failing` is set. */
function faultyFs(): { fs: StorageFs; fail: () => void } {
  let failing = false;
  const fs = hookedFs((_path, file) => ({
    datasync: () =>
      failing
        ? Promise.reject(
            Object.assign(new Error('ENOSPC: no space left on device, fdatasync'), {
              code: 'ENOSPC',
            }),
          )
        : file.datasync(),
  }));
  return { fs, fail: () => (failing = true) };
}

describe('a node whose disk fails', () => {
  afterAll(cleanUp);

  it('refuses writes with 507, keeps serving stale reads and status, and does not crash', async () => {
    const { fs, fail } = faultyFs();
    const { node, url } = await startInProcessNode([], { fs });
    try {
      expect((await call('PUT', `${url}/v1/kv/kept`, { body: 'before' })).status).toBe(200);
      fail();
      const refused = await call('PUT', `${url}/v1/kv/lost`, { body: 'after' });
      expect(refused.status).toBe(507);
      const body = refused.json<ErrorBody>();
      expect(body.error.code).toBe('DISK_FULL');
      expect(body.error.message).toContain('ENOSPC');

      const again = await call('DELETE', `${url}/v1/kv/kept`);
      expect(again.status).toBe(507);
      const stale = await call('GET', `${url}/v1/kv/kept?consistency=stale`);
      expect(stale.status).toBe(200);
      expect(stale.text).toBe('before');
      expect((await call('GET', `${url}/v1/kv/lost?consistency=stale`)).status).toBe(404);
      // A linearizable read needs a working leader; this node was it.
      expect((await call('GET', `${url}/v1/kv/kept`)).status).toBe(507);

      const health = await call('GET', `${url}/healthz`);
      expect(health.status).toBe(503);
      expect(health.json()).toMatchObject({ status: 'failed', error: { code: 'DISK_FULL' } });
      const status = await call('GET', `${url}/v1/status`);
      expect(status.json<StatusBody>().storageError?.code).toBe('DISK_FULL');
      const metrics = await call('GET', `${url}/metrics`);
      expect(metrics.text).toMatch(
        /phantomdb_wal_fsync_duration_seconds_count\{[^}]*outcome="failed"\} 1/,
      );
    } finally {
      await node.stop();
    }
  });
});
