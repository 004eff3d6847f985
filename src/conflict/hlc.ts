/**
 * Hybrid logical clocks (Kulkarni, Demirbas et al., "Logical Physical Clocks", 2014).
 *
 * A timestamp is (wall time in ms, logical counter, node id). The wall part stays within the
 * clock skew of physical time; the logical counter orders events that share a wall time; the
 * node id makes the order total. If event e happened before f (same node, or f received a
 * message carrying e's timestamp), then e's timestamp is smaller than f's.
 *
 * **Total order.** Timestamps compare by wall time, then logical counter, then node id. Node
 * ids compare by Unicode code point, which is the same as comparing their UTF-8 bytes (Go's
 * `bytes.Compare`, Rust's `str::cmp`, memcmp on the encoded form), so every implementation
 * agrees. The node id is only a tie-break between distinct clocks: it says nothing about which
 * write is "better" and never compares values.
 *
 * **Skew.** A received timestamp whose wall time is more than `maxClockOffsetMs` ahead of this
 * node's physical clock is reported as skew-suspect, as CockroachDB does with its max offset.
 * The clock still moves past it (monotonicity wins over accuracy) so no later local event can
 * sort before an event it has seen.
 *
 * @example
 * ```ts
 * let ms = 1_000;
 * const clock = new Hlc({ node: 'us-east', wallClockMs: () => ms });
 * clock.now(); // { wallMs: 1000, logical: 0, node: 'us-east' }
 * clock.now(); // { wallMs: 1000, logical: 1, node: 'us-east' }
 * const { timestamp, skewSuspect } = clock.update({ wallMs: 1_200, logical: 4, node: 'eu' });
 * // timestamp = { wallMs: 1200, logical: 5, node: 'us-east' }, skewSuspect = false
 * ```
 */
import { assert } from '../assert.js';
import { utf8ByteLength, writeUtf8 } from '../bytes.js';
import { BadRequestError } from '../errors.js';
import { conflictDefaults, checkInteger } from '../config.js';

/** A point in hybrid logical time. Compare with {@link compareHlc}, never field by field. */
export interface HlcTimestamp {
  /** Physical part: milliseconds since the Unix epoch, an integer in 0 .. {@link hlcWallMsMax}. */
  readonly wallMs: number;
  /** Events with the same wall time, counted: an integer in 0 .. {@link hlcLogicalMax}. */
  readonly logical: number;
  /** The clock that issued the timestamp: a node id (see {@link checkNodeId}). */
  readonly node: string;
}

/** Largest wall time a timestamp may carry (2^48 - 1 ms, the year 10889): 6 bytes encoded. */
export const hlcWallMsMax = 2 ** 48 - 1;
/** Largest logical counter (u32). Past it the clock moves its wall time on by 1 ms instead. */
export const hlcLogicalMax = 2 ** 32 - 1;
/** Largest node id, in UTF-8 bytes. */
export const nodeIdBytesMax = 255;

/**
 * Orders node ids by Unicode code point (= by their UTF-8 bytes): negative when `a` sorts
 * first, 0 when equal, positive after. JavaScript's `<` on strings compares UTF-16 code units,
 * which puts U+E000..U+FFFF after astral characters; this function does not.
 */
export function compareNodeIds(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      // Only here can code-unit and code-point order disagree: a surrogate (an astral code
      // point) against U+E000..U+FFFF. Shift so that surrogates sort above the BMP.
      if (x >= 0xd800 && y >= 0xd800) {
        x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
        y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
      }
      return x - y;
    }
  }
  return a.length - b.length;
}

/**
 * The total order of timestamps: negative when `a` is before `b`, 0 when they are the same
 * timestamp, positive after. Wall time, then logical counter, then node id.
 */
export function compareHlc(a: HlcTimestamp, b: HlcTimestamp): number {
  if (a.wallMs !== b.wallMs) return a.wallMs < b.wallMs ? -1 : 1;
  if (a.logical !== b.logical) return a.logical < b.logical ? -1 : 1;
  return Math.sign(compareNodeIds(a.node, b.node));
}

/** True when `a` and `b` have the same wall time and logical counter (only the node differs). */
export function sameHlcInstant(a: HlcTimestamp, b: HlcTimestamp): boolean {
  return a.wallMs === b.wallMs && a.logical === b.logical;
}

