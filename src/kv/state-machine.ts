/**
 * The key-value state machine: applied from committed log entries, in log order, on every
 * node. It must be deterministic — the same entries give the same state and the same results on
 * every replica — so it reads nothing but its input (no clock, no randomness) and iterates in a
 * fixed order (snapshots sort keys).
 *
 * Semantics are etcd v2's: a put may require `prevValue` (compare-and-set; 404 when the key is
 * absent, 412 when it differs) or `prevExist` (false = create only, 412 when present; true =
 * update only, 404 when absent); a delete of an absent key is 404 and may require `prevValue`.
 *
 * **Versions.** Each key holds what conflict resolution between regions needs: a
 * {@link Version} of dotted version vectors (src/conflict/dvv.ts) — the writes not yet
 * superseded (siblings; a delete is a tombstone write) with their HLC, dot and origin region,
 * and the causal context. The region is the replica: a write that originates here gets the dot
 * `(region, n)` when applied (n = one more than the context's counter for this region) and
 * supersedes everything the key held here. Its HLC was taken by the leader when proposing it
 * and travels in the command ({@link encodeStampedCommand}); if the key holds a newer one (a
 * leader whose clock is behind) it is moved just past it, so HLC order agrees with causality.
 * A command without a stamp (v1) gets the successor of the highest HLC applied so far.
 *
 * Writes from other regions arrive as {@link RemoteBatch}es and are merged through the
 * {@link ConflictResolver} against the local version, with the strategy the batch names (the
 * receiving leader's, fixed in the log so every replica merges alike). A batch is applied once:
 * each origin's position (the highest origin index applied) deduplicates re-shipped writes and
 * refuses batches that would leave a gap.
 *
 * **Reads.** `get` returns the newest sibling's value (undefined when it is a delete);
 * `getVersion` returns every sibling, for MULTI_VALUE readers.
 *
 * **Shipping.** For each key the state keeps its latest local write and that write's index;
 * `localChangesSince(index)` lists them in index order. Shipping the latest local write of a
 * key subsumes the earlier ones (its context covers their dots, its HLC is newer), so a region
 * that was away for a long time catches up from this state alone, whatever the log kept.
 *
 * @example
 * ```ts
 * const kv = new KvStateMachine();
 * const payload = kv.encodePut('x', new TextEncoder().encode('1'));   // propose this
 * kv.apply(1, payload); // { kind: 'ok', index: 1, previous: null }
 * kv.get('x');          // Uint8Array [49]
 * ```
 */
import { resolveKvLimits, type KvLimits } from '../config.js';
import { ConflictResolver, type ConflictInfo } from '../conflict/conflict-resolver.js';
import type { Version } from '../conflict/dvv.js';
import { checkNodeId, compareHlc, compareNodeIds, type HlcTimestamp } from '../conflict/hlc.js';
import type { PhantomError } from '../errors.js';
import { BadRequestError, StorageError } from '../errors.js';
import {
  decodeCommand,
  decodeSnapshot,
  encodeDelete,
  encodePut,
  type DeleteConditions,
  type PutConditions,
} from './codec.js';
import { KeyRecord, successorOf } from './key-record.js';
import { KvSnapshotCapture, type SnapshotHeader } from './snapshot-capture.js';
import {
  decodeRemoteBatch,
  decodeStampedCommand,
  decodeVersionedSnapshot,
  encodeVersionedSnapshot,
  isVersionedSnapshot,
  stampedCommandMarker,
  type RemoteBatch,
  type ShippedWrite,
} from './versioned-codec.js';

