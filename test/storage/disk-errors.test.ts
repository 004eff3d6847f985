// Disk trouble: ENOSPC / EIO / EROFS injected at each kind of write (CrashFs faults), and a real
// 1 MiB tmpfs filled up — the storage turns read-only with a typed error naming the cause,
// rejects everything after, never acknowledges a partial record and keeps what was durable.
import { execFileSync } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StorageError } from '../../src/errors.js';
import { FilePersistence } from '../../src/storage/file-persistence.js';
import type { FilePersistenceOptions } from '../../src/storage/file-persistence.js';
import type { StoredSnapshot } from '../../src/storage/types.js';
import { CrashFs } from './helpers/crash-fs.js';
import type { Fault } from './helpers/crash-fs.js';
import { createTestLog, expectIntact, runOf, tempDir, termsOf } from './helpers/entries.js';

const conf = { voters: ['n1'], votersOutgoing: [], learners: [] };

function snapshotAt(index: number, term: number): StoredSnapshot {
  return { meta: { index, term, conf }, data: new TextEncoder().encode(`state@${index}`) };
}

let runs = 0;

async function openOn(fs: CrashFs, path: string, options: Partial<FilePersistenceOptions> = {}) {
  const storage = new FilePersistence({
    dir: path,
    createLog: createTestLog,
    fs,
    onWarning: () => undefined,
    ...options,
  });
  const state = await storage.load();
  return { storage, state };
}

/** A storage over CrashFs holding entries 1..20 (term 1) and a snapshot at 10, all durable. */
async function healthy(options: Partial<FilePersistenceOptions> = {}) {
  const fs = new CrashFs();
  const path = `/disk-errors-${++runs}`;
  const { storage } = await openOn(fs, path, options);
  await storage.save(
    { snapshot: null, entries: runOf(1, 20, 1), hardState: { term: 1, vote: 'n1', commit: 20 } },
    true,
  );
  await storage.saveSnapshot(snapshotAt(10, 1));
  return { fs, path, storage };
}

