// Randomized schedules (fast-check) of ticks, proposals, lost/reordered messages, partitions,
// crashes with restarts, snapshots and membership churn on five real RaftCores; Raft's safety
// properties are checked after every step, and the cluster must converge once healed.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KernelKind } from '../../src/kernel/index.js';
import { PhantomError } from '../../src/errors.js';
import type { ConfChange } from '../../src/raft/types.js';
import { Network, bytes, mulberry32, type TestNode } from './harness.js';
import { useTestKernel } from './test-log.js';

const ids = ['a', 'b', 'c', 'd', 'e'];
/** Schedules per kernel run; raise it (PHANTOMDB_PROPERTY_RUNS) for a longer soak. */
const runs = Number(process.env['PHANTOMDB_PROPERTY_RUNS'] ?? 300);

type Action =
  | { kind: 'tick'; node: number; times: number }
  | { kind: 'propose'; value: number; count: number }
  | { kind: 'deliver'; seed: number; rounds: number; dropPercent: number; keepPercent: number }
  | { kind: 'crash'; node: number }
  | { kind: 'restart'; node: number }
  | { kind: 'partition'; mask: number }
  | { kind: 'heal' }
  | { kind: 'snapshot'; node: number }
  | { kind: 'read'; context: number }
  | { kind: 'transfer'; node: number }
  | { kind: 'conf'; node: number; type: 'addVoter' | 'addLearner' | 'removeNode' };

const actionArb: fc.Arbitrary<Action> = fc.oneof(
  {
    // node 5 means every live node.
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('tick' as const),
      node: fc.oneof({ weight: 3, arbitrary: fc.constant(5) }, { weight: 2, arbitrary: fc.nat(4) }),
      times: fc.integer({ min: 1, max: 8 }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('propose' as const),
      value: fc.nat(999),
      count: fc.integer({ min: 1, max: 4 }),
    }),
  },
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constant('deliver' as const),
      seed: fc.nat(),
      rounds: fc.integer({ min: 1, max: 8 }),
      dropPercent: fc.integer({ min: 0, max: 30 }),
      keepPercent: fc.integer({ min: 0, max: 30 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('crash' as const), node: fc.nat(4) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('restart' as const), node: fc.nat(4) }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('partition' as const), mask: fc.nat(31) }),
  },
  { weight: 2, arbitrary: fc.constant({ kind: 'heal' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('snapshot' as const), node: fc.nat(4) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('read' as const), context: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('transfer' as const), node: fc.nat(4) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('conf' as const),
      node: fc.nat(4),
      type: fc.constantFrom('addVoter' as const, 'addLearner' as const, 'removeNode' as const),
    }),
  },
);

/** Safety properties, checked after every action. */
class Checker {
  private readonly leaderByTerm = new Map<number, string>();
  /** index -> "term:data" applied by some node: every node must apply the same. */
  private readonly appliedAt = new Map<number, string>();

  /** index -> highest term any node had when the entry was first seen applied. */
  private readonly termSeenAt = new Map<number, number>();

  check(net: Network): void {
    const live = [...net.nodes.values()].filter((node) => node.alive);
    const termNow = Math.max(...[...net.nodes.values()].map((node) => node.core.status().term));
    for (const node of live) {
      const status = node.core.status();
      // Election safety: at most one leader per term, ever.
      if (status.role === 'leader') {
        const known = this.leaderByTerm.get(status.term);
        if (known !== undefined && known !== node.id) {
          throw new Error(`two leaders in term ${status.term}: ${known} and ${node.id}`);
        }
        this.leaderByTerm.set(status.term, node.id);
        // Leader completeness: a leader of a later term than the one in which an entry was
        // committed holds it (those it compacted are covered by its snapshot). The commit
        // term is at most the highest term around when the entry was first seen applied.
        for (const [index, value] of this.appliedAt) {
          if (status.term <= (this.termSeenAt.get(index) ?? Infinity)) continue;
          if (index > status.lastIndex) throw new Error(`leader ${node.id} lacks applied ${index}`);
          if (index < status.firstIndex) continue;
          const term = node.log.termAt(index);
          if (`${term}` !== value.split(':')[0]) {
            throw new Error(
              `leader ${node.id} has term ${term} at applied index ${index} (${value})`,
            );
          }
        }
      }
      // State machine safety: same entry applied at the same index everywhere.
      for (const entry of node.applied) {
        const value = `${entry.term}:${entry.data}`;
        const known = this.appliedAt.get(entry.index);
        if (known !== undefined && known !== value) {
          throw new Error(`${node.id} applied ${value} at ${entry.index}, another node ${known}`);
        }
        if (known === undefined) {
          this.appliedAt.set(entry.index, value);
          this.termSeenAt.set(entry.index, termNow);
        }
      }
    }
    // Log matching on the durable logs: same index and term implies the same payload.
    for (let i = 0; i < live.length; i++) {
      for (let j = i + 1; j < live.length; j++) checkLogMatching(live[i]!, live[j]!);
    }
  }
}

