// ReadIndex (linearizable reads confirmed by a heartbeat quorum) and leadership transfer
// (catch up, TimeoutNow, refusal of proposals, abort after an election timeout) on real cores.
import { describe, expect, it } from 'vitest';
import { NotLeaderError, PhantomError } from '../../src/errors.js';
import { Network, bytes } from './harness.js';

describe('ReadIndex', () => {
  it('releases a read once a quorum confirmed leadership, at the commit index of the call', () => {
    const net = new Network(['a', 'b', 'c']);
    net.elect('a');
    const { index } = net.propose('a', 'x');
    net.core('a').readIndex(42);
    net.stabilize();
    expect(net.node('a').readStates).toEqual([{ index, context: 42 }]);
  });

  it('confirms several pending reads with one answer, in order', () => {
    const net = new Network(['a', 'b', 'c']);
    net.elect('a');
    net.cut('a', 'b');
    net.cut('a', 'c');
    net.core('a').readIndex(1);
    net.propose('a', 'x');
    net.core('a').readIndex(2);
    net.stabilize();
    expect(net.node('a').readStates).toEqual([]);
    net.heal();
    net.tickAll(1);
    expect(net.node('a').readStates.map((read) => read.context)).toEqual([1, 2]);
    // The second read was asked while x was uncommitted: its index is the commit at the call.
    expect(net.node('a').readStates[1]!.index).toBe(net.node('a').readStates[0]!.index);
  });

  it('a new leader serves reads only after committing an entry of its term', () => {
    const net = new Network(['a', 'b', 'c']);
    net.dropIf((m) => m.type === 'append' || m.type === 'appendResp');
    net.elect('a');
    net.core('a').readIndex(7);
    net.tickAll(2);
    // Heartbeats were answered, but the Noop is not committed: the read waits.
    expect(net.node('a').readStates).toEqual([]);
    net.heal();
    net.tickAll(2);
    const commit = net.core('a').status().commit;
    expect(net.node('a').readStates).toEqual([{ index: commit, context: 7 }]);
    expect(commit).toBeGreaterThanOrEqual(1);
  });

  it('an isolated leader never confirms a read', () => {
    const net = new Network(['a', 'b', 'c']);
    net.elect('a');
    net.isolate('a');
    net.core('a').readIndex(1);
    net.tickAll(30);
    expect(net.node('a').readStates).toEqual([]);
    expect(net.core('a').status().role).not.toBe('leader');
  });

  it('a lone voter answers at once', () => {
    const net = new Network(['a']);
    net.elect('a');
    net.core('a').readIndex(3);
    net.stabilize();
    expect(net.node('a').readStates).toEqual([{ index: 1, context: 3 }]);
  });

  it('refuses on a follower, and a context already pending', () => {
    const net = new Network(['a', 'b', 'c']);
    net.elect('a');
    expect(() => net.core('b').readIndex(1)).toThrow(NotLeaderError);
    net.isolate('a');
    net.core('a').readIndex(1);
    expect(() => net.core('a').readIndex(1)).toThrow(/already pending/);
    expect(() => net.core('a').readIndex(Number.NaN)).toThrow(TypeError);
  });
});

describe('leadership transfer', () => {
  it('hands leadership to an up-to-date follower despite the followers\u2019 leases', () => {
    const net = new Network(['a', 'b', 'c'], { recordMessages: true });
    net.elect('a');
    net.propose('a', 'x');
    net.core('a').transferLeadership('b');
    net.stabilize();
    expect(net.core('b').status()).toMatchObject({ role: 'leader', term: 2 });
    expect(net.core('a').status()).toMatchObject({ role: 'follower', leader: 'b' });
    expect(net.sent.filter((m) => m.type === 'timeoutNow').map((m) => m.to)).toEqual(['b']);
  });

  it('first brings a lagging target up to date', () => {
    const net = new Network(['a', 'b', 'c'], { recordMessages: true });
    net.elect('a');
    net.cut('a', 'c');
    for (let k = 0; k < 5; k++) net.propose('a', `x${k}`);
    net.heal();
    net.sent.length = 0;
    net.core('a').transferLeadership('c');
    net.stabilize();
    const types = net.sent.filter((m) => m.to === 'c' && m.from === 'a').map((m) => m.type);
    expect(types.indexOf('append')).toBeLessThan(types.indexOf('timeoutNow'));
    expect(net.leader().id).toBe('c');
    expect(net.core('c').status().lastIndex).toBeGreaterThanOrEqual(6);
  });

  it('refuses proposals during the transfer and gives up after an election timeout', () => {
    const net = new Network(['a', 'b', 'c']);
    net.elect('a');
    net.cut('a', 'c');
    net.core('a').transferLeadership('c');
    let error: unknown;
    try {
      net.core('a').propose(bytes('x'));
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(PhantomError);
    expect((error as PhantomError).code).toBe('LEADERSHIP_TRANSFER');
    expect(net.core('a').status().transferee).toBe('c');
    net.tick('a', 10);
    expect(net.core('a').status()).toMatchObject({ role: 'leader', transferee: '' });
    expect(() => net.core('a').propose(bytes('x'))).not.toThrow();
  });

  it('refuses a target that is not a voter, ignores itself, and needs a leader', () => {
    const net = new Network(['a', 'b', 'c'], { learners: ['l'] });
    net.elect('a');
    expect(() => net.core('a').transferLeadership('l')).toThrow(/not a voter/);
    expect(() => net.core('a').transferLeadership('zz')).toThrow(RangeError);
    net.core('a').transferLeadership('a');
    expect(net.core('a').status().transferee).toBe('');
    expect(() => net.core('b').transferLeadership('c')).toThrow(NotLeaderError);
  });
});
