/**
 * The wire format of Raft messages between peers: CBOR (RFC 8949) through cbor-x.
 *
 * Every message is one CBOR map whose keys are the field names of its TypeScript type, so any
 * CBOR tool can read a captured body. Entries travel packed: an {@link EntryBatch}'s typed
 * arrays go as byte strings (little-endian), so decoding builds no object per entry and the
 * arrays can be handed to the WASM log as they are. A `Float64Array` (`Uint32Array`) view needs
 * an 8-aligned (4-aligned) offset into its buffer; when a byte string is not aligned, the
 * decoder copies it (a few bytes per entry; bench/codec.ts measures both paths).
 *
 * Decoding trusts nothing. Before cbor-x sees a body, {@link checkCborStructure} walks it
 * without recursion and refuses tags, indefinite lengths, nesting deeper than `depthMax`,
 * counts larger than the bytes left and trailing bytes; so cbor-x cannot be driven into deep
 * recursion, huge allocations or its extensions. Then every field is checked (type, integer
 * range, known message type, batch consistency, Raft's own invariants). Any problem is a
 * {@link BadRequestError} naming the field; nothing else escapes {@link decodeMessage}.
 *
 * @example
 * ```ts
 * const bytes = encodeMessage({ type: 'timeoutNow', from: 'n1', to: 'n2', term: 7 });
 * decodeMessage(bytes); // { type: 'timeoutNow', from: 'n1', to: 'n2', term: 7 }
 * ```
 */
import { Decoder, Encoder } from 'cbor-x';
import { transientBytes } from '../bytes.js';
import { BadRequestError } from '../errors.js';
import { describeBatchProblem, type EntryBatch } from '../raft/batch.js';
import type {
  AppendRequest,
  ConfState,
  Message,
  NodeId,
  SnapshotMeta,
  SnapshotRequest,
} from '../raft/types.js';

/** Longest node id accepted on the wire, in UTF-16 code units. */
export const nodeIdLengthMax = 255;

/** Most members a configuration list on the wire may name. */
export const confMembersMax = 10_000;

/** Limits applied while decoding. */
export interface DecodeOptions {
  /** Bodies longer than this are refused with PAYLOAD_TOO_LARGE (default: no limit here). */
  readonly bytesMax?: number;
  /** Deepest nesting of arrays and maps accepted (default {@link cborDepthMaxDefault}). */
  readonly depthMax?: number;
}

/** Default of {@link DecodeOptions.depthMax}; our deepest message nests 4 levels. */
export const cborDepthMaxDefault = 16;

/**
 * One piece of a snapshot on its way to a follower (`POST /raft/snapshot`). The first chunk
 * (offset 0) carries the SnapshotRequest and starts a transfer, replacing any unfinished one
 * from the same sender; the last chunk (`done`) carries the CRC-32 of the whole snapshot.
 */
export interface SnapshotChunk {
  /** Sender's id: a receiver holds at most one transfer per sender. */
  readonly from: NodeId;
  /** Chosen by the sender per transfer, so chunks of an abandoned transfer are refused. */
  readonly transferId: number;
  /** Position of `data` in the whole snapshot. */
  readonly offset: number;
  /** Size of the whole snapshot in bytes. */
  readonly total: number;
  /** True on the last chunk: `offset + data.length === total`. */
  readonly done: boolean;
  readonly data: Uint8Array;
  /** Present exactly on the first chunk (offset 0). */
  readonly request: SnapshotRequest | null;
  /** CRC-32 (zlib's) of the whole snapshot; present exactly on the last chunk. */
  readonly crc32: number | null;
}

/**
 * cbor-x in its plain-CBOR mode: no record extension, no tag on byte strings, so the bytes are
 * standard CBOR that {@link checkCborStructure} accepts. Shared by every CBOR body (peer
 * messages here, region requests in src/replication/wire.ts).
 */
export const plainCborEncoder = new Encoder({
  useRecords: false,
  mapsAsObjects: true,
  tagUint8Array: false,
  variableMapSize: true,
});
/** The decoder of {@link plainCborEncoder}'s bytes. */
export const plainCborDecoder = new Decoder({ useRecords: false, mapsAsObjects: true });

const isLittleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Encodes any Raft message. Throws TypeError when the message is not well-formed. */
export function encodeMessage(message: Message): Uint8Array {
  return plainCborEncoder.encode(wireOf(message));
}

