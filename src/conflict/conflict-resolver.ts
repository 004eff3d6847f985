/**
 * ConflictResolver: what a region does with a key that another region also changed. The seed's
 * interface (camelCase kept), in TypeScript, over hybrid logical clocks and dotted version
 * vectors. A conflict is the local and the remote {@link Version} of one key; resolving it gives
 * the state to store.
 *
 * Every strategy first merges the two states' causality (see {@link mergeVersions}): a write
 * that the other side has seen and overwritten is superseded; the rest is the concurrent
 * frontier. They differ in what they keep:
 *
 * - **LATEST_TIMESTAMP** — causality first, then time (Riak with `allow_mult=false`): the newest
 *   write of the frontier by HLC. A write that has seen another always beats it, whatever the
 *   clocks say; HLCs only order writes that are concurrent. Convergent (commutative, and
 *   associative) as long as the HLCs agree with causality — which {@link Hlc} guarantees when
 *   writes are recorded through it. When they disagree, the result is flagged skew-suspect and
 *   may depend on the order conflicts arrive in.
 * - **LWW_REGISTER** — a state-based last-writer-wins register (a CRDT; Shapiro et al. 2011;
 *   Riak's `last_write_wins`, Cassandra): the newest write by HLC among *all* writes of both
 *   sides, superseded or not, contexts joined. Its merge is commutative, associative and
 *   idempotent on any states. The price: if a clock is behind, a write made after seeing an
 *   older one can lose to it (flagged skew-suspect when the contexts show it).
 * - **MULTI_VALUE** — keeps the whole frontier as siblings (a DVV sync), newest first; a later
 *   write whose context covers them collapses them. Bounded by `siblingsMax` (see
 *   {@link syncVersions}): what the bound drops is counted in `resolvedByBound`.
 * - **CUSTOM** — a registered function picks one frontier write or returns a merged value (see
 *   {@link CustomConflictResolver}). If it throws or returns something invalid, nothing is lost:
 *   the frontier is kept as siblings and the conflict counts as unresolved.
 *
 * When one side already descends from the other there is one frontier write (or the same
 * sibling set) and every strategy gives the same answer: not a real conflict, but counted, since
 * a caller cannot always tell before asking.
 *
 * The node-id tie-break (equal wall time and logical counter) is {@link compareNodeIds}'s code
 * point order; such a decision is flagged `tie`. Deletes are writes with a null value and
 * conflict like any other write.
 *
 * @example
 * ```ts
 * const resolver = new ConflictResolver(ConflictResolutionStrategy.LWW_REGISTER);
 * resolver.initialize();
 * const resolved = resolver.resolveConflict({ key: 'k', local, remote });
 * store(resolved.key, resolved.version); // resolved.winner?.value: the value a read returns
 * ```
 */
import { ShutdownError } from '../errors.js';
import type { ConflictLimits } from '../config.js';
import { resolveConflictLimits, checkInteger } from '../config.js';
import type { HlcColumns } from '../kernel/index.js';
import { compareHlcBatch, compareVersionVectorBatch } from '../kernel/index.js';
import {
  compareHlcBatch as compareHlcBatchTwin,
  compareVersionVectorBatch as compareVersionVectorBatchTwin,
} from '../kernel/reference.js';
import type {
  MergedVersions,
  Replica,
  Version,
  VersionOrder,
  VersionVector,
  Write,
} from './dvv.js';
import {
  boundSiblings,
  checkReplica,
  checkVersion,
  compareVersionVectors,
  isVersion,
  compareWrites,
  mergeVersions,
  withDot,
} from './dvv.js';
import { compareHlc, sameHlcInstant } from './hlc.js';
import { ConflictColumns } from './columns.js';

/** How conflicts are resolved; see the module comment for what each one keeps. */
export const ConflictResolutionStrategy = {
  /** Causality first, then the newest concurrent write by HLC. */
  LATEST_TIMESTAMP: 'LATEST_TIMESTAMP',
  /** Last-writer-wins register (CRDT): the newest write by HLC, always. */
  LWW_REGISTER: 'LWW_REGISTER',
  /** Keep concurrent writes as siblings (dotted version vectors). */
  MULTI_VALUE: 'MULTI_VALUE',
  /** A registered function decides. */
  CUSTOM: 'CUSTOM',
} as const;
/** One of {@link ConflictResolutionStrategy}'s values. */
export type ConflictResolutionStrategy =
  (typeof ConflictResolutionStrategy)[keyof typeof ConflictResolutionStrategy];