/** The outcome of applying one command. */
export type KvResult =
  /** Applied; `previous` is the value before (null when the key was absent). */
  | { readonly kind: 'ok'; readonly index: number; readonly previous: Uint8Array | null }
  /** A `prevValue` / `prevExist=false` condition failed; `current` is the value now. */
  | {
      readonly kind: 'preconditionFailed';
      readonly index: number;
      readonly current: Uint8Array | null;
    }
  /** The key is absent (delete, put with `prevValue` or `prevExist=true`). */
  | { readonly kind: 'notFound'; readonly index: number }
  /**
   * The payload is not a valid command. Every replica reaches the same verdict on the same
   * bytes, so the entry is consumed without changing state rather than stopping the node.
   */
  | { readonly kind: 'invalid'; readonly index: number; readonly error: PhantomError };

/** The outcome of applying a batch of writes shipped from another region. */
export type RemoteBatchResult =
  /**
   * Merged. `position` is the origin's position afterwards; `applied` writes were new,
   * `duplicates` had been applied before (a re-shipped batch); `conflicts` met a local version
   * (of which `concurrent` were real conflicts and `unresolved` kept siblings under CUSTOM).
   */
  | {
      readonly kind: 'applied';
      readonly index: number;
      readonly origin: string;
      readonly position: number;
      readonly applied: number;
      readonly duplicates: number;
      readonly conflicts: number;
      readonly concurrent: number;
      readonly unresolved: number;
    }
  /** The batch starts after `position + 1`: applying it would skip writes. Nothing changed. */
  | {
      readonly kind: 'gap';
      readonly index: number;
      readonly origin: string;
      readonly position: number;
    }
  /** Not a valid batch (see `KvResult` 'invalid'). */
  | { readonly kind: 'invalid'; readonly index: number; readonly error: PhantomError };

/** Options of {@link KvStateMachine}. */
export interface KvStateMachineOptions {
  /** Key and value size limits (src/config.ts, kv section). */
  readonly limits?: Partial<KvLimits>;
  /**
   * This region's id: it names the dots (and the HLC node of unstamped writes) of writes that
   * originate here. Every node of a cluster must use the same one; a snapshot of another
   * region is refused. Default {@link defaultRegion}.
   */
  readonly region?: string;
  /**
   * Merges writes from other regions (its strategy is set per batch). Default: a new,
   * initialized ConflictResolver. Its counters are the region's conflict statistics.
   */
  readonly conflictResolver?: ConflictResolver;
}

/** The region of a state machine created without one. */
export const defaultRegion = 'default';

/** Latest-local-write index entries left behind by rewrites before the list is compacted. */
const changelogStaleMax = 1024;

/** A deterministic key-value store applied from the Raft log. */
export class KvStateMachine {
  /** Limits applied to commands this instance encodes. */
  readonly limits: KvLimits;
  /** This region's id (see {@link KvStateMachineOptions.region}). */
  readonly region: string;
  /** Merges remote writes; its stats count this replica's conflicts. */
  readonly conflictResolver: ConflictResolver;
  private records = new Map<string, KeyRecord>();
  /** Captures being encoded ({@link captureSnapshot}): each keeps a record before it changes. */
  private readonly captures = new Set<KvSnapshotCapture>();
  private applied = 0;
  private liveKeys = 0;
  private clock: HlcTimestamp | null = null;
  /** Origin region -> highest origin index applied from it. */
  private readonly inbound = new Map<string, number>();
  /**
   * Key records by the index of their latest local write, ascending. An entry is stale once
   * its key was written again (its record's localIndex differs); stale entries are skipped and
   * compacted away in bulk. The records themselves, not their keys: looking each key up in the
   * map made a compaction of 19,000 entries take a median of 1.05–1.27 ms, against
   * 0.24–0.26 ms (bench/README.md, row 22).
   */
  private changeIndexes: number[] = [];
  private changeRecords: KeyRecord[] = [];
  private changelogStale = 0;

  constructor(options: KvStateMachineOptions = {}) {
    this.limits = resolveKvLimits(options.limits);
    this.region = options.region ?? defaultRegion;
    checkNodeId(this.region, 'region');
    if (
      options.conflictResolver !== undefined &&
      !(options.conflictResolver instanceof ConflictResolver)
    ) {
      throw new TypeError('Invalid conflictResolver: expected a ConflictResolver');
    }
    this.conflictResolver = options.conflictResolver ?? new ConflictResolver();
    // Applying must not depend on whether someone initialized it.
    this.conflictResolver.initialize();
  }

