// Checks the simulator's building blocks in isolation: the PRNG against xoshiro128**'s
// reference output, the event queue's stable ordering, network cuts, trace ring and digest,
// the durable store's crash semantics, and that each safety check fires on a hand-made
// violation (so the checks can fail at all).
import { describe, expect, it } from 'vitest';
import { TsLog } from '../../src/kernel/reference.js';
import { EntryBatchBuilder, EntryType } from '../../src/raft/batch.js';
import type { Message } from '../../src/raft/types.js';
import { DurableStore } from '../../src/sim/durable.js';
import { EventQueue } from '../../src/sim/event-queue.js';
import { Network } from '../../src/sim/network.js';
import { Xoshiro128 } from '../../src/sim/prng.js';
import { SafetyMonitor, SafetyViolation } from '../../src/sim/safety.js';
import { Trace } from '../../src/sim/trace.js';

const bytes = (text: string) => new TextEncoder().encode(text);

function batch(first: number, entries: [term: number, payload: string][]) {
  const builder = new EntryBatchBuilder(first);
  for (const [term, payload] of entries) builder.add(term, EntryType.Normal, bytes(payload));
  return builder.finish();
}

function logWith(entries: [number, string][]) {
  const log = new TsLog({ entriesInitial: 16, payloadBytesInitial: 0 });
  if (entries.length > 0) log.append(batch(1, entries));
  return log;
}

describe('Xoshiro128', () => {
  it('matches the reference xoshiro128** output for state (1, 2, 3, 4)', () => {
    const random = Xoshiro128.fromState(1, 2, 3, 4);
    const out = Array.from({ length: 10 }, () => random.nextUint32());
    // From the reference C implementation (Blackman & Vigna), same state.
    expect(out).toEqual([
      11520, 0, 5927040, 70819200, 2031721883, 1637235492, 1287239034, 3734860849, 3729100597,
      4258142804,
    ]);
  });

  it('is a pure function of the seed, and different seeds differ', () => {
    const draw = (seed: number) => {
      const random = new Xoshiro128(seed);
      return Array.from({ length: 8 }, () => random.nextUint32());
    };
    expect(draw(42)).toEqual(draw(42));
    expect(draw(42)).not.toEqual(draw(43));
    expect(draw(2 ** 40 + 1)).not.toEqual(draw(1));
    expect(() => new Xoshiro128(1.5)).toThrow(RangeError);
  });

  it('keeps draws in range', () => {
    const random = new Xoshiro128(7);
    let outside = 0;
    const counts = [0, 0, 0];
    for (let k = 0; k < 10_000; k++) {
      const f = random.float();
      if (!(f >= 0 && f < 1)) outside++;
      const n = random.between(3, 5);
      if (n < 3 || n > 5) outside++;
      else counts[n - 3]!++;
    }
    expect(outside).toBe(0);
    for (const count of counts) expect(count).toBeGreaterThan(3000);
    expect(() => random.int(0)).toThrow(RangeError);
    expect(() => random.pick([])).toThrow(RangeError);
  });
});

describe('EventQueue', () => {
  it('pops by time, and in insertion order at equal times', () => {
    const queue = new EventQueue<string>();
    const random = new Xoshiro128(1);
    const pushed: [number, string][] = [];
    for (let k = 0; k < 500; k++) {
      const time = random.int(20);
      pushed.push([time, `e${k}`]);
      queue.push(time, `e${k}`);
    }
    const expected = [...pushed].sort((a, b) => a[0] - b[0]).map(([, item]) => item);
    const popped: string[] = [];
    for (let next = queue.pop(); next !== undefined; next = queue.pop()) popped.push(next.item);
    // Array.prototype.sort is stable, so this is (time, insertion) order.
    expect(popped).toEqual(expected);
    expect(queue.peekTime()).toBe(Infinity);
  });
});

