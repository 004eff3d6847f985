/**
 * Bodies of the region replication routes, CBOR (RFC 8949) maps in plain mode (no tags, no
 * records), validated field by field on decode like the peer transport's messages:
 *
 * | route                            | request                                      | answer                        |
 * | -------------------------------- | -------------------------------------------- | ----------------------------- |
 * | `POST /v1/replication/batch`     | {origin, fromIndex, toIndex, strategy, items} | {region, position, strategy} |
 * | `POST /v1/replication/heartbeat` | {origin, strategy}                           | {region, position, strategy}  |
 *
 * `items` is a byte string: the writes packed as src/kv/versioned-codec.ts lays them out
 * (`encodeShippedWrites`), so a batch crosses the wire and enters the receiver's log without
 * one JS object per field. `position` is the highest index of the origin's log the receiver
 * has applied; it is what the origin resumes from. Errors are `{"error":{"code","message"}}`
 * (plus `leaderUrl` with 421 NOT_LEADER).
 */
import {
  ConflictResolutionStrategy,
  type ConflictResolutionStrategy as ConflictStrategy,
} from '../conflict/conflict-resolver.js';
import { BadRequestError } from '../errors.js';
import { checkRange } from '../kv/versioned-codec.js';
import { checkCborStructure, plainCborDecoder, plainCborEncoder } from '../transport/codec.js';
import { checkRegionId } from './types.js';

/** Route paths (DESIGN.md puts region replication under `/v1/replication/*`). */
export const replicationRoutePaths = {
  batch: '/v1/replication/batch',
  heartbeat: '/v1/replication/heartbeat',
} as const;

/** Writes shipped from `origin`: its log indexes `fromIndex..toIndex` (see RemoteBatch). */
export interface RegionBatchRequest {
  readonly origin: string;
  readonly fromIndex: number;
  readonly toIndex: number;
  /** The origin's conflict strategy; a receiver with another one refuses the batch. */
  readonly strategy: ConflictStrategy;
  /** Packed writes (`encodeShippedWrites`). */
  readonly items: Uint8Array;
}

/** A liveness probe that also asks where the receiver stands. */
export interface RegionHeartbeatRequest {
  readonly origin: string;
  readonly strategy: ConflictStrategy;
}

/** The receiver's answer to both requests. */
export interface RegionAnswer {
  /** The receiver's region id (the origin checks it is the region it meant). */
  readonly region: string;
  /** Highest index of the origin's log the receiver has applied. */
  readonly position: number;
  readonly strategy: ConflictStrategy;
}

const strategies = new Set<string>(Object.values(ConflictResolutionStrategy));

/** CBOR bytes of any of this module's bodies (and of error bodies). */
export function encodeBody(
  body: RegionBatchRequest | RegionHeartbeatRequest | RegionAnswer | object,
): Uint8Array {
  return plainCborEncoder.encode(body);
}

function decodeMap(bytes: Uint8Array, what: string, bytesMax: number): Record<string, unknown> {
  if (!(bytes instanceof Uint8Array)) throw new TypeError(`Cannot decode ${what}: not bytes`);
  if (bytes.length > bytesMax) {
    throw new BadRequestError(
      `Cannot accept ${what}: it is ${bytes.length} bytes, more than the limit of ${bytesMax}`,
      'PAYLOAD_TOO_LARGE',
    );
  }
  checkCborStructure(bytes, 4);
  let value: unknown;
  try {
    value = plainCborDecoder.decode(bytes);
  } catch (error) {
    throw new BadRequestError(`Cannot decode ${what}: ${(error as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BadRequestError(`Cannot decode ${what}: expected a CBOR map`);
  }
  return value as Record<string, unknown>;
}

function regionField(value: unknown, field: string, what: string): string {
  try {
    checkRegionId(value, `${what} ${field}`);
  } catch (error) {
    throw new BadRequestError(`Cannot decode ${what}: ${(error as Error).message}`);
  }
  return value;
}

function strategyField(value: unknown, what: string): ConflictStrategy {
  if (typeof value !== 'string' || !strategies.has(value)) {
    throw new BadRequestError(
      `Cannot decode ${what}: strategy ${JSON.stringify(value)} is not a conflict resolution strategy`,
    );
  }
  return value as ConflictStrategy;
}

function positionField(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new BadRequestError(
      `Cannot decode ${what}: position ${String(value)} is not a non-negative integer`,
    );
  }
  return value;
}

/** Decodes a batch request; throws BadRequestError naming the first bad field. */
export function decodeShipRequest(bytes: Uint8Array, bytesMax: number): RegionBatchRequest {
  const what = 'replication batch';
  const map = decodeMap(bytes, what, bytesMax);
  const origin = regionField(map['origin'], 'origin', what);
  const { fromIndex, toIndex } = map;
  checkRange(fromIndex, toIndex, (message) => {
    throw new BadRequestError(`Cannot decode ${what}: ${message}`);
  });
  const strategy = strategyField(map['strategy'], what);
  const items = map['items'];
  if (!(items instanceof Uint8Array)) {
    throw new BadRequestError(`Cannot decode ${what}: items must be a byte string`);
  }
  return {
    origin,
    fromIndex: fromIndex as number,
    toIndex: toIndex as number,
    strategy,
    items: new Uint8Array(items.buffer, items.byteOffset, items.byteLength),
  };
}

/** Decodes a heartbeat; throws BadRequestError naming the first bad field. */
export function decodeHeartbeatRequest(
  bytes: Uint8Array,
  bytesMax: number,
): RegionHeartbeatRequest {
  const what = 'replication heartbeat';
  const map = decodeMap(bytes, what, bytesMax);
  return {
    origin: regionField(map['origin'], 'origin', what),
    strategy: strategyField(map['strategy'], what),
  };
}

/** Decodes a receiver's answer; throws BadRequestError naming the first bad field. */
export function decodeRegionAnswer(bytes: Uint8Array, bytesMax: number): RegionAnswer {
  const what = 'replication answer';
  const map = decodeMap(bytes, what, bytesMax);
  return {
    region: regionField(map['region'], 'region', what),
    position: positionField(map['position'], what),
    strategy: strategyField(map['strategy'], what),
  };
}

/** What an error answer carries: code, message, and the leader's URL for 421. */
export interface ErrorAnswer {
  readonly code: string;
  readonly message: string;
  readonly leaderUrl: string;
}

/** Reads an error body (JSON or CBOR); null when it is not one. */
export function decodeErrorAnswer(bytes: Uint8Array, contentType: string): ErrorAnswer | null {
  let value: unknown;
  try {
    if (contentType.startsWith('application/cbor')) {
      checkCborStructure(bytes, 4);
      value = plainCborDecoder.decode(bytes);
    } else {
      value = JSON.parse(new TextDecoder().decode(bytes));
    }
  } catch {
    return null;
  }
  const { error, leaderUrl } = (value ?? {}) as Record<string, unknown>;
  const { code, message } = (error ?? {}) as Record<string, unknown>;
  if (typeof code !== 'string' || typeof message !== 'string') return null;
  return {
    code,
    message: message.slice(0, 1000),
    leaderUrl:
      typeof leaderUrl === 'string' && /^https?:\/\/[^/?#\s]+$/.test(leaderUrl) ? leaderUrl : '',
  };
}
