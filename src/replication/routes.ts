/**
 * The receiving side of region replication: `POST /v1/replication/batch` and
 * `POST /v1/replication/heartbeat` on a hyper-express server (the node's listener, or the one a
 * ConsensusManager opens with `listen`). Bodies are CBOR (wire.ts). Errors are
 * `{"error":{"code","message"}}` in JSON, or CBOR when asked, with the status of their code; a
 * node that is not its region's leader answers 421 NOT_LEADER (503 NO_LEADER when it knows no
 * leader) with the leader's client URL in `leaderUrl` and in the `x-phantomdb-leader-url`
 * header, and the sender goes there. With a region secret (`signer`), every request must be
 * signed (src/security/request-signer.ts) and every answer is: 401 UNAUTHORIZED otherwise.
 */
import { performance } from 'node:perf_hooks';
import type { Request, Response, Server } from 'hyper-express';
import { encode as encodeCbor } from 'cbor-x';
import type { Logger } from 'pino';
import { PhantomError } from '../errors.js';
import { readPeerBody } from '../security/authenticate.js';
import type { RequestSigner } from '../security/request-signer.js';
import {
  cborMediaType,
  errorReplyOf,
  jsonMediaType,
  responseFormatOf,
  sendBody,
  unlimitedBodyLength,
} from '../transport/http.js';
import { securityDefaults } from '../config.js';
import type { ReplicationManager } from './replication-manager.js';
import { RegionNotLeaderError } from './types.js';
import {
  decodeHeartbeatRequest,
  decodeShipRequest,
  encodeBody,
  replicationRoutePaths,
  type RegionAnswer,
} from './wire.js';

/** Header naming the region leader's client URL on a 421 answer. */
export const leaderUrlHeader = 'x-phantomdb-leader-url';

/** Options of {@link mountReplicationRoutes}. */
export interface ReplicationRoutesOptions {
  /** Largest batch body accepted (ReplicationLimits.batchBodyBytesMax). */
  readonly bodyBytesMax: number;
  /** Where failures are logged (4xx at debug, 5xx at error). */
  readonly logger?: Logger;
  /** Told about each request answered, for metrics: route, status and seconds. */
  readonly onRequest?: (route: string, status: number, seconds: number) => void;
  /**
   * Verifies every request's signature (the region secret) before its body is decoded, and
   * signs the answers; an unsigned or wrongly signed request gets 401 UNAUTHORIZED and changes
   * nothing. Default: none (regions without a secret).
   */
  readonly signer?: RequestSigner | null;
  /** How long a body may take to arrive (default `securityDefaults.bodyReadTimeoutMs`). */
  readonly bodyReadTimeoutMs?: number;
}

const routeOptions = { max_body_length: unlimitedBodyLength };
/** A heartbeat is a few dozen bytes. */
const heartbeatBytesMax = 4 * 1024;

/** Mounts the replication routes on `server` (before `listen()`). */
export function mountReplicationRoutes(
  server: Server,
  replication: ReplicationManager,
  options: ReplicationRoutesOptions,
): void {
  const { logger, bodyBytesMax } = options;
  const signer = options.signer ?? null;
  const bodyReadTimeoutMs = options.bodyReadTimeoutMs ?? securityDefaults.bodyReadTimeoutMs;

  const route =
    (
      path: string,
      handle: (body: Uint8Array) => Promise<RegionAnswer> | RegionAnswer,
      max: number,
    ) =>
    async (request: Request, response: Response): Promise<void> => {
      const started = performance.now();
      let status = 500;
      try {
        const body = await readPeerBody(request, response, signer, max, bodyReadTimeoutMs);
        const answer = await handle(body);
        status = 200;
        sendBody(response, 200, encodeBody(answer), cborMediaType);
      } catch (error) {
        status = answerError(request, response, error, logger);
      } finally {
        options.onRequest?.(path, status, (performance.now() - started) / 1000);
      }
    };

  server.post(
    replicationRoutePaths.batch,
    routeOptions,
    route(
      replicationRoutePaths.batch,
      (body) => replication.handleShip(decodeShipRequest(body, bodyBytesMax)),
      bodyBytesMax,
    ),
  );
  server.post(
    replicationRoutePaths.heartbeat,
    routeOptions,
    route(
      replicationRoutePaths.heartbeat,
      (body) => replication.handleHeartbeat(decodeHeartbeatRequest(body, heartbeatBytesMax)),
      heartbeatBytesMax,
    ),
  );
  for (const path of Object.values(replicationRoutePaths)) {
    server.any(path, routeOptions, (request, response) => {
      response.header('allow', 'POST');
      answerError(
        request,
        response,
        new PhantomError('METHOD_NOT_ALLOWED', `Cannot ${request.method} ${path}: use POST`),
        logger,
      );
    });
  }
}

/** Answers `error` and returns the status used. */
function answerError(
  request: Request,
  response: Response,
  error: unknown,
  logger: Logger | undefined,
): number {
  const { status, code, message } = errorReplyOf(error);
  const body: Record<string, unknown> = { error: { code, message } };
  if (error instanceof RegionNotLeaderError) {
    body['leaderUrl'] = error.leaderUrl;
    if (error.leaderUrl !== '') response.header(leaderUrlHeader, error.leaderUrl);
  }
  if (status >= 500 && !(error instanceof RegionNotLeaderError)) {
    logger?.error({ err: error, path: request.path, status, code }, message);
  } else {
    logger?.debug({ path: request.path, status, code }, message);
  }
  if (status === 503) response.header('retry-after', '1');
  if (responseFormatOf(request.headers) === 'cbor') {
    sendBody(response, status, encodeCbor(body), cborMediaType);
  } else {
    sendBody(response, status, JSON.stringify(body), jsonMediaType);
  }
  return status;
}
