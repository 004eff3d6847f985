// Checks HttpPeerTransport against live peer servers on free ports: every message type round
// trip, append ordering beside the control lane, dead and silent peers, backoff, chunked
// snapshots of several MiB, membership changes, malformed answers and shutdown.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import fc from 'fast-check';
import { Server } from 'hyper-express';
import { afterEach, describe, expect, it } from 'vitest';
import { PhantomError, ShutdownError } from '../../src/errors.js';
import { payloadOf } from '../../src/raft/batch.js';
import type { AppendRequest } from '../../src/raft/types.js';
import { encodeMessage } from '../../src/transport/codec.js';
import { closeServer } from '../../src/transport/http.js';
import {
  HttpPeerTransport,
  mergeAppends,
  PeerUnreachableError,
  type HttpPeerTransportOptions,
} from '../../src/transport/client.js';
import type { PeerHandler, PeerRequest } from '../../src/transport/server.js';
import {
  captureLogger,
  comparable,
  echoHandler,
  makeAppend,
  makeBatch,
  makeSnapshotRequest,
  messageArb,
  startPeerServer,
  type PeerServer,
} from './helpers.js';

/** Everything a test started, stopped after it whatever happens. */
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function peerServer(
  handler: PeerHandler,
  options: Parameters<typeof startPeerServer>[1] = {},
): Promise<PeerServer> {
  const peer = await startPeerServer(handler, options);
  cleanups.push(() => peer.close());
  return peer;
}

function transport(
  peers: Record<string, string>,
  options: HttpPeerTransportOptions = {},
): HttpPeerTransport {
  const created = new HttpPeerTransport({ peers: new Map(Object.entries(peers)), ...options });
  cleanups.push(() => created.close());
  return created;
}

/** A peer server whose answers to appends the test holds back until it calls `release`. */
interface GatedPeer {
  readonly url: string;
  /** Every append the peer received, in arrival order, held or not. */
  readonly arrivals: AppendRequest[];
  /** Lets the held appends, and every later one, be answered. */
  release(): void;
  /** Resolves once the first append has arrived (and is being held). */
  firstArrival(): Promise<void>;
}

/**
 * Starts a peer that records each append and holds `hold` of them ('first', or 'all' that come
 * before `release`); once released, appends are answered by `answerAppend`. Other requests
 * are answered at once by echoHandler.
 */
async function gatedPeer(
  hold: 'first' | 'all',
  answerAppend: PeerHandler = echoHandler,
): Promise<GatedPeer> {
  const arrivals: AppendRequest[] = [];
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const peer = await peerServer(async (request, data) => {
    if (request.type !== 'append') return echoHandler(request, data);
    arrivals.push(request);
    if (hold === 'all' || arrivals.length === 1) await gate;
    return answerAppend(request, data);
  });
  return {
    url: peer.url,
    arrivals,
    release,
    firstArrival: async () => {
      while (arrivals.length === 0) await new Promise((resolve) => setTimeout(resolve, 2));
    },
  };
}

