// Request signing (src/security/request-signer.ts): properties over generated requests — a
// signature verifies for exactly the request it was made for (any change of method, path,
// signed header or body byte, another secret or purpose, or a clock outside the window is
// 401) — the nonce guard never accepts a nonce twice under memory pressure, and end to end over
// hyper-express and undici: signed requests in, signed answers out, unsigned or altered
// answers refused by the sending side.
import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { Server } from 'hyper-express';
import { Client, type Dispatcher } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { readSignedBody } from '../../src/security/authenticate.js';
import {
  NonceGuard,
  RequestSigner,
  UnauthorizedError,
  composeInterceptors,
  signatureHeader,
  signedHeaders,
  type SignatureClaim,
  type SignedRequest,
} from '../../src/security/request-signer.js';
import { Secret } from '../../src/security/secret.js';
import { closeServer, sendBody, sendError, unlimitedBodyLength } from '../../src/transport/http.js';
import { freePort } from './support.js';

const secret = Secret.fromText('a-secret-of-enough-length-0123456789');

const requestArb: fc.Arbitrary<SignedRequest> = fc.record({
  method: fc.constantFrom('GET', 'PUT', 'POST', 'DELETE'),
  path: fc.webPath().map((path) => (path.startsWith('/') ? path : `/${path}`)),
  headers: fc.record(
    {
      'content-type': fc.constantFrom('application/cbor', 'application/json'),
      authorization: fc.string({ minLength: 1, maxLength: 20 }).map((t) => `Bearer ${t}`),
      'x-phantomdb-forwarded-by': fc.constantFrom('n1', 'n2'),
    },
    { requiredKeys: [] },
  ),
  body: fc.uint8Array({ maxLength: 512 }),
});

function verify(signer: RequestSigner, header: string, request: SignedRequest): void {
  const claim = signer.checkHeader({ ...request.headers, [signatureHeader]: header });
  signer.verify(claim, request);
}

