/**
 * Binary encodings of key-value commands (log entry payloads) and state-machine snapshots.
 *
 * Both start with a version byte so that a future format can be told apart, and both are
 * validated completely on decode: a payload or snapshot that is truncated, has trailing bytes,
 * unknown flags, bad UTF-8 or a wrong checksum is a typed error, never a crash and never a
 * silently different state.
 *
 * Command v1 (little endian):
 *
 *     u8 version=1 | u8 op (1 put, 2 delete) | u8 flags | u16 keyBytes | key (UTF-8)
 *     put:  u32 valueBytes | value
 *     flags bit 0: u32 prevValueBytes | prevValue follows (compare-and-set)
 *     flags bit 1: prevExist is given (put only); bit 2: its value
 *
 * Snapshot v1 (little endian):
 *
 *     "PKVS" | u8 version=1 | u8[3] zero | f64 appliedIndex | u32 count
 *     count × (u16 keyBytes | key | u32 valueBytes | value), keys strictly ascending
 *     u32 CRC-32 of every byte before it
 */
import { crc32 } from 'node:zlib';
import { utf8ByteLength, writeUtf8 } from '../bytes.js';
import { BadRequestError, StorageError } from '../errors.js';
import type { KvLimits } from '../config.js';

/** Version byte of commands this code writes. */
export const commandVersion = 1;
/** Version byte of snapshots this code writes. */
export const snapshotVersion = 1;

const opPut = 1;
const opDelete = 2;
const flagPrevValue = 1;
const flagPrevExistGiven = 2;
const flagPrevExist = 4;
export const snapshotMagic = [0x50, 0x4b, 0x56, 0x53]; // "PKVS"
// magic, version + reserved, applied index, entry count.
const snapshotHeaderBytes = 4 + 4 + 8 + 4;

/** Conditions of a put, as in etcd v2's `?prevValue=` and `?prevExist=`. */
export interface PutConditions {
  /** Apply only if the key holds exactly these bytes (compare-and-set). */
  readonly prevValue?: Uint8Array;
  /** `false`: create only (fail if present). `true`: update only (fail if absent). */
  readonly prevExist?: boolean;
}

/** Conditions of a delete. */
export interface DeleteConditions {
  /** Delete only if the key holds exactly these bytes. */
  readonly prevValue?: Uint8Array;
}

/** A decoded command. */
export type KvCommand =
  | ({ readonly op: 'put'; readonly key: string; readonly value: Uint8Array } & PutConditions)
  | ({ readonly op: 'delete'; readonly key: string } & DeleteConditions);

const utf8Encoder = new TextEncoder();
// A UTF-16 surrogate without its partner has no UTF-8 form; TextEncoder would silently
// replace it with U+FFFD and two different keys would collide.
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Checks a key against the limits without encoding it and returns its UTF-8 length. Throws
 * TypeError for a non-string, BadRequestError BAD_KEY for an empty, too long or ill-formed key.
 */
export function checkKey(key: string, limits: KvLimits): number {
  if (typeof key !== 'string')
    throw new TypeError(`Invalid key: expected a string, got ${typeof key}`);
  if (key === '') throw new BadRequestError('Invalid key: the key is empty', 'BAD_KEY');
  if (loneSurrogate.test(key)) {
    throw new BadRequestError(
      'Invalid key: it contains a lone surrogate (not valid UTF-8)',
      'BAD_KEY',
    );
  }
  const length = utf8ByteLength(key);
  if (length > limits.keyBytesMax) {
    throw new BadRequestError(
      `Invalid key: it is ${length} bytes, at most ${limits.keyBytesMax} allowed`,
      'BAD_KEY',
    );
  }
  return length;
}

function checkValue(what: string, value: Uint8Array, limits: KvLimits): void {
  if (!(value instanceof Uint8Array)) throw new TypeError(`Invalid ${what}: expected a Uint8Array`);
  if (value.length > limits.valueBytesMax) {
    throw new BadRequestError(
      `Invalid ${what}: it is ${value.length} bytes, at most ${limits.valueBytesMax} allowed`,
      'PAYLOAD_TOO_LARGE',
    );
  }
}

