/**
 * What a leader knows about each follower's log, and the flow control that keeps it from
 * flooding a slow or unreachable follower. The states follow etcd-raft's design:
 *
 * - `probe`: the leader does not know where the follower's log diverges. It sends one append at
 *   a time and waits for the answer (or a heartbeat response) before sending the next, walking
 *   `next` back with the follower's hint until an append matches.
 * - `replicate`: the logs are known to match up to `match`. The leader streams appends
 *   optimistically (`next` runs ahead of `match`), bounded by the in-flight window.
 * - `snapshot`: the follower needs entries the leader has compacted away. The leader sends its
 *   snapshot and sends nothing else until the transfer is reported or acknowledged.
 */
import { assert } from '../assert.js';
import type { NodeId } from './types.js';

/** The replication state of one follower, as the leader sees it. */
export type ProgressState = 'probe' | 'replicate' | 'snapshot';

/**
 * A ring of the appends in flight to one follower: the last index of each message and its
 * payload bytes. Acknowledgements free every message up to the acknowledged index, so a single
 * response can free many pipelined messages at once.
 */
export class Inflights {
  private readonly lastIndexes: Float64Array;
  private readonly byteSizes: Float64Array;
  private start = 0;
  private length = 0;
  private bytes = 0;

  constructor(
    private readonly messagesMax: number,
    private readonly bytesMax: number,
  ) {
    assert(messagesMax >= 1 && bytesMax >= 1, 'inflight limits must be positive');
    this.lastIndexes = new Float64Array(messagesMax);
    this.byteSizes = new Float64Array(messagesMax);
  }

  /** Messages in flight. */
  get count(): number {
    return this.length;
  }

  /** Payload bytes in flight. */
  get byteCount(): number {
    return this.bytes;
  }

  /**
   * Whether another message may not be sent. The byte bound is checked after the fact (a
   * message may overshoot it) so that an entry bigger than the whole window still goes out.
   */
  full(): boolean {
    return this.length === this.messagesMax || this.bytes >= this.bytesMax;
  }

  /** Records a message whose last entry is `lastIndex`; indexes must increase. */
  add(lastIndex: number, bytes: number): void {
    assert(!this.full(), 'cannot add to a full inflight window');
    if (this.length > 0) {
      const previous = this.lastIndexes[(this.start + this.length - 1) % this.messagesMax]!;
      assert(lastIndex > previous, () => `inflight index ${lastIndex} after ${previous}`);
    }
    const slot = (this.start + this.length) % this.messagesMax;
    this.lastIndexes[slot] = lastIndex;
    this.byteSizes[slot] = bytes;
    this.length++;
    this.bytes += bytes;
  }

  /** Frees every message whose last entry is <= `index` (they were all received). */
  freeLE(index: number): void {
    while (this.length > 0 && this.lastIndexes[this.start]! <= index) {
      this.bytes -= this.byteSizes[this.start]!;
      this.start = (this.start + 1) % this.messagesMax;
      this.length--;
    }
    if (this.length === 0) {
      this.start = 0;
      this.bytes = 0;
    }
  }

  /** Forgets everything in flight (the follower went back to probing). */
  reset(): void {
    this.start = 0;
    this.length = 0;
    this.bytes = 0;
  }
}

/** The leader's view of one member's log. */
export class Progress {
  /** Highest index known to match the leader's log. */
  match = 0;
  /** Next index to send. Invariant: match < next. */
  next: number;
  state: ProgressState = 'probe';
  /** In `probe`: an append is outstanding, wait for its answer before sending another. */
  probeSent = false;
  /** In `snapshot`: the index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** Heard from since the last CheckQuorum round (the leader always counts itself). */
  recentActive = false;
  readonly inflights: Inflights;

  constructor(
    readonly id: NodeId,
    next: number,
    messagesMax: number,
    bytesMax: number,
    public isLearner: boolean,
  ) {
    this.next = next;
    this.inflights = new Inflights(messagesMax, bytesMax);
  }

  /** Whether the leader must hold back appends to this member for now. */
  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.inflights.full();
      case 'snapshot':
        return true;
    }
  }

  /** Back to probing from `match + 1`: the leader lost track of where the logs agree. */
  becomeProbe(): void {
    // Coming back from a snapshot, the follower holds at least the snapshot, so probing can
    // start right after it rather than at the (older) match.
    if (this.state === 'snapshot') {
      this.next = Math.max(this.match + 1, this.pendingSnapshot + 1);
    } else {
      this.next = this.match + 1;
    }
    this.state = 'probe';
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.inflights.reset();
  }

  /** Logs match up to `match`: stream from there. */
  becomeReplicate(): void {
    this.state = 'replicate';
    this.next = this.match + 1;
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.inflights.reset();
  }

  /** The follower needs the snapshot at `index`; nothing else is sent until it is settled. */
  becomeSnapshot(index: number): void {
    this.state = 'snapshot';
    this.pendingSnapshot = index;
    this.probeSent = false;
    this.inflights.reset();
  }

  /**
   * Records a successful append up to `index`. Returns false when the answer is stale (it
   * tells nothing new), so the caller can skip the work a real update triggers.
   */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (index > this.match) {
      this.match = index;
      this.probeSent = false;
      updated = true;
    }
    this.next = Math.max(this.next, index + 1);
    return updated;
  }

  /**
   * A rejection of the append whose prevLogIndex was `rejected`; `next` is where the leader,
   * using the follower's hint, thinks the logs may agree. Returns false for a stale rejection
   * (an answer to an append sent before the leader already moved on).
   */
  maybeDecrease(rejected: number, next: number): boolean {
    if (this.state === 'replicate') {
      // In replicate, appends are pipelined: a rejection of something at or below match is
      // an old message arriving late. Otherwise the optimistic stream broke: probe from match.
      if (rejected <= this.match) return false;
      this.becomeProbe();
      return true;
    }
    // In probe, only the answer to the outstanding probe (prevLogIndex = next - 1) counts.
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, next), this.match + 1);
    this.probeSent = false;
    return true;
  }

  /** Records that an append ending at `lastIndex` carrying `bytes` was sent. */
  onAppendSent(entryCount: number, lastIndex: number, bytes: number): void {
    switch (this.state) {
      case 'replicate':
        if (entryCount > 0) {
          this.next = lastIndex + 1;
          this.inflights.add(lastIndex, bytes);
        }
        break;
      case 'probe':
        this.probeSent = true;
        break;
      case 'snapshot':
        assert(false, () => `append sent to ${this.id} while it is receiving a snapshot`);
    }
  }
}
