import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { transientBytes, transientEntryArrays, utf8ByteLength, writeUtf8 } from '../src/bytes.js';
import {
  decodeMessage,
  encodeMessage,
  float64ArrayOf,
  uint32ArrayOf,
} from '../src/transport/codec.js';
import { mergeAppends } from '../src/transport/client.js';
import { makeAppend } from './transport/helpers.js';
import { decodeStampedCommand, encodeStampedCommand } from '../src/kv/versioned-codec.js';
import { decodeCommand, encodeCommand } from '../src/consensus/raft-consensus.js';
import { createLog } from '../src/kernel/index.js';
import { EntryBatchBuilder, EntryType, payloadOf, type EntryBatch } from '../src/raft/batch.js';
import {
  RecordEncoder,
  RecordType,
  decodeEntries,
  decodeHardState,
  entriesPayloadBytes,
  hardStateRecordBytes,
  recordBytesOf,
  recordHeaderBytes,
  scanSegment,
  type ScannedRecord,
} from '../src/storage/wal-format.js';

describe('transientBytes', () => {
  it('carves small arrays from a shared pool and gives larger ones their own memory', () => {
    const small = Array.from({ length: 10 }, () => transientBytes(200));
    for (const bytes of small) {
      expect(bytes).toBeInstanceOf(Uint8Array);
      expect(Buffer.isBuffer(bytes)).toBe(false);
      expect(bytes.length).toBe(200);
    }
    // 2,000 bytes fit in one 8 KiB pool, or straddle two when the pool was nearly used up.
    expect(new Set(small.map((bytes) => bytes.buffer)).size).toBeLessThanOrEqual(2);

    const large = transientBytes(Buffer.poolSize);
    expect(large.byteOffset).toBe(0);
    expect(large.buffer.byteLength).toBe(Buffer.poolSize);
  });

  it('starts every slice on a multiple of 8, as 8-byte typed-array views need', () => {
    for (let length = 1; length <= 300; length++) {
      const bytes = transientBytes(length);
      expect(bytes.byteOffset % 8).toBe(0);
      expect(() => new Float64Array(bytes.buffer, bytes.byteOffset, 0)).not.toThrow();
    }
  });

  it('keeps Uint8Array semantics: slice() copies (a Buffer would hand out a view)', () => {
    const bytes = transientBytes(100).fill(7);
    const copy = bytes.slice(0, 10);
    copy[0] = 9;
    expect(bytes[0]).toBe(7);
  });
});

describe('utf8ByteLength and writeUtf8', () => {
  const encoder = new TextEncoder();

  it('count and write what TextEncoder would, at any offset, ASCII or not', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.string({ maxLength: 200 })),
        fc.nat(9),
        (text, offset) => {
          const expected = encoder.encode(text);
          expect(utf8ByteLength(text)).toBe(expected.length);
          for (const target of [
            new Uint8Array(offset + expected.length + 3).fill(0xee),
            transientBytes(offset + expected.length + 3).fill(0xee),
          ]) {
            expect(writeUtf8(text, target, offset)).toBe(expected.length);
            expect(target.subarray(offset, offset + expected.length)).toEqual(expected);
            // Nothing before or after the text is touched.
            expect(target.subarray(0, offset).every((byte) => byte === 0xee)).toBe(true);
            expect(target.subarray(offset + expected.length).every((b) => b === 0xee)).toBe(true);
          }
        },
      ),
    );
  });

  it('write a lone surrogate as U+FFFD, as TextEncoder does', () => {
    const target = new Uint8Array(8);
    for (const text of ['a\ud800', '\udc00b']) {
      expect(utf8ByteLength(text)).toBe(4);
      expect(writeUtf8(text, target, 0)).toBe(4);
      expect(target.subarray(0, 4)).toEqual(encoder.encode(text));
    }
  });
});