/** `wallMs.logical@node`, for messages and logs. */
export function formatHlc(ts: HlcTimestamp): string {
  return `${ts.wallMs}.${ts.logical}@${ts.node}`;
}

const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const validIds = new Set<string>();
const validIdsMax = 4096;

/**
 * Throws unless `id` can name a node or region: a non-empty, well-formed Unicode string of at
 * most {@link nodeIdBytesMax} UTF-8 bytes. `what` names it in the message.
 */
export function checkNodeId(id: unknown, what: string): asserts id is string {
  if (isNodeId(id)) return;
  if (typeof id !== 'string') {
    throw new TypeError(`Invalid ${what}: expected a string, got ${typeof id}`);
  }
  if (id.length === 0) throw new RangeError(`Invalid ${what}: the id is empty`);
  if (loneSurrogate.test(id)) {
    throw new RangeError(`Invalid ${what}: ${JSON.stringify(id)} has a lone surrogate`);
  }
  throw new RangeError(
    `Invalid ${what}: the id is ${utf8ByteLength(id)} bytes, expected at most ${nodeIdBytesMax}`,
  );
}

/** True when {@link checkNodeId} would accept `id`; builds no message (the hot path). */
export function isNodeId(id: unknown): id is string {
  if (typeof id !== 'string') return false;
  if (validIds.has(id)) return true;
  if (id.length === 0 || loneSurrogate.test(id) || utf8ByteLength(id) > nodeIdBytesMax)
    return false;
  // Ids repeat endlessly (a few regions and nodes), so remember the good ones.
  if (validIds.size >= validIdsMax) validIds.clear();
  validIds.add(id);
  return true;
}

/** True when {@link checkHlcTimestamp} would accept `ts`; builds no message. */
export function isHlcTimestamp(ts: unknown): ts is HlcTimestamp {
  if (typeof ts !== 'object' || ts === null) return false;
  const { wallMs, logical, node } = ts as Record<string, unknown>;
  return (
    typeof wallMs === 'number' &&
    Number.isInteger(wallMs) &&
    wallMs >= 0 &&
    wallMs <= hlcWallMsMax &&
    typeof logical === 'number' &&
    Number.isInteger(logical) &&
    logical >= 0 &&
    logical <= hlcLogicalMax &&
    isNodeId(node)
  );
}

/** Throws TypeError/RangeError unless `ts` is a well-formed timestamp; `what` names it. */
export function checkHlcTimestamp(ts: unknown, what: string): asserts ts is HlcTimestamp {
  if (isHlcTimestamp(ts)) return;
  if (typeof ts !== 'object' || ts === null) {
    throw new TypeError(
      `Invalid ${what}: expected an HLC timestamp object, got ${ts === null ? 'null' : typeof ts}`,
    );
  }
  const { wallMs, logical, node } = ts as Record<string, unknown>;
  if (
    typeof wallMs !== 'number' ||
    !Number.isInteger(wallMs) ||
    wallMs < 0 ||
    wallMs > hlcWallMsMax
  ) {
    throw new RangeError(
      `Invalid ${what}: wallMs is ${String(wallMs)}, expected an integer in 0..${hlcWallMsMax}`,
    );
  }
  if (
    typeof logical !== 'number' ||
    !Number.isInteger(logical) ||
    logical < 0 ||
    logical > hlcLogicalMax
  ) {
    throw new RangeError(
      `Invalid ${what}: logical is ${String(logical)}, expected an integer in 0..${hlcLogicalMax}`,
    );
  }
  checkNodeId(node, `${what} node`);
}

/** Options of {@link Hlc}. */
export interface HlcOptions {
  /** This clock's node id; the tie-break between equal (wall, logical) pairs. */
  readonly node: string;
  /** Physical time in ms since the epoch. Default `Date.now`; inject a fake one in tests. */
  readonly wallClockMs?: () => number;
  /** A received wall time further ahead of the physical clock than this is skew-suspect. */
  readonly maxClockOffsetMs?: number;
  /**
   * The last timestamp issued before a restart (persisted by the caller): the clock never
   * issues anything at or below it, even if the physical clock went backwards meanwhile.
   */
  readonly last?: HlcTimestamp;
}

