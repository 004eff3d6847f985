// Regressions for core bugs the simulator found: each bug's failing seeds replayed through the
// simulator, plus a scripted three-node scenario driving RaftCore directly. Fixed bugs must
// pass; open ones are "expected to fail" (see known-core-bugs.ts for how to flip them).
import { describe, expect, it } from 'vitest';
import { TsLog } from '../../src/kernel/reference.js';
import { RaftCore } from '../../src/raft/core.js';
import type { ConfState, Message } from '../../src/raft/types.js';
import { Xoshiro128 } from '../../src/sim/prng.js';
import { runSimulation } from '../../src/sim/simulation.js';
import {
  expectKnownBugsFixed,
  fixedCoreBugs,
  knownCoreBugs,
  type KnownCoreBug,
} from './known-core-bugs.js';

/** A tiny synchronous driver: every Ready is persisted, sent and applied at once. */
class MiniCluster {
  readonly cores = new Map<string, RaftCore>();
  readonly logs = new Map<string, TsLog>();
  /** Directed links that drop everything, as "from>to". */
  readonly cut = new Set<string>();
  private readonly inbox: Message[] = [];

  constructor(ids: string[], limits: ConstructorParameters<typeof RaftCore>[0]['limits']) {
    const conf: ConfState = { voters: ids, votersOutgoing: [], learners: [] };
    const random = new Xoshiro128(1);
    for (const id of ids) {
      const log = new TsLog({ entriesInitial: 16, payloadBytesInitial: 0 });
      this.logs.set(id, log);
      this.cores.set(
        id,
        new RaftCore({
          id,
          limits,
          random: () => random.float(),
          log,
          hardState: { term: 0, vote: '', commit: 0 },
          conf,
          snapshot: null,
          applied: 0,
        }),
      );
    }
  }

  core(id: string): RaftCore {
    return this.cores.get(id)!;
  }

  /** Runs Ready loops and delivers messages until nothing moves. */
  stabilize(): void {
    for (let round = 0; round < 1000; round++) {
      let moved = false;
      for (const core of this.cores.values()) {
        while (core.hasReady()) {
          const ready = core.ready();
          this.inbox.push(...ready.messages, ...ready.messagesAfterPersist);
          core.advance();
          moved = true;
        }
      }
      const batch = this.inbox.splice(0);
      for (const message of batch) {
        if (this.cut.has(`${message.from}>${message.to}`)) continue;
        this.core(message.to).step(message);
        moved = true;
      }
      if (!moved) return;
    }
    throw new Error('the cluster did not settle');
  }
}

/** Replays a bug's seeds and expects every one to pass (it does once the bug is fixed). */
function expectSeedsPass(bug: KnownCoreBug): void {
  for (const { seed, options } of bug.seeds) {
    const result = runSimulation({ ...options, seed });
    expect(result.failure?.message.split('\n')[0] ?? null, `seed ${seed}`).toBeNull();
  }
}

/** `it` for a fixed bug; `it.fails` for an open one (unless PHANTOMDB_SIM_KNOWN_BUGS=fixed). */
function testFor(id: string) {
  const open = knownCoreBugs.some((bug) => bug.id === id);
  return open && !expectKnownBugsFixed ? it.fails : it;
}

function label(bug: KnownCoreBug): string {
  const open = knownCoreBugs.includes(bug);
  return `${open ? 'OPEN CORE BUG (expected to fail until fixed)' : 'fixed core bug'}: ${bug.title}`;
}

describe('core bugs found by the simulator', () => {
  for (const bug of [...knownCoreBugs, ...fixedCoreBugs]) {
    testFor(bug.id)(`${label(bug)} — seeds ${bug.seeds.map((s) => s.seed).join(', ')}`, () => {
      expectSeedsPass(bug);
    });
  }

  testFor('stuck-full-window')(
    'scripted: a follower whose window filled while its answers were lost catches up after the leader compacted',
    () => {
      const cluster = new MiniCluster(['n1', 'n2', 'n3'], {
        electionTicks: 10,
        heartbeatTicks: 1,
        inflightMessagesMax: 2,
      });
      const leader = cluster.core('n1');
      leader.campaign();
      cluster.stabilize();
      expect(leader.status().role).toBe('leader');
      leader.propose(new Uint8Array([1]));
      cluster.stabilize();
      expect(leader.status().progress['n2']?.state).toBe('replicate');

      // n2 receives appends but its answers are lost: its in-flight window fills up.
      cluster.cut.add('n2>n1');
      for (let k = 0; k < 4; k++) {
        leader.propose(new Uint8Array([2 + k]));
        cluster.stabilize();
      }
      expect(leader.status().progress['n2']?.inflightMessages).toBe(2);

      // The leader (committing with n3) snapshots and compacts past what n2 acknowledged.
      const status = leader.status();
      expect(status.applied).toBe(status.lastIndex);
      const log = cluster.logs.get('n1')!;
      leader.snapshotCreated({
        index: status.applied,
        term: log.termAt(status.applied),
        conf: status.conf,
      });
      leader.compact(status.applied);

      // The network heals. Within a few election timeouts n2 must hold the leader's log.
      cluster.cut.clear();
      for (let tick = 0; tick < 50; tick++) {
        leader.tick();
        cluster.stabilize();
      }
      const follower = cluster.core('n2').status();
      expect(follower.commit, 'n2 caught up with the leader').toBe(leader.status().commit);
    },
  );
});
