// Concurrent put / get / compare-and-set / delete clients on a real 3-node cluster while a seeded
// nemesis comes and goes — kill -9 and restart, SIGSTOP/SIGCONT, partitions (one node cut
// off, the leader isolated, one-way cuts) — then the recorded history must pass the
// project's check-history and every replica must hold the same values.
import { describe, expect, it } from 'vitest';
import { Xoshiro128 } from '../../src/sim/prng.js';
import {
  checkSameValues,
  expectLinearizable,
  recordFinalReads,
  testSeed,
  useClusterResources,
} from './checks.js';
import { Cluster } from './harness.js';
import { sleep } from './processes.js';
import { HistoryRecorder } from './recorder.js';
import { mixedOperations, Workload } from './workload.js';

const resources = useClusterResources();
const keys = ['x', 'y', 'z'];

type Fault =
  'kill' | 'killLeader' | 'pause' | 'pauseLeader' | 'isolate' | 'isolateLeader' | 'oneWay';
const faults: readonly Fault[] = [
  'killLeader',
  'pauseLeader',
  'isolateLeader',
  'kill',
  'pause',
  'isolate',
  'oneWay',
];

describe('nemesis: kill -9, SIGSTOP and partitions under concurrent clients', () => {
  it('the history of put / get / CAS / delete clients is linearizable', async () => {
    const name = 'nemesis';
    const seed = testSeed(name);
    const random = new Xoshiro128(seed);
    const cluster = resources.cluster(await Cluster.start({ size: 3, name }));
    await cluster.waitForLeader();
    const recorder = new HistoryRecorder();
    const clients = resources.workload(
      new Workload({
        recorder,
        clients: 5,
        operations: mixedOperations(keys, { put: 2, get: 3, cas: 3, delete: 1 }),
        targets: () => cluster.targets(),
        seed: seed + 1,
        prefix: 'c',
        timeoutMs: 2_500,
        pauseMs: 25,
      }),
    );
    clients.start();
    await sleep(1_000);

    const leaderOrRandom = async (wantLeader: boolean): Promise<string> => {
      if (wantLeader) {
        try {
          return await cluster.waitForLeader({ timeoutMs: 5_000 });
        } catch {
          // no leader right now: any node will do
        }
      }
      return random.pick(cluster.ids());
    };
    const log: string[] = [];
    const rounds = 7;
    // Every fault kind at least once, in a seeded order, then seeded picks.
    const order = [...faults];
    for (let k = order.length - 1; k > 0; k--) {
      const j = random.int(k + 1);
      [order[k], order[j]] = [order[j]!, order[k]!];
    }
    for (let round = 0; round < rounds; round++) {
      const fault = order[round] ?? random.pick(faults);
      const holdMs = 1_500 + random.int(2_000);
      const target = await leaderOrRandom(fault.endsWith('Leader'));
      const at = recorder.now().toFixed(0);
      let detail = '';
      switch (fault) {
        case 'kill':
        case 'killLeader':
          await cluster.node(target).kill();
          await sleep(holdMs);
          await cluster.node(target).start();
          break;
        case 'pause':
        case 'pauseLeader':
          cluster.node(target).pause();
          await sleep(holdMs);
          cluster.node(target).resume();
          break;
        case 'isolate':
        case 'isolateLeader':
          {
            const mode = random.chance(0.5) ? 'drop' : 'reset';
            cluster.network.isolate(target, mode);
            detail = ` (${mode})`;
          }
          await sleep(holdMs);
          cluster.network.heal();
          break;
        case 'oneWay': {
          const other = random.pick(cluster.ids().filter((id) => id !== target));
          cluster.network.cut(target, other);
          detail = ` (${target}->${other} cut)`;
          await sleep(holdMs);
          cluster.network.heal();
          break;
        }
      }
      log.push(`${at} ms ${fault} ${target}${detail} for ${holdMs} ms`);
      await sleep(1_000 + random.int(1_000));
    }
    console.log(`${name}: faults:\n  ${log.join('\n  ')}`);

    await cluster.waitForLeader({ timeoutMs: 20_000 });
    await sleep(1_000);
    await clients.stop();
    const applied = await cluster.waitConverged({ timeoutMs: 30_000 });
    await checkSameValues(cluster, cluster.ids(), keys);
    console.log(`${name}: converged at applied index ${applied}`);
    const finalReader = random.pick(cluster.ids());
    await recordFinalReads(cluster, recorder, keys, finalReader);
    const acked = recorder.counts((op) => op.request.f === 'put' && op.outcome?.kind === 'ok').ok;
    expect(acked).toBeGreaterThan(20);
    await expectLinearizable(recorder, cluster, name);
  }, 180_000);
});
