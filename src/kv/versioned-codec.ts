/**
 * Binary encodings of the versioned key-value state: a key's {@link Version} (siblings with
 * their HLC, dot and origin region, plus the causal context), commands stamped with the HLC
 * their leader took at proposal time, batches of writes shipped from another region, and the
 * v2 snapshot that carries all of it.
 *
 * Like codec.ts, every format starts with a byte that tells it apart and is validated in full
 * on decode: a truncated, malformed or inconsistent input is a typed error, never a crash and
 * never a silently different state. All integers are little endian; `str8` is a u8 length
 * followed by that many UTF-8 bytes (ids are at most 255 bytes, see `checkNodeId`).
 *
 * Version:
 *
 *     u16 siblings × (u8 flags (bit 0: delete) | value: u32 length + bytes, absent for a delete
 *                    | f64 hlc wallMs | u32 hlc logical | str8 hlc node
 *                    | str8 dot node | f64 dot counter | str8 region)      newest first
 *     u16 context entries × (str8 replica | f64 counter)                  ascending replica ids
 *
 * Stamped command (the payload of a local write proposed by a region's leader):
 *
 *     u8 0x81 | u8 n | n bytes of `encodeHlc(hlc)` | a v1 command (codec.ts)
 *
 * Remote batch (what a region ships and the receiver proposes, see {@link RemoteBatch}):
 *
 *     u8 0x82 | u8 strategy | str8 origin | f64 fromIndex | f64 toIndex | items
 *     items: u32 count × (f64 originIndex | u16 key bytes | key | version)
 *
 * Snapshot v2:
 *
 *     "PKVS" | u8 2 | u8[3] 0 | f64 appliedIndex | str8 region | u8 has clock [hlc as above]
 *     | u32 origins × (str8 origin | f64 position)
 *     | u32 keys × (u16 key bytes | key | version | f64 localIndex | u8 local (0 none,
 *       1 the current version, 2 a version that follows))                 ascending keys
 *     | u32 CRC-32 of every byte before it
 */
import { crc32 } from 'node:zlib';
import { assert } from '../assert.js';
import { transientBytes, writeUtf8 } from '../bytes.js';
import type { KvLimits } from '../config.js';
import { BadRequestError } from '../errors.js';
import {
  ConflictResolutionStrategy,
  type ConflictResolutionStrategy as Strategy,
} from '../conflict/conflict-resolver.js';
import {
  checkVersion,
  compareWrites,
  isVersion,
  type Version,
  type Write,
} from '../conflict/dvv.js';
import {
  compareNodeIds,
  decodeHlc,
  encodeHlc,
  isHlcTimestamp,
  type HlcTimestamp,
} from '../conflict/hlc.js';
import { Reader, checkKey, readSnapshotHeader, snapshotMagic } from './codec.js';

/** First byte of a stamped command: an HLC, then a v1 command. */
export const stampedCommandMarker = 0x81;
/** First byte of a remote batch. */
export const remoteBatchMarker = 0x82;
/** Version byte of snapshots that carry versions (v1 carried plain values). */
export const versionedSnapshotVersion = 2;

const flagDelete = 1;
const localNone = 0;
const localCurrent = 1;
const localSeparate = 2;

/** Strategy <-> byte, in a fixed order that never changes (it is stored in logs). */
const strategyCodes: readonly Strategy[] = [
  ConflictResolutionStrategy.LATEST_TIMESTAMP,
  ConflictResolutionStrategy.LWW_REGISTER,
  ConflictResolutionStrategy.MULTI_VALUE,
  ConflictResolutionStrategy.CUSTOM,
];

const utf8 = new TextEncoder();
const encodedIds = new Map<string, Uint8Array>();
const encodedIdsMax = 1024;
/** Up to this many bytes, {@link ByteWriter.bytes} copies with a loop. */
const smallCopyBytesMax = 32;

/** A growable little-endian writer (sizes here are not known up front). */
export class ByteWriter {
  private buffer: Uint8Array;
  private view: DataView;
  private at = 0;

  /** `initialBytes`: room to start with (it doubles as needed). */
  constructor(initialBytes = 256) {
    this.buffer = new Uint8Array(initialBytes);
    this.view = new DataView(this.buffer.buffer);
  }

  /** Bytes written so far. */
  get length(): number {
    return this.at;
  }

