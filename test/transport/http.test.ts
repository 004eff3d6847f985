// Checks the shared HTTP helpers: content negotiation tables, error replies, and on a live
// server body limits at the boundary, the body watch (a stalled body fails at its deadline,
// nothing stays on the request after a read), CBOR error bodies and the JSON handlers.
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { decode as decodeCbor } from 'cbor-x';
import { Server } from 'hyper-express';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BadRequestError, NotLeaderError, PhantomError } from '../../src/errors.js';
import {
  closeServer,
  errorReplyOf,
  installErrorHandlers,
  mediaTypeOf,
  readBody,
  requireMediaType,
  responseFormatOf,
  sendBody,
  sendError,
  unlimitedBodyLength,
  watchBody,
} from '../../src/transport/http.js';
import { readPeerBody } from '../../src/security/authenticate.js';
import { captureLogger } from './helpers.js';

describe('content negotiation', () => {
  it('reads the media type without parameters or case', () => {
    expect(mediaTypeOf(' Application/CBOR ; charset=x')).toBe('application/cbor');
    expect(mediaTypeOf(undefined)).toBe('');
  });

  it('answers in the format Accept rates higher, else like the request, else JSON', () => {
    const cases: [Record<string, string>, 'json' | 'cbor'][] = [
      [{}, 'json'],
      [{ 'content-type': 'application/cbor' }, 'cbor'],
      [{ accept: 'application/cbor' }, 'cbor'],
      [{ accept: 'application/json' }, 'json'],
      [{ accept: 'application/json', 'content-type': 'application/cbor' }, 'json'],
      [{ accept: '*/*', 'content-type': 'application/cbor' }, 'cbor'],
      [{ accept: '*/*' }, 'json'],
      [{ accept: 'application/json;q=0.5, application/cbor' }, 'cbor'],
      [{ accept: 'application/cbor;q=0.2, application/*;q=0.9' }, 'json'],
      [{ accept: 'application/cbor;q=0, */*' }, 'json'],
      [{ accept: 'text/html', 'content-type': 'application/cbor' }, 'cbor'],
    ];
    for (const [headers, format] of cases)
      expect([headers, responseFormatOf(headers)]).toEqual([headers, format]);
  });

  it('refuses an unexpected Content-Type with UNSUPPORTED_MEDIA_TYPE', () => {
    expect(
      requireMediaType({ 'content-type': 'application/json; charset=utf-8' }, ['application/json']),
    ).toBe('application/json');
    let error: unknown;
    try {
      requireMediaType({}, ['application/cbor', 'application/json']);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(BadRequestError);
    expect(error).toMatchObject({
      code: 'UNSUPPORTED_MEDIA_TYPE',
      message:
        "Cannot accept body: Content-Type is 'missing', expected application/cbor or application/json",
    });
  });

  it('maps domain errors to their status and hides anything else behind 500', () => {
    expect(errorReplyOf(new NotLeaderError('n3'))).toEqual({
      status: 421,
      code: 'NOT_LEADER',
      message: 'Cannot propose: this node is not the leader; the leader is n3',
    });
    expect(errorReplyOf(new TypeError('secret detail'))).toEqual({
      status: 500,
      code: 'INTERNAL',
      message: 'Internal error; the server log has details',
    });
  });
});

describe('on a live server', () => {
  const { logger, lines } = captureLogger();
  let server: Server;
  let pool: Pool;

  let slowOutcome: Promise<string> | undefined;

  beforeAll(async () => {
    server = new Server({ auto_close: false });
    server.post('/echo', { max_body_length: unlimitedBodyLength }, async (request, response) => {
      try {
        const body = await readBody(request, 1000);
        sendBody(response, 200, body, 'application/octet-stream');
      } catch (error) {
        sendError(response, error, { format: responseFormatOf(request.headers), logger, request });
      }
    });
    server.post('/watched', { max_body_length: unlimitedBodyLength }, async (request, response) => {
      watchBody(request, response, 5_000);
      const body = await readBody(request, 1000);
      // Whatever watchBody hung on the request must be gone once the read is over.
      const linked = Object.getOwnPropertySymbols(request).some(
        (key) => (request as unknown as Record<symbol, unknown>)[key] !== undefined,
      );
      sendBody(response, 200, new TextEncoder().encode(`${body.length} ${linked}`), 'text/plain');
    });
    server.post(
      '/peer-watched',
      { max_body_length: unlimitedBodyLength },
      async (request, response) => {
        // Without a CBOR Content-Type the peer read is refused before any byte is read.
        const outcome = await readPeerBody(request, response, null, 1000, 5_000).then(
          () => 'read',
          (error: unknown) => (error as PhantomError).code,
        );
        const linked = Object.getOwnPropertySymbols(request).some(
          (key) => (request as unknown as Record<symbol, unknown>)[key] !== undefined,
        );
        sendBody(response, 200, new TextEncoder().encode(`${outcome} ${linked}`), 'text/plain');
      },
    );
    server.post('/slow', { max_body_length: unlimitedBodyLength }, async (request, response) => {
      watchBody(request, response, 300);
      slowOutcome = readBody(request, 1000).then(
        () => 'read',
        (error: unknown) => (error as Error).message,
      );
      sendBody(response, 200, new TextEncoder().encode(await slowOutcome), 'text/plain');
    });
    server.get('/busy', (request, response) => {
      sendError(response, new PhantomError('NO_LEADER', 'Cannot serve: no leader is known'), {
        format: responseFormatOf(request.headers),
        headers: { 'retry-after': '1' },
      });
    });
    server.get('/crash', () => {
      throw new Error('route bug');
    });
    installErrorHandlers(server, logger);
    await server.listen(0, '127.0.0.1');
    pool = new Pool(`http://127.0.0.1:${server.port}`);
  });

  afterAll(async () => {
    await pool.close();
    closeServer(server);
  });

  it('reads a body of exactly the limit and refuses one byte more with 413', async () => {
    const ok = await pool.request({ method: 'POST', path: '/echo', body: Buffer.alloc(1000, 7) });
    expect(ok.statusCode).toBe(200);
    expect(Buffer.from(await ok.body.arrayBuffer()).equals(Buffer.alloc(1000, 7))).toBe(true);
    const tooBig = await pool.request({ method: 'POST', path: '/echo', body: Buffer.alloc(1001) });
    expect(tooBig.statusCode).toBe(413);
    expect(await tooBig.body.json()).toEqual({
      error: {
        code: 'PAYLOAD_TOO_LARGE',
        message: 'Cannot accept body: it is 1001 bytes, more than the limit of 1000',
      },
    });
    const empty = await pool.request({ method: 'POST', path: '/echo' });
    expect(empty.statusCode).toBe(200);
    expect((await empty.body.arrayBuffer()).byteLength).toBe(0);
  });

  it('gives up on a body that stops arriving, after the watch deadline', async () => {
    // Headers and part of the body, then nothing: the read must fail at the deadline (300 ms,
    // checked every 250 ms), not wait forever.
    const socket = net.connect(server.port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write('POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789');
    const started = performance.now();
    for (let waited = 0; slowOutcome === undefined && waited < 2_000; waited += 10) await sleep(10);
    expect(await slowOutcome).toBe('Cannot read body: it did not arrive in time');
    expect(performance.now() - started).toBeGreaterThanOrEqual(250);
    socket.destroy();
  });

  it('leaves nothing of the body watch on a request once its body is read', async () => {
    // A request that kept its response reachable was copied by every scavenge until the next
    // mark-compact (see unwatchBody); the route reports what is still attached.
    const answer = await pool.request({ method: 'POST', path: '/watched', body: 'twelve bytes' });
    expect(answer.statusCode).toBe(200);
    expect(await answer.body.text()).toBe('12 false');
    const refused = await pool.request({ method: 'POST', path: '/peer-watched', body: 'x' });
    expect(await refused.body.text()).toBe('UNSUPPORTED_MEDIA_TYPE false');
  });

  it('writes errors as CBOR when asked, with extra headers', async () => {
    const response = await pool.request({
      method: 'GET',
      path: '/busy',
      headers: { accept: 'application/cbor' },
    });
    expect(response.statusCode).toBe(503);
    expect(response.headers['content-type']).toBe('application/cbor');
    expect(response.headers['retry-after']).toBe('1');
    expect(decodeCbor(Buffer.from(await response.body.arrayBuffer()))).toEqual({
      error: { code: 'NO_LEADER', message: 'Cannot serve: no leader is known' },
    });
  });

  it('answers unknown routes 404 and route bugs 500 as JSON, logging the bug', async () => {
    const missing = await pool.request({ method: 'DELETE', path: '/nowhere' });
    expect(missing.statusCode).toBe(404);
    expect(await missing.body.json()).toEqual({
      error: { code: 'NOT_FOUND', message: 'Cannot DELETE /nowhere: no such route' },
    });
    const crash = await pool.request({ method: 'GET', path: '/crash' });
    expect(crash.statusCode).toBe(500);
    expect(await crash.body.json()).toMatchObject({ error: { code: 'INTERNAL' } });
    expect(JSON.stringify(lines.filter((line) => line['level'] === 50))).toMatch(/route bug/);
  });
});