const strategies = new Set<string>(Object.values(ConflictResolutionStrategy));

/** A key changed in two places: this region's state of it and the state another region sent. */
export interface ConflictInfo {
  readonly key: string;
  /** The state stored here. */
  readonly local: Version;
  /** The state received (each write names its origin region). */
  readonly remote: Version;
}

/**
 * How the two contexts relate: `remoteDescends` means the remote has seen everything the
 * local state has (a fast-forward), `localDescends` the reverse (a stale or repeated delivery).
 */
export type CausalRelation = 'equal' | 'remoteDescends' | 'localDescends' | 'concurrent';

const relationNames: readonly CausalRelation[] = [
  'equal',
  'remoteDescends',
  'localDescends',
  'concurrent',
];

/** The outcome of one conflict. */
export interface ResolvedConflict {
  readonly key: string;
  /** The strategy that was in force. */
  readonly strategy: ConflictResolutionStrategy;
  /** The state to store: one sibling when a winner was chosen, several when kept as siblings. */
  readonly version: Version;
  /** The single remaining write (its value, or null for a delete), or null if siblings remain. */
  readonly winner: Write | null;
  /** How the two sides' contexts related. */
  readonly relation: CausalRelation;
  /**
   * The decision came down to the tie-break: the winner and the runner-up had the same wall
   * time and logical counter (so the node id decided), or two writes claimed the same dot.
   */
  readonly tie: boolean;
  /**
   * Clocks look wrong: a remote write's wall time was more than `maxClockOffsetMs` ahead of the
   * local clock, or a write's timestamp contradicted causality (see {@link MergedVersions}).
   */
  readonly skewSuspect: boolean;
  /** CUSTOM failed or was not registered: the frontier was kept as siblings. */
  readonly unresolved: boolean;
  /** Siblings dropped by the `siblingsMax` bound (MULTI_VALUE), newest first. */
  readonly discarded: readonly Write[];
  /** Why the conflict is unresolved; '' otherwise. */
  readonly reason: string;
}

/**
 * What a {@link CustomConflictResolver} returns: one of the candidates (it wins), or
 * `{ value }`, a merged value (null: delete). A merged value equal to a candidate's selects
 * that candidate (the newest such); any other is written as a new write of this replica, which
 * supersedes every candidate — this needs the resolver's `replica` option.
 */
export type CustomResolution = Write | { readonly value: Uint8Array | null };

/**
 * Decides a conflict under CUSTOM. `candidates` is the concurrent frontier (at least two
 * writes, newest first). It must be synchronous, and should be deterministic and independent
 * of the candidates' order, so that every region reaches the same answer. Called only for real
 * conflicts: when one write supersedes the rest, it wins without a call.
 */
export type CustomConflictResolver = (
  conflict: ConflictInfo,
  candidates: readonly Write[],
) => CustomResolution;

/** Counters since construction. Each conflict counts once in exactly one `resolvedBy*` or in
 * `unresolvedConflicts`; `ties` and `skewSuspect` flag some of them; `resolvedByBound` counts
 * siblings (not conflicts) dropped by the bound. */
export interface ResolutionStats {
  readonly totalConflicts: number;
  readonly resolvedByTimestamp: number;
  readonly resolvedByLWW: number;
  readonly resolvedByMultiValue: number;
  readonly resolvedByCustom: number;
  readonly unresolvedConflicts: number;
  /** Conflicts decided by the tie-break (see {@link ResolvedConflict.tie}). */
  readonly ties: number;
  /** Conflicts flagged skew-suspect (see {@link ResolvedConflict.skewSuspect}). */
  readonly skewSuspect: number;
  /** Siblings discarded by the `siblingsMax` bound: values lost, counted, never silently. */
  readonly resolvedByBound: number;
}

/** The batch kernels `resolveConflicts` uses; src/kernel exports both (WASM above a size). */
export interface ClockKernels {
  compareHlcBatch(a: HlcColumns, b: HlcColumns, n: number, out: Int8Array): void;
  compareVersionVectorBatch(
    a: Float64Array,
    b: Float64Array,
    n: number,
    width: number,
    out: Int8Array,
  ): void;
}