  private ensure(count: number): void {
    if (this.at + count <= this.buffer.length) return;
    const grown = new Uint8Array(Math.max(this.buffer.length * 2, this.at + count));
    grown.set(this.buffer.subarray(0, this.at));
    this.buffer = grown;
    this.view = new DataView(grown.buffer);
  }

  u8(value: number): void {
    this.ensure(1);
    this.view.setUint8(this.at, value);
    this.at += 1;
  }

  u16(value: number): void {
    this.ensure(2);
    this.view.setUint16(this.at, value, true);
    this.at += 2;
  }

  u32(value: number): void {
    this.ensure(4);
    this.view.setUint32(this.at, value, true);
    this.at += 4;
  }

  f64(value: number): void {
    this.ensure(8);
    this.view.setFloat64(this.at, value, true);
    this.at += 8;
  }

  bytes(value: Uint8Array): void {
    this.ensure(value.length);
    if (value.length <= smallCopyBytesMax) {
      // TypedArray#set costs more than a loop for a few bytes (ids, short values).
      for (let k = 0; k < value.length; k++) this.buffer[this.at + k] = value[k]!;
    } else {
      this.buffer.set(value, this.at);
    }
    this.at += value.length;
  }

  /**
   * A u16 length and the UTF-8 bytes of a key, encoded in place: a snapshot writes every key,
   * and encoding each into its own array first was a third of the time it took.
   */
  str16(value: string): void {
    // UTF-8 takes at most 3 bytes per UTF-16 unit.
    this.ensure(2 + value.length * 3);
    const length = writeUtf8(value, this.buffer, this.at + 2);
    if (length > 0xffff) throw new RangeError(`Cannot encode key: ${length} bytes`);
    this.view.setUint16(this.at, length, true);
    this.at += 2 + length;
  }

  /** A u8 length and the UTF-8 bytes of an id (at most 255 bytes, checked by the caller). */
  str8(value: string): void {
    let encoded = encodedIds.get(value);
    if (encoded === undefined) {
      encoded = utf8.encode(value);
      if (encoded.length > 255) throw new RangeError(`Cannot encode id: ${encoded.length} bytes`);
      // Ids (regions, replicas) repeat in every write of a snapshot: encode each once.
      if (encodedIds.size >= encodedIdsMax) encodedIds.clear();
      encodedIds.set(value, encoded);
    }
    this.u8(encoded.length);
    this.bytes(encoded);
  }

  /** The bytes written so far (a view, valid until the next write). */
  peek(): Uint8Array {
    return this.buffer.subarray(0, this.at);
  }

  /** A copy of the bytes written. */
  finish(): Uint8Array {
    return this.buffer.slice(0, this.at);
  }
}

// -------------------------------------------------------------------------------------------
// Versions

/** Appends `version` in the format of the module comment. */
export function writeVersion(writer: ByteWriter, version: Version): void {
  writer.u16(version.siblings.length);
  for (const write of version.siblings) {
    writer.u8(write.value === null ? flagDelete : 0);
    if (write.value !== null) {
      writer.u32(write.value.length);
      writer.bytes(write.value);
    }
    writeHlc(writer, write.hlc);
    writer.str8(write.dot.node);
    writer.f64(write.dot.counter);
    writer.str8(write.region);
  }
  writer.u16(version.context.size);
  for (const [replica, counter] of version.context) {
    writer.str8(replica);
    writer.f64(counter);
  }
}

function writeHlc(writer: ByteWriter, hlc: HlcTimestamp): void {
  writer.f64(hlc.wallMs);
  writer.u32(hlc.logical);
  writer.str8(hlc.node);
}

function readHlc(reader: Reader, what: string): HlcTimestamp {
  const hlc = {
    wallMs: reader.f64(`${what} wall time`),
    logical: reader.u32(`${what} logical counter`),
    node: reader.utf8(reader.u8(`${what} node length`), `${what} node`),
  };
  if (!isHlcTimestamp(hlc)) reader.fail(`${what} is not a valid HLC timestamp`);
  return hlc;
}

/**
 * Reads a version written by {@link writeVersion} and checks it: valid writes, every sibling
 * covered by the context and no dot twice (`checkVersion`), siblings newest first, context
 * replicas ascending, values within `valueBytesMax`.
 */
