// Hostile input against a running node (a real process with a cluster secret and tokens):
// over 100,000 requests generated with fast-check across every route — unauthenticated ones
// with random methods, paths, queries, headers and bodies; admin-token ones that are malformed
// by construction (bad keys, queries, JSON and CBOR bodies, deep nesting, oversized bodies,
// wrong media types, forged forwards); peer and region RPCs unsigned, and signed with the
// right secret but undecodable — plus raw TCP garbage and a flood of idle connections. Each
// must get a clear 4xx with a JSON error, the node must keep serving, and no data may change:
// the status' applied index, term and key count, and a linearizable read of every known key,
// are the same before and after. Prints the request count and rate.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { decode as decodeCbor, encode as encodeCbor } from 'cbor-x';
import fc from 'fast-check';
import { Agent } from 'undici';
import { beforeAll, describe, expect, it } from 'vitest';
import { RequestSigner } from '../../src/security/request-signer.js';
import { Secret } from '../../src/security/secret.js';
import {
  SecureCluster,
  acquireMachineLock,
  bearer,
  clusterSecret,
  securityTempDir,
  sleep,
  tearDownAfterAll,
  writeSecretFile,
  writeTokensFile,
  type Status,
} from './support.js';

/** Requests sent over HTTP by the property run (the brief asks for at least 100,000). */
const fuzzRequests = Number(process.env['PHANTOMDB_FUZZ_REQUESTS'] ?? 100_000);
/** Requests in flight at once. */
const concurrency = 48;
/** Keys written before the fuzzing, read back after it. */
const knownKeys = 40;

let release: (() => Promise<void>) | undefined;
let cluster: SecureCluster | undefined;
let dir = '';

beforeAll(async () => {
  release = await acquireMachineLock();
  dir = await securityTempDir('fuzz-files');
  cluster = await SecureCluster.start({
    size: 1,
    label: 'fuzz',
    args: [
      '--cluster-secret-file',
      await writeSecretFile(dir, 'secret', clusterSecret),
      '--tokens-file',
      await writeTokensFile(dir),
    ],
  });
}, 60_000);

tearDownAfterAll(() => ({ release, clusters: [cluster], dir }));

/** One generated request and the statuses it may get. */
interface FuzzRequest {
  readonly kind: string;
  readonly method: 'GET' | 'PUT' | 'POST' | 'DELETE' | 'PATCH' | 'OPTIONS';
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body?: Uint8Array;
  readonly allowed: readonly number[];
}

const peerSigner = new RequestSigner(Secret.fromText(clusterSecret), 'peer');
const regionSigner = new RequestSigner(Secret.fromText(clusterSecret), 'region');
const text = (value: string): Uint8Array => new TextEncoder().encode(value);

/** Every byte percent-encoded: any byte string is a valid path or query on the wire. */
const percentEncoded = (bytes: Uint8Array): string =>
  [...bytes].map((byte) => `%${byte.toString(16).padStart(2, '0').toUpperCase()}`).join('');

const anyBytes = fc.uint8Array({ maxLength: 256 });
const methods = ['GET', 'PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS'] as const;
const mediaTypes = [
  'application/json',
  'application/cbor',
  'text/plain',
  'application/xml',
  'application/json; charset=utf-8',
  '*/*',
  '',
  ';;;',
  'application/cbor; q=0',
];
const routes = [
  '/v1/kv/',
  '/v1/kv',
  '/v1/status',
  '/v1/members',
  '/v1/members/',
  '/v1/leader/transfer',
  '/v1/regions',
  '/v1/regions/',
  '/v1/replication/batch',
  '/v1/replication/heartbeat',
  '/raft/vote',
  '/raft/append',
  '/raft/snapshot',
  '/raft/timeout-now',
  '/raft/',
  '/',
  '/v2/',
];

