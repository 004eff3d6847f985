/**
 * The receiving side of the peer transport: the `/raft/*` routes on a hyper-express server.
 *
 * Each route reads the body under its size limit, decodes and validates it (codec.ts), hands
 * the request to the node's handler and answers with the handler's response as CBOR, or 204
 * when the core dropped the request. Every failure is answered as JSON
 * `{"error":{"code","message"}}` with the status of its code, and logged: 400 malformed body,
 * 413 too large, 415 wrong Content-Type, 404 unknown route or another node's message, 405 wrong
 * method, 429 too many snapshot transfers, 500 (logged with the error) when the handler throws.
 * With a `signer` (the cluster secret) a request without a valid signature is answered 401
 * before its body is decoded, and every answer is signed for its request.
 *
 * Snapshots arrive in chunks (`SnapshotChunk`); {@link SnapshotAssembler} joins them, holding
 * at most one partial transfer per sender and a bounded number overall, and the handler is
 * called once, with the whole snapshot, after its CRC-32 checks out.
 *
 * @example
 * ```ts
 * const server = new Server({ auto_close: false });
 * const routes = mountPeerRoutes(server, { handler: (m, data) => raft.handleMessage(m, data), logger });
 * installErrorHandlers(server, logger);
 * await server.listen(7001, '127.0.0.1');
 * // ... later
 * routes.close();
 * closeServer(server);
 * ```
 */
import type { Request, Response, Server } from 'hyper-express';
import type { Logger } from 'pino';
import { performance } from 'node:perf_hooks';
import { crc32 } from 'node:zlib';
import { assert } from '../assert.js';
import { resolveTransportLimits, securityDefaults, type TransportLimits } from '../config.js';
import { BadRequestError, PhantomError, ShutdownError } from '../errors.js';
import type {
  Message,
  NodeId,
  RequestMessage,
  SnapshotRequest,
  TimeoutNowRequest,
} from '../raft/types.js';
import { decodeMessage, decodeSnapshotChunk, encodeMessage, type SnapshotChunk } from './codec.js';
import { readPeerBody } from '../security/authenticate.js';
import { UnauthorizedError, type RequestSigner } from '../security/request-signer.js';
import { cborMediaType, sendBody, sendEmpty, sendError, unlimitedBodyLength } from './http.js';

/** A message a peer sends as a request: everything but the responses. */
export type PeerRequest = RequestMessage | TimeoutNowRequest;

/**
 * What the node does with a peer's request: step it into the core and resolve with the one
 * response the core produced for it, or null when the core dropped it. `snapshotData` is the
 * whole snapshot for a SnapshotRequest and undefined otherwise, so `RaftConsensus`'s
 * `handleMessage` fits as it is.
 */
export type PeerHandler = (
  request: PeerRequest,
  snapshotData: Uint8Array | undefined,
) => Promise<Message | null>;

/** The peer RPC routes (fixed by DESIGN.md). */
export const peerRoutePaths = {
  vote: '/raft/vote',
  append: '/raft/append',
  snapshot: '/raft/snapshot',
  timeoutNow: '/raft/timeout-now',
} as const;

/** Options of {@link mountPeerRoutes}. */
export interface PeerRoutesOptions {
  readonly handler: PeerHandler;
  readonly logger: Logger;
  readonly limits?: Partial<TransportLimits>;
  /**
   * This node's id. When set, a message addressed to another node is refused with 404
   * UNKNOWN_MEMBER, so a sender with a stale address book finds out instead of being ignored.
   */
  readonly localId?: NodeId;
  /**
   * Verifies every request's signature (the cluster secret) before its body is decoded and
   * signs the answers; a request without a valid one gets 401 UNAUTHORIZED and reaches nothing.
   * Default: none, every request is taken (a cluster without a secret).
   */
  readonly signer?: RequestSigner | null;
  /** How long a body may take to arrive (default `securityDefaults.bodyReadTimeoutMs`). */
  readonly bodyReadTimeoutMs?: number;
}

/** Handle on mounted peer routes. */
export interface PeerRoutes {
  /** Partial snapshot transfers held now, by sender (for status pages and tests). */
  snapshotTransfers(): SnapshotTransferStatus[];
  /** Drops partial transfers; later requests are answered 503 SHUT_DOWN. */
  close(): void;
}