/**
 * Decodes and validates one message. Whatever the bytes, throws only {@link BadRequestError},
 * naming the first problem: `PAYLOAD_TOO_LARGE` past `bytesMax`, `BAD_REQUEST` otherwise
 * (and TypeError if `bytes` is not a Uint8Array at all: a caller's mistake).
 */
export function decodeMessage(bytes: Uint8Array, options: DecodeOptions = {}): Message {
  return messageOf(decodeValue(bytes, options), 'message');
}

/** Encodes one snapshot chunk. Throws TypeError when the chunk is inconsistent. */
export function encodeSnapshotChunk(chunk: SnapshotChunk): Uint8Array {
  const first = chunk.offset === 0;
  if (chunk.offset + chunk.data.length > chunk.total || chunk.done !== isLastChunk(chunk)) {
    throw new TypeError(
      `Cannot encode snapshot chunk: ${chunk.data.length} bytes at offset ${chunk.offset} ` +
        `of ${chunk.total} with done=${String(chunk.done)}`,
    );
  }
  if (first !== (chunk.request !== null) || chunk.done !== (chunk.crc32 !== null)) {
    throw new TypeError(
      'Cannot encode snapshot chunk: the first chunk carries the request and the last the CRC-32',
    );
  }
  const wire: Record<string, unknown> = {
    from: chunk.from,
    transferId: chunk.transferId,
    offset: chunk.offset,
    total: chunk.total,
    done: chunk.done,
    data: chunk.data,
  };
  if (chunk.request !== null) wire['request'] = wireOf(chunk.request);
  if (chunk.crc32 !== null) wire['crc32'] = chunk.crc32;
  return plainCborEncoder.encode(wire);
}

/** Decodes and validates one snapshot chunk; throws {@link BadRequestError} only. */
export function decodeSnapshotChunk(bytes: Uint8Array, options: DecodeOptions = {}): SnapshotChunk {
  const record = recordOf(decodeValue(bytes, options), 'chunk');
  const from = nodeIdOf(record, 'from', 'chunk');
  const transferId = integerOf(record, 'transferId', 'chunk');
  const offset = integerOf(record, 'offset', 'chunk');
  const total = integerOf(record, 'total', 'chunk');
  const done = booleanOf(record, 'done', 'chunk');
  const data = bytesOf(record, 'data', 'chunk');
  if (offset + data.length > total) {
    throw bad(`chunk.data: ${data.length} bytes at offset ${offset} run past total ${total}`);
  }
  if (done !== (offset + data.length === total)) {
    throw bad(`chunk.done is ${String(done)} with ${data.length} bytes at offset ${offset}`);
  }
  let request: SnapshotRequest | null = null;
  if (offset === 0) {
    const message = messageOf(fieldOf(record, 'request', 'chunk'), 'chunk.request');
    if (message.type !== 'snapshot') {
      throw bad(`chunk.request.type is '${message.type}', expected 'snapshot'`);
    }
    if (message.from !== from) {
      throw bad(`chunk.request.from is '${message.from}' but chunk.from is '${from}'`);
    }
    request = message;
  } else if (Object.hasOwn(record, 'request')) {
    throw bad(`chunk.request is only sent on the first chunk; this one is at offset ${offset}`);
  }
  let crc32: number | null = null;
  if (done) crc32 = integerOf(record, 'crc32', 'chunk', 0, 0xffffffff);
  else if (Object.hasOwn(record, 'crc32')) {
    throw bad('chunk.crc32 is only sent on the last chunk');
  }
  return { from, transferId, offset, total, done, data, request, crc32 };
}

/** Whether a chunk ends its snapshot. */
function isLastChunk(chunk: SnapshotChunk): boolean {
  return chunk.offset + chunk.data.length === chunk.total;
}

/**
 * Validates a message already decoded from some syntax (CBOR here; JSON in tools) and returns
 * a fresh object holding only the known fields. Throws {@link BadRequestError} naming the field.
 */
export function validateMessage(value: unknown): Message {
  return messageOf(value, 'message');
}

/**
 * Walks one CBOR data item without recursion and throws {@link BadRequestError} unless it is
 * plain, complete, definite-length CBOR: no tags, no simple values beyond false/true/null/
 * undefined and floats, nesting at most `depthMax` deep, every declared length inside the
 * input, nothing after the item. Cost: one pass over the item heads, not over string bytes.
 */
