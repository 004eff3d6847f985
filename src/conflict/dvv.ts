/**
 * Dotted version vectors: causality per key, as in Riak's DVVSet (Preguiça, Baquero, Almeida et
 * al., "Dotted Version Vectors: Logical Clocks for Optimistic Replication", 2010, and "Scalable
 * and Accurate Causality Tracking for Eventually Consistent Stores", 2014).
 *
 * The state of a key at a replica is a {@link Version}: the writes not yet superseded
 * (siblings), each tagged with a **dot** (replica, n) — "the n-th write this replica
 * coordinated for this key" — plus a **context**, a version vector of every dot the replica has
 * seen for the key, superseded or not.
 *
 * Why dots: with a plain version vector per key, a replica cannot tell which sibling a client's
 * context covers, so a client writing with a stale context must keep every sibling, and
 * interleaved writers make siblings pile up (Riak's "sibling explosion"). With dots, a write
 * drops exactly the siblings its context has seen, so siblings never outnumber the truly
 * concurrent writes.
 *
 * Two operations, both pure (they return new objects and never change their arguments):
 * - {@link recordWrite}: a client's write at the coordinating replica, with the context the
 *   client read (its causal past);
 * - {@link mergeVersions} / {@link syncVersions}: what two replicas' states of one key become
 *   when they meet. The merge is a join: commutative, associative and idempotent.
 *
 * @example
 * ```ts
 * const replica = { clock: new Hlc({ node: 'a' }), region: 'us' };
 * const v1 = recordWrite(undefined, new Map(), bytes('x'), replica).version; // [x]
 * const v2 = recordWrite(v1, new Map(), bytes('y'), replica).version; // [y, x]: concurrent
 * const v3 = recordWrite(v2, v2.context, bytes('z'), replica).version; // [z]: saw both
 * ```
 */
import { conflictDefaults, checkInteger } from '../config.js';
import type { HlcTimestamp } from './hlc.js';
import {
  Hlc,
  checkHlcTimestamp,
  checkNodeId,
  compareHlc,
  compareNodeIds,
  formatHlc,
  isHlcTimestamp,
  isNodeId,
} from './hlc.js';
import { VersionOrder as versionOrderValues } from '../kernel/reference.js';

/** The relations {@link compareVersionVectors} reports (the batch kernel's codes). */
export const VersionOrder = versionOrderValues;

/** How two version vectors relate: one of {@link VersionOrder}'s values. */
export type VersionOrder = (typeof VersionOrder)[keyof typeof VersionOrder];

/** The identity of one write: the `counter`-th write that replica `node` coordinated for a key. */
export interface Dot {
  readonly node: string;
  /** 1, 2, 3, ... with no gaps, per key and replica. */
  readonly counter: number;
}

/**
 * Replica id -> highest dot counter seen from it (all lower ones seen too). Absent means 0.
 * Treated as immutable; functions here return new maps with keys in {@link compareNodeIds} order.
 */
export type VersionVector = ReadonlyMap<string, number>;

/** One write of a key. `value` null is a delete (a tombstone): it conflicts like any write. */
export interface Write {
  /** The bytes written, or null for a delete. */
  readonly value: Uint8Array | null;
  /** When it was written, by the coordinating replica's clock. */
  readonly hlc: HlcTimestamp;
  /** Its identity in the key's causal history. */
  readonly dot: Dot;
  /** The region that accepted the write. */
  readonly region: string;
}

/** A key's state at one replica: concurrent writes not yet superseded, and everything seen. */
export interface Version {
  /** At least one; newest first by {@link compareWrites} in what this module returns. */
  readonly siblings: readonly Write[];
  /** Covers every sibling's dot, and the dots of the writes they superseded. */
  readonly context: VersionVector;
}

/** The replica issuing writes: its clock (whose node id names its dots) and its region. */
export interface Replica {
  readonly clock: Hlc;
  readonly region: string;
}

