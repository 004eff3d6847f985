/**
 * A key-value state captured for a snapshot and encoded later, while entries go on being
 * applied: the split hashicorp/raft makes between `FSM.Snapshot` (fast, in the apply loop) and
 * `FSMSnapshot.Persist` (slow, beside it).
 *
 * Encoding 10,000 keys at once stopped a member's Ready loop for 24–73 ms in the cluster
 * benchmark (bench/README.md, row 21), longer than any other pause. A capture takes only the
 * list of keys; {@link KvSnapshotCapture.encode} then writes a slice of keys per turn of the
 * event loop. Records change in place, so the state machine hands each record to the capture
 * just before it changes it, and the capture keeps what that key held when it was taken.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { KeyRecord } from './key-record.js';
import {
  VersionedSnapshotWriter,
  type KeySnapshot,
  type VersionedSnapshotSource,
} from './versioned-codec.js';

/**
 * Keys sorted or written per turn of the event loop, and keys moved per turn while sorted runs
 * are merged. See bench/README.md, row 21, for the turns' lengths.
 */
const keysPerTurn = 512;
const mergesPerTurn = 8_192;

/**
 * `keys` sorted ascending (as `sort()` would), over several turns; rejects with an AbortError
 * at its next turn once `signal` aborts. `keys` itself is reordered and may be the array
 * returned. Runs of {@link keysPerTurn} keys sorted one per turn, then merged in pairs. Sorted
 * at once, 20,000 keys written in a random order took 5.5–7.7 ms, the longest turn of the
 * encoding (`npx tsx bench/kv.ts`).
 *
 * @internal exported for tests
 */
export async function sortInTurns(keys: string[], signal?: AbortSignal): Promise<string[]> {
  const count = keys.length;
  for (let start = 0; start < count; start += keysPerTurn) {
    if (start > 0) await nextTurn(undefined, { signal });
    const run = keys.slice(start, start + keysPerTurn).sort();
    for (let k = 0; k < run.length; k++) keys[start + k] = run[k]!;
  }
  let from = keys;
  let to = new Array<string>(count);
  let moved = 0;
  for (let width = keysPerTurn; width < count; width *= 2) {
    for (let low = 0; low < count; low += 2 * width) {
      const middle = Math.min(low + width, count);
      const high = Math.min(low + 2 * width, count);
      let left = low;
      let right = middle;
      for (let out = low; out < high; out++) {
        to[out] =
          right >= high || (left < middle && from[left]! <= from[right]!)
            ? from[left++]!
            : from[right++]!;
        if (++moved % mergesPerTurn === 0) await nextTurn(undefined, { signal });
      }
    }
    [from, to] = [to, from];
  }
  return from;
}

/** What a snapshot holds besides its keys. */
export type SnapshotHeader = Omit<VersionedSnapshotSource, 'keys' | 'keyCount'>;

/** See the module comment; made by {@link KvStateMachine.captureSnapshot}. */
export class KvSnapshotCapture {
  /** What a key held when captured, for each key changed since. */
  private readonly kept = new Map<string, KeySnapshot>();
  private state: 'captured' | 'encoding' | 'done' = 'captured';

  /** @internal */
  constructor(
    private readonly header: SnapshotHeader,
    /** The state machine's map when captured; a restore replaces the map instead of clearing it. */
    private readonly records: ReadonlyMap<string, KeyRecord>,
    private readonly keys: string[],
    private readonly detach: (capture: KvSnapshotCapture) => void,
  ) {}

  /** Called by the state machine just before it changes `record` in place. */
  keep(record: KeyRecord): void {
    if (!this.kept.has(record.key)) this.kept.set(record.key, record.toSnapshot());
  }

  /**
   * The captured state in the v2 snapshot encoding, the same bytes `snapshot()` gave when
   * captured. Call it once (or {@link release} instead). Once `signal` aborts, it rejects with
   * an AbortError at its next turn (a capture of 512 keys or fewer takes none, and resolves);
   * either way it lets go as {@link release} would.
   */
  async encode(signal?: AbortSignal): Promise<Uint8Array> {
    if (this.state !== 'captured') {
      throw new Error(
        this.state === 'encoding'
          ? 'Cannot encode a snapshot capture twice'
          : 'Cannot encode a snapshot capture that was encoded or released',
      );
    }
    this.state = 'encoding';
    try {
      const keys = await sortInTurns(this.keys, signal);
      const writer = new VersionedSnapshotWriter({ ...this.header, keyCount: keys.length });
      for (let k = 0; k < keys.length; k++) {
        if (k > 0 && k % keysPerTurn === 0) await nextTurn(undefined, { signal });
        const key = keys[k]!;
        writer.key(this.kept.get(key) ?? this.records.get(key)!.toSnapshot());
      }
      return writer.finish();
    } finally {
      this.finish();
    }
  }

  /**
   * Gives the capture up without encoding it: the state machine stops keeping keys for it.
   * Does nothing while {@link encode} runs (it lets go when it ends) or once done.
   */
  release(): void {
    if (this.state === 'captured') this.finish();
  }

  private finish(): void {
    this.state = 'done';
    this.detach(this);
    this.kept.clear();
  }
}