/** What {@link Hlc.update} observed about a received timestamp. */
export interface HlcUpdate {
  /** The clock's new timestamp, after the remote one. */
  readonly timestamp: HlcTimestamp;
  /** Remote wall time minus local physical time (negative when the remote is behind). */
  readonly skewMs: number;
  /** `skewMs` exceeded `maxClockOffsetMs`: the remote clock (or ours) is probably wrong. */
  readonly skewSuspect: boolean;
}

/**
 * A hybrid logical clock owned by one node. `now()` stamps a local or send event,
 * `update(remote)` a receive event. Timestamps it issues strictly increase.
 */
export class Hlc {
  /** This clock's node id. */
  readonly node: string;
  /** See {@link HlcOptions.maxClockOffsetMs}. */
  readonly maxClockOffsetMs: number;
  readonly #wallClockMs: () => number;
  #wallMs = 0;
  #logical = 0;
  #issued = false;
  #skewSuspectCount = 0;
  #skewMsMax = 0;

  constructor(options: HlcOptions) {
    checkNodeId(options.node, 'HLC node');
    this.node = options.node;
    this.maxClockOffsetMs = options.maxClockOffsetMs ?? conflictDefaults.maxClockOffsetMs;
    checkInteger('maxClockOffsetMs', this.maxClockOffsetMs, 0);
    const wallClockMs = options.wallClockMs ?? Date.now;
    if (typeof wallClockMs !== 'function') {
      throw new TypeError('Invalid wallClockMs: expected a function returning milliseconds');
    }
    this.#wallClockMs = wallClockMs;
    if (options.last !== undefined) {
      checkHlcTimestamp(options.last, 'HLC last timestamp');
      this.#wallMs = options.last.wallMs;
      this.#logical = options.last.logical;
      this.#issued = true;
    }
  }