/** Throws TypeError/RangeError unless `replica` has an {@link Hlc} and a valid region id. */
export function checkReplica(replica: unknown): asserts replica is Replica {
  if (
    typeof replica !== 'object' ||
    replica === null ||
    !((replica as Replica).clock instanceof Hlc)
  ) {
    throw new TypeError('Invalid replica: expected { clock: Hlc, region }');
  }
  checkNodeId((replica as Replica).region, 'replica region');
}

/** The version vector with no entries. */
export const emptyVersionVector: VersionVector = new Map<string, number>();

/** True when `context` has seen the write with this dot. */
export function coversDot(context: VersionVector, dot: Dot): boolean {
  return (context.get(dot.node) ?? 0) >= dot.counter;
}

/** `node:counter`, for messages. */
export function formatDot(dot: Dot): string {
  return `${dot.node}:${dot.counter}`;
}

/** Entry-wise maximum of two version vectors (their least upper bound). */
export function joinVersionVectors(a: VersionVector, b: VersionVector): VersionVector {
  if (b.size === 0 || a === b) return a;
  if (a.size === 0) return b;
  // When one already covers the other (a fast-forward, a repeated delivery), share it.
  if (covers(a, b)) return a;
  if (covers(b, a)) return b;
  const joined = new Map(a);
  let added = false;
  for (const [node, counter] of b) {
    const mine = joined.get(node);
    if (mine === undefined) {
      joined.set(node, counter);
      added = true;
    } else if (counter > mine) {
      joined.set(node, counter);
    }
  }
  return added ? sortVersionVector(joined) : joined;
}

/** True when `a` has seen everything `b` has. */
function covers(a: VersionVector, b: VersionVector): boolean {
  if (a.size < b.size) return false;
  for (const [node, counter] of b) {
    const mine = a.get(node);
    if (mine === undefined || mine < counter) return false;
  }
  return true;
}

function sortVersionVector(vv: VersionVector): Map<string, number> {
  return new Map([...vv].sort((x, y) => compareNodeIds(x[0], y[0])));
}

/** `context` with `dot.node`'s counter raised to `dot.counter` (a new write's dot added). */
export function withDot(context: VersionVector, dot: Dot): VersionVector {
  const added = new Map(context);
  const known = added.has(dot.node);
  if (!known || added.get(dot.node)! < dot.counter) added.set(dot.node, dot.counter);
  return known ? added : sortVersionVector(added);
}

/**
 * How `a` relates to `b`: Equal, Before (a < b: b has seen all a has, and more), After, or
 * Concurrent. The scalar twin of the batch kernel `compareVersionVectorBatch`.
 */
export function compareVersionVectors(a: VersionVector, b: VersionVector): VersionOrder {
  let before = 0;
  let after = 0;
  for (const [node, x] of a) {
    const y = b.get(node) ?? 0;
    if (x < y) before = VersionOrder.Before;
    else if (x > y) after = VersionOrder.After;
  }
  if (before === 0) {
    for (const [node, y] of b) {
      if (y > 0 && !a.has(node)) {
        before = VersionOrder.Before;
        break;
      }
    }
  }
  return (before | after) as VersionOrder;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i]! - b[i]!;
  }
  return a.length - b.length;
}

/**
 * The total order of writes that every replica uses to pick a winner: by HLC (see
 * {@link compareHlc}: wall time, logical counter, node id). Two distinct writes never share an
 * HLC when clocks work; if they do (a replica lost its clock state), the dot, the region and
 * finally the content decide, so that replicas still agree. Returns 0 only for identical writes.
 */
export function compareWrites(a: Write, b: Write): number {
  if (a === b) return 0;
  const byHlc = compareHlc(a.hlc, b.hlc);
  if (byHlc !== 0) return byHlc;
  const byNode = compareNodeIds(a.dot.node, b.dot.node);
  if (byNode !== 0) return byNode;
  if (a.dot.counter !== b.dot.counter) return a.dot.counter - b.dot.counter;
  const byRegion = compareNodeIds(a.region, b.region);
  if (byRegion !== 0) return byRegion;
  if (a.value === null || b.value === null) {
    return a.value === b.value ? 0 : a.value === null ? -1 : 1;
  }
  return compareBytes(a.value, b.value);
}

