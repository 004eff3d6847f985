// Checks the peer routes on a live hyper-express server with raw undici requests: status codes
// and JSON errors for bad input, logging, handler failures, snapshot assembly, and a fuzz run.
import net from 'node:net';
import { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { Pool } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PhantomError, BadRequestError } from '../../src/errors.js';
import type { Message } from '../../src/raft/types.js';
import {
  decodeMessage,
  encodeMessage,
  encodeSnapshotChunk,
  type SnapshotChunk,
} from '../../src/transport/codec.js';
import {
  SnapshotAssembler,
  type PeerHandler,
  type PeerRequest,
} from '../../src/transport/server.js';
import {
  captureLogger,
  echoHandler,
  makeAppend,
  makeBatch,
  makeSnapshotRequest,
  messageArb,
  mutate,
  mutationArb,
  startPeerServer,
  type PeerServer,
} from './helpers.js';

const cbor = { 'content-type': 'application/cbor' };
const vote: Message = {
  type: 'vote',
  from: 'n1',
  to: 'n2',
  term: 4,
  preVote: false,
  lastLogIndex: 10,
  lastLogTerm: 3,
  transfer: false,
};

let peer: PeerServer;
let pool: Pool;
let calls: PeerRequest[];
let handler: PeerHandler;

beforeEach(async () => {
  calls = [];
  handler = echoHandler;
  peer = await startPeerServer(
    (request, data) => {
      calls.push(request);
      return handler(request, data);
    },
    {
      limits: {
        messageBodyBytesMax: 64 * 1024,
        snapshotChunkBodyBytesMax: 128 * 1024,
        snapshotChunkBytes: 32 * 1024,
      },
    },
  );
  pool = new Pool(peer.url, { connections: 4 });
});

afterEach(async () => {
  await pool.close();
  peer.close();
});

interface Reply {
  status: number;
  contentType: string;
  body: Buffer;
  json(): { error: { code: string; message: string } };
}

async function post(
  path: string,
  body: Uint8Array | string | Readable,
  headers: Record<string, string> = cbor,
  method: 'POST' | 'GET' | 'PUT' = 'POST',
): Promise<Reply> {
  const response = await pool.request({
    method,
    path,
    headers,
    body: method === 'GET' ? null : body,
  });
  const bytes = Buffer.from(await response.body.arrayBuffer());
  return {
    status: response.statusCode,
    contentType: String(response.headers['content-type'] ?? ''),
    body: bytes,
    json: () => JSON.parse(bytes.toString()) as { error: { code: string; message: string } },
  };
}

/** Asserts a JSON error answer and returns its message. */
function expectError(reply: Reply, status: number, code: string): string {
  expect(reply.status).toBe(status);
  expect(reply.contentType).toBe('application/json');
  const { error } = reply.json();
  expect(error.code).toBe(code);
  expect(typeof error.message).toBe('string');
  return error.message;
}

/** Asserts the server still answers a valid vote. */
async function expectServing(): Promise<void> {
  const reply = await post('/raft/vote', encodeMessage(vote));
  expect(reply.status).toBe(200);
  expect(decodeMessage(reply.body)).toMatchObject({
    type: 'voteResp',
    from: 'n2',
    to: 'n1',
    granted: true,
  });
}