/** Encodes a put; validates key and value sizes (BadRequestError BAD_KEY / PAYLOAD_TOO_LARGE). */
export function encodePut(
  key: string,
  value: Uint8Array,
  conditions: PutConditions,
  limits: KvLimits,
): Uint8Array {
  const keyLength = checkKey(key, limits);
  checkValue('value', value, limits);
  const { prevValue, prevExist } = conditions;
  if (prevValue !== undefined) checkValue('prevValue', prevValue, limits);
  if (prevExist !== undefined && typeof prevExist !== 'boolean') {
    throw new TypeError('Invalid prevExist: expected a boolean');
  }
  if (prevValue !== undefined && prevExist === false) {
    throw new BadRequestError('Invalid put: prevValue cannot be combined with prevExist=false');
  }
  let flags = 0;
  if (prevValue !== undefined) flags |= flagPrevValue;
  if (prevExist !== undefined) flags |= flagPrevExistGiven | (prevExist ? flagPrevExist : 0);
  const size =
    5 + keyLength + 4 + value.length + (prevValue === undefined ? 0 : 4 + prevValue.length);
  const writer = new Writer(size);
  writer.u8(commandVersion);
  writer.u8(opPut);
  writer.u8(flags);
  writer.u16(keyLength);
  writer.utf8(key);
  writer.u32(value.length);
  writer.bytes(value);
  if (prevValue !== undefined) {
    writer.u32(prevValue.length);
    writer.bytes(prevValue);
  }
  return writer.finish();
}

/** Encodes a delete. */
export function encodeDelete(
  key: string,
  conditions: DeleteConditions,
  limits: KvLimits,
): Uint8Array {
  const keyLength = checkKey(key, limits);
  const { prevValue } = conditions;
  if (prevValue !== undefined) checkValue('prevValue', prevValue, limits);
  const writer = new Writer(5 + keyLength + (prevValue === undefined ? 0 : 4 + prevValue.length));
  writer.u8(commandVersion);
  writer.u8(opDelete);
  writer.u8(prevValue === undefined ? 0 : flagPrevValue);
  writer.u16(keyLength);
  writer.utf8(key);
  if (prevValue !== undefined) {
    writer.u32(prevValue.length);
    writer.bytes(prevValue);
  }
  return writer.finish();
}

/**
 * Decodes a command payload. Throws BadRequestError (BAD_REQUEST) naming the first problem.
 * Values in the result are copies, so they outlive the payload's buffer.
 */
export function decodeCommand(payload: Uint8Array): KvCommand {
  const reader = new Reader(
    payload,
    (message) => new BadRequestError(`Cannot decode command: ${message}`),
  );
  const version = reader.u8('version');
  if (version !== commandVersion) reader.fail(`version is ${version}, expected ${commandVersion}`);
  const op = reader.u8('op');
  const flags = reader.u8('flags');
  const key = reader.utf8(reader.u16('key length'), 'key');
  if (key === '') reader.fail('the key is empty');
  let command: KvCommand;
  if (op === opPut) {
    if ((flags & ~(flagPrevValue | flagPrevExistGiven | flagPrevExist)) !== 0) {
      reader.fail(`unknown flags 0x${flags.toString(16)}`);
    }
    if ((flags & flagPrevExist) !== 0 && (flags & flagPrevExistGiven) === 0) {
      reader.fail('prevExist value without prevExist');
    }
    const value = reader.bytes(reader.u32('value length'), 'value');
    const prevValue =
      (flags & flagPrevValue) !== 0
        ? reader.bytes(reader.u32('prevValue length'), 'prevValue')
        : undefined;
    const prevExist =
      (flags & flagPrevExistGiven) !== 0 ? (flags & flagPrevExist) !== 0 : undefined;
    command = {
      op: 'put',
      key,
      value,
      ...(prevValue === undefined ? {} : { prevValue }),
      ...(prevExist === undefined ? {} : { prevExist }),
    };
  } else if (op === opDelete) {
    if ((flags & ~flagPrevValue) !== 0) reader.fail(`unknown flags 0x${flags.toString(16)}`);
    const prevValue =
      (flags & flagPrevValue) !== 0
        ? reader.bytes(reader.u32('prevValue length'), 'prevValue')
        : undefined;
    command = { op: 'delete', key, ...(prevValue === undefined ? {} : { prevValue }) };
  } else {
    return reader.fail(`unknown op ${op}`);
  }
  reader.end();
  return command;
}

