/**
 * How a region's leader talks to other regions: {@link RegionClient}, with
 * {@link HttpRegionClient} (undici, keep-alive, CBOR bodies under `/v1/replication/*`) for real
 * deployments and `LocalRegionNetwork` (local-network.ts) for regions in one process.
 *
 * A client does one request and reports what happened; retries, backoff and leader hints are
 * the shipper's business (link.ts). Every failure is a {@link RegionRequestError} whose
 * `reason` says what went wrong.
 */
import type { ConnectionOptions } from 'node:tls';
import { Agent, type Dispatcher } from 'undici';
import { PhantomError } from '../errors.js';
import { cborMediaType } from '../transport/http.js';
import { composeInterceptors } from '../security/request-signer.js';
import {
  decodeErrorAnswer,
  decodeRegionAnswer,
  encodeBody,
  replicationRoutePaths,
  type RegionHeartbeatRequest,
  type RegionAnswer,
  type RegionBatchRequest,
} from './wire.js';

/** Why a request to a region failed. */
export type RegionFailureReason =
  /** Connection refused, reset or closed; DNS failure. */
  | 'network'
  /** No answer (or no connection) in time. */
  | 'timeout'
  /** The region answered with an error status (see `status`, `code`). */
  | 'status'
  /** The node reached is not its region's leader; `leaderUrl` names the leader if known. */
  | 'notLeader'
  /** The answer was not a valid replication answer. */
  | 'malformed';

/** A request to another region got no useful answer. */
export class RegionRequestError extends PhantomError {
  override readonly name = 'RegionRequestError';
  constructor(
    readonly reason: RegionFailureReason,
    message: string,
    readonly details: {
      readonly status?: number;
      /** The error code the region answered with ('' when none). */
      readonly code?: string;
      /** The leader's client URL, with reason 'notLeader' ('' when unknown). */
      readonly leaderUrl?: string;
      readonly cause?: unknown;
    } = {},
  ) {
    super('REGION_UNAVAILABLE', message, { cause: details.cause });
  }
}

/** Sends replication requests to regions. */
export interface RegionClient {
  /** Ships a batch to the node at `url`; resolves with the receiver's answer. */
  ship(url: string, request: RegionBatchRequest, timeoutMs: number): Promise<RegionAnswer>;
  /** Probes the node at `url`; resolves with the receiver's answer. */
  heartbeat(url: string, request: RegionHeartbeatRequest, timeoutMs: number): Promise<RegionAnswer>;
  /** Closes connections; later requests fail. */
  close(): Promise<void>;
}

/** Options of {@link HttpRegionClient}. */
export interface HttpRegionClientOptions {
  /** Deadline of opening a connection. Default 2000 ms. */
  readonly connectTimeoutMs?: number;
  /** Largest answer accepted. Default 64 KiB (answers are a few dozen bytes). */
  readonly answerBytesMax?: number;
  /** TLS for https regions: the CA to verify them, this node's certificate. Default: system CAs. */
  readonly tls?: ConnectionOptions;
  /** undici interceptors every request passes through (the region secret's signer). */
  readonly interceptors?: readonly Dispatcher.DispatcherComposeInterceptor[];
}

const headers = { 'content-type': cborMediaType, accept: cborMediaType };

/** {@link RegionClient} over HTTP/1.1 keep-alive connections (one undici Agent). */
export class HttpRegionClient implements RegionClient {
  private readonly agent: Agent;
  private readonly dispatcher: Dispatcher;
  private readonly answerBytesMax: number;
  private closed = false;

  constructor(options: HttpRegionClientOptions = {}) {
    this.answerBytesMax = options.answerBytesMax ?? 64 * 1024;
    this.agent = new Agent({
      connect: { ...options.tls, timeout: options.connectTimeoutMs ?? 2_000 },
      maxResponseSize: this.answerBytesMax,
      // Regions are far apart; keep idle connections long enough to span heartbeats.
      keepAliveTimeout: 30_000,
    });
    this.dispatcher = composeInterceptors(this.agent, options.interceptors ?? []);
  }

  ship(url: string, request: RegionBatchRequest, timeoutMs: number): Promise<RegionAnswer> {
    return this.post(url, replicationRoutePaths.batch, encodeBody(request), timeoutMs);
  }

  heartbeat(
    url: string,
    request: RegionHeartbeatRequest,
    timeoutMs: number,
  ): Promise<RegionAnswer> {
    return this.post(url, replicationRoutePaths.heartbeat, encodeBody(request), timeoutMs);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.agent.destroy().catch(() => undefined);
  }

  private async post(
    url: string,
    path: string,
    body: Uint8Array,
    timeoutMs: number,
  ): Promise<RegionAnswer> {
    const target = `${url}${path}`;
    if (this.closed) throw new RegionRequestError('network', `Cannot reach ${target}: closed`);
    let status: number;
    let contentType: string;
    let bytes: Uint8Array;
    try {
      const response = await this.dispatcher.request({
        origin: url,
        path,
        method: 'POST',
        headers,
        body,
        signal: AbortSignal.timeout(timeoutMs),
      });
      status = response.statusCode;
      const type = response.headers['content-type'];
      contentType = typeof type === 'string' ? type : '';
      bytes = new Uint8Array(await response.body.arrayBuffer());
    } catch (error) {
      throw failureOf(target, error, timeoutMs);
    }
    if (status === 200) {
      try {
        return decodeRegionAnswer(bytes, this.answerBytesMax);
      } catch (error) {
        throw new RegionRequestError(
          'malformed',
          `Cannot use the answer of ${target}: ${(error as Error).message}`,
          { status, cause: error },
        );
      }
    }
    const answer = decodeErrorAnswer(bytes, contentType);
    if (status === 421 || answer?.code === 'NOT_LEADER' || answer?.code === 'NO_LEADER') {
      return Promise.reject(
        new RegionRequestError(
          'notLeader',
          `${target} is not its region's leader${answer?.leaderUrl ? `; the leader is at ${answer.leaderUrl}` : ''}`,
          { status, code: answer?.code ?? '', leaderUrl: answer?.leaderUrl ?? '' },
        ),
      );
    }
    throw new RegionRequestError(
      'status',
      `${target} answered ${status}${answer === null ? '' : ` ${answer.code}: ${answer.message}`}`,
      { status, code: answer?.code ?? '' },
    );
  }
}

function failureOf(target: string, error: unknown, timeoutMs: number): RegionRequestError {
  const name = error instanceof Error ? error.name : '';
  const code = (error as { code?: unknown } | null)?.code;
  if (name === 'TimeoutError' || code === 'UND_ERR_CONNECT_TIMEOUT') {
    const what = code === 'UND_ERR_CONNECT_TIMEOUT' ? 'no connection' : 'no answer';
    return new RegionRequestError(
      'timeout',
      `Cannot reach ${target}: ${what} within ${timeoutMs} ms`,
      {
        cause: error,
      },
    );
  }
  if (code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE') {
    return new RegionRequestError('malformed', `Cannot use the answer of ${target}: too large`, {
      cause: error,
    });
  }
  const detail = error instanceof Error ? error.message : String(error);
  return new RegionRequestError(
    'network',
    `Cannot reach ${target}: ${detail}${typeof code === 'string' ? ` (${code})` : ''}`,
    { cause: error },
  );
}