function checkLogMatching(x: TestNode, y: TestNode): void {
  const a = x.durable.log;
  const b = y.durable.log;
  const from = Math.max(a.firstIndex(), b.firstIndex());
  const to = Math.min(a.lastIndex(), b.lastIndex());
  let matched = false;
  for (let index = to; index >= from; index--) {
    const same = a.termAt(index) === b.termAt(index);
    if (matched && !same) {
      throw new Error(`logs of ${x.id} and ${y.id} agree past ${index} but not at it`);
    }
    if (same) {
      matched = true;
      const p = a.payloadAt(index);
      const q = b.payloadAt(index);
      if (p.length !== q.length || p.some((byte, k) => byte !== q[k])) {
        throw new Error(`${x.id} and ${y.id} hold different entries ${index} of one term`);
      }
    }
  }
}

/** Runs one schedule; returns how many entries the cluster applied in the end. */
function run(actions: readonly Action[], seed: number): number {
  const net = new Network(['a', 'b', 'c'], {
    joiners: ['d', 'e'],
    seed,
    limits: { messageBytesMax: 64 },
  });
  try {
    return runOn(net, actions);
  } finally {
    net.dispose();
  }
}

function runOn(net: Network, actions: readonly Action[]): number {
  const checker = new Checker();
  let proposals = 0;
  const leaderNode = () => net.leaders()[0];
  for (const action of actions) {
    switch (action.kind) {
      case 'tick': {
        const targets = action.node === 5 ? ids : [ids[action.node]!];
        for (let k = 0; k < action.times; k++) {
          for (const id of targets) if (net.node(id).alive) net.core(id).tick();
        }
        net.processReadies();
        break;
      }
      case 'propose': {
        const leader = leaderNode();
        for (let k = 0; k < action.count && leader !== undefined; k++) {
          try {
            leader.core.propose(bytes(`v${action.value}-${proposals++}`));
          } catch (error) {
            if (!(error instanceof PhantomError)) throw error;
          }
        }
        break;
      }
      case 'deliver': {
        const pick = mulberry32(action.seed);
        for (let round = 0; round < action.rounds; round++) {
          net.processReadies();
          net.deliverSome(() => {
            const r = pick() * 100;
            if (r < action.dropPercent) return 'drop';
            if (r < action.dropPercent + action.keepPercent) return 'keep';
            return 'deliver';
          });
        }
        net.processReadies();
        break;
      }
      case 'crash':
        net.crash(ids[action.node]!);
        break;
      case 'restart':
        if (!net.node(ids[action.node]!).alive) net.restart(ids[action.node]!);
        break;
      case 'partition': {
        net.heal();
        const left = ids.filter((_, k) => (action.mask >> k) & 1);
        const right = ids.filter((_, k) => !((action.mask >> k) & 1));
        net.partition(left, right);
        break;
      }
      case 'heal':
        net.heal();
        break;
      case 'snapshot': {
        const node = net.node(ids[action.node]!);
        const status = node.core.status();
        if (node.alive && status.applied > Math.max(status.snapshotIndex, 0)) {
          net.snapshotAndCompact(node.id, Math.max(status.firstIndex - 1, status.applied - 2));
        }
        break;
      }
      case 'read': {
        const leader = leaderNode();
        if (leader !== undefined) {
          try {
            leader.core.readIndex(action.context);
          } catch (error) {
            if (!(error instanceof RangeError)) throw error;
          }
        }
        break;
      }
      case 'transfer': {
        const leader = leaderNode();
        if (leader !== undefined) {
          try {
            leader.core.transferLeadership(ids[action.node]!);
          } catch (error) {
            if (!(error instanceof RangeError)) throw error;
          }
        }
        break;
      }
      case 'conf': {
        const leader = leaderNode();
        if (leader !== undefined) {
          const change: ConfChange = { changes: [{ type: action.type, id: ids[action.node]! }] };
          try {
            leader.core.proposeConfChange(change);
          } catch (error) {
            if (!(error instanceof RangeError) && !(error instanceof PhantomError)) throw error;
          }
        }
        break;
      }
    }
    checker.check(net);
  }
  // Liveness once healed: everybody back; within a bounded time a leader emerges (split votes
  // and a removed leader stepping down can take a few election timeouts) and every member
  // converges on its log.
  net.heal();
  for (const node of net.nodes.values()) if (!node.alive) net.restart(node.id);
  let leader: TestNode | undefined;
  for (let round = 0; round < 400 && leader === undefined; round++) {
    net.tickAll(1);
    checker.check(net);
    const leaders = net.leaders();
    if (round >= 20 && leaders.length === 1) leader = leaders[0];
  }
  if (leader === undefined) throw new Error('no leader within 400 ticks of healing');
  leader.core.propose(bytes('final'));
  net.stabilize();
  const status = leader.core.status();
  const members = [...status.conf.voters, ...status.conf.learners];
  const target = status.commit;
  for (let round = 0; round < 50; round++) {
    if (members.every((id) => net.core(id).status().applied >= target)) break;
    net.tickAll(1);
    checker.check(net);
  }
  for (const id of members) {
    expect(net.core(id).status().applied, `${id} converged`).toBeGreaterThanOrEqual(target);
  }
  return target;
}

