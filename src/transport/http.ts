/**
 * Small HTTP helpers shared by the peer routes and the client API, over hyper-express:
 * reading a body under a size limit, choosing JSON or CBOR (`Content-Type` / `Accept`), and
 * answering errors as `{"error":{"code","message"}}` with the status from `httpStatusByCode`.
 *
 * @example
 * ```ts
 * server.post('/v1/echo', { max_body_length: unlimitedBodyLength }, async (request, response) => {
 *   try {
 *     const body = await readBody(request, 1024 * 1024);
 *     sendBody(response, 200, body, 'application/octet-stream');
 *   } catch (error) {
 *     sendError(response, error, { format: responseFormatOf(request.headers), logger, request });
 *   }
 * });
 * ```
 */
import { performance } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import type { Request, Response, Server } from 'hyper-express';
import { encode as encodeCbor } from 'cbor-x';
import type { Logger } from 'pino';
import { BadRequestError, PhantomError, httpStatusByCode, type ErrorCode } from '../errors.js';

/** The media type of JSON bodies. */
export const jsonMediaType = 'application/json';

/** The media type of CBOR bodies: every peer RPC body, and client API bodies on request. */
export const cborMediaType = 'application/cbor';

/** How a body is written: JSON by default, CBOR on request. */
export type BodyFormat = 'json' | 'cbor';

/**
 * A route's `max_body_length` that switches off hyper-express's own limit, whose 413 has no
 * body; {@link readBody} enforces the route's real limit and the error is answered as JSON.
 */
export const unlimitedBodyLength = Number.MAX_SAFE_INTEGER;

/** What an error is answered with. */
export interface ErrorReply {
  readonly status: number;
  readonly code: ErrorCode;
  readonly message: string;
}

/**
 * Reads the whole request body, refusing more than `bytesMax` bytes with a
 * {@link BadRequestError} `PAYLOAD_TOO_LARGE` (a declared Content-Length is checked before any
 * byte is read). The route must be mounted with `max_body_length: unlimitedBodyLength`. When
 * the caller answers the error before the body has arrived, hyper-express discards the rest of
 * the body and then sends the answer, so the connection stays usable.
 */
export async function readBody(request: Request, bytesMax: number): Promise<Uint8Array> {
  const declared = request.headers['content-length'];
  if (declared !== undefined && declared !== '') {
    const length = Number(declared);
    if (length > bytesMax) throw tooLarge(`${length}`, bytesMax);
    // hyper-express caches the buffer: a second read (after a signature check) is free.
    return watched(request, request.buffer());
  }
  if (request.headers['transfer-encoding']?.toLowerCase() !== 'chunked') {
    return new Uint8Array(0);
  }
  // A chunked body read is remembered, so that it can be read twice (signature check, handler).
  const earlier = (request as TrackedRequest)[chunkedBodyKey];
  if (earlier !== undefined) {
    const body = await earlier;
    if (body.length > bytesMax) throw tooLarge(`${body.length}`, bytesMax);
    return body;
  }
  const reading = watched(request, readChunkedBody(request, bytesMax));
  (request as TrackedRequest)[chunkedBodyKey] = reading;
  return reading;
}

/** How a route's body reads end when the client goes away or is too slow. */
interface BodyWatch {
  readonly response: Response;
  readonly deadlineMs: number;
}

/**
 * What this module remembers about one request or response lives on that object, under these
 * symbols, and not in a WeakMap keyed by it: V8's young-generation collector keeps a WeakMap's
 * young keys and values alive, so every request (with its streams and body) was copied and then
 * promoted to the old generation. In a hyper-express echo server driven by one undici
 * connection for 8 s, a WeakMap entry per request raised the bytes promoted from 6.8 MB to 218 MB
 * and the scavenge pause from 0.40 to 2.84 ms (a symbol property: 7.4 MB, 0.35 ms).
 */
