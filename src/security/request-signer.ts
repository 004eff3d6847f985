/**
 * Signed requests between nodes: Raft peer RPCs (`/raft/*`), region replication
 * (`/v1/replication/*`) and client requests a follower forwards to its leader.
 *
 * Why an HMAC and not the secret in a header: a header with the raw secret hands it to anyone
 * who sees one request (a proxy log, a plain-HTTP hop) and proves nothing about the request it
 * rides on. Here the secret never travels. Each request carries
 *
 *     x-phantomdb-signature: v1 ts=<unix ms> nonce=<16 random bytes, base64url> sig=<base64url>
 *
 * where `sig` is HMAC-SHA256 under a key derived from the secret (HKDF-SHA256, one key per
 * purpose, so the peer key and the region key differ even when the secrets are the same) over
 * the method, the path with its query, the timestamp, the nonce, the headers that change what
 * the request means (Content-Type, Accept, Authorization, and the forwarding headers), the body's
 * length and the body. A receiver checks, in this order and before decoding anything: the
 * header is there and well formed, the timestamp is within `authClockSkewMs` of its clock, the
 * HMAC matches (compared in constant time). Anything else is 401 UNAUTHORIZED.
 *
 * Replays: outside the window a captured request is refused. Inside it, Raft messages and
 * region batches are harmless to repeat (Raft tolerates duplicated messages by design; a batch
 * applies once by its origin position), so only forwarded client requests, which are not
 * idempotent, go through a {@link NonceGuard}.
 *
 * Answers are signed too, bound to the request's nonce (`sig` over the status and the body), and
 * the sending side refuses an answer without a valid signature: on a plain-HTTP network
 * someone who cannot forge a vote request could otherwise forge the "vote granted" answer. Only
 * a 401 may come back unsigned (the receiver could not verify us, so it cannot be expected to
 * sign for us), and it is a failure anyway.
 *
 * The sending side is an undici interceptor ({@link RequestSigner.interceptor}): every
 * dispatcher that talks to peers or regions is composed with it.
 */
import { createHmac, hkdfSync, randomBytes, timingSafeEqual, type Hmac } from 'node:crypto';
import type { Dispatcher } from 'undici';
import { resolveSecurityLimits, type SecurityLimits } from '../config.js';
import { PhantomError } from '../errors.js';
import type { Secret } from './secret.js';

/** The request and response header carrying a signature. */
export const signatureHeader = 'x-phantomdb-signature';

/** What a key signs: each purpose gets its own key derived from its secret. */
export type SignaturePurpose = 'peer' | 'region';

/**
 * Request headers covered by the signature, besides method, path and body: the ones that
 * change what a request means. A header that is absent is signed as empty.
 */
export const signedHeaders = [
  'content-type',
  'accept',
  'authorization',
  'x-phantomdb-forwarded-by',
  'x-phantomdb-timeout-ms',
  'x-phantomdb-target',
] as const;

/** A request without valid credentials: answered 401, nothing else happens. */
export class UnauthorizedError extends PhantomError {
  override readonly name = 'UnauthorizedError';
  constructor(message: string) {
    super('UNAUTHORIZED', message);
  }
}

/** The parts of a request that are signed. */
export interface SignedRequest {
  readonly method: string;
  /** Path and query exactly as sent on the request line. */
  readonly path: string;
  /** Header values by lower-case name. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Uint8Array;
}

/** A signature header that parsed and is fresh; {@link RequestSigner.verify} checks the MAC. */
export interface SignatureClaim {
  readonly timestampMs: number;
  readonly nonce: string;
  readonly mac: Buffer;
}

/** Options of {@link RequestSigner}. */
export interface RequestSignerOptions {
  readonly limits?: Partial<Pick<SecurityLimits, 'authClockSkewMs'>>;
  /** Wall clock in milliseconds (tests move it). Default Date.now. */
  readonly now?: () => number;
}

const scheme = 'PHANTOMDB-HMAC-SHA256-V1';
const headerPattern = /^v1 ts=(\d{1,16}) nonce=([A-Za-z0-9_-]{22}) sig=([A-Za-z0-9_-]{43})$/;
const macBytes = 32;

/** Signs and verifies requests and answers with one derived key; see the module comment. */
export class RequestSigner {
  readonly purpose: SignaturePurpose;
  readonly clockSkewMs: number;
  readonly #key: Buffer;
  private readonly now: () => number;

  constructor(secret: Secret, purpose: SignaturePurpose, options: RequestSignerOptions = {}) {
    this.purpose = purpose;
    this.clockSkewMs = resolveSecurityLimits(options.limits).authClockSkewMs;
    this.now = options.now ?? Date.now;
    this.#key = Buffer.from(
      hkdfSync('sha256', secret.reveal(), 'phantomdb-auth-v1', `phantomdb ${purpose} rpc`, 32),
    );
  }

