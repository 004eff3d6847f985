// SIGSTOP of the leader of a real 3-node cluster for longer than the election timeout, then
// SIGCONT, under compare-and-set clients that talk to every node (the paused one included):
// no two CAS from the same value are both acked, and the recorded history is linearizable.
import { describe, expect, it } from 'vitest';
import {
  checkSameValues,
  expectLinearizable,
  recordFinalReads,
  testSeed,
  useClusterResources,
  waitUntil,
} from './checks.js';
import { Cluster } from './harness.js';
import { sleep } from './processes.js';
import { HistoryRecorder, type OpRecord } from './recorder.js';
import { mixedOperations, Workload } from './workload.js';

const resources = useClusterResources();
const keys = ['s1', 's2'];

/**
 * Pairs of acked compare-and-sets on one key from the same previous value. Values are unique
 * and nothing deletes, so a value (or the key's absence, for create-only puts) can be the
 * starting point of one successful compare-and-set at most.
 */
function conflictingCas(ops: readonly OpRecord[]): string[] {
  const byFrom = new Map<string, OpRecord>();
  const conflicts: string[] = [];
  for (const op of ops) {
    const request = op.request;
    if (request.f !== 'put') continue;
    if (request.prevValue === undefined && request.prevExist !== false) continue;
    if (op.outcome?.kind !== 'ok' || op.outcome.result !== 'ok') continue;
    const from = `${request.key}\u0000${request.prevValue ?? '(absent)'}`;
    const earlier = byFrom.get(from);
    if (earlier !== undefined && earlier.request.f === 'put') {
      conflicts.push(
        `${request.key}: ${earlier.process}@${earlier.node} CAS ${request.prevValue ?? '(absent)'} -> ${earlier.request.value} and ${op.process}@${op.node} CAS ${request.prevValue ?? '(absent)'} -> ${request.value} both acked`,
      );
    } else {
      byFrom.set(from, op);
    }
  }
  return conflicts;
}

describe('SIGSTOP / SIGCONT of the leader', () => {
  it('never acks two conflicting compare-and-sets and stays linearizable', async () => {
    const name = 'pause-leader';
    const seed = testSeed(name);
    const cluster = resources.cluster(await Cluster.start({ size: 3, name }));
    const paused = await cluster.waitForLeader();
    const pausedTerm = (await cluster.status(paused))!.term;
    const recorder = new HistoryRecorder();
    const casClients = resources.workload(
      new Workload({
        recorder,
        clients: 5,
        operations: mixedOperations(keys, { put: 1, get: 2, cas: 5 }),
        targets: () => cluster.targets(),
        seed,
        prefix: 'c',
        timeoutMs: 2_500,
      }),
    );
    casClients.start();
    const casAcked = () =>
      recorder.ops.filter(
        (op) =>
          op.request.f === 'put' &&
          op.request.prevValue !== undefined &&
          op.outcome?.kind === 'ok' &&
          op.outcome.result === 'ok',
      ).length;
    await waitUntil(
      () => casAcked() >= 10,
      20_000,
      () => `too few CAS acked: ${recorder.summary()}`,
    );

    const pausedAtMs = recorder.now();
    cluster.node(paused).pause();
    const others = cluster.ids().filter((id) => id !== paused);
    const newLeader = await cluster.waitForLeader({ among: others, timeoutMs: 20_000 });
    const electedMs = recorder.now() - pausedAtMs;
    // Pause well past the election timeout (at most 1.6 s with the node's defaults).
    await sleep(Math.max(0, 3_500 - electedMs));
    const casBeforeResume = casAcked();
    cluster.node(paused).resume();
    const resumedAtMs = recorder.now();
    console.log(
      `${name}: paused leader ${paused} (term ${pausedTerm}) for ${(resumedAtMs - pausedAtMs).toFixed(0)} ms; ` +
        `${newLeader} led after ${electedMs.toFixed(0)} ms`,
    );
    // Keep the load on while the old leader wakes up with stale beliefs.
    await waitUntil(
      () => casAcked() >= casBeforeResume + 10 && recorder.now() - resumedAtMs > 3_000,
      30_000,
      () => `too few CAS acked after SIGCONT: ${recorder.summary()}`,
    );
    await casClients.stop();
    const applied = await cluster.waitConverged({ timeoutMs: 30_000 });
    await checkSameValues(cluster, cluster.ids(), keys);
    console.log(`${name}: converged at applied index ${applied}; ${casAcked()} CAS acked`);

    const conflicts = conflictingCas(recorder.ops);
    expect(conflicts, conflicts.join('\n')).toEqual([]);
    await recordFinalReads(cluster, recorder, keys, paused);
    await expectLinearizable(recorder, cluster, name);
  }, 120_000);
});