const bodyWatchKey = Symbol('phantomdb.bodyWatch');
const chunkedBodyKey = Symbol('phantomdb.chunkedBody');
const answerSignerKey = Symbol('phantomdb.answerSigner');

interface TrackedRequest extends Request {
  [bodyWatchKey]?: BodyWatch;
  [chunkedBodyKey]?: Promise<Uint8Array>;
}

interface SignedResponse extends Response {
  [answerSignerKey]?: AnswerSigner;
}

/** How often a body read still waiting looks whether its client is gone. */
const bodyWatchIntervalMs = 250;

/**
 * Makes {@link readBody} of `request` fail (BAD_REQUEST) when the client disconnects before
 * its body has arrived, or when the body takes longer than `timeoutMs` to arrive.
 * hyper-express never settles a body read whose client went away, so without this the route
 * would wait forever, holding its admission and memory: a client sending headers and part of
 * a body, then disconnecting, could exhaust a node. Call it first thing in a route.
 */
export function watchBody(request: Request, response: Response, timeoutMs: number): void {
  (request as TrackedRequest)[bodyWatchKey] = {
    response,
    deadlineMs: performance.now() + timeoutMs,
  };
}

/**
 * Drops what {@link watchBody} attached to `request`: a body read takes the watch (the timer
 * of a read still waiting holds it), and a route that reads no body calls this when it
 * answers. A request must not keep its Response reachable once the read is over: with that
 * link, answered requests were copied by scavenges until the next mark-compact. In a
 * three-node cluster at one connection the leader copied 738–756 KiB per scavenge with it and
 * 315–344 KiB without, and a follower sometimes 1.7 MiB.
 */
export function unwatchBody(request: Request): void {
  // Only a watched request is written to: adding the key to the others would change their shape.
  if ((request as TrackedRequest)[bodyWatchKey] !== undefined) {
    (request as TrackedRequest)[bodyWatchKey] = undefined;
  }
}

