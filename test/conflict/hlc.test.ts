// Checks the hybrid logical clock (monotonicity, receive rule, skew flagging, overflow, restart),
// the node-id and timestamp orders against UTF-8 bytes, and the binary encoding, with examples
// and fast-check properties over random clocks and timestamps.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  Hlc,
  compareHlc,
  compareNodeIds,
  decodeHlc,
  encodeHlc,
  hlcLogicalMax,
  hlcWallMsMax,
  type HlcTimestamp,
} from '../../src/conflict/hlc.js';
import { BadRequestError } from '../../src/errors.js';

const utf8 = new TextEncoder();

function bytewise(a: Uint8Array, b: Uint8Array): number {
  return Math.sign(Buffer.compare(a, b));
}

function fakeClock(startMs: number): { now: () => number; set: (ms: number) => void } {
  let ms = startMs;
  return { now: () => ms, set: (next) => (ms = next) };
}

const nodeIdArb = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 8 });
const timestampArb: fc.Arbitrary<HlcTimestamp> = fc.record({
  wallMs: fc.oneof(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: hlcWallMsMax })),
  logical: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: hlcLogicalMax })),
  node: fc.oneof(fc.constantFrom('a', 'b', '\uff61', '\u{1f600}'), nodeIdArb),
});

describe('Hlc', () => {
  it('issues strictly increasing timestamps while the physical clock stands still or goes back', () => {
    const wall = fakeClock(1000);
    const clock = new Hlc({ node: 'n1', wallClockMs: wall.now });
    expect(clock.now()).toEqual({ wallMs: 1000, logical: 0, node: 'n1' });
    expect(clock.now()).toEqual({ wallMs: 1000, logical: 1, node: 'n1' });
    wall.set(900); // NTP stepped the clock back
    expect(clock.now()).toEqual({ wallMs: 1000, logical: 2, node: 'n1' });
    wall.set(1001);
    expect(clock.now()).toEqual({ wallMs: 1001, logical: 0, node: 'n1' });
  });

  it('moves past a received timestamp (Kulkarni receive rule, all four cases)', () => {
    const wall = fakeClock(1000);
    const clock = new Hlc({ node: 'n1', wallClockMs: wall.now });
    clock.now(); // 1000.0
    // remote ahead: take its wall, its logical + 1
    expect(clock.update({ wallMs: 1200, logical: 7, node: 'n2' }).timestamp).toEqual({
      wallMs: 1200,
      logical: 8,
      node: 'n1',
    });
    // same wall as ours and the remote: max logical + 1
    expect(clock.update({ wallMs: 1200, logical: 3, node: 'n2' }).timestamp.logical).toBe(9);
    // remote behind: ours + 1
    expect(clock.update({ wallMs: 10, logical: 99, node: 'n2' }).timestamp).toEqual({
      wallMs: 1200,
      logical: 10,
      node: 'n1',
    });
    // physical clock ahead of both: logical restarts
    wall.set(5000);
    expect(clock.update({ wallMs: 1300, logical: 1, node: 'n2' }).timestamp).toEqual({
      wallMs: 5000,
      logical: 0,
      node: 'n1',
    });
  });

  it('flags a remote too far ahead as skew-suspect but still moves past it', () => {
    const wall = fakeClock(10_000);
    const clock = new Hlc({ node: 'n1', wallClockMs: wall.now, maxClockOffsetMs: 250 });
    const atLimit = clock.update({ wallMs: 10_250, logical: 0, node: 'n2' });
    expect(atLimit).toMatchObject({ skewMs: 250, skewSuspect: false });
    const ahead = clock.update({ wallMs: 20_000, logical: 5, node: 'n2' });
    expect(ahead.skewSuspect).toBe(true);
    expect(ahead.skewMs).toBe(10_000);
    expect(compareHlc(ahead.timestamp, { wallMs: 20_000, logical: 5, node: 'n2' })).toBe(1);
    expect(compareHlc(clock.now(), ahead.timestamp)).toBe(1);
    expect(clock.skewStats).toEqual({ skewSuspect: 1, skewMsMax: 10_000 });
  });

  it('moves the wall time on by 1 ms when the logical counter is full', () => {
    const clock = new Hlc({ node: 'n1', wallClockMs: () => 0 });
    const next = clock.update({ wallMs: 50, logical: hlcLogicalMax, node: 'n2' }).timestamp;
    expect(next).toEqual({ wallMs: 51, logical: 0, node: 'n1' });
    expect(() =>
      clock.update({ wallMs: hlcWallMsMax, logical: hlcLogicalMax, node: 'n2' }),
    ).toThrow(RangeError);
  });

  it('never issues at or below the last timestamp it is restarted with', () => {
    const clock = new Hlc({
      node: 'n1',
      wallClockMs: () => 100,
      last: { wallMs: 500, logical: 3, node: 'n1' },
    });
    expect(clock.now()).toEqual({ wallMs: 500, logical: 4, node: 'n1' });
  });

  it('rejects bad options, bad wall clock readings and malformed remote timestamps', () => {
    expect(() => new Hlc({ node: '' })).toThrow(RangeError);
    expect(() => new Hlc({ node: 'x'.repeat(256) })).toThrow(/256 bytes/);
    expect(() => new Hlc({ node: '\ud800' })).toThrow(/lone surrogate/);
    expect(() => new Hlc({ node: 'n', maxClockOffsetMs: -1 })).toThrow(RangeError);
    const broken = new Hlc({ node: 'n', wallClockMs: () => Number.NaN });
    expect(() => broken.now()).toThrow(/Invalid wall clock reading: NaN/);
    const clock = new Hlc({ node: 'n', wallClockMs: () => 1 });
    const before = clock.last;
    for (const bad of [
      null,
      { wallMs: -1, logical: 0, node: 'a' },
      { wallMs: 1.5, logical: 0, node: 'a' },
      { wallMs: hlcWallMsMax + 1, logical: 0, node: 'a' },
      { wallMs: 1, logical: hlcLogicalMax + 1, node: 'a' },
      { wallMs: 1, logical: 0, node: 7 },
      { wallMs: 1, logical: 0, node: '' },
    ]) {
      expect(() => clock.update(bad as unknown as HlcTimestamp)).toThrow(/remote HLC timestamp/);
    }
    expect(clock.last).toEqual(before);
  });

  it('keeps every issued timestamp above everything it saw, within the skew it was shown', () => {
    const event = fc.oneof(
      fc.record({ kind: fc.constant('tick' as const), ms: fc.integer({ min: -50, max: 50 }) }),
      fc.record({ kind: fc.constant('now' as const) }),
      fc.record({
        kind: fc.constant('update' as const),
        aheadMs: fc.integer({ min: -100, max: 100 }),
        logical: fc.integer({ min: 0, max: 5 }),
      }),
    );
    fc.assert(
      fc.property(fc.array(event, { maxLength: 60 }), (events) => {
        let physicalMs = 1000;
        let seenWallMax = physicalMs; // the largest wall time the clock may legitimately reach
        const clock = new Hlc({ node: 'me', wallClockMs: () => physicalMs });
        let previous: HlcTimestamp | null = null;
        for (const e of events) {
          let issued: HlcTimestamp;
          if (e.kind === 'tick') {
            physicalMs = Math.max(0, physicalMs + e.ms);
            continue;
          } else if (e.kind === 'now') {
            issued = clock.now();
          } else {
            const remote = {
              wallMs: Math.max(0, physicalMs + e.aheadMs),
              logical: e.logical,
              node: 'r',
            };
            issued = clock.update(remote).timestamp;
            expect(compareHlc(issued, remote)).toBe(1);
            seenWallMax = Math.max(seenWallMax, remote.wallMs);
          }
          seenWallMax = Math.max(seenWallMax, physicalMs);
          if (previous !== null) expect(compareHlc(issued, previous)).toBe(1);
          expect(issued.wallMs).toBeGreaterThanOrEqual(physicalMs);
          expect(issued.wallMs).toBeLessThanOrEqual(seenWallMax);
          previous = issued;
        }
      }),
    );
  });
});