/** Request bodies: random bytes, JSON, CBOR of anything, deep nesting. */
const anyBody: fc.Arbitrary<Uint8Array> = fc.oneof(
  anyBytes,
  fc.jsonValue({ maxDepth: 3 }).map((value) => text(JSON.stringify(value) ?? 'null')),
  fc.anything({ maxDepth: 3 }).map((value) => new Uint8Array(encodeCbor(value))),
  fc.integer({ min: 1, max: 20_000 }).map((depth) => text('['.repeat(depth) + ']'.repeat(depth))),
  fc.integer({ min: 17, max: 20_000 }).map((depth) => {
    const bytes = new Uint8Array(depth + 1).fill(0x81); // CBOR arrays of one item, nested
    bytes[depth] = 0x00;
    return bytes;
  }),
);

/** Random headers: content types, garbage tokens, forged forwards and signatures. */
const anyHeaders = fc.record(
  {
    'content-type': fc.constantFrom(...mediaTypes),
    accept: fc.constantFrom('application/json', 'application/cbor', '*/*', 'text/html'),
    authorization: fc.oneof(
      fc.constant('Bearer '),
      fc.string({ maxLength: 40 }).map((token) => `Bearer ${token.replace(/[^\x21-\x7e]/g, 'x')}`),
      fc.constant('Basic YWRtaW46YWRtaW4='),
      fc.constant(`Bearer ${'x'.repeat(2_000)}`),
    ),
    'x-phantomdb-forwarded-by': fc.constantFrom('n1', 'n2', 'intruder'),
    'x-phantomdb-signature': fc.oneof(
      fc.constant('v1 ts=0 nonce=AAAAAAAAAAAAAAAAAAAAAA sig=' + 'A'.repeat(43)),
      fc.string({ maxLength: 80 }).map((value) => value.replace(/[^\x20-\x7e]/g, '?')),
    ),
    'x-phantomdb-timeout-ms': fc.constantFrom('0', '-1', '1e309', 'NaN', '99999999999'),
  },
  { requiredKeys: [] },
);

/** A path to some route, with random tails and queries. */
const anyPath = fc
  .tuple(
    fc.constantFrom(...routes),
    fc.oneof(
      fc.constant(''),
      anyBytes.map(percentEncoded),
      fc.string({ unit: 'grapheme', maxLength: 20 }).map(encodeURIComponent),
    ),
    fc.oneof(
      fc.constant(''),
      anyBytes.map((bytes) => `?${percentEncoded(bytes)}`),
      fc.constant('?prevValue=a&prevValue=b&consistency=stale'),
    ),
  )
  .map(([route, tail, query]) => `${route}${tail}${query}`);

/** Unauthenticated: no valid token and no valid signature anywhere. */
const unauthenticated: fc.Arbitrary<FuzzRequest> = fc
  .record({
    method: fc.constantFrom(...methods),
    path: anyPath,
    headers: anyHeaders,
    body: fc.option(anyBody, { nil: undefined }),
  })
  .map(({ method, path, headers, body }) => ({
    kind: 'unauthenticated',
    method,
    path,
    headers,
    ...(body === undefined || method === 'GET' ? {} : { body }),
    // 401 above all; 404 an unknown route; 405 a wrong method on /raft/*; 400/413/415 a peer
    // or region request the route refuses before asking for a signature is impossible: the
    // signature comes first there.
    allowed: [401, 404, 405],
  }));

const adminJson = {
  ...bearer('admin'),
  'content-type': 'application/json',
  accept: 'application/json',
};
const adminCbor = {
  ...bearer('admin'),
  'content-type': 'application/cbor',
  accept: 'application/json',
};

/** Keys that can never be stored: empty, not UTF-8, lone surrogates, too long. */
const badKey = fc.oneof(
  fc.constant(''),
  fc.constantFrom('%ZZ', '%', '%E', '%ED%A0%80', '%FF', '%C0%80', 'a%2'),
  fc.integer({ min: 4_097, max: 6_000 }).map((length) => 'k'.repeat(length)),
  anyBytes.map((bytes) => `${percentEncoded(bytes)}%ED%B0%80`),
);
const goodKey = fc
  .string({ unit: 'grapheme', minLength: 1, maxLength: 30 })
  .map(encodeURIComponent);
