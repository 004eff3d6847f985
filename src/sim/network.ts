/**
 * The simulated network between nodes: which directed links are cut (symmetric, asymmetric
 * and partial partitions are all sets of cut links), and how long, how reliably and how many
 * times a message travels. Reordering needs no special case: every message draws its own
 * latency, so a later message often overtakes an earlier one.
 */
import type { NodeId } from '../raft/types.js';
import type { Xoshiro128 } from './prng.js';

/** The network's behaviour; faults change it during a run. */
export interface NetworkConditions {
  /** Probability that a message is lost. */
  lossRate: number;
  /** Probability that a delivered message is delivered twice. */
  duplicateRate: number;
  /** Usual one-way latency range, ms. */
  latencyMsMin: number;
  latencyMsMax: number;
  /** Probability of a slow delivery (congestion, retransmission), and its range. */
  slowRate: number;
  slowMsMax: number;
}

/** Calm conditions: what the network returns to when faults heal. */
export function calmConditions(): NetworkConditions {
  return {
    lossRate: 0,
    duplicateRate: 0,
    latencyMsMin: 0.5,
    latencyMsMax: 3,
    slowRate: 0,
    slowMsMax: 0,
  };
}

/** Link state and latency model. */
export class Network {
  /** Cut directed links, as "from>to". */
  private readonly cut = new Set<string>();
  conditions: NetworkConditions = calmConditions();

  constructor(private readonly random: Xoshiro128) {}

  /** Whether messages from `from` to `to` are currently dropped by a partition. */
  isCut(from: NodeId, to: NodeId): boolean {
    return this.cut.size > 0 && this.cut.has(`${from}>${to}`);
  }

  /** Cuts one direction. */
  cutOneWay(from: NodeId, to: NodeId): void {
    this.cut.add(`${from}>${to}`);
  }

  /** Cuts both directions between every node of `a` and every node of `b`. */
  cutBetween(a: readonly NodeId[], b: readonly NodeId[]): void {
    for (const x of a) {
      for (const y of b) {
        if (x === y) continue;
        this.cut.add(`${x}>${y}`);
        this.cut.add(`${y}>${x}`);
      }
    }
  }

  /** Restores every link. */
  heal(): void {
    this.cut.clear();
  }

  /** Links currently cut, for the trace. */
  describeCuts(): string {
    return this.cut.size === 0 ? 'none' : [...this.cut].sort().join(' ');
  }

  /** Whether a message is lost (draws from the run's random stream). */
  drawLoss(): boolean {
    return this.conditions.lossRate > 0 && this.random.chance(this.conditions.lossRate);
  }

  /** Whether a message is duplicated. */
  drawDuplicate(): boolean {
    return this.conditions.duplicateRate > 0 && this.random.chance(this.conditions.duplicateRate);
  }

  /** A one-way latency in ms. */
  drawLatency(): number {
    const { latencyMsMin, latencyMsMax, slowRate, slowMsMax } = this.conditions;
    if (slowRate > 0 && this.random.chance(slowRate)) {
      return latencyMsMax + this.random.float() * slowMsMax;
    }
    return latencyMsMin + this.random.float() * (latencyMsMax - latencyMsMin);
  }
}
