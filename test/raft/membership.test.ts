// Membership changes on real RaftCores: joint consensus (enter, auto-leave, both majorities),
// learners, nodes joining with no state, removing several voters or the leader, and the encoding
// and validation of changes (unit and property tests).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BadRequestError, NotLeaderError, PhantomError } from '../../src/errors.js';
import {
  applyConfChange,
  decodeConfChange,
  describeConfChangeProblem,
  encodeConfChange,
} from '../../src/raft/conf-change.js';
import type { ConfChange, ConfState } from '../../src/raft/types.js';
import { Network, appliedCommands, bytes } from './harness.js';

const sorted = (ids: readonly string[]) => [...ids].sort();

function confOf(net: Network, id: string): ConfState {
  const conf = net.core(id).status().conf;
  return {
    voters: sorted(conf.voters),
    votersOutgoing: sorted(conf.votersOutgoing),
    learners: sorted(conf.learners),
  };
}

function errorOf(action: () => unknown): unknown {
  try {
    action();
  } catch (error) {
    return error;
  }
  return undefined;
}

describe('learners', () => {
  it('a node joining with no state gets the snapshot, then the log, and never campaigns', () => {
    const net = new Network(['a', 'b', 'c'], { joiners: ['d'] });
    net.elect('a');
    net.propose('a', 'before');
    net.core('a').proposeConfChange({ changes: [{ type: 'addLearner', id: 'd' }] });
    net.stabilize();
    net.propose('a', 'after');
    expect(confOf(net, 'd')).toEqual({
      voters: ['a', 'b', 'c'],
      votersOutgoing: [],
      learners: ['d'],
    });
    expect(appliedCommands(net.node('d'))).toEqual(['before', 'after']);
    // It got its starting membership from a snapshot (the bootstrap one, at index 0).
    expect(net.node('d').readies.some((ready) => ready.snapshot?.index === 0)).toBe(true);
    net.crash('a');
    net.tick('d', 100);
    expect(net.core('d').status().role).toBe('follower');
  });

  it('learners never count toward a quorum', () => {
    const net = new Network(['a', 'b', 'c'], { learners: ['d'] });
    net.elect('a');
    net.cut('a', 'b');
    net.cut('a', 'c');
    const { index } = net.propose('a', 'x');
    // d holds the entry, but only voters count: nothing commits.
    expect(net.core('d').status().lastIndex).toBe(index);
    expect(net.core('a').status().commit).toBeLessThan(index);
    net.heal();
    net.tickAll(1);
    expect(net.core('a').status().commit).toBe(index);
  });

  it("a learner's vote does not elect anyone", () => {
    const net = new Network(['a', 'b', 'c'], { learners: ['d'] });
    net.crash('b');
    net.crash('c');
    net.campaign('a');
    net.tickAll(50);
    expect(net.leaders()).toEqual([]);
  });

  it('addVoter of an existing learner promotes it through a joint configuration', () => {
    const net = new Network(['a', 'b', 'c'], { learners: ['d'] });
    net.elect('a');
    net.core('a').proposeConfChange({ changes: [{ type: 'addVoter', id: 'd' }] });
    net.stabilize();
    for (const id of ['a', 'b', 'c', 'd']) {
      expect(confOf(net, id)).toEqual({
        voters: ['a', 'b', 'c', 'd'],
        votersOutgoing: [],
        learners: [],
      });
    }
    // d now counts: with a and d alone (of four), nothing commits; with b too, it does.
    net.cut('a', 'c');
    net.cut('a', 'b');
    const { index } = net.propose('a', 'x');
    expect(net.core('a').status().commit).toBeLessThan(index);
    net.heal();
    net.cut('a', 'c');
    net.tickAll(1);
    expect(net.core('a').status().commit).toBe(index);
  });
});