describe('transientEntryArrays', () => {
  it('lays out terms, ends and types side by side in one block, none over another', () => {
    for (let count = 1; count <= 40; count++) {
      const { terms, ends, types } = transientEntryArrays(count);
      expect([terms.length, ends.length, types.length]).toEqual([count, count, count]);
      expect(new Set([terms.buffer, ends.buffer, types.buffer]).size).toBe(1);
      expect(terms.byteOffset % 8).toBe(0);
      expect(ends.byteOffset).toBe(terms.byteOffset + count * 8);
      expect(types.byteOffset).toBe(ends.byteOffset + count * 4);
      terms.fill(-1);
      ends.fill(0xffffffff);
      types.fill(7);
      expect(terms.every((term) => term === -1)).toBe(true);
      expect(ends.every((end) => end === 0xffffffff)).toBe(true);
    }
  });
});

// Pool memory is not zeroed and may hold another request's bytes. Each user of transientBytes
// must write every byte it hands on, and address the shared buffer through byteOffset: here
// every pooled slice is full of 0xff and starts 8 bytes into its ArrayBuffer.
describe('users of transientBytes, given dirty pool memory', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  function dirtyPool(): void {
    vi.spyOn(Buffer, 'allocUnsafe').mockImplementation((size: number) =>
      Buffer.from(new ArrayBuffer(size + 16), 8, size).fill(0xff),
    );
  }

  function batchOf(firstIndex: number, payloads: readonly string[]): EntryBatch {
    const builder = new EntryBatchBuilder(firstIndex);
    for (const [k, payload] of payloads.entries()) {
      builder.add(1 + Math.floor(k / 3), EntryType.Normal, Buffer.from(payload));
    }
    return builder.finish();
  }

  function payloadsOf(batch: EntryBatch): string[] {
    return Array.from({ length: batch.count }, (_unused, k) =>
      Buffer.from(payloadOf(batch, k)).toString(),
    );
  }

  it('RecordEncoder zeroes the padding and writes records that decode back', () => {
    dirtyPool();
    const hardState = { term: 3, vote: 'node-1', commit: 41 };
    // 3 entries take the per-entry path, 20 the typed-array one; odd payload lengths need padding.
    const small = batchOf(10, ['a', 'bcd', 'efghi']);
    const large = batchOf(
      13,
      Array.from({ length: 20 }, (_unused, k) => 'x'.repeat(k + 1)),
    );
    const sizes = [
      hardStateRecordBytes(hardState),
      recordBytesOf(entriesPayloadBytes(small.count, small.data.length)),
      recordBytesOf(entriesPayloadBytes(large.count, large.data.length)),
    ];
    const encoder = new RecordEncoder(sizes.reduce((sum, size) => sum + size, 0));
    encoder.hardState(hardState);
    encoder.entries(small, small.firstIndex, small.firstIndex + small.count);
    encoder.entries(large, large.firstIndex, large.firstIndex + large.count);
    const bytes = encoder.bytes;
    expect(bytes.byteOffset).toBe(8);

    const records: ScannedRecord[] = [];
    expect(scanSegment(bytes, 'test', true, (record) => records.push(record))).toBeNull();
    expect(records.map((record) => record.type)).toEqual([
      RecordType.HardState,
      RecordType.Entries,
      RecordType.Entries,
    ]);
    expect(decodeHardState(bytes, records[0]!, 'test')).toEqual(hardState);
    expect(payloadsOf(decodeEntries(bytes, records[1]!, 'test'))).toEqual(payloadsOf(small));
    expect(payloadsOf(decodeEntries(bytes, records[2]!, 'test'))).toEqual(payloadsOf(large));
    expect(Array.from(decodeEntries(bytes, records[2]!, 'test').terms)).toEqual(
      Array.from(large.terms),
    );
    for (const record of records) {
      const payloadEnd = record.offset + recordHeaderBytes + record.payloadBytes;
      const recordEnd = record.offset + recordBytesOf(record.payloadBytes);
      expect(Array.from(bytes.subarray(payloadEnd, recordEnd)).every((b) => b === 0)).toBe(true);
    }
    expect(bytes.includes(0xff)).toBe(false);
  });

  it('encodeCommand and encodeStampedCommand write every byte', () => {
    dirtyPool();
    const data = Buffer.from('value bytes');
    for (const encoded of [encodeCommand('kv', data), encodeCommand('kv', 'text')]) {
      expect(encoded.includes(0xff)).toBe(false);
    }
    expect(decodeCommand(encodeCommand('kv', data))).toEqual({
      command: 'kv',
      data: new Uint8Array(data),
    });
    expect(decodeCommand(encodeCommand('kv', 'text'))).toEqual({ command: 'kv', data: 'text' });
    // A name of 128 bytes or more takes a two-byte length.
    const longName = 'c'.repeat(200);
    const long = encodeCommand(longName, data);
    expect(long.includes(0xff)).toBe(false);
    expect(decodeCommand(long).command).toBe(longName);

    const hlc = { wallMs: 1_700_000_000_000, logical: 2, node: 'n1' };
    const stamped = encodeStampedCommand(hlc, data);
    expect(stamped.includes(0xff)).toBe(false);
    const decoded = decodeStampedCommand(stamped);
    expect(decoded.hlc).toEqual(hlc);
    expect(Buffer.from(decoded.command).toString()).toBe('value bytes');
  });

  it('a log slice copies exactly the payloads asked for', () => {
    dirtyPool();
    const log = createLog();
    try {
      const appended = batchOf(1, ['one', 'two', 'three', 'four']);
      log.append(appended);
      const slice = log.slice(2, 4, Number.MAX_SAFE_INTEGER);
      expect(slice.data.byteOffset).toBe(8);
      expect(payloadsOf(slice)).toEqual(['two', 'three']);
      expect(slice.data.includes(0xff)).toBe(false);
      expect(slice.terms.byteOffset).toBe(8);
      expect(Array.from(slice.terms)).toEqual([1, 1]);
      expect(Array.from(slice.types)).toEqual([EntryType.Normal, EntryType.Normal]);
      expect(Array.from(slice.ends)).toEqual([3, 8]);
    } finally {
      (log as { dispose?: () => void }).dispose?.();
    }
  });

  it('float64ArrayOf and uint32ArrayOf copy unaligned bytes exactly', () => {
    const source = new Uint8Array(1 + 16);
    const terms = new Float64Array([7, 2 ** 40]);
    source.set(new Uint8Array(terms.buffer), 1);
    dirtyPool();
    const copiedTerms = float64ArrayOf(source.subarray(1));
    expect(copiedTerms.byteOffset).toBe(8);
    expect(Array.from(copiedTerms)).toEqual([7, 2 ** 40]);
    const copiedEnds = uint32ArrayOf(source.subarray(1, 9));
    expect(copiedEnds.byteOffset).toBe(8);
    expect(Array.from(copiedEnds)).toEqual(Array.from(new Uint32Array(terms.buffer, 0, 2)));
  });

  it('a merged append and a decoded one hold exactly their entries', () => {
    const first = batchOf(5, ['a', 'bc']);
    const second = batchOf(7, ['def', 'g', 'hijk']);
    dirtyPool();
    const merged = mergeAppends([makeAppend(first), makeAppend(second)]).entries;
    expect(merged.terms.byteOffset).toBe(8);
    expect(payloadsOf(merged)).toEqual(['a', 'bc', 'def', 'g', 'hijk']);
    expect(Array.from(merged.terms)).toEqual([1, 1, 1, 1, 1]);
    expect(Array.from(merged.ends)).toEqual([1, 3, 6, 7, 11]);
    expect(merged.data.includes(0xff)).toBe(false);

    // Decoding views terms and ends in the body where aligned, else copies them.
    const decoded = decodeMessage(encodeMessage(makeAppend(second)));
    if (decoded.type !== 'append') throw new Error(`decoded a ${decoded.type}`);
    expect(Array.from(decoded.entries.terms)).toEqual([1, 1, 1]);
    expect(Array.from(decoded.entries.ends)).toEqual([3, 4, 8]);
    expect(payloadsOf(decoded.entries)).toEqual(['def', 'g', 'hijk']);
  });
});