describe('message routes', () => {
  it('answers each request type on its route with the handler response as CBOR', async () => {
    const append = makeAppend(makeBatch(6, 3, 10));
    const heartbeat: Message = {
      type: 'heartbeat',
      from: 'n1',
      to: 'n2',
      term: 4,
      commit: 3,
      context: 8,
    };
    for (const [path, message, type] of [
      ['/raft/vote', vote, 'voteResp'],
      ['/raft/append', append, 'appendResp'],
      ['/raft/append', heartbeat, 'heartbeatResp'],
    ] as const) {
      const reply = await post(path, encodeMessage(message));
      expect(reply.status).toBe(200);
      expect(reply.contentType).toBe('application/cbor');
      expect(decodeMessage(reply.body).type).toBe(type);
    }
    expect(calls.map((call) => call.type)).toEqual(['vote', 'append', 'heartbeat']);
    const appended = calls[1];
    expect(
      appended?.type === 'append' && Array.from(appended.entries.data.subarray(0, 10)),
    ).toEqual(new Array(10).fill(0));
  });

  it('answers 204 when the handler drops the request, and for timeout-now', async () => {
    handler = () => Promise.resolve(null);
    expect((await post('/raft/vote', encodeMessage(vote))).status).toBe(204);
    const timeoutNow: Message = { type: 'timeoutNow', from: 'n1', to: 'n2', term: 4 };
    const reply = await post('/raft/timeout-now', encodeMessage(timeoutNow));
    expect(reply.status).toBe(204);
    expect(reply.body.length).toBe(0);
  });

  it('refuses a message on the wrong route with 400', async () => {
    const message = expectError(
      await post('/raft/append', encodeMessage(vote)),
      400,
      'BAD_REQUEST',
    );
    expect(message).toMatch(/type 'vote' does not belong on \/raft\/append/);
    const response: Message = {
      type: 'voteResp',
      from: 'n1',
      to: 'n2',
      term: 1,
      preVote: false,
      granted: true,
    };
    expectError(await post('/raft/vote', encodeMessage(response)), 400, 'BAD_REQUEST');
    expect(calls).toEqual([]);
  });

  it('answers malformed and truncated CBOR with 400 naming the problem, and keeps serving', async () => {
    expect(
      expectError(await post('/raft/vote', Buffer.from([0xff, 0x00])), 400, 'BAD_REQUEST'),
    ).toMatch(/stray break code at byte 0/);
    const encoded = encodeMessage(vote);
    expect(
      expectError(
        await post('/raft/vote', encoded.subarray(0, encoded.length - 3)),
        400,
        'BAD_REQUEST',
      ),
    ).toMatch(/truncated|declares/);
    expect(expectError(await post('/raft/vote', new Uint8Array(0)), 400, 'BAD_REQUEST')).toMatch(
      /truncated at byte 0/,
    );
    await expectServing();
  });

  it('answers a body over the limit with 413, by Content-Length or while streaming', async () => {
    const huge = new Uint8Array(64 * 1024 + 1);
    expect(expectError(await post('/raft/append', huge), 413, 'PAYLOAD_TOO_LARGE')).toMatch(
      /65537 bytes, more than the limit of 65536/,
    );
    const chunked = Readable.from(
      (function* () {
        for (let k = 0; k < 40; k++) yield new Uint8Array(4096);
      })(),
    );
    expectError(await post('/raft/append', chunked), 413, 'PAYLOAD_TOO_LARGE');
    await expectServing();
  });

  it('reads a body sent with chunked transfer encoding', async () => {
    const encoded = encodeMessage(vote);
    const chunked = Readable.from([encoded.subarray(0, 5), encoded.subarray(5)]);
    const reply = await post('/raft/vote', chunked);
    expect(reply.status).toBe(200);
  });

  it('answers a wrong or missing Content-Type with 415', async () => {
    const body = encodeMessage(vote);
    expect(
      expectError(
        await post('/raft/vote', body, { 'content-type': 'application/json' }),
        415,
        'UNSUPPORTED_MEDIA_TYPE',
      ),
    ).toMatch(/Content-Type is 'application\/json', expected application\/cbor/);
    expectError(await post('/raft/vote', body, {}), 415, 'UNSUPPORTED_MEDIA_TYPE');
    // Parameters and case do not matter.
    expect(
      (await post('/raft/vote', body, { 'content-type': 'Application/CBOR; x=1' })).status,
    ).toBe(200);
  });

  it('answers unknown routes with 404 and wrong methods with 405', async () => {
    expect(expectError(await post('/raft/gossip', encodeMessage(vote)), 404, 'NOT_FOUND')).toMatch(
      /Cannot POST \/raft\/gossip: no such route/,
    );
    expectError(await post('/elsewhere', 'x', {}), 404, 'NOT_FOUND');
    const reply = await post('/raft/vote', '', {}, 'GET');
    expectError(reply, 405, 'METHOD_NOT_ALLOWED');
    const raw = await pool.request({ method: 'PUT', path: '/raft/append', body: 'x' });
    expect(raw.statusCode).toBe(405);
    expect(raw.headers['allow']).toBe('POST');
    await raw.body.dump();
  });

  it('answers 500 and logs when the handler throws, and keeps serving', async () => {
    handler = () => Promise.reject(new Error('disk on fire'));
    const message = expectError(await post('/raft/vote', encodeMessage(vote)), 500, 'INTERNAL');
    expect(message).not.toMatch(/disk on fire/);
    const line = peer.lines.find((entry) => entry['status'] === 500);
    expect(line).toMatchObject({ level: 50, code: 'INTERNAL', path: '/raft/vote' });
    expect(JSON.stringify(line)).toMatch(/disk on fire/);

    handler = () => {
      throw new Error('synchronous failure');
    };
    expectError(await post('/raft/vote', encodeMessage(vote)), 500, 'INTERNAL');

    handler = () =>
      Promise.reject(new PhantomError('SHUT_DOWN', 'Cannot step: the node is shut down'));
    expectError(await post('/raft/vote', encodeMessage(vote)), 503, 'SHUT_DOWN');

    handler = echoHandler;
    await expectServing();
  });

  it('answers 500 when the handler replies with the wrong message type', async () => {
    handler = () =>
      Promise.resolve({ type: 'heartbeatResp', from: 'n2', to: 'n1', term: 4, context: 0 });
    expectError(await post('/raft/vote', encodeMessage(vote)), 500, 'INTERNAL');
    expect(JSON.stringify(peer.lines)).toMatch(
      /answered a 'vote' request with a 'heartbeatResp' message/,
    );
  });

  it('logs 4xx answers at warn level with the route', async () => {
    await post('/raft/vote', Buffer.from([0x00]));
    expect(peer.lines.at(-1)).toMatchObject({
      level: 40,
      status: 400,
      code: 'BAD_REQUEST',
      method: 'POST',
      path: '/raft/vote',
    });
  });

  it('survives a connection that drops in the middle of a body, and garbage that is not HTTP', async () => {
    for (const raw of [
      'POST /raft/vote HTTP/1.1\r\nHost: x\r\nContent-Type: application/cbor\r\nContent-Length: 100\r\n\r\nabc',
      'NOT HTTP AT ALL\r\n\r\n',
      'POST /raft/vote HTTP/1.1\r\nContent-Length: -5\r\n\r\n',
    ]) {
      await new Promise<void>((resolve) => {
        const socket = net.connect(peer.port, '127.0.0.1', () => socket.end(raw));
        socket.on('error', () => resolve());
        socket.on('close', () => resolve());
        socket.resume();
      });
    }
    await expectServing();
  });

  it('refuses messages for another node when localId is set', async () => {
    const other = await startPeerServer(echoHandler, { localId: 'n3' });
    const otherPool = new Pool(other.url);
    try {
      const response = await otherPool.request({
        method: 'POST',
        path: '/raft/vote',
        headers: cbor,
        body: encodeMessage(vote),
      });
      expect(response.statusCode).toBe(404);
      expect(await response.body.json()).toMatchObject({
        error: {
          code: 'UNKNOWN_MEMBER',
          message: "Cannot deliver message: it is addressed to 'n2' but this node is 'n3'",
        },
      });
    } finally {
      await otherPool.close();
      other.close();
    }
  });

  it('answers 503 once the routes are closed', async () => {
    peer.routes.close();
    expectError(await post('/raft/vote', encodeMessage(vote)), 503, 'SHUT_DOWN');
  });

  it('closes a connection that pipelines requests, and keeps serving others', async () => {
    // uWebSockets.js (this fork) drops a connection whose requests arrive pipelined while an
    // earlier one is still waiting for its (asynchronous) answer; the client therefore never
    // pipelines. The server must not fall over either way.
    handler = async (request) => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      return echoHandler(request, undefined);
    };
    const body = encodeMessage(vote);
    const head = `POST /raft/vote HTTP/1.1\r\nHost: peer\r\nContent-Type: application/cbor\r\nContent-Length: ${body.length}\r\n\r\n`;
    const single = Buffer.concat([Buffer.from(head), body]);
    const received = await new Promise<Buffer>((resolve) => {
      const chunks: Buffer[] = [];
      const socket = net.connect(peer.port, '127.0.0.1', () =>
        socket.write(Buffer.concat([single, single, single])),
      );
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(Buffer.concat(chunks)));
      setTimeout(() => socket.destroy(), 2000).unref();
    });
    expect(received.toString('latin1').split('HTTP/1.1 200').length - 1).toBeLessThan(3);
    handler = echoHandler;
    await expectServing();
  });

  it('survives thousands of random and mutated bodies (fuzz) and keeps serving', async () => {
    const paths = ['/raft/vote', '/raft/append', '/raft/timeout-now', '/raft/snapshot'];
    const chunk = encodeSnapshotChunk({
      from: 'n1',
      transferId: 1,
      offset: 0,
      total: 4,
      done: true,
      data: new Uint8Array([1, 2, 3, 4]),
      request: makeSnapshotRequest(),
      crc32: crc32(new Uint8Array([1, 2, 3, 4])),
    });
    const bodies = fc.sample(
      fc.oneof(
        fc.uint8Array({ maxLength: 300 }),
        fc
          .tuple(messageArb, fc.array(mutationArb, { minLength: 1, maxLength: 3 }))
          .map(([message, mutations]) => mutate(encodeMessage(message), mutations)),
        fc
          .array(mutationArb, { minLength: 1, maxLength: 3 })
          .map((mutations) => mutate(chunk, mutations)),
      ),
      { numRuns: 3000, seed: 20240611 },
    );
    const statuses = new Map<number, number>();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < bodies.length) {
        const index = next++;
        const reply = await post(paths[index % paths.length]!, bodies[index]!);
        statuses.set(reply.status, (statuses.get(reply.status) ?? 0) + 1);
        if (reply.status >= 400) {
          expect(reply.contentType).toBe('application/json');
          expect(['BAD_REQUEST', 'UNKNOWN_MEMBER']).toContain(reply.json().error.code);
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    expect([...statuses.keys()].every((status) => [200, 204, 400].includes(status))).toBe(true);
    expect(statuses.get(400)).toBeGreaterThan(1000);
    expect(peer.lines.filter((line) => line['status'] === 500)).toEqual([]);
    await expectServing();
  });
});

