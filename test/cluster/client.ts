/**
 * A client of the node's HTTP API (../shared/DESIGN.md, "Contracts") for the cluster tests,
 * with every answer classified by what it proves about the operation:
 *
 * - `ok`: the node acknowledged it (200, or the etcd v2 outcomes 412 / 404 of a conditional
 *   write — those were applied as "no change" and are observations too);
 * - `fail`: it certainly did not take effect — the connection was refused before a byte was
 *   sent, or a 4xx that the node gives before proposing anything (bad request, 405, 413, ...);
 * - `unknown`: it may or may not take effect — a timeout, a reset connection, any 5xx (a 503
 *   from a follower can come after the leader appended the entry, and it may still commit).
 *
 * A get never changes state, so a get that does not return a value is simply `fail`.
 */
import { Agent, request, type Dispatcher } from 'undici';
import type { KvInput } from '../../src/sim/history.js';

/** What a client asks of the store: the history format's inputs, but for append. */
export type KvRequest = Exclude<KvInput, { readonly f: 'append' }>;

/** The result of one request, classified (see the module comment). */
export type KvOutcome =
  | {
      readonly kind: 'ok';
      /** 'ok' for a 200; 'precondition' for 412; 'notFound' for 404 (absent key). */
      readonly result: 'ok' | 'precondition' | 'notFound';
      readonly status: number;
      /** For a get: the value read (null = absent). */
      readonly value?: string | null;
      /** For a write answered 200: the entry's index and term. */
      readonly index?: number;
      readonly term?: number;
      /** For a 412 whose body names the current value (UTF-8 text; null = absent). */
      readonly current?: string | null;
    }
  | {
      readonly kind: 'fail' | 'unknown';
      /** HTTP status, or 0 when no answer came. */
      readonly status: number;
      /** Error code of the JSON body, or the network error's code. */
      readonly code: string;
      readonly message: string;
    };

/** The JSON error body of the node: `{"error":{"code","message"}}`. */
export interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string };
}

/** Parses a JSON error body; undefined when the body is not one. */
export function parseErrorBody(text: string): ErrorBody | undefined {
  try {
    const parsed = JSON.parse(text) as unknown;
    if (parsed === null || typeof parsed !== 'object') return undefined;
    const error = (parsed as { error?: unknown }).error;
    if (error === null || typeof error !== 'object') return undefined;
    const { code, message } = error as { code?: unknown; message?: unknown };
    if (typeof code !== 'string' || typeof message !== 'string') return undefined;
    return { error: { code, message } };
  } catch {
    return undefined;
  }
}

/** Network errors raised before the request could reach the server. */
const notSentCodes = new Set(['ECONNREFUSED', 'EADDRNOTAVAIL', 'ENOTFOUND']);

/**
 * Classifies a write's error answer. Only 4xx answers the node gives before proposing are
 * `fail`; 408 and every 5xx are `unknown` (see the module comment).
 */
export function classifyWriteStatus(status: number): 'fail' | 'unknown' {
  return status >= 400 && status < 500 && status !== 408 ? 'fail' : 'unknown';
}

/** Classifies an error thrown by undici before an answer arrived. */
export function classifyNetworkError(error: unknown): { kind: 'fail' | 'unknown'; code: string } {
  const code = errorCode(error);
  return { kind: notSentCodes.has(code) ? 'fail' : 'unknown', code };
}

function errorCode(error: unknown): string {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current !== null && typeof current === 'object'; depth++) {
    const candidate = current as { code?: unknown; name?: unknown; cause?: unknown };
    if (typeof candidate.code === 'string' && candidate.code !== '') return candidate.code;
    if (candidate.name === 'TimeoutError' || candidate.name === 'AbortError') return 'TIMEOUT';
    current = candidate.cause;
  }
  return error instanceof Error ? error.name : 'ERROR';
}

/** Options of {@link KvClient}. */
export interface KvClientOptions {
  /** Deadline of one request, end to end. */
  readonly timeoutMs?: number;
}

/**
 * Talks to any node by URL. One undici Agent per client, so closing it ends every connection
 * the client opened (a paused node would otherwise keep a socket half-open).
 */
export class KvClient {
  private readonly agent: Agent;
  private readonly timeoutMs: number;