/** A port nothing listens on (bound, read back, closed). */
async function deadPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A TCP server that accepts connections and never answers; counts connections. */
async function silentServer(): Promise<{ url: string; connections: () => number }> {
  const sockets = new Set<net.Socket>();
  let count = 0;
  const server = net.createServer((socket) => {
    count++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  );
  const { port } = server.address() as net.AddressInfo;
  return { url: `http://127.0.0.1:${port}`, connections: () => count };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection, got a result');
}

/** Asserts a PeerUnreachableError with `reason` whose message matches `pattern`. */
function expectFailure(error: unknown, reason: string, pattern: RegExp): void {
  expect(error).toBeInstanceOf(PeerUnreachableError);
  expect((error as PeerUnreachableError).reason).toBe(reason);
  expect((error as Error).message).toMatch(pattern);
}

const heartbeat = (context = 1): PeerRequest => ({
  type: 'heartbeat',
  from: 'n1',
  to: 'n2',
  term: 2,
  commit: 0,
  context,
});
const vote: PeerRequest = {
  type: 'vote',
  from: 'n1',
  to: 'n2',
  term: 4,
  preVote: true,
  lastLogIndex: 3,
  lastLogTerm: 2,
  transfer: false,
};

describe('round trips', () => {
  it('carries every request type and its response over HTTP intact (property)', async () => {
    const seen: { request: PeerRequest; data: Uint8Array | undefined }[] = [];
    const peer = await peerServer((request, data) => {
      seen.push({ request, data });
      return echoHandler(request, data);
    });
    const client = transport({ n2: peer.url });
    const requestArb = messageArb
      .filter((message): message is PeerRequest =>
        ['vote', 'append', 'heartbeat', 'snapshot', 'timeoutNow'].includes(message.type),
      )
      .map((message): PeerRequest => ({ ...message, from: 'n1', to: 'n2' }));
    await fc.assert(
      fc.asyncProperty(requestArb, fc.uint8Array({ maxLength: 5000 }), async (request, data) => {
        seen.length = 0;
        const snapshotData = request.type === 'snapshot' ? data : undefined;
        const response = await client.send(request, snapshotData);
        expect(seen).toHaveLength(1);
        expect(comparable(seen[0]!.request)).toEqual(comparable(request));
        const expected = await echoHandler(seen[0]!.request, seen[0]!.data);
        expect(response === null ? null : comparable(response)).toEqual(
          expected === null ? null : comparable(expected),
        );
        if (snapshotData !== undefined)
          expect(Buffer.from(seen[0]!.data!).equals(Buffer.from(data))).toBe(true);
      }),
      { numRuns: 150 },
    );
  });

  it('answers null for timeoutNow and for requests the core dropped', async () => {
    const peer = await peerServer(() => Promise.resolve(null));
    const client = transport({ n2: peer.url });
    expect(await client.send({ type: 'timeoutNow', from: 'n1', to: 'n2', term: 3 })).toBeNull();
    expect(await client.send(vote)).toBeNull();
  });
});

describe('ordering and lanes', () => {
  it('delivers appends to one peer in order, merging those queued behind the one in flight, while heartbeats pass them', async () => {
    const peer = await gatedPeer('all');
    const { arrivals } = peer;
    const client = transport({ n2: peer.url });
    const sent = Array.from({ length: 40 }, (_, k) => makeAppend(makeBatch(k * 4 + 1, 4, 100), 1));
    const appends = sent.map((append) => client.send(append));
    // The first append holds the replication connection; heartbeats use the control pool.
    await peer.firstArrival();
    const response = await client.send(heartbeat(7));
    expect(response).toMatchObject({ type: 'heartbeatResp', context: 7 });
    expect(arrivals.map((append) => append.prevLogIndex)).toEqual([0]);
    peer.release();
    const responses = await Promise.all(appends);
    // The other 39 waited together and went as one request, answered once, for the last.
    expect(arrivals.map((append) => append.prevLogIndex)).toEqual([0, 4]);
    const merged = arrivals[1]!;
    expect(merged.entries.count).toBe(39 * 4);
    expect(merged.commit).toBe(sent.at(-1)!.commit);
    for (let k = 1; k < 40; k++) {
      for (let j = 0; j < 4; j++) {
        expect(payloadOf(merged.entries, (k - 1) * 4 + j)).toEqual(payloadOf(sent[k]!.entries, j));
      }
    }
    expect(
      responses.map((reply) => (reply?.type === 'appendResp' ? reply.matchIndex : null)),
    ).toEqual([4, ...Array<null>(38).fill(null), 160]);
  });

  it('merges only appends that continue each other, keeping the order of the rest', async () => {
    const peer = await gatedPeer('first');
    const { arrivals } = peer;
    const client = transport({ n2: peer.url });
    const first = client.send(makeAppend(makeBatch(1, 2, 10), 1));
    await peer.firstArrival();
    const queued = [
      makeAppend(makeBatch(3, 2, 10), 1), // continues 1..2
      makeAppend(makeBatch(5, 1, 10), 1), // continues 3..4
      makeAppend(makeBatch(3, 3, 10), 1), // a probe back at 3: not a continuation
      makeAppend(makeBatch(6, 1, 10, 2), 2), // continues 3..5, but in a newer term
      makeAppend(makeBatch(7, 1, 10, 2), 2), // continues 6 in term 2
    ];
    const answers = queued.map((append) => client.send(append));
    peer.release();
    await Promise.all([first, ...answers]);
    expect(
      arrivals.map((append) => [append.term, append.prevLogIndex, append.entries.count]),
    ).toEqual([
      [1, 0, 2],
      [1, 2, 3],
      [1, 2, 3],
      [2, 5, 2],
    ]);
  });

  it('lets an append without entries wait a little for one with entries, then go alone', async () => {
    const arrivals: AppendRequest[] = [];
    const peer = await peerServer((request, data) => {
      if (request.type === 'append') arrivals.push(request);
      return echoHandler(request, data);
    });
    const client = transport({ n2: peer.url }, { limits: { commitLingerMs: 50 } });
    const commitOnly = { ...makeAppend(makeBatch(5, 0, 0), 1), commit: 4 };
    const lingering = client.send(commitOnly);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(arrivals).toHaveLength(0);
    const next = client.send({ ...makeAppend(makeBatch(5, 1, 10), 1), commit: 4 });
    expect(await lingering).toBeNull();
    expect(await next).toMatchObject({ type: 'appendResp', matchIndex: 5 });
    expect(
      arrivals.map((append) => [append.prevLogIndex, append.entries.count, append.commit]),
    ).toEqual([[4, 1, 4]]);

    const started = performance.now();
    const alone = await client.send({ ...makeAppend(makeBatch(6, 0, 0), 1), commit: 5 });
    expect(performance.now() - started).toBeGreaterThanOrEqual(45);
    expect(alone).toMatchObject({ type: 'appendResp', matchIndex: 5 });
    expect(arrivals).toHaveLength(2);
  });

  it('merges appends without entries into one with entries without copying them', () => {
    const data = makeAppend(makeBatch(5, 3, 10), 1);
    const merged = mergeAppends([
      { ...makeAppend(makeBatch(5, 0, 0), 1), commit: 3 },
      { ...data, commit: 4 },
      { ...makeAppend(makeBatch(8, 0, 0), 1), commit: 7 },
    ]);
    expect(merged.prevLogIndex).toBe(4);
    expect(merged.commit).toBe(7);
    expect(merged.entries).toBe(data.entries);
    const copied = mergeAppends([data, makeAppend(makeBatch(8, 2, 10), 1)]);
    expect([copied.entries.firstIndex, copied.entries.count]).toEqual([5, 5]);
    expect(payloadOf(copied.entries, 4)).toEqual(payloadOf(makeBatch(8, 2, 10), 1));
  });

  it('merges no further than the body limit', async () => {
    const peer = await gatedPeer('first');
    const { arrivals } = peer;
    const client = transport({ n2: peer.url }, { limits: { messageBodyBytesMax: 64 * 1024 } });
    const first = client.send(makeAppend(makeBatch(1, 1, 10), 1));
    await peer.firstArrival();
    // Ten appends of 10 KiB each: at most five fit in 64 KiB with the envelope.
    const rest = Array.from({ length: 10 }, (_, k) =>
      client.send(makeAppend(makeBatch(k + 2, 1, 10 * 1024), 1)),
    );
    peer.release();
    await Promise.all([first, ...rest]);
    const counts = arrivals.slice(1).map((append) => append.entries.count);
    expect(counts.reduce((sum, count) => sum + count, 0)).toBe(10);
    expect(Math.max(...counts)).toBeLessThanOrEqual(6);
    expect(counts.length).toBeGreaterThan(1);
  });
});

describe('failures and backoff', () => {
  it('counts a failed append once toward the backoff, even on a clock that stands still', async () => {
    // With a frozen clock the send and its failure share one timestamp, so a second count of
    // the same failure (once for the batch, once in send) would not be filtered out as stale.
    const port = await deadPort();
    const client = transport({ n2: `http://127.0.0.1:${port}` }, { now: () => 1000 });
    const error = await rejection(client.send(makeAppend(makeBatch(1, 1, 10), 1)));
    expect(error).toBeInstanceOf(PeerUnreachableError);
    expect(error).toMatchObject({ reason: 'network' });
    expect(client.peerStatus().get('n2')?.consecutiveFailures).toBe(1);
  });

  it('reports a refused connection at once as PeerUnreachableError', async () => {
    const port = await deadPort();
    const { logger, lines } = captureLogger();
    const client = transport(
      { n2: `http://127.0.0.1:${port}` },
      { logger, limits: { rpcTimeoutMs: 5000 } },
    );
    const started = performance.now();
    const error = await rejection(client.send(vote));
    expect(performance.now() - started).toBeLessThan(1000);
    expect(error).toBeInstanceOf(PeerUnreachableError);
    expect(error).toMatchObject({
      code: 'PEER_UNREACHABLE',
      reason: 'network',
      peerId: 'n2',
      httpStatus: 503,
    });
    expect((error as Error).message).toMatch(
      /Cannot send vote to n2 at http:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/,
    );
    expect(lines.filter((line) => line['level'] === 40)).toHaveLength(1);
  });

  it('times out a peer that accepts connections but never answers, then backs off', async () => {
    const silent = await silentServer();
    const client = transport(
      { n2: silent.url },
      { limits: { rpcTimeoutMs: 300, backoffBaseMs: 400, backoffMaxMs: 400 } },
    );
    const started = performance.now();
    const error = await rejection(client.send(vote));
    const elapsed = performance.now() - started;
    expect(error).toMatchObject({ reason: 'timeout' });
    expect((error as Error).message).toMatch(/no answer within 300 ms/);
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(1500);

    const connections = silent.connections();
    const status = client.peerStatus().get('n2');
    expect(status?.consecutiveFailures).toBe(1);
    expect(status?.backoffRemainingMs).toBeGreaterThan(0);
    expect(status?.backoffRemainingMs).toBeLessThanOrEqual(400);
    const fast = performance.now();
    const backoff = await rejection(client.send(vote));
    expect(backoff).toMatchObject({ reason: 'backoff' });
    expect((backoff as Error).message).toMatch(
      /Cannot send vote to n2: it failed once; next try in \d+ ms/,
    );
    expect(performance.now() - fast).toBeLessThan(50);
    expect(silent.connections()).toBe(connections);
  });

  it('counts requests failing together in one outage as one failure', async () => {
    const silent = await silentServer();
    const client = transport({ n2: silent.url }, { limits: { rpcTimeoutMs: 200 } });
    const errors = await Promise.all(
      Array.from({ length: 6 }, (_, k) => rejection(client.send(heartbeat(k)))),
    );
    expect(
      errors.every((error) => error instanceof PeerUnreachableError && error.reason === 'timeout'),
    ).toBe(true);
    expect(client.peerStatus().get('n2')?.consecutiveFailures).toBe(1);
  });

  it('fails the appends queued behind a failed one without sending them', async () => {
    const peer = await gatedPeer('all', () => Promise.reject(new Error('disk on fire')));
    const client = transport(
      { n2: peer.url },
      { limits: { backoffBaseMs: 2000, backoffMaxMs: 2000 } },
    );
    const first = rejection(client.send(makeAppend(makeBatch(1, 1, 10), 1)));
    await peer.firstArrival();
    const queued = [2, 3, 4].map((index) =>
      rejection(client.send(makeAppend(makeBatch(index, 1, 10), 1))),
    );
    peer.release();
    expect(await first).toMatchObject({ reason: 'status', status: 500 });
    for (const error of await Promise.all(queued)) {
      expect(error).toMatchObject({ reason: 'backoff' });
    }
    expect(peer.arrivals).toHaveLength(1);
    expect(client.peerStatus().get('n2')?.consecutiveFailures).toBe(1);
  });

  it('refuses a malformed append as a caller mistake, and the next one still goes', async () => {
    const peer = await peerServer(echoHandler);
    const client = transport({ n2: peer.url });
    const malformed = { ...makeAppend(makeBatch(5, 1, 10), 1), prevLogIndex: 2 };
    const error = await rejection(client.send(malformed));
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toMatch(/entries.firstIndex is 5, expected 3/);
    expect(client.peerStatus().get('n2')?.consecutiveFailures ?? 0).toBe(0);
    const answer = await client.send(makeAppend(makeBatch(1, 1, 10), 1));
    expect(answer).toMatchObject({ type: 'appendResp' });
  });

  it('doubles the delay per failure up to the maximum, with jitter', async () => {
    const port = await deadPort();
    let now = 1000;
    const delays = (random: number): Promise<number[]> => {
      const client = transport(
        { n2: `http://127.0.0.1:${port}` },
        { now: () => now, random: () => random, limits: { backoffBaseMs: 40, backoffMaxMs: 200 } },
      );
      return (async () => {
        const seen: number[] = [];
        for (let k = 0; k < 6; k++) {
          await rejection(client.send(vote));
          const remaining = client.peerStatus().get('n2')!.backoffRemainingMs;
          seen.push(remaining);
          now += remaining;
        }
        return seen;
      })();
    };
    // Equal jitter: half the ceiling plus random * half.
    expect(await delays(0)).toEqual([20, 40, 80, 100, 100, 100]);
    expect(await delays(0.5)).toEqual([30, 60, 120, 150, 150, 150]);
  });

  it('reports error answers with their status and code, and one success ends the backoff', async () => {
    let failing = true;
    const peer = await peerServer((request, data) =>
      failing ? Promise.reject(new Error('boom')) : echoHandler(request, data),
    );
    const { logger, lines } = captureLogger();
    const client = transport(
      { n2: peer.url },
      { logger, limits: { backoffBaseMs: 20, backoffMaxMs: 20 } },
    );
    const error = await rejection(client.send(vote));
    expect(error).toMatchObject({ reason: 'status', status: 500, peerCode: 'INTERNAL' });
    expect((error as Error).message).toMatch(
      /Cannot send vote to n2: it answered 500 INTERNAL: Internal error/,
    );
    failing = false;
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(await client.send(vote)).toMatchObject({ type: 'voteResp' });
    expect(client.peerStatus().get('n2')).toMatchObject({
      consecutiveFailures: 0,
      backoffRemainingMs: 0,
    });
    expect(lines.at(-1)).toMatchObject({ level: 30, msg: 'Peer reachable again', peer: 'n2' });
  });

  it('reports malformed answers, wrong response types and oversized answers', async () => {
    const server = new Server({ auto_close: false });
    server.post('/raft/vote', (_request, response) => {
      response
        .status(200)
        .header('content-type', 'application/cbor')
        .send(Buffer.from([0xff]));
    });
    server.post('/prefix/raft/vote', (_request, response) => {
      const wrong = encodeMessage({
        type: 'heartbeatResp',
        from: 'n2',
        to: 'n1',
        term: 4,
        context: 0,
      });
      response.status(200).header('content-type', 'application/cbor').send(Buffer.from(wrong));
    });
    server.post('/raft/append', (_request, response) => {
      response.status(200).send(Buffer.alloc(4096));
    });
    server.post('/raft/timeout-now', (_request, response) => {
      response.status(200).send(Buffer.from(encodeMessage(vote)));
    });
    await server.listen(0, '127.0.0.1');
    cleanups.push(() => closeServer(server));
    const base = `http://127.0.0.1:${server.port}`;
    const client = transport(
      { n2: base, n3: `${base}/prefix/` },
      { limits: { backoffBaseMs: 0, backoffMaxMs: 0, messageBodyBytesMax: 2048 } },
    );
    expectFailure(await rejection(client.send(vote)), 'malformed', /stray break/);
    expectFailure(
      await rejection(client.send({ ...vote, to: 'n3' })),
      'malformed',
      /answered with heartbeatResp from n2 to n1, expected voteResp from n3 to n1/,
    );
    expectFailure(
      await rejection(client.send(makeAppend(makeBatch(1, 1, 1)))),
      'malformed',
      /larger than 2048 bytes/,
    );
    expectFailure(
      await rejection(client.send({ type: 'timeoutNow', from: 'n1', to: 'n2', term: 1 })),
      'malformed',
      /it answered 200/,
    );
  });
});

describe('snapshots', () => {
  it('sends a snapshot of several MiB in chunks that arrives intact', async () => {
    const data = new Uint8Array(randomBytes(6 * 1024 * 1024 + 123));
    const received: Uint8Array[] = [];
    const chunkBytes = 1024 * 1024;
    // The receiver refuses bodies much over one chunk: the snapshot can only arrive in pieces.
    const peer = await peerServer(
      (request, snapshotData) => {
        if (snapshotData !== undefined) received.push(snapshotData);
        return echoHandler(request, snapshotData);
      },
      {
        limits: {
          snapshotChunkBytes: chunkBytes,
          snapshotChunkBodyBytesMax: chunkBytes + 64 * 1024,
        },
      },
    );
    const client = transport({ n2: peer.url }, { limits: { snapshotChunkBytes: chunkBytes } });
    const response = await client.send(makeSnapshotRequest(500, 7), data);
    expect(response).toMatchObject({
      type: 'appendResp',
      from: 'n2',
      to: 'n1',
      matchIndex: 500,
      hintTerm: data.length,
    });
    expect(received).toHaveLength(1);
    expect(Buffer.from(received[0]!).equals(Buffer.from(data))).toBe(true);
    expect(peer.routes.snapshotTransfers()).toEqual([]);
  });

  it('fails with the 413 of a receiver whose limit the snapshot or chunk exceeds', async () => {
    const peer = await peerServer(echoHandler, { limits: { snapshotBytesMax: 1000 } });
    const client = transport({ n2: peer.url }, { limits: { backoffBaseMs: 0, backoffMaxMs: 0 } });
    expect(await rejection(client.send(makeSnapshotRequest(), new Uint8Array(1001)))).toMatchObject(
      {
        reason: 'status',
        status: 413,
        peerCode: 'PAYLOAD_TOO_LARGE',
      },
    );
    const small = await peerServer(echoHandler, {
      limits: { snapshotChunkBodyBytesMax: 96 * 1024, snapshotChunkBytes: 16 * 1024 },
    });
    const bigChunks = transport({ n2: small.url }, { limits: { snapshotChunkBytes: 128 * 1024 } });
    expect(
      await rejection(bigChunks.send(makeSnapshotRequest(), new Uint8Array(200 * 1024))),
    ).toMatchObject({
      status: 413,
    });
  });
});

describe('membership and lifecycle', () => {
  it('follows setPeers: added, moved and removed peers', async () => {
    const first = await peerServer(echoHandler, { localId: 'n2' });
    const second = await peerServer(echoHandler, { localId: 'n2' });
    const client = transport({});
    const unknown = await rejection(client.send(vote));
    expect(unknown).toBeInstanceOf(PhantomError);
    expect(unknown).toMatchObject({
      code: 'UNKNOWN_MEMBER',
      message: 'Cannot send vote to n2: no address is known for it',
    });

    client.setPeers(new Map([['n2', first.url]]));
    expect(await client.send(vote)).toMatchObject({ type: 'voteResp' });
    client.setPeers(new Map([['n2', second.url]]));
    expect(client.peerStatus().get('n2')?.url).toBe(second.url);
    expect(await client.send(vote)).toMatchObject({ type: 'voteResp' });

    expect(() =>
      client.setPeers(
        new Map([
          ['n2', first.url],
          ['n3', 'ftp://x'],
        ]),
      ),
    ).toThrow(
      new TypeError("Invalid URL for peer n3: 'ftp://x' (expected http(s)://host:port[/prefix])"),
    );
    expect(() => client.setPeers(new Map([['n3', 'not a url']]))).toThrow(TypeError);
    expect(client.peerStatus().get('n2')?.url).toBe(second.url);

    client.setPeers(new Map());
    expect(await rejection(client.send(vote))).toMatchObject({ code: 'UNKNOWN_MEMBER' });
  });

  it('refuses responses as requests and misplaced snapshot data with TypeError', async () => {
    const client = transport({ n2: 'http://127.0.0.1:1' });
    const response = {
      type: 'voteResp',
      from: 'n1',
      to: 'n2',
      term: 1,
      preVote: false,
      granted: true,
    };
    expect(await rejection(client.send(response as unknown as PeerRequest))).toBeInstanceOf(
      TypeError,
    );
    expect(await rejection(client.send(makeSnapshotRequest()))).toBeInstanceOf(TypeError);
    expect(await rejection(client.send(vote, new Uint8Array(1)))).toBeInstanceOf(TypeError);
  });

  it('fails sends in flight and after close with ShutdownError', async () => {
    const silent = await silentServer();
    const client = transport({ n2: silent.url }, { limits: { rpcTimeoutMs: 5000 } });
    const inFlight = rejection(client.send(vote));
    await new Promise((resolve) => setTimeout(resolve, 50));
    await client.close();
    expect(await inFlight).toBeInstanceOf(ShutdownError);
    expect(await rejection(client.send(vote))).toBeInstanceOf(ShutdownError);
    expect(() => client.setPeers(new Map())).toThrow(ShutdownError);
  });
});