  /** Index of the last entry applied (or skipped); 0 before any. */
  get appliedIndex(): number {
    return this.applied;
  }

  /** Number of keys with a value (a key whose newest sibling is a delete does not count). */
  get size(): number {
    return this.liveKeys;
  }

  /** The highest HLC among applied writes, local or remote (null before the first). */
  get clockHigh(): HlcTimestamp | null {
    return this.clock;
  }

  /** The value of `key` (a view: do not modify it), or undefined when absent. */
  get(key: string): Uint8Array | undefined {
    return this.records.get(key)?.value ?? undefined;
  }

  /**
   * The full state of `key`: every sibling (newest first; a null value is a delete) and the
   * causal context; undefined when the key was never written. Treat it as immutable.
   */
  getVersion(key: string): Version | undefined {
    return this.records.get(key)?.version;
  }

  /** The highest index applied from region `origin` (0 when none). */
  inboundPosition(origin: string): number {
    return this.inbound.get(origin) ?? 0;
  }

  /** Every origin region this state has applied writes from, with its position. */
  inboundPositions(): Map<string, number> {
    return new Map(this.inbound);
  }

  /** Encodes a put command for proposing (validated against this instance's limits). */
  encodePut(key: string, value: Uint8Array, conditions: PutConditions = {}): Uint8Array {
    return encodePut(key, value, conditions, this.limits);
  }

  /** Encodes a delete command for proposing. */
  encodeDelete(key: string, conditions: DeleteConditions = {}): Uint8Array {
    return encodeDelete(key, conditions, this.limits);
  }

  /**
   * Applies the command of log entry `index`, which must be `appliedIndex + 1` (RangeError
   * otherwise: applying out of order is the driver's bug). A corrupt payload gives an
   * `invalid` result and still consumes the index. The payload is a v1 command or a stamped
   * one ({@link encodeStampedCommand}).
   */
  apply(index: number, payload: Uint8Array): KvResult {
    this.checkNext(index, 'apply entry');
    this.applied = index;
    let command;
    let stamp: HlcTimestamp | null = null;
    try {
      if (payload.length > 0 && payload[0] === stampedCommandMarker) {
        const stamped = decodeStampedCommand(payload);
        stamp = stamped.hlc;
        command = decodeCommand(stamped.command);
      } else {
        command = decodeCommand(payload);
      }
    } catch (error) {
      if (error instanceof BadRequestError) return { kind: 'invalid', index, error };
      throw error;
    }
    const record = this.records.get(command.key);
    const current = record?.value ?? null;
    if (command.prevValue !== undefined) {
      if (current === null) return { kind: 'notFound', index };
      if (!equalBytes(current, command.prevValue))
        return { kind: 'preconditionFailed', index, current };
    }
    if (command.op === 'delete') {
      if (current === null) return { kind: 'notFound', index };
      this.writeLocally(index, command.key, record, null, stamp);
      return { kind: 'ok', index, previous: current };
    }
    if (command.prevExist === false && current !== null) {
      return { kind: 'preconditionFailed', index, current };
    }
    if (command.prevExist === true && current === null) return { kind: 'notFound', index };
    this.writeLocally(index, command.key, record, command.value, stamp);
    return { kind: 'ok', index, previous: current };
  }