/** The state a snapshot carries. */
export interface KvSnapshotContents {
  readonly appliedIndex: number;
  /** Entries in strictly ascending key order. */
  readonly entries: readonly (readonly [string, Uint8Array])[];
}

/** Encodes a snapshot; `entries` must already be sorted by key (ascending, unique). */
export function encodeSnapshot(contents: KvSnapshotContents): Uint8Array {
  let size = snapshotHeaderBytes + 4;
  const keys: Uint8Array[] = [];
  for (const [key, value] of contents.entries) {
    const keyBytes = utf8Encoder.encode(key);
    keys.push(keyBytes);
    size += 2 + keyBytes.length + 4 + value.length;
  }
  const writer = new Writer(size);
  for (const byte of snapshotMagic) writer.u8(byte);
  writer.u8(snapshotVersion);
  writer.u8(0);
  writer.u8(0);
  writer.u8(0);
  writer.f64(contents.appliedIndex);
  writer.u32(contents.entries.length);
  contents.entries.forEach(([, value], k) => {
    const keyBytes = keys[k]!;
    writer.u16(keyBytes.length);
    writer.bytes(keyBytes);
    writer.u32(value.length);
    writer.bytes(value);
  });
  const body = writer.peek();
  writer.u32(crc32(body));
  return writer.finish();
}

/**
 * Checks what every snapshot version shares — the trailing CRC-32, the "PKVS" magic, the
 * version byte, three reserved bytes, the applied index — and returns a reader positioned
 * after them. Throws StorageError CORRUPT_LOG naming the problem.
 */
export function readSnapshotHeader(
  bytes: Uint8Array,
  version: number,
): { reader: Reader; appliedIndex: number } {
  const reader = new Reader(
    bytes,
    (message) => new StorageError('CORRUPT_LOG', `Cannot restore snapshot: ${message}`),
  );
  if (bytes.length < snapshotHeaderBytes + 4) {
    reader.fail(`it is ${bytes.length} bytes, shorter than an empty snapshot`);
  }
  const stored = new DataView(bytes.buffer, bytes.byteOffset, bytes.length).getUint32(
    bytes.length - 4,
    true,
  );
  const actual = crc32(bytes.subarray(0, bytes.length - 4));
  if (stored !== actual) {
    reader.fail(`checksum is 0x${stored.toString(16)}, computed 0x${actual.toString(16)}`);
  }
  for (const byte of snapshotMagic) {
    if (reader.u8('magic') !== byte) reader.fail('it does not start with "PKVS"');
  }
  const found = reader.u8('version');
  if (found !== version) reader.fail(`version is ${found}, expected ${version}`);
  for (let k = 0; k < 3; k++) reader.u8('reserved');
  const appliedIndex = reader.f64('applied index');
  if (!Number.isSafeInteger(appliedIndex) || appliedIndex < 0) {
    reader.fail(`applied index ${appliedIndex} is not a non-negative integer`);
  }
  return { reader, appliedIndex };
}