describe('orders', () => {
  it('compares node ids by code point, which is UTF-8 byte order, not UTF-16 order', () => {
    // U+FF61 sorts before U+1F600 by code point, after it by UTF-16 code unit (0xD83D).
    expect('\u{1f600}' < '\uff61').toBe(true);
    expect(compareNodeIds('\uff61', '\u{1f600}')).toBeLessThan(0);
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), fc.string({ unit: 'grapheme' }), (a, b) => {
        expect(Math.sign(compareNodeIds(a, b))).toBe(bytewise(utf8.encode(a), utf8.encode(b)));
      }),
    );
  });

  it('orders timestamps by wall, then logical, then node id — a total order', () => {
    expect(
      compareHlc({ wallMs: 2, logical: 0, node: 'a' }, { wallMs: 1, logical: 9, node: 'z' }),
    ).toBe(1);
    expect(
      compareHlc({ wallMs: 1, logical: 2, node: 'a' }, { wallMs: 1, logical: 1, node: 'z' }),
    ).toBe(1);
    expect(
      compareHlc({ wallMs: 1, logical: 1, node: 'b' }, { wallMs: 1, logical: 1, node: 'a' }),
    ).toBe(1);
    fc.assert(
      fc.property(timestampArb, timestampArb, timestampArb, (a, b, c) => {
        expect(compareHlc(a, b) + compareHlc(b, a)).toBe(0);
        expect(compareHlc(a, b) === 0).toBe(
          a.wallMs === b.wallMs && a.logical === b.logical && a.node === b.node,
        );
        if (compareHlc(a, b) <= 0 && compareHlc(b, c) <= 0)
          expect(compareHlc(a, c)).toBeLessThanOrEqual(0);
      }),
    );
  });
});

describe('encoding', () => {
  it('round-trips, and sorts bytewise exactly like compareHlc', () => {
    fc.assert(
      fc.property(timestampArb, timestampArb, (a, b) => {
        const ea = encodeHlc(a);
        expect(decodeHlc(ea)).toEqual(a);
        expect(ea.length).toBe(10 + utf8.encode(a.node).length);
        expect(bytewise(ea, encodeHlc(b))).toBe(compareHlc(a, b));
      }),
    );
  });

  it('keeps a leading byte-order mark in a node id', () => {
    const ts = { wallMs: 1, logical: 2, node: '\ufeffn' };
    expect(decodeHlc(encodeHlc(ts))).toEqual(ts);
  });

  it('refuses malformed bytes with BadRequestError', () => {
    const good = encodeHlc({ wallMs: 1, logical: 2, node: 'n' });
    const invalidUtf8 = Uint8Array.from([...good.subarray(0, 10), 0xc3, 0x28]);
    const surrogate = Uint8Array.from([...good.subarray(0, 10), 0xed, 0xa0, 0x80]);
    for (const bad of [good.subarray(0, 10), new Uint8Array(266), invalidUtf8, surrogate]) {
      expect(() => decodeHlc(bad)).toThrow(BadRequestError);
      try {
        decodeHlc(bad);
      } catch (error) {
        expect((error as BadRequestError).code).toBe('BAD_REQUEST');
      }
    }
    expect(() => encodeHlc({ wallMs: -1, logical: 0, node: 'n' })).toThrow(RangeError);
    expect(() => decodeHlc('nope' as unknown as Uint8Array)).toThrow(TypeError);
  });
});