  /**
   * Applies log entry `index` holding a batch shipped from another region (see the module
   * comment): writes already applied are skipped, the others merged through the conflict
   * resolver with the batch's strategy. Same index rules as {@link apply}.
   */
  applyRemoteBatch(index: number, payload: Uint8Array): RemoteBatchResult {
    this.checkNext(index, 'apply entry');
    this.applied = index;
    let batch: RemoteBatch;
    try {
      batch = decodeRemoteBatch(payload, this.limits);
    } catch (error) {
      if (error instanceof BadRequestError) return { kind: 'invalid', index, error };
      throw error;
    }
    const { origin } = batch;
    if (origin === this.region) {
      const error = new BadRequestError(
        `Cannot apply a batch from region ${origin}: it is this region; writes never come back`,
      );
      return { kind: 'invalid', index, error };
    }
    const position = this.inbound.get(origin) ?? 0;
    if (batch.fromIndex > position + 1) return { kind: 'gap', index, origin, position };
    const resolver = this.conflictResolver;
    const configured = resolver.getResolutionStrategy();
    let applied = 0;
    let conflicts = 0;
    let concurrent = 0;
    let unresolved = 0;
    resolver.setResolutionStrategy(batch.strategy);
    try {
      let pending: ConflictInfo[] = [];
      const flush = (): void => {
        if (pending.length === 0) return;
        const results = resolver.resolveConflicts(pending);
        for (const resolved of results) {
          const record = this.records.get(resolved.key)!;
          this.replaceVersion(record, resolved.version);
          if (resolved.relation === 'concurrent') concurrent++;
          if (resolved.unresolved) unresolved++;
        }
        conflicts += results.length;
        pending = [];
      };
      // One resolveConflicts call must not hold the same key twice (the second would merge
      // against the state before the first): a repeated key flushes what came before it.
      const keysPending = new Set<string>();
      for (const item of batch.items) {
        if (item.index <= position) continue;
        applied++;
        this.observe(item.version);
        const record = this.records.get(item.key);
        if (record === undefined) {
          this.records.set(item.key, KeyRecord.remote(item.key, this.region, item.version));
          if (item.version.siblings[0]!.value !== null) this.liveKeys++;
          continue;
        }
        if (keysPending.has(item.key)) {
          flush();
          keysPending.clear();
        }
        keysPending.add(item.key);
        pending.push({ key: item.key, local: record.version, remote: item.version });
      }
      flush();
    } finally {
      resolver.setResolutionStrategy(configured);
    }
    const newPosition = Math.max(position, batch.toIndex);
    this.inbound.set(origin, newPosition);
    return {
      kind: 'applied',
      index,
      origin,
      position: newPosition,
      applied,
      duplicates: batch.items.length - applied,
      conflicts,
      concurrent,
      unresolved,
    };
  }

  /** Consumes entry `index` without a command (a leader's no-op or a membership change). */
  skip(index: number): void {
    this.checkNext(index, 'skip entry');
    this.applied = index;
  }

  /**
   * The latest local writes of keys whose index is above `afterIndex`, in index order, at most
   * `writesMax` of them and about `bytesMax` bytes of keys and values (at least one is
   * returned when any is pending). `toIndex` is the index the list covers up to: the applied
   * index when every pending write is in it, else the last one's index. A region that applies
   * them has every local write up to `toIndex` or a later write of the same key.
   */
  localChangesSince(
    afterIndex: number,
    writesMax: number,
    bytesMax: number,
  ): { items: ShippedWrite[]; toIndex: number } {
    const items: ShippedWrite[] = [];
    let bytes = 0;
    let position = this.firstChangeAfter(afterIndex);
    for (; position < this.changeIndexes.length; position++) {
      const index = this.changeIndexes[position]!;
      const record = this.changeRecords[position]!;
      if (record.localIndex !== index) continue;
      const { key } = record;
      const local = record.local!;
      const size = key.length + (local.siblings[0]!.value?.length ?? 0);
      if (items.length > 0 && (items.length >= writesMax || bytes + size > bytesMax)) {
        return { items, toIndex: items[items.length - 1]!.index };
      }
      items.push({ index, key, version: local });
      bytes += size;
    }
    return { items, toIndex: Math.max(afterIndex, this.applied) };
  }