describe('joint consensus', () => {
  it('adds several voters at once and leaves the joint configuration on its own', () => {
    const net = new Network(['a', 'b', 'c'], { joiners: ['d', 'e'] });
    net.elect('a');
    net.core('a').proposeConfChange({
      changes: [
        { type: 'addVoter', id: 'd' },
        { type: 'addVoter', id: 'e', url: 'http://e:7005' },
      ],
    });
    net.stabilize();
    for (const id of ['a', 'b', 'c', 'd', 'e']) {
      expect(confOf(net, id)).toEqual({
        voters: ['a', 'b', 'c', 'd', 'e'],
        votersOutgoing: [],
        learners: [],
      });
    }
    net.propose('a', 'x');
    expect(appliedCommands(net.node('e'))).toEqual(['x']);
    // Two conf change entries went through the log: the joint one and the leave.
    const confEntries = net.node('b').applied.filter((entry) => entry.type === 2);
    expect(confEntries.length).toBe(2);
    expect(JSON.parse(confEntries[1]!.data)).toEqual({ changes: [] });
  });

  it('in a joint configuration a decision needs a majority of both halves', () => {
    // Replace b and c by d and e: C_old = {a, b, c}, C_new = {a, d, e}.
    const net = new Network(['a', 'b', 'c'], { joiners: ['d', 'e'] });
    net.elect('a');
    net.cut('a', 'd');
    net.cut('a', 'e');
    net.core('a').proposeConfChange({
      changes: [
        { type: 'addVoter', id: 'd' },
        { type: 'addVoter', id: 'e' },
        { type: 'removeNode', id: 'b' },
        { type: 'removeNode', id: 'c' },
      ],
    });
    net.stabilize();
    // The joint entry committed under C_old and is applied: the leader is in C_old,new.
    expect(confOf(net, 'a')).toEqual({
      voters: ['a', 'd', 'e'],
      votersOutgoing: ['a', 'b', 'c'],
      learners: [],
    });
    // a, b and c are a majority of C_old but only a is in C_new: nothing more commits.
    const { index } = net.propose('a', 'x');
    net.tickAll(3);
    expect(net.core('a').status().commit).toBeLessThan(index);
    // With d back, {a, d} is a majority of C_new and {a, b, c} of C_old.
    net.heal();
    net.cut('a', 'e');
    net.tickAll(3);
    expect(net.core('a').status().commit).toBeGreaterThanOrEqual(index);
    expect(confOf(net, 'a')).toEqual({ voters: ['a', 'd', 'e'], votersOutgoing: [], learners: [] });
    expect(appliedCommands(net.node('d'))).toEqual(['x']);
  });

  it('removes several voters; the removed ones do not disrupt the rest', () => {
    const net = new Network(['a', 'b', 'c', 'd', 'e']);
    net.elect('a');
    net.core('a').proposeConfChange({
      changes: [
        { type: 'removeNode', id: 'd' },
        { type: 'removeNode', id: 'e' },
      ],
    });
    net.stabilize();
    net.tickAll(2);
    expect(confOf(net, 'a')).toEqual({ voters: ['a', 'b', 'c'], votersOutgoing: [], learners: [] });
    const term = net.core('a').status().term;
    net.tickAll(60);
    expect(net.leader().id).toBe('a');
    expect(net.core('a').status().term).toBe(term);
    // Two of three remaining voters now make a quorum without d and e.
    net.crash('d');
    net.crash('e');
    net.crash('c');
    const { index } = net.propose('a', 'x');
    expect(net.core('a').status().commit).toBe(index);
  });

  it('removes the leader: it steps down once the change is applied, and the rest elect a new one', () => {
    const net = new Network(['a', 'b', 'c']);
    net.elect('a');
    net.propose('a', 'x');
    net.core('a').proposeConfChange({ changes: [{ type: 'removeNode', id: 'a' }] });
    net.stabilize();
    net.tickAll(1);
    expect(net.core('a').status().role).toBe('follower');
    expect(confOf(net, 'b')).toEqual({ voters: ['b', 'c'], votersOutgoing: [], learners: [] });
    net.tickAll(40);
    const leader = net.leader();
    expect(['b', 'c']).toContain(leader.id);
    net.propose(leader.id, 'y');
    expect(appliedCommands(net.node('b'))).toEqual(['x', 'y']);
    expect(appliedCommands(net.node('c'))).toEqual(['x', 'y']);
    // The removed node never campaigns again.
    expect(net.core('a').status().role).toBe('follower');
  });

  it('allows one membership change at a time', () => {
    const net = new Network(['a', 'b', 'c'], { joiners: ['d', 'e'] });
    net.elect('a');
    net.isolate('a');
    net.core('a').proposeConfChange({ changes: [{ type: 'addLearner', id: 'd' }] });
    const error = errorOf(() =>
      net.core('a').proposeConfChange({ changes: [{ type: 'addLearner', id: 'e' }] }),
    );
    expect(error).toBeInstanceOf(PhantomError);
    expect((error as PhantomError).code).toBe('CONF_CHANGE_IN_PROGRESS');
    net.heal();
    net.stabilize();
    net.tickAll(1);
    expect(() =>
      net.core('a').proposeConfChange({ changes: [{ type: 'addLearner', id: 'e' }] }),
    ).not.toThrow();
  });

  it('a restarted node rebuilds its membership from storage and the log', () => {
    const net = new Network(['a', 'b', 'c'], { joiners: ['d'] });
    net.elect('a');
    net.core('a').proposeConfChange({ changes: [{ type: 'addVoter', id: 'd' }] });
    net.stabilize();
    net.tickAll(1);
    net.crash('b');
    net.restart('b');
    net.tickAll(2);
    expect(confOf(net, 'b').voters).toEqual(['a', 'b', 'c', 'd']);
    net.crash('d');
    net.restart('d');
    net.tickAll(2);
    expect(confOf(net, 'd').voters).toEqual(['a', 'b', 'c', 'd']);
  });
});