describe('snapshot route', () => {
  function chunksOf(
    data: Uint8Array,
    chunkBytes: number,
    transferId = 1,
    from = 'n1',
  ): SnapshotChunk[] {
    const request = { ...makeSnapshotRequest(), from };
    const chunks: SnapshotChunk[] = [];
    for (let offset = 0; ; offset += chunkBytes) {
      const end = Math.min(data.length, offset + chunkBytes);
      const done = end === data.length;
      chunks.push({
        from,
        transferId,
        offset,
        total: data.length,
        done,
        data: data.subarray(offset, end),
        request: offset === 0 ? request : null,
        crc32: done ? crc32(data) : null,
      });
      if (done) return chunks;
    }
  }

  it('answers 204 per chunk and the handler response on the last, with the whole data', async () => {
    const data = Uint8Array.from({ length: 100_000 }, (_, k) => (k * 31) & 0xff);
    const received: Uint8Array[] = [];
    handler = (request, snapshotData) => {
      if (snapshotData !== undefined) received.push(snapshotData);
      return echoHandler(request, snapshotData);
    };
    const chunks = chunksOf(data, 30_000);
    expect(chunks).toHaveLength(4);
    for (const [k, chunk] of chunks.entries()) {
      const reply = await post('/raft/snapshot', encodeSnapshotChunk(chunk));
      if (k < chunks.length - 1) {
        expect(reply.status).toBe(204);
        expect(peer.routes.snapshotTransfers()).toEqual([
          { from: 'n1', transferId: 1, receivedBytes: (k + 1) * 30_000, totalBytes: 100_000 },
        ]);
      } else {
        expect(reply.status).toBe(200);
        expect(decodeMessage(reply.body)).toMatchObject({
          type: 'appendResp',
          matchIndex: 100,
          hintTerm: 100_000,
        });
      }
    }
    expect(received).toHaveLength(1);
    expect(Buffer.from(received[0]!).equals(Buffer.from(data))).toBe(true);
    expect(peer.routes.snapshotTransfers()).toEqual([]);
  });

  it('answers 400 for a chunk out of order and 413 for a snapshot over the limit', async () => {
    const chunks = chunksOf(new Uint8Array(10_000), 4_000);
    expect((await post('/raft/snapshot', encodeSnapshotChunk(chunks[0]!))).status).toBe(204);
    expect(
      expectError(
        await post('/raft/snapshot', encodeSnapshotChunk(chunks[2]!)),
        400,
        'BAD_REQUEST',
      ),
    ).toMatch(/offset is 8000, expected 4000/);
    const tooBig = await startPeerServer(echoHandler, { limits: { snapshotBytesMax: 1000 } });
    const tooBigPool = new Pool(tooBig.url);
    try {
      const response = await tooBigPool.request({
        method: 'POST',
        path: '/raft/snapshot',
        headers: cbor,
        body: encodeSnapshotChunk(chunks[0]!),
      });
      expect(response.statusCode).toBe(413);
      expect(await response.body.json()).toMatchObject({ error: { code: 'PAYLOAD_TOO_LARGE' } });
    } finally {
      await tooBigPool.close();
      tooBig.close();
    }
  });
});