/** Progress of one partial snapshot transfer. */
export interface SnapshotTransferStatus {
  readonly from: NodeId;
  readonly transferId: number;
  readonly receivedBytes: number;
  readonly totalBytes: number;
}

/** At most one log line per this interval about refused (unauthenticated) peer requests. */
const refusalLogIntervalMs = 10_000;

/** Which message types each message route takes, and the response type each expects. */
const typesByPath: Readonly<Record<string, readonly PeerRequest['type'][]>> = {
  [peerRoutePaths.vote]: ['vote'],
  [peerRoutePaths.append]: ['append', 'heartbeat'],
  [peerRoutePaths.timeoutNow]: ['timeoutNow'],
};

/** The response type each peer request expects (null: answered 204 without a message). */
export const responseTypeByRequestType: Readonly<
  Record<PeerRequest['type'], Message['type'] | null>
> = {
  vote: 'voteResp',
  append: 'appendResp',
  heartbeat: 'heartbeatResp',
  snapshot: 'appendResp',
  timeoutNow: null,
};

/**
 * Mounts `POST /raft/vote`, `/raft/append`, `/raft/snapshot` and `/raft/timeout-now` on
 * `server`, plus a `/raft/*` catch-all answering 405 (known path, wrong method) or 404. Call it
 * before `server.listen()`, which freezes the routes.
 */
export function mountPeerRoutes(server: Server, options: PeerRoutesOptions): PeerRoutes {
  const limits = resolveTransportLimits(options.limits);
  const { handler, logger, localId } = options;
  const signer = options.signer ?? null;
  const bodyReadTimeoutMs = options.bodyReadTimeoutMs ?? securityDefaults.bodyReadTimeoutMs;
  // Refused credentials are logged at most once per interval, with a count: an outsider
  // hammering the port must not be able to fill the disk with log lines.
  let refusedSinceLog = 0;
  let lastRefusalLogMs = Number.NEGATIVE_INFINITY;
  const answerError = (request: Request, response: Response, error: unknown): void => {
    if (!(error instanceof UnauthorizedError)) {
      sendError(response, error, { logger, request });
      return;
    }
    refusedSinceLog++;
    const now = performance.now();
    if (now - lastRefusalLogMs >= refusalLogIntervalMs) {
      logger.warn(
        { path: request.path, refused: refusedSinceLog, intervalMs: refusalLogIntervalMs },
        `Refused ${refusedSinceLog} unauthenticated peer request(s); the last: ${error.message}`,
      );
      refusedSinceLog = 0;
      lastRefusalLogMs = now;
    }
    sendError(response, error);
  };
  const assembler = new SnapshotAssembler(limits, logger);
  let closed = false;
  const routeOptions = { max_body_length: unlimitedBodyLength };

  const checkAddressee = (to: NodeId): void => {
    if (localId !== undefined && to !== localId) {
      throw new PhantomError(
        'UNKNOWN_MEMBER',
        `Cannot deliver message: it is addressed to '${to}' but this node is '${localId}'`,
      );
    }
  };

  const answer = async (
    request: PeerRequest,
    snapshotData: Uint8Array | undefined,
    response: Response,
  ): Promise<void> => {
    const reply = await handler(request, snapshotData);
    const expected = responseTypeByRequestType[request.type];
    // A wrong reply is a bug in the node, not in the peer: it gets 500 and a log line.
    assert(
      reply === null || reply.type === expected,
      () => `handler answered a '${request.type}' request with a '${reply?.type}' message`,
    );
    if (reply === null) {
      sendEmpty(response, 204);
    } else {
      sendBody(response, 200, encodeMessage(reply), cborMediaType);
    }
  };

  const onMessage = async (request: Request, response: Response): Promise<void> => {
    try {
      if (closed) throw new ShutdownError('Cannot accept peer message: the transport is closed');
      const body = await readPeerBody(
        request,
        response,
        signer,
        limits.messageBodyBytesMax,
        bodyReadTimeoutMs,
      );
      const message = decodeMessage(body, { depthMax: limits.cborDepthMax });
      const accepted = typesByPath[request.path] ?? [];
      if (!accepted.includes(message.type as PeerRequest['type'])) {
        throw new BadRequestError(
          `Cannot accept peer message: type '${message.type}' does not belong on ${request.path}`,
        );
      }
      checkAddressee(message.to);
      await answer(message as PeerRequest, undefined, response);
    } catch (error) {
      answerError(request, response, error);
    }
  };

  const onSnapshotChunk = async (request: Request, response: Response): Promise<void> => {
    try {
      if (closed) throw new ShutdownError('Cannot accept snapshot chunk: the transport is closed');
      const body = await readPeerBody(
        request,
        response,
        signer,
        limits.snapshotChunkBodyBytesMax,
        bodyReadTimeoutMs,
      );
      const chunk = decodeSnapshotChunk(body, { depthMax: limits.cborDepthMax });
      if (chunk.request !== null) checkAddressee(chunk.request.to);
      const snapshot = assembler.accept(chunk);
      if (snapshot === null) {
        sendEmpty(response, 204);
        return;
      }
      await answer(snapshot.request, snapshot.data, response);
    } catch (error) {
      answerError(request, response, error);
    }
  };

  const onOther = (request: Request, response: Response): void => {
    const known = Object.values<string>(peerRoutePaths).includes(request.path);
    const error = known
      ? new PhantomError('METHOD_NOT_ALLOWED', `Cannot ${request.method} ${request.path}: use POST`)
      : new PhantomError('NOT_FOUND', `Cannot ${request.method} ${request.path}: no such route`);
    sendError(response, error, { logger, request, headers: known ? { allow: 'POST' } : {} });
  };

  server.post(peerRoutePaths.vote, routeOptions, onMessage);
  server.post(peerRoutePaths.append, routeOptions, onMessage);
  server.post(peerRoutePaths.timeoutNow, routeOptions, onMessage);
  server.post(peerRoutePaths.snapshot, routeOptions, onSnapshotChunk);
  server.any('/raft/*', routeOptions, onOther);

  return {
    snapshotTransfers: () => assembler.status(),
    close: () => {
      closed = true;
      assembler.close();
    },
  };
}