/** src/kernel's clock kernels: the TypeScript twin for small batches, WASM from a measured size. */
export const dispatchKernels: ClockKernels = { compareHlcBatch, compareVersionVectorBatch };

/** The plain-TypeScript twins of the clock kernels (src/kernel/reference.ts). */
export const twinKernels: ClockKernels = {
  compareHlcBatch: compareHlcBatchTwin,
  compareVersionVectorBatch: compareVersionVectorBatchTwin,
};

/** Options of {@link ConflictResolver}. */
export interface ConflictResolverOptions extends Partial<ConflictLimits> {
  /**
   * This replica. Its clock observes every remote write (a receive event: later local writes
   * sort after what was merged), decides skew with its own `maxClockOffsetMs`, and stamps the
   * writes a CUSTOM resolver merges. Without it, skew is measured against `wallClockMs`.
   */
  readonly replica?: Replica;
  /** Physical time in ms, for the skew check when there is no `replica`. Default `Date.now`. */
  readonly wallClockMs?: () => number;
  /** The batch kernels (default: src/kernel's, which use WASM above a measured size). */
  readonly kernels?: ClockKernels;
  /**
   * `resolveConflicts` lays batches at least this large out in columns for the kernels;
   * smaller ones are resolved one by one. Default 256, src/kernel's WASM threshold. Measured
   * (bench/conflict.ts): laying conflict objects out in columns costs more than the kernels
   * save, so the batch path does not beat one-by-one resolution yet; below 256 it only adds
   * cost. It pays once callers hand over clocks and contexts already in columns.
   */
  readonly batchSizeMin?: number;
}

/** Default of {@link ConflictResolverOptions.batchSizeMin}. */
export const batchSizeMinDefault = 256;

/** Rows per kernel call: bounds the scratch columns. */
const chunkRows = 4096;

type MutableStats = { -readonly [K in keyof ResolutionStats]: ResolutionStats[K] };

function emptyStats(): MutableStats {
  return {
    totalConflicts: 0,
    resolvedByTimestamp: 0,
    resolvedByLWW: 0,
    resolvedByMultiValue: 0,
    resolvedByCustom: 0,
    unresolvedConflicts: 0,
    ties: 0,
    skewSuspect: 0,
    resolvedByBound: 0,
  };
}

function valuesEqual(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object without dot or value' : typeof value;
}

/** Resolves conflicting writes of a key between regions; see the module comment. */
export class ConflictResolver {
  #strategy: ConflictResolutionStrategy;
  #custom: CustomConflictResolver | null = null;
  #running = false;
  readonly #stats = emptyStats();
  readonly #limits: ConflictLimits;
  readonly #replica: Replica | null;
  readonly #wallClockMs: () => number;
  readonly #kernels: ClockKernels;
  readonly #batchSizeMin: number;
  readonly #columns = new ConflictColumns();