function watched(request: Request, reading: Promise<Uint8Array>): Promise<Uint8Array> {
  const watch = (request as TrackedRequest)[bodyWatchKey];
  unwatchBody(request);
  // Nothing to wait for when every byte is in already (the usual case): no timer.
  if (watch === undefined || request.received) return reading;
  return new Promise<Uint8Array>((resolve, reject) => {
    const timer = setInterval(() => {
      // `completed` before this route answered: uWS reported the connection aborted.
      if (watch.response.completed) {
        clearInterval(timer);
        reject(
          new BadRequestError(
            'Cannot read body: the client closed the connection before sending it',
          ),
        );
      } else if (performance.now() > watch.deadlineMs) {
        clearInterval(timer);
        reject(new BadRequestError('Cannot read body: it did not arrive in time'));
      }
    }, bodyWatchIntervalMs);
    reading.then(
      (body) => {
        clearInterval(timer);
        resolve(body);
      },
      (error: unknown) => {
        clearInterval(timer);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

function readChunkedBody(request: Request, bytesMax: number): Promise<Uint8Array> {
  // A chunked body announces no length: count it as it streams. hyper-express's Request only
  // starts flowing through pipe() (its on('data') never resumes the stream).
  return new Promise<Uint8Array>((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    let size = 0;
    const sink = new Writable({
      write(chunk: Uint8Array, _encoding, callback) {
        size += chunk.length;
        if (size > bytesMax) {
          // The pipe stops; hyper-express discards the rest once the answer is sent.
          callback(tooLarge(`over ${bytesMax}`, bytesMax));
          return;
        }
        chunks.push(chunk);
        callback();
      },
    });
    sink.once('error', reject);
    sink.once('finish', () => resolve(Buffer.concat(chunks, size)));
    request.pipe(sink);
  });
}

function tooLarge(size: string, bytesMax: number): BadRequestError {
  return new BadRequestError(
    `Cannot accept body: it is ${size} bytes, more than the limit of ${bytesMax}`,
    'PAYLOAD_TOO_LARGE',
  );
}

/** The media type of a Content-Type or Accept item, lower-cased, without parameters. */
export function mediaTypeOf(header: string | undefined): string {
  if (header === undefined) return '';
  const semicolon = header.indexOf(';');
  return (semicolon === -1 ? header : header.slice(0, semicolon)).trim().toLowerCase();
}

/**
 * Checks the request's Content-Type against `accepted` media types and returns the one used;
 * throws {@link BadRequestError} `UNSUPPORTED_MEDIA_TYPE` otherwise.
 */
export function requireMediaType(
  headers: Readonly<Record<string, string | undefined>>,
  accepted: readonly string[],
): string {
  const mediaType = mediaTypeOf(headers['content-type']);
  if (!accepted.includes(mediaType)) {
    throw new BadRequestError(
      `Cannot accept body: Content-Type is '${mediaType || 'missing'}', expected ${accepted.join(' or ')}`,
      'UNSUPPORTED_MEDIA_TYPE',
    );
  }
  return mediaType;
}

/**
 * The format to answer in: the one of `application/json` and `application/cbor` that Accept
 * rates higher; on a tie (no Accept, or `* /*`) the request's own Content-Type decides, and
 * JSON is the default.
 */
export function responseFormatOf(
  headers: Readonly<Record<string, string | undefined>>,
): BodyFormat {
  const accept = headers['accept'];
  if (accept !== undefined && accept !== '') {
    const cbor = qualityOf(accept, cborMediaType);
    const json = qualityOf(accept, jsonMediaType);
    if (cbor !== json) return cbor > json ? 'cbor' : 'json';
  }
  return mediaTypeOf(headers['content-type']) === cborMediaType ? 'cbor' : 'json';
}

/** The quality Accept gives `mediaType` through its most specific matching range (0: none). */
function qualityOf(accept: string, mediaType: string): number {
  const [type] = mediaType.split('/');
  let best = 0;
  let bestSpecificity = -1;
  for (const item of accept.split(',')) {
    const [range = '', ...parameters] = item.split(';');
    const name = range.trim().toLowerCase();
    const specificity = name === mediaType ? 2 : name === `${type}/*` ? 1 : name === '*/*' ? 0 : -1;
    if (specificity <= bestSpecificity) continue;
    let quality = 1;
    for (const parameter of parameters) {
      const [key, value] = parameter.split('=');
      if (key?.trim().toLowerCase() === 'q') {
        const parsed = Number(value?.trim());
        quality = Number.isFinite(parsed) ? Math.min(1, Math.max(0, parsed)) : 0;
      }
    }
    best = quality;
    bestSpecificity = specificity;
  }
  return best;
}

/**
 * What `error` is answered with: a {@link PhantomError} keeps its code, status and message;
 * anything else is our bug and is answered 500 INTERNAL without details (the caller logs it).
 */
export function errorReplyOf(error: unknown): ErrorReply {
  if (error instanceof PhantomError) {
    return { status: httpStatusByCode[error.code], code: error.code, message: error.message };
  }
  return { status: 500, code: 'INTERNAL', message: 'Internal error; the server log has details' };
}

/** How {@link sendError} answers and logs. */
export interface SendErrorOptions {
  /** Body format (default JSON). */
  readonly format?: BodyFormat;
  /** Where the error is logged (nowhere when absent). */
  readonly logger?: Logger;
  /** The request, to name its method and path in the log line. */
  readonly request?: Request;
  /** Extra response headers (`Allow`, `Retry-After`, ...). */
  readonly headers?: Readonly<Record<string, string>>;
}

/**
 * Answers `error` as `{"error":{"code","message"}}`, and logs it: a 5xx at error level with
 * the error itself, a 4xx at warn level (a peer or client sent something wrong). Sends nothing
 * when the response was already sent or the connection is gone.
 */
export function sendError(
  response: Response,
  error: unknown,
  options: SendErrorOptions = {},
): void {
  const { format = 'json', logger, request, headers = {} } = options;
  const reply = errorReplyOf(error);
  if (logger !== undefined) {
    const fields = {
      status: reply.status,
      code: reply.code,
      method: request?.method,
      path: request?.path,
    };
    if (reply.status >= 500) logger.error({ ...fields, err: error }, reply.message);
    else logger.warn(fields, reply.message);
  }
  if (response.completed) return;
  if (response.initiated) {
    // Headers are out already; the only honest signal left is to cut the connection.
    response.close();
    return;
  }
  for (const [name, value] of Object.entries(headers)) response.header(name, value);
  const body = { error: { code: reply.code, message: reply.message } };
  if (format === 'cbor') {
    sendBody(response, reply.status, encodeCbor(body), cborMediaType);
  } else {
    sendBody(response, reply.status, JSON.stringify(body), jsonMediaType);
  }
}

/** Sends a complete body with a status and Content-Type (no-op if already answered). */
export function sendBody(
  response: Response,
  status: number,
  body: Uint8Array | string,
  mediaType: string,
): void {
  if (response.completed) return;
  response.status(status).header('content-type', mediaType);
  sendSigned(response, status, body);
}

/** Sends a status without a body (204), signed like any answer (no-op if already answered). */
export function sendEmpty(response: Response, status: number): void {
  if (response.completed) return;
  response.status(status);
  sendSigned(response, status, undefined);
}

/**
 * Sends `body` after the status and the other headers were set, with the headers the
 * response's signer (see {@link signAnswers}) computes over the exact bytes sent. Without a
 * signer nothing is converted or computed: a string goes out as it is. No body: none is sent
 * (the signature covers an empty one).
 */
export function sendSigned(
  response: Response,
  status: number,
  body: Uint8Array | string | undefined,
): void {
  const signer = (response as SignedResponse)[answerSignerKey];
  if (signer === undefined) {
    response.send(body === undefined || typeof body === 'string' ? body : bufferOf(body));
    return;
  }
  const bytes =
    body === undefined ? emptyBody : typeof body === 'string' ? Buffer.from(body) : bufferOf(body);
  for (const [name, value] of Object.entries(signer(status, bytes))) response.header(name, value);
  response.send(bytes);
}

const emptyBody = Buffer.alloc(0);

function bufferOf(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Computes headers an answer must carry, from its status and body bytes. */
export type AnswerSigner = (status: number, body: Uint8Array) => Readonly<Record<string, string>>;

/**
 * Makes every answer written on `response` through {@link sendBody}, {@link sendEmpty},
 * {@link sendError} or {@link sendSigned} carry the headers `signer` computes (the answer's
 * signature, once the request's signature was verified).
 */
export function signAnswers(response: Response, signer: AnswerSigner): void {
  (response as SignedResponse)[answerSignerKey] = signer;
}

/**
 * Makes `server` answer unknown routes (404 NOT_FOUND) and errors escaping a route (500
 * INTERNAL, logged) as JSON errors instead of hyper-express's bare defaults. Call it before
 * `listen()`, which freezes the routes.
 */
export function installErrorHandlers(server: Server, logger: Logger): void {
  server.set_not_found_handler((request, response) => {
    sendError(
      response,
      new PhantomError('NOT_FOUND', `Cannot ${request.method} ${request.path}: no such route`),
      { format: responseFormatOf(request.headers), logger, request },
    );
  });
  server.set_error_handler((request, response, error) => {
    sendError(response, error, { format: responseFormatOf(request.headers), logger, request });
  });
}

/**
 * Stops `server`: closes its listening socket and every open connection, so a server with
 * keep-alive clients really goes away (hyper-express's own `close()` only stops listening).
 */
export function closeServer(server: Server): void {
  server.close();
  const app = server.uws_instance as unknown as { close?: () => void };
  app.close?.();
}
