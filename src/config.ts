/**
 * Limits and defaults, in one place. Each section is a plain object of defaults plus a
 * validator that throws RangeError naming the bad field; components validate at construction.
 * Names carry their unit last (`electionTicks`, `segmentBytesMax`).
 */

/** Checks that `value` is an integer in [min, max]; throws RangeError naming `field` otherwise. */
export function checkInteger(
  field: string,
  value: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new RangeError(
      `Invalid ${field}: ${String(value)} (expected an integer in ${min}..${max})`,
    );
  }
}

/** Tunables of the Raft core. Time is counted in ticks; the driver decides a tick's length. */
export interface RaftLimits {
  /** Ticks without hearing from a leader before a follower campaigns (randomized in [n, 2n)). */
  readonly electionTicks: number;
  /** Ticks between leader heartbeats; must be well below electionTicks. */
  readonly heartbeatTicks: number;
  /** Probe a peer with Pre-Vote before a real election, so a partitioned node cannot disrupt. */
  readonly preVote: boolean;
  /** A leader that hears from no quorum within an election timeout steps down. */
  readonly checkQuorum: boolean;
  /** AppendEntries messages in flight to one follower in the replicate state. */
  readonly inflightMessagesMax: number;
  /** Payload bytes in flight to one follower. */
  readonly inflightBytesMax: number;
  /** Payload bytes in one AppendEntries message (at least one entry is always sent). */
  readonly messageBytesMax: number;
  /** Payload bytes of proposals appended but not yet committed; past it proposals are refused. */
  readonly uncommittedBytesMax: number;
  /** Payload bytes of committed entries handed out in one Ready. */
  readonly committedBytesPerReadyMax: number;
}

/** Defaults of {@link RaftLimits}; with a 100 ms tick the election timeout is 1-2 s. */
export const raftDefaults: RaftLimits = {
  electionTicks: 10,
  heartbeatTicks: 1,
  preVote: true,
  checkQuorum: true,
  inflightMessagesMax: 256,
  inflightBytesMax: 32 * 1024 * 1024,
  messageBytesMax: 1024 * 1024,
  uncommittedBytesMax: 64 * 1024 * 1024,
  committedBytesPerReadyMax: 4 * 1024 * 1024,
};

/** Fills in defaults and validates; throws RangeError on the first bad field. */
export function resolveRaftLimits(overrides: Partial<RaftLimits> = {}): RaftLimits {
  const limits = { ...raftDefaults, ...overrides };
  checkInteger('heartbeatTicks', limits.heartbeatTicks, 1);
  checkInteger('electionTicks', limits.electionTicks, limits.heartbeatTicks + 1);
  checkInteger('inflightMessagesMax', limits.inflightMessagesMax, 1);
  checkInteger('inflightBytesMax', limits.inflightBytesMax, 1);
  checkInteger('messageBytesMax', limits.messageBytesMax, 1);
  checkInteger('uncommittedBytesMax', limits.uncommittedBytesMax, 1);
  checkInteger('committedBytesPerReadyMax', limits.committedBytesPerReadyMax, 1);
  return limits;
}
