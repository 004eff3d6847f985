// Recovery from damaged logs: the last save torn at every byte boundary, zero-filled tails,
// corrupt records in and out of the tail, missing segments and snapshots, and a crash at every
// step of saving a snapshot — by damaging files on disk (or in CrashFs) and reopening.
import {
  appendFile,
  copyFile,
  readdir,
  readFile,
  rm,
  stat,
  truncate,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StorageError } from '../../src/errors.js';
import type { HardState } from '../../src/raft/types.js';
import { FilePersistence } from '../../src/storage/file-persistence.js';
import type { FilePersistenceOptions } from '../../src/storage/file-persistence.js';
import type { StoredSnapshot } from '../../src/storage/types.js';
import { hardStateRecordBytes, scanSegment } from '../../src/storage/wal-format.js';
import { CrashFs } from './helpers/crash-fs.js';
import { createTestLog, expectIntact, runOf, tempDir, termsOf } from './helpers/entries.js';

const conf = { voters: ['n1'], votersOutgoing: [], learners: [] };

function snapshotAt(index: number, term: number): StoredSnapshot {
  return { meta: { index, term, conf }, data: new TextEncoder().encode(`state@${index}`) };
}

describe('recovery', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let warnings: string[];

  function storageAt(path: string, options: Partial<FilePersistenceOptions> = {}): FilePersistence {
    return new FilePersistence({
      dir: path,
      createLog: createTestLog,
      onWarning: (message) => warnings.push(message),
      ...options,
    });
  }

  /** Opens, loads, closes; returns what load returned (or throws what it threw). */
  async function loadOnce(path: string, options: Partial<FilePersistenceOptions> = {}) {
    const storage = storageAt(path, options);
    try {
      const state = await storage.load();
      return { state, recovery: storage.recovery! };
    } finally {
      await storage.close();
    }
  }

  async function loadError(
    path: string,
    options: Partial<FilePersistenceOptions> = {},
  ): Promise<StorageError> {
    const error: unknown = await loadOnce(path, options).then(
      () => null,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(StorageError);
    return error as StorageError;
  }

  beforeEach(async () => {
    dir = await tempDir();
    warnings = [];
  });

  afterEach(async () => {
    await dir.remove();
  });

  it('cuts the last save off at every byte boundary of its records and keeps everything before', async () => {
    const source = join(dir.path, 'source');
    const storage = storageAt(source);
    await storage.load();
    await storage.save(
      {
        snapshot: null,
        entries: runOf(1, 4, 1, 30),
        hardState: { term: 1, vote: 'n1', commit: 2 },
      },
      true,
    );
    const segment = join(source, 'wal', '0000000000000001.wal');
    const before = (await stat(segment)).size;
    // The last save: an entries record then a hard state record.
    await storage.save(
      {
        snapshot: null,
        entries: runOf(5, 2, 2, 20),
        hardState: { term: 2, vote: 'n2', commit: 4 },
      },
      true,
    );
    await storage.close();
    const full = (await stat(segment)).size;
    // Where the entries record ends and the hard state record starts.
    const middle = full - hardStateRecordBytes({ term: 2, vote: 'n2', commit: 4 });

    const copy = join(dir.path, 'copy');
    for (let cut = before; cut <= full; cut++) {
      await rm(copy, { recursive: true, force: true });
      await copyDir(source, copy);
      const copied = join(copy, 'wal', '0000000000000001.wal');
      await truncate(copied, cut);
      warnings = [];
      const { state, recovery } = await loadOnce(copy);
      const entriesWhole = cut >= middle;
      const allWhole = cut === full;
      expect(termsOf(state.log)).toEqual(entriesWhole ? [1, 1, 1, 1, 2, 2] : [1, 1, 1, 1]);
      expectIntact(state.log);
      expect(state.hardState).toEqual<HardState>(
        allWhole ? { term: 2, vote: 'n2', commit: 4 } : { term: 1, vote: 'n1', commit: 2 },
      );
      const tornAt = entriesWhole ? middle : before;
      if (cut === before || cut === middle || allWhole) {
        expect(recovery.tornTail).toBeNull();
        expect(warnings).toEqual([]);
      } else {
        expect(recovery.tornTail).toMatchObject({
          file: copied,
          offset: tornAt,
          bytesCut: cut - tornAt,
        });
        expect(warnings).toHaveLength(1);
        expect(warnings[0]).toContain(`Cut ${cut - tornAt} bytes off ${copied} at byte ${tornAt}`);
        // The file itself was repaired: reopening finds a clean log.
        expect((await stat(copied)).size).toBe(tornAt);
      }
      // And it takes new writes after the repaired tail.
      const again = storageAt(copy);
      const reloaded = await again.load();
      expect(again.recovery?.tornTail).toBeNull();
      const next = reloaded.log.lastIndex() + 1;
      await again.save({ snapshot: null, entries: runOf(next, 1, 3, 10), hardState: null }, true);
      await again.close();
      const { state: last } = await loadOnce(copy);
      expect(last.log.lastIndex()).toBe(next);
      expectIntact(last.log);
    }
  });

  it('cuts a zero-filled tail (the size grew, the data never landed)', async () => {
    const storage = storageAt(dir.path);
    await storage.load();
    await storage.save({ snapshot: null, entries: runOf(1, 3, 1), hardState: null }, true);
    await storage.close();
    const segment = join(dir.path, 'wal', '0000000000000001.wal');
    const size = (await stat(segment)).size;
    for (const zeros of [1, 15, 16, 17, 4096]) {
      await appendFile(segment, new Uint8Array(zeros));
      const { state, recovery } = await loadOnce(dir.path);
      expect(state.log.lastIndex()).toBe(3);
      expect(recovery.tornTail).toMatchObject({ offset: size, bytesCut: zeros });
    }
  });

  it('stops on a corrupt record before the tail, naming the file and byte offset', async () => {
    const storage = storageAt(dir.path);
    await storage.load();
    const segment = join(dir.path, 'wal', '0000000000000001.wal');
    for (let i = 1; i <= 5; i++) {
      await storage.save({ snapshot: null, entries: runOf(i, 1, 1), hardState: null }, true);
    }
    await storage.close();
    const bytes = await readFile(segment);
    // Where each record starts (the file is preallocated while in use, so its size says
    // nothing then): the header, then one record per save.
    const offsets: number[] = [];
    scanSegment(bytes, segment, true, (record) => offsets.push(record.offset));
    expect(offsets).toHaveLength(6);
    const victim = offsets[3]!;
    bytes[victim + 40]! ^= 0x01; // one bit inside the third save's record
    await writeFile(segment, bytes);
    const error = await loadError(dir.path);
    expect(error.code).toBe('CORRUPT_LOG');
    expect(error.message).toMatch(
      new RegExp(
        `^Cannot recover the log: ${escape(segment)} is corrupt at byte ${victim}: checksum mismatch`,
      ),
    );
    // Nothing was "repaired": the file is as it was.
    expect((await readFile(segment)).equals(bytes)).toBe(true);
  });

  it('stops on damage anywhere in a segment that is not the last one', async () => {
    const limits = { segmentBytesMax: 4096 };
    const storage = storageAt(dir.path, { limits });
    await storage.load();
    for (let i = 1; i <= 100; i += 5)
      await storage.save({ snapshot: null, entries: runOf(i, 5, 1), hardState: null }, true);
    await storage.close();
    const names = (await readdir(join(dir.path, 'wal'))).sort();
    expect(names.length).toBeGreaterThan(2);
    const first = join(dir.path, 'wal', names[0]!);
    const original = await readFile(first);

    // Its last record torn: at the tail of the last segment this would be a crash; here, damage.
    await truncate(first, original.length - 3);
    let error = await loadError(dir.path, { limits });
    expect(error.message).toContain(`${first} is corrupt at byte`);
    expect(error.message).toContain('(not the last segment)');

    // A flipped bit in its last record.
    const flipped = Buffer.from(original);
    flipped[original.length - 1]! ^= 0x80;
    await writeFile(first, flipped);
    error = await loadError(dir.path, { limits });
    expect(error.code).toBe('CORRUPT_LOG');
    expect(error.message).toContain(`${first} is corrupt at byte`);
    await writeFile(first, original);

    // A segment gone from the middle.
    const second = join(dir.path, 'wal', names[1]!);
    const kept = await readFile(second);
    await rm(second);
    error = await loadError(dir.path, { limits });
    expect(error.message).toBe(
      `Cannot recover the log: segments 2..2 are missing from ${join(dir.path, 'wal')} (found ${names[0]} then ${names[2]})`,
    );
    await writeFile(second, kept);
    expect((await loadOnce(dir.path, { limits })).state.log.lastIndex()).toBe(100);
  });

  it('refuses to start from snapshots without a WAL, or from a corrupt snapshot the WAL vouches for', async () => {
    const storage = storageAt(dir.path);
    await storage.load();
    await storage.save(
      { snapshot: null, entries: runOf(1, 10, 1), hardState: { term: 1, vote: 'n1', commit: 10 } },
      true,
    );
    await storage.saveSnapshot(snapshotAt(8, 1));
    await storage.close();
    const snapshotFile = join(dir.path, 'snap', '0000000000000008-0000000000000001.snap');
    const bytes = await readFile(snapshotFile);
    bytes[bytes.length - 1]! ^= 0xff;
    await writeFile(snapshotFile, bytes);
    let error = await loadError(dir.path);
    expect(error.message).toMatch(
      new RegExp(`^Cannot read snapshot ${escape(snapshotFile)}: checksum mismatch`),
    );
    await rm(join(dir.path, 'wal'), { recursive: true });
    error = await loadError(dir.path);
    expect(error.message).toContain('snapshots exist but the WAL directory');
    expect(error.message).toContain('has no segments; the term and vote would be lost');
  });

  it('removes a last segment whose header was torn while it was being started', async () => {
    const limits = { segmentBytesMax: 4096 };
    const storage = storageAt(dir.path, { limits });
    await storage.load();
    for (let i = 1; i <= 40; i += 5)
      await storage.save({ snapshot: null, entries: runOf(i, 5, 1), hardState: null }, true);
    await storage.close();
    const names = (await readdir(join(dir.path, 'wal'))).sort();
    const next = join(dir.path, 'wal', `${(names.length + 1).toString(16).padStart(16, '0')}.wal`);
    for (const bytes of [0, 7, 40]) {
      await writeFile(next, new Uint8Array(bytes).fill(bytes === 0 ? 0 : 0x50));
      warnings = [];
      const { state, recovery } = await loadOnce(dir.path, { limits });
      expect(state.log.lastIndex()).toBe(40);
      expect(recovery.tornTail).toMatchObject({ file: next, offset: 0, bytesCut: bytes });
      expect(warnings[0]).toContain(`Removed ${next}`);
      expect((await readdir(join(dir.path, 'wal'))).sort()).toEqual(names);
    }
  });

  describe('a crash at every step of saving a snapshot', () => {
    for (const outcome of ['kill -9', 'power loss'] as const) {
      it(`leaves the previous snapshot in force unless the new one was recorded (${outcome})`, async () => {
        // Count the file-system operations one saveSnapshot takes, then crash at each of them.
        const probe = await prepare();
        const opsBefore = probe.fs.ops;
        await probe.storage.saveSnapshot(snapshotAt(40, 2));
        const steps = probe.fs.ops - opsBefore;
        await probe.storage.close();
        expect(steps).toBeGreaterThanOrEqual(7); // open, write, sync, rename, syncDir, WAL write, fdatasync

        for (let step = 0; step <= steps; step++) {
          const { fs, storage, path } = await prepare();
          fs.crashAfter(step);
          const saved = await storage.saveSnapshot(snapshotAt(40, 2)).then(
            () => true,
            () => false,
          );
          expect(saved).toBe(step === steps);
          await storage.close().catch(() => undefined);
          let seed = step + 1;
          const random = (): number => (seed = (seed * 16807) % 2147483647) / 2147483647;
          const after = outcome === 'kill -9' ? fs.snapshotAsIs() : fs.crash(random);
          warnings = [];
          const { state } = await loadOnce(path, { fs: after });
          const index = state.snapshot?.meta.index;
          if (saved) expect(index).toBe(40);
          else expect([20, 40]).toContain(index);
          // Either way the log is whole from the snapshot on, and nothing half-written is left.
          expect(state.log.firstIndex()).toBe(index! + 1);
          expect(state.log.lastIndex()).toBe(50);
          expectIntact(state.log);
          expect(new TextDecoder().decode(state.snapshot!.data)).toBe(`state@${index}`);
          expect(after.list(join(path, 'snap')).some((name) => name.endsWith('.tmp'))).toBe(false);
          if (index === 20)
            expect(after.list(join(path, 'snap'))).not.toContain(
              '0000000000000028-0000000000000002.snap',
            );
        }
      });
    }

    let runs = 0;
    async function prepare(): Promise<{ fs: CrashFs; storage: FilePersistence; path: string }> {
      const fs = new CrashFs();
      const path = `/snapshot-crash-${++runs}`;
      const storage = storageAt(path, { fs });
      await storage.load();
      await storage.save(
        {
          snapshot: null,
          entries: runOf(1, 50, 2),
          hardState: { term: 2, vote: 'n1', commit: 50 },
        },
        true,
      );
      await storage.saveSnapshot(snapshotAt(20, 2));
      await storage.compact(20);
      return { fs, storage, path };
    }
  });
});

async function copyDir(from: string, to: string): Promise<void> {
  const { mkdir } = await import('node:fs/promises');
  await mkdir(to, { recursive: true });
  for (const entry of await readdir(from, { withFileTypes: true })) {
    if (entry.name === 'LOCK') continue;
    const source = join(from, entry.name);
    const target = join(to, entry.name);
    if (entry.isDirectory()) await copyDir(source, target);
    else await copyFile(source, target);
  }
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
