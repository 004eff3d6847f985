/**
 * Parsing of client requests: keys from the URL path, query parameters, and the small JSON or
 * CBOR bodies of the admin routes. Everything a client sends is checked here and refused with
 * a {@link BadRequestError} that says what was wrong, before anything reaches Raft.
 *
 * Key rules (`/v1/kv/{key}`): the rest of the path after `/v1/kv/`, percent-decoded as UTF-8
 * (`%2F` is a slash inside the key, `+` stays a plus); it must not be empty, must be valid
 * UTF-8, and at most `keyBytesMax` bytes (4096 by default) once decoded. Slashes are allowed,
 * so `a/b/c` is one key, as in etcd.
 *
 * Query rules: `application/x-www-form-urlencoded` (`+` is a space, `%XX` any byte), each
 * parameter at most once, and only the parameters the route knows (a misspelt condition must
 * not turn a compare-and-set into a blind write).
 */
import { decode as decodeCbor } from 'cbor-x';
import type { KvLimits } from '../config.js';
import { BadRequestError } from '../errors.js';
import { checkKey } from '../kv/codec.js';
import { cborMediaType, jsonMediaType, mediaTypeOf } from '../transport/http.js';

/** The path prefix of key-value routes. */
export const kvPathPrefix = '/v1/kv/';

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder();

/**
 * The key named by a `/v1/kv/{key}` path (raw, still percent-encoded, without the query).
 * Throws BadRequestError BAD_KEY for an empty, undecodable or too long key.
 */
export function keyOfPath(path: string, limits: KvLimits): string {
  if (!path.startsWith(kvPathPrefix)) {
    throw new BadRequestError(
      `Invalid key path '${path}': expected ${kvPathPrefix}{key}`,
      'BAD_KEY',
    );
  }
  const raw = path.slice(kvPathPrefix.length);
  let key = raw;
  try {
    // Without a `%` there is nothing to decode, and V8's decoder builds its result in a
    // malloc'd buffer even then.
    if (raw.includes('%')) key = decodeURIComponent(raw);
  } catch {
    throw new BadRequestError(
      `Invalid key '${truncate(raw)}': it is not valid percent-encoded UTF-8`,
      'BAD_KEY',
    );
  }
  // Empty, too long or a lone surrogate: the same rules the state machine enforces.
  checkKey(key, limits);
  return key;
}

/**
 * Parses a query string (without `?`) into names and raw byte values. Throws BadRequestError
 * for a parameter not in `allowed`, one given twice, or a malformed percent escape.
 */
export function parseQuery(
  query: string | undefined,
  allowed: readonly string[],
): Map<string, Uint8Array> {
  const parameters = new Map<string, Uint8Array>();
  if (query === undefined || query === '') return parameters;
  for (const part of query.split('&')) {
    if (part === '') continue;
    const equals = part.indexOf('=');
    const nameBytes = percentDecode(equals === -1 ? part : part.slice(0, equals));
    const value = percentDecode(equals === -1 ? '' : part.slice(equals + 1));
    let name: string;
    try {
      name = utf8.decode(nameBytes);
    } catch {
      throw new BadRequestError('Invalid query: a parameter name is not valid UTF-8');
    }
    if (!allowed.includes(name)) {
      throw new BadRequestError(
        allowed.length === 0
          ? `Invalid query parameter '${truncate(name)}': this route takes none`
          : `Invalid query parameter '${truncate(name)}': this route takes ${allowed.join(', ')}`,
      );
    }
    if (parameters.has(name)) {
      throw new BadRequestError(`Invalid query: parameter '${name}' is given twice`);
    }
    parameters.set(name, value);
  }
  return parameters;
}

/** Decodes `application/x-www-form-urlencoded` text into bytes: `+` is a space, `%XX` a byte. */
export function percentDecode(text: string): Uint8Array {
  if (!/[%+]/.test(text)) return utf8Encoder.encode(text);
  const bytes: number[] = [];
  let run = '';
  const flush = (): void => {
    if (run !== '') for (const byte of utf8Encoder.encode(run)) bytes.push(byte);
    run = '';
  };
  for (let k = 0; k < text.length; k++) {
    const char = text[k]!;
    if (char === '+') {
      flush();
      bytes.push(0x20);
    } else if (char === '%') {
      const hex = text.slice(k + 1, k + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) {
        throw new BadRequestError(
          `Invalid query: '%${truncate(hex)}' at offset ${k} is not a percent escape (%XX)`,
        );
      }
      flush();
      bytes.push(parseInt(hex, 16));
      k += 2;
    } else {
      run += char;
    }
  }
  flush();
  return Uint8Array.from(bytes);
}

/** A query parameter's bytes as UTF-8 text; BadRequestError when they are not. */
export function textOf(name: string, value: Uint8Array): string {
  try {
    return utf8.decode(value);
  } catch {
    throw new BadRequestError(`Invalid query parameter '${name}': it is not valid UTF-8`);
  }
}

/** `true` / `false` (BadRequestError for anything else). */
export function booleanOf(name: string, value: Uint8Array): boolean {
  const text = textOf(name, value);
  if (text === 'true') return true;
  if (text === 'false') return false;
  throw new BadRequestError(`Invalid ${name} '${truncate(text)}': expected true or false`);
}

/**
 * Parses a JSON or CBOR request body into a plain object. The format follows Content-Type:
 * `application/cbor` is CBOR; `application/json`, or none, is JSON; anything else is refused
 * (415 UNSUPPORTED_MEDIA_TYPE). An empty body is `{}`.
 */