  /** The physical clock, read and checked (an injected clock returning junk is a caller bug). */
  physicalNowMs(): number {
    const ms = this.#wallClockMs();
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0 || ms > hlcWallMsMax) {
      throw new RangeError(
        `Invalid wall clock reading: ${String(ms)} ms, expected 0..${hlcWallMsMax}`,
      );
    }
    return Math.floor(ms);
  }

  /** A new timestamp for a local or send event: greater than every one issued or received. */
  now(): HlcTimestamp {
    const physicalMs = this.physicalNowMs();
    if (physicalMs > this.#wallMs) this.#set(physicalMs, 0);
    else this.#advance(this.#wallMs, this.#logical);
    return this.last;
  }

  /**
   * A receive event: moves the clock past `remote` (and past physical time) and returns the new
   * timestamp, with the skew observed. A remote wall time too far ahead is reported, not refused:
   * the clock still moves past it, so later local events sort after what was received.
   */
  update(remote: HlcTimestamp): HlcUpdate {
    checkHlcTimestamp(remote, 'remote HLC timestamp');
    const physicalMs = this.physicalNowMs();
    const skewMs = remote.wallMs - physicalMs;
    const skewSuspect = skewMs > this.maxClockOffsetMs;
    if (skewSuspect) {
      this.#skewSuspectCount++;
      if (skewMs > this.#skewMsMax) this.#skewMsMax = skewMs;
    }
    const wallMs = Math.max(this.#wallMs, remote.wallMs, physicalMs);
    if (wallMs === this.#wallMs && wallMs === remote.wallMs) {
      this.#advance(wallMs, Math.max(this.#logical, remote.logical));
    } else if (wallMs === this.#wallMs) {
      this.#advance(wallMs, this.#logical);
    } else if (wallMs === remote.wallMs) {
      this.#advance(wallMs, remote.logical);
    } else {
      this.#set(wallMs, 0);
    }
    return { timestamp: this.last, skewMs, skewSuspect };
  }

  /** The last timestamp issued (the starting point before the first event). */
  get last(): HlcTimestamp {
    return { wallMs: this.#wallMs, logical: this.#logical, node: this.node };
  }

  /** Received timestamps that were skew-suspect, and the largest skew seen among them. */
  get skewStats(): { readonly skewSuspect: number; readonly skewMsMax: number } {
    return { skewSuspect: this.#skewSuspectCount, skewMsMax: this.#skewMsMax };
  }

  /** Sets the clock to the timestamp right after (wallMs, logical). */
  #advance(wallMs: number, logical: number): void {
    if (logical < hlcLogicalMax) {
      this.#set(wallMs, logical + 1);
      return;
    }
    // The counter is full (2^32 events in one ms, or a remote sent the maximum): moving the
    // wall time 1 ms ahead keeps the order strict at the price of 1 ms of drift.
    if (wallMs >= hlcWallMsMax) {
      throw new RangeError(
        `Cannot advance the HLC past ${formatHlc(this.last)}: the clock is exhausted`,
      );
    }
    this.#set(wallMs + 1, 0);
  }

  #set(wallMs: number, logical: number): void {
    // Strictly increasing output is the one property everything above relies on.
    assert(
      !this.#issued ||
        wallMs > this.#wallMs ||
        (wallMs === this.#wallMs && logical > this.#logical),
      () => `HLC went backwards: ${wallMs}.${logical} after ${this.#wallMs}.${this.#logical}`,
    );
    this.#wallMs = wallMs;
    this.#logical = logical;
    this.#issued = true;
  }
}

// ---- encoding ---------------------------------------------------------------------------------

// fatal: reject invalid UTF-8; ignoreBOM: keep a leading U+FEFF so decode(encode(x)) === x.
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Bytes before the node id in {@link encodeHlc}'s format: 6 of wall time, 4 of logical. */
export const hlcHeaderBytes = 10;

/**
 * Encodes a timestamp as 6 bytes of wall time (big-endian), 4 bytes of logical counter
 * (big-endian) and the node id in UTF-8 to the end: 11 to 265 bytes. Comparing two encodings
 * bytewise (memcmp, shorter-is-smaller) gives the same order as {@link compareHlc}, so encoded
 * timestamps can be used directly as sort keys.
 */
export function encodeHlc(ts: HlcTimestamp): Uint8Array {
  checkHlcTimestamp(ts, 'HLC timestamp');
  // Byte by byte and in place, for every write the node stamps: a DataView would move this
  // small array off V8's heap (a malloc), and TextEncoder.encode would make a second one.
  const bytes = new Uint8Array(hlcHeaderBytes + utf8ByteLength(ts.node));
  const high = Math.floor(ts.wallMs / 2 ** 32);
  const low = ts.wallMs % 2 ** 32;
  bytes[0] = high >>> 8;
  bytes[1] = high & 0xff;
  writeUint32BigEndian(bytes, 2, low);
  writeUint32BigEndian(bytes, 6, ts.logical);
  writeUtf8(ts.node, bytes, hlcHeaderBytes);
  return bytes;
}

function writeUint32BigEndian(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value >>> 24;
  bytes[at + 1] = (value >>> 16) & 0xff;
  bytes[at + 2] = (value >>> 8) & 0xff;
  bytes[at + 3] = value & 0xff;
}

/**
 * Decodes {@link encodeHlc}'s format. Malformed input (from a peer or a file) throws
 * {@link BadRequestError}: too short, node id empty, too long or not valid UTF-8.
 */
export function decodeHlc(bytes: Uint8Array): HlcTimestamp {
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError('Cannot decode HLC timestamp: expected a Uint8Array');
  }
  if (bytes.length <= hlcHeaderBytes) {
    throw new BadRequestError(
      `Cannot decode HLC timestamp: ${bytes.length} bytes, expected at least ${hlcHeaderBytes + 1}`,
    );
  }
  if (bytes.length > hlcHeaderBytes + nodeIdBytesMax) {
    throw new BadRequestError(
      `Cannot decode HLC timestamp: ${bytes.length} bytes, expected at most ${hlcHeaderBytes + nodeIdBytesMax}`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const wallMs = (bytes[0]! * 256 + bytes[1]!) * 2 ** 32 + view.getUint32(2);
  const logical = view.getUint32(6);
  let node: string;
  try {
    node = decoder.decode(bytes.subarray(hlcHeaderBytes));
  } catch {
    throw new BadRequestError('Cannot decode HLC timestamp: the node id is not valid UTF-8');
  }
  return { wallMs, logical, node };
}