describe('RequestSigner', () => {
  it('verifies a signature for the request it was made for, and for no other', () => {
    const signer = new RequestSigner(secret, 'peer');
    fc.assert(
      fc.property(
        requestArb,
        fc.nat(),
        fc.constantFrom('method', 'path', 'header', 'body'),
        (request, at, change) => {
          const { header } = signer.sign(request);
          verify(signer, header, request);
          let altered: SignedRequest;
          switch (change) {
            case 'method':
              altered = { ...request, method: request.method === 'PUT' ? 'POST' : 'PUT' };
              break;
            case 'path':
              altered = { ...request, path: `${request.path}x` };
              break;
            case 'header': {
              const name = signedHeaders[at % signedHeaders.length]!;
              altered = {
                ...request,
                headers: { ...request.headers, [name]: `${String(request.headers[name] ?? '')}!` },
              };
              break;
            }
            case 'body': {
              const body = Uint8Array.from(request.body);
              if (body.length === 0) {
                altered = { ...request, body: new Uint8Array([0]) };
              } else {
                body[at % body.length] = body[at % body.length]! ^ (1 << (at % 8));
                altered = { ...request, body };
              }
              break;
            }
          }
          expect(() => verify(signer, header, altered)).toThrow(UnauthorizedError);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('refuses another secret, another purpose, and a clock outside the window', () => {
    const request: SignedRequest = {
      method: 'POST',
      path: '/raft/vote',
      headers: {},
      body: new Uint8Array([1]),
    };
    const { header } = new RequestSigner(secret, 'peer').sign(request);
    const other = new RequestSigner(Secret.fromText('another-secret-of-enough-length-42'), 'peer');
    expect(() => verify(other, header, request)).toThrow(/does not match/);
    expect(() => verify(new RequestSigner(secret, 'region'), header, request)).toThrow(
      /does not match/,
    );
    let now = Date.now();
    const clocked = new RequestSigner(secret, 'peer', {
      now: () => now,
      limits: { authClockSkewMs: 5_000 },
    });
    const fresh = clocked.sign(request).header;
    now += 4_000;
    verify(clocked, fresh, request);
    now += 2_000;
    expect(() => verify(clocked, fresh, request)).toThrow(
      /6000 ms off this node's clock, more than the 5000 ms/,
    );
    now -= 12_000;
    expect(() => verify(clocked, fresh, request)).toThrow(/Stale/);
  });

  it('says what is wrong with a missing or malformed header, never the secret', () => {
    const signer = new RequestSigner(secret, 'peer');
    const messages: string[] = [];
    for (const value of [
      undefined,
      '',
      'v1',
      'v2 ts=1 nonce=x sig=y',
      `v1 ts=${Date.now()} nonce=short sig=short`,
      ['a', 'b'],
    ]) {
      try {
        signer.checkHeader(value === undefined ? {} : { [signatureHeader]: value });
      } catch (error) {
        expect(error).toBeInstanceOf(UnauthorizedError);
        messages.push((error as Error).message);
      }
    }
    expect(messages).toHaveLength(6);
    expect(messages[0]).toMatch(/^Missing x-phantomdb-signature/);
    expect(messages.slice(1).every((message) => message.startsWith('Malformed'))).toBe(true);
    for (const message of messages) expect(message).not.toContain(secret.revealText());
  });
});

describe('NonceGuard', () => {
  it('never accepts a nonce twice, however small its memory', () => {
    fc.assert(
      fc.property(
        // A pool of signed requests (a nonce and the timestamp signed with it), then arrivals
        // picking from the pool: a repeat of an index is a replay of that very request.
        fc.array(fc.integer({ min: 0, max: 5_000 }), { minLength: 1, maxLength: 40 }),
        fc.array(fc.nat(), { maxLength: 400 }),
        fc.integer({ min: 1, max: 20 }),
        (skews, arrivals, noncesMax) => {
          const now = 10_000;
          const guard = new NonceGuard(60_000, noncesMax, () => now);
          const accepted = new Set<number>();
          const arrived = new Set<number>();
          // Small memory: the guard may refuse more than needed, never accept a replay. With
          // room for every request, it refuses nothing but replays.
          const roomForAll = noncesMax >= skews.length;
          for (const pick of arrivals) {
            const index = pick % skews.length;
            const claim: SignatureClaim = {
              timestampMs: now - skews[index]!,
              nonce: `nonce-${String(index).padStart(16, '0')}`,
              mac: Buffer.alloc(32),
            };
            let taken = false;
            try {
              guard.accept(claim);
              taken = true;
            } catch (error) {
              expect(error).toBeInstanceOf(UnauthorizedError);
              if (roomForAll) expect(arrived.has(index)).toBe(true);
            }
            if (taken) {
              expect(accepted.has(index)).toBe(false);
              accepted.add(index);
            }
            arrived.add(index);
          }
        },
      ),
    );
  });

  it('forgets the oldest nonce when full and refuses everything not newer than it', () => {
    let now = 1_000_000;
    const guard = new NonceGuard(60_000, 1_024, () => now);
    const claim = (k: number, timestampMs: number): SignatureClaim => ({
      timestampMs,
      nonce: `n${k}`,
      mac: Buffer.alloc(32),
    });
    for (let k = 0; k < 1_024; k++) guard.accept(claim(k, now - 1_024 + k));
    guard.accept(claim(5_000, now));
    expect(guard.size).toBe(1_024);
    // n0 was forgotten: its replay is refused by the watermark, not accepted.
    expect(() => guard.accept(claim(0, now - 1_024))).toThrow(/older than the nonces/);
    expect(() => guard.accept(claim(7, now - 1_024 + 7))).toThrow(/already received/);
    now += 120_000;
    guard.accept(claim(9_999, now));
    expect(guard.size).toBe(1);
  });
});

describe('signed requests over HTTP', () => {
  const servers: Server[] = [];
  const clients: Dispatcher[] = [];
  afterAll(async () => {
    await Promise.all(clients.map((client) => client.close()));
    for (const server of servers) closeServer(server);
  });

  async function serve(answer: 'signed' | 'unsigned' | 'tampered'): Promise<string> {
    const server = new Server({ auto_close: false });
    const signer = new RequestSigner(secret, 'peer');
    server.post('/echo', { max_body_length: unlimitedBodyLength }, async (request, response) => {
      try {
        if (answer === 'unsigned') {
          sendBody(response, 200, 'not signed', 'text/plain');
          return;
        }
        const body = await readSignedBody(request, response, signer, 1024);
        if (answer === 'tampered') {
          response.header(
            signatureHeader,
            `v1 sig=${createHmac('sha256', 'x').update(body).digest('base64url')}`,
          );
          response.status(200).send(Buffer.from(body));
          return;
        }
        sendBody(response, 200, Buffer.concat([Buffer.from('echo:'), body]), 'text/plain');
      } catch (error) {
        sendError(response, error);
      }
    });
    const port = await freePort();
    await server.listen(port, '127.0.0.1');
    servers.push(server);
    return `http://127.0.0.1:${port}`;
  }

  async function post(
    origin: string,
    signer: RequestSigner | null,
    body: string,
  ): Promise<{ status: number; text: string }> {
    const client = composeInterceptors(
      new Client(origin),
      signer === null ? [] : [signer.interceptor()],
    );
    clients.push(client);
    const response = await client.request({
      method: 'POST',
      path: '/echo',
      body,
      headers: { 'content-type': 'text/plain' },
    });
    return { status: response.statusCode, text: await response.body.text() };
  }

  it('takes signed requests and signs the answers; refuses unsigned, wrongly signed and altered ones', async () => {
    const signedUrl = await serve('signed');
    const signer = new RequestSigner(secret, 'peer');
    expect(await post(signedUrl, signer, 'hello')).toEqual({ status: 200, text: 'echo:hello' });
    const unsigned = await post(signedUrl, null, 'hello');
    expect(unsigned.status).toBe(401);
    expect(unsigned.text).toMatch(/Missing x-phantomdb-signature/);
    // Another secret: the 401 comes back unsigned and is passed on as the failure it is.
    const wrong = await post(
      signedUrl,
      new RequestSigner(Secret.fromText('wrong-secret-0123456789abcdef'), 'peer'),
      'x',
    );
    expect(wrong.status).toBe(401);
    expect(wrong.text).toMatch(/does not match/);

    // The sending side refuses an answer that is not signed for its request.
    await expect(post(await serve('unsigned'), signer, 'x')).rejects.toThrow(/is not signed/);
    await expect(post(await serve('tampered'), signer, 'x')).rejects.toThrow(/invalid signature/);
  });
});