export function readVersion(reader: Reader, valueBytesMax: number, what: string): Version {
  const siblingCount = reader.u16(`${what} sibling count`);
  if (siblingCount === 0) reader.fail(`${what} has no siblings`);
  const siblings: Write[] = [];
  for (let k = 0; k < siblingCount; k++) {
    const flags = reader.u8(`${what} sibling flags`);
    if ((flags & ~flagDelete) !== 0) reader.fail(`${what} sibling ${k} has unknown flags ${flags}`);
    let value: Uint8Array | null = null;
    if ((flags & flagDelete) === 0) {
      const length = reader.u32(`${what} value length`);
      if (length > valueBytesMax) {
        reader.fail(`${what} sibling ${k} is ${length} bytes, at most ${valueBytesMax} allowed`);
      }
      value = reader.bytes(length, `${what} value`);
    }
    const hlc = readHlc(reader, `${what} sibling ${k} HLC`);
    const node = reader.utf8(reader.u8(`${what} dot node length`), `${what} dot node`);
    const counter = reader.f64(`${what} dot counter`);
    const region = reader.utf8(reader.u8(`${what} region length`), `${what} region`);
    const write: Write = { value, hlc, dot: { node, counter }, region };
    const previous = siblings[k - 1];
    if (previous !== undefined && compareWrites(previous, write) <= 0) {
      reader.fail(`${what} siblings are not newest first at sibling ${k}`);
    }
    siblings.push(write);
  }
  const entries = reader.u16(`${what} context size`);
  const context = new Map<string, number>();
  let previousReplica: string | undefined;
  for (let k = 0; k < entries; k++) {
    const replica = reader.utf8(reader.u8(`${what} context replica length`), `${what} replica`);
    const counter = reader.f64(`${what} context counter`);
    if (previousReplica !== undefined && compareNodeIds(previousReplica, replica) >= 0) {
      reader.fail(`${what} context replicas are not ascending at entry ${k}`);
    }
    previousReplica = replica;
    context.set(replica, counter);
  }
  const version: Version = { siblings, context };
  if (!isVersion(version)) {
    try {
      checkVersion(version, what);
    } catch (error) {
      reader.fail((error as Error).message);
    }
    reader.fail(`${what} is not a valid version`);
  }
  return version;
}

// -------------------------------------------------------------------------------------------
// Stamped commands

/**
 * Wraps a v1 command (codec.ts) with the HLC its leader took at proposal time. The result is a
 * slice of Node's Buffer pool ({@link transientBytes}): meant to be proposed and dropped, copy
 * it to keep it.
 */
export function encodeStampedCommand(hlc: HlcTimestamp, command: Uint8Array): Uint8Array {
  const stamp = encodeHlc(hlc);
  const out = transientBytes(2 + stamp.length + command.length);
  out[0] = stampedCommandMarker;
  out[1] = stamp.length;
  out.set(stamp, 2);
  out.set(command, 2 + stamp.length);
  return out;
}

/**
 * Splits a stamped command into its HLC and its v1 command (a view into `payload`). Throws
 * BadRequestError when the stamp is malformed.
 */
export function decodeStampedCommand(payload: Uint8Array): {
  hlc: HlcTimestamp;
  command: Uint8Array;
} {
  if (payload.length < 2 || payload[0] !== stampedCommandMarker) {
    throw new BadRequestError('Cannot decode stamped command: missing the 0x81 marker');
  }
  const stampBytes = payload[1]!;
  if (2 + stampBytes > payload.length) {
    throw new BadRequestError(
      `Cannot decode stamped command: the stamp needs ${stampBytes} bytes, ${payload.length - 2} left`,
    );
  }
  const hlc = decodeHlc(payload.subarray(2, 2 + stampBytes));
  return { hlc, command: payload.subarray(2 + stampBytes) };
}

// -------------------------------------------------------------------------------------------
// Remote batches

/** One write shipped between regions: the state its origin's local write produced. */
export interface ShippedWrite {
  /** The origin region's log index of the write. */
  readonly index: number;
  readonly key: string;
  /** The key's state right after the write at the origin: one sibling and its context. */
  readonly version: Version;
}

/**
 * Writes that originated in region `origin`, shipped to another region: every write of the
 * origin whose index is in `fromIndex..toIndex` and that is still the latest local write of its
 * key (earlier writes of the same key are subsumed by the later one). `strategy` is the
 * receiving region's conflict strategy, fixed when its leader proposed the batch, so that
 * every replica of the receiver merges alike.
 */
