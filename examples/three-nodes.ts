/**
 * Three RaftConsensus nodes in one process over the in-process transport: elect a leader,
 * commit commands, read linearizably, lose the leader, elect another, and check that every
 * node applied the same commands in the same order.
 *
 * Run: npx tsx examples/three-nodes.ts
 */
import { LocalTransport } from '../src/consensus/local-transport.js';
import { RaftConsensus, type RaftNodeInfo } from '../src/consensus/raft-consensus.js';
import { MemoryPersistence } from '../src/storage/memory.js';

const decoder = new TextDecoder();
const nodes: RaftNodeInfo[] = [1, 2, 3].map((k) => ({
  id: `n${k}`,
  host: '127.0.0.1',
  port: 7000 + k,
}));

const transport = new LocalTransport({ delayMs: 1 });
const states = new Map<string, Map<string, string>>();
const rafts = nodes.map((node) => {
  const state = new Map<string, string>();
  states.set(node.id, state);
  const raft = new RaftConsensus(node.id, nodes, {
    persistence: new MemoryPersistence(),
    tickIntervalMs: 50,
  });
  raft.registerApplyCommandCallback((command, data) => {
    const text = typeof data === 'string' ? data : decoder.decode(data);
    if (command === 'SET') {
      const [key, value] = text.split('=') as [string, string];
      state.set(key, value);
    }
  });
  transport.connect(raft);
  return raft;
});

async function leaderOf(candidates: RaftConsensus[]): Promise<RaftConsensus> {
  const started = Date.now();
  for (;;) {
    const leaders = candidates.filter((raft) => raft.getState() === 'leader');
    if (leaders.length === 1) return leaders[0]!;
    if (Date.now() - started > 10_000) throw new Error('no leader elected within 10 s');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function main(): Promise<void> {
  for (const raft of rafts) await raft.initialize();
  let started = Date.now();
  const leader = await leaderOf(rafts);
  console.log(
    `leader ${leader.getLeader()} elected in term ${leader.getCurrentTerm()} after ${Date.now() - started} ms`,
  );

  started = Date.now();
  for (let k = 1; k <= 5; k++) {
    const { index, term } = await leader.submitCommand('SET', `x${k}=${k}`);
    console.log(`committed and applied SET x${k}=${k} at index ${index}, term ${term}`);
  }
  const read = await leader.linearizableRead();
  console.log(
    `linearizable read at index ${read.index}: x5=${states.get(leader.getLeader())!.get('x5')} (${Date.now() - started} ms for 5 writes and a read)`,
  );

  const old = leader.getLeader();
  transport.isolate(old);
  console.log(`isolated ${old}; waiting for a new leader`);
  const others = rafts.filter((raft) => raft.status().id !== old);
  const next = await leaderOf(others);
  console.log(`leader ${next.getLeader()} elected in term ${next.getCurrentTerm()}`);
  await next.submitCommand('SET', 'after=failover');
  transport.heal();

  const last = next.getCommitIndex();
  const deadline = Date.now() + 10_000;
  while (rafts.some((raft) => raft.getLastApplied() < last)) {
    if (Date.now() > deadline) throw new Error('nodes did not converge');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  for (const raft of rafts) {
    const id = raft.status().id;
    console.log(
      `${id}: ${raft.getState()}, applied ${raft.getLastApplied()}, state ${JSON.stringify([...states.get(id)!])}`,
    );
  }
  const [first, ...rest] = [...states.values()].map((state) => JSON.stringify([...state]));
  if (rest.some((state) => state !== first)) throw new Error('state machines diverged');
  console.log('all three state machines agree');
  await Promise.all(rafts.map((raft) => raft.shutdown()));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