const newestFirst = (x: Write, y: Write): number => compareWrites(y, x);

function dotKey(dot: Dot): string {
  return `${dot.counter}@${dot.node}`;
}

function isCounter(counter: unknown): counter is number {
  return typeof counter === 'number' && Number.isSafeInteger(counter) && counter >= 1;
}

/** True when {@link checkVersionVector} would accept `context`; builds no message. */
export function isVersionVector(context: unknown): context is VersionVector {
  if (!(context instanceof Map)) return false;
  for (const [node, counter] of context as Map<unknown, unknown>) {
    if (!isNodeId(node) || !isCounter(counter)) return false;
  }
  return true;
}

/** True when {@link checkWrite} would accept `write`; builds no message. */
export function isWrite(write: unknown): write is Write {
  if (typeof write !== 'object' || write === null) return false;
  const { value, hlc, dot, region } = write as Record<string, unknown>;
  if (value !== null && !(value instanceof Uint8Array)) return false;
  if (!isHlcTimestamp(hlc) || !isNodeId(region)) return false;
  if (typeof dot !== 'object' || dot === null) return false;
  const { node, counter } = dot as Record<string, unknown>;
  return isNodeId(node) && isCounter(counter);
}

/** True when {@link checkVersion} would accept `version`; builds no message. */
export function isVersion(version: unknown): version is Version {
  if (typeof version !== 'object' || version === null) return false;
  const { siblings, context } = version as Record<string, unknown>;
  if (!Array.isArray(siblings) || siblings.length === 0 || !isVersionVector(context)) return false;
  const n = siblings.length;
  const seen = n > 8 ? new Set<string>() : null;
  for (let i = 0; i < n; i++) {
    const sibling: unknown = siblings[i];
    if (!isWrite(sibling) || !coversDot(context, sibling.dot)) return false;
    if (seen !== null) {
      const key = dotKey(sibling.dot);
      if (seen.has(key)) return false;
      seen.add(key);
    } else {
      for (let j = 0; j < i; j++) {
        const other = (siblings[j] as Write).dot;
        if (other.counter === sibling.dot.counter && other.node === sibling.dot.node) return false;
      }
    }
  }
  return true;
}

/** Throws TypeError/RangeError unless `context` is a version vector; `what` names it. */
export function checkVersionVector(
  context: unknown,
  what: string,
): asserts context is VersionVector {
  if (isVersionVector(context)) return;
  if (!(context instanceof Map)) {
    throw new TypeError(`Invalid ${what}: expected a Map of replica id to counter`);
  }
  for (const [node, counter] of context as Map<unknown, unknown>) {
    checkNodeId(node, `${what} replica id`);
    if (typeof counter !== 'number' || !Number.isSafeInteger(counter) || counter < 1) {
      throw new RangeError(
        `Invalid ${what}: the counter of ${node} is ${String(counter)}, expected a positive integer`,
      );
    }
  }
}

/** Throws TypeError/RangeError unless `write` is well-formed; `what` names it. */
export function checkWrite(write: unknown, what: string): asserts write is Write {
  if (isWrite(write)) return;
  if (typeof write !== 'object' || write === null) {
    throw new TypeError(`Invalid ${what}: expected a write object`);
  }
  const { value, hlc, dot, region } = write as Record<string, unknown>;
  if (value !== null && !(value instanceof Uint8Array)) {
    throw new TypeError(`Invalid ${what}: value must be a Uint8Array or null (a delete)`);
  }
  checkHlcTimestamp(hlc, `${what} HLC`);
  if (typeof dot !== 'object' || dot === null) {
    throw new TypeError(`Invalid ${what}: dot must be an object { node, counter }`);
  }
  const { node, counter } = dot as Record<string, unknown>;
  checkNodeId(node, `${what} dot node`);
  if (typeof counter !== 'number' || !Number.isSafeInteger(counter) || counter < 1) {
    throw new RangeError(
      `Invalid ${what}: dot counter is ${String(counter)}, expected a positive integer`,
    );
  }
  checkNodeId(region, `${what} region`);
}

