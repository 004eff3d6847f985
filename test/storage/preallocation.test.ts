// Checks WAL segment preallocation on CrashFs and on the real disk: the active segment is
// extended to segmentBytesMax while in use and cut back at rollover and close, and recovery
// takes the unwritten zeros for room, not damage, while a torn last record before them is
// still cut. Each case writes, crashes or closes, then recovers and compares.
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { FilePersistence } from '../../src/storage/file-persistence.js';
import type { StorageFs } from '../../src/storage/fs.js';
import { scanSegment } from '../../src/storage/wal-format.js';
import { CrashFs } from './helpers/crash-fs.js';
import { createTestLog, expectIntact, runOf, useTempDir } from './helpers/entries.js';

const segmentBytesMax = 4096;
const firstSegment = '/data/wal/0000000000000001.wal';

describe('WAL segment preallocation', () => {
  let warnings: string[];

  function open(fs: StorageFs, dir = '/data'): FilePersistence {
    return new FilePersistence({
      dir,
      fs,
      createLog: createTestLog,
      limits: { segmentBytesMax },
      onWarning: (message) => warnings.push(message),
    });
  }

  beforeEach(() => {
    warnings = [];
  });

  it('keeps the active segment at segmentBytesMax, and cuts it to its records on close', async () => {
    const fs = new CrashFs();
    const storage = open(fs);
    await storage.load();
    await storage.save({ snapshot: null, entries: runOf(1, 3, 1), hardState: null }, true);
    expect(fs.bytesOf(firstSegment).length).toBe(segmentBytesMax);
    await storage.close();
    const bytes = fs.bytesOf(firstSegment);
    let end = 0;
    scanSegment(bytes, firstSegment, true, (record) => (end = record.offset));
    expect(bytes.length).toBeLessThan(segmentBytesMax);
    // Scanned as a closed segment: trailing zeros would be damage there, not unwritten space.
    expect(scanSegment(bytes, firstSegment, false, () => undefined)).toBeNull();
    expect(end).toBeGreaterThan(0);
  });

  it('cuts the tail at a record over a sector of zeros, even with written pages after it', async () => {
    // A power loss can keep a later page of an unsynced group and lose an earlier one, which
    // then reads as zeros inside a record: torn, not damage. A flipped byte is still damage.
    const fs = new CrashFs();
    const storage = new FilePersistence({
      dir: '/data',
      fs,
      createLog: createTestLog,
      limits: { segmentBytesMax: 64 * 1024 },
    });
    await storage.load();
    try {
      for (let index = 1; index <= 12; index++) {
        const entries = runOf(index, 1, 1, 1000);
        await storage.save({ snapshot: null, entries, hardState: null }, true);
      }
      const bytes = fs.bytesOf(firstSegment);
      const offsets: number[] = [];
      scanSegment(bytes, firstSegment, true, (record) => offsets.push(record.offset));
      expect(offsets.length).toBeGreaterThan(8);
      const victim = 4;
      const hole = Uint8Array.from(bytes);
      const sector = Math.ceil(offsets[victim]! / 512) * 512;
      hole.fill(0, sector, sector + 512);
      expect(scanSegment(hole, firstSegment, true, () => undefined)).toMatchObject({
        offset: offsets[victim],
      });
      expect(() => scanSegment(hole, firstSegment, false, () => undefined)).toThrow(
        /not the last segment/,
      );
      const flipped = Uint8Array.from(bytes);
      flipped[offsets[victim]! + 20]! ^= 0xff;
      expect(() => scanSegment(flipped, firstSegment, true, () => undefined)).toThrow(
        /checksum mismatch/,
      );
    } finally {
      await storage.close();
    }
  });

  it('cuts every closed segment to its records at rollover', async () => {
    const fs = new CrashFs();
    const storage = open(fs);
    await storage.load();
    for (let i = 1; i <= 120; i += 4) {
      await storage.save({ snapshot: null, entries: runOf(i, 4, 1), hardState: null }, true);
    }
    const names = fs.list('/data/wal').sort();
    expect(names.length).toBeGreaterThan(2);
    for (const name of names.slice(0, -1)) {
      const bytes = fs.bytesOf(`/data/wal/${name}`);
      // No zeros after the last record: a segment that is not the last must end exactly there.
      expect(scanSegment(bytes, name, false, () => undefined)).toBeNull();
      expect(bytes.length).toBeLessThan(segmentBytesMax);
    }
    expect(fs.bytesOf(`/data/wal/${names.at(-1)!}`).length).toBe(segmentBytesMax);
    await storage.close();
  });

  it('recovers a preallocated segment left by a crash without a warning, and goes on writing', async () => {
    const fs = new CrashFs();
    const storage = open(fs);
    await storage.load();
    await storage.save({ snapshot: null, entries: runOf(1, 5, 1), hardState: null }, true);
    // kill -9: everything written is there, the zeros after it too. (The first storage is
    // closed afterwards only to release the directory lock; its copy is unaffected.)
    const after = fs.snapshotAsIs();
    await storage.close();
    expect(after.bytesOf(firstSegment).length).toBe(segmentBytesMax);
    const reopened = open(after);
    const state = await reopened.load();
    expect(state.log.lastIndex()).toBe(5);
    expectIntact(state.log);
    expect(reopened.recovery?.tornTail).toBeNull();
    expect(warnings).toEqual([]);
    await reopened.save({ snapshot: null, entries: runOf(6, 2, 1), hardState: null }, true);
    await reopened.close();
    const again = open(after.snapshotAsIs());
    expect((await again.load()).log.lastIndex()).toBe(7);
    await again.close();
  });

  it('still cuts a torn last record in a preallocated segment, the zeros after it included', async () => {
    const fs = new CrashFs();
    const storage = open(fs);
    await storage.load();
    await storage.save({ snapshot: null, entries: runOf(1, 2, 1), hardState: null }, true);
    await storage.save({ snapshot: null, entries: runOf(3, 2, 1), hardState: null }, true);
    const after = fs.snapshotAsIs();
    await storage.close();
    const bytes = after.bytesOf(firstSegment);
    const offsets: number[] = [];
    const torn = scanSegment(bytes, firstSegment, true, (record) => offsets.push(record.offset));
    expect(torn?.reason).toMatch(/checksum/);
    // The second save's record half written: its second half never landed (zeros).
    const last = offsets.at(-1)!;
    const end = torn!.offset;
    const damaged = bytes.slice();
    damaged.fill(0, last + Math.floor((end - last) / 2), end);
    after.setBytes(firstSegment, damaged);
    const reopened = open(after);
    const state = await reopened.load();
    expect(state.log.lastIndex()).toBe(2);
    expect(reopened.recovery?.tornTail).toMatchObject({ offset: last });
    expect(warnings.some((warning) => warning.includes('torn by a crash'))).toBe(true);
    await reopened.close();
  });

  describe('on the real disk', () => {
    const dir = useTempDir('phantomdb-prealloc-');

    it('preallocates the active segment and leaves only records after a clean close', async () => {
      const storage = new FilePersistence({
        dir: dir.path,
        createLog: createTestLog,
        limits: { segmentBytesMax: 1024 * 1024 },
        onWarning: (message) => warnings.push(message),
      });
      await storage.load();
      await storage.save({ snapshot: null, entries: runOf(1, 10, 1), hardState: null }, true);
      const segment = join(dir.path, 'wal', (await readdir(join(dir.path, 'wal')))[0]!);
      expect((await stat(segment)).size).toBe(1024 * 1024);
      await storage.close();
      const bytes = new Uint8Array(await readFile(segment));
      expect(bytes.length).toBeLessThan(1024 * 1024);
      expect(scanSegment(bytes, segment, false, () => undefined)).toBeNull();
      expect(warnings).toEqual([]);
    });
  });
});