describe('membership change validation', () => {
  const conf: ConfState = { voters: ['a', 'b', 'c'], votersOutgoing: [], learners: ['l'] };
  const cases: [string, ConfChange, RegExp][] = [
    ['adds an existing voter', { changes: [{ type: 'addVoter', id: 'b' }] }, /already a voter/],
    ['demotes a voter', { changes: [{ type: 'addLearner', id: 'b' }] }, /remove it first/],
    [
      'adds an existing learner',
      { changes: [{ type: 'addLearner', id: 'l' }] },
      /already a learner/,
    ],
    ['removes a stranger', { changes: [{ type: 'removeNode', id: 'z' }] }, /not a member/],
    ['leaves a joint config that is not joint', { changes: [] }, /not joint/],
    [
      'removes every voter',
      {
        changes: [
          { type: 'removeNode', id: 'a' },
          { type: 'removeNode', id: 'b' },
          { type: 'removeNode', id: 'c' },
        ],
      },
      /no voter would be left/,
    ],
    [
      'names a node twice',
      {
        changes: [
          { type: 'addVoter', id: 'd' },
          { type: 'removeNode', id: 'd' },
        ],
      },
      /appears twice/,
    ],
  ];
  for (const [name, change, message] of cases) {
    it(`refuses a change that ${name}`, () => {
      expect(describeConfChangeProblem(conf, change)).toMatch(message);
      expect(() => applyConfChange(conf, change)).toThrow(RangeError);
      const net = new Network(['a', 'b', 'c'], { learners: ['l'] });
      net.elect('a');
      expect(() => net.core('a').proposeConfChange(change)).toThrow(RangeError);
    });
  }

  it('refuses any change while joint, except leaving', () => {
    const joint: ConfState = {
      voters: ['a', 'b', 'd'],
      votersOutgoing: ['a', 'b', 'c'],
      learners: [],
    };
    expect(
      describeConfChangeProblem(joint, { changes: [{ type: 'addLearner', id: 'x' }] }),
    ).toMatch(/joint configuration is in force/);
  });

  it('applies learner-only changes directly and voter changes through a joint configuration', () => {
    expect(applyConfChange(conf, { changes: [{ type: 'addLearner', id: 'm' }] })).toEqual({
      voters: ['a', 'b', 'c'],
      votersOutgoing: [],
      learners: ['l', 'm'],
    });
    expect(applyConfChange(conf, { changes: [{ type: 'removeNode', id: 'l' }] })).toEqual({
      voters: ['a', 'b', 'c'],
      votersOutgoing: [],
      learners: [],
    });
    expect(
      applyConfChange(conf, {
        changes: [
          { type: 'addVoter', id: 'l' },
          { type: 'removeNode', id: 'a' },
        ],
      }),
    ).toEqual({ voters: ['b', 'c', 'l'], votersOutgoing: ['a', 'b', 'c'], learners: [] });
  });

  it('rejects malformed changes with TypeError and non-leaders with NotLeaderError', () => {
    const net = new Network(['a', 'b', 'c']);
    net.elect('a');
    expect(() =>
      net.core('a').proposeConfChange({ changes: [{ type: 'promote', id: 'b' }] } as never),
    ).toThrow(TypeError);
    expect(() => net.core('a').proposeConfChange({} as never)).toThrow(TypeError);
    expect(() =>
      net.core('b').proposeConfChange({ changes: [{ type: 'addLearner', id: 'x' }] }),
    ).toThrow(NotLeaderError);
  });

  it('encodes and decodes every change exactly (property)', () => {
    const item = fc.record(
      {
        type: fc.constantFrom('addVoter' as const, 'addLearner' as const, 'removeNode' as const),
        id: fc.string({ minLength: 1 }),
        url: fc.webUrl(),
      },
      { requiredKeys: ['type', 'id'] },
    );
    fc.assert(
      fc.property(fc.array(item, { maxLength: 6 }), (changes) => {
        const change: ConfChange = { changes };
        expect(decodeConfChange(encodeConfChange(change))).toEqual(change);
      }),
    );
  });

  it('decodes garbage only into BadRequestError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (payload) => {
        try {
          decodeConfChange(payload);
        } catch (error) {
          expect(error).toBeInstanceOf(BadRequestError);
        }
      }),
    );
    for (const text of [
      '{}',
      '{"changes":3}',
      '{"changes":[1]}',
      '{"changes":[{"type":"x","id":"a"}]}',
      '{"changes":[{"type":"addVoter","id":""}]}',
    ]) {
      expect(() => decodeConfChange(bytes(text))).toThrow(BadRequestError);
    }
  });
});