/** A snapshot whose every chunk has arrived and whose CRC-32 matched. */
export interface AssembledSnapshot {
  readonly request: SnapshotRequest;
  readonly data: Uint8Array;
}

interface Transfer {
  readonly transferId: number;
  readonly request: SnapshotRequest;
  readonly totalBytes: number;
  readonly chunks: Uint8Array[];
  receivedBytes: number;
  readonly idleTimer: NodeJS.Timeout;
}

/**
 * Joins snapshot chunks into whole snapshots. Memory is bounded: one partial transfer per
 * sender (a chunk at offset 0 discards the sender's unfinished one), at most
 * `snapshotTransfersMax` at once, each at most `snapshotBytesMax`, each dropped after
 * `snapshotTransferIdleMs` without a chunk. Chunks are kept as received and copied once, at
 * the end, into the snapshot handed out.
 */
export class SnapshotAssembler {
  private readonly transfers = new Map<NodeId, Transfer>();

  constructor(
    private readonly limits: Pick<
      TransportLimits,
      'snapshotBytesMax' | 'snapshotTransfersMax' | 'snapshotTransferIdleMs'
    >,
    private readonly logger: Logger,
  ) {}

  /**
   * Takes the next chunk; returns the whole snapshot when `chunk` completes it, else null.
   * Throws {@link BadRequestError} for a chunk that does not continue its transfer (the
   * transfer in progress is kept), PAYLOAD_TOO_LARGE past `snapshotBytesMax`, and
   * TOO_MANY_REQUESTS when `snapshotTransfersMax` other senders are mid-transfer.
   */
  accept(chunk: SnapshotChunk): AssembledSnapshot | null {
    const { from } = chunk;
    if (chunk.total > this.limits.snapshotBytesMax) {
      throw new BadRequestError(
        `Cannot accept snapshot from ${from}: it is ${chunk.total} bytes, more than the limit of ${this.limits.snapshotBytesMax}`,
        'PAYLOAD_TOO_LARGE',
      );
    }
    let transfer = this.transfers.get(from);
    if (chunk.offset === 0) {
      assert(chunk.request !== null, 'decoded first chunk without its request');
      if (transfer !== undefined) {
        this.logger.info(
          { from, transferId: transfer.transferId, receivedBytes: transfer.receivedBytes },
          'Snapshot transfer restarted by its sender; the partial one is discarded',
        );
        this.discard(from, transfer);
      }
      if (this.transfers.size >= this.limits.snapshotTransfersMax) {
        throw new PhantomError(
          'TOO_MANY_REQUESTS',
          `Cannot accept snapshot from ${from}: ${this.transfers.size} other transfers are in progress`,
        );
      }
      transfer = {
        transferId: chunk.transferId,
        request: chunk.request,
        totalBytes: chunk.total,
        chunks: [],
        receivedBytes: 0,
        idleTimer: setTimeout(
          () => this.expire(from, chunk.transferId),
          this.limits.snapshotTransferIdleMs,
        ),
      };
      transfer.idleTimer.unref();
      this.transfers.set(from, transfer);
    } else {
      if (transfer === undefined) {
        throw new BadRequestError(
          `Cannot accept snapshot chunk from ${from}: no transfer is in progress (start again at offset 0)`,
        );
      }
      if (transfer.transferId !== chunk.transferId || transfer.totalBytes !== chunk.total) {
        throw new BadRequestError(
          `Cannot accept snapshot chunk from ${from}: it belongs to transfer ${chunk.transferId} of ${chunk.total} bytes, transfer ${transfer.transferId} of ${transfer.totalBytes} bytes is in progress`,
        );
      }
      if (chunk.offset !== transfer.receivedBytes) {
        throw new BadRequestError(
          `Cannot accept snapshot chunk from ${from}: offset is ${chunk.offset}, expected ${transfer.receivedBytes}`,
        );
      }
      transfer.idleTimer.refresh();
    }
    if (chunk.data.length > 0) transfer.chunks.push(chunk.data);
    transfer.receivedBytes += chunk.data.length;
    if (!chunk.done) return null;

    this.discard(from, transfer);
    const data = joinChunks(transfer.chunks, transfer.totalBytes);
    const checksum = crc32(data);
    if (checksum !== chunk.crc32) {
      throw new BadRequestError(
        `Cannot accept snapshot from ${from}: CRC-32 is ${checksum}, the sender computed ${String(chunk.crc32)}`,
      );
    }
    return { request: transfer.request, data };
  }

