// LocalTransport delivers messages and answers between connected nodes and fails them, with
// LinkDownError, across cut links, partitions and random drops; checked with stand-in nodes.
import { describe, expect, it } from 'vitest';
import { LinkDownError, LocalTransport } from '../../src/consensus/local-transport.js';
import type { RaftConsensus, SendMessageCallback } from '../../src/consensus/raft-consensus.js';
import type { HeartbeatRequest, Message } from '../../src/raft/types.js';

/** A stand-in node that answers every heartbeat and records what it received. */
class FakeNode {
  readonly received: Message[] = [];
  send: SendMessageCallback | null = null;
  constructor(readonly id: string) {}
  status() {
    return { id: this.id };
  }
  registerSendCallback(callback: SendMessageCallback) {
    this.send = callback;
  }
  handleMessage(message: Message): Promise<Message | null> {
    this.received.push(message);
    if (message.type !== 'heartbeat') return Promise.resolve(null);
    return Promise.resolve({
      type: 'heartbeatResp',
      from: this.id,
      to: message.from,
      term: message.term,
      context: message.context,
    });
  }
  ping(to: string): Promise<Message | null> {
    const message: HeartbeatRequest = {
      type: 'heartbeat',
      from: this.id,
      to,
      term: 1,
      commit: 0,
      context: 3,
    };
    return this.send!({ id: to, host: '', port: 0 }, message);
  }
}

function network(ids: string[], options = {}) {
  const transport = new LocalTransport(options);
  const nodes = new Map(ids.map((id) => [id, new FakeNode(id)]));
  for (const node of nodes.values()) transport.connect(node as unknown as RaftConsensus);
  return { transport, node: (id: string) => nodes.get(id)! };
}

describe('LocalTransport', () => {
  it('delivers a request and brings back the answer', async () => {
    const { transport, node } = network(['a', 'b']);
    const answer = await node('a').ping('b');
    expect(answer).toMatchObject({ type: 'heartbeatResp', from: 'b', to: 'a', context: 3 });
    expect(node('b').received.length).toBe(1);
    expect(transport.stats).toEqual({ delivered: 2, dropped: 0 });
  });

  it('fails across a cut link, in the cut direction only', async () => {
    const { transport, node } = network(['a', 'b']);
    transport.cutOneWay('a', 'b');
    await expect(node('a').ping('b')).rejects.toBeInstanceOf(LinkDownError);
    expect(node('b').received.length).toBe(0);
    // b -> a is up, but the answer a -> b is cut: the request arrives, the answer is lost.
    await expect(node('b').ping('a')).rejects.toBeInstanceOf(LinkDownError);
    expect(node('a').received.length).toBe(1);
    transport.heal();
    await expect(node('a').ping('b')).resolves.not.toBeNull();
  });

  it('partitions, isolates and disconnects', async () => {
    const { transport, node } = network(['a', 'b', 'c', 'd']);
    transport.partition(['a', 'b'], ['c', 'd']);
    await expect(node('a').ping('b')).resolves.not.toBeNull();
    await expect(node('a').ping('c')).rejects.toThrow(/link is down/);
    transport.heal();
    transport.isolate('d');
    await expect(node('c').ping('d')).rejects.toBeInstanceOf(LinkDownError);
    await expect(node('d').ping('a')).rejects.toBeInstanceOf(LinkDownError);
    transport.heal();
    transport.disconnect('b');
    await expect(node('a').ping('b')).rejects.toBeInstanceOf(LinkDownError);
  });

  it('drops a share of messages at random, from the given source', async () => {
    let calls = 0;
    const { transport, node } = network(['a', 'b'], {
      random: () => (calls++ % 2 === 0 ? 0.1 : 0.9),
    });
    transport.setDropRate(0.5);
    await expect(node('a').ping('b')).rejects.toBeInstanceOf(LinkDownError);
    expect(() => transport.setDropRate(2)).toThrow(RangeError);
    expect(() => new LocalTransport({ delayMs: -1 })).toThrow(RangeError);
  });

  it('waits delayMs per hop', async () => {
    const { node } = network(['a', 'b'], { delayMs: 20 });
    const started = Date.now();
    await node('a').ping('b');
    expect(Date.now() - started).toBeGreaterThanOrEqual(35);
  });
});