describe('Network', () => {
  it('cuts symmetric, one-way and healed links', () => {
    const network = new Network(new Xoshiro128(1));
    network.cutBetween(['a'], ['b', 'c']);
    network.cutOneWay('d', 'e');
    expect(network.isCut('a', 'b')).toBe(true);
    expect(network.isCut('c', 'a')).toBe(true);
    expect(network.isCut('b', 'c')).toBe(false);
    expect(network.isCut('d', 'e')).toBe(true);
    expect(network.isCut('e', 'd')).toBe(false);
    network.heal();
    expect(network.isCut('a', 'b')).toBe(false);
  });

  it('draws latency within the configured ranges', () => {
    const network = new Network(new Xoshiro128(3));
    network.conditions = {
      lossRate: 0.5,
      duplicateRate: 0,
      latencyMsMin: 1,
      latencyMsMax: 2,
      slowRate: 0,
      slowMsMax: 0,
    };
    let lost = 0;
    for (let k = 0; k < 1000; k++) {
      const latency = network.drawLatency();
      expect(latency >= 1 && latency <= 2).toBe(true);
      if (network.drawLoss()) lost++;
      expect(network.drawDuplicate()).toBe(false);
    }
    expect(lost).toBeGreaterThan(400);
    expect(lost).toBeLessThan(600);
  });
});

describe('Trace', () => {
  it('keeps the last records in order and digests every line', () => {
    const make = () => {
      const trace = new Trace({ ringSize: 3, digest: true, keepAll: true });
      for (let k = 0; k < 5; k++) trace.record(k, 'n1', () => `event ${k}`);
      return trace;
    };
    const trace = make();
    expect(trace.tail().map((line) => line.trim())).toEqual([
      '2.000 n1   event 2',
      '3.000 n1   event 3',
      '4.000 n1   event 4',
    ]);
    expect(trace.lines()).toHaveLength(5);
    expect(trace.digest()).toMatch(/^[0-9a-f]{16}$/);
    expect(make().digest()).toBe(trace.digest());
    const other = new Trace({ ringSize: 3, digest: true, keepAll: false });
    for (let k = 0; k < 5; k++) other.record(k, 'n1', () => `event ${k === 4 ? 5 : k}`);
    expect(other.digest()).not.toBe(trace.digest());
  });
});

describe('DurableStore', () => {
  it('keeps only what was saved, replacing entries from their first index', () => {
    const store = new DurableStore();
    store.save(
      null,
      batch(1, [
        [1, 'a'],
        [1, 'b'],
        [1, 'c'],
      ]),
      { term: 1, vote: 'n1', commit: 1 },
    );
    store.save(null, batch(2, [[2, 'B']]), { term: 2, vote: '', commit: 2 });
    const loaded = store.load();
    expect(loaded.hardState).toEqual({ term: 2, vote: '', commit: 2 });
    expect(loaded.log.lastIndex()).toBe(2);
    expect(loaded.log.termAt(2)).toBe(2);
    expect(new TextDecoder().decode(loaded.log.payloadAt(2))).toBe('B');
    // The loaded log is a copy: changing it leaves the store alone.
    loaded.log.truncateFrom(1);
    expect(store.load().log.lastIndex()).toBe(2);
  });

  it('resets the log for a received snapshot and compacts behind its own', () => {
    const store = new DurableStore();
    store.save(
      null,
      batch(1, [
        [1, 'a'],
        [1, 'b'],
        [1, 'c'],
        [1, 'd'],
      ]),
      null,
    );
    const conf = { voters: ['n1'], votersOutgoing: [], learners: [] };
    store.saveSnapshot({ meta: { index: 3, term: 1, conf }, data: bytes('s3') }, 2);
    let loaded = store.load();
    expect(loaded.log.firstIndex()).toBe(3);
    expect(loaded.log.termAt(2)).toBe(1);
    expect(loaded.snapshot?.meta.index).toBe(3);
    store.save({ meta: { index: 10, term: 3, conf }, data: bytes('s10') }, null, null);
    loaded = store.load();
    expect(loaded.log.firstIndex()).toBe(11);
    expect(loaded.log.termAt(10)).toBe(3);
    expect(store.findSnapshot(3, 1)?.data).toEqual(bytes('s3'));
    expect(store.findSnapshot(10, 3)?.data).toEqual(bytes('s10'));
  });
});