export interface RemoteBatch {
  readonly origin: string;
  readonly fromIndex: number;
  readonly toIndex: number;
  readonly strategy: Strategy;
  readonly items: readonly ShippedWrite[];
}

/** The packed items of a batch (`u32 count × item`), as they travel inside a CBOR envelope. */
export function encodeShippedWrites(items: readonly ShippedWrite[]): Uint8Array {
  const writer = new ByteWriter();
  writeItems(writer, items);
  return writer.finish();
}

function writeItems(writer: ByteWriter, items: readonly ShippedWrite[]): void {
  writer.u32(items.length);
  for (const item of items) {
    writer.f64(item.index);
    writer.str16(item.key);
    writeVersion(writer, item.version);
  }
}

/** Encodes a batch as the receiver proposes it (see the module comment). */
export function encodeRemoteBatch(batch: RemoteBatch): Uint8Array {
  const code = strategyCodes.indexOf(batch.strategy);
  if (code < 0) throw new TypeError(`Invalid strategy: ${String(batch.strategy)}`);
  const writer = new ByteWriter();
  writer.u8(remoteBatchMarker);
  writer.u8(code);
  writer.str8(batch.origin);
  writer.f64(batch.fromIndex);
  writer.f64(batch.toIndex);
  writeItems(writer, batch.items);
  return writer.finish();
}

/**
 * Encodes a batch from its header and items already packed by {@link encodeShippedWrites}: the
 * receiver validates the items it received once ({@link decodeShippedWrites}) and proposes
 * those bytes as they are.
 */
export function encodeRemoteBatchFromPacked(
  header: Omit<RemoteBatch, 'items'>,
  packedItems: Uint8Array,
): Uint8Array {
  const code = strategyCodes.indexOf(header.strategy);
  if (code < 0) throw new TypeError(`Invalid strategy: ${String(header.strategy)}`);
  const writer = new ByteWriter();
  writer.u8(remoteBatchMarker);
  writer.u8(code);
  writer.str8(header.origin);
  writer.f64(header.fromIndex);
  writer.f64(header.toIndex);
  writer.bytes(packedItems);
  return writer.finish();
}

/**
 * Decodes and validates packed items: indexes strictly ascending inside `fromIndex..toIndex`,
 * keys and values within `limits`, versions well-formed. Throws BadRequestError.
 */
export function decodeShippedWrites(
  bytes: Uint8Array,
  range: { readonly fromIndex: number; readonly toIndex: number },
  limits: KvLimits,
): ShippedWrite[] {
  const reader = new Reader(
    bytes,
    (message) => new BadRequestError(`Cannot decode shipped writes: ${message}`),
  );
  const items = readItems(reader, range, limits);
  reader.end();
  return items;
}

function readItems(
  reader: Reader,
  range: { readonly fromIndex: number; readonly toIndex: number },
  limits: KvLimits,
): ShippedWrite[] {
  const count = reader.u32('item count');
  const items: ShippedWrite[] = [];
  let previousIndex = range.fromIndex - 1;
  for (let k = 0; k < count; k++) {
    const index = reader.f64(`item ${k} index`);
    if (!Number.isSafeInteger(index) || index <= previousIndex || index > range.toIndex) {
      reader.fail(
        `item ${k} has index ${index}, expected an integer in ${previousIndex + 1}..${range.toIndex}`,
      );
    }
    previousIndex = index;
    const keyBytes = reader.u16(`item ${k} key length`);
    const key = reader.utf8(keyBytes, `item ${k} key`);
    try {
      checkKey(key, limits);
    } catch (error) {
      reader.fail(`item ${k}: ${(error as Error).message}`);
    }
    const version = readVersion(reader, limits.valueBytesMax, `item ${k} version`);
    items.push({ index, key, version });
  }
  return items;
}

