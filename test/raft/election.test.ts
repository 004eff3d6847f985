// Leader election scenarios (Raft §5.2, §5.4.1, thesis §9.6 Pre-Vote, §6.2 CheckQuorum), run on
// a deterministic network of real RaftCores: who wins, who must not, and what survives restarts.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RaftCore } from '../../src/raft/core.js';
import type { VoteRequest, VoteResponse } from '../../src/raft/types.js';
import { Network, appliedCommands, logWithTerms } from './harness.js';
import { createTestLog } from './test-log.js';

const conf3 = { voters: ['a', 'b', 'c'], votersOutgoing: [], learners: [] };

function voteRequest(from: string, to: string, term: number, extra: Partial<VoteRequest> = {}) {
  const request: VoteRequest = {
    type: 'vote',
    from,
    to,
    term,
    preVote: false,
    lastLogIndex: 0,
    lastLogTerm: 0,
    transfer: false,
    ...extra,
  };
  return request;
}

function lonelyCore(random: () => number): RaftCore {
  return new RaftCore({
    id: 'a',
    random,
    log: createTestLog(),
    hardState: { term: 0, vote: '', commit: 0 },
    conf: conf3,
    snapshot: null,
    applied: 0,
  });
}

describe('leader election', () => {
  it('elects exactly one leader that every node follows', () => {
    const net = new Network(['a', 'b', 'c']);
    net.tickAll(25);
    const leader = net.leader();
    for (const node of net.nodes.values()) {
      expect(node.core.status().leader).toBe(leader.id);
      expect(node.core.status().term).toBe(1);
    }
    // The new leader's Noop is committed and applied everywhere.
    for (const node of net.nodes.values()) expect(node.core.status().applied).toBe(1);
  });

  it('randomizes the election timeout in [electionTicks, 2 * electionTicks) from the injected source', () => {
    fc.assert(
      fc.property(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (r) => {
        const core = lonelyCore(() => r);
        let ticks = 0;
        while (core.status().role === 'follower') {
          core.tick();
          ticks++;
          if (ticks > 100) return false;
        }
        return ticks === 10 + Math.floor(r * 10) && ticks >= 10 && ticks < 20;
      }),
    );
  });

  it('rejects a random source that leaves [0, 1)', () => {
    expect(() => lonelyCore(() => 1)).toThrow(/random source/);
  });

  it('grants one vote per term, and the vote survives a restart', () => {
    const core = lonelyCore(() => 0);
    const b = new RaftCore({
      id: 'b',
      random: () => 0,
      log: createTestLog(),
      hardState: { term: 0, vote: '', commit: 0 },
      conf: conf3,
      snapshot: null,
      applied: 0,
    });
    void core;
    b.step({ ...voteRequest('a', 'b', 1), rpcId: 7 });
    const ready = b.ready();
    expect(ready.messages).toEqual([]);
    expect(ready.mustSync).toBe(true);
    expect(ready.hardState).toEqual({ term: 1, vote: 'a', commit: 0 });
    const [response] = ready.messagesAfterPersist as VoteResponse[];
    expect(response).toMatchObject({ type: 'voteResp', granted: true, rpcId: 7, term: 1 });
    b.advance();

    b.step({ ...voteRequest('c', 'b', 1), rpcId: 8 });
    expect(b.ready().messagesAfterPersist[0]).toMatchObject({ granted: false, rpcId: 8 });
    b.advance();

    // A restart from what was persisted keeps the vote: c still cannot get it in term 1.
    const restarted = new RaftCore({
      id: 'b',
      random: () => 0,
      log: createTestLog(),
      hardState: ready.hardState!,
      conf: conf3,
      snapshot: null,
      applied: 0,
    });
    restarted.step({ ...voteRequest('c', 'b', 1), rpcId: 9 });
    expect(restarted.ready().messagesAfterPersist[0]).toMatchObject({
      granted: false,
      rpcId: 9,
    });
    // The same candidate asking again (a retry) gets the same answer.
    restarted.advance();
    restarted.step({ ...voteRequest('a', 'b', 1), rpcId: 10 });
    expect(restarted.ready().messagesAfterPersist[0]).toMatchObject({ granted: true });
  });

  it('refuses votes to a candidate whose log is less up to date (§5.4.1)', () => {
    const logs = new Map([
      ['a', logWithTerms([1, 1])],
      ['b', logWithTerms([1, 1])],
      ['c', logWithTerms([1])],
    ]);
    const hard = { term: 1, vote: '', commit: 1 };
    const net = new Network(
      ['a', 'b', 'c'],
      {},
      logs,
      new Map([
        ['a', hard],
        ['b', hard],
        ['c', hard],
      ]),
    );
    net.campaign('c');
    expect(net.core('c').status().role).toBe('follower');
    // Pre-Vote failed, so nobody's term moved.
    for (const node of net.nodes.values()) expect(node.core.status().term).toBe(1);
    net.elect('a');
    expect(net.core('a').status().term).toBe(2);
  });

  it('elects a leader with a minority of nodes down', () => {
    const net = new Network(['a', 'b', 'c', 'd', 'e']);
    net.crash('d');
    net.crash('e');
    net.tickAll(30);
    expect(['a', 'b', 'c']).toContain(net.leader().id);
  });

  it('elects no leader without a majority', () => {
    const net = new Network(['a', 'b', 'c', 'd', 'e']);
    net.crash('c');
    net.crash('d');
    net.crash('e');
    net.tickAll(100);
    expect(net.leaders()).toEqual([]);
    // Pre-Vote kept the terms from running away while no election could succeed.
    for (const id of ['a', 'b']) expect(net.core(id).status().term).toBe(0);
  });

  it('never lets a learner campaign', () => {
    const net = new Network(['a', 'b'], { learners: ['l'] });
    net.crash('a');
    net.crash('b');
    net.tick('l', 100);
    expect(net.core('l').status()).toMatchObject({ role: 'follower', term: 0 });
  });
});