/** Query strings every kv route refuses: unknown names, repeated ones, bad escapes. */
const badKvQuery = fc.oneof(
  fc
    .string({ minLength: 1, maxLength: 12 })
    .filter((name) => !['prevValue', 'prevExist', 'consistency'].includes(name))
    .map((name) => `?${encodeURIComponent(name)}=1`),
  fc.constant('?prevValue=a&prevValue=b'),
  fc.constant('?prevExist=maybe'),
  fc.constant('?prevValue=%G1'),
  fc.constant('?prevExist=%FF'),
);
/** Admin bodies that no route accepts: an unknown field, cut-off JSON, non-objects, deep. */
const badAdminBody = fc.oneof(
  fc
    .dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 })
    .map((fields) => ({
      json: text(JSON.stringify({ ...fields, zzUnknownField: 1 })),
      cbor: false,
    })),
  fc.jsonValue({ maxDepth: 2 }).map((value) => {
    const full = JSON.stringify({ id: 'n9', url: 'http://127.0.0.1:9', to: 'n1', value });
    return { json: text(full.slice(0, Math.max(1, full.length >> 1))), cbor: false };
  }),
  fc
    .oneof(fc.array(fc.jsonValue({ maxDepth: 1 })), fc.integer(), fc.string(), fc.constant(null))
    .map((value) => ({
      json: text(JSON.stringify(value)),
      cbor: false,
    })),
  fc
    .dictionary(fc.string({ maxLength: 8 }), fc.anything({ maxDepth: 2 }), { maxKeys: 4 })
    .map((fields) => ({
      json: new Uint8Array(encodeCbor({ ...fields, zzUnknownField: 1 })),
      cbor: true,
    })),
  fc
    .integer({ min: 100, max: 12_000 })
    .map((depth) => ({ json: text('{"a":'.repeat(depth)), cbor: false })),
  anyBytes
    .filter((bytes) => bytes.length > 0)
    .map((bytes) => ({ json: Uint8Array.from([0xff, ...bytes]), cbor: true })),
);
/** Ids no member or region can have. */
const badId = fc.oneof(
  fc.string({ maxLength: 10 }).map((id) => `!${encodeURIComponent(id)}`),
  fc.constant(''),
  fc.constant('%ZZ'),
  fc.constant('a'.repeat(65)),
  fc.constant('.hidden'),
);

