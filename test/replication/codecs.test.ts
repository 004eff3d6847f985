// Checks the encodings replication relies on and the replicated region configuration: region
// commands applied deterministically (cursors only rise, removed regions keep no cursor),
// their state round-tripping through snapshots, and fast-check properties that the CBOR bodies
// of /v1/replication/*, the packed writes and the v2 snapshot round-trip, and that arbitrary or
// corrupted bytes are only ever refused with a typed error.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { resolveKvLimits } from '../../src/config.js';
import { ConflictResolutionStrategy } from '../../src/conflict/conflict-resolver.js';
import { BadRequestError, StorageError } from '../../src/errors.js';
import { KvStateMachine } from '../../src/kv/state-machine.js';
import {
  decodeRemoteBatch,
  decodeShippedWrites,
  decodeStampedCommand,
  encodeRemoteBatch,
  encodeShippedWrites,
  encodeStampedCommand,
} from '../../src/kv/versioned-codec.js';
import {
  RegionState,
  decodeRegionCommand,
  encodeRegionCommand,
} from '../../src/replication/region-state.js';
import {
  decodeHeartbeatRequest,
  decodeRegionAnswer,
  decodeShipRequest,
  encodeBody,
} from '../../src/replication/wire.js';

const limits = resolveKvLimits();
const bytes = (text: string) => new TextEncoder().encode(text);

describe('region state', () => {
  it('applies region commands deterministically and refuses bad ones', () => {
    const state = new RegionState();
    const apply = (command: Parameters<typeof encodeRegionCommand>[0]) =>
      state.apply(encodeRegionCommand(command));
    expect(apply({ op: 'add', id: 'eu', url: 'http://eu.test:7001', primary: true })).toEqual({
      kind: 'ok',
      changed: true,
    });
    expect(apply({ op: 'add', id: 'ap', url: 'http://ap.test' })).toEqual({
      kind: 'ok',
      changed: true,
    });
    expect(state.primary).toBe('eu');
    expect(apply({ op: 'cursors', cursors: { eu: 10, ap: 4, gone: 9 } })).toEqual({
      kind: 'ok',
      changed: true,
    });
    // Cursors never go back.
    expect(apply({ op: 'cursors', cursors: { eu: 7 } })).toEqual({ kind: 'ok', changed: false });
    expect(state.cursor('eu')).toBe(10);
    expect(state.cursor('gone')).toBe(0);
    expect(apply({ op: 'primary', id: 'nowhere' })).toEqual({
      kind: 'unknownRegion',
      id: 'nowhere',
    });
    expect(apply({ op: 'remove', id: 'eu' })).toEqual({ kind: 'ok', changed: true });
    expect(state.primary).toBe('');
    expect(state.cursor('eu')).toBe(0);
    expect(apply({ op: 'remove', id: 'eu' })).toEqual({ kind: 'unknownRegion', id: 'eu' });
    const copy = new RegionState();
    copy.restore(state.encode());
    expect(copy.list()).toEqual(state.list());
    expect(copy.cursor('ap')).toBe(4);
    expect(state.apply(bytes('{"op":"add","id":"x y","url":"http://x"}')).kind).toBe('invalid');
    expect(state.apply(bytes('not json')).kind).toBe('invalid');
    expect(() => encodeRegionCommand({ op: 'add', id: 'x', url: 'ftp://x' })).toThrow(TypeError);
    expect(() => decodeRegionCommand(bytes('{"op":"cursors","cursors":{"eu":-1}}'))).toThrow(
      BadRequestError,
    );
    expect(() => copy.restore(bytes('{"version":1,"primary":"zz","regions":[]}'))).toThrow(
      StorageError,
    );
    expect(copy.list()).toEqual(state.list());
  });
});

/** A KvStateMachine with some local history, for realistic versions. */
function history(writes: readonly (readonly [string, string | null, number])[]): KvStateMachine {
  const kv = new KvStateMachine({ region: 'eu' });
  for (const [key, value, wallMs] of writes) {
    const command = value === null ? kv.encodeDelete(key) : kv.encodePut(key, bytes(value));
    kv.apply(
      kv.appliedIndex + 1,
      encodeStampedCommand({ wallMs, logical: 0, node: 'eu' }, command),
    );
  }
  return kv;
}

const writesArbitrary = fc.array(
  fc.tuple(
    fc.constantFrom('a', 'b', 'ключ', '🔑'),
    fc.option(fc.string({ maxLength: 8 }), { freq: 5 }),
    fc.integer({ min: 0, max: 2 ** 40 }),
  ),
  { minLength: 1, maxLength: 12 },
);