describe('a stale leader', () => {
  it('cannot commit after a new leader is elected, and its entries are replaced on return', () => {
    const net = new Network(['a', 'b', 'c'], { limits: { checkQuorum: false } });
    net.elect('a');
    net.propose('a', 'x=1');
    net.isolate('a');
    // b and c elect a new leader among themselves.
    net.core('b').campaign();
    net.stabilize();
    expect(net.core('b').status()).toMatchObject({ role: 'leader', term: 2 });
    // a still believes it leads term 1: its proposal is appended but can never commit.
    const stale = net.core('a').propose(new TextEncoder().encode('stale'));
    net.stabilize();
    expect(net.core('a').status().role).toBe('leader');
    expect(net.core('a').status().commit).toBeLessThan(stale.index);
    net.propose('b', 'y=2');
    net.heal();
    net.tickAll(3);
    // a learned the higher term from its first contact and now follows b.
    expect(net.core('a').status()).toMatchObject({ role: 'follower', leader: 'b', term: 2 });
    for (const node of net.nodes.values()) {
      expect(appliedCommands(node)).toEqual(['x=1', 'y=2']);
    }
  });

  it('with CheckQuorum steps down by itself after an election timeout without a majority', () => {
    const net = new Network(['a', 'b', 'c']);
    net.elect('a');
    net.isolate('a');
    // The first CheckQuorum round still counts the answers from before the partition.
    net.tick('a', 10);
    expect(net.core('a').status().role).toBe('leader');
    net.tick('a', 9);
    expect(net.core('a').status().role).toBe('leader');
    // A whole election timeout without hearing from a majority: step down.
    net.tick('a', 1);
    expect(net.core('a').status()).toMatchObject({ role: 'follower', leader: '', term: 1 });
  });

  it('without CheckQuorum stays leader while cut off', () => {
    const net = new Network(['a', 'b', 'c'], { limits: { checkQuorum: false } });
    net.elect('a');
    net.isolate('a');
    net.tick('a', 50);
    expect(net.core('a').status().role).toBe('leader');
  });
});

describe('Pre-Vote and CheckQuorum together', () => {
  it('a partitioned follower does not raise its term and rejoins without disrupting', () => {
    const net = new Network(['a', 'b', 'c']);
    net.elect('a');
    net.isolate('c');
    net.tickAll(60);
    expect(net.core('a').status()).toMatchObject({ role: 'leader', term: 1 });
    expect(net.core('c').status().term).toBe(1);
    net.heal();
    net.tickAll(3);
    for (const node of net.nodes.values()) {
      expect(node.core.status()).toMatchObject({ leader: 'a', term: 1 });
    }
  });

  it('followers in lease reject the pre-vote of a node cut off from the leader only', () => {
    const net = new Network(['a', 'b', 'c']);
    net.elect('a');
    // c cannot hear a, but can talk to b, which still hears a: b's lease protects a.
    net.cut('a', 'c');
    net.tickAll(60);
    expect(net.core('a').status()).toMatchObject({ role: 'leader', term: 1 });
    expect(net.core('b').status()).toMatchObject({ leader: 'a', term: 1 });
    expect(net.core('c').status().term).toBe(1);
  });

  it('without Pre-Vote, the same partitioned follower disrupts the leader when it returns', () => {
    const net = new Network(['a', 'b', 'c'], { limits: { preVote: false } });
    net.elect('a');
    net.isolate('c');
    net.tickAll(60);
    const raised = net.core('c').status().term;
    expect(raised).toBeGreaterThan(1);
    net.heal();
    net.tickAll(40);
    // The leader of term 1 was deposed by c's higher term (CheckQuorum's lease only guards
    // against vote requests, not against a term learned from a response).
    expect(net.leader().core.status().term).toBeGreaterThan(raised);
  });

  it('an isolated leader steps down and the majority side elects a new one', () => {
    const net = new Network(['a', 'b', 'c', 'd', 'e']);
    net.elect('a');
    net.partition(['a', 'b'], ['c', 'd', 'e']);
    net.tickAll(40);
    expect(net.core('a').status().role).not.toBe('leader');
    const leader = net.leaders().map((node) => node.id);
    expect(leader.length).toBe(1);
    expect(['c', 'd', 'e']).toContain(leader[0]);
    net.heal();
    net.tickAll(5);
    expect(net.core('a').status().leader).toBe(leader[0]);
  });
});
