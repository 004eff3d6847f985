// FilePersistence on a real temp directory: round trips, overwrites, segments, snapshots,
// compaction, group commit, validation and the directory lock, each by writing then reopening.
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ShutdownError, StorageError } from '../../src/errors.js';
import { emptyBatch } from '../../src/raft/batch.js';
import type { StoredSnapshot } from '../../src/storage/types.js';
import { FilePersistence } from '../../src/storage/file-persistence.js';
import type { FilePersistenceOptions } from '../../src/storage/file-persistence.js';
import {
  createTestLog,
  expectIntact,
  makeBatch,
  runOf,
  tempDir,
  termsOf,
} from './helpers/entries.js';
import { hookedFs } from './helpers/hooked-fs.js';

const conf = { voters: ['n1', 'n2', 'n3'], votersOutgoing: [], learners: [] };
const noUpdate = { snapshot: null, entries: null, hardState: null };

function snapshotAt(index: number, term: number, text = `state@${index}`): StoredSnapshot {
  return { meta: { index, term, conf }, data: new TextEncoder().encode(text) };
}

describe('FilePersistence', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  const opened: FilePersistence[] = [];

  function open(options: Partial<FilePersistenceOptions> = {}): FilePersistence {
    const storage = new FilePersistence({
      dir: dir.path,
      createLog: createTestLog,
      onWarning: () => undefined,
      ...options,
    });
    opened.push(storage);
    return storage;
  }

  async function reopen(
    storage: FilePersistence,
    options: Partial<FilePersistenceOptions> = {},
  ): Promise<{ storage: FilePersistence; state: Awaited<ReturnType<FilePersistence['load']>> }> {
    await storage.close();
    const next = open(options);
    return { storage: next, state: await next.load() };
  }

  beforeEach(async () => {
    dir = await tempDir();
  });

  afterEach(async () => {
    for (const storage of opened.splice(0)) await storage.close();
    await dir.remove();
  });

  it('starts empty on a fresh directory and creates one segment', async () => {
    const storage = open();
    const state = await storage.load();
    expect(state.hardState).toEqual({ term: 0, vote: '', commit: 0 });
    expect(state.snapshot).toBeNull();
    expect(state.log.lastIndex()).toBe(0);
    expect(state.log.firstIndex()).toBe(1);
    expect(await readdir(join(dir.path, 'wal'))).toEqual(['0000000000000001.wal']);
    expect(storage.recovery?.tornTail).toBeNull();
  });

  it('gives back entries and the last hard state after a restart', async () => {
    const storage = open();
    await storage.load();
    await storage.save(
      { snapshot: null, entries: runOf(1, 5, 1), hardState: { term: 1, vote: 'n1', commit: 0 } },
      true,
    );
    await storage.save(
      { snapshot: null, entries: runOf(6, 3, 2), hardState: { term: 2, vote: 'n2', commit: 4 } },
      true,
    );
    await storage.save(
      { snapshot: null, entries: null, hardState: { term: 2, vote: 'n2', commit: 8 } },
      true,
    );
    const { state } = await reopen(storage);
    expect(state.hardState).toEqual({ term: 2, vote: 'n2', commit: 8 });
    expect(termsOf(state.log)).toEqual([1, 1, 1, 1, 1, 2, 2, 2]);
    expectIntact(state.log);
  });

  it('drops the old suffix when entries overwrite from an index (leader change)', async () => {
    const storage = open();
    await storage.load();
    await storage.save({ snapshot: null, entries: runOf(1, 10, 1), hardState: null }, true);
    await storage.save({ snapshot: null, entries: runOf(7, 2, 3), hardState: null }, true);
    const { storage: again, state } = await reopen(storage);
    expect(termsOf(state.log)).toEqual([1, 1, 1, 1, 1, 1, 3, 3]);
    expectIntact(state.log);
    // An empty batch truncates too: "replaces everything from firstIndex on".
    await again.save({ snapshot: null, entries: emptyBatch(5), hardState: null }, true);
    const { state: third } = await reopen(again);
    expect(termsOf(third.log)).toEqual([1, 1, 1, 1]);
  });

  it('keeps entries written with sync=false once a later sync save resolves', async () => {
    const storage = open();
    await storage.load();
    await storage.save({ snapshot: null, entries: runOf(1, 3, 1), hardState: null }, false);
    await storage.save({ snapshot: null, entries: runOf(4, 3, 1), hardState: null }, false);
    await storage.save(noUpdate, true);
    expect(storage.stats().fsyncs).toBe(1);
    const { state } = await reopen(storage);
    expect(state.log.lastIndex()).toBe(6);
  });

  it('rolls over to new segments past segmentBytesMax and replays them in order', async () => {
    const storage = open({ limits: { segmentBytesMax: 4096, recordBytesMax: 1024 } });
    await storage.load();
    let term = 1;
    for (let i = 1; i <= 300; i += 10) {
      if (i % 70 === 1) term++;
      await storage.save(
        {
          snapshot: null,
          entries: runOf(i, 10, term, 120),
          hardState: { term, vote: 'n1', commit: i },
        },
        true,
      );
    }
    const segments = await readdir(join(dir.path, 'wal'));
    expect(segments.length).toBeGreaterThan(5);
    for (const name of segments) {
      // A segment holds at most one group past the bound.
      expect((await readFile(join(dir.path, 'wal', name))).length).toBeLessThanOrEqual(
        4096 + 2 * 1024,
      );
    }
    const { state } = await reopen(storage, {
      limits: { segmentBytesMax: 4096, recordBytesMax: 1024 },
    });
    expect(state.log.lastIndex()).toBe(300);
    expect(state.hardState).toEqual({ term, vote: 'n1', commit: 291 });
    expectIntact(state.log);
  });

  it('splits a batch larger than recordBytesMax over several records', async () => {
    const storage = open({ limits: { recordBytesMax: 1024 } });
    await storage.load();
    const batch = runOf(1, 100, 1, 200);
    await storage.save({ snapshot: null, entries: batch, hardState: null }, true);
    const { state } = await reopen(storage);
    expect(state.log.lastIndex()).toBe(100);
    expectIntact(state.log);
  });

  it('saves a snapshot, compacts covered segments and replays from the snapshot', async () => {
    const limits = { segmentBytesMax: 4096, recordBytesMax: 1024 };
    const storage = open({ limits });
    await storage.load();
    for (let i = 1; i <= 200; i += 10) {
      await storage.save(
        {
          snapshot: null,
          entries: runOf(i, 10, 2),
          hardState: { term: 2, vote: '', commit: i + 9 },
        },
        true,
      );
    }
    const before = (await readdir(join(dir.path, 'wal'))).length;
    await storage.saveSnapshot(snapshotAt(150, 2));
    await storage.compact(150);
    const after = (await readdir(join(dir.path, 'wal'))).length;
    expect(after).toBeLessThan(before);
    expect(storage.stats().segmentsDeleted).toBe(before - after);
    expect(await storage.loadSnapshot()).toEqual(snapshotAt(150, 2));
    const { state } = await reopen(storage, { limits });
    expect(state.snapshot?.meta).toEqual({ index: 150, term: 2, conf });
    expect(new TextDecoder().decode(state.snapshot?.data)).toBe('state@150');
    expect(state.log.firstIndex()).toBe(151);
    expect(state.log.termAt(150)).toBe(2);
    expect(state.log.lastIndex()).toBe(200);
    expect(state.hardState.commit).toBe(200);
    expectIntact(state.log);
  });

  it('keeps the last snapshotsRetained snapshot files', async () => {
    const storage = open({ limits: { snapshotsRetained: 2 } });
    await storage.load();
    await storage.save({ snapshot: null, entries: runOf(1, 50, 1), hardState: null }, true);
    for (const index of [10, 20, 30, 40]) await storage.saveSnapshot(snapshotAt(index, 1));
    expect((await readdir(join(dir.path, 'snap'))).sort()).toEqual([
      '000000000000001e-0000000000000001.snap',
      '0000000000000028-0000000000000001.snap',
    ]);
    const { state } = await reopen(storage);
    expect(state.snapshot?.meta.index).toBe(40);
    expect(state.log.firstIndex()).toBe(41);
    expect(state.log.lastIndex()).toBe(50);
  });

  it('prepares a snapshot file beside the log: saves meanwhile do not wait for it', async () => {
    // Snapshot files are synced (fsync) and WAL segments fdatasynced: hold the first sync.
    let releaseSync = (): void => undefined;
    const syncHeld = new Promise<void>((resolve) => (releaseSync = resolve));
    let syncStarted = (): void => undefined;
    const started = new Promise<void>((resolve) => (syncStarted = resolve));
    const slowSnapshotFs = hookedFs((path, file) =>
      path.startsWith(join(dir.path, 'snap'))
        ? {
            sync: async () => {
              syncStarted();
              await syncHeld;
              await file.sync();
            },
          }
        : {},
    );
    const storage = open({ fs: slowSnapshotFs });
    await storage.load();
    await storage.save({ snapshot: null, entries: runOf(1, 20, 1), hardState: null }, true);
    let prepared = false;
    const snapshot = snapshotAt(10, 1);
    const preparing = storage.prepareSnapshot(snapshot).then(() => (prepared = true));
    await started;
    await storage.save({ snapshot: null, entries: runOf(21, 5, 1), hardState: null }, true);
    expect(prepared).toBe(false);
    releaseSync();
    await preparing;
    // Saving it now writes only the record that certifies the file.
    const written = storage.stats().snapshotsWritten;
    await storage.saveSnapshot(snapshot);
    expect(storage.stats().snapshotsWritten).toBe(written);
    await storage.compact(10);
    const { state } = await reopen(storage);
    expect(state.snapshot?.meta.index).toBe(10);
    expect(new TextDecoder().decode(state.snapshot?.data)).toBe('state@10');
    expect(state.log.lastIndex()).toBe(25);
  });

  it('writes a saved snapshot again when it is not the object prepared', async () => {
    const storage = open();
    await storage.load();
    await storage.save({ snapshot: null, entries: runOf(1, 20, 1), hardState: null }, true);
    await storage.prepareSnapshot(snapshotAt(10, 1, 'prepared'));
    await storage.saveSnapshot(snapshotAt(10, 1, 'saved'));
    const { state } = await reopen(storage);
    expect(new TextDecoder().decode(state.snapshot?.data)).toBe('saved');
  });

  it('ignores a prepared snapshot never saved: recovery removes it, pruning does not count it', async () => {
    const storage = open({ limits: { snapshotsRetained: 1 } });
    await storage.load();
    await storage.save({ snapshot: null, entries: runOf(1, 30, 1), hardState: null }, true);
    await storage.saveSnapshot(snapshotAt(10, 1));
    await storage.compact(10);
    await storage.prepareSnapshot(snapshotAt(20, 1));
    // Pruning for another save counts certified files only: it keeps 15, the only one recovery
    // can use, though the prepared file at 20 is newer (counting 20 would delete 15).
    await storage.saveSnapshot(snapshotAt(15, 1));
    expect((await readdir(join(dir.path, 'snap'))).sort()).toEqual([
      '000000000000000f-0000000000000001.snap',
      '0000000000000014-0000000000000001.snap',
    ]);
    const warnings: string[] = [];
    const { state } = await reopen(storage, { onWarning: (message) => warnings.push(message) });
    expect(state.snapshot?.meta.index).toBe(15);
    expect(state.log.lastIndex()).toBe(30);
    expect(warnings.join('\n')).toMatch(/Removed snapshot .*0000000000000014.*never recorded it/);
    expect(await readdir(join(dir.path, 'snap'))).toEqual([
      '000000000000000f-0000000000000001.snap',
    ]);
  });

  it('installs a snapshot from the leader: the log restarts after it', async () => {
    const storage = open();
    await storage.load();
    await storage.save(
      { snapshot: null, entries: runOf(1, 20, 1), hardState: { term: 1, vote: '', commit: 5 } },
      true,
    );
    // The leader's snapshot at 30 (term 3) disagrees with our uncommitted 6..20: all of it goes.
    await storage.save(
      {
        snapshot: snapshotAt(30, 3),
        entries: runOf(31, 2, 3),
        hardState: { term: 3, vote: '', commit: 30 },
      },
      true,
    );
    const { storage: again, state } = await reopen(storage);
    expect(state.snapshot?.meta.index).toBe(30);
    expect(state.log.firstIndex()).toBe(31);
    expect(state.log.termAt(30)).toBe(3);
    expect(termsOf(state.log)).toEqual([3, 3]);
    expect(state.hardState).toEqual({ term: 3, vote: '', commit: 30 });
    // Install at a point below what the log already holds: the log empties at the snapshot.
    await again.save({ snapshot: null, entries: runOf(33, 5, 3), hardState: null }, true);
    await again.save({ snapshot: snapshotAt(35, 4), entries: null, hardState: null }, true);
    const { state: third } = await reopen(again);
    expect(third.log.firstIndex()).toBe(36);
    expect(third.log.lastIndex()).toBe(35);
  });

  it('accepts a bootstrap snapshot at index 0 (membership only)', async () => {
    const storage = open();
    await storage.load();
    await storage.saveSnapshot(snapshotAt(0, 0, 'bootstrap'));
    await storage.save(
      { snapshot: null, entries: runOf(1, 3, 1), hardState: { term: 1, vote: 'n1', commit: 0 } },
      true,
    );
    const { state } = await reopen(storage);
    expect(state.snapshot?.meta).toEqual({ index: 0, term: 0, conf });
    expect(state.log.firstIndex()).toBe(1);
    expect(state.log.lastIndex()).toBe(3);
  });

  it('coalesces concurrent saves into one write and one fdatasync (group commit)', async () => {
    // A disk whose fdatasync takes 20 ms: saves that arrive meanwhile must share the next one.
    const slowFs = hookedFs((_path, file) => ({
      datasync: async () => {
        await new Promise((resolve) => setTimeout(resolve, 20));
        await file.datasync();
      },
    }));
    const storage = open({ fs: slowFs });
    await storage.load();
    // 64 saves issued at once: one group.
    const saves: Promise<void>[] = [];
    for (let i = 1; i <= 64; i++) {
      saves.push(storage.save({ snapshot: null, entries: runOf(i, 1, 1), hardState: null }, true));
    }
    await Promise.all(saves);
    let stats = storage.stats();
    expect(stats.syncedSaves).toBe(64);
    expect(stats.fsyncs).toBe(1);
    expect(stats.writes).toBe(1);
    expect(stats.savesPerFsyncMax).toBe(64);
    // 8 closed-loop writers, 10 saves each, each awaiting its save before the next: every
    // group holds all 8 (a writer just resolved saves again before the next group forms).
    let next = 65;
    const writer = async (): Promise<void> => {
      for (let k = 0; k < 10; k++) {
        await storage.save({ snapshot: null, entries: runOf(next++, 1, 1), hardState: null }, true);
      }
    };
    await Promise.all(Array.from({ length: 8 }, writer));
    stats = storage.stats();
    expect(stats.syncedSaves).toBe(64 + 80);
    expect(stats.fsyncs).toBe(1 + 10);
    const { state } = await reopen(storage);
    expect(state.log.lastIndex()).toBe(144);
  });

  it('resolves saves in order, each after the fdatasync covering it', async () => {
    const events: string[] = [];
    let onDatasyncStart = (): void => undefined;
    const tracingFs = hookedFs((_path, file) => ({
      datasync: async () => {
        onDatasyncStart();
        await file.datasync();
        events.push('fdatasync');
      },
    }));
    const storage = open({ fs: tracingFs });
    await storage.load();
    events.length = 0;
    const saves = [1, 2, 3].map((i) =>
      storage.save({ snapshot: null, entries: runOf(i, 1, 1), hardState: null }, true).then(() => {
        events.push(`save ${i}`);
      }),
    );
    await Promise.all(saves);
    // Issued in one turn: one group, one fdatasync, then the saves resolve in order.
    expect(events).toEqual(['fdatasync', 'save 1', 'save 2', 'save 3']);
    // A save issued while a group's fdatasync runs waits for the next fdatasync.
    events.length = 0;
    const started = new Promise<void>((resolve) => (onDatasyncStart = resolve));
    const first = storage.save({ snapshot: null, entries: runOf(4, 1, 1), hardState: null }, true);
    await started;
    const second = storage.save({ snapshot: null, entries: runOf(5, 1, 1), hardState: null }, true);
    await Promise.all([
      first.then(() => events.push('save 4')),
      second.then(() => events.push('save 5')),
    ]);
    expect(events).toEqual(['fdatasync', 'save 4', 'fdatasync', 'save 5']);
  });

  it('waits for group fdatasyncs on the calling thread while told to, and fails alike', async () => {
    const asked: boolean[] = [];
    let failBlocking = false;
    const recordingFs = hookedFs((_path, file) => ({
      datasync: async (blocking) => {
        asked.push(blocking === true);
        if (failBlocking && blocking === true) {
          throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
        }
        await file.datasync(blocking);
      },
    }));
    const storage = open({ fs: recordingFs });
    await storage.load();
    const save = (index: number): Promise<void> =>
      storage.save({ snapshot: null, entries: runOf(index, 1, 1), hardState: null }, true);
    asked.length = 0;
    await save(1);
    storage.setBlockingSync(true);
    await save(2);
    storage.setBlockingSync(false);
    await save(3);
    expect(asked).toEqual([false, true, false]);
    // A failure on the calling thread fails the save and the storage, as one in the pool does.
    storage.setBlockingSync(true);
    failBlocking = true;
    await expect(save(4)).rejects.toBeInstanceOf(StorageError);
    await expect(save(5)).rejects.toBeInstanceOf(StorageError);
    const { state } = await reopen(storage);
    expect(state.log.lastIndex()).toBeGreaterThanOrEqual(3);
  });

  it('rejects bad input with TypeError / RangeError and writes nothing', async () => {
    const storage = open();
    await storage.load();
    await storage.save({ snapshot: null, entries: runOf(1, 3, 1), hardState: null }, true);
    await expect(
      storage.save({ snapshot: null, entries: runOf(5, 1, 1), hardState: null }, true),
    ).rejects.toThrow(
      new RangeError(
        'Cannot save entries: first index is 5, expected at most 4 (the stored log ends at 3)',
      ),
    );
    await expect(
      storage.save({ snapshot: null, entries: makeBatch(4, [0]), hardState: null }, true),
    ).rejects.toThrow(RangeError);
    await expect(
      storage.save(
        { snapshot: null, entries: null, hardState: { term: -1, vote: '', commit: 0 } },
        true,
      ),
    ).rejects.toThrow('Cannot save hard state: term is -1, expected an integer >= 0');
    await expect(storage.save(null as never, true)).rejects.toThrow(TypeError);
    await expect(storage.save(noUpdate, 'yes' as never)).rejects.toThrow(TypeError);
    await expect(
      storage.saveSnapshot({ meta: { index: 1.5, term: 1, conf }, data: new Uint8Array() }),
    ).rejects.toThrow(RangeError);
    await expect(
      storage.saveSnapshot({ meta: { index: 1, term: 1, conf }, data: 'x' as never }),
    ).rejects.toThrow(TypeError);
    await storage.saveSnapshot(snapshotAt(3, 1));
    await expect(storage.saveSnapshot(snapshotAt(2, 1))).rejects.toThrow(
      'Cannot save snapshot at index 2: a snapshot at 3 is already stored',
    );
    await expect(storage.compact(4)).rejects.toThrow(
      'Cannot compact to 4: the latest snapshot is at 3',
    );
    await expect(storage.compact(-1)).rejects.toThrow(RangeError);
    expect(() => new FilePersistence({ dir: '', createLog: createTestLog })).toThrow(TypeError);
    expect(
      () =>
        new FilePersistence({
          dir: dir.path,
          createLog: createTestLog,
          limits: { segmentBytesMax: 10 },
        }),
    ).toThrow('Invalid segmentBytesMax: 10');
    const { state } = await reopen(storage);
    expect(state.log.lastIndex()).toBe(3);
  });

  it('refuses calls before load and after close', async () => {
    const storage = open();
    await expect(storage.save(noUpdate, true)).rejects.toThrow('Cannot save: call load() first');
    await storage.load();
    await expect(storage.load()).rejects.toThrow('load() may be called once');
    await storage.close();
    await expect(storage.save(noUpdate, true)).rejects.toThrow(ShutdownError);
    await expect(storage.loadSnapshot()).rejects.toThrow(ShutdownError);
    await storage.close();
  });

  it('finishes queued writes on close', async () => {
    const storage = open();
    await storage.load();
    const pending = storage.save(
      { snapshot: null, entries: runOf(1, 100, 1), hardState: null },
      true,
    );
    await storage.close();
    await pending;
    const { state } = await reopen(storage);
    expect(state.log.lastIndex()).toBe(100);
  });

  it('locks the data directory against a second storage and a second live process', async () => {
    const first = open();
    await first.load();
    const second = open();
    const error: unknown = await second.load().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StorageError);
    expect((error as StorageError).code).toBe('STORAGE_FAILED');
    expect((error as StorageError).message).toContain('another storage in this process');
    await first.close();
    // A lock held by another live process (our parent, say): refused, naming the pid.
    const bootId = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
    await writeFile(join(dir.path, 'LOCK'), `${process.ppid} ${bootId}\n`);
    const third = open();
    await expect(third.load()).rejects.toThrow(`it is locked by process ${process.ppid}`);
    // The same live pid written before the last reboot, or a lock file cut short by a crash:
    // stale, taken over.
    for (const stale of [`${process.ppid} another-boot\n`, `${process.ppid}`]) {
      await writeFile(join(dir.path, 'LOCK'), stale);
      const storage = open();
      await storage.load();
      await storage.close();
    }
    // A lock left by a dead process is stale and taken over.
    await writeFile(join(dir.path, 'LOCK'), `2147483646 ${bootId}\n`);
    const fourth = open();
    await fourth.load();
    expect(await readFile(join(dir.path, 'LOCK'), 'utf8')).toBe(`${process.pid} ${bootId}\n`);
    await fourth.close();
    expect(await readdir(dir.path)).not.toContain('LOCK');
  });
});
