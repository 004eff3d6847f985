import { Buffer } from 'node:buffer';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { transientBytes } from '../src/bytes.js';
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
    } finally {
      (log as { dispose?: () => void }).dispose?.();
    }
  });
});