  constructor(options: KvClientOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? 2_000;
    this.agent = new Agent({
      keepAliveTimeout: 2_000,
      connectTimeout: Math.min(this.timeoutMs, 1_000),
      headersTimeout: 0,
      bodyTimeout: 0,
    });
  }

  /** The dispatcher, for raw requests in tests. */
  get dispatcher(): Dispatcher {
    return this.agent;
  }

  /** Runs one KV operation against the node at `baseUrl`. */
  async run(baseUrl: string, op: KvRequest): Promise<KvOutcome> {
    const path = `/v1/kv/${encodeURIComponent(op.key)}`;
    const query = new URLSearchParams();
    let method: 'GET' | 'PUT' | 'DELETE';
    let body: string | undefined;
    if (op.f === 'get') {
      method = 'GET';
    } else if (op.f === 'put') {
      method = 'PUT';
      body = op.value;
      if (op.prevValue !== undefined) query.set('prevValue', op.prevValue);
      if (op.prevExist !== undefined) query.set('prevExist', String(op.prevExist));
    } else {
      method = 'DELETE';
      if (op.prevValue !== undefined) query.set('prevValue', op.prevValue);
    }
    const url = `${baseUrl}${path}${query.size > 0 ? `?${query.toString()}` : ''}`;
    let status: number;
    let text: string;
    try {
      const response = await request(url, {
        method,
        dispatcher: this.agent,
        signal: AbortSignal.timeout(this.timeoutMs),
        ...(body === undefined
          ? {}
          : { body, headers: { 'content-type': 'application/octet-stream' } }),
      });
      status = response.statusCode;
      text = await response.body.text();
    } catch (error) {
      const { kind, code } = classifyNetworkError(error);
      const message = error instanceof Error ? error.message : String(error);
      // A read that got no answer changed nothing.
      return { kind: op.f === 'get' ? 'fail' : kind, status: 0, code, message };
    }
    return classifyAnswer(op, status, text);
  }

  /** Closes every connection at once. */
  async close(): Promise<void> {
    await this.agent.destroy();
  }
}

/** Classifies a complete HTTP answer to `op` (exported for unit tests). */
export function classifyAnswer(op: KvRequest, status: number, text: string): KvOutcome {
  const errorBody = parseErrorBody(text);
  const code = errorBody?.error.code ?? '';
  const message = errorBody?.error.message ?? text.slice(0, 200);
  if (op.f === 'get') {
    if (status === 200) return { kind: 'ok', result: 'ok', status, value: text };
    if (status === 404 && isKeyNotFound(code)) {
      return { kind: 'ok', result: 'ok', status, value: null };
    }
    return { kind: 'fail', status, code, message };
  }
  if (status === 200) {
    const ack = parseAck(text);
    return {
      kind: 'ok',
      result: 'ok',
      status,
      ...(ack === undefined ? {} : { index: ack.index, term: ack.term }),
    };
  }
  if (status === 412) {
    const current = currentOf(text);
    return {
      kind: 'ok',
      result: 'precondition',
      status,
      ...(current === undefined ? {} : { current }),
    };
  }
  if (status === 404 && isKeyNotFound(code)) return { kind: 'ok', result: 'notFound', status };
  return { kind: classifyWriteStatus(status), status, code, message };
}

/** A 404 that means "no such key" (the node's code), not "no such route". */
function isKeyNotFound(code: string): boolean {
  return code === 'KEY_NOT_FOUND';
}

/** The current value a 412 body reports: `{"current": null | {"value": text, ...}}`. */
function currentOf(text: string): string | null | undefined {
  try {
    const { current } = JSON.parse(text) as { current?: unknown };
    if (current === null) return null;
    if (typeof current !== 'object' || current === undefined) return undefined;
    const { value } = current as { value?: unknown };
    return typeof value === 'string' ? value : undefined;
  } catch {
    return undefined;
  }
}

function parseAck(text: string): { index: number; term: number } | undefined {
  try {
    const parsed = JSON.parse(text) as { index?: unknown; term?: unknown };
    if (typeof parsed.index === 'number' && typeof parsed.term === 'number') {
      return { index: parsed.index, term: parsed.term };
    }
  } catch {
    // not JSON: an ack all the same
  }
  return undefined;
}