/**
 * Throws TypeError/RangeError unless `version` is well-formed: at least one sibling, every
 * sibling valid and covered by the context, no dot twice. `what` names it in messages.
 */
export function checkVersion(version: unknown, what: string): asserts version is Version {
  if (isVersion(version)) return;
  if (typeof version !== 'object' || version === null) {
    throw new TypeError(`Invalid ${what}: expected { siblings, context }`);
  }
  const { siblings, context } = version as Record<string, unknown>;
  if (!Array.isArray(siblings)) throw new TypeError(`Invalid ${what}: siblings must be an array`);
  if (siblings.length === 0) throw new RangeError(`Invalid ${what}: it has no siblings`);
  checkVersionVector(context, `${what} context`);
  const seen = new Map<string, number>();
  for (let i = 0; i < siblings.length; i++) {
    const sibling: unknown = siblings[i];
    checkWrite(sibling, `${what} sibling ${i}`);
    if (!coversDot(context, sibling.dot)) {
      throw new RangeError(
        `Invalid ${what}: sibling ${i} has dot ${formatDot(sibling.dot)} but the context has ${sibling.dot.node}:${context.get(sibling.dot.node) ?? 0}`,
      );
    }
    const twin = seen.get(dotKey(sibling.dot));
    if (twin !== undefined) {
      throw new RangeError(
        `Invalid ${what}: siblings ${twin} and ${i} share dot ${formatDot(sibling.dot)}`,
      );
    }
    seen.set(dotKey(sibling.dot), i);
  }
}

function newestOf(writes: readonly Write[]): Write {
  let newest = writes[0]!;
  for (let i = 1; i < writes.length; i++) {
    if (compareWrites(writes[i]!, newest) > 0) newest = writes[i]!;
  }
  return newest;
}

/** What {@link recordWrite} returns. */
export interface RecordedWrite {
  /** The key's new state. */
  readonly version: Version;
  /** The write just recorded (also among `version.siblings`). */
  readonly write: Write;
  /** Siblings dropped by the `siblingsMax` bound (the oldest), newest first; normally none. */
  readonly discarded: readonly Write[];
}

/**
 * A client's write of `value` (null: a delete) at `replica`, the coordinator. `stored` is the
 * key's state here (undefined if absent); `readContext` is the context the client read before
 * writing — the writes it has seen and means to overwrite. Stored siblings the client has not
 * seen stay as siblings of the new write: they are concurrent with it. The new write gets the
 * next dot of this replica and a timestamp from its clock, moved past every stored sibling
 * first so that the HLC order agrees with causality.
 *
 * Beyond `siblingsMax` siblings (a bound, default from `conflictDefaults`) the oldest are
 * dropped and returned in `discarded`: their dots stay in the context so they do not return.
 */
export function recordWrite(
  stored: Version | undefined,
  readContext: VersionVector,
  value: Uint8Array | null,
  replica: Replica,
  siblingsMax: number = conflictDefaults.siblingsMax,
): RecordedWrite {
  if (stored !== undefined) checkVersion(stored, 'stored version');
  checkVersionVector(readContext, 'read context');
  if (value !== null && !(value instanceof Uint8Array)) {
    throw new TypeError('Cannot record write: value must be a Uint8Array or null (a delete)');
  }
  checkReplica(replica);
  checkInteger('siblingsMax', siblingsMax, 1);
  const { clock } = replica;
  const storedContext = stored?.context ?? emptyVersionVector;
  if (stored !== undefined) {
    const newest = newestOf(stored.siblings);
    if (compareHlc(newest.hlc, clock.last) > 0) clock.update(newest.hlc);
  }
  const counter =
    Math.max(storedContext.get(clock.node) ?? 0, readContext.get(clock.node) ?? 0) + 1;
  const write: Write = {
    value,
    hlc: clock.now(),
    dot: { node: clock.node, counter },
    region: replica.region,
  };
  const kept =
    stored === undefined ? [] : stored.siblings.filter((s) => !coversDot(readContext, s.dot));
  const context = withDot(joinVersionVectors(storedContext, readContext), write.dot);
  const siblings = [write, ...kept].sort(newestFirst);
  const discarded = siblings.splice(siblingsMax);
  return { version: { siblings, context }, write, discarded };
}

