// TLS with real processes and certificates made by openssl at test time: a 3-node cluster
// serving HTTPS only (secret, tokens, CA) elects a leader and commits writes over TLS, forwards
// over TLS, and ships to a second region over TLS; a client without the CA fails verification,
// with it succeeds, and one presenting a certificate from another CA is refused; a node with
// such a certificate (and even the right secret) cannot disrupt the cluster.
import { readFileSync } from 'node:fs';
import { Agent } from 'undici';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  SecureCluster,
  acquireMachineLock,
  bearer,
  call,
  clusterSecret,
  freePort,
  makeCertificates,
  securityTempDir,
  sleep,
  tearDownAfterAll,
  writeSecretFile,
  writeTokensFile,
  type Certificates,
  type Status,
} from './support.js';

let release: (() => Promise<void>) | undefined;
let cluster: SecureCluster | undefined;
let region: SecureCluster | undefined;
let dir = '';
let certificates: Certificates;
let commonArgs: string[] = [];

beforeAll(async () => {
  release = await acquireMachineLock();
  dir = await securityTempDir('tls-files');
  certificates = makeCertificates(dir);
  commonArgs = [
    '--cluster-secret-file',
    await writeSecretFile(dir, 'secret', clusterSecret),
    '--tokens-file',
    await writeTokensFile(dir),
    '--tls-cert',
    certificates.certFile,
    '--tls-key',
    certificates.keyFile,
    '--tls-ca',
    certificates.caFile,
  ];
  // Each cluster is kept as soon as it is up, and both are waited for, so that when one fails
  // to start the teardown still finds the other (and removes its files).
  const started = await Promise.allSettled([
    SecureCluster.start({
      size: 3,
      label: 'tls-us',
      certificates,
      args: [...commonArgs, '--region', 'us'],
    }).then((us) => (cluster = us)),
    SecureCluster.start({
      size: 1,
      label: 'tls-eu',
      certificates,
      args: [...commonArgs, '--region', 'eu'],
    }).then((eu) => (region = eu)),
  ]);
  for (const outcome of started) if (outcome.status === 'rejected') throw outcome.reason;
}, 60_000);

tearDownAfterAll(() => ({ release, clusters: [cluster, region], dir }));

/** The error code of a failed TLS request (undici wraps some in `cause`). */
function codeOf(error: unknown): string {
  const direct = (error as { code?: unknown }).code;
  const cause = (error as { cause?: { code?: unknown } }).cause?.code;
  return String(typeof cause === 'string' ? cause : direct);
}

