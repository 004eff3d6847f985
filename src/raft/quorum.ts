/**
 * Majority decisions over a configuration: elections, CheckQuorum, ReadIndex confirmation and
 * the commit index. In a joint configuration every decision needs both halves; a half with no
 * voters (the outgoing half outside joint consensus) never stands in the way.
 */
import { quorumIndex } from '../kernel/reference.js';
import type { ConfState, NodeId } from './types.js';

/** Outcome of counting answers: decided either way, or still waiting for some. */
export type VoteResult = 'won' | 'lost' | 'pending';

/**
 * Counts yes/no answers among `voters`; `answer` returns undefined for a voter not heard
 * from. An empty voter set wins, so that it does not constrain the other half of a joint
 * configuration.
 */
export function majorityResult(
  voters: readonly NodeId[],
  answer: (id: NodeId) => boolean | undefined,
): VoteResult {
  if (voters.length === 0) return 'won';
  const needed = Math.floor(voters.length / 2) + 1;
  let yes = 0;
  let missing = 0;
  for (const id of voters) {
    const vote = answer(id);
    if (vote === true) yes++;
    else if (vote === undefined) missing++;
  }
  if (yes >= needed) return 'won';
  if (yes + missing >= needed) return 'pending';
  return 'lost';
}

/** {@link majorityResult} over both halves of a (possibly joint) configuration. */
export function jointResult(
  conf: ConfState,
  answer: (id: NodeId) => boolean | undefined,
): VoteResult {
  const incoming = majorityResult(conf.voters, answer);
  const outgoing = majorityResult(conf.votersOutgoing, answer);
  if (incoming === 'lost' || outgoing === 'lost') return 'lost';
  if (incoming === 'won' && outgoing === 'won') return 'won';
  return 'pending';
}

/**
 * The highest index a quorum holds, computed with the kernel's `quorumIndex` over scratch
 * arrays sized once per configuration (no allocation per call on the commit path).
 */
export class CommitQuorum {
  private readonly incoming: Float64Array;
  private readonly outgoing: Float64Array;

  constructor(private readonly conf: ConfState) {
    this.incoming = new Float64Array(conf.voters.length);
    this.outgoing = new Float64Array(conf.votersOutgoing.length);
  }

  /** Highest index held by a majority of each half, given each voter's match. */
  committedIndex(matchOf: (id: NodeId) => number): number {
    const { voters, votersOutgoing } = this.conf;
    for (let k = 0; k < voters.length; k++) this.incoming[k] = matchOf(voters[k]!);
    for (let k = 0; k < votersOutgoing.length; k++) this.outgoing[k] = matchOf(votersOutgoing[k]!);
    return Math.min(
      quorumIndex(this.incoming, voters.length),
      quorumIndex(this.outgoing, votersOutgoing.length),
    );
  }
}
