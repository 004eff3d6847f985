/**
 * Client access control: bearer tokens with scopes, loaded from a JSON file (`--tokens-file`).
 *
 * ```json
 * {
 *   "tokens": [
 *     { "name": "app",     "scope": "readwrite", "sha256": "<hex SHA-256 of the token>" },
 *     { "name": "monitor", "scope": "read",      "sha256": "<hex SHA-256 of the token>" },
 *     { "name": "ops",     "scope": "admin",     "token": "<the token itself>" }
 *   ]
 * }
 * ```
 *
 * Scopes nest: `read` allows GETs (keys, status, members, regions), `readwrite` adds PUT and
 * DELETE of keys, `admin` adds membership, regions and leadership transfer. The file should
 * hold `sha256` (`printf %s "$TOKEN" | sha256sum`), so that reading the file does not give the
 * tokens away; `token` (plain text) is accepted for tests and quick starts. Tokens are long
 * random strings (`openssl rand -hex 32`), which is why one SHA-256 is enough: there is nothing
 * to guess by brute force, unlike a password. A presented token is hashed and compared with
 * every entry in constant time, so the answer's timing says nothing about which entry, if any,
 * came close.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { PhantomError } from '../errors.js';
import { UnauthorizedError } from './request-signer.js';

/** What a token may do; each scope includes the ones before it. */
export type TokenScope = 'read' | 'readwrite' | 'admin';

/** The scopes in increasing order of power. */
export const tokenScopes: readonly TokenScope[] = ['read', 'readwrite', 'admin'];

/** Shortest plain-text token accepted in the file. */
export const tokenLengthMin = 16;

/** A request that authenticated but whose token lacks the scope: 403. */
export class ForbiddenError extends PhantomError {
  override readonly name = 'ForbiddenError';
  constructor(message: string) {
    super('FORBIDDEN', message);
  }
}

/** Who a request authenticated as. */
export interface TokenIdentity {
  /** The entry's name (logged and used as the client's key for limits; never the token). */
  readonly name: string;
  readonly scope: TokenScope;
}

interface TokenEntry extends TokenIdentity {
  readonly digest: Buffer;
}

/** A problem in the tokens file; the message names the entry and field, never a token. */
export class TokensFileError extends Error {
  override readonly name = 'TokensFileError';
}

const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** The tokens of a file; see the module comment. */
export class TokenStore {
  private readonly entries: readonly TokenEntry[];

  private constructor(entries: readonly TokenEntry[]) {
    this.entries = entries;
  }

  /** Reads and validates a tokens file; throws {@link TokensFileError}. */
  static load(file: string): TokenStore {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new TokensFileError(
        `Cannot read tokens file ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      // JSON.parse quotes the text around the error, which may be a token: say less.
      throw new TokensFileError(`Cannot parse tokens file ${file}: it is not valid JSON`);
    }
    return TokenStore.fromJson(parsed, file);
  }

  /** Validates the parsed content of a tokens file (`source` names it in errors). */
  static fromJson(value: unknown, source = 'tokens'): TokenStore {
    const fail = (message: string): never => {
      throw new TokensFileError(`Invalid ${source}: ${message}`);
    };
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      return fail('expected an object {"tokens": [...]}');
    }
    const unknownTop = Object.keys(value).filter((key) => key !== 'tokens');
    if (unknownTop.length > 0) fail(`unknown field '${unknownTop[0]!.slice(0, 64)}'`);
    const list = (value as { tokens?: unknown }).tokens;
    if (!Array.isArray(list) || list.length === 0) {
      return fail('"tokens" must be a non-empty array');
    }
    const entries: TokenEntry[] = [];
    list.forEach((item: unknown, k) => {
      const where = `tokens[${k}]`;
      if (typeof item !== 'object' || item === null || Array.isArray(item)) {
        fail(`${where} must be an object`);
      }
      const entry = item as Record<string, unknown>;
      for (const key of Object.keys(entry)) {
        if (!['name', 'scope', 'sha256', 'token'].includes(key)) {
          fail(`${where} has unknown field '${key.slice(0, 64)}'`);
        }
      }
      const { name, scope, sha256, token } = entry;
      if (typeof name !== 'string' || !namePattern.test(name)) {
        fail(`${where}.name must be 1-64 letters, digits, '.', '_' or '-'`);
      }
      if (entries.some((other) => other.name === name))
        fail(`${where}.name '${String(name)}' is used twice`);
      if (typeof scope !== 'string' || !tokenScopes.includes(scope as TokenScope)) {
        fail(`${where}.scope must be one of ${tokenScopes.join(', ')}`);
      }
      let digest: Buffer;
      if (sha256 !== undefined && token !== undefined) {
        return fail(`${where} has both sha256 and token; give one`);
      } else if (sha256 !== undefined) {
        if (typeof sha256 !== 'string' || !/^[0-9a-fA-F]{64}$/.test(sha256)) {
          return fail(`${where}.sha256 must be 64 hex digits (printf %s "$TOKEN" | sha256sum)`);
        }
        digest = Buffer.from(sha256, 'hex');
      } else if (token !== undefined) {
        if (typeof token !== 'string' || token.length < tokenLengthMin || /\s/.test(token)) {
          return fail(
            `${where}.token must be at least ${tokenLengthMin} characters without spaces (openssl rand -hex 32)`,
          );
        }
        digest = sha256Of(token);
      } else {
        return fail(`${where} needs sha256 (recommended) or token`);
      }
      if (entries.some((other) => timingSafeEqual(other.digest, digest))) {
        fail(`${where} has the same token as another entry`);
      }
      entries.push({ name: name as string, scope: scope as TokenScope, digest });
    });
    return new TokenStore(entries);
  }

  /** How many tokens the file holds. */
  get size(): number {
    return this.entries.length;
  }

  /**
   * Who the `Authorization: Bearer <token>` header authenticates. Throws
   * {@link UnauthorizedError} for a missing header, another scheme or an unknown token.
   */
  authenticate(authorization: string | undefined): TokenIdentity {
    if (authorization === undefined || authorization === '') {
      throw new UnauthorizedError(
        'Missing Authorization: this node requires a bearer token (Authorization: Bearer <token>)',
      );
    }
    const match = /^Bearer +(\S+) *$/i.exec(authorization);
    if (match === null) {
      throw new UnauthorizedError('Unsupported Authorization: expected "Bearer <token>"');
    }
    const presented = sha256Of(match[1]!);
    // Every entry is compared, whatever matched before: the time taken says nothing.
    let found: TokenEntry | null = null;
    for (const entry of this.entries) {
      if (timingSafeEqual(entry.digest, presented) && found === null) found = entry;
    }
    if (found === null) throw new UnauthorizedError('Invalid bearer token');
    return { name: found.name, scope: found.scope };
  }

  /** Throws {@link ForbiddenError} unless `identity`'s scope covers `required` for `what`. */
  static authorize(identity: TokenIdentity, required: TokenScope, what: string): void {
    if (tokenScopes.indexOf(identity.scope) < tokenScopes.indexOf(required)) {
      throw new ForbiddenError(
        `Token '${identity.name}' has scope ${identity.scope}; ${what} needs ${required}`,
      );
    }
  }
}

/** The SHA-256 of a token's UTF-8 bytes, as the tokens file stores it (hex). */
export function tokenDigestOf(token: string): string {
  return sha256Of(token).toString('hex');
}

function sha256Of(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