export function checkCborStructure(bytes: Uint8Array, depthMax = cborDepthMaxDefault): void {
  const end = bytes.length;
  let position = 0;
  // Items still to read at each open array/map level; the top level holds exactly one item.
  const pending: number[] = [];
  let remaining = 1;
  for (;;) {
    if (remaining === 0) {
      const outer = pending.pop();
      if (outer === undefined) break;
      remaining = outer;
      continue;
    }
    remaining--;
    if (position >= end) throw bad(`CBOR body is truncated at byte ${position}`);
    const head = bytes[position]!;
    const major = head >> 5;
    const info = head & 31;
    const start = position;
    position++;
    let argument: number;
    if (info < 24) {
      argument = info;
    } else if (info <= 27) {
      const size = 1 << (info - 24);
      if (position + size > end) throw bad(`CBOR body is truncated at byte ${position}`);
      argument = 0;
      // A 64-bit argument above 2^53 loses precision here, which is fine: it is only ever
      // compared with the bytes left, and anything that large exceeds them.
      for (let k = 0; k < size; k++) argument = argument * 256 + bytes[position + k]!;
      position += size;
    } else if (info === 31) {
      throw bad(
        major === 7
          ? `CBOR body has a stray break code at byte ${start}`
          : `CBOR item at byte ${start} has an indefinite length, which is not accepted`,
      );
    } else {
      throw bad(`CBOR item at byte ${start} has reserved additional information ${info}`);
    }
    switch (major) {
      case 0:
      case 1:
        break;
      case 2:
      case 3:
        if (argument > end - position) {
          throw bad(
            `CBOR string at byte ${start} declares ${argument} bytes, ${end - position} left`,
          );
        }
        position += argument;
        break;
      case 4:
      case 5: {
        // Every item takes at least one byte, so a count larger than the bytes left is a lie
        // that would otherwise make the decoder allocate for it.
        const items = major === 4 ? argument : argument * 2;
        if (items > end - position) {
          throw bad(
            `CBOR container at byte ${start} declares ${items} items, ${end - position} bytes left`,
          );
        }
        if (pending.length >= depthMax) {
          throw bad(`CBOR body nests deeper than ${depthMax} levels at byte ${start}`);
        }
        pending.push(remaining);
        remaining = items;
        break;
      }
      case 6:
        throw bad(`CBOR tag ${argument} at byte ${start} is not accepted`);
      default:
        // major 7: false, true, null, undefined and half/single/double floats only.
        if (!((info >= 20 && info <= 23) || (info >= 25 && info <= 27))) {
          throw bad(`CBOR simple value at byte ${start} is not accepted`);
        }
    }
  }
  if (position !== end) throw bad(`CBOR body has ${end - position} bytes after its end`);
}

