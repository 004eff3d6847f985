/**
 * ConflictColumns: a batch of conflicts laid out for the clock kernels of src/kernel —
 * `compareHlcBatch` over (wall, logical, node) columns and `compareVersionVectorBatch` over
 * row-major counter matrices. The arrays are scratch space owned by one resolver and reused
 * from batch to batch, so a batch allocates nothing here once the sizes have settled.
 *
 * Node ids are strings; the HLC kernel takes u32. {@link NodeRanks} numbers the ids it has met
 * in their {@link compareNodeIds} order, so comparing ranks gives the same answer as comparing
 * ids: the documented tie-break survives the trip through the kernel.
 */
import type { HlcColumns } from '../kernel/reference.js';
import type { VersionVector } from './dvv.js';
import type { ConflictInfo } from './conflict-resolver.js';
import { compareNodeIds } from './hlc.js';

/** Distinct ids remembered before the tables start over (a bound against hostile input). */
const idsRemembered = 4096;
/** Cells of one version-vector matrix (8 MiB); a wider batch is compared without the kernel. */
export const vectorCellsMax = 1 << 20;
/** Widest version vector the kernel takes. */
export const vectorWidthMax = 65_536;

/**
 * Order-preserving u32 numbers for node ids: `rankOf(a) < rankOf(b)` exactly when
 * `compareNodeIds(a, b) < 0`. Meeting a new id renumbers the ones after it and bumps
 * `generation`, so a caller that filled columns while the generation moved fills them again.
 */
export class NodeRanks {
  readonly #ranks = new Map<string, number>();
  readonly #sorted: string[] = [];
  /** Changes whenever ranks change. */
  generation = 0;

  /** The rank of `id`, registering it if new. */
  rankOf(id: string): number {
    const rank = this.#ranks.get(id);
    return rank === undefined ? this.#insert(id) : rank;
  }

  /** Ids known. */
  get size(): number {
    return this.#sorted.length;
  }

  /** Forgets every id (ranks start over). */
  clear(): void {
    this.#ranks.clear();
    this.#sorted.length = 0;
    this.generation++;
  }

  #insert(id: string): number {
    const sorted = this.#sorted;
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareNodeIds(sorted[mid]!, id) < 0) lo = mid + 1;
      else hi = mid;
    }
    sorted.splice(lo, 0, id);
    for (let r = lo; r < sorted.length; r++) this.#ranks.set(sorted[r]!, r);
    this.generation++;
    return lo;
  }
}

function hlcColumns(capacity: number): HlcColumns {
  return {
    wall: new Float64Array(capacity),
    logical: new Uint32Array(capacity),
    node: new Uint32Array(capacity),
  };
}

/** Scratch columns for one batch of conflicts at a time (see the module comment). */
export class ConflictColumns {
  /** Local stamps of single-sibling conflicts (zeros elsewhere). */
  local: HlcColumns = hlcColumns(0);
  /** Remote stamps, likewise. */
  remote: HlcColumns = hlcColumns(0);
  /** compareHlcBatch output: -1 / 0 / 1 per row. */
  orders = new Int8Array(0);
  /** Local contexts, row-major, one column per replica id. */
  localContexts = new Float64Array(0);
  /** Remote contexts, likewise. */
  remoteContexts = new Float64Array(0);
  /** compareVersionVectorBatch output: a VersionOrder per row. */
  relations = new Int8Array(0);
  readonly #ranks = new NodeRanks();
  readonly #replicaColumns = new Map<string, number>();

  /**
   * Fills `local`, `remote` for rows `start .. start + rows - 1` of `conflicts`. Rows where a
   * side has several siblings get zeros on both sides (the kernel then reports 0: no hint).
   */
  fillClocks(conflicts: readonly ConflictInfo[], start: number, rows: number): void {
    if (this.orders.length < rows) {
      const capacity = Math.max(rows, this.orders.length * 2);
      this.local = hlcColumns(capacity);
      this.remote = hlcColumns(capacity);
      this.orders = new Int8Array(capacity);
    }
    const ranks = this.#ranks;
    if (ranks.size > idsRemembered) ranks.clear();
    const { local, remote } = this;
    for (;;) {
      const generation = ranks.generation;
      for (let k = 0; k < rows; k++) {
        const { local: l, remote: r } = conflicts[start + k]!;
        if (l.siblings.length === 1 && r.siblings.length === 1) {
          const a = l.siblings[0]!.hlc;
          const b = r.siblings[0]!.hlc;
          local.wall[k] = a.wallMs;
          local.logical[k] = a.logical;
          local.node[k] = ranks.rankOf(a.node);
          remote.wall[k] = b.wallMs;
          remote.logical[k] = b.logical;
          remote.node[k] = ranks.rankOf(b.node);
        } else {
          local.wall[k] = remote.wall[k] = 0;
          local.logical[k] = remote.logical[k] = 0;
          local.node[k] = remote.node[k] = 0;
        }
      }
      // A new id renumbered the ranks written before it: write them again (at most once more
      // per batch, since every id of the batch is known by then). Stale ranks could only turn
      // an order into 0, which callers treat as "no hint", but exact columns are easier to trust.
      if (generation === ranks.generation) return;
    }
  }

  /**
   * Fills `localContexts`, `remoteContexts` for rows `start .. start + rows - 1` and returns the
   * width (replica ids known), or -1 when the matrices would exceed {@link vectorCellsMax} or
   * the kernel's width limit; the caller then compares those rows without the kernel.
   */
  fillContexts(conflicts: readonly ConflictInfo[], start: number, rows: number): number {
    const columns = this.#replicaColumns;
    if (columns.size > idsRemembered) columns.clear();
    if (this.relations.length < rows) {
      this.relations = new Int8Array(Math.max(rows, this.relations.length * 2));
    }
    for (;;) {
      const width = columns.size;
      const cells = rows * width;
      if (width > vectorWidthMax || cells > vectorCellsMax) return -1;
      if (this.localContexts.length < cells) {
        const capacity = Math.min(vectorCellsMax, Math.max(cells, this.localContexts.length * 2));
        this.localContexts = new Float64Array(capacity);
        this.remoteContexts = new Float64Array(capacity);
      } else {
        this.localContexts.fill(0, 0, cells);
        this.remoteContexts.fill(0, 0, cells);
      }
      let complete = true;
      for (let k = 0; k < rows; k++) {
        const conflict = conflicts[start + k]!;
        const row = k * width;
        complete = fillRow(conflict.local.context, columns, this.localContexts, row, complete);
        complete = fillRow(conflict.remote.context, columns, this.remoteContexts, row, complete);
      }
      if (complete) return width;
    }
  }
}

/**
 * Writes one context into its row; registers unknown ids instead (returning false: the width
 * changed, and the caller starts again with the new width).
 */
function fillRow(
  context: VersionVector,
  columns: Map<string, number>,
  matrix: Float64Array,
  row: number,
  complete: boolean,
): boolean {
  for (const [node, counter] of context) {
    const column = columns.get(node);
    if (column === undefined) {
      columns.set(node, columns.size);
      complete = false;
    } else if (complete) {
      matrix[row + column] = counter;
    }
  }
  return complete;
}
