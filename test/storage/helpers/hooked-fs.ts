// The real file system with some calls of the files it opens replaced: a test slows, holds,
// traces or fails an fsync without writing a whole StorageFile around it.
import { nodeFs, type StorageFile, type StorageFs } from '../../../src/storage/fs.js';

/**
 * `nodeFs`, except that each file it opens has the calls `hooksOf(path, file)` returns in place
 * of its own (`file` is the real file, for a hook that goes on to it).
 */
export function hookedFs(
  hooksOf: (path: string, file: StorageFile) => Partial<StorageFile>,
): StorageFs {
  return {
    ...nodeFs,
    async open(path, mode) {
      const file = await nodeFs.open(path, mode);
      return {
        write: (chunks, position) => file.write(chunks, position),
        datasync: (blocking) => file.datasync(blocking),
        sync: () => file.sync(),
        truncate: (size) => file.truncate(size),
        close: () => file.close(),
        ...hooksOf(path, file),
      };
    },
  };
}
