// Snapshots, compaction and InstallSnapshot on real RaftCores: a lagging follower is caught up
// from the leader's snapshot, failures are retried, restarts start from the snapshot, and bad
// snapshot/compaction calls are refused with RangeError.
import { describe, expect, it } from 'vitest';
import { RaftCore } from '../../src/raft/core.js';
import type { AppendResponse, SnapshotRequest } from '../../src/raft/types.js';
import { Network, appliedCommands, logWithTerms } from './harness.js';
import { createTestLog } from './test-log.js';

function laggingFollower(): Network {
  const net = new Network(['a', 'b', 'c'], { recordMessages: true });
  net.elect('a');
  net.propose('a', 'x0');
  net.cut('a', 'c');
  for (let k = 1; k <= 10; k++) net.propose('a', `x${k}`);
  net.snapshotAndCompact('a');
  return net;
}

describe('InstallSnapshot', () => {
  it('catches up a follower that needs compacted entries', () => {
    const net = laggingFollower();
    const leader = net.core('a').status();
    expect(leader.firstIndex).toBe(leader.applied + 1);
    net.heal();
    net.tickAll(3);
    const snapshots = net.sent.filter((m): m is SnapshotRequest => m.type === 'snapshot');
    expect(snapshots.map((m) => [m.to, m.snapshot.index])).toEqual([['c', leader.applied]]);
    const c = net.core('c').status();
    expect(c.firstIndex).toBe(leader.applied + 1);
    expect(c.snapshotIndex).toBe(leader.applied);
    expect(appliedCommands(net.node('c'))).toEqual(appliedCommands(net.node('a')));
    // Back to normal replication afterwards.
    net.propose('a', 'after');
    expect(net.core('a').status().progress['c']!.state).toBe('replicate');
    expect(appliedCommands(net.node('c')).at(-1)).toBe('after');
  });

  it('retries after reportSnapshot(false), once the follower answers a heartbeat', () => {
    const net = laggingFollower();
    net.heal();
    // The harness, like a driver, reports each lost snapshot with reportSnapshot(c, false).
    net.dropIf((m) => m.type === 'snapshot');
    net.tickAll(1);
    const lost = net.sent.filter((m) => m.type === 'snapshot').length;
    expect(lost).toBeGreaterThanOrEqual(1);
    expect(net.core('a').status().progress['c']!.state).toBe('probe');
    // Each heartbeat answer lets the leader try again: the snapshot goes out once per round.
    net.tickAll(2);
    expect(net.sent.filter((m) => m.type === 'snapshot').length).toBeGreaterThan(lost);
    net.heal();
    net.tickAll(3);
    expect(appliedCommands(net.node('c'))).toEqual(appliedCommands(net.node('a')));
    expect(net.core('a').status().progress['c']!.state).toBe('replicate');
  });

  it('a follower restarts from its installed snapshot', () => {
    const net = laggingFollower();
    net.heal();
    net.tickAll(3);
    net.crash('c');
    net.restart('c');
    expect(net.core('c').status()).toMatchObject({
      applied: net.core('a').status().snapshotIndex,
      firstIndex: net.core('a').status().snapshotIndex + 1,
    });
    net.tickAll(2);
    net.propose('a', 'y');
    expect(appliedCommands(net.node('c'))).toEqual(appliedCommands(net.node('a')));
  });

  it('the leader restarts from its own snapshot and log', () => {
    const net = laggingFollower();
    net.heal();
    net.crash('a');
    net.restart('a');
    net.tickAll(40);
    const leader = net.leader();
    net.propose(leader.id, 'z');
    for (const node of net.nodes.values()) {
      expect(appliedCommands(node)).toEqual(appliedCommands(leader));
    }
  });

  it('answers a snapshot it already covers with its commit index, keeping its log', () => {
    const core = new RaftCore({
      id: 'b',
      random: () => 0,
      log: logWithTerms([1, 1, 1, 1]),
      hardState: { term: 1, vote: '', commit: 3 },
      conf: { voters: ['a', 'b'], votersOutgoing: [], learners: [] },
      snapshot: null,
      applied: 3,
    });
    const conf = { voters: ['a', 'b'], votersOutgoing: [], learners: [] };
    const request = (index: number, term: number, rpcId: number): SnapshotRequest => ({
      type: 'snapshot',
      from: 'a',
      to: 'b',
      term: 1,
      rpcId,
      snapshot: { index, term, conf },
    });
    core.step(request(2, 1, 1));
    let ready = core.ready();
    expect(ready.snapshot).toBeNull();
    expect(ready.messagesAfterPersist[0]).toMatchObject({ success: true, matchIndex: 3, rpcId: 1 });
    core.advance();
    // The log holds entry 4 of term 1: the snapshot only tells it 4 is committed.
    core.step(request(4, 1, 2));
    ready = core.ready();
    expect(ready.snapshot).toBeNull();
    expect((ready.messagesAfterPersist[0] as AppendResponse).matchIndex).toBe(4);
    expect(ready.committed?.count).toBe(1);
    core.advance();
    expect(core.status()).toMatchObject({ lastIndex: 4, commit: 4, applied: 4, firstIndex: 1 });
    // A snapshot of a different history replaces the log.
    core.step(request(6, 2, 3));
    ready = core.ready();
    expect(ready.snapshot).toMatchObject({ index: 6, term: 2 });
    expect(ready.committed).toBeNull();
    core.advance();
    expect(core.status()).toMatchObject({ firstIndex: 7, lastIndex: 6, commit: 6, applied: 6 });
  });
});