describe('SnapshotAssembler', () => {
  const limits = {
    snapshotBytesMax: 1 << 20,
    snapshotTransfersMax: 2,
    snapshotTransferIdleMs: 60_000,
  };
  const request = makeSnapshotRequest();

  function chunk(
    overrides: Partial<SnapshotChunk> & Pick<SnapshotChunk, 'offset' | 'data'>,
  ): SnapshotChunk {
    const total = overrides.total ?? 6;
    const done = overrides.offset + overrides.data.length === total;
    return {
      from: 'n1',
      transferId: 1,
      total,
      done,
      request: overrides.offset === 0 ? request : null,
      crc32: done ? crc32(Uint8Array.from([1, 2, 3, 4, 5, 6])) : null,
      ...overrides,
    };
  }

  it('joins chunks in order and checks the CRC-32', () => {
    const assembler = new SnapshotAssembler(limits, captureLogger().logger);
    expect(assembler.accept(chunk({ offset: 0, data: Uint8Array.from([1, 2]) }))).toBeNull();
    expect(assembler.accept(chunk({ offset: 2, data: Uint8Array.from([3, 4]) }))).toBeNull();
    const whole = assembler.accept(chunk({ offset: 4, data: Uint8Array.from([5, 6]) }));
    expect(whole?.request).toEqual(request);
    expect(Array.from(whole?.data ?? [])).toEqual([1, 2, 3, 4, 5, 6]);
    expect(assembler.status()).toEqual([]);

    assembler.accept(chunk({ offset: 0, data: Uint8Array.from([1, 2, 3]) }));
    const error = (() => {
      try {
        assembler.accept(chunk({ offset: 3, data: Uint8Array.from([4, 5, 7]) }));
      } catch (caught) {
        return caught;
      }
      return null;
    })();
    expect(error).toBeInstanceOf(BadRequestError);
    expect((error as Error).message).toMatch(/CRC-32 is \d+, the sender computed \d+/);
    expect(assembler.status()).toEqual([]);
  });

  it('discards a partial transfer when its sender starts again at offset 0', () => {
    const { logger, lines } = captureLogger();
    const assembler = new SnapshotAssembler(limits, logger);
    assembler.accept(chunk({ offset: 0, data: Uint8Array.from([9, 9, 9]) }));
    assembler.accept(chunk({ offset: 0, transferId: 2, data: Uint8Array.from([1, 2]) }));
    expect(assembler.status()).toEqual([
      { from: 'n1', transferId: 2, receivedBytes: 2, totalBytes: 6 },
    ]);
    expect(lines.at(-1)?.['msg']).toMatch(/restarted/);
    expect(() =>
      assembler.accept(chunk({ offset: 2, transferId: 1, data: Uint8Array.from([3]) })),
    ).toThrow(/belongs to transfer 1 of 6 bytes, transfer 2 of 6 bytes is in progress/);
    assembler.accept(chunk({ offset: 2, transferId: 2, data: Uint8Array.from([3, 4]) }));
    const whole = assembler.accept(
      chunk({ offset: 4, transferId: 2, data: Uint8Array.from([5, 6]) }),
    );
    expect(Array.from(whole?.data ?? [])).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('refuses a continuation without a transfer, and more senders than the limit', () => {
    const assembler = new SnapshotAssembler(limits, captureLogger().logger);
    expect(() => assembler.accept(chunk({ offset: 2, data: Uint8Array.from([3]) }))).toThrow(
      /no transfer is in progress/,
    );
    assembler.accept(chunk({ offset: 0, from: 'n1', data: Uint8Array.from([1]) }));
    assembler.accept(chunk({ offset: 0, from: 'n3', data: Uint8Array.from([1]) }));
    let error: unknown;
    try {
      assembler.accept(chunk({ offset: 0, from: 'n4', data: Uint8Array.from([1]) }));
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(PhantomError);
    expect((error as PhantomError).code).toBe('TOO_MANY_REQUESTS');
    // A sender restarting its own transfer is not refused: it replaces its own slot.
    assembler.accept(chunk({ offset: 0, from: 'n3', transferId: 5, data: Uint8Array.from([1]) }));
    assembler.close();
    expect(assembler.status()).toEqual([]);
  });

  it('drops a transfer that stays idle', async () => {
    const { logger, lines } = captureLogger();
    const assembler = new SnapshotAssembler({ ...limits, snapshotTransferIdleMs: 30 }, logger);
    assembler.accept(chunk({ offset: 0, data: Uint8Array.from([1]) }));
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(assembler.status()).toEqual([]);
    expect(lines.at(-1)?.['msg']).toMatch(/idle too long/);
  });

  it('hands out a one-chunk snapshot and an empty one', () => {
    const assembler = new SnapshotAssembler(limits, captureLogger().logger);
    const data = Uint8Array.from([1, 2, 3, 4, 5, 6]);
    expect(Array.from(assembler.accept(chunk({ offset: 0, data }))?.data ?? [])).toEqual([
      1, 2, 3, 4, 5, 6,
    ]);
    const empty = assembler.accept(
      chunk({ offset: 0, total: 0, data: new Uint8Array(0), crc32: 0 }),
    );
    expect(empty?.data.length).toBe(0);
  });
});
