// timedFs: every fdatasync of the files it opens is timed and reported, failed or not, and the
// calling-thread choice reaches the file underneath (dropping it would quietly send a
// follower's fsyncs back through the thread pool).
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { timedFs } from '../../src/node/timed-fs.js';
import { useTempDir } from '../storage/helpers/entries.js';
import { hookedFs } from '../storage/helpers/hooked-fs.js';

describe('timedFs', () => {
  const dir = useTempDir('phantomdb-timedfs-');

  it('reports each datasync and passes its blocking choice on', async () => {
    const asked: (boolean | undefined)[] = [];
    const underneath = hookedFs((_path, file) => ({
      datasync: async (blocking) => {
        asked.push(blocking);
        if (asked.length === 2) await new Promise((resolve) => setTimeout(resolve, 30));
        if (asked.length === 3) throw Object.assign(new Error('EIO'), { code: 'EIO' });
        await file.datasync(blocking);
      },
    }));
    const observed: { seconds: number; failed: boolean }[] = [];
    const fs = timedFs(underneath, (seconds, failed) => observed.push({ seconds, failed }));
    const file = await fs.open(join(dir.path, 'segment'), 'createNew');
    await file.write([new Uint8Array(10)], 0);
    await file.datasync(true);
    await file.datasync();
    await expect(file.datasync(true)).rejects.toMatchObject({ code: 'EIO' });
    await file.close();
    expect(asked).toEqual([true, undefined, true]);
    expect(observed.map((entry) => entry.failed)).toEqual([false, false, true]);
    // The second one was held for 30 ms: its time is the whole call's, wait included.
    expect(observed[1]!.seconds).toBeGreaterThanOrEqual(0.025);
  });
});