/**
 * Schedules the property once failed on, kept as regressions (fast-check shrank each one).
 * 2026-11-26, CI of a fresh clone (seed -734771836): after two removals, restarts, a crash and
 * a re-added voter, no leader emerged within 400 ticks of healing.
 */
const regressions: readonly (readonly Action[])[] = [
  [
    { kind: 'tick', node: 0, times: 1 },
    { kind: 'tick', node: 5, times: 7 },
    { kind: 'tick', node: 5, times: 4 },
    { kind: 'deliver', seed: 0, rounds: 4, dropPercent: 0, keepPercent: 0 },
    { kind: 'conf', node: 1, type: 'removeNode' },
    { kind: 'deliver', seed: 0, rounds: 6, dropPercent: 0, keepPercent: 0 },
    { kind: 'conf', node: 0, type: 'removeNode' },
    { kind: 'deliver', seed: 0, rounds: 1, dropPercent: 0, keepPercent: 0 },
    { kind: 'propose', value: 0, count: 1 },
    { kind: 'deliver', seed: 0, rounds: 1, dropPercent: 0, keepPercent: 0 },
    { kind: 'propose', value: 0, count: 1 },
    { kind: 'restart', node: 0 },
    { kind: 'tick', node: 0, times: 1 },
    { kind: 'tick', node: 0, times: 1 },
    { kind: 'restart', node: 0 },
    { kind: 'tick', node: 5, times: 1 },
    { kind: 'tick', node: 5, times: 1 },
    { kind: 'propose', value: 0, count: 1 },
    { kind: 'restart', node: 0 },
    { kind: 'propose', value: 0, count: 1 },
    { kind: 'deliver', seed: 1972698639, rounds: 2, dropPercent: 4, keepPercent: 5 },
    { kind: 'propose', value: 0, count: 1 },
    { kind: 'crash', node: 0 },
    { kind: 'deliver', seed: 0, rounds: 1, dropPercent: 0, keepPercent: 0 },
    { kind: 'partition', mask: 0 },
    { kind: 'tick', node: 5, times: 1 },
    { kind: 'conf', node: 0, type: 'addVoter' },
    { kind: 'deliver', seed: 0, rounds: 1, dropPercent: 0, keepPercent: 0 },
    { kind: 'heal' },
    { kind: 'heal' },
    { kind: 'deliver', seed: 0, rounds: 1, dropPercent: 0, keepPercent: 0 },
    { kind: 'propose', value: 0, count: 1 },
    { kind: 'tick', node: 0, times: 1 },
    { kind: 'deliver', seed: 0, rounds: 1, dropPercent: 0, keepPercent: 0 },
    { kind: 'crash', node: 0 },
    { kind: 'deliver', seed: 0, rounds: 1, dropPercent: 0, keepPercent: 0 },
    { kind: 'read', context: 0 },
    { kind: 'deliver', seed: 0, rounds: 1, dropPercent: 0, keepPercent: 0 },
    { kind: 'tick', node: 0, times: 1 },
    { kind: 'tick', node: 0, times: 1 },
    { kind: 'deliver', seed: 0, rounds: 1, dropPercent: 0, keepPercent: 0 },
    { kind: 'deliver', seed: 0, rounds: 1, dropPercent: 0, keepPercent: 0 },
    { kind: 'tick', node: 0, times: 1 },
    { kind: 'deliver', seed: 0, rounds: 1, dropPercent: 0, keepPercent: 0 },
    { kind: 'tick', node: 5, times: 1 },
    { kind: 'tick', node: 5, times: 1 },
    { kind: 'heal' },
    { kind: 'deliver', seed: 0, rounds: 1, dropPercent: 0, keepPercent: 0 },
  ],
];

describe('regression schedules', () => {
  it.each(regressions.map((actions, k) => [k, actions] as const))(
    'schedule %i keeps safety and elects a leader once healed',
    (_k, actions) => {
      for (const kind of ['ts', 'wasm'] as const) {
        const previous = useTestKernel(kind);
        try {
          run(actions, 0);
        } finally {
          useTestKernel(previous);
        }
      }
    },
  );
});

describe.each(['ts', 'wasm'] as const)('safety under random schedules (%s log)', (kind) => {
  let previous: KernelKind = 'ts';
  beforeAll(() => {
    previous = useTestKernel(kind);
  });
  afterAll(() => {
    useTestKernel(previous);
  });

  it(
    'keeps election safety, log matching, leader completeness and state machine safety',
    () => {
      fc.assert(
        fc.property(
          fc.array(actionArb, { minLength: 40, maxLength: 200, size: 'max' }),
          fc.nat(),
          (actions, seed) => {
            run(actions, seed);
          },
        ),
        { numRuns: kind === 'ts' ? runs : Math.ceil(runs / 3) },
      );
    },
    Math.max(30_000, runs * 100),
  );
});