/** What two replicas' states of a key combine into, before a strategy picks from it. */
export interface MergedVersions {
  /**
   * The concurrent frontier, newest first: the writes neither side has superseded. A write one
   * side's context covers, but which that side no longer holds, was overwritten there.
   */
  readonly frontier: readonly Write[];
  /** Every distinct write of both sides, superseded ones included, newest first. */
  readonly writes: readonly Write[];
  /** Both contexts joined. */
  readonly context: VersionVector;
  /**
   * The clocks contradict causality: a superseded write has a later HLC than everything on the
   * side that superseded it (its writer's clock was behind), or each side superseded all of
   * the other's writes. A correctly used {@link Hlc} never produces this.
   */
  readonly clockContradiction: boolean;
  /**
   * Two different writes carried the same dot (a replica reused dot counters, e.g. after losing
   * its data). The greater by {@link compareWrites} was kept.
   */
  readonly dotCollision: boolean;
}

function dotIndex(siblings: readonly Write[]): Map<string, number> {
  const index = new Map<string, number>();
  for (let j = 0; j < siblings.length; j++) {
    const { node, counter } = siblings[j]!.dot;
    index.set(dotKey({ node, counter }), j);
  }
  return index;
}

function findDot(siblings: readonly Write[], index: Map<string, number> | null, dot: Dot): number {
  if (index !== null) return index.get(dotKey(dot)) ?? -1;
  for (let j = 0; j < siblings.length; j++) {
    const other = siblings[j]!.dot;
    if (other.counter === dot.counter && other.node === dot.node) return j;
  }
  return -1;
}

/**
 * The DVV sync of two states of one key (both assumed valid: see {@link checkVersion}). A
 * sibling of one side survives unless the other side's context covers its dot without holding
 * it. Two hints computed elsewhere (by the batch kernels) save work when given: `order`, non-zero,
 * is `compareHlc(a.siblings[0].hlc, b.siblings[0].hlc)` for single-sibling states; `relation`
 * is `compareVersionVectors(a.context, b.context)`.
 */
export function mergeVersions(
  a: Version,
  b: Version,
  order = 0,
  relation: VersionOrder | -1 = -1,
): MergedVersions {
  const context =
    relation === VersionOrder.Equal || relation === VersionOrder.After
      ? a.context
      : relation === VersionOrder.Before
        ? b.context
        : joinVersionVectors(a.context, b.context);
  const as = a.siblings;
  const bs = b.siblings;
  if (as.length === 1 && bs.length === 1) return mergeSingles(a, b, order, context);
  const aNewestHlc = newestOf(as).hlc;
  const bNewestHlc = newestOf(bs).hlc;
  const index = bs.length > 8 ? dotIndex(bs) : null;
  const matched: boolean[] = new Array<boolean>(bs.length).fill(false);
  const writes: Write[] = [];
  let superseded: Set<Write> | null = null;
  let clockContradiction = false;
  let dotCollision = false;
  for (const s of as) {
    const j = findDot(bs, index, s.dot);
    if (j >= 0) {
      matched[j] = true;
      const t = bs[j]!;
      const c = compareWrites(s, t);
      if (c !== 0) dotCollision = true;
      writes.push(c >= 0 ? s : t);
    } else {
      writes.push(s);
      if (coversDot(b.context, s.dot)) {
        (superseded ??= new Set()).add(s);
        if (compareHlc(s.hlc, bNewestHlc) > 0) clockContradiction = true;
      }
    }
  }
  for (let j = 0; j < bs.length; j++) {
    if (matched[j]) continue;
    const t = bs[j]!;
    writes.push(t);
    if (coversDot(a.context, t.dot)) {
      (superseded ??= new Set()).add(t);
      if (compareHlc(t.hlc, aNewestHlc) > 0) clockContradiction = true;
    }
  }
  if (writes.length > 1) writes.sort(newestFirst);
  let frontier: readonly Write[] = writes;
  if (superseded !== null) {
    const live = writes.filter((w) => !superseded.has(w));
    if (live.length === 0) clockContradiction = true;
    else frontier = live;
  }
  return { frontier, writes, context, clockContradiction, dotCollision };
}