describe('SafetyMonitor', () => {
  const expectViolation = (property: string, action: () => void) => {
    try {
      action();
      expect.unreachable(`expected a ${property} violation`);
    } catch (error) {
      expect(error).toBeInstanceOf(SafetyViolation);
      expect((error as SafetyViolation).property).toBe(property);
    }
  };

  it('catches two leaders in one term', () => {
    const safety = new SafetyMonitor();
    safety.onLeader('n1', 3, logWith([]));
    safety.onLeader('n1', 3, logWith([]));
    expectViolation('election safety', () => safety.onLeader('n2', 3, logWith([])));
  });

  it('catches logs that disagree on an entry or on what precedes it', () => {
    const safety = new SafetyMonitor();
    const a = logWith([
      [1, 'x'],
      [2, 'y'],
    ]);
    safety.onEntries(
      'n1',
      batch(1, [
        [1, 'x'],
        [2, 'y'],
      ]),
      a,
    );
    const b = logWith([
      [1, 'x'],
      [2, 'z'],
    ]);
    expectViolation('log matching', () => safety.onEntries('n2', batch(2, [[2, 'z']]), b));
    const c = logWith([
      [2, 'q'],
      [2, 'y'],
    ]);
    expectViolation('log matching', () => safety.onEntries('n3', batch(2, [[2, 'y']]), c));
  });

  it('catches a committed entry missing from a new leader, or applied differently', () => {
    const safety = new SafetyMonitor();
    const log = logWith([
      [1, 'x'],
      [1, 'y'],
    ]);
    safety.onCommit('n1', 2, log);
    expectViolation('leader completeness', () => safety.onLeader('n2', 2, logWith([[1, 'x']])));
    expectViolation('leader completeness', () =>
      safety.onLeader(
        'n3',
        3,
        logWith([
          [1, 'x'],
          [2, 'w'],
        ]),
      ),
    );
    safety.onApply(
      'n1',
      batch(1, [
        [1, 'x'],
        [1, 'y'],
      ]),
    );
    expectViolation('state machine safety', () => safety.onApply('n2', batch(2, [[1, 'other']])));
    // A deposed leader may still append at a committed index; that alone is no violation.
    safety.onEntries(
      'n2',
      batch(2, [[2, 'w']]),
      logWith([
        [1, 'x'],
        [2, 'w'],
      ]),
    );
    expectViolation('commit monotonicity', () => safety.checkCommitMonotonic('n1', 4, 5));
  });

  it('checks the Ready contract for responses', () => {
    const safety = new SafetyMonitor();
    const response = (rpcId: number, type: 'appendResp' | 'heartbeatResp' = 'appendResp') =>
      ({
        type,
        from: 'n2',
        to: 'n1',
        term: 1,
        rpcId,
        success: true,
        matchIndex: 0,
        rejectIndex: 0,
        hintIndex: 0,
        hintTerm: 0,
        context: 0,
      }) as Message;
    safety.onRequest('n2', 7, 'append');
    expectViolation('ready contract', () => safety.onReadyMessages('n2', [response(7)], []));
    safety.onRequest('n2', 8, 'append');
    safety.onReadyMessages('n2', [], [response(8)]);
    // A second answer to the same request.
    expectViolation('ready contract', () => safety.onReadyMessages('n2', [], [response(8)]));
    safety.onRequest('n2', 9, 'heartbeat');
    expectViolation('ready contract', () => safety.onReadyMessages('n2', [], [response(9)]));
    // A request not answered in the Ready after it counts as dropped: a late answer is wrong.
    safety.onRequest('n2', 10, 'append');
    safety.onReadyMessages('n2', [], []);
    expectViolation('ready contract', () => safety.onReadyMessages('n2', [], [response(10)]));
  });
});
