// A partition that isolates the leader of a real 3-node cluster (every link to and from it cut
// through the test's TCP proxies): the majority elects a new leader and keeps acking writes,
// the old leader acks none of the writes sent to it while isolated (they time out or get a
// 5xx), and after healing all three converge with no acked write lost and a linearizable history.
import { describe, expect, it } from 'vitest';
import {
  ackedPuts,
  checkSameValues,
  checkUniqueWrites,
  expectLinearizable,
  recordFinalReads,
  testSeed,
  useClusterResources,
  waitUntil,
} from './checks.js';
import { Cluster } from './harness.js';
import { sleep } from './processes.js';
import { HistoryRecorder } from './recorder.js';
import { mixedOperations, uniqueWrites, Workload } from './workload.js';

const resources = useClusterResources();
const hotKeys = ['p1', 'p2'];

describe('partition isolating the leader', () => {
  it('the majority moves on, the isolated leader acks nothing, all converge after healing', async () => {
    const name = 'partition-leader';
    const seed = testSeed(name);
    // The nodes give up on a request after 2 s, before the clients' 4 s: the isolated leader's
    // own answers (503 / 504) are seen, not just client timeouts.
    const cluster = resources.cluster(
      await Cluster.start({ size: 3, name, extraArgs: ['--request-timeout-ms', '2000'] }),
    );
    const oldLeader = await cluster.waitForLeader();
    const majority = cluster.ids().filter((id) => id !== oldLeader);
    const oldTerm = (await cluster.status(oldLeader))!.term;
    const recorder = new HistoryRecorder();

    // Clients of the majority side, and one client that talks only to the old leader.
    const majorityWriters = resources.workload(
      new Workload({
        recorder,
        clients: 2,
        operations: uniqueWrites('m-'),
        targets: () => cluster.targets(majority),
        seed,
        prefix: 'm',
        timeoutMs: 4_000,
      }),
    );
    const majorityHot = resources.workload(
      new Workload({
        recorder,
        clients: 2,
        operations: mixedOperations(hotKeys),
        targets: () => cluster.targets(majority),
        seed: seed + 1,
        prefix: 'h',
        timeoutMs: 4_000,
      }),
    );
    const isolatedClient = resources.workload(
      new Workload({
        recorder,
        clients: 2,
        operations: uniqueWrites('iso-'),
        targets: () => cluster.targets([oldLeader]),
        seed: seed + 2,
        prefix: 'iso',
        timeoutMs: 4_000,
      }),
    );
    majorityWriters.start();
    majorityHot.start();
    await waitUntil(
      () => ackedPuts(recorder).length >= 40,
      20_000,
      () => recorder.summary(),
    );

    const isolatedAtMs = recorder.now();
    cluster.network.isolate(oldLeader);
    isolatedClient.start();
    const electionStart = Date.now();
    const newLeader = await cluster.waitForLeader({ among: majority, timeoutMs: 20_000 });
    const electedMs = Date.now() - electionStart;
    const newTerm = (await cluster.status(newLeader))!.term;
    expect(newTerm).toBeGreaterThan(oldTerm);
    const acksBefore = ackedPuts(recorder).filter((op) => op.completedAtMs > isolatedAtMs).length;
    await waitUntil(
      () =>
        ackedPuts(recorder).filter((op) => op.completedAtMs > isolatedAtMs).length >=
        acksBefore + 40,
      20_000,
      () => `the majority acked too little after electing ${newLeader}: ${recorder.summary()}`,
    );
    // Stay isolated well past the old leader's check-quorum timeout and the clients' deadline.
    await sleep(3_000);
    const isolatedStatus = await cluster.status(oldLeader);
    const healedAtMs = recorder.now();
    cluster.network.heal();
    await isolatedClient.stop();

    const toOldLeader = recorder.ops.filter(
      (op) => op.node === oldLeader && op.invokedAtMs >= isolatedAtMs && op.request.f === 'put',
    );
    const ackedWhileIsolated = toOldLeader.filter(
      (op) => op.outcome?.kind === 'ok' && op.completedAtMs < healedAtMs,
    );
    const answers = new Map<string, number>();
    for (const op of toOldLeader) {
      const outcome = op.outcome;
      const label =
        outcome === undefined
          ? 'open'
          : outcome.kind === 'ok'
            ? `ok ${outcome.status}`
            : `${outcome.kind} ${outcome.status === 0 ? outcome.code : outcome.status}`;
      answers.set(label, (answers.get(label) ?? 0) + 1);
    }
    console.log(
      `${name}: ${oldLeader} isolated at ${isolatedAtMs.toFixed(0)} ms; ${newLeader} elected by the majority in ${electedMs} ms (term ${newTerm}); ` +
        `old leader state after isolation: ${isolatedStatus?.state ?? 'no answer'} (term ${isolatedStatus?.term ?? '?'}); ` +
        `writes sent to it while isolated: ${toOldLeader.length} ${JSON.stringify(Object.fromEntries(answers))}`,
    );
    expect(
      ackedWhileIsolated.map((op) => ({ request: op.request, outcome: op.outcome })),
      'the isolated old leader acknowledged writes',
    ).toEqual([]);
    expect(toOldLeader.length).toBeGreaterThan(0);
    // A majority-side write must have been acked while the old leader was cut off.
    expect(
      ackedPuts(recorder).some(
        (op) =>
          op.completedAtMs > isolatedAtMs && op.completedAtMs < healedAtMs && op.node !== oldLeader,
      ),
    ).toBe(true);

    // After healing, the old leader takes writes again (forwarding to the new leader).
    await waitUntil(
      async () =>
        (await cluster.status(oldLeader))?.leader === (await cluster.status(newLeader))?.leader,
      20_000,
      async () => `${oldLeader} did not rejoin: ${JSON.stringify(await cluster.statuses())}`,
    );
    await sleep(500);
    await majorityWriters.stop();
    await majorityHot.stop();
    const applied = await cluster.waitConverged({ timeoutMs: 30_000 });
    const checked =
      (await checkUniqueWrites(cluster, recorder, cluster.ids(), 'm-')) +
      (await checkUniqueWrites(cluster, recorder, cluster.ids(), 'iso-'));
    await checkSameValues(cluster, cluster.ids(), hotKeys);
    console.log(`${name}: converged at applied index ${applied}; ${checked} unique writes checked`);
    await recordFinalReads(cluster, recorder, hotKeys, oldLeader);
    await expectLinearizable(recorder, cluster, name);
  }, 150_000);
});