  /** The signature header value for `request`, with a fresh timestamp and nonce. */
  sign(request: SignedRequest): { header: string; nonce: string } {
    const timestampMs = Math.floor(this.now());
    const nonce = randomBytes(16).toString('base64url');
    const mac = this.requestMac(request, timestampMs, nonce);
    return {
      header: `v1 ts=${timestampMs} nonce=${nonce} sig=${mac.toString('base64url')}`,
      nonce,
    };
  }

  /**
   * Checks the signature header's presence, form and freshness: the part that needs no body,
   * so a request that fails it is refused before its body is read. Throws
   * {@link UnauthorizedError}.
   */
  checkHeader(headers: Readonly<Record<string, string | string[] | undefined>>): SignatureClaim {
    const value = headers[signatureHeader];
    if (value === undefined) {
      throw new UnauthorizedError(
        `Missing ${signatureHeader}: this node accepts ${this.describe()} only when signed with the shared secret`,
      );
    }
    const match = typeof value === 'string' ? headerPattern.exec(value) : null;
    if (match === null) {
      throw new UnauthorizedError(
        `Malformed ${signatureHeader}: expected "v1 ts=<ms> nonce=<22 chars> sig=<43 chars>"`,
      );
    }
    const timestampMs = Number(match[1]);
    const offsetMs = timestampMs - this.now();
    if (Math.abs(offsetMs) > this.clockSkewMs) {
      throw new UnauthorizedError(
        `Stale ${signatureHeader}: its timestamp is ${Math.round(offsetMs)} ms off this node's clock, more than the ${this.clockSkewMs} ms allowed (check the clocks, or a replayed request)`,
      );
    }
    return { timestampMs, nonce: match[2]!, mac: Buffer.from(match[3]!, 'base64url') };
  }

  /**
   * Checks the MAC of a request whose header passed {@link checkHeader}, in constant time.
   * Throws {@link UnauthorizedError}; the message never says more than "does not match".
   */
  verify(claim: SignatureClaim, request: SignedRequest): void {
    const expected = this.requestMac(request, claim.timestampMs, claim.nonce);
    if (claim.mac.length !== macBytes || !timingSafeEqual(claim.mac, expected)) {
      throw new UnauthorizedError(
        `Invalid ${signatureHeader}: the signature does not match (the sender uses another secret, or the request was altered)`,
      );
    }
  }

  /** The signature header of an answer with `status` and `body` to the request with `nonce`. */
  signResponse(nonce: string, status: number, body: Uint8Array): string {
    const hmac = this.responseHmac(nonce, status);
    hmac.update(body);
    return `v1 sig=${hmac.digest('base64url')}`;
  }

  /**
   * An undici interceptor that signs every request it dispatches and fails every answer that
   * is not signed for that request (except an unsigned 401, passed on as the failure it is).
   * The request body must be bytes or a string (never a stream): it is signed whole.
   */
  interceptor(): Dispatcher.DispatcherComposeInterceptor {
    return (dispatch) => (options, handler) => {
      const headers = lowerCaseHeaders(options.headers);
      const body = bodyBytesOf(options.body);
      const { header, nonce } = this.sign({
        method: options.method,
        path: options.path,
        headers,
        body,
      });
      headers[signatureHeader] = header;
      return dispatch({ ...options, headers }, this.verifyingHandler(handler, nonce));
    };
  }

  private verifyingHandler(
    handler: Dispatcher.DispatchHandler,
    nonce: string,
  ): Dispatcher.DispatchHandler {
    let hmac: Hmac | null = null;
    let provided: Buffer | null = null;
    let status = 0;
    return {
      onRequestStart: (controller, context) => handler.onRequestStart?.(controller, context),
      onRequestUpgrade: (controller, statusCode, headers, socket) =>
        handler.onRequestUpgrade?.(controller, statusCode, headers, socket),
      onResponseStart: (controller, statusCode, headers, statusMessage) => {
        status = statusCode;
        const value = headers[signatureHeader];
        const match = typeof value === 'string' ? /^v1 sig=([A-Za-z0-9_-]{43})$/.exec(value) : null;
        provided = match === null ? null : Buffer.from(match[1]!, 'base64url');
        hmac = this.responseHmac(nonce, statusCode);
        handler.onResponseStart?.(controller, statusCode, headers, statusMessage);
      },
      onResponseData: (controller, chunk) => {
        hmac?.update(chunk);
        handler.onResponseData?.(controller, chunk);
      },
      onResponseEnd: (controller, trailers) => {
        const expected = hmac?.digest() ?? Buffer.alloc(0);
        const valid =
          provided !== null &&
          provided.length === expected.length &&
          timingSafeEqual(provided, expected);
        if (valid || (provided === null && status === 401)) {
          handler.onResponseEnd?.(controller, trailers);
          return;
        }
        handler.onResponseError?.(
          controller,
          new UnauthorizedError(
            provided === null
              ? `The answer (${status}) is not signed: the peer does not share this node's ${this.purpose} secret, or something between altered it`
              : `The answer (${status}) has an invalid signature: it was altered, or signed with another ${this.purpose} secret`,
          ),
        );
      },
      onResponseError: (controller, error) => handler.onResponseError?.(controller, error),
    };
  }