  /**
   * Local writes above `afterIndex` not yet superseded by a later local write of their key:
   * how many, and the HLC of the oldest (for lag in time). Costs one pass over them.
   */
  pendingLocalWrites(afterIndex: number): { count: number; oldest: HlcTimestamp | null } {
    let count = 0;
    let oldest: HlcTimestamp | null = null;
    for (let p = this.firstChangeAfter(afterIndex); p < this.changeIndexes.length; p++) {
      const record = this.changeRecords[p]!;
      if (record.localIndex !== this.changeIndexes[p]) continue;
      oldest ??= record.localHlc;
      count++;
    }
    return { count, oldest };
  }

  /** Index of the latest local write (0 when none). */
  get lastLocalIndex(): number {
    return this.changeIndexes[this.changeIndexes.length - 1] ?? 0;
  }

  /** The whole state, applied index included, in the versioned (v2) snapshot encoding. */
  snapshot(): Uint8Array {
    const keys = [...this.records.keys()].sort();
    const records = this.records;
    return encodeVersionedSnapshot({
      ...this.snapshotHeader(),
      keyCount: keys.length,
      keys: (function* () {
        for (const key of keys) yield records.get(key)!.toSnapshot();
      })(),
    });
  }

  /**
   * The state now, for a snapshot encoded later ({@link KvSnapshotCapture.encode}) while
   * commands go on being applied: it costs a copy of the key list, where {@link snapshot}
   * encodes every key at once. Encode or release every capture: until then each key changed
   * is kept for it.
   */
  captureSnapshot(): KvSnapshotCapture {
    const capture = new KvSnapshotCapture(
      this.snapshotHeader(),
      this.records,
      [...this.records.keys()],
      (done) => this.captures.delete(done),
    );
    this.captures.add(capture);
    return capture;
  }

  private snapshotHeader(): SnapshotHeader {
    return {
      appliedIndex: this.applied,
      region: this.region,
      clockHigh: this.clock,
      inbound: [...this.inbound].sort((a, b) => compareNodeIds(a[0], b[0])),
    };
  }

  /** Before `record` changes in place: each capture being encoded keeps what it held. */
  private keepForCaptures(record: KeyRecord): void {
    for (const capture of this.captures) capture.keep(record);
  }

  /**
   * Replaces the state with a snapshot's (v2, or v1 from before versions: its values become
   * writes of this region). Validated first (StorageError CORRUPT_LOG on any problem; RangeError
   * when it belongs to another region), so a bad snapshot leaves the current state untouched.
   */
  restore(bytes: Uint8Array): void {
    if (!isVersionedSnapshot(bytes)) {
      this.restorePlain(bytes);
      return;
    }
    const contents = decodeVersionedSnapshot(bytes, this.limits.valueBytesMax);
    if (contents.region !== this.region) {
      throw new RangeError(
        `Cannot restore snapshot: it belongs to region ${contents.region}, this state machine to region ${this.region} (a node's region must never change)`,
      );
    }
    this.reset(contents.appliedIndex, contents.clockHigh);
    for (const [origin, position] of contents.inbound) this.inbound.set(origin, position);
    const local: KeyRecord[] = [];
    for (const { key, version, localIndex, local: shipped } of contents.keys) {
      const record = KeyRecord.restored(key, this.region, version, localIndex, shipped);
      this.records.set(key, record);
      if (version.siblings[0]!.value !== null) this.liveKeys++;
      if (localIndex > 0) local.push(record);
    }
    local.sort((a, b) => a.localIndex - b.localIndex);
    for (const record of local) {
      this.changeIndexes.push(record.localIndex);
      this.changeRecords.push(record);
    }
  }

