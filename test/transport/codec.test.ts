// Checks the CBOR codec: property round trips of every message type, field-by-field rejection
// with BadRequestError, the structure guard, alignment handling, and fuzzing (fast-check).
import { Encoder } from 'cbor-x';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BadRequestError } from '../../src/errors.js';
import { EntryBatchBuilder, emptyBatch } from '../../src/raft/batch.js';
import type { Message } from '../../src/raft/types.js';
import {
  checkCborStructure,
  decodeMessage,
  decodeSnapshotChunk,
  encodeMessage,
  encodeSnapshotChunk,
  float64ArrayOf,
  littleEndianBytesOf,
  swapBytes,
  uint32ArrayOf,
  validateMessage,
  type SnapshotChunk,
} from '../../src/transport/codec.js';
import {
  comparable,
  makeAppend,
  makeBatch,
  makeSnapshotRequest,
  messageArb,
  mutate,
  mutationArb,
} from './helpers.js';

// Plain CBOR as a peer would send it: byte strings untagged, no record extension.
const plainEncoder = new Encoder({ useRecords: false, tagUint8Array: false });
const encodeCbor = (value: unknown): Uint8Array => plainEncoder.encode(value);

/** The error `action` throws (fails the test when it throws nothing). */
function thrown(action: () => unknown): unknown {
  try {
    action();
  } catch (error) {
    return error;
  }
  throw new Error('expected an error, got none');
}

/** Encodes a hand-made wire object (bypassing encodeMessage's checks) and decodes it. */
function decodeWire(wire: unknown): Message {
  return decodeMessage(encodeCbor(wire));
}

/** The plain wire form of an append, to damage field by field. */
function appendWire(): Record<string, unknown> & { entries: Record<string, unknown> } {
  const batch = makeBatch(11, 3, 4, 2);
  return {
    type: 'append',
    from: 'n1',
    to: 'n2',
    term: 2,
    prevLogIndex: 10,
    prevLogTerm: 1,
    commit: 9,
    entries: {
      firstIndex: 11,
      count: 3,
      terms: new Uint8Array(batch.terms.buffer, batch.terms.byteOffset, 24).slice(),
      types: batch.types.slice(),
      ends: new Uint8Array(batch.ends.buffer, batch.ends.byteOffset, 12).slice(),
      data: batch.data.slice(),
    },
  };
}

function expectBadRequest(action: () => unknown, pattern: RegExp): void {
  const error = thrown(action);
  expect(error).toBeInstanceOf(BadRequestError);
  expect((error as BadRequestError).code).toBe('BAD_REQUEST');
  expect((error as Error).message).toMatch(pattern);
}

describe('round trip', () => {
  it('decodes every encoded message to an equal message (property)', () => {
    fc.assert(
      fc.property(messageArb, (message) => {
        const decoded = decodeMessage(encodeMessage(message));
        expect(comparable(decoded)).toEqual(comparable(message));
      }),
      { numRuns: 2000 },
    );
  });

  it('keeps rpcId when present and omits it when absent', () => {
    const withId = decodeMessage(
      encodeMessage({ type: 'timeoutNow', from: 'a', to: 'b', term: 1, rpcId: 77 }),
    );
    expect(withId.rpcId).toBe(77);
    const without = decodeMessage(
      encodeMessage({ type: 'timeoutNow', from: 'a', to: 'b', term: 1 }),
    );
    expect(Object.hasOwn(without, 'rpcId')).toBe(false);
  });

  it('sends only the first count entries of a batch whose arrays are longer', () => {
    const builder = new EntryBatchBuilder(5, 64, 4096);
    builder.add(1, 0, new Uint8Array([1, 2]));
    builder.add(1, 2, new Uint8Array([3]));
    const batch = builder.finish();
    const padded = {
      ...batch,
      terms: new Float64Array([1, 1, 99, 99]),
      types: new Uint8Array([0, 2, 7, 7]),
      ends: new Uint32Array([2, 3, 9, 9]),
      data: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9]),
    };
    const decoded = decodeMessage(encodeMessage(makeAppend(padded)));
    expect(decoded.type).toBe('append');
    if (decoded.type !== 'append') return;
    expect(Array.from(decoded.entries.terms)).toEqual([1, 1]);
    expect(Array.from(decoded.entries.ends)).toEqual([2, 3]);
    expect(Array.from(decoded.entries.data)).toEqual([1, 2, 3]);
  });

  it('round-trips an empty append (a probe) and keeps its firstIndex', () => {
    const message = makeAppend(emptyBatch(42));
    const decoded = decodeMessage(encodeMessage(message));
    expect(comparable(decoded)).toEqual(comparable(message));
  });

  it('round-trips snapshot chunks', () => {
    const request = makeSnapshotRequest();
    const chunks: SnapshotChunk[] = [
      {
        from: 'n1',
        transferId: 9,
        offset: 0,
        total: 5,
        done: false,
        data: new Uint8Array([1, 2]),
        request,
        crc32: null,
      },
      {
        from: 'n1',
        transferId: 9,
        offset: 2,
        total: 5,
        done: true,
        data: new Uint8Array([3, 4, 5]),
        request: null,
        crc32: 123,
      },
      {
        from: 'n1',
        transferId: 9,
        offset: 0,
        total: 0,
        done: true,
        data: new Uint8Array(0),
        request,
        crc32: 0,
      },
    ];
    for (const chunk of chunks) {
      expect(decodeSnapshotChunk(encodeSnapshotChunk(chunk))).toEqual(chunk);
    }
  });
});