  /** Partial transfers held now. */
  status(): SnapshotTransferStatus[] {
    return [...this.transfers.entries()].map(([from, transfer]) => ({
      from,
      transferId: transfer.transferId,
      receivedBytes: transfer.receivedBytes,
      totalBytes: transfer.totalBytes,
    }));
  }

  /** Drops every partial transfer. */
  close(): void {
    for (const [from, transfer] of this.transfers) this.discard(from, transfer);
  }

  private expire(from: NodeId, transferId: number): void {
    const transfer = this.transfers.get(from);
    if (transfer === undefined || transfer.transferId !== transferId) return;
    this.logger.warn(
      { from, transferId, receivedBytes: transfer.receivedBytes, totalBytes: transfer.totalBytes },
      'Snapshot transfer idle too long; the partial one is discarded',
    );
    this.discard(from, transfer);
  }

  private discard(from: NodeId, transfer: Transfer): void {
    clearTimeout(transfer.idleTimer);
    if (this.transfers.get(from) === transfer) this.transfers.delete(from);
  }
}

function joinChunks(chunks: readonly Uint8Array[], totalBytes: number): Uint8Array {
  // One chunk is handed out as it is: a view into its request body, no copy.
  if (chunks.length === 1) return chunks[0]!;
  const data = new Uint8Array(totalBytes);
  let offset = 0;
  for (const chunk of chunks) {
    data.set(chunk, offset);
    offset += chunk.length;
  }
  assert(offset === totalBytes, () => `joined ${offset} snapshot bytes, expected ${totalBytes}`);
  return data;
}