async function rejection(promise: Promise<unknown>): Promise<StorageError> {
  const error: unknown = await promise.then(
    () => null,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(StorageError);
  return error as StorageError;
}

describe('disk errors', () => {
  const cases: {
    name: string;
    fault: Fault;
    code: 'DISK_FULL' | 'STORAGE_FAILED';
    errno: string;
  }[] = [
    {
      name: 'ENOSPC on the WAL write',
      fault: { op: 'write', path: /\.wal$/, code: 'ENOSPC' },
      code: 'DISK_FULL',
      errno: 'ENOSPC',
    },
    {
      name: 'a short write, then ENOSPC',
      fault: { op: 'write', path: /\.wal$/, code: 'ENOSPC', partialBytes: 100 },
      code: 'DISK_FULL',
      errno: 'ENOSPC',
    },
    {
      name: 'EIO on the WAL write',
      fault: { op: 'write', path: /\.wal$/, code: 'EIO' },
      code: 'STORAGE_FAILED',
      errno: 'EIO',
    },
    {
      name: 'EIO on fdatasync',
      fault: { op: 'datasync', path: /\.wal$/, code: 'EIO' },
      code: 'STORAGE_FAILED',
      errno: 'EIO',
    },
    {
      name: 'EDQUOT on the WAL write',
      fault: { op: 'write', path: /\.wal$/, code: 'EDQUOT' },
      code: 'DISK_FULL',
      errno: 'EDQUOT',
    },
  ];

  for (const { name, fault, code, errno } of cases) {
    it(`${name}: the group fails, everything after fails, nothing durable is lost`, async () => {
      const { fs, path, storage } = await healthy();
      fs.inject(fault);
      // Three concurrent saves, one group: the failing write fails all three.
      const first = storage.save(
        {
          snapshot: null,
          entries: runOf(21, 2, 2),
          hardState: { term: 2, vote: 'n2', commit: 20 },
        },
        true,
      );
      const second = storage.save(
        { snapshot: null, entries: runOf(23, 2, 2), hardState: null },
        true,
      );
      const third = storage.save(
        { snapshot: null, entries: runOf(25, 2, 2), hardState: null },
        true,
      );
      const errors = await Promise.all([first, second, third].map(rejection));
      for (const error of errors) {
        expect(error.code).toBe(code);
        expect(error.message).toContain(errno);
        expect(error.message).toContain('storage is read-only until the node restarts');
        expect((error.cause as NodeJS.ErrnoException).code).toBe(errno);
      }
      expect(storage.failed).toBe(errors[0]);
      // Every later write is refused at once with the same error, without touching the disk.
      const opsAfterFailure = fs.ops;
      expect(
        await rejection(
          storage.save({ snapshot: null, entries: runOf(21, 1, 2), hardState: null }, true),
        ),
      ).toBe(errors[0]);
      expect(await rejection(storage.saveSnapshot(snapshotAt(15, 1)))).toBe(errors[0]);
      expect(await rejection(storage.compact(10))).toBe(errors[0]);
      expect(fs.ops).toBe(opsAfterFailure);
      // Reads still work.
      expect((await storage.loadSnapshot())?.meta.index).toBe(10);
      await storage.close();

      // Restart as after kill -9 and as after a power loss: what was durable is all there.
      let seed = 12345;
      const random = (): number => (seed = (seed * 16807) % 2147483647) / 2147483647;
      for (const after of [
        fs.snapshotAsIs(),
        fs.crash(random),
        fs.crash(random),
        fs.crash(random),
      ]) {
        const { storage: reopened, state } = await openOn(after, path);
        expect(state.snapshot?.meta.index).toBe(10);
        const terms = termsOf(state.log);
        expect(terms.slice(0, 10)).toEqual(new Array<number>(10).fill(1));
        // The failed group was never acknowledged; whatever of it reached the disk is whole
        // saves (2 entries each) in order.
        expect([10, 12, 14, 16]).toContain(terms.length);
        expectIntact(state.log);
        await reopened.close();
      }
    });
  }

  it('EROFS when starting a new segment fails the storage with STORAGE_FAILED', async () => {
    const { fs, path, storage } = await healthy({ limits: { segmentBytesMax: 4096 } });
    fs.inject({ op: 'open', path: /\.wal$/, code: 'EROFS' });
    let error: StorageError | null = null;
    let acknowledged = 20;
    for (let i = 21; error === null; i += 5) {
      error = await storage
        .save({ snapshot: null, entries: runOf(i, 5, 1), hardState: null }, true)
        .then(
          () => {
            acknowledged = i + 4;
            return null;
          },
          (caught: StorageError) => caught,
        );
    }
    expect(error.code).toBe('STORAGE_FAILED');
    expect(error.message).toMatch(/^Cannot write: EROFS: injected \(open .*\.wal\)/);
    await storage.close();
    const { storage: reopened, state } = await openOn(fs.snapshotAsIs(), path, {
      limits: { segmentBytesMax: 4096 },
    });
    expect(state.log.lastIndex()).toBe(acknowledged);
    await reopened.close();
  });

  it('ENOSPC while writing a snapshot file keeps the previous snapshot in force', async () => {
    const { fs, path, storage } = await healthy();
    fs.inject({ op: 'write', path: /\.snap\.tmp$/, code: 'ENOSPC' });
    const error = await rejection(storage.saveSnapshot(snapshotAt(18, 1)));
    expect(error.code).toBe('DISK_FULL');
    expect((await storage.loadSnapshot())?.meta.index).toBe(10);
    await storage.close();
    const after = fs.snapshotAsIs();
    const { storage: reopened, state } = await openOn(after, path);
    expect(state.snapshot?.meta.index).toBe(10);
    expect(state.log.lastIndex()).toBe(20);
    expect(reopened.recovery?.warnings.some((warning) => warning.includes('.snap.tmp'))).toBe(true);
    await reopened.close();
  });

  it('EIO on the directory fsync after a snapshot rename fails the storage', async () => {
    const { fs, storage } = await healthy();
    fs.inject({ op: 'syncDir', path: /snap$/, code: 'EIO' });
    const error = await rejection(storage.saveSnapshot(snapshotAt(18, 1)));
    expect(error.code).toBe('STORAGE_FAILED');
    expect((await storage.loadSnapshot())?.meta.index).toBe(10);
    await storage.close();
  });

  describe('on a real 1 MiB tmpfs', () => {
    let root: Awaited<ReturnType<typeof tempDir>>;
    let mountPoint: string;
    let mounted = false;

    beforeEach(async () => {
      root = await tempDir('phantomdb-tmpfs-');
      mountPoint = join(root.path, 'mnt');
      await mkdir(mountPoint);
      try {
        execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mountPoint], {
          stdio: 'pipe',
        });
        mounted = true;
      } catch {
        mounted = false;
      }
    });

    afterEach(async () => {
      if (mounted) execFileSync('umount', [mountPoint], { stdio: 'pipe' });
      mounted = false;
      await root.remove();
    });

    it('fills the disk: DISK_FULL, every acknowledged entry survives, a restart recovers', async (context) => {
      if (!mounted)
        context.skip(
          'mount -t tmpfs is not permitted here (needs root); covered by injected faults',
        );
      const path = join(mountPoint, 'node');
      const storage = new FilePersistence({
        dir: path,
        createLog: createTestLog,
        onWarning: () => undefined,
        limits: { segmentBytesMax: 256 * 1024 },
      });
      await storage.load();
      let acknowledged = 0;
      let error: StorageError | null = null;
      while (error === null) {
        const first = acknowledged + 1;
        error = await storage
          .save(
            {
              snapshot: null,
              entries: runOf(first, 20, 1, 1000),
              hardState: { term: 1, vote: 'n1', commit: first },
            },
            true,
          )
          .then(
            () => {
              acknowledged = first + 19;
              return null;
            },
            (caught: StorageError) => caught,
          );
      }
      expect(error.code).toBe('DISK_FULL');
      expect(error.message).toContain('ENOSPC');
      expect(acknowledged).toBeGreaterThan(500);
      await storage.close();

      const reopened = new FilePersistence({
        dir: path,
        createLog: createTestLog,
        onWarning: () => undefined,
        limits: { segmentBytesMax: 256 * 1024 },
      });
      const state = await reopened.load();
      expect(state.log.lastIndex()).toBe(acknowledged);
      expectIntact(state.log);
      await reopened.close();

      // Read-only: recovery fails with a clear error naming EROFS, and damages nothing.
      execFileSync('mount', ['-o', 'remount,ro', mountPoint], { stdio: 'pipe' });
      const readOnly = new FilePersistence({
        dir: path,
        createLog: createTestLog,
        onWarning: () => undefined,
      });
      const loadError: unknown = await readOnly.load().catch((caught: unknown) => caught);
      expect(loadError).toBeInstanceOf(StorageError);
      expect((loadError as StorageError).code).toBe('STORAGE_FAILED');
      expect((loadError as StorageError).message).toContain('EROFS');
      execFileSync('mount', ['-o', 'remount,rw', mountPoint], { stdio: 'pipe' });
      const final = new FilePersistence({
        dir: path,
        createLog: createTestLog,
        onWarning: () => undefined,
      });
      expect((await final.load()).log.lastIndex()).toBe(acknowledged);
      await final.close();
      await rm(path, { recursive: true });
    });
  });
});
