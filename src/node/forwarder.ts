/**
 * Forwards a client request from a follower to the leader over HTTP (undici, keep-alive), so
 * that any node accepts any request.
 *
 * A forwarded request carries {@link forwardedByHeader}; a node that receives one and is not
 * the leader answers 421 NOT_LEADER at once instead of forwarding again, so a request travels
 * at most one hop and never loops between two nodes with different ideas of the leader. The
 * follower then looks for the leader again and retries while its deadline allows.
 *
 * What a failure means matters for writes: a request that never reached the leader (connection
 * refused, no connection in time) did nothing and is retried; one that was sent and then lost
 * (reset, timeout) may have been applied, and only reads are retried after that.
 *
 * With a cluster secret the forwarded request is signed (src/security/request-signer.ts), names
 * the leader it is meant for in {@link targetHeader}, and the leader's answer must be signed
 * for it: an outsider can neither pose as a forwarding node nor forge the leader's answer. The
 * client's Authorization header travels along, so the leader checks the client's token too.
 */
import type { ConnectionOptions } from 'node:tls';
import { Agent, errors as undiciErrors, type Dispatcher } from 'undici';
import { composeInterceptors } from '../security/request-signer.js';

/** Request header naming the node that forwarded the request. */
export const forwardedByHeader = 'x-phantomdb-forwarded-by';
/** Request header: milliseconds the forwarding node will still wait for the answer. */
export const timeoutHeader = 'x-phantomdb-timeout-ms';
/** Request header naming the node a forwarded request is meant for (signed with the rest). */
export const targetHeader = 'x-phantomdb-target';
/** Response header naming the leader a request was forwarded to. */
export const forwardedToHeader = 'x-phantomdb-forwarded-to';
/** Response header of a 421 NOT_LEADER: the leader this node knows of ('' when none). */
export const leaderHeader = 'x-phantomdb-leader';

/** Response headers passed from the leader back to the client. */
const passedHeaders = ['content-type', 'retry-after', 'allow', 'x-phantomdb-index', leaderHeader];

/** A request to forward. */
export interface ForwardRequest {
  readonly method: string;
  /** Path and query, as received (still percent-encoded). */
  readonly pathAndQuery: string;
  readonly contentType: string | undefined;
  readonly accept: string | undefined;
  /** The client's Authorization header, passed on for the leader to check. */
  readonly authorization?: string | undefined;
  readonly body: Uint8Array | null;
}

/** What became of a forwarded request. */
export type ForwardOutcome =
  /** The target answered (any status, 421 included). */
  | {
      readonly kind: 'answered';
      readonly status: number;
      readonly headers: Readonly<Record<string, string>>;
      readonly body: Uint8Array;
    }
  /** Nothing reached the target: safe to retry, whatever the request. */
  | { readonly kind: 'notSent'; readonly error: Error }
  /** Sent, but no complete answer: a write may or may not have been applied. */
  | { readonly kind: 'lost'; readonly error: Error };

/** Options of {@link LeaderForwarder}. */
export interface LeaderForwarderOptions {
  /** This node's id, sent in {@link forwardedByHeader}. */
  readonly nodeId: string;
  /** Connections kept per leader (requests beyond queue in undici). Default 64. */
  readonly connectionsPerOrigin?: number;
  /** Deadline of opening a connection. Default 1000 ms. */
  readonly connectTimeoutMs?: number;
  /** TLS for https leaders: the CA to verify them, this node's certificate. */
  readonly tls?: ConnectionOptions;
  /** undici interceptors every forwarded request passes through (the cluster secret's signer). */
  readonly interceptors?: readonly Dispatcher.DispatcherComposeInterceptor[];
}

/** Forwards client requests to the leader; see the module comment. */
export class LeaderForwarder {
  private readonly agent: Agent;
  private readonly dispatcher: Dispatcher;
  private readonly nodeId: string;

  constructor(options: LeaderForwarderOptions) {
    this.nodeId = options.nodeId;
    this.agent = new Agent({
      connections: options.connectionsPerOrigin ?? 64,
      pipelining: 1,
      keepAliveTimeout: 10_000,
      connect: { ...options.tls, timeout: options.connectTimeoutMs ?? 1_000 },
    });
    this.dispatcher = composeInterceptors(this.agent, options.interceptors ?? []);
  }

  /**
   * Sends `request` to the leader `targetId` at `url` (an origin) and waits at most
   * `timeoutMs` for the whole answer.
   */
  async forward(
    url: string,
    targetId: string,
    request: ForwardRequest,
    timeoutMs: number,
  ): Promise<ForwardOutcome> {
    const headers: Record<string, string> = {
      [forwardedByHeader]: this.nodeId,
      [timeoutHeader]: String(Math.max(1, Math.floor(timeoutMs))),
      [targetHeader]: targetId,
    };
    if (request.contentType !== undefined) headers['content-type'] = request.contentType;
    if (request.accept !== undefined) headers['accept'] = request.accept;
    if (request.authorization !== undefined) headers['authorization'] = request.authorization;
    // The leader answers within the budget it was given; the margin covers the trip back.
    const waitMs = Math.max(1, Math.floor(timeoutMs)) + 500;
    let sent = false;
    try {
      const answer = await this.dispatcher.request({
        origin: url,
        path: request.pathAndQuery,
        method: request.method,
        headers,
        body: request.body === null ? null : Buffer.from(request.body),
        headersTimeout: waitMs,
        bodyTimeout: waitMs,
      });
      sent = true;
      const body = new Uint8Array(await answer.body.arrayBuffer());
      const passed: Record<string, string> = {};
      for (const name of passedHeaders) {
        const value = answer.headers[name];
        if (typeof value === 'string') passed[name] = value;
      }
      return { kind: 'answered', status: answer.statusCode, headers: passed, body };
    } catch (error) {
      const failure = error instanceof Error ? error : new Error(String(error));
      return { kind: !sent && neverSent(failure) ? 'notSent' : 'lost', error: failure };
    }
  }

  /** Closes every connection. */
  async close(): Promise<void> {
    await this.agent.destroy();
  }
}

/** Errors that prove the request never left: no connection was made. */
function neverSent(error: Error): boolean {
  if (error instanceof undiciErrors.ConnectTimeoutError) return true;
  const code = (error as NodeJS.ErrnoException).code;
  return (
    code === 'ECONNREFUSED' ||
    code === 'EHOSTUNREACH' ||
    code === 'ENETUNREACH' ||
    code === 'EADDRNOTAVAIL' ||
    code === 'ENOTFOUND' ||
    code === 'EAI_AGAIN'
  );
}
