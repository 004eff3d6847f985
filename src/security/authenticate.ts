/**
 * The receiving side of signed requests on a hyper-express route: check the signature header
 * (no body read yet), read the body under its limit, check the MAC over it, optionally refuse
 * a replayed nonce, and arrange for every answer on the response to be signed for the request.
 * Only then may the caller decode the body: an unauthenticated request is refused (401) before
 * any byte of it is interpreted.
 */
import type { Request, Response } from 'hyper-express';
import {
  cborMediaType,
  readBody,
  requireMediaType,
  signAnswers,
  unwatchBody,
  watchBody,
} from '../transport/http.js';
import { signatureHeader, type NonceGuard, type RequestSigner } from './request-signer.js';

/** Options of {@link readSignedBody}. */
export interface ReadSignedBodyOptions {
  /** Refuses replays (forwarded client requests); none for idempotent RPCs. */
  readonly nonces?: NonceGuard;
}

/**
 * Reads the body of a request that must be signed by `signer`'s secret and returns it; throws
 * UnauthorizedError (401) when the signature is missing, stale, wrong or replayed, and
 * BadRequestError PAYLOAD_TOO_LARGE past `bytesMax`.
 */
export async function readSignedBody(
  request: Request,
  response: Response,
  signer: RequestSigner,
  bytesMax: number,
  options: ReadSignedBodyOptions = {},
): Promise<Uint8Array> {
  const claim = signer.checkHeader(request.headers);
  const body = await readBody(request, bytesMax);
  signer.verify(claim, {
    method: request.method,
    path: request.url,
    headers: request.headers,
    body,
  });
  options.nonces?.accept(claim);
  signAnswers(response, (status, answer) => ({
    [signatureHeader]: signer.signResponse(claim.nonce, status, answer),
  }));
  return body;
}

/**
 * Reads the CBOR body of a peer or region request under `bytesMax`, failing after
 * `bodyReadTimeoutMs` (see `watchBody`), and signed by `signer` when there is one. The
 * signature is checked first, on the raw bytes: an unauthenticated request learns nothing, not
 * even 415 for its media type.
 */
export async function readPeerBody(
  request: Request,
  response: Response,
  signer: RequestSigner | null,
  bytesMax: number,
  bodyReadTimeoutMs: number,
): Promise<Uint8Array> {
  watchBody(request, response, bodyReadTimeoutMs);
  try {
    if (signer === null) {
      requireMediaType(request.headers, [cborMediaType]);
      return await readBody(request, bytesMax);
    }
    const body = await readSignedBody(request, response, signer, bytesMax);
    requireMediaType(request.headers, [cborMediaType]);
    return body;
  } finally {
    // A request refused before its body was read must not keep the watch either.
    unwatchBody(request);
  }
}