describe('snapshot and compaction calls', () => {
  function node() {
    const net = new Network(['a']);
    net.elect('a');
    net.propose('a', 'x');
    net.propose('a', 'y');
    return net;
  }

  it('refuses a snapshot past applied, an older one, or one with the wrong term', () => {
    const net = node();
    const core = net.core('a');
    const { applied, conf } = core.status();
    expect(() => core.snapshotCreated({ index: applied + 1, term: 1, conf })).toThrow(
      /only 3 is applied/,
    );
    expect(() => core.snapshotCreated({ index: 2, term: 7, conf })).toThrow(/its term is 7/);
    core.snapshotCreated({ index: 2, term: 1, conf });
    expect(() => core.snapshotCreated({ index: 1, term: 1, conf })).toThrow(/newer one at 2/);
  });

  it('refuses to compact past the latest snapshot', () => {
    const net = node();
    const core = net.core('a');
    expect(() => core.compact(1)).toThrow(/latest snapshot is at 0/);
    core.snapshotCreated({ index: 2, term: 1, conf: core.status().conf });
    expect(() => core.compact(3)).toThrow(RangeError);
    core.compact(2);
    expect(core.status().firstIndex).toBe(3);
    core.compact(1);
    expect(core.status().firstIndex).toBe(3);
  });

  it('refuses to start from inconsistent state', () => {
    const conf = { voters: ['a'], votersOutgoing: [], learners: [] };
    const base = {
      id: 'a',
      random: () => 0,
      conf,
      snapshot: null,
      applied: 0,
    };
    expect(
      () =>
        new RaftCore({
          ...base,
          log: logWithTerms([1]),
          hardState: { term: 1, vote: '', commit: 5 },
        }),
    ).toThrow(/commit is 5 but the log ends at 1/);
    const compacted = logWithTerms([1, 1, 1]);
    compacted.compactTo(2);
    expect(
      () => new RaftCore({ ...base, log: compacted, hardState: { term: 1, vote: '', commit: 3 } }),
    ).toThrow(/no snapshot was given/);
    expect(
      () =>
        new RaftCore({
          ...base,
          log: createTestLog(),
          hardState: { term: 0, vote: '', commit: 0 },
          id: '',
        }),
    ).toThrow(TypeError);
    expect(
      () =>
        new RaftCore({
          ...base,
          log: createTestLog(),
          hardState: { term: 0, vote: '', commit: 0 },
          limits: { electionTicks: 1 },
        }),
    ).toThrow(RangeError);
  });
});