  constructor(
    strategy: ConflictResolutionStrategy = ConflictResolutionStrategy.LATEST_TIMESTAMP,
    options: ConflictResolverOptions = {},
  ) {
    checkStrategy(strategy);
    this.#strategy = strategy;
    const { replica, wallClockMs, kernels, batchSizeMin, ...limits } = options;
    if (replica !== undefined) {
      checkReplica(replica);
      if (limits.maxClockOffsetMs !== undefined || wallClockMs !== undefined) {
        throw new TypeError(
          'Invalid ConflictResolver options: with a replica, skew is judged by its clock; set maxClockOffsetMs and wallClockMs on its Hlc',
        );
      }
    }
    this.#replica = replica ?? null;
    this.#limits = resolveConflictLimits(limits);
    if (wallClockMs !== undefined && typeof wallClockMs !== 'function') {
      throw new TypeError('Invalid wallClockMs: expected a function returning milliseconds');
    }
    this.#wallClockMs = wallClockMs ?? Date.now;
    if (
      kernels !== undefined &&
      (typeof kernels.compareHlcBatch !== 'function' ||
        typeof kernels.compareVersionVectorBatch !== 'function')
    ) {
      throw new TypeError(
        'Invalid kernels: expected compareHlcBatch and compareVersionVectorBatch',
      );
    }
    this.#kernels = kernels ?? dispatchKernels;
    this.#batchSizeMin = batchSizeMin ?? batchSizeMinDefault;
    checkInteger('batchSizeMin', this.#batchSizeMin, 1);
  }

  /** Starts accepting conflicts. Idempotent; returns true (the seed's signature). */
  initialize(): boolean {
    this.#running = true;
    return true;
  }

  /** Stops accepting conflicts; stats stay readable. `initialize()` starts again. */
  shutdown(): void {
    this.#running = false;
  }

  /** Switches strategy for the conflicts resolved from now on. */
  setResolutionStrategy(strategy: ConflictResolutionStrategy): void {
    checkStrategy(strategy);
    this.#strategy = strategy;
  }

  /** The strategy in force. */
  getResolutionStrategy(): ConflictResolutionStrategy {
    return this.#strategy;
  }

  /** Sets the function CUSTOM uses (replacing any earlier one). */
  registerCustomResolver(resolver: CustomConflictResolver): void {
    if (typeof resolver !== 'function') {
      throw new TypeError('Cannot register custom resolver: expected a function');
    }
    this.#custom = resolver;
  }

  /** Resolves one conflict. Throws TypeError/RangeError on a malformed conflict, changing nothing. */
  resolveConflict(conflict: ConflictInfo): ResolvedConflict {
    this.#checkRunning();
    checkConflict(conflict, 0);
    const relation = compareVersionVectors(conflict.local.context, conflict.remote.context);
    const resolved = this.#resolve(conflict, relation, 0, this.#nowMs());
    this.#count(resolved);
    return resolved;
  }

  /**
   * Resolves many conflicts (a region catching up), in order. Every conflict is checked before
   * any is resolved, so a malformed one throws and changes nothing. Batches of `batchSizeMin`
   * or more compare their clocks and contexts through the batch kernels.
   */
  resolveConflicts(conflicts: readonly ConflictInfo[]): ResolvedConflict[] {
    this.#checkRunning();
    const list: unknown = conflicts;
    if (!Array.isArray(list)) {
      throw new TypeError('Cannot resolve conflicts: expected an array of ConflictInfo');
    }
    const n = conflicts.length;
    for (let i = 0; i < n; i++) checkConflict(conflicts[i], i);
    const nowMs = this.#nowMs();
    const results: ResolvedConflict[] = new Array<ResolvedConflict>(n);
    if (n < this.#batchSizeMin) {
      for (let i = 0; i < n; i++) {
        const conflict = conflicts[i]!;
        const relation = compareVersionVectors(conflict.local.context, conflict.remote.context);
        results[i] = this.#resolve(conflict, relation, 0, nowMs);
      }
    } else {
      const columns = this.#columns;
      for (let start = 0; start < n; start += chunkRows) {
        const rows = Math.min(chunkRows, n - start);
        const width = columns.fillContexts(conflicts, start, rows);
        const { relations } = columns;
        if (width >= 0) {
          this.#kernels.compareVersionVectorBatch(
            columns.localContexts,
            columns.remoteContexts,
            rows,
            width,
            relations,
          );
        } else {
          for (let k = 0; k < rows; k++) {
            const { local, remote } = conflicts[start + k]!;
            relations[k] = compareVersionVectors(local.context, remote.context);
          }
        }
        columns.fillClocks(conflicts, start, rows);
        this.#kernels.compareHlcBatch(columns.local, columns.remote, rows, columns.orders);
        const { orders } = columns;
        for (let k = 0; k < rows; k++) {
          const relation = relations[k]! as VersionOrder;
          results[start + k] = this.#resolve(conflicts[start + k]!, relation, orders[k]!, nowMs);
        }
      }
    }
    for (const resolved of results) this.#count(resolved);
    return results;
  }

  /** A snapshot of the counters. */
  getResolutionStats(): ResolutionStats {
    return { ...this.#stats };
  }

  #checkRunning(): void {
    if (!this.#running) {
      throw new ShutdownError(
        'Cannot resolve conflicts: the ConflictResolver is not running; call initialize() first',
      );
    }
  }