describe('packed entries', () => {
  it('views aligned byte strings without copying and copies unaligned ones', () => {
    const source = new Float64Array([1, 2, 3]);
    const aligned = new Uint8Array(source.buffer);
    expect(float64ArrayOf(aligned).buffer).toBe(source.buffer);
    const shifted = new Uint8Array(25);
    shifted.set(aligned, 1);
    const unaligned = shifted.subarray(1);
    const copied = float64ArrayOf(unaligned);
    expect(copied.buffer).not.toBe(shifted.buffer);
    expect(Array.from(copied)).toEqual([1, 2, 3]);

    const ends = new Uint32Array([7, 8]);
    expect(uint32ArrayOf(new Uint8Array(ends.buffer)).buffer).toBe(ends.buffer);
    const odd = new Uint8Array(9);
    odd.set(new Uint8Array(ends.buffer), 1);
    expect(Array.from(uint32ArrayOf(odd.subarray(1)))).toEqual([7, 8]);
  });

  it('decodes a batch whatever the body offset in its buffer', () => {
    const encoded = encodeMessage(makeAppend(makeBatch(1, 5, 10)));
    for (let shift = 0; shift < 8; shift++) {
      const buffer = new Uint8Array(encoded.length + shift);
      buffer.set(encoded, shift);
      const decoded = decodeMessage(buffer.subarray(shift));
      expect(decoded.type === 'append' && Array.from(decoded.entries.terms)).toEqual([
        1, 1, 1, 1, 1,
      ]);
    }
  });

  it('writes typed arrays little-endian and swaps byte groups', () => {
    const bytes = littleEndianBytesOf(new Uint32Array([0x01020304]), 1);
    expect(Array.from(bytes)).toEqual([4, 3, 2, 1]);
    expect(Array.from(swapBytes(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), 4))).toEqual([
      4, 3, 2, 1, 8, 7, 6, 5,
    ]);
  });
});