describe('TLS between clients, peers and regions', () => {
  it('commits, forwards and ships over TLS; verifies the server against the CA', async () => {
    const us = cluster!;
    const eu = region!;
    const leader = await us.waitForLeader();
    const follower = us.nodes.find((node) => node.id !== leader.id)!;
    expect(leader.members.every((member) => member.url.startsWith('https://127.0.0.1:'))).toBe(
      true,
    );

    // A write through a follower: forwarded to the leader over TLS, replicated over TLS.
    const put = await us.http(follower.id, 'PUT', '/v1/kv/secure', {
      headers: bearer('readwrite'),
      body: 'over-tls',
    });
    expect(put.status, put.text).toBe(200);
    expect(put.headers['x-phantomdb-forwarded-to']).toBe(leader.id);
    for (const node of us.nodes) {
      const read = await us.http(node.id, 'GET', '/v1/kv/secure', { headers: bearer('read') });
      expect(read.status).toBe(200);
      expect(read.text).toBe('over-tls');
    }

    // Without the CA the client cannot verify the node; with it, it can.
    const noCa = new Agent();
    const withoutCa = await call(`${follower.baseUrl}/healthz`, { dispatcher: noCa }).then(
      () => 'verified',
      (error: unknown) => codeOf(error),
    );
    await noCa.close();
    expect(withoutCa).toMatch(
      /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT/,
    );
    const withCa = await us.http(follower.id, 'GET', '/healthz');
    expect(withCa.status).toBe(200);

    // A client certificate from another CA is refused at the handshake.
    const rogue = new Agent({
      connect: {
        ca: readFileSync(certificates.caFile),
        cert: readFileSync(certificates.rogueCertFile),
        key: readFileSync(certificates.rogueKeyFile),
      },
    });
    const rogueAnswer = await call(`${follower.baseUrl}/healthz`, { dispatcher: rogue }).then(
      (answer) => `answered ${answer.status}`,
      (error: unknown) => `refused: ${codeOf(error)}`,
    );
    await rogue.close();
    expect(rogueAnswer).toMatch(/^refused/);

    // Plain HTTP to a TLS listener gets no HTTP answer.
    const plain = await call(`http://127.0.0.1:${follower.port}/healthz`, {
      timeoutMs: 2_000,
    }).then(
      (answer) => `answered ${answer.status}`,
      () => 'no answer',
    );
    expect(plain).toBe('no answer');

    // Region traffic over TLS, signed with the region secret (the cluster secret here).
    const euUrl = eu.nodes[0]!.baseUrl;
    const added = await us.http(leader.id, 'POST', '/v1/regions', {
      headers: { ...bearer('admin'), 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'eu', url: euUrl }),
    });
    expect(added.status, added.text).toBe(200);
    const shipped = await us.http(leader.id, 'PUT', '/v1/kv/to-eu', {
      headers: bearer('readwrite'),
      body: 'shipped-over-tls',
    });
    expect(shipped.status).toBe(200);
    const deadline = Date.now() + 15_000;
    let seen = '';
    while (Date.now() < deadline) {
      const read = await eu.http('n1', 'GET', '/v1/kv/to-eu?consistency=stale', {
        headers: bearer('read'),
      });
      seen = `${read.status} ${read.text}`;
      if (read.status === 200) break;
      await sleep(100);
    }
    expect(seen).toBe('200 shipped-over-tls');
    const regions = await us.http(leader.id, 'GET', '/v1/regions', { headers: bearer('read') });
    const eus = (
      JSON.parse(regions.text) as { regions: { regionId: string; connected: boolean }[] }
    ).regions;
    expect(eus.find((r) => r.regionId === 'eu')?.connected).toBe(true);
    console.log(
      `TLS: leader ${leader.id}, write forwarded by ${follower.id} and shipped to eu over TLS; without the CA: ${withoutCa}; rogue client certificate: ${rogueAnswer}`,
    );
  }, 60_000);

  it('keeps a node with a certificate from another CA out, even with the right secret', async () => {
    const us = cluster!;
    const leader = await us.waitForLeader(['n1', 'n2', 'n3']);
    const port = await freePort();
    const peers = us.nodes
      .filter((node) => node.id !== 'n4')
      .map((node) => `${node.id}=${node.baseUrl}`);
    const secretFile = commonArgs[commonArgs.indexOf('--cluster-secret-file') + 1]!;
    // The harness checks its health with the rogue CA: it is the one that signed its listener.
    const rogueClient = new Agent({ connect: { ca: readFileSync(certificates.rogueCaFile) } });
    const intruder = us.add(
      'n4',
      port,
      [
        '--peers',
        [...peers, `n4=https://127.0.0.1:${port}`].join(','),
        '--election-ticks',
        '3',
        '--tick-ms',
        '50',
        '--cluster-secret-file',
        secretFile,
        '--tls-cert',
        certificates.rogueCertFile,
        '--tls-key',
        certificates.rogueKeyFile,
        '--tls-ca',
        certificates.caFile,
      ],
      rogueClient,
    );
    await intruder.start();
    await sleep(3_000);
    const statuses = (await Promise.all(['n1', 'n2', 'n3'].map((id) => us.status(id)))) as Status[];
    for (const status of statuses) {
      expect(status.term).toBe(leader.term);
      expect(status.members.map((m) => m.id).sort()).toEqual(['n1', 'n2', 'n3']);
    }
    const log = await us.log('n4');
    // Its pre-votes never got through the handshake.
    expect(log).toMatch(/Peer unreachable/);
    console.log(
      `TLS: a node with a rogue certificate campaigned for 3 s; the cluster stayed in term ${leader.term}`,
    );
    await intruder.kill();
    await rogueClient.close();
  }, 30_000);
});