/** Authenticated as admin, and malformed by construction: none of these may change data. */
const malformed: fc.Arbitrary<FuzzRequest> = fc.oneof(
  fc
    .record({
      method: fc.constantFrom('GET', 'PUT', 'DELETE' as const),
      key: badKey,
      body: anyBytes,
    })
    .map(({ method, key, body }) => ({
      kind: 'bad key',
      method,
      path: `/v1/kv/${key}`,
      headers: adminJson,
      ...(method === 'PUT' ? { body } : {}),
      // 404: an empty key leaves `/v1/kv/`, which may not match the route; 414 / 431: a key
      // too long for uWebSockets.js's request line, refused before any handler runs.
      allowed: [400, 404, 414, 431],
    })),
  fc
    .record({
      method: fc.constantFrom('GET', 'PUT', 'DELETE' as const),
      key: goodKey,
      query: badKvQuery,
      body: anyBytes,
    })
    .map(({ method, key, query, body }) => ({
      kind: 'bad query',
      method,
      path: `/v1/kv/${key}${query}`,
      headers: adminJson,
      ...(method === 'PUT' ? { body } : {}),
      allowed: [400],
    })),
  fc
    .record({
      key: goodKey,
      value: anyBytes.filter(
        (bytes) => !['stale', 'linearizable'].includes(Buffer.from(bytes).toString()),
      ),
    })
    .map(({ key, value }) => ({
      kind: 'bad consistency',
      method: 'GET' as const,
      path: `/v1/kv/${key}?consistency=${percentEncoded(value)}`,
      headers: adminJson,
      allowed: [400],
    })),
  fc
    .record({
      route: fc.constantFrom('/v1/members', '/v1/leader/transfer', '/v1/regions'),
      body: badAdminBody,
    })
    .map(({ route, body }) => ({
      kind: 'bad admin body',
      method: 'POST' as const,
      path: route,
      headers: body.cbor ? adminCbor : adminJson,
      body: body.json,
      allowed: [400],
    })),
  fc
    .record({
      route: fc.constantFrom('/v1/members', '/v1/leader/transfer', '/v1/regions'),
      type: fc.constantFrom('application/xml', 'text/plain', 'image/png'),
    })
    .map(({ route, type }) => ({
      kind: 'wrong media type',
      method: 'POST' as const,
      path: route,
      headers: { ...adminJson, 'content-type': type },
      body: text('{}'),
      allowed: [415],
    })),
  fc
    .record({ route: fc.constantFrom('/v1/members/', '/v1/regions/'), id: badId })
    .map(({ route, id }) => ({
      kind: 'bad id',
      method: 'DELETE' as const,
      path: `${route}${id}`,
      headers: adminJson,
      allowed: [400],
    })),
  fc
    .record({ method: fc.constantFrom(...methods), path: anyPath, body: anyBody })
    .map(({ method, path, body }) => ({
      kind: 'forged forward',
      method,
      path,
      headers: { ...adminJson, 'x-phantomdb-forwarded-by': 'n2', 'x-phantomdb-target': 'n1' },
      ...(method === 'GET' ? {} : { body }),
      // 401 on the client API (unsigned forward), peer and region routes (unsigned); 404 / 405
      // routes that do not exist or take no such method.
      allowed: [401, 404, 405],
    })),
);

/** CBOR maps no decoder accepts: every field name is unknown to every message. */
const undecodableCbor = fc.oneof(
  fc
    .dictionary(
      fc.string({ maxLength: 8 }).map((key) => `fuzz_${key}`),
      fc.anything({ maxDepth: 2 }),
      { maxKeys: 6 },
    )
    .map((map) => new Uint8Array(encodeCbor(map))),
  anyBytes.map((bytes) => Uint8Array.from([0xbf, ...bytes])), // an indefinite map: refused
  fc.integer({ min: 17, max: 2_000 }).map((depth) => {
    const bytes = new Uint8Array(depth + 1).fill(0x81);
    bytes[depth] = 0x00;
    return bytes;
  }),
);

/** Peer and region RPCs signed with the right secret, with bodies no decoder accepts. */
const signedUndecodable: fc.Arbitrary<FuzzRequest> = fc
  .record({
    path: fc.constantFrom(
      '/raft/vote',
      '/raft/append',
      '/raft/snapshot',
      '/raft/timeout-now',
      '/v1/replication/batch',
      '/v1/replication/heartbeat',
    ),
    body: undecodableCbor,
    wrongType: fc.boolean(),
  })
  .map(({ path, body, wrongType }) => {
    const headers: Record<string, string> = {
      'content-type': wrongType ? 'application/json' : 'application/cbor',
      accept: 'application/json',
    };
    const signer = path.startsWith('/raft/') ? peerSigner : regionSigner;
    // Signed when sent (below), so that the timestamp is fresh.
    return {
      kind: `signed undecodable ${path}`,
      method: 'POST' as const,
      path,
      headers,
      body,
      allowed: wrongType ? [415] : [400, 413],
      signer,
    };
  });

const generated = fc.oneof(
  { arbitrary: unauthenticated, weight: 4 },
  { arbitrary: malformed, weight: 5 },
  { arbitrary: signedUndecodable, weight: 2 },
);