describe('validation', () => {
  it('refuses an unknown type, a missing field and a wrong field type, naming the field', () => {
    expectBadRequest(
      () => decodeWire({ type: 'gossip', from: 'a', to: 'b', term: 1 }),
      /message\.type is 'gossip'/,
    );
    expectBadRequest(
      () => decodeWire({ type: 'heartbeat', from: 'a', to: 'b', term: 1, commit: 2 }),
      /message\.context is missing/,
    );
    expectBadRequest(
      () => decodeWire({ type: 'heartbeat', from: 'a', to: 'b', term: '1', commit: 2, context: 0 }),
      /message\.term is '1', expected an integer/,
    );
    expectBadRequest(
      () =>
        decodeWire({ type: 'voteResp', from: 'a', to: 'b', term: 1, preVote: 0, granted: true }),
      /message\.preVote is 0, expected a boolean/,
    );
    expectBadRequest(
      () =>
        decodeWire({
          type: 'voteResp',
          from: 'a',
          to: 'b',
          term: 2,
          preVote: false,
          granted: false,
          commitIndex: 5,
          commitTerm: 3,
        }),
      /message\.commitTerm is 3, above the message term 2/,
    );
    expectBadRequest(() => decodeWire([1, 2]), /message is an array of 2 items, expected a map/);
    expectBadRequest(() => decodeWire('vote'), /message is 'vote', expected a map/);
  });

  it('refuses integers out of range: negative, fractional, unsafe, too large', () => {
    for (const term of [-1, 1.5, 2 ** 53, Number.NaN, Number.POSITIVE_INFINITY]) {
      expectBadRequest(
        () => decodeWire({ type: 'timeoutNow', from: 'a', to: 'b', term }),
        /message\.term is .*expected an integer in 0\.\.9007199254740991/,
      );
    }
    expectBadRequest(
      () =>
        decodeMessage(
          Uint8Array.from([
            0xa4,
            0x64,
            ...Buffer.from('term'),
            0x1b,
            0xff,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0x64,
            ...Buffer.from('type'),
            0x6a,
            ...Buffer.from('timeoutNow'),
            0x64,
            ...Buffer.from('from'),
            0x61,
            0x61,
            0x62,
            ...Buffer.from('to'),
            0x61,
            0x62,
          ]),
        ),
      /message\.term is 18374686479671623680, expected an integer/,
    );
    expectBadRequest(
      () => decodeWire({ type: 'timeoutNow', from: 'a', to: 'b', term: 1, rpcId: -5 }),
      /message\.rpcId is -5/,
    );
  });

  it('refuses empty or overlong node ids', () => {
    expectBadRequest(
      () => decodeWire({ type: 'timeoutNow', from: '', to: 'b', term: 1 }),
      /message\.from is ''/,
    );
    expectBadRequest(
      () => decodeWire({ type: 'timeoutNow', from: 'a', to: 'x'.repeat(256), term: 1 }),
      /message\.to is a string of 256 characters/,
    );
  });

  it('refuses an append whose entries do not start at prevLogIndex + 1', () => {
    const wire = appendWire();
    wire.prevLogIndex = 11;
    expectBadRequest(
      () => decodeWire(wire),
      /entries\.firstIndex is 11, expected prevLogIndex \+ 1 = 12/,
    );
  });

  it('refuses packed arrays of the wrong length', () => {
    for (const [key, length, pattern] of [
      ['terms', 23, /entries\.terms has 23 bytes, expected 8 per entry = 24/],
      ['types', 2, /entries\.types has 2 bytes, expected 1 per entry = 3/],
      ['ends', 13, /entries\.ends has 13 bytes, expected 4 per entry = 12/],
    ] as const) {
      const wire = appendWire();
      wire.entries[key] = new Uint8Array(length);
      expectBadRequest(() => decodeWire(wire), pattern);
    }
    const wire = appendWire();
    wire.entries['terms'] = 'not bytes';
    expectBadRequest(
      () => decodeWire(wire),
      /entries\.terms is 'not bytes', expected a byte string/,
    );
  });

  it('refuses batches that describeBatchProblem rejects', () => {
    const unknownType = appendWire();
    unknownType.entries['types'] = new Uint8Array([0, 9, 0]);
    expectBadRequest(() => decodeWire(unknownType), /entry 12 has unknown type 9/);

    const decreasingEnds = appendWire();
    decreasingEnds.entries['ends'] = new Uint8Array(new Uint32Array([4, 2, 12]).buffer);
    expectBadRequest(() => decodeWire(decreasingEnds), /entry 12 ends at byte 2, outside 4\.\.12/);

    const zeroTerm = appendWire();
    zeroTerm.entries['terms'] = new Uint8Array(new Float64Array([2, 0, 2]).buffer);
    expectBadRequest(() => decodeWire(zeroTerm), /entry 12 has term 0/);

    const fractionalTerm = appendWire();
    fractionalTerm.entries['terms'] = new Uint8Array(new Float64Array([2, 2.5, 2]).buffer);
    expectBadRequest(() => decodeWire(fractionalTerm), /entry 12 has term 2\.5/);
  });

  it('refuses data whose length differs from the last entry end', () => {
    const wire = appendWire();
    wire.entries['data'] = new Uint8Array(13);
    expectBadRequest(
      () => decodeWire(wire),
      /entries\.data has 13 bytes but the entries end at byte 12/,
    );
  });

  it("refuses batches breaking Raft's term order", () => {
    const decreasing = appendWire();
    decreasing.term = 5;
    decreasing.entries['terms'] = new Uint8Array(new Float64Array([3, 2, 3]).buffer);
    expectBadRequest(() => decodeWire(decreasing), /entry 12 has term 2, expected 3\.\.5/);

    const newerThanLeader = appendWire();
    newerThanLeader.entries['terms'] = new Uint8Array(new Float64Array([2, 2, 3]).buffer);
    expectBadRequest(() => decodeWire(newerThanLeader), /entry 13 has term 3, expected 2\.\.2/);

    const olderThanPrevious = appendWire();
    olderThanPrevious.prevLogTerm = 2;
    olderThanPrevious.entries['terms'] = new Uint8Array(new Float64Array([1, 2, 2]).buffer);
    expectBadRequest(() => decodeWire(olderThanPrevious), /entry 11 has term 1, expected 2\.\.2/);

    const vote = {
      type: 'vote',
      from: 'a',
      to: 'b',
      term: 3,
      preVote: false,
      lastLogIndex: 9,
      lastLogTerm: 4,
      transfer: false,
    };
    expectBadRequest(() => decodeWire(vote), /message\.lastLogTerm is 4, above the message term 3/);
  });

  it('refuses malformed snapshot metadata', () => {
    const request = (snapshot: unknown): unknown => ({
      type: 'snapshot',
      from: 'a',
      to: 'b',
      term: 3,
      snapshot,
    });
    const conf = { voters: ['a'], votersOutgoing: [], learners: [] };
    expectBadRequest(
      () => decodeWire(request({ index: 5, term: 0, conf })),
      /only the empty snapshot has term 0/,
    );
    expectBadRequest(
      () => decodeWire(request({ index: 5, term: 4, conf })),
      /snapshot\.term is 4, above the message term 3/,
    );
    expectBadRequest(
      () => decodeWire(request({ index: 5, term: 2, conf: { ...conf, voters: ['a', 'a'] } })),
      /snapshot\.conf\.voters names 'a' twice/,
    );
    expectBadRequest(
      () => decodeWire(request({ index: 5, term: 2, conf: { ...conf, learners: [7] } })),
      /snapshot\.conf\.learners\[0\] is 7/,
    );
    expectBadRequest(() => decodeWire(request({ index: 5, term: 2 })), /snapshot\.conf is missing/);
  });

  it('reads only own fields: inherited names are missing, not Object.prototype members', () => {
    expectBadRequest(
      () =>
        decodeWire({
          type: 'heartbeatResp',
          from: 'a',
          to: 'b',
          term: 1,
          __proto__: { context: 5 },
        }),
      /message\.context is missing/,
    );
    expectBadRequest(
      () => decodeWire({ type: 'constructor', from: 'a', to: 'b', term: 1 }),
      /message\.type is 'constructor'/,
    );
  });

  it('ignores unknown fields so newer peers may add optional ones', () => {
    const decoded = decodeWire({ type: 'timeoutNow', from: 'a', to: 'b', term: 1, future: [1, 2] });
    expect(decoded).toEqual({ type: 'timeoutNow', from: 'a', to: 'b', term: 1 });
  });

  it('validates messages decoded from other syntaxes', () => {
    expect(
      validateMessage({ type: 'heartbeatResp', from: 'a', to: 'b', term: 1, context: 3 }),
    ).toEqual({
      type: 'heartbeatResp',
      from: 'a',
      to: 'b',
      term: 1,
      context: 3,
    });
    expect(thrown(() => validateMessage(null))).toBeInstanceOf(BadRequestError);
  });

  it('refuses inconsistent snapshot chunks', () => {
    const request = makeSnapshotRequest();
    const chunk = {
      from: 'n1',
      transferId: 1,
      offset: 0,
      total: 4,
      done: false,
      data: new Uint8Array(2),
      request: {},
    };
    const wire = (overrides: Record<string, unknown>): Uint8Array =>
      encodeCbor({ ...chunk, request: { ...request, snapshot: request.snapshot }, ...overrides });
    expectBadRequest(
      () => decodeSnapshotChunk(wire({ offset: 3 })),
      /2 bytes at offset 3 run past total 4/,
    );
    expectBadRequest(
      () => decodeSnapshotChunk(wire({ done: true })),
      /chunk\.done is true with 2 bytes at offset 0/,
    );
    expectBadRequest(
      () => decodeSnapshotChunk(wire({ request: undefined })),
      /chunk\.request is undefined/,
    );
    expectBadRequest(
      () => decodeSnapshotChunk(wire({ from: 'n9' })),
      /chunk\.request\.from is 'n1' but chunk\.from is 'n9'/,
    );
    expectBadRequest(
      () => decodeSnapshotChunk(wire({ offset: 1, data: new Uint8Array(1) })),
      /only sent on the first chunk/,
    );
    expectBadRequest(
      () => decodeSnapshotChunk(wire({ data: new Uint8Array(4), done: true })),
      /chunk\.crc32 is missing/,
    );
    expectBadRequest(
      () => decodeSnapshotChunk(wire({ crc32: 5 })),
      /chunk\.crc32 is only sent on the last chunk/,
    );
    expectBadRequest(
      () =>
        decodeSnapshotChunk(
          wire({ request: { type: 'timeoutNow', from: 'n1', to: 'n2', term: 1 } }),
        ),
      /chunk\.request\.type is 'timeoutNow', expected 'snapshot'/,
    );
  });

  it('refuses to encode malformed messages with TypeError', () => {
    const batch = makeBatch(5, 2, 3);
    expect(thrown(() => encodeMessage({ ...makeAppend(batch), prevLogIndex: 7 }))).toBeInstanceOf(
      TypeError,
    );
    expect(
      thrown(() => encodeMessage(makeAppend({ ...batch, ends: new Uint32Array([3, 99]) }))),
    ).toBeInstanceOf(TypeError);
    expect(thrown(() => encodeMessage({ type: 'nope' } as unknown as Message))).toBeInstanceOf(
      TypeError,
    );
    const request = makeSnapshotRequest();
    expect(
      thrown(() =>
        encodeSnapshotChunk({
          from: 'n1',
          transferId: 1,
          offset: 0,
          total: 2,
          done: true,
          data: new Uint8Array(1),
          request,
          crc32: 0,
        }),
      ),
    ).toBeInstanceOf(TypeError);
    expect(
      thrown(() =>
        encodeSnapshotChunk({
          from: 'n1',
          transferId: 1,
          offset: 1,
          total: 2,
          done: true,
          data: new Uint8Array(1),
          request,
          crc32: 0,
        }),
      ),
    ).toBeInstanceOf(TypeError);
  });
});