/** Decodes and validates a batch written by {@link encodeRemoteBatch}; throws BadRequestError. */
export function decodeRemoteBatch(payload: Uint8Array, limits: KvLimits): RemoteBatch {
  const reader = new Reader(
    payload,
    (message) => new BadRequestError(`Cannot decode remote batch: ${message}`),
  );
  if (reader.u8('marker') !== remoteBatchMarker) reader.fail('missing the 0x82 marker');
  const code = reader.u8('strategy');
  const strategy = strategyCodes[code];
  if (strategy === undefined) return reader.fail(`unknown strategy ${code}`);
  const origin = reader.utf8(reader.u8('origin length'), 'origin');
  if (origin === '') reader.fail('the origin region is empty');
  const fromIndex = reader.f64('fromIndex');
  const toIndex = reader.f64('toIndex');
  checkRange(fromIndex, toIndex, (message) => reader.fail(message));
  const items = readItems(reader, { fromIndex, toIndex }, limits);
  reader.end();
  return { origin, fromIndex, toIndex, strategy, items };
}

/** Checks `1 <= fromIndex <= toIndex`, both safe integers; calls `fail` otherwise. */
export function checkRange(
  fromIndex: unknown,
  toIndex: unknown,
  fail: (message: string) => never,
): void {
  if (typeof fromIndex !== 'number' || !Number.isSafeInteger(fromIndex) || fromIndex < 1) {
    fail(`fromIndex ${String(fromIndex)} is not a positive integer`);
  }
  if (typeof toIndex !== 'number' || !Number.isSafeInteger(toIndex) || toIndex < fromIndex) {
    fail(`toIndex ${String(toIndex)} is not an integer >= fromIndex ${fromIndex}`);
  }
}

/** The byte that stands for `strategy` in a batch. */
export function strategyCode(strategy: Strategy): number {
  const code = strategyCodes.indexOf(strategy);
  if (code < 0) throw new TypeError(`Invalid strategy: ${String(strategy)}`);
  return code;
}

// -------------------------------------------------------------------------------------------
// Snapshots

/** One key as a v2 snapshot stores it. */
export interface KeySnapshot {
  readonly key: string;
  readonly version: Version;
  /** Index of the latest write of this key that originated in this region; 0 for none. */
  readonly localIndex: number;
  /** The state that write produced (what is shipped); null when `localIndex` is 0. */
  readonly local: Version | null;
}

/** What a v2 snapshot carries. */
export interface VersionedSnapshotContents {
  readonly appliedIndex: number;
  readonly region: string;
  /** The highest HLC among applied writes (null before the first). */
  readonly clockHigh: HlcTimestamp | null;
  /** Origin region -> the highest origin index applied from it, ascending origins. */
  readonly inbound: readonly (readonly [string, number])[];
  /** Ascending keys. */
  readonly keys: readonly KeySnapshot[];
}

/**
 * What {@link encodeVersionedSnapshot} writes: the contents, with the keys asked for one at a
 * time, so that a state machine can build each key's versions just before it is written
 * (built all at once, they outlived a scavenge or two, which copied them all).
 */
export interface VersionedSnapshotSource extends Omit<VersionedSnapshotContents, 'keys'> {
  /** How many keys `keys` yields. */
  readonly keyCount: number;
  /** Ascending keys. */
  readonly keys: Iterable<KeySnapshot>;
}

/** Room reserved up front per key of a snapshot (about a key with short ids and no value). */
const snapshotKeyBytesMin = 64;

/**
 * Writes a v2 snapshot a key at a time: a state machine can spread a large state over several
 * turns of the event loop (see KvStateMachine.captureSnapshot). Keys and origins must come
 * sorted ascending.
 */
export class VersionedSnapshotWriter {
  private readonly writer: ByteWriter;
  private readonly keyCount: number;
  private written = 0;

  constructor(header: Omit<VersionedSnapshotSource, 'keys'>) {
    const writer = new ByteWriter(256 + header.keyCount * snapshotKeyBytesMin);
    for (const byte of snapshotMagic) writer.u8(byte);
    writer.u8(versionedSnapshotVersion);
    writer.u8(0);
    writer.u8(0);
    writer.u8(0);
    writer.f64(header.appliedIndex);
    writer.str8(header.region);
    if (header.clockHigh === null) {
      writer.u8(0);
    } else {
      writer.u8(1);
      writeHlc(writer, header.clockHigh);
    }
    writer.u32(header.inbound.length);
    for (const [origin, position] of header.inbound) {
      writer.str8(origin);
      writer.f64(position);
    }
    writer.u32(header.keyCount);
    this.writer = writer;
    this.keyCount = header.keyCount;
  }