describe('hostile input against a running node', () => {
  it(`answers ${fuzzRequests} generated requests with 4xx, keeps serving and changes no data`, async () => {
    const target = cluster!;
    await target.waitForLeader();
    for (let k = 0; k < knownKeys; k++) {
      const put = await target.http('n1', 'PUT', `/v1/kv/known-${k}`, {
        headers: bearer('readwrite'),
        body: `value-${k}`,
      });
      expect(put.status).toBe(200);
    }
    const snapshot = async () => {
      const status = (await target.status('n1')) as Status;
      const values: string[] = [];
      for (let k = 0; k < knownKeys; k++) {
        const read = await target.http('n1', 'GET', `/v1/kv/known-${k}`, {
          headers: bearer('read'),
        });
        values.push(`${read.status} ${read.text}`);
      }
      return {
        applied: status.lastApplied,
        commit: status.commitIndex,
        term: status.term,
        keys: status.keys,
        values,
      };
    };
    const before = await snapshot();

    const seed = Number(process.env['PHANTOMDB_FUZZ_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
    console.log(`FUZZ: seed ${seed} (replay with PHANTOMDB_FUZZ_SEED=${seed})`);
    const origin = target.node('n1').baseUrl;
    const agent = new Agent({ connections: concurrency, pipelining: 1, keepAliveTimeout: 10_000 });
    const counts = new Map<string, number>();
    const statuses = new Map<number, number>();
    const failures: string[] = [];
    let sent = 0;
    const started = performance.now();
    let nextSeed = seed;
    const worker = async (): Promise<void> => {
      while (sent < fuzzRequests) {
        const batch = fc.sample(generated, {
          numRuns: Math.min(200, fuzzRequests - sent),
          seed: nextSeed++,
        });
        sent += batch.length;
        for (const item of batch) {
          const headers = { ...item.headers };
          const signer = (item as { signer?: RequestSigner }).signer;
          if (signer !== undefined) {
            headers['x-phantomdb-signature'] = signer.sign({
              method: item.method,
              path: item.path,
              headers,
              body: item.body ?? new Uint8Array(0),
            }).header;
          }
          let status: number;
          let body: unknown;
          try {
            // The path goes out byte for byte: `request(url)` would parse it as a URL first,
            // which drops dot segments (`/v1/kv/..` became `/v1/`) and so sends another request
            // than the one generated and signed.
            const response = await agent.request({
              origin,
              path: item.path,
              method: item.method,
              headers,
              ...(item.body === undefined ? {} : { body: item.body }),
              signal: AbortSignal.timeout(10_000),
            });
            status = response.statusCode;
            const bytes = new Uint8Array(await response.body.arrayBuffer());
            const type = String(response.headers['content-type'] ?? '');
            try {
              body = type.startsWith('application/cbor')
                ? decodeCbor(bytes)
                : JSON.parse(Buffer.from(bytes).toString());
            } catch {
              body = Buffer.from(bytes).toString().slice(0, 200);
            }
          } catch (error) {
            failures.push(
              `${item.kind} ${item.method} ${item.path.slice(0, 100)}: ${String(error)}`,
            );
            continue;
          }
          counts.set(item.kind, (counts.get(item.kind) ?? 0) + 1);
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
          const code = (body as { error?: { code?: unknown } } | undefined)?.error?.code;
          // uWebSockets.js answers 414 / 431 itself, before any handler, without a JSON body.
          const clear = typeof code === 'string' || status === 414 || status === 431;
          if (!item.allowed.includes(status) || !clear) {
            if (failures.length < 20) {
              failures.push(
                `${item.kind} ${item.method} ${item.path.slice(0, 100)} -> ${status} ${JSON.stringify(body)?.slice(0, 200)} (allowed ${item.allowed.join('/')})`,
              );
            } else failures.push('...');
          }
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, () => worker()));
    const seconds = (performance.now() - started) / 1000;
    await agent.close();
    const total = [...statuses.values()].reduce((a, b) => a + b, 0);
    console.log(
      `FUZZ: ${total} generated requests in ${seconds.toFixed(1)} s (${Math.round(total / seconds)} requests/s), statuses ${JSON.stringify(Object.fromEntries(statuses))}, by kind ${JSON.stringify(Object.fromEntries(counts))}`,
    );
    expect(failures.slice(0, 20)).toEqual([]);
    expect(total).toBeGreaterThanOrEqual(fuzzRequests);

    // Oversized bodies: the declared length is refused before the body is buffered.
    const big = new Uint8Array(600 * 1024);
    // An authorized client learns the size limit; an unsigned peer request may be refused for
    // its missing signature first.
    for (const [method, path, headers, allowed] of [
      ['PUT', '/v1/kv/known-0', bearer('readwrite'), [413]],
      ['POST', '/v1/members', adminJson, [413]],
      ['POST', '/raft/append', { 'content-type': 'application/cbor' }, [401, 413]],
    ] as const) {
      for (let k = 0; k < 20; k++) {
        const answer = await target.http('n1', method, path, { headers, body: big });
        expect(allowed, `${method} ${path}`).toContain(answer.status);
      }
    }
    const bigSigned = new Uint8Array(9 * 1024 * 1024);
    const bigHeaders = { 'content-type': 'application/cbor' };
    const tooBig = await target.http('n1', 'POST', '/raft/append', {
      headers: {
        ...bigHeaders,
        'x-phantomdb-signature': peerSigner.sign({
          method: 'POST',
          path: '/raft/append',
          headers: bigHeaders,
          body: bigSigned,
        }).header,
      },
      body: bigSigned,
      timeoutMs: 20_000,
    });
    expect(tooBig.status).toBe(413);

    // Raw TCP garbage and broken HTTP: refused or cut, never a crash.
    const port = target.node('n1').port;
    const rawCases = [
      ...Array.from({ length: 100 }, () => randomBytes(200)),
      Buffer.from(
        'GET /v1/status HTTP/1.1\r\nHost: x\r\n' + 'X-Long: ' + 'a'.repeat(20_000) + '\r\n\r\n',
      ),
      Buffer.from(
        'GET /v1/status HTTP/1.1\r\n' +
          Array.from({ length: 500 }, (_, k) => `X-H${k}: v`).join('\r\n') +
          '\r\n\r\n',
      ),
      Buffer.from('PUT /v1/kv/x HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\nabc'),
      Buffer.from('PUT /v1/kv/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n'),
      Buffer.from('GET / HTTP/9.9\r\n\r\n'),
      Buffer.from('\r\n\r\n\r\n'),
    ];
    await Promise.all(
      rawCases.map(
        (bytes) =>
          new Promise<void>((resolve) => {
            const socket = net.connect(port, '127.0.0.1', () => socket.end(bytes));
            socket.on('data', () => undefined);
            socket.on('error', () => resolve());
            socket.on('close', () => resolve());
            socket.setTimeout(3_000, () => socket.destroy());
          }),
      ),
    );

    // A flood of idle connections (uWS has no cap; see README "Limits"): the node still serves.
    const idle: net.Socket[] = [];
    await Promise.all(
      Array.from(
        { length: 2_000 },
        () =>
          new Promise<void>((resolve) => {
            const socket = net.connect(port, '127.0.0.1', () => resolve());
            socket.on('error', () => resolve());
            idle.push(socket);
          }),
      ),
    );
    const probeStarted = performance.now();
    const probe = await target.http('n1', 'GET', '/v1/kv/known-1', { headers: bearer('read') });
    const probeMs = performance.now() - probeStarted;
    for (const socket of idle) socket.destroy();
    expect(probe.status).toBe(200);
    console.log(
      `FUZZ: ${rawCases.length} raw TCP garbage sends; with ${idle.length} idle connections open a linearizable read took ${probeMs.toFixed(1)} ms`,
    );

    // Still serving, nothing changed.
    await sleep(200);
    expect(target.node('n1').state).toBe('running');
    const health = await target.http('n1', 'GET', '/healthz');
    expect(health.status).toBe(200);
    const after = await snapshot();
    expect(after).toEqual(before);
    console.log(
      `FUZZ: applied index ${after.applied}, term ${after.term}, ${after.keys} keys before and after; ${knownKeys} known keys read back unchanged`,
    );
    // Generous: a shared 2-core machine can be busy; alone this test takes about 16 s.
  }, 240_000);
});