export function parseObjectBody(
  contentType: string | undefined,
  body: Uint8Array,
): Record<string, unknown> {
  const mediaType = mediaTypeOf(contentType);
  if (mediaType !== '' && mediaType !== jsonMediaType && mediaType !== cborMediaType) {
    throw new BadRequestError(
      `Cannot accept body: Content-Type is '${mediaType}', expected ${jsonMediaType} or ${cborMediaType}`,
      'UNSUPPORTED_MEDIA_TYPE',
    );
  }
  if (body.length === 0) return {};
  let value: unknown;
  if (mediaType === cborMediaType) {
    try {
      value = decodeCbor(body) as unknown;
    } catch (error) {
      throw new BadRequestError(`Cannot decode CBOR body: ${(error as Error).message}`);
    }
  } else {
    try {
      value = JSON.parse(utf8.decode(body)) as unknown;
    } catch (error) {
      throw new BadRequestError(`Cannot parse JSON body: ${(error as Error).message}`);
    }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BadRequestError('Invalid body: expected an object');
  }
  return value as Record<string, unknown>;
}

/** A member id as `--id` accepts it. */
const memberIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** A new member as `POST /v1/members` describes it. */
export interface MemberRequest {
  readonly id: string;
  /** The member's base URL (origin), where peers and clients reach it. */
  readonly url: string;
  readonly learner: boolean;
}

/** Validates the body of `POST /v1/members`. */
export function memberRequestOf(body: Record<string, unknown>): MemberRequest {
  checkKeys(body, ['id', 'url', 'learner']);
  const { id, url, learner } = body;
  if (typeof id !== 'string' || !memberIdPattern.test(id)) {
    throw new BadRequestError(
      `Invalid member id ${describe(id)}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  return { id, url: memberUrlOf(url), learner: learnerOf(learner) };
}

/** Validates a member id given in a path (`DELETE /v1/members/{id}`). */
export function memberIdOf(raw: string): string {
  let id: string;
  try {
    id = decodeURIComponent(raw);
  } catch {
    throw new BadRequestError(`Invalid member id '${truncate(raw)}': bad percent-encoding`);
  }
  if (!memberIdPattern.test(id)) {
    throw new BadRequestError(
      `Invalid member id '${truncate(id)}': use 1-64 letters, digits, '.', '_' or '-'`,
    );
  }
  return id;
}

/** Validates the body of `POST /v1/leader/transfer`: `{"to"?}`. */
export function transferTargetOf(body: Record<string, unknown>): string | undefined {
  checkKeys(body, ['to']);
  const { to } = body;
  if (to === undefined || to === null) return undefined;
  if (typeof to !== 'string' || !memberIdPattern.test(to)) {
    throw new BadRequestError(`Invalid transfer target ${describe(to)}: expected a member id`);
  }
  return to;
}

/** The body of `POST /v1/regions`. */
export interface RegionRequest {
  readonly id: string;
  readonly url: string;
  readonly primary?: boolean;
}

/** Validates the body of `POST /v1/regions`: `{"id","url","primary"?}`. */
export function regionRequestOf(body: Record<string, unknown>): RegionRequest {
  checkKeys(body, ['id', 'url', 'primary']);
  const { id, url, primary } = body;
  if (typeof id !== 'string' || !memberIdPattern.test(id)) {
    throw new BadRequestError(
      `Invalid region id ${describe(id)}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  if (typeof url !== 'string') {
    throw new BadRequestError(`Invalid region url ${describe(url)}: expected a string`);
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new BadRequestError(`Invalid region url ${describe(url)}: not a URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new BadRequestError(`Invalid region url ${describe(url)}: it must be http(s)://`);
  }
  if (primary !== undefined && primary !== null && typeof primary !== 'boolean') {
    throw new BadRequestError(`Invalid primary ${describe(primary)}: expected true or false`);
  }
  return {
    id,
    url: parsed.origin,
    ...(typeof primary === 'boolean' ? { primary } : {}),
  };
}

/** Validates a region id given in a path (`DELETE /v1/regions/{id}`). */
export function regionIdOf(raw: string): string {
  let id: string;
  try {
    id = decodeURIComponent(raw);
  } catch {
    throw new BadRequestError(`Invalid region id '${truncate(raw)}': bad percent-encoding`);
  }
  if (!memberIdPattern.test(id)) {
    throw new BadRequestError(
      `Invalid region id '${truncate(id)}': use 1-64 letters, digits, '.', '_' or '-'`,
    );
  }
  return id;
}

function learnerOf(value: unknown): boolean {
  if (value === undefined || value === null) return false;
  if (typeof value !== 'boolean') {
    throw new BadRequestError(`Invalid learner ${describe(value)}: expected true or false`);
  }
  return value;
}

function memberUrlOf(value: unknown): string {
  if (typeof value !== 'string') {
    throw new BadRequestError(`Invalid member url ${describe(value)}: expected a string`);
  }
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    throw new BadRequestError(`Invalid member url ${describe(value)}: not a URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new BadRequestError(`Invalid member url ${describe(value)}: it must be http(s)://`);
  }
  return parsed.origin;
}

function checkKeys(body: Record<string, unknown>, known: readonly string[]): void {
  for (const key of Object.keys(body)) {
    if (!known.includes(key)) {
      throw new BadRequestError(
        `Invalid body: unknown field '${truncate(key)}' (expected ${known.join(', ')})`,
      );
    }
  }
}

function describe(value: unknown): string {
  if (value === undefined) return '(missing)';
  try {
    return truncate(JSON.stringify(value) ?? typeof value);
  } catch {
    return typeof value;
  }
}

function truncate(text: string, lengthMax = 64): string {
  return text.length <= lengthMax ? text : `${text.slice(0, lengthMax)}...`;
}