/** Decodes and validates a snapshot; throws StorageError CORRUPT_LOG naming the problem. */
export function decodeSnapshot(bytes: Uint8Array): KvSnapshotContents {
  const { reader, appliedIndex } = readSnapshotHeader(bytes, snapshotVersion);
  const count = reader.u32('entry count');
  const entries: [string, Uint8Array][] = [];
  let previousKey: string | undefined;
  for (let k = 0; k < count; k++) {
    const key = reader.utf8(reader.u16('key length'), 'key');
    if (key === '') reader.fail(`entry ${k} has an empty key`);
    if (previousKey !== undefined && !(previousKey < key)) {
      reader.fail(`keys are not strictly ascending at entry ${k}`);
    }
    previousKey = key;
    entries.push([key, reader.bytes(reader.u32('value length'), 'value')]);
  }
  reader.u32('checksum');
  reader.end();
  return { appliedIndex, entries };
}

/** Bounded little-endian writer into a buffer of known size. */
class Writer {
  private readonly buffer: Uint8Array;
  private readonly view: DataView;
  private at = 0;

  constructor(size: number) {
    this.buffer = new Uint8Array(size);
    this.view = new DataView(this.buffer.buffer);
  }

  u8(value: number): void {
    this.view.setUint8(this.at, value);
    this.at += 1;
  }

  u16(value: number): void {
    this.view.setUint16(this.at, value, true);
    this.at += 2;
  }

  u32(value: number): void {
    this.view.setUint32(this.at, value, true);
    this.at += 4;
  }

  f64(value: number): void {
    this.view.setFloat64(this.at, value, true);
    this.at += 8;
  }

  bytes(value: Uint8Array): void {
    this.buffer.set(value, this.at);
    this.at += value.length;
  }

  /** Writes `text` as UTF-8 in place: no array of its own, as `TextEncoder.encode` makes. */
  utf8(text: string): void {
    this.at += writeUtf8(text, this.buffer, this.at);
  }

  /** The bytes written so far (a view). */
  peek(): Uint8Array {
    return this.buffer.subarray(0, this.at);
  }

  finish(): Uint8Array {
    if (this.at !== this.buffer.length) {
      throw new RangeError(`Encoder wrote ${this.at} bytes, sized for ${this.buffer.length}`);
    }
    return this.buffer;
  }
}

/** Bounds-checked little-endian reader; every failure goes through `makeError`. */
export class Reader {
  private readonly view: DataView;
  private at = 0;

  constructor(
    private readonly source: Uint8Array,
    private readonly makeError: (message: string) => Error,
  ) {
    this.view = new DataView(source.buffer, source.byteOffset, source.length);
  }

  fail(message: string): never {
    throw this.makeError(message);
  }

  private need(count: number, what: string): void {
    if (this.at + count > this.source.length) {
      this.fail(
        `truncated: ${what} needs ${count} bytes at offset ${this.at}, ${this.source.length - this.at} left`,
      );
    }
  }

  u8(what: string): number {
    this.need(1, what);
    return this.view.getUint8(this.at++);
  }

  u16(what: string): number {
    this.need(2, what);
    const value = this.view.getUint16(this.at, true);
    this.at += 2;
    return value;
  }

  u32(what: string): number {
    this.need(4, what);
    const value = this.view.getUint32(this.at, true);
    this.at += 4;
    return value;
  }

  f64(what: string): number {
    this.need(8, what);
    const value = this.view.getFloat64(this.at, true);
    this.at += 8;
    return value;
  }

  /** A copy of the next `count` bytes. */
  bytes(count: number, what: string): Uint8Array {
    this.need(count, what);
    const out = this.source.slice(this.at, this.at + count);
    this.at += count;
    return out;
  }

  utf8(count: number, what: string): string {
    this.need(count, what);
    try {
      return utf8Decoder.decode(this.source.subarray(this.at, (this.at += count)));
    } catch {
      return this.fail(`${what} at offset ${this.at - count} is not valid UTF-8`);
    }
  }

  end(): void {
    if (this.at !== this.source.length) {
      this.fail(`${this.source.length - this.at} trailing bytes at offset ${this.at}`);
    }
  }
}