  private requestMac(request: SignedRequest, timestampMs: number, nonce: string): Buffer {
    const lines = [
      scheme,
      this.purpose,
      request.method.toUpperCase(),
      request.path,
      String(timestampMs),
      nonce,
    ];
    for (const name of signedHeaders) lines.push(`${name}:${headerText(request.headers[name])}`);
    lines.push(String(request.body.length), '');
    const hmac = createHmac('sha256', this.#key);
    hmac.update(lines.join('\n'));
    hmac.update(request.body);
    return hmac.digest();
  }

  private responseHmac(nonce: string, status: number): Hmac {
    const hmac = createHmac('sha256', this.#key);
    hmac.update(`${scheme} RESPONSE\n${this.purpose}\n${nonce}\n${status}\n`);
    return hmac;
  }

  private describe(): string {
    return this.purpose === 'peer' ? 'peer requests' : 'region requests';
  }
}

/**
 * Remembers the nonces of accepted requests inside the clock-skew window so that a replay of
 * one is refused. Memory is bounded by `noncesMax`: when full, the oldest nonce is forgotten
 * and every request not newer than it is refused from then on (a moving watermark), so a
 * forgotten nonce can never be accepted twice.
 */
export class NonceGuard {
  private readonly seen = new Map<string, number>();
  private watermarkMs = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly windowMs: number,
    private readonly noncesMax: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Records the nonce; throws {@link UnauthorizedError} for a replay or a too old request. */
  accept(claim: SignatureClaim): void {
    if (claim.timestampMs <= this.watermarkMs) {
      throw new UnauthorizedError(
        `Refused ${signatureHeader}: the request is older than the nonces this node still remembers; send it again`,
      );
    }
    if (this.seen.has(claim.nonce)) {
      throw new UnauthorizedError(
        `Refused ${signatureHeader}: this request was already received (a replay)`,
      );
    }
    this.prune();
    if (this.seen.size >= this.noncesMax) {
      const [oldestNonce, oldestMs] = this.seen.entries().next().value as [string, number];
      this.seen.delete(oldestNonce);
      this.watermarkMs = Math.max(this.watermarkMs, oldestMs);
    }
    this.seen.set(claim.nonce, claim.timestampMs);
  }

  /** Nonces remembered now. */
  get size(): number {
    return this.seen.size;
  }

  /** Forgets nonces whose requests the skew check refuses anyway (insertion order is roughly time order). */
  private prune(): void {
    const cutoff = this.now() - this.windowMs;
    for (const [nonce, timestampMs] of this.seen) {
      if (timestampMs >= cutoff) break;
      this.seen.delete(nonce);
    }
  }
}

function headerText(value: string | string[] | undefined): string {
  if (value === undefined) return '';
  return Array.isArray(value) ? value.join(', ') : value;
}

/** undici's request headers as a plain object with lower-case names. */
function lowerCaseHeaders(headers: Dispatcher.DispatchOptions['headers']): Record<string, string> {
  const result: Record<string, string> = {};
  if (headers === null || headers === undefined) return result;
  if (Array.isArray(headers)) {
    // The flat [name, value, name, value, ...] form.
    for (let k = 0; k + 1 < headers.length; k += 2) {
      result[String(headers[k]).toLowerCase()] = String(headers[k + 1]);
    }
    return result;
  }
  const entries: Iterable<[string, unknown]> =
    Symbol.iterator in headers
      ? (headers as Iterable<[string, unknown]>)
      : Object.entries(headers as Record<string, unknown>);
  for (const [name, value] of entries) {
    if (value === undefined || value === null) continue;
    if (typeof value !== 'string' && typeof value !== 'number' && !Array.isArray(value)) {
      throw new TypeError(`Cannot sign the request: header '${name}' is not a string`);
    }
    result[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : String(value);
  }
  return result;
}

function bodyBytesOf(body: Dispatcher.DispatchOptions['body']): Uint8Array {
  if (body === null || body === undefined) return new Uint8Array(0);
  if (typeof body === 'string') return Buffer.from(body);
  if (body instanceof Uint8Array) return body;
  throw new TypeError('Cannot sign the request: its body is a stream; pass bytes or a string');
}

/**
 * `dispatcher` composed with `interceptors` (itself when there are none). undici's `compose`
 * returns a proxy of the same dispatcher with its `dispatch` replaced, so it still is a `T`.
 */
export function composeInterceptors<T extends Dispatcher>(
  dispatcher: T,
  interceptors: readonly Dispatcher.DispatcherComposeInterceptor[],
): T {
  return interceptors.length === 0
    ? dispatcher
    : (dispatcher.compose([...interceptors]) as unknown as T);
}