describe('properties', () => {
  it('stamped commands, packed writes and remote batches round-trip', () => {
    fc.assert(
      fc.property(writesArbitrary, (writes) => {
        const kv = history(writes);
        const { items, toIndex } = kv.localChangesSince(0, 100, 1 << 20);
        const packed = encodeShippedWrites(items);
        expect(decodeShippedWrites(packed, { fromIndex: 1, toIndex }, limits)).toEqual(items);
        const batch = {
          origin: 'eu',
          fromIndex: 1,
          toIndex,
          strategy: ConflictResolutionStrategy.MULTI_VALUE,
          items,
        };
        expect(decodeRemoteBatch(encodeRemoteBatch(batch), limits)).toEqual(batch);
        const stamp = { wallMs: writes[0]![2], logical: 7, node: 'eu' };
        const command = kv.encodePut('k', bytes('v'));
        const decoded = decodeStampedCommand(encodeStampedCommand(stamp, command));
        expect(decoded.hlc).toEqual(stamp);
        expect(decoded.command).toEqual(command);
      }),
      { numRuns: 200 },
    );
  });

  it('corrupted batches and snapshots are refused with a typed error, never a crash', () => {
    fc.assert(
      fc.property(
        writesArbitrary,
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        fc.boolean(),
        (writes, position, flip, truncate) => {
          const kv = history(writes);
          const { items, toIndex } = kv.localChangesSince(0, 100, 1 << 20);
          const batch = encodeRemoteBatch({
            origin: 'eu',
            fromIndex: 1,
            toIndex,
            strategy: ConflictResolutionStrategy.LATEST_TIMESTAMP,
            items,
          });
          const snapshot = kv.snapshot();
          for (const [source, decode, type] of [
            [batch, (b: Uint8Array) => decodeRemoteBatch(b, limits), BadRequestError],
            [
              snapshot,
              (b: Uint8Array) => new KvStateMachine({ region: 'eu' }).restore(b),
              StorageError,
            ],
          ] as const) {
            const corrupted = truncate ? source.slice(0, position % source.length) : source.slice();
            if (!truncate) corrupted[position % corrupted.length]! ^= flip;
            try {
              decode(corrupted);
            } catch (error) {
              // A flipped byte may still decode (a different value); if not, a typed error.
              expect(error).toBeInstanceOf(type);
            }
          }
        },
      ),
      { numRuns: 300 },
    );
    // A snapshot is covered by its checksum: any flip is caught.
    const snapshot = history([['a', 'x', 1]]).snapshot();
    for (let k = 0; k < snapshot.length; k++) {
      const corrupted = snapshot.slice();
      corrupted[k]! ^= 1;
      expect(() => new KvStateMachine({ region: 'eu' }).restore(corrupted)).toThrow(StorageError);
    }
  });

  it('replication bodies round-trip, and arbitrary bytes only ever give BadRequestError', () => {
    const ship = {
      origin: 'us',
      fromIndex: 3,
      toIndex: 9,
      strategy: ConflictResolutionStrategy.LWW_REGISTER,
      items: Uint8Array.of(0, 0, 0, 0),
    };
    expect(decodeShipRequest(encodeBody(ship), 1 << 20)).toEqual(ship);
    const heartbeat = { origin: 'us', strategy: ConflictResolutionStrategy.LATEST_TIMESTAMP };
    expect(decodeHeartbeatRequest(encodeBody(heartbeat), 1024)).toEqual(heartbeat);
    const answer = { region: 'eu', position: 12, strategy: ConflictResolutionStrategy.MULTI_VALUE };
    expect(decodeRegionAnswer(encodeBody(answer), 1024)).toEqual(answer);
    expect(() => decodeShipRequest(encodeBody({ ...ship, toIndex: 2 }), 1 << 20)).toThrow(
      /toIndex 2 is not an integer >= fromIndex 3/,
    );
    expect(() => decodeShipRequest(encodeBody({ ...ship, origin: '' }), 1 << 20)).toThrow(/origin/);
    expect(() => decodeShipRequest(encodeBody(ship), 10)).toThrow(/more than the limit of 10/);
    expect(() => decodeHeartbeatRequest(encodeBody({ ...heartbeat, strategy: 'X' }), 1024)).toThrow(
      /not a conflict resolution strategy/,
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 96 }), (garbage) => {
        for (const decode of [
          () => decodeShipRequest(garbage, 1 << 20),
          () => decodeHeartbeatRequest(garbage, 1 << 20),
          () => decodeRegionAnswer(garbage, 1 << 20),
          () => decodeRemoteBatch(garbage, limits),
          () => decodeShippedWrites(garbage, { fromIndex: 1, toIndex: 10 }, limits),
        ]) {
          try {
            decode();
          } catch (error) {
            expect(error).toBeInstanceOf(BadRequestError);
          }
        }
      }),
      { numRuns: 1_000 },
    );
  });
});
