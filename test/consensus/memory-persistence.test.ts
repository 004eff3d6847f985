// MemoryPersistence keeps the RaftPersistence contract: synced writes survive a crash, unsynced
// and in-flight ones do not, a clean close keeps everything, and a crashed instance is dead.
import { describe, expect, it } from 'vitest';
import { StorageError } from '../../src/errors.js';
import { EntryBatchBuilder, EntryType, type EntryBatch } from '../../src/raft/batch.js';
import { MemoryPersistence } from '../../src/storage/memory.js';

function entries(first: number, terms: number[]): EntryBatch {
  const builder = new EntryBatchBuilder(first);
  terms.forEach((term, k) => builder.add(term, EntryType.Normal, new Uint8Array([first + k])));
  return builder.finish();
}

const conf = { voters: ['a'], votersOutgoing: [], learners: [] };

describe('MemoryPersistence', () => {
  it('starts empty and returns a log the caller owns', async () => {
    const disk = new MemoryPersistence();
    const state = await disk.load();
    expect(state.hardState).toEqual({ term: 0, vote: '', commit: 0 });
    expect(state.snapshot).toBeNull();
    expect(state.log.lastIndex()).toBe(0);
    await disk.save({ snapshot: null, entries: entries(1, [1, 1]), hardState: null }, true);
    const again = await disk.load();
    again.log.truncateFrom(1);
    expect((await disk.load()).log.lastIndex()).toBe(2);
  });

  it('keeps synced writes across a crash and loses unsynced ones', async () => {
    const disk = new MemoryPersistence();
    await disk.load();
    await disk.save(
      {
        snapshot: null,
        entries: entries(1, [1, 1, 1]),
        hardState: { term: 1, vote: 'a', commit: 0 },
      },
      true,
    );
    await disk.save(
      { snapshot: null, entries: null, hardState: { term: 1, vote: 'a', commit: 3 } },
      false,
    );
    const revived = disk.crash();
    const state = await revived.load();
    expect(state.hardState).toEqual({ term: 1, vote: 'a', commit: 0 });
    expect(state.log.lastIndex()).toBe(3);
    // The dead instance refuses everything.
    await expect(
      disk.save({ snapshot: null, entries: null, hardState: null }, true),
    ).rejects.toBeInstanceOf(StorageError);
    await expect(disk.load()).rejects.toThrow(/crashed/);
  });

  it('makes unsynced writes durable on a clean close, and with the next synced write', async () => {
    const disk = new MemoryPersistence();
    await disk.load();
    await disk.save(
      { snapshot: null, entries: null, hardState: { term: 2, vote: '', commit: 0 } },
      false,
    );
    await disk.save({ snapshot: null, entries: entries(1, [2]), hardState: null }, true);
    expect(disk.durable().hardState.term).toBe(2);
    await disk.save(
      { snapshot: null, entries: null, hardState: { term: 2, vote: '', commit: 1 } },
      false,
    );
    await disk.close();
    expect(disk.durable().hardState.commit).toBe(1);
    await expect(
      disk.save({ snapshot: null, entries: null, hardState: null }, true),
    ).rejects.toThrow(/closed/);
    expect((await disk.load()).hardState.commit).toBe(1);
  });

  it('loses a synced write still in flight when it crashes', async () => {
    const disk = new MemoryPersistence({ syncDelayMs: 20 });
    await disk.load();
    const write = disk.save({ snapshot: null, entries: entries(1, [1]), hardState: null }, true);
    const revived = disk.crash();
    await expect(write).rejects.toBeInstanceOf(StorageError);
    expect((await revived.load()).log.lastIndex()).toBe(0);
  });

  it('replaces a suffix, installs snapshots and compacts no further than the snapshot', async () => {
    const disk = new MemoryPersistence();
    await disk.load();
    await disk.save({ snapshot: null, entries: entries(1, [1, 1, 1, 1]), hardState: null }, true);
    await disk.save({ snapshot: null, entries: entries(3, [2, 2]), hardState: null }, true);
    let log = (await disk.load()).log;
    expect([log.termAt(2), log.termAt(3), log.termAt(4)]).toEqual([1, 2, 2]);
    await disk.saveSnapshot({ meta: { index: 2, term: 1, conf }, data: new Uint8Array([7]) });
    await disk.compact(10);
    expect(disk.durable()).toMatchObject({ firstIndex: 3, lastIndex: 4, snapshotIndex: 2 });
    await expect(
      disk.saveSnapshot({ meta: { index: 1, term: 1, conf }, data: new Uint8Array() }),
    ).rejects.toBeInstanceOf(RangeError);
    // A snapshot received from a leader replaces the whole log.
    await disk.save(
      {
        snapshot: { meta: { index: 9, term: 3, conf }, data: new Uint8Array([9]) },
        entries: entries(10, [3]),
        hardState: null,
      },
      true,
    );
    const state = await disk.load();
    log = state.log;
    expect([log.firstIndex(), log.lastIndex(), log.termAt(9)]).toEqual([10, 10, 3]);
    expect(state.snapshot?.data).toEqual(new Uint8Array([9]));
    expect((await disk.loadSnapshot())?.meta.index).toBe(9);
  });

  it('validates its options', () => {
    expect(() => new MemoryPersistence({ syncDelayMs: -1 })).toThrow(RangeError);
  });
});