  /** A v1 snapshot (plain values): each becomes a write of this region, shipped like one. */
  private restorePlain(bytes: Uint8Array): void {
    const contents = decodeSnapshot(bytes);
    if (contents.entries.length > contents.appliedIndex) {
      throw new StorageError(
        'CORRUPT_LOG',
        `Cannot restore snapshot: it holds ${contents.entries.length} keys but only ${contents.appliedIndex} applied entries`,
      );
    }
    this.reset(contents.appliedIndex, null);
    // Distinct indexes no later than the snapshot, in key order: a key took at least one
    // entry, so there are enough of them.
    contents.entries.forEach(([key, value], k) => {
      const index = k + 1;
      this.writeLocally(index, key, undefined, value, null);
    });
  }

  private reset(appliedIndex: number, clock: HlcTimestamp | null): void {
    // A new map, not a cleared one: a capture being encoded still reads the old one, which
    // nothing changes any more.
    this.records = new Map();
    this.captures.clear();
    this.inbound.clear();
    this.changeIndexes = [];
    this.changeRecords = [];
    this.changelogStale = 0;
    this.liveKeys = 0;
    this.clock = clock;
    this.applied = appliedIndex;
  }

  /** Records a write that originated here (see the module comment). */
  private writeLocally(
    index: number,
    key: string,
    record: KeyRecord | undefined,
    value: Uint8Array | null,
    stamp: HlcTimestamp | null,
  ): void {
    let hlc = stamp ?? successorOf(this.clock, this.region);
    if (record !== undefined) hlc = record.laterThanSiblings(hlc);
    this.observeHlc(hlc);
    let written: KeyRecord;
    if (record === undefined) {
      written = KeyRecord.local(key, this.region, index, value, hlc);
      this.records.set(key, written);
      if (value !== null) this.liveKeys++;
    } else {
      written = record;
      if (record.localIndex > 0) this.changelogStale++;
      const wasLive = record.value !== null;
      if (this.captures.size > 0) this.keepForCaptures(record);
      record.writeLocal(index, value, hlc);
      this.countLiveness(wasLive, value !== null);
    }
    this.changeIndexes.push(index);
    this.changeRecords.push(written);
    if (
      this.changelogStale > changelogStaleMax &&
      this.changelogStale * 2 > this.changeIndexes.length
    ) {
      this.compactChangelog();
    }
  }

  private replaceVersion(record: KeyRecord, version: Version): void {
    const wasLive = record.value !== null;
    if (this.captures.size > 0) this.keepForCaptures(record);
    record.merge(version);
    this.countLiveness(wasLive, version.siblings[0]!.value !== null);
  }

  /** Keeps {@link size} right when a key's newest sibling turns from a value to a delete or back. */
  private countLiveness(wasLive: boolean, isLive: boolean): void {
    if (wasLive !== isLive) this.liveKeys += isLive ? 1 : -1;
  }

  private compactChangelog(): void {
    const indexes: number[] = [];
    const records: KeyRecord[] = [];
    for (let p = 0; p < this.changeIndexes.length; p++) {
      const record = this.changeRecords[p]!;
      if (record.localIndex === this.changeIndexes[p]) {
        indexes.push(this.changeIndexes[p]!);
        records.push(record);
      }
    }
    this.changeIndexes = indexes;
    this.changeRecords = records;
    this.changelogStale = 0;
  }

  /** Position in the changelog of the first entry with an index above `afterIndex`. */
  private firstChangeAfter(afterIndex: number): number {
    let low = 0;
    let high = this.changeIndexes.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.changeIndexes[middle]! <= afterIndex) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  private observe(version: Version): void {
    for (const sibling of version.siblings) this.observeHlc(sibling.hlc);
  }

  private observeHlc(hlc: HlcTimestamp): void {
    if (this.clock === null || compareHlc(hlc, this.clock) > 0) this.clock = hlc;
  }

  private checkNext(index: number, what: string): void {
    if (index !== this.applied + 1) {
      throw new RangeError(`Cannot ${what}: index is ${index}, expected ${this.applied + 1}`);
    }
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return false;
  return true;
}