describe('structure guard', () => {
  /** The message of the BadRequestError the guard throws for `bytes`. */
  const guard = (bytes: number[], depthMax?: number): string => {
    const error = thrown(() => checkCborStructure(Uint8Array.from(bytes), depthMax));
    expect(error).toBeInstanceOf(BadRequestError);
    return (error as Error).message;
  };

  it('accepts plain CBOR of the kinds our messages use', () => {
    checkCborStructure(
      encodeCbor({ a: [1, -2, 'x', true, false, null, 1.5, 2 ** 60], b: new Uint8Array(3) }),
    );
  });

  it('refuses tags, indefinite lengths, stray breaks, reserved and simple values', () => {
    expect(guard([0xc1, 0x00])).toMatch(/CBOR tag 1 at byte 0/);
    expect(guard([0xd9, 0xd9, 0xf7, 0x00])).toMatch(/CBOR tag 55799/);
    expect(guard([0x9f, 0xff])).toMatch(/indefinite length/);
    expect(guard([0x5f, 0xff])).toMatch(/indefinite length/);
    expect(guard([0xff])).toMatch(/stray break/);
    expect(guard([0x1c])).toMatch(/reserved additional information 28/);
    expect(guard([0xf8, 0x20])).toMatch(/simple value/);
    expect(guard([0xe0])).toMatch(/simple value/);
  });

  it('refuses declared lengths and counts beyond the bytes present', () => {
    expect(guard([0x5b, 0, 0, 0, 1, 0, 0, 0, 0])).toMatch(/declares 4294967296 bytes, 0 left/);
    expect(guard([0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00])).toMatch(
      /declares 18446744073709552000 items, 1 bytes left/,
    );
    expect(guard([0xba, 0x7f, 0xff, 0xff, 0xff, 0, 0])).toMatch(/declares 4294967294 items/);
    expect(guard([0x19, 0x01])).toMatch(/truncated at byte 1/);
    expect(guard([0x82, 0x01])).toMatch(/declares 2 items, 1 bytes left/);
    expect(guard([0x81, 0x18])).toMatch(/truncated at byte 2/);
    expect(guard([])).toMatch(/truncated at byte 0/);
  });

  it('refuses trailing bytes', () => {
    expect(guard([0x01, 0x02])).toMatch(/1 bytes after its end/);
  });

  it('limits nesting depth without recursion, even a million levels deep', () => {
    checkCborStructure(Uint8Array.from([0x81, 0x81, 0x81, 0x00]), 3);
    expect(guard([0x81, 0x81, 0x81, 0x81, 0x00], 3)).toMatch(/deeper than 3 levels at byte 3/);
    const deep = new Uint8Array(1_000_001).fill(0x81);
    deep[deep.length - 1] = 0;
    const started = performance.now();
    expect(thrown(() => decodeMessage(deep))).toBeInstanceOf(BadRequestError);
    checkCborStructure(deep, 2_000_000);
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it('refuses bodies over bytesMax with PAYLOAD_TOO_LARGE before parsing them', () => {
    const error = thrown(() => decodeMessage(new Uint8Array(101), { bytesMax: 100 }));
    expect(error).toBeInstanceOf(BadRequestError);
    expect((error as BadRequestError).code).toBe('PAYLOAD_TOO_LARGE');
    expect((error as Error).message).toMatch(/body is 101 bytes, more than the limit of 100/);
  });
});

describe('fuzzing', () => {
  const decodeOrBadRequest = (bytes: Uint8Array): Message | null => {
    try {
      return decodeMessage(bytes);
    } catch (error) {
      if (!(error instanceof BadRequestError)) throw error;
      return null;
    }
  };

  it('arbitrary bytes throw nothing but BadRequestError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), (bytes) => {
        decodeOrBadRequest(bytes);
      }),
      { numRuns: 5000 },
    );
  });

  it('arbitrary CBOR values throw nothing but BadRequestError', () => {
    fc.assert(
      fc.property(
        fc.anything({ withTypedArray: true, withMap: true, withSet: true, withDate: true }),
        (value) => {
          decodeOrBadRequest(encodeCbor(value));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('mutated valid encodings throw nothing but BadRequestError, and what decodes re-encodes', () => {
    fc.assert(
      fc.property(
        messageArb,
        fc.array(mutationArb, { minLength: 1, maxLength: 4 }),
        (message, mutations) => {
          const decoded = decodeOrBadRequest(mutate(encodeMessage(message), mutations));
          if (decoded !== null) {
            // Whatever passes validation is a message the encoder accepts and reproduces.
            expect(comparable(decodeMessage(encodeMessage(decoded)))).toEqual(comparable(decoded));
          }
        },
      ),
      { numRuns: 5000 },
    );
  });

  it('mutated snapshot chunks throw nothing but BadRequestError', () => {
    const chunk = encodeSnapshotChunk({
      from: 'n1',
      transferId: 3,
      offset: 0,
      total: 8,
      done: false,
      data: new Uint8Array([1, 2, 3]),
      request: makeSnapshotRequest(),
      crc32: null,
    });
    fc.assert(
      fc.property(fc.array(mutationArb, { minLength: 1, maxLength: 4 }), (mutations) => {
        try {
          decodeSnapshotChunk(mutate(chunk, mutations));
        } catch (error) {
          if (!(error instanceof BadRequestError)) throw error;
        }
      }),
      { numRuns: 3000 },
    );
  });
});