/** {@link mergeVersions} of two single-sibling states: the common case, without sets or sorts. */
function mergeSingles(
  a: Version,
  b: Version,
  order: number,
  context: VersionVector,
): MergedVersions {
  const x = a.siblings[0]!;
  const y = b.siblings[0]!;
  if (x.dot.counter === y.dot.counter && x.dot.node === y.dot.node) {
    const c = compareWrites(x, y);
    const one = [c >= 0 ? x : y];
    return {
      frontier: one,
      writes: one,
      context,
      clockContradiction: false,
      dotCollision: c !== 0,
    };
  }
  const byHlc = order !== 0 ? order : compareHlc(x.hlc, y.hlc);
  const xFirst = (byHlc !== 0 ? byHlc : compareWrites(x, y)) > 0;
  const writes = xFirst ? [x, y] : [y, x];
  const xSuperseded = coversDot(b.context, x.dot);
  const ySuperseded = coversDot(a.context, y.dot);
  let frontier: readonly Write[] = writes;
  let clockContradiction = false;
  if (xSuperseded && ySuperseded) {
    clockContradiction = true; // each side overwrote the other's write: keep both
  } else if (xSuperseded) {
    frontier = [y];
    clockContradiction = byHlc > 0;
  } else if (ySuperseded) {
    frontier = [x];
    clockContradiction = byHlc < 0;
  }
  return { frontier, writes, context, clockContradiction, dotCollision: false };
}

/** What {@link syncVersions} returns. */
export interface SyncedVersions {
  /** The merged state: the frontier, bounded. */
  readonly version: Version;
  /** Frontier writes dropped by the `siblingsMax` bound, newest first. */
  readonly discarded: readonly Write[];
  /** The unbounded merge it came from. */
  readonly merged: MergedVersions;
}

/**
 * Merges two states of a key keeping every concurrent write as a sibling (MULTI_VALUE), both
 * checked first. Past `siblingsMax` siblings the newest `siblingsMax` by HLC are kept; the
 * others are returned in `discarded` and their dots stay in the context, so a later merge
 * does not bring them back.
 *
 * The merge is commutative, associative and idempotent as long as the bound is not hit. When
 * it is, dropping is lossy: two replicas that bounded different sets agree again once they
 * exchange states (the drop spreads like a delete), but not necessarily on what the unbounded
 * merge would have shown. Set the bound above the concurrency you expect.
 */
export function syncVersions(
  a: Version,
  b: Version,
  siblingsMax: number = conflictDefaults.siblingsMax,
): SyncedVersions {
  checkVersion(a, 'first version');
  checkVersion(b, 'second version');
  checkInteger('siblingsMax', siblingsMax, 1);
  const merged = mergeVersions(a, b);
  return boundSiblings(merged, siblingsMax);
}

/** The merged state bounded to `siblingsMax` siblings (see {@link syncVersions}). */
export function boundSiblings(merged: MergedVersions, siblingsMax: number): SyncedVersions {
  const { frontier, context } = merged;
  if (frontier.length <= siblingsMax) {
    return { version: { siblings: frontier, context }, discarded: [], merged };
  }
  return {
    version: { siblings: frontier.slice(0, siblingsMax), context },
    discarded: frontier.slice(siblingsMax),
    merged,
  };
}

/** `[value-or-delete@hlc (dot)]`, for messages. */
export function formatWrite(write: Write): string {
  const what = write.value === null ? 'delete' : `${write.value.length} bytes`;
  return `${what} at ${formatHlc(write.hlc)} (${formatDot(write.dot)}, ${write.region})`;
}
