// Checks the connector whose sockets read into one shared buffer: every byte of every
// response arrives intact and in order (each read is copied out before the buffer is reused),
// across many reads, two connections at once, a chunked body, and a connection the server
// closes.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pooledReadConnector } from '../../src/transport/pooled-read.js';

/** A megabyte whose every 4-byte word holds its own offset, so a misplaced chunk shows. */
const numbered = (() => {
  const bytes = Buffer.alloc(1 << 20);
  for (let at = 0; at < bytes.length; at += 4) bytes.writeUInt32LE(at, at);
  return bytes;
})();

let server: http.Server;
let origin: string;

beforeAll(async () => {
  server = http.createServer((request, response) => {
    if (request.url === '/numbered') {
      response.end(numbered);
    } else if (request.url === '/chunked') {
      // Written in pieces with pauses between them: several reads, each of a few bytes.
      let piece = 0;
      const next = (): void => {
        if (piece === 5) return void response.end();
        response.write(`piece ${piece++};`);
        setTimeout(next, 5);
      };
      next();
    } else if (request.url === '/close') {
      response.setHeader('connection', 'close');
      response.end('closing');
    } else {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => response.end(`echo ${Buffer.concat(chunks).toString()}`));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

function client(): Client {
  return new Client(origin, { connect: pooledReadConnector(1_000) });
}

async function get(dispatcher: Client, path: string): Promise<Buffer> {
  const response = await dispatcher.request({ path, method: 'GET' });
  expect(response.statusCode).toBe(200);
  return Buffer.from(await response.body.arrayBuffer());
}

describe('pooledReadConnector', () => {
  it("hands undici copies from Node's Buffer pool, not buffers of their own per read", async () => {
    // Node's own reads give each chunk memory of its own, sized to what came; a pooled copy
    // shares an 8 KiB slab with others.
    for (const [connect, pooled] of [
      [pooledReadConnector(1_000), true],
      [undefined, false],
    ] as const) {
      const dispatcher = new Client(origin, connect === undefined ? {} : { connect });
      try {
        const response = await dispatcher.request({ path: '/', method: 'POST', body: 'x' });
        const chunks: Buffer[] = [];
        for await (const chunk of response.body) chunks.push(chunk as Buffer);
        expect(Buffer.concat(chunks).toString()).toBe('echo x');
        expect(chunks.every((chunk) => chunk.buffer.byteLength === Buffer.poolSize)).toBe(pooled);
      } finally {
        await dispatcher.close();
      }
    }
  });

  it('delivers a megabyte read in many pieces, from two connections at once, intact', async () => {
    const clients = [client(), client()];
    try {
      const bodies = await Promise.all(
        clients.flatMap((dispatcher) => [
          get(dispatcher, '/numbered'),
          get(dispatcher, '/numbered'),
        ]),
      );
      for (const body of bodies) expect(body.equals(numbered)).toBe(true);
    } finally {
      await Promise.all(clients.map((dispatcher) => dispatcher.close()));
    }
  });

  it('keeps a connection for many small answers, and a chunked body in order', async () => {
    const dispatcher = client();
    try {
      for (let k = 0; k < 50; k++) {
        const response = await dispatcher.request({ path: '/', method: 'POST', body: `n${k}` });
        expect(await response.body.text()).toBe(`echo n${k}`);
      }
      expect((await get(dispatcher, '/chunked')).toString()).toBe(
        'piece 0;piece 1;piece 2;piece 3;piece 4;',
      );
    } finally {
      await dispatcher.close();
    }
  });

  it('sees the end of a connection the server closes, and connects again', async () => {
    const dispatcher = client();
    let connections = 0;
    dispatcher.on('connect', () => connections++);
    try {
      expect((await get(dispatcher, '/close')).toString()).toBe('closing');
      const response = await dispatcher.request({ path: '/', method: 'POST', body: 'again' });
      expect(await response.body.text()).toBe('echo again');
      expect(connections).toBe(2);
    } finally {
      await dispatcher.close();
    }
  });

  it('fails a connection that cannot be made, as undici reports it', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const dispatcher = new Client(`http://127.0.0.1:${port}`, {
      connect: pooledReadConnector(1_000),
    });
    try {
      await expect(dispatcher.request({ path: '/', method: 'GET' })).rejects.toMatchObject({
        code: 'ECONNREFUSED',
      });
    } finally {
      await dispatcher.close();
    }
  });
});