  /** Writes the next key (ascending); at most as many as the header counted. */
  key(record: KeySnapshot): void {
    const writer = this.writer;
    assert(this.written < this.keyCount, () => `more keys than the ${this.keyCount} counted`);
    this.written++;
    writer.str16(record.key);
    writeVersion(writer, record.version);
    writer.f64(record.localIndex);
    if (record.local === null) {
      writer.u8(localNone);
    } else if (record.local === record.version) {
      writer.u8(localCurrent);
    } else {
      writer.u8(localSeparate);
      writeVersion(writer, record.local);
    }
  }

  /** The snapshot, checksum included; every key the header counted must have been written. */
  finish(): Uint8Array {
    const written = this.written;
    assert(written === this.keyCount, () => `wrote ${written} keys of ${this.keyCount}`);
    this.writer.u32(crc32(this.writer.peek()));
    return this.writer.finish();
  }
}

/** Encodes a v2 snapshot; keys and origins must already be sorted ascending. */
export function encodeVersionedSnapshot(contents: VersionedSnapshotSource): Uint8Array {
  const writer = new VersionedSnapshotWriter(contents);
  for (const record of contents.keys) writer.key(record);
  return writer.finish();
}

/** True when `bytes` look like a v2 snapshot (magic and version); nothing is validated. */
export function isVersionedSnapshot(bytes: Uint8Array): boolean {
  return (
    bytes.length > 5 &&
    snapshotMagic.every((byte, k) => bytes[k] === byte) &&
    bytes[4] === versionedSnapshotVersion
  );
}

/**
 * Decodes and validates a v2 snapshot; throws StorageError CORRUPT_LOG naming the problem.
 * Values may be as large as `valueBytesMax`.
 */
export function decodeVersionedSnapshot(
  bytes: Uint8Array,
  valueBytesMax: number,
): VersionedSnapshotContents {
  const { reader, appliedIndex } = readSnapshotHeader(bytes, versionedSnapshotVersion);
  const region = reader.utf8(reader.u8('region length'), 'region');
  if (region === '') reader.fail('the region is empty');
  const hasClock = reader.u8('clock flag');
  if (hasClock > 1) reader.fail(`clock flag is ${hasClock}`);
  const clockHigh = hasClock === 1 ? readHlc(reader, 'clock') : null;
  const inboundCount = reader.u32('origin count');
  const inbound: [string, number][] = [];
  for (let k = 0; k < inboundCount; k++) {
    const origin = reader.utf8(reader.u8('origin length'), 'origin');
    const position = reader.f64('origin position');
    if (origin === '') reader.fail(`origin ${k} is empty`);
    if (!Number.isSafeInteger(position) || position < 0) {
      reader.fail(`origin ${origin} has position ${position}`);
    }
    const previous = inbound[k - 1];
    if (previous !== undefined && compareNodeIds(previous[0], origin) >= 0) {
      reader.fail(`origins are not ascending at ${k}`);
    }
    inbound.push([origin, position]);
  }
  const keyCount = reader.u32('key count');
  const keys: KeySnapshot[] = [];
  let previousKey: string | undefined;
  for (let k = 0; k < keyCount; k++) {
    const key = reader.utf8(reader.u16('key length'), 'key');
    if (key === '') reader.fail(`entry ${k} has an empty key`);
    if (previousKey !== undefined && !(previousKey < key)) {
      reader.fail(`keys are not strictly ascending at entry ${k}`);
    }
    previousKey = key;
    const current = readVersion(reader, valueBytesMax, `key ${k}`);
    const localIndex = reader.f64('local index');
    if (!Number.isSafeInteger(localIndex) || localIndex < 0 || localIndex > appliedIndex) {
      reader.fail(`key ${k} has local index ${localIndex}`);
    }
    const mode = reader.u8('local mode');
    let local: Version | null;
    if (mode === localNone) local = null;
    else if (mode === localCurrent) local = current;
    else if (mode === localSeparate) local = readVersion(reader, valueBytesMax, `key ${k} local`);
    else return reader.fail(`key ${k} has local mode ${mode}`);
    if ((local === null) !== (localIndex === 0)) {
      reader.fail(
        `key ${k} has local index ${localIndex} but ${local === null ? 'no' : 'a'} local version`,
      );
    }
    keys.push({ key, version: current, localIndex, local });
  }
  reader.u32('checksum');
  reader.end();
  return { appliedIndex, region, clockHigh, inbound, keys };
}
