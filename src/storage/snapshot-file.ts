/**
 * The on-disk format of a snapshot file: metadata and state-machine bytes under one checksum.
 *
 * ```
 * 0   "PHNTMSNP" magic
 * 8   u32 crc32 of bytes [12, end)
 * 12  u32 bytes of the membership JSON
 * 16  f64 index
 * 24  f64 term
 * 32  f64 bytes of data
 * 40  membership (ConfState) as UTF-8 JSON, then the data
 * ```
 *
 * A file is written whole to a temporary name, fsynced and renamed into place, so a file under
 * its final name is either complete or (after disk corruption) fails its checksum.
 */
import { crc32 } from 'node:zlib';
import type { ConfState, SnapshotMeta } from '../raft/types.js';
import { StorageError } from '../errors.js';
import type { StoredSnapshot } from './types.js';

const snapshotMagic = new Uint8Array([0x50, 0x48, 0x4e, 0x54, 0x4d, 0x53, 0x4e, 0x50]);
const fixedBytes = 40;
const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true });

/** Suffix of a snapshot being written; such files are leftovers of a crash and are removed. */
export const snapshotTempSuffix = '.tmp';

/** Name of the snapshot file of (index, term): sorts by index. */
export function snapshotFileName(index: number, term: number): string {
  return `${index.toString(16).padStart(16, '0')}-${term.toString(16).padStart(16, '0')}.snap`;
}

/** The (index, term) in a snapshot file name, or null when `name` is not one. */
export function parseSnapshotFileName(name: string): { index: number; term: number } | null {
  const match = /^([0-9a-f]{16})-([0-9a-f]{16})\.snap$/.exec(name);
  if (match === null) return null;
  const index = Number.parseInt(match[1]!, 16);
  const term = Number.parseInt(match[2]!, 16);
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(term)) return null;
  return { index, term };
}

/** The file's bytes as chunks to write back to back: a header and the caller's data, uncopied. */
export function encodeSnapshotFile(snapshot: StoredSnapshot): Uint8Array[] {
  const { meta, data } = snapshot;
  const conf = textEncoder.encode(
    JSON.stringify({
      voters: meta.conf.voters,
      votersOutgoing: meta.conf.votersOutgoing,
      learners: meta.conf.learners,
    }),
  );
  const header = new Uint8Array(fixedBytes + conf.length);
  const view = new DataView(header.buffer);
  header.set(snapshotMagic, 0);
  view.setUint32(12, conf.length, true);
  view.setFloat64(16, meta.index, true);
  view.setFloat64(24, meta.term, true);
  view.setFloat64(32, data.length, true);
  header.set(conf, fixedBytes);
  const crc = crc32(data, crc32(header.subarray(12)));
  view.setUint32(8, crc, true);
  return [header, data];
}

/**
 * Decodes and checks a snapshot file read from `file`; the returned data views `bytes`.
 * Throws StorageError CORRUPT_LOG naming the file when anything does not check out.
 */
export function decodeSnapshotFile(bytes: Uint8Array, file: string): StoredSnapshot {
  const corrupt = (problem: string): StorageError =>
    new StorageError('CORRUPT_LOG', `Cannot read snapshot ${file}: ${problem}`);
  if (bytes.length < fixedBytes) throw corrupt(`only ${bytes.length} bytes`);
  for (let i = 0; i < snapshotMagic.length; i++) {
    if (bytes[i] !== snapshotMagic[i]) throw corrupt('not a PhantomDB snapshot (bad magic)');
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stored = view.getUint32(8, true);
  const actual = crc32(bytes.subarray(12));
  if (stored !== actual)
    throw corrupt(`checksum mismatch at byte 8 (stored ${stored}, computed ${actual})`);
  const confBytes = view.getUint32(12, true);
  const index = view.getFloat64(16, true);
  const term = view.getFloat64(24, true);
  const dataBytes = view.getFloat64(32, true);
  if (fixedBytes + confBytes + dataBytes !== bytes.length) {
    throw corrupt(`sizes ${confBytes} + ${dataBytes} do not add up to ${bytes.length}`);
  }
  if (!isIndex(index) || !isIndex(term)) throw corrupt(`bad index ${index} or term ${term}`);
  let conf: ConfState;
  try {
    conf = parseConf(textDecoder.decode(bytes.subarray(fixedBytes, fixedBytes + confBytes)));
  } catch (error) {
    throw corrupt(`bad membership: ${(error as Error).message}`);
  }
  const meta: SnapshotMeta = { index, term, conf };
  const dataAt = bytes.byteOffset + fixedBytes + confBytes;
  return {
    meta,
    data: new Uint8Array(bytes.buffer, dataAt, bytes.length - fixedBytes - confBytes),
  };
}

function isIndex(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0;
}

function parseConf(json: string): ConfState {
  const value: unknown = JSON.parse(json);
  const ids = (key: string): string[] => {
    const list = (value as Record<string, unknown>)[key];
    if (!Array.isArray(list) || !list.every((id) => typeof id === 'string')) {
      throw new TypeError(`${key} is not a list of ids`);
    }
    return list;
  };
  if (typeof value !== 'object' || value === null) throw new TypeError('not an object');
  return {
    voters: ids('voters'),
    votersOutgoing: ids('votersOutgoing'),
    learners: ids('learners'),
  };
}

/**
 * Checks a snapshot handed in by a caller; throws TypeError/RangeError naming the problem.
 * `action` starts the message ("Cannot save snapshot").
 */
export function checkSnapshot(snapshot: StoredSnapshot, action: string): void {
  if (typeof snapshot !== 'object' || snapshot === null) {
    throw new TypeError(`${action}: expected { meta, data }, got ${String(snapshot)}`);
  }
  const { meta, data } = snapshot;
  if (!(data instanceof Uint8Array)) throw new TypeError(`${action}: data is not a Uint8Array`);
  if (typeof meta !== 'object' || meta === null) throw new TypeError(`${action}: meta is missing`);
  if (!isIndex(meta.index)) {
    throw new RangeError(`${action}: index is ${meta.index}, expected an integer >= 0`);
  }
  if (!isIndex(meta.term)) {
    throw new RangeError(`${action}: term is ${meta.term}, expected an integer >= 0`);
  }
  if (meta.term === 0 && meta.index !== 0) {
    throw new RangeError(`${action}: term is 0 at index ${meta.index}`);
  }
  const conf: Partial<ConfState> | undefined = meta.conf;
  for (const key of ['voters', 'votersOutgoing', 'learners'] as const) {
    const list = conf?.[key];
    if (!Array.isArray(list) || !list.every((id) => typeof id === 'string')) {
      throw new TypeError(`${action}: conf.${key} is not a list of node ids`);
    }
  }
}
