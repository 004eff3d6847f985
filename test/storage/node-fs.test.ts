// Checks the real file system behind FilePersistence (nodeFs) on a temp directory: writes small
// enough to be done on the calling thread and large ones done in the thread pool land at their
// positions, and a failing write or fdatasync rejects its promise instead of throwing, whether
// it ran on the calling thread or in the pool.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nodeFs, writeFully } from '../../src/storage/fs.js';
import { useTempDir } from './helpers/entries.js';

function filled(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let k = 0; k < length; k++) bytes[k] = (k * 31 + seed) & 0xff;
  return bytes;
}

describe('nodeFs', () => {
  const dir = useTempDir('phantomdb-nodefs-');

  it('writes chunks of any size at their positions, small ones and large ones alike', async () => {
    const path = join(dir.path, 'segment');
    const file = await nodeFs.open(path, 'createNew');
    const expected = new Uint8Array(3 * 1024 * 1024);
    let position = 0;
    // One chunk and several, below and above what is written without the thread pool.
    const writes = [[100], [7, 9, 4096], [300 * 1024], [1024 * 1024, 5], [64 * 1024, 64 * 1024]];
    for (const [w, sizes] of writes.entries()) {
      const chunks = sizes.map((size, k) => filled(size, w * 10 + k));
      await writeFully(file, chunks, position);
      for (const chunk of chunks) {
        expected.set(chunk, position);
        position += chunk.length;
      }
    }
    // Overwrite inside what is there.
    const patch = filled(333, 99);
    expect(await file.write([patch], 1000)).toBe(333);
    expected.set(patch, 1000);
    await file.datasync();
    await file.close();
    const read = await readFile(path);
    expect(read.length).toBe(position);
    // Buffer.compare: a deep equality of megabytes byte by byte is slow to run and to report.
    expect(Buffer.compare(read, expected.subarray(0, position))).toBe(0);
  });

  it('fdatasyncs on the calling thread or in the pool, and rejects a failure either way', async () => {
    // Durability itself cannot be seen from here (a read comes from the page cache): what is
    // checked is that both calls complete on a real file, and that a failure is a rejection,
    // never a synchronous throw that would escape the storage's error handling.
    const path = join(dir.path, 'synced');
    const file = await nodeFs.open(path, 'createNew');
    for (const blocking of [true, false]) {
      await writeFully(file, [filled(100, blocking ? 1 : 2)], 0);
      await file.datasync(blocking);
      expect(await readFile(path)).toEqual(Buffer.from(filled(100, blocking ? 1 : 2)));
    }
    await file.close();
    // A device that cannot sync: the system call itself fails (EINVAL), on the calling thread
    // and in the pool's callback alike.
    const device = await nodeFs.open('/dev/null', 'readWrite');
    for (const blocking of [true, false]) {
      const error = (await device
        .datasync(blocking)
        .catch((caught: unknown) => caught)) as NodeJS.ErrnoException;
      expect(error.code).toBe('EINVAL');
    }
    await device.close();
    // A closed handle's descriptor is -1: Node 20 refuses it before the system call
    // (ERR_OUT_OF_RANGE; EBADF if a version lets it through). Either way it is a rejection.
    for (const blocking of [true, false]) {
      const synced = file.datasync(blocking);
      expect(synced).toBeInstanceOf(Promise);
      const error = (await synced.catch((caught: unknown) => caught)) as NodeJS.ErrnoException;
      expect(error.code).toMatch(/^(ERR_OUT_OF_RANGE|EBADF)$/);
    }
  });

  it('rejects a failed write instead of throwing, inline or not', async () => {
    const file = await nodeFs.open(join(dir.path, 'closed'), 'createNew');
    await file.close();
    for (const size of [10, 2 * 1024 * 1024]) {
      const written = file.write([new Uint8Array(size)], 0);
      expect(written).toBeInstanceOf(Promise);
      const error = (await written.catch((caught: unknown) => caught)) as NodeJS.ErrnoException;
      expect(error.code).toMatch(/^E/);
    }
  });
});