function decodeValue(bytes: Uint8Array, options: DecodeOptions): unknown {
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError('Cannot decode: the body is not a Uint8Array');
  }
  const { bytesMax = Number.POSITIVE_INFINITY, depthMax = cborDepthMaxDefault } = options;
  if (bytes.length > bytesMax) {
    throw new BadRequestError(
      `Cannot decode: body is ${bytes.length} bytes, more than the limit of ${bytesMax}`,
      'PAYLOAD_TOO_LARGE',
    );
  }
  checkCborStructure(bytes, depthMax);
  try {
    return plainCborDecoder.decode(bytes) as unknown;
  } catch (error) {
    // The structure check leaves cbor-x only content errors (such as a map key it cannot
    // use); report them as the peer's fault all the same.
    throw bad(
      `CBOR body cannot be decoded: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding: build the plain object cbor-x writes. Byte strings are views, never copies (on a
// little-endian host), so the only copy of the entries is the one into cbor-x's output buffer.

function wireOf(message: Message): Record<string, unknown> {
  const wire: Record<string, unknown> = {
    type: message.type,
    from: message.from,
    to: message.to,
    term: message.term,
  };
  if (message.rpcId !== undefined) wire['rpcId'] = message.rpcId;
  switch (message.type) {
    case 'vote':
      wire['preVote'] = message.preVote;
      wire['lastLogIndex'] = message.lastLogIndex;
      wire['lastLogTerm'] = message.lastLogTerm;
      wire['transfer'] = message.transfer;
      break;
    case 'voteResp':
      wire['preVote'] = message.preVote;
      wire['granted'] = message.granted;
      if (message.commit !== undefined) {
        wire['commitIndex'] = message.commit.index;
        wire['commitTerm'] = message.commit.term;
      }
      break;
    case 'append':
      wire['prevLogIndex'] = message.prevLogIndex;
      wire['prevLogTerm'] = message.prevLogTerm;
      wire['commit'] = message.commit;
      wire['entries'] = batchWireOf(message);
      break;
    case 'appendResp':
      wire['success'] = message.success;
      wire['matchIndex'] = message.matchIndex;
      wire['rejectIndex'] = message.rejectIndex;
      wire['hintIndex'] = message.hintIndex;
      wire['hintTerm'] = message.hintTerm;
      break;
    case 'heartbeat':
      wire['commit'] = message.commit;
      wire['context'] = message.context;
      break;
    case 'heartbeatResp':
      wire['context'] = message.context;
      break;
    case 'snapshot':
      wire['snapshot'] = snapshotMetaWireOf(message.snapshot);
      break;
    case 'timeoutNow':
      break;
    default: {
      const unknown: { type?: unknown } = message;
      throw new TypeError(`Cannot encode message: unknown type ${String(unknown.type)}`);
    }
  }
  return wire;
}

/**
 * Throws TypeError when an append cannot be encoded: its entries do not start right after
 * `prevLogIndex`, or the batch's arrays are shorter than its count or its data. Constant time,
 * so a sender can check an append when it is handed over rather than when it is sent.
 */
export function checkAppendShape(message: AppendRequest): void {
  const batch = message.entries;
  const { count } = batch;
  if (batch.firstIndex !== message.prevLogIndex + 1) {
    throw new TypeError(
      `Cannot encode append: entries.firstIndex is ${batch.firstIndex}, expected ${message.prevLogIndex + 1}`,
    );
  }
  if (batch.terms.length < count || batch.types.length < count || batch.ends.length < count) {
    throw new TypeError(`Cannot encode append: a batch of ${count} entries has short arrays`);
  }
  const dataBytes = count === 0 ? 0 : batch.ends[count - 1]!;
  if (dataBytes > batch.data.length) {
    throw new TypeError(
      `Cannot encode append: entries end at byte ${dataBytes}, data has ${batch.data.length}`,
    );
  }
}

function batchWireOf(message: AppendRequest): Record<string, unknown> {
  checkAppendShape(message);
  const batch = message.entries;
  const { count } = batch;
  const dataBytes = count === 0 ? 0 : batch.ends[count - 1]!;
  return {
    firstIndex: batch.firstIndex,
    count,
    terms: littleEndianBytesOf(batch.terms, count),
    types: batch.types.subarray(0, count),
    ends: littleEndianBytesOf(batch.ends, count),
    data: batch.data.subarray(0, dataBytes),
  };
}

function snapshotMetaWireOf(meta: SnapshotMeta): Record<string, unknown> {
  return {
    index: meta.index,
    term: meta.term,
    conf: {
      voters: meta.conf.voters,
      votersOutgoing: meta.conf.votersOutgoing,
      learners: meta.conf.learners,
    },
  };
}

/** The first `count` elements of `array` as little-endian bytes (a view when possible). */
export function littleEndianBytesOf(array: Float64Array | Uint32Array, count: number): Uint8Array {
  const size = count * array.BYTES_PER_ELEMENT;
  const view = new Uint8Array(array.buffer, array.byteOffset, size);
  return isLittleEndian ? view : swapBytes(view, array.BYTES_PER_ELEMENT);
}

/** A copy of `bytes` with every `width`-byte group reversed (big-endian <-> little-endian). */
export function swapBytes(bytes: Uint8Array, width: number): Uint8Array {
  const swapped = new Uint8Array(bytes.length);
  for (let base = 0; base < bytes.length; base += width) {
    for (let k = 0; k < width; k++) swapped[base + k] = bytes[base + width - 1 - k]!;
  }
  return swapped;
}

// ---------------------------------------------------------------------------------------------
// Decoding: check every field and build fresh objects holding only known fields. Unknown
// fields are ignored so that a newer peer may add optional ones during a rolling upgrade.

function bad(message: string): BadRequestError {
  return new BadRequestError(`Cannot accept peer message: ${message}`);
}

type WireRecord = Readonly<Record<string, unknown>>;

function recordOf(value: unknown, where: string): WireRecord {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw bad(`${where} is ${describe(value)}, expected a map`);
  }
  if (ArrayBuffer.isView(value)) throw bad(`${where} is a byte string, expected a map`);
  return value as WireRecord;
}

function fieldOf(record: WireRecord, key: string, where: string): unknown {
  // Own properties only: a key such as "constructor" must not reach inherited values.
  if (!Object.hasOwn(record, key)) throw bad(`${where}.${key} is missing`);
  return record[key];
}

function integerOf(
  record: WireRecord,
  key: string,
  where: string,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const value = fieldOf(record, key, where);
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw bad(`${where}.${key} is ${describe(value)}, expected an integer in ${min}..${max}`);
  }
  return value;
}

function booleanOf(record: WireRecord, key: string, where: string): boolean {
  const value = fieldOf(record, key, where);
  if (typeof value !== 'boolean') {
    throw bad(`${where}.${key} is ${describe(value)}, expected a boolean`);
  }
  return value;
}

function nodeIdOf(record: WireRecord, key: string, where: string): NodeId {
  return nodeIdValueOf(fieldOf(record, key, where), `${where}.${key}`);
}

function nodeIdValueOf(value: unknown, where: string): NodeId {
  if (typeof value !== 'string' || value.length === 0 || value.length > nodeIdLengthMax) {
    throw bad(
      `${where} is ${describe(value)}, expected a node id of 1..${nodeIdLengthMax} characters`,
    );
  }
  return value;
}

function bytesOf(record: WireRecord, key: string, where: string): Uint8Array {
  const value = fieldOf(record, key, where);
  if (!(value instanceof Uint8Array)) {
    throw bad(`${where}.${key} is ${describe(value)}, expected a byte string`);
  }
  // cbor-x hands out views of the input's class (Buffer for a Buffer body); callers get
  // plain Uint8Arrays over the same bytes.
  return value.constructor === Uint8Array
    ? value
    : new Uint8Array(value.buffer, value.byteOffset, value.length);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') {
    return value.length > 32 ? `a string of ${value.length} characters` : `'${value}'`;
  }
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') {
    return String(value);
  }
  if (value instanceof Uint8Array) return `a byte string of ${value.length} bytes`;
  if (Array.isArray(value)) return `an array of ${value.length} items`;
  return typeof value === 'object' ? 'a map' : `a ${typeof value}`;
}

const messageTypes = new Set<string>([
  'vote',
  'voteResp',
  'append',
  'appendResp',
  'heartbeat',
  'heartbeatResp',
  'snapshot',
  'timeoutNow',
]);

function messageOf(value: unknown, where: string): Message {
  const record = recordOf(value, where);
  const type = fieldOf(record, 'type', where);
  if (typeof type !== 'string' || !messageTypes.has(type)) {
    throw bad(
      `${where}.type is ${describe(type)}, expected one of ${[...messageTypes].join(', ')}`,
    );
  }
  const from = nodeIdOf(record, 'from', where);
  const to = nodeIdOf(record, 'to', where);
  const term = integerOf(record, 'term', where);
  const base: { from: NodeId; to: NodeId; term: number; rpcId?: number } = { from, to, term };
  if (Object.hasOwn(record, 'rpcId')) base.rpcId = integerOf(record, 'rpcId', where);
  switch (type) {
    case 'vote': {
      const lastLogIndex = integerOf(record, 'lastLogIndex', where);
      const lastLogTerm = integerOf(record, 'lastLogTerm', where);
      // A candidate's log holds no entry from a term later than the one it campaigns in.
      if (lastLogTerm > term) {
        throw bad(`${where}.lastLogTerm is ${lastLogTerm}, above the message term ${term}`);
      }
      return {
        type,
        ...base,
        preVote: booleanOf(record, 'preVote', where),
        lastLogIndex,
        lastLogTerm,
        transfer: booleanOf(record, 'transfer', where),
      };
    }
    case 'voteResp': {
      const answer = {
        type,
        ...base,
        preVote: booleanOf(record, 'preVote', where),
        granted: booleanOf(record, 'granted', where),
      };
      if (!Object.hasOwn(record, 'commitIndex')) return answer;
      const index = integerOf(record, 'commitIndex', where, 1);
      const commitTerm = integerOf(record, 'commitTerm', where, 1);
      if (commitTerm > term) {
        throw bad(`${where}.commitTerm is ${commitTerm}, above the message term ${term}`);
      }
      // A spread copy given a property its source lacks outlives scavenges (see withRpcId in
      // raft/core.ts).
      return Object.assign(answer, { commit: { index, term: commitTerm } });
    }
    case 'append': {
      const prevLogIndex = integerOf(record, 'prevLogIndex', where);
      const prevLogTerm = integerOf(record, 'prevLogTerm', where);
      const commit = integerOf(record, 'commit', where);
      if (prevLogTerm > term) {
        throw bad(`${where}.prevLogTerm is ${prevLogTerm}, above the message term ${term}`);
      }
      const entries = batchOf(fieldOf(record, 'entries', where), `${where}.entries`);
      if (entries.firstIndex !== prevLogIndex + 1) {
        throw bad(
          `${where}.entries.firstIndex is ${entries.firstIndex}, expected prevLogIndex + 1 = ${prevLogIndex + 1}`,
        );
      }
      checkBatchTerms(entries, prevLogTerm, term, `${where}.entries`);
      return { type, ...base, prevLogIndex, prevLogTerm, entries, commit };
    }
    case 'appendResp':
      return {
        type,
        ...base,
        success: booleanOf(record, 'success', where),
        matchIndex: integerOf(record, 'matchIndex', where),
        rejectIndex: integerOf(record, 'rejectIndex', where),
        hintIndex: integerOf(record, 'hintIndex', where),
        hintTerm: integerOf(record, 'hintTerm', where),
      };
    case 'heartbeat':
      return {
        type,
        ...base,
        commit: integerOf(record, 'commit', where),
        context: integerOf(record, 'context', where),
      };
    case 'heartbeatResp':
      return { type, ...base, context: integerOf(record, 'context', where) };
    case 'snapshot': {
      const snapshot = snapshotMetaOf(fieldOf(record, 'snapshot', where), `${where}.snapshot`);
      if (snapshot.term > term) {
        throw bad(`${where}.snapshot.term is ${snapshot.term}, above the message term ${term}`);
      }
      return { type, ...base, snapshot };
    }
    default:
      return { type: 'timeoutNow', ...base };
  }
}

function batchOf(value: unknown, where: string): EntryBatch {
  const record = recordOf(value, where);
  const firstIndex = integerOf(record, 'firstIndex', where, 1);
  // ends are Uint32, so no batch holds more entries or bytes than 2^32 - 1.
  const count = integerOf(record, 'count', where, 0, 0xffffffff);
  if (firstIndex + count - 1 > Number.MAX_SAFE_INTEGER) {
    throw bad(`${where} of ${count} entries from ${firstIndex} passes the largest index`);
  }
  const termBytes = bytesOf(record, 'terms', where);
  const types = bytesOf(record, 'types', where);
  const endBytes = bytesOf(record, 'ends', where);
  const data = bytesOf(record, 'data', where);
  if (termBytes.length !== count * 8) {
    throw bad(`${where}.terms has ${termBytes.length} bytes, expected 8 per entry = ${count * 8}`);
  }
  if (types.length !== count) {
    throw bad(`${where}.types has ${types.length} bytes, expected 1 per entry = ${count}`);
  }
  if (endBytes.length !== count * 4) {
    throw bad(`${where}.ends has ${endBytes.length} bytes, expected 4 per entry = ${count * 4}`);
  }
  const { terms, ends } = packedArraysOf(termBytes, endBytes, count);
  const batch: EntryBatch = { firstIndex, count, terms, types, ends, data };
  const problem = describeBatchProblem(batch);
  if (problem !== null) throw bad(`${where}: ${problem}`);
  const dataBytes = count === 0 ? 0 : batch.ends[count - 1]!;
  if (dataBytes !== data.length) {
    throw bad(`${where}.data has ${data.length} bytes but the entries end at byte ${dataBytes}`);
  }
  return batch;
}

/**
 * Raft's log invariant on the wire: terms never decrease along a log, so a batch starts at or
 * above `prevLogTerm` and no entry is newer than the leader's term. A batch breaking it can
 * only come from a broken or hostile peer; refusing it keeps the core from storing it.
 */
function checkBatchTerms(
  batch: EntryBatch,
  prevLogTerm: number,
  term: number,
  where: string,
): void {
  let previous = prevLogTerm;
  for (let k = 0; k < batch.count; k++) {
    const entryTerm = batch.terms[k]!;
    if (entryTerm < previous || entryTerm > term) {
      throw bad(
        `${where}: entry ${batch.firstIndex + k} has term ${entryTerm}, expected ${previous}..${term}`,
      );
    }
    previous = entryTerm;
  }
}

/** Views over terms and ends where aligned; copies, in one allocation when both need one. */
function packedArraysOf(
  termBytes: Uint8Array,
  endBytes: Uint8Array,
  count: number,
): { terms: Float64Array; ends: Uint32Array } {
  if (isLittleEndian && termBytes.byteOffset % 8 !== 0 && endBytes.byteOffset % 4 !== 0) {
    // Allocating a typed array costs more than copying a small batch's bytes: allocate once.
    const copy = transientBytes(count * 12);
    copy.set(termBytes, 0);
    copy.set(endBytes, count * 8);
    return {
      terms: new Float64Array(copy.buffer, copy.byteOffset, count),
      ends: new Uint32Array(copy.buffer, copy.byteOffset + count * 8, count),
    };
  }
  return { terms: float64ArrayOf(termBytes), ends: uint32ArrayOf(endBytes) };
}

/**
 * A Float64Array over `bytes` without copying when they are 8-aligned, else over a short-lived
 * copy (a pool slice).
 */
export function float64ArrayOf(bytes: Uint8Array): Float64Array {
  const count = bytes.length >>> 3;
  if (!isLittleEndian) return new Float64Array(swapBytes(bytes, 8).buffer, 0, count);
  if (bytes.byteOffset % 8 === 0) return new Float64Array(bytes.buffer, bytes.byteOffset, count);
  const copy = transientBytes(bytes.length);
  copy.set(bytes);
  return new Float64Array(copy.buffer, copy.byteOffset, count);
}

/**
 * A Uint32Array over `bytes` without copying when they are 4-aligned, else over a short-lived
 * copy (a pool slice).
 */
export function uint32ArrayOf(bytes: Uint8Array): Uint32Array {
  const count = bytes.length >>> 2;
  if (!isLittleEndian) return new Uint32Array(swapBytes(bytes, 4).buffer, 0, count);
  if (bytes.byteOffset % 4 === 0) return new Uint32Array(bytes.buffer, bytes.byteOffset, count);
  const copy = transientBytes(bytes.length);
  copy.set(bytes);
  return new Uint32Array(copy.buffer, copy.byteOffset, count);
}

function snapshotMetaOf(value: unknown, where: string): SnapshotMeta {
  const record = recordOf(value, where);
  const index = integerOf(record, 'index', where);
  const term = integerOf(record, 'term', where);
  if ((index === 0) !== (term === 0)) {
    throw bad(`${where} has index ${index} and term ${term}; only the empty snapshot has term 0`);
  }
  return { index, term, conf: confStateOf(fieldOf(record, 'conf', where), `${where}.conf`) };
}

function confStateOf(value: unknown, where: string): ConfState {
  const record = recordOf(value, where);
  const voters = nodeIdListOf(record, 'voters', where);
  const votersOutgoing = nodeIdListOf(record, 'votersOutgoing', where);
  // How the lists overlap during a joint change is the core's business; the wire only
  // checks that each is a list of distinct ids.
  const learners = nodeIdListOf(record, 'learners', where);
  return { voters, votersOutgoing, learners };
}

function nodeIdListOf(record: WireRecord, key: string, where: string): NodeId[] {
  const value = fieldOf(record, key, where);
  if (!Array.isArray(value) || value.length > confMembersMax) {
    throw bad(
      `${where}.${key} is ${describe(value)}, expected a list of at most ${confMembersMax} ids`,
    );
  }
  const ids: NodeId[] = [];
  const seen = new Set<NodeId>();
  for (let k = 0; k < value.length; k++) {
    const id = nodeIdValueOf(value[k], `${where}.${key}[${k}]`);
    if (seen.has(id)) throw bad(`${where}.${key} names '${id}' twice`);
    seen.add(id);
    ids.push(id);
  }
  return ids;
}
