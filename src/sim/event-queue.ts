/**
 * The simulator's agenda: events ordered by virtual time, ties broken by insertion order so
 * that a run is a pure function of its seed (a binary heap alone is not stable).
 */
import { assert } from '../assert.js';

/** A min-heap of `T` keyed by (time, insertion sequence). */
export class EventQueue<T> {
  private times: number[] = [];
  private sequences: number[] = [];
  private items: T[] = [];
  private sequence = 0;

  /** Events waiting. */
  get size(): number {
    return this.items.length;
  }

  /** Time of the earliest event, or Infinity when empty. */
  peekTime(): number {
    return this.items.length === 0 ? Infinity : this.times[0]!;
  }

  /** Schedules `item` at virtual time `time`. */
  push(time: number, item: T): void {
    assert(Number.isFinite(time), () => `event scheduled at time ${time}`);
    let at = this.items.length;
    this.times.push(time);
    this.sequences.push(this.sequence++);
    this.items.push(item);
    while (at > 0) {
      const parent = (at - 1) >> 1;
      if (!this.before(at, parent)) break;
      this.swap(at, parent);
      at = parent;
    }
  }

  /** Removes and returns the earliest event with its time, or undefined when empty. */
  pop(): { time: number; item: T } | undefined {
    const count = this.items.length;
    if (count === 0) return undefined;
    const time = this.times[0]!;
    const item = this.items[0]!;
    this.swap(0, count - 1);
    this.times.pop();
    this.sequences.pop();
    this.items.pop();
    const size = count - 1;
    let at = 0;
    for (;;) {
      const left = 2 * at + 1;
      const right = left + 1;
      let smallest = at;
      if (left < size && this.before(left, smallest)) smallest = left;
      if (right < size && this.before(right, smallest)) smallest = right;
      if (smallest === at) break;
      this.swap(at, smallest);
      at = smallest;
    }
    return { time, item };
  }

  private before(a: number, b: number): boolean {
    const ta = this.times[a]!;
    const tb = this.times[b]!;
    return ta < tb || (ta === tb && this.sequences[a]! < this.sequences[b]!);
  }

  private swap(a: number, b: number): void {
    if (a === b) return;
    [this.times[a], this.times[b]] = [this.times[b]!, this.times[a]!];
    [this.sequences[a], this.sequences[b]] = [this.sequences[b]!, this.sequences[a]!];
    [this.items[a], this.items[b]] = [this.items[b]!, this.items[a]!];
  }
}