  #nowMs(): number {
    if (this.#replica !== null) return 0; // the replica's clock reads its own
    const ms = this.#wallClockMs();
    if (typeof ms !== 'number' || !Number.isFinite(ms)) {
      throw new RangeError(`Invalid wall clock reading: ${String(ms)} ms`);
    }
    return ms;
  }

  /** Whether the remote's newest write is too far ahead of the local clock. */
  #remoteAhead(remote: Version, nowMs: number): boolean {
    const siblings = remote.siblings;
    let newest = siblings[0]!;
    for (let i = 1; i < siblings.length; i++) {
      if (compareHlc(siblings[i]!.hlc, newest.hlc) > 0) newest = siblings[i]!;
    }
    if (this.#replica !== null) return this.#replica.clock.update(newest.hlc).skewSuspect;
    return newest.hlc.wallMs - nowMs > this.#limits.maxClockOffsetMs;
  }

  #resolve(
    conflict: ConflictInfo,
    relation: VersionOrder,
    hlcOrder: number,
    nowMs: number,
  ): ResolvedConflict {
    const strategy = this.#strategy;
    const merged = mergeVersions(conflict.local, conflict.remote, hlcOrder, relation);
    const skewSuspect = this.#remoteAhead(conflict.remote, nowMs) || merged.clockContradiction;
    const relationName = relationNames[relation]!;
    switch (strategy) {
      case ConflictResolutionStrategy.LWW_REGISTER:
      case ConflictResolutionStrategy.LATEST_TIMESTAMP: {
        // The register compares every write; LATEST_TIMESTAMP only those nobody superseded.
        const candidates =
          strategy === ConflictResolutionStrategy.LWW_REGISTER ? merged.writes : merged.frontier;
        const winner = candidates[0]!;
        return outcome(conflict, strategy, relationName, [winner], merged.context, {
          tie: isTie(candidates, merged),
          skewSuspect,
        });
      }
      case ConflictResolutionStrategy.MULTI_VALUE: {
        const { version, discarded } = boundSiblings(merged, this.#limits.siblingsMax);
        const kept = version.siblings;
        const cutTie =
          discarded.length > 0 && sameHlcInstant(kept[kept.length - 1]!.hlc, discarded[0]!.hlc);
        return outcome(conflict, strategy, relationName, kept, version.context, {
          tie: cutTie || merged.dotCollision,
          skewSuspect,
          discarded,
        });
      }
      case ConflictResolutionStrategy.CUSTOM:
        return this.#resolveCustom(conflict, merged, relationName, skewSuspect);
    }
  }

  #resolveCustom(
    conflict: ConflictInfo,
    merged: MergedVersions,
    relation: CausalRelation,
    skewSuspect: boolean,
  ): ResolvedConflict {
    const strategy = ConflictResolutionStrategy.CUSTOM;
    const candidates = merged.frontier;
    const resolved = (winner: Write, context: VersionVector) =>
      outcome(conflict, strategy, relation, [winner], context, {
        tie: merged.dotCollision,
        skewSuspect,
      });
    if (candidates.length === 1) return resolved(candidates[0]!, merged.context);
    const keep = (reason: string) =>
      outcome(conflict, strategy, relation, candidates, merged.context, {
        tie: merged.dotCollision,
        skewSuspect,
        reason,
      });
    const custom = this.#custom;
    if (custom === null) return keep('no custom resolver is registered');
    let returned: unknown;
    try {
      returned = custom(conflict, Object.freeze(candidates.slice()));
    } catch (error) {
      return keep(
        `the custom resolver threw: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    if (typeof returned !== 'object' || returned === null || Array.isArray(returned)) {
      return keep(`the custom resolver returned ${describe(returned)}`);
    }
    if (typeof (returned as { then?: unknown }).then === 'function') {
      return keep('the custom resolver returned a Promise; it must be synchronous');
    }
    if ('dot' in returned) {
      const chosen = candidates.find((c) => {
        try {
          return compareWrites(c, returned as Write) === 0;
        } catch {
          return false; // a malformed write matches nothing
        }
      });
      if (chosen === undefined) {
        return keep('the custom resolver returned a write that is not one of the candidates');
      }
      return resolved(chosen, merged.context);
    }
    if (!('value' in returned)) return keep(`the custom resolver returned ${describe(returned)}`);
    const value = returned.value;
    if (value !== null && !(value instanceof Uint8Array)) {
      return keep('the custom resolver returned a value that is neither a Uint8Array nor null');
    }
    // The same value as a candidate: select it rather than mint a write, so that two regions
    // that resolved the same conflict alike settle instead of producing new siblings forever.
    const same = candidates.find((c) => valuesEqual(c.value, value));
    if (same !== undefined) return resolved(same, merged.context);
    const replica = this.#replica;
    if (replica === null) {
      return keep(
        'the custom resolver returned a new value, but the ConflictResolver has no replica to write it as (options.replica)',
      );
    }
    const { clock } = replica;
    const newest = candidates[0]!;
    if (compareHlc(newest.hlc, clock.last) > 0) clock.update(newest.hlc);
    const counter = (merged.context.get(clock.node) ?? 0) + 1;
    const write: Write = {
      value,
      hlc: clock.now(),
      dot: { node: clock.node, counter },
      region: replica.region,
    };
    return resolved(write, withDot(merged.context, write.dot));
  }

  #count(resolved: ResolvedConflict): void {
    const stats = this.#stats;
    stats.totalConflicts++;
    if (resolved.unresolved) stats.unresolvedConflicts++;
    else {
      switch (resolved.strategy) {
        case ConflictResolutionStrategy.LATEST_TIMESTAMP:
          stats.resolvedByTimestamp++;
          break;
        case ConflictResolutionStrategy.LWW_REGISTER:
          stats.resolvedByLWW++;
          break;
        case ConflictResolutionStrategy.MULTI_VALUE:
          stats.resolvedByMultiValue++;
          break;
        case ConflictResolutionStrategy.CUSTOM:
          stats.resolvedByCustom++;
          break;
      }
    }
    if (resolved.tie) stats.ties++;
    if (resolved.skewSuspect) stats.skewSuspect++;
    stats.resolvedByBound += resolved.discarded.length;
  }
}

/** The winner (candidates[0]) and the runner-up share wall time and logical counter. */
function isTie(candidates: readonly Write[], merged: MergedVersions): boolean {
  const runnerUp = candidates[1];
  return (
    merged.dotCollision ||
    (runnerUp !== undefined && sameHlcInstant(candidates[0]!.hlc, runnerUp.hlc))
  );
}

const noWrites: readonly Write[] = Object.freeze([]);

/** Builds every ResolvedConflict, so that they all share one shape (one hidden class). */
function outcome(
  conflict: ConflictInfo,
  strategy: ConflictResolutionStrategy,
  relation: CausalRelation,
  siblings: readonly Write[],
  context: VersionVector,
  flags: {
    readonly tie: boolean;
    readonly skewSuspect: boolean;
    readonly discarded?: readonly Write[];
    readonly reason?: string;
  },
): ResolvedConflict {
  const reason = flags.reason ?? '';
  return {
    key: conflict.key,
    strategy,
    version: { siblings, context },
    winner: siblings.length === 1 ? siblings[0]! : null,
    relation,
    tie: flags.tie,
    skewSuspect: flags.skewSuspect,
    unresolved: reason !== '',
    discarded: flags.discarded ?? noWrites,
    reason,
  };
}

function checkStrategy(strategy: unknown): asserts strategy is ConflictResolutionStrategy {
  if (typeof strategy !== 'string' || !strategies.has(strategy)) {
    throw new TypeError(
      `Invalid conflict resolution strategy: ${String(strategy)} (expected one of ${[...strategies].join(', ')})`,
    );
  }
}

function checkConflict(conflict: unknown, index: number): asserts conflict is ConflictInfo {
  if (typeof conflict !== 'object' || conflict === null) {
    throw new TypeError(`Invalid conflict ${index}: expected { key, local, remote }`);
  }
  const { key, local, remote } = conflict as Record<string, unknown>;
  if (typeof key === 'string' && isVersion(local) && isVersion(remote)) return;
  if (typeof key !== 'string')
    throw new TypeError(`Invalid conflict ${index}: key must be a string`);
  checkVersion(local, `local version of key ${JSON.stringify(key)}`);
  checkVersion(remote, `remote version of key ${JSON.stringify(key)}`);
}
