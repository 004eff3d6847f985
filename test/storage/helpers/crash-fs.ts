// An in-memory StorageFs that models what survives a power loss, and injects I/O errors.
//
// Each file keeps its current bytes and the bytes as of its last fsync/fdatasync; each
// directory keeps its current names and the names as of its last directory fsync. `crash()`
// builds the file system a machine would find after losing power at that moment: for every
// name whose creation, rename or removal was not made durable by a directory fsync, either the
// old or the new state; for every file, its synced bytes plus, at random, part of what was
// written after (a torn tail: a prefix of the new bytes, or zeros where the size grew but the
// data did not land). Unsynced writes that changed already-synced bytes are lost.
import { dirname, basename } from 'node:path';
import type { OpenMode, StorageFile, StorageFs } from '../../../src/storage/fs.js';

interface Inode {
  data: Uint8Array;
  synced: Uint8Array;
}

interface Dir {
  current: Map<string, Inode>;
  durable: Map<string, Inode>;
}

/** A Node-style error with a code, as the real fs would throw. */
export function fsError(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

/** Operations that change state; `crashAfter` and `inject` count and match these. */
export type MutatingOp =
  'open' | 'write' | 'datasync' | 'sync' | 'truncate' | 'rename' | 'unlink' | 'syncDir';

/** A fault: thrown (instead of doing the operation) when `op` on a path matching `path` runs. */
export interface Fault {
  readonly op: MutatingOp;
  readonly path?: RegExp;
  readonly code: string;
  /** For writes: bytes written before failing (a short write, then the error on the next call). */
  readonly partialBytes?: number;
  /** Skip this many matching operations first. */
  skip?: number;
}

/** The in-memory file system. */
export class CrashFs implements StorageFs {
  private dirs = new Map<string, Dir>();
  private opsLeft = Number.POSITIVE_INFINITY;
  private crashed = false;
  /** Mutating operations performed so far. */
  ops = 0;
  readonly faults: Fault[] = [];

  /** Makes the `n`-th mutating operation from now, and everything after it, fail as if the power went. */
  crashAfter(n: number): void {
    this.opsLeft = n;
  }

  /** Whether the simulated power loss has happened. */
  get hasCrashed(): boolean {
    return this.crashed;
  }

  /** Fails the next matching operation with `fault.code`. */
  inject(fault: Fault): void {
    this.faults.push(fault);
  }

  private before(op: MutatingOp | 'read', path: string): Fault | null {
    if (this.crashed) throw fsError('EIO', `power lost (${op} ${path})`);
    if (op === 'read') return null;
    if (process.env.CRASHFS_TRACE && path.includes(process.env.CRASHFS_TRACE))
      console.log('OP', op, path, this.opsLeft);
    if (this.opsLeft <= 0) {
      this.crashed = true;
      throw fsError('EIO', `power lost (${op} ${path})`);
    }
    this.opsLeft--;
    this.ops++;
    const index = this.faults.findIndex(
      (fault) => fault.op === op && (fault.path?.test(path) ?? true),
    );
    if (index < 0) return null;
    const fault = this.faults[index]!;
    if ((fault.skip ?? 0) > 0) {
      fault.skip!--;
      return null;
    }
    this.faults.splice(index, 1);
    if (op === 'write' && fault.partialBytes !== undefined) return fault;
    throw fsError(fault.code, `injected (${op} ${path})`);
  }

  private dir(path: string): Dir {
    const dir = this.dirs.get(path);
    if (dir === undefined) throw fsError('ENOENT', `no directory ${path}`);
    return dir;
  }

  private inode(path: string): Inode {
    const inode = this.dir(dirname(path)).current.get(basename(path));
    if (inode === undefined) throw fsError('ENOENT', `no file ${path}`);
    return inode;
  }

  async open(path: string, mode: OpenMode): Promise<StorageFile> {
    await Promise.resolve();
    this.before('open', path);
    const dir = this.dir(dirname(path));
    const name = basename(path);
    let inode = dir.current.get(name);
    if (mode === 'createNew') {
      if (inode !== undefined) throw fsError('EEXIST', path);
      inode = { data: new Uint8Array(0), synced: new Uint8Array(0) };
      dir.current.set(name, inode);
    } else if (inode === undefined) {
      throw fsError('ENOENT', path);
    }
    return this.handle(inode, path);
  }

  private handle(inode: Inode, path: string): StorageFile {
    let closed = false;
    const check = (): void => {
      if (closed) throw fsError('EBADF', `${path} is closed`);
    };
    return {
      write: async (chunks, position) => {
        await Promise.resolve();
        check();
        const fault = this.before('write', path);
        let total = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
        if (fault !== null) total = Math.min(total, fault.partialBytes!);
        const end = position + total;
        if (end > inode.data.length) {
          const grown = new Uint8Array(end);
          grown.set(inode.data);
          inode.data = grown;
        }
        let at = position;
        let left = total;
        for (const chunk of chunks) {
          if (left === 0) break;
          const part = chunk.subarray(0, Math.min(chunk.length, left));
          inode.data.set(part, at);
          at += part.length;
          left -= part.length;
        }
        if (fault !== null) {
          // The short write went through; the next write fails with the fault's code.
          this.faults.unshift({ op: 'write', path: new RegExp(escape(path)), code: fault.code });
        }
        return total;
      },
      datasync: async () => {
        await Promise.resolve();
        check();
        this.before('datasync', path);
        inode.synced = inode.data.slice();
      },
      sync: async () => {
        await Promise.resolve();
        check();
        this.before('sync', path);
        inode.synced = inode.data.slice();
      },
      truncate: async (size) => {
        await Promise.resolve();
        check();
        this.before('truncate', path);
        const cut = new Uint8Array(size);
        cut.set(inode.data.subarray(0, Math.min(size, inode.data.length)));
        inode.data = cut;
      },
      close: async () => {
        await Promise.resolve();
        closed = true;
      },
    };
  }

  async readFile(path: string): Promise<Uint8Array> {
    await Promise.resolve();
    this.before('read', path);
    return this.inode(path).data.slice();
  }

  async readdir(path: string): Promise<string[]> {
    await Promise.resolve();
    this.before('read', path);
    return [...this.dir(path).current.keys()];
  }

  async mkdir(path: string): Promise<void> {
    await Promise.resolve();
    this.before('read', path);
    // Directories are durable at once here: the storage's own directories are created once.
    for (let at = path; !this.dirs.has(at); at = dirname(at)) {
      this.dirs.set(at, { current: new Map(), durable: new Map() });
      if (dirname(at) === at) break;
    }
  }

  async rename(from: string, to: string): Promise<void> {
    await Promise.resolve();
    this.before('rename', from);
    const inode = this.inode(from);
    this.dir(dirname(from)).current.delete(basename(from));
    this.dir(dirname(to)).current.set(basename(to), inode);
  }

  async unlink(path: string): Promise<void> {
    await Promise.resolve();
    this.before('unlink', path);
    this.inode(path);
    this.dir(dirname(path)).current.delete(basename(path));
  }

  async syncDir(path: string): Promise<void> {
    await Promise.resolve();
    this.before('syncDir', path);
    const dir = this.dir(path);
    dir.durable = new Map(dir.current);
  }

  /** The file system after a power loss now, choosing among the allowed outcomes with `random`. */
  crash(random: () => number): CrashFs {
    const next = new CrashFs();
    const survivors = new Map<Inode, Inode>();
    const survive = (inode: Inode): Inode => {
      let copy = survivors.get(inode);
      if (copy === undefined) {
        const data = afterPowerLoss(inode, random);
        copy = { data, synced: data.slice() };
        survivors.set(inode, copy);
      }
      return copy;
    };
    for (const [path, dir] of this.dirs) {
      const names = new Map<string, Inode>();
      for (const name of new Set([...dir.current.keys(), ...dir.durable.keys()])) {
        const now = dir.current.get(name);
        const then = dir.durable.get(name);
        const chosen = now === then ? now : random() < 0.5 ? then : now;
        if (chosen !== undefined) names.set(name, survive(chosen));
      }
      next.dirs.set(path, { current: names, durable: new Map(names) });
    }
    return next;
  }

  /** The file system as it is (what a kill -9 leaves: everything written, synced or not). */
  snapshotAsIs(): CrashFs {
    const next = new CrashFs();
    const copies = new Map<Inode, Inode>();
    for (const [path, dir] of this.dirs) {
      const names = new Map<string, Inode>();
      for (const [name, inode] of dir.current) {
        let copy = copies.get(inode);
        if (copy === undefined) {
          copy = { data: inode.data.slice(), synced: inode.data.slice() };
          copies.set(inode, copy);
        }
        names.set(name, copy);
      }
      next.dirs.set(path, { current: names, durable: new Map(names) });
    }
    return next;
  }

  /** Current bytes of a file (for tests that corrupt or inspect files). */
  bytesOf(path: string): Uint8Array {
    return this.inode(path).data;
  }

  /** Replaces a file's bytes, durably. */
  setBytes(path: string, bytes: Uint8Array): void {
    const inode = this.inode(path);
    inode.data = bytes.slice();
    inode.synced = bytes.slice();
  }

  /** Names in a directory now. */
  list(path: string): string[] {
    return [...this.dir(path).current.keys()].sort();
  }
}

function afterPowerLoss(inode: Inode, random: () => number): Uint8Array {
  const { data, synced } = inode;
  const appendedOnly = data.length >= synced.length && sameBytes(data, synced, synced.length);
  if (!appendedOnly) {
    // A truncate or an overwrite that was never synced: either state may be what is found.
    return (random() < 0.5 ? synced : data).slice();
  }
  const extra = data.length - synced.length;
  if (extra === 0) return synced.slice();
  const kept = Math.floor(random() * (extra + 1));
  const result = new Uint8Array(synced.length + kept);
  result.set(synced);
  // Either a prefix of the new bytes landed, or the size grew but the data did not (zeros).
  if (random() < 0.75)
    result.set(data.subarray(synced.length, synced.length + kept), synced.length);
  return result;
}

function sameBytes(a: Uint8Array, b: Uint8Array, length: number): boolean {
  for (let i = 0; i < length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
