// Admission limits of a node (in-process, tokens on, tiny limits): requests held open by
// clients that send headers and half a body count as in flight, so the next one of the same
// token gets 429 and, once the node's total is reached, anyone gets 503 OVERLOADED, each with
// the reason in the JSON error; /healthz still answers; and when those clients disconnect their
// slots come back (hyper-express never settles the body read of a vanished client by itself).
import net from 'node:net';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { call, cleanUp, startInProcessNode, tempDir } from '../node/helpers.js';
import type { PhantomNode } from '../../src/node/node.js';
import { bearer, tokens, writeTokensFile } from './support.js';

const started: PhantomNode[] = [];

afterAll(async () => {
  await Promise.all(started.map((node) => node.stop()));
  await cleanUp();
});

/** Opens a PUT whose body never finishes: the request stays in flight on the node. */
function holdRequest(port: number, token: string, key: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.write(
        `PUT /v1/kv/${key} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: 100\r\n\r\nhalf`,
      );
      resolve(socket);
    });
    socket.on('error', reject);
  });
}

describe('admission limits', () => {
  it('answers 429 per client and 503 per node past the limits, and frees slots of vanished clients', async () => {
    const dir = await tempDir('phantomdb-limits-');
    const tokensFile = await writeTokensFile(dir);
    const { node, url } = await startInProcessNode(
      ['--tokens-file', tokensFile, '--client-inflight-max', '3', '--inflight-max', '5'],
      { dataDir: path.join(dir, 'n1') },
    );
    started.push(node);
    const port = Number(new URL(url).port);
    const put = (token: keyof typeof tokens, key: string) =>
      call('PUT', `${url}/v1/kv/${key}`, { headers: bearer(token), body: 'v', timeoutMs: 5_000 });
    expect((await put('readwrite', 'warm-up')).status).toBe(200);

    const held: net.Socket[] = [];
    for (let k = 0; k < 3; k++) held.push(await holdRequest(port, tokens.readwrite, `held-${k}`));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const perClient = await put('readwrite', 'one-more');
    expect(perClient.status).toBe(429);
    expect(perClient.headers.get('retry-after')).toBe('1');
    expect(perClient.json()).toMatchObject({ error: { code: 'TOO_MANY_REQUESTS' } });
    expect(perClient.json<{ error: { message: string } }>().error.message).toMatch(
      /this client has 3 requests in flight, the limit is 3/,
    );
    // Another client is not affected until the node's total is reached.
    expect((await put('admin', 'other-client')).status).toBe(200);
    for (let k = 0; k < 2; k++) held.push(await holdRequest(port, tokens.admin, `held-admin-${k}`));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const total = await call('GET', `${url}/v1/kv/warm-up`, { headers: bearer('read') });
    expect(total.status).toBe(503);
    expect(total.json()).toMatchObject({ error: { code: 'OVERLOADED' } });
    expect(total.json<{ error: { message: string } }>().error.message).toMatch(
      /5 requests are in flight on this node, the limit is 5/,
    );
    // Probes are not client work: they still answer.
    expect((await call('GET', `${url}/healthz`)).status).toBe(200);

    // The clients vanish: their requests end and the slots come back.
    for (const socket of held) socket.destroy();
    const deadline = Date.now() + 3_000;
    let status = 0;
    while (Date.now() < deadline) {
      status = (await put('readwrite', 'after')).status;
      if (status === 200) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(status).toBe(200);
    expect((await call('GET', `${url}/v1/kv/held-0`, { headers: bearer('read') })).status).toBe(
      404,
    );
  }, 30_000);
});
