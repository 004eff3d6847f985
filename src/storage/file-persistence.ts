/**
 * FilePersistence: durable Raft storage in a data directory — a segmented write-ahead log with
 * group commit, atomic snapshot files, compaction and crash recovery.
 *
 * ```
 * <dir>/LOCK                          pid of the owning process (see DirectoryLock)
 * <dir>/wal/<seq:16 hex>.wal          segments, replayed in sequence order
 * <dir>/snap/<index>-<term>.snap      snapshot files, the last `snapshotsRetained` kept
 * ```
 *
 * Rules that make "durable" mean durable:
 * - A `save` resolves only after the fdatasync that covers its bytes. Saves that arrive while a
 *   write is in flight queue up and go out together in the next write + fdatasync (group
 *   commit), so the fsync rate, not the save rate, bounds throughput.
 * - A snapshot file is written to a temporary name, fsynced, renamed and the directory fsynced;
 *   then a WAL record certifies it. Recovery only trusts snapshot files the WAL certifies, so a
 *   crash anywhere in between leaves the previous snapshot (and the log it needs) in force.
 * - Recovery cuts off a record torn by a crash at the very tail of the last segment and says so;
 *   any other damage stops recovery with StorageError CORRUPT_LOG naming file and byte offset.
 * - After a write or fsync error nothing is retried (after a failed fsync the kernel may have
 *   dropped the dirty pages: retrying would report success for lost data). The storage turns
 *   read-only: every later write rejects with the StorageError that names the cause.
 *
 * @example
 * ```ts
 * const storage = new FilePersistence({ dir: './data/n1' });
 * const { hardState, snapshot, log } = await storage.load();
 * await storage.save({ snapshot: null, entries: batch, hardState }, true);
 * await storage.close();
 * ```
 */
import { dirname, join } from 'node:path';
import { resolveStorageLimits } from '../config.js';
import type { StorageLimits } from '../config.js';
import { ShutdownError, StorageError } from '../errors.js';
import { describeBatchProblem, lastIndexOf } from '../raft/batch.js';
import type { HardState, LogStore } from '../raft/types.js';
import { assert } from '../assert.js';
import { createLog } from '../kernel/index.js';
import { DirectoryLock } from './dir-lock.js';
import { LogReplayer, segmentBytes } from './replay.js';
import { nodeFs, writeFully } from './fs.js';
import type { StorageFile, StorageFs } from './fs.js';
import {
  checkSnapshot,
  decodeSnapshotFile,
  encodeSnapshotFile,
  parseSnapshotFileName,
  snapshotFileName,
  snapshotTempSuffix,
} from './snapshot-file.js';
import type { PersistedState, PersistUpdate, RaftPersistence, StoredSnapshot } from './types.js';
import {
  RecordEncoder,
  RecordType,
  corruptLog,
  decodeHardState,
  decodeSegmentHeader,
  decodeSnapshotRecord,
  hardStateRecordBytes,
  hostIsLittleEndian,
  isZero,
  parseSegmentFileName,
  planEntriesRecords,
  scanSegment,
  segmentFileName,
  recordBytesOf,
  segmentHeaderBytes,
  snapshotRecordBytes,
} from './wal-format.js';

/** How to open a {@link FilePersistence}. */
export interface FilePersistenceOptions {
  /** The data directory; created when missing. */
  readonly dir: string;
  /**
   * Makes the empty in-memory log that recovery replays the WAL into. Default: `createLog()` of
   * src/kernel (the WASM log, release build).
   */
  readonly createLog?: () => LogStore;
  readonly limits?: Partial<StorageLimits>;
  /** The file system; tests inject faults through it. Default: the real one. */
  readonly fs?: StorageFs;
  /**
   * Called with each recovery warning (a torn tail cut off, a leftover file removed).
   * Default: `process.emitWarning`.
   */
  readonly onWarning?: (message: string) => void;
}

/** What recovery found and did, for logs and tests. */
export interface RecoveryReport {
  readonly segments: number;
  readonly records: number;
  /** Entries in the recovered log (after the snapshot). */
  readonly entries: number;
  /** The snapshot replay started from, or null. */
  readonly snapshotIndex: number | null;
  /** The torn record cut off the tail of the last segment, or null when the log was clean. */
  readonly tornTail: {
    readonly file: string;
    readonly offset: number;
    readonly bytesCut: number;
    readonly reason: string;
  } | null;
  readonly warnings: readonly string[];
}

/** Counters since open; `fsyncs / syncedSaves` is the group-commit ratio. */
export interface StorageStats {
  /** `save` calls resolved. */
  readonly saves: number;
  /** `save` calls with `sync` resolved (each after an fdatasync). */
  readonly syncedSaves: number;
  /** Writes to the WAL (one per group commit). */
  readonly writes: number;
  /** fdatasync calls on WAL segments. */
  readonly fsyncs: number;
  /** Largest number of `save` calls one fdatasync made durable. */
  readonly savesPerFsyncMax: number;
  readonly bytesWritten: number;
  readonly segmentsCreated: number;
  readonly segmentsDeleted: number;
  readonly snapshotsWritten: number;
}

interface Segment {
  readonly seq: number;
  readonly path: string;
  /** Largest log index any record in the segment touches; the segment can go once a snapshot covers it. */
  maxIndex: number;
}

interface ActiveSegment {
  readonly segment: Segment;
  readonly file: StorageFile;
  /** Bytes of the segment header: a segment holding only its header is never rolled over. */
  readonly headerBytes: number;
  size: number;
  /** Bytes written since the last fdatasync. */
  dirty: boolean;
  /**
   * The file is longer than `size` (zeros past it): extended to `segmentBytesMax` when the
   * segment started, so that appending never changes the file's size and an fdatasync need
   * not commit a size change to the file system's journal (measured: about a third faster on
   * ext4). Cut back to `size` when the segment is closed.
   */
  preallocated: boolean;
}

interface SnapshotPoint {
  readonly index: number;
  readonly term: number;
}

/** One queued write: an optional snapshot file, then WAL records. */
interface WriteItem {
  readonly kind: 'write';
  /** Written (and then set to null) before the records. */
  snapshotFile: StoredSnapshot | null;
  /** Counts in the stats as a `save` call. */
  readonly isSave: boolean;
  readonly records: Uint8Array;
  readonly sync: boolean;
  readonly maxIndex: number;
  readonly hardState: HardState | null;
  /** The snapshot in force once the records are written (null: unchanged). */
  readonly snapshot: SnapshotPoint | null;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/** Queued housekeeping that must run in order with the writes (compaction, pruning). */
interface TaskItem {
  readonly kind: 'task';
  readonly run: () => Promise<void>;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

type QueueItem = WriteItem | TaskItem;

type Phase = 'new' | 'loading' | 'open' | 'closing' | 'closed';

const emptyHardState: HardState = { term: 0, vote: '', commit: 0 };
const noSnapshot: SnapshotPoint = { index: 0, term: 0 };

/** Durable {@link RaftPersistence} over a data directory. */
export class FilePersistence implements RaftPersistence {
  /** The directory, as given. */
  readonly dir: string;
  private readonly walDir: string;
  private readonly snapDir: string;
  private readonly limits: StorageLimits;
  private readonly fs: StorageFs;
  private readonly createLog: () => LogStore;
  private readonly onWarning: (message: string) => void;

  private phase: Phase = 'new';
  private lock: DirectoryLock | null = null;
  /** Set on the first I/O failure; every later write rejects with it. */
  private failure: StorageError | null = null;
  private segments: Segment[] = [];
  private active: ActiveSegment | null = null;
  private queue: QueueItem[] = [];
  /** Items taken off the queue and being written; rejected too if the write fails. */
  private inFlight: QueueItem[] = [];
  private flushing: Promise<void> | null = null;
  /** Snapshot files being written, one after another (see prepareSnapshot). */
  private snapshotFiles: Promise<void> = Promise.resolve();
  /** The snapshot whose file prepareSnapshot wrote, until it is saved. */
  private preparedSnapshot: StoredSnapshot | null = null;

  // What the WAL says once everything queued is written: used to check callers' updates.
  private queuedLastIndex = 0;
  private queuedSnapshot: SnapshotPoint = noSnapshot;
  // What the written records say: repeated in the header of each new segment.
  private writtenHardState: HardState = emptyHardState;
  private writtenSnapshot: SnapshotPoint = noSnapshot;
  /** The latest durable snapshot file, or null. */
  private durableSnapshot: { readonly point: SnapshotPoint; readonly path: string } | null = null;

  private report: RecoveryReport | null = null;
  private counters = {
    saves: 0,
    syncedSaves: 0,
    writes: 0,
    fsyncs: 0,
    savesPerFsyncMax: 0,
    bytesWritten: 0,
    segmentsCreated: 0,
    segmentsDeleted: 0,
    snapshotsWritten: 0,
  };
  /** Saves written since the last fdatasync, waiting for it. */
  private savesAwaitingFsync = 0;
  /** Writes in the last group written (see `gatherGroup`). */
  private lastGroupSize = 1;
  /** Whether group fdatasyncs block the calling thread (see `setBlockingSync`). */
  private blockingSync = false;

  constructor(options: FilePersistenceOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new TypeError('Cannot create FilePersistence: options are required');
    }
    if (typeof options.dir !== 'string' || options.dir === '') {
      throw new TypeError('Cannot create FilePersistence: dir must be a non-empty path');
    }
    if (options.createLog !== undefined && typeof options.createLog !== 'function') {
      throw new TypeError('Cannot create FilePersistence: createLog must be a function');
    }
    if (!hostIsLittleEndian) {
      throw new RangeError('Cannot create FilePersistence: big-endian hosts are not supported');
    }
    this.dir = options.dir;
    this.walDir = join(options.dir, 'wal');
    this.snapDir = join(options.dir, 'snap');
    this.limits = resolveStorageLimits(options.limits);
    this.fs = options.fs ?? nodeFs;
    this.createLog = options.createLog ?? (() => createLog());
    this.onWarning =
      options.onWarning ??
      ((message) => process.emitWarning(message, { code: 'PHANTOMDB_STORAGE' }));
  }

  /** What the last `load` found and repaired; null before `load`. */
  get recovery(): RecoveryReport | null {
    return this.report;
  }

  /** Counters since `load`. */
  stats(): StorageStats {
    return { ...this.counters };
  }

  /** The error that turned the storage read-only, or null while healthy. */
  get failed(): StorageError | null {
    return this.failure;
  }

  // ---------------------------------------------------------------------------------------
  // Recovery

  async load(): Promise<PersistedState> {
    if (this.phase !== 'new') {
      throw new Error(
        `Cannot load ${this.dir}: load() may be called once (storage is ${this.phase})`,
      );
    }
    this.phase = 'loading';
    try {
      const state = await this.recover();
      this.phase = 'open';
      return state;
    } catch (error) {
      this.phase = 'closed';
      await this.active?.file.close().catch(() => undefined);
      this.active = null;
      await this.lock?.release().catch(() => undefined);
      this.lock = null;
      if (error instanceof StorageError) throw error;
      throw this.toStorageError(error, `load ${this.dir}`);
    }
  }

  private async recover(): Promise<PersistedState> {
    const warnings: string[] = [];
    const warn = (message: string): void => {
      warnings.push(message);
      this.onWarning(message);
    };
    await this.fs.mkdir(this.dir);
    this.lock = await DirectoryLock.acquire(this.fs, this.dir);
    await this.fs.mkdir(this.walDir);
    await this.fs.mkdir(this.snapDir);

    const segments = await this.listSegments();
    const candidates = await this.listSnapshots(warn);
    if (segments.length === 0 && candidates.length > 0) {
      throw new StorageError(
        'CORRUPT_LOG',
        `Cannot recover ${this.dir}: snapshots exist but the WAL directory ${this.walDir} has no segments; the term and vote would be lost`,
      );
    }

    // Replay from the newest snapshot file the WAL certifies. A newer, uncertified file is the
    // leftover of a crash between writing it and recording it: remove it and replay again.
    let replay: Replay;
    let snapshot: StoredSnapshot | null;
    for (;;) {
      const candidate = candidates[0] ?? null;
      snapshot =
        candidate === null ? null : await this.readSnapshot(candidate.path, candidate.point);
      replay = await this.replay(segments, snapshot === null ? noSnapshot : snapshot.meta);
      if (candidate === null || replay.certified.has(pointKey(candidate.point))) break;
      warn(
        `Removed snapshot ${candidate.path}: the WAL never recorded it (the node crashed or stopped while it was being saved)`,
      );
      disposeLog(replay.log);
      await this.fs.unlink(candidate.path);
      candidates.shift();
    }

    let tornTail: RecoveryReport['tornTail'] = null;
    if (replay.torn?.preallocatedSpace === true) {
      // Zeros up to the preallocated size: space never written, not a torn record.
    } else if (replay.torn !== null) {
      const { segment, offset, size, reason } = replay.torn;
      tornTail = { file: segment.path, offset, bytesCut: size - offset, reason };
      if (replay.torn.wholeSegment) {
        warn(`Removed ${segment.path}: the crash happened while it was being started (${reason})`);
        await this.fs.unlink(segment.path);
        await this.fs.syncDir(this.walDir);
        segments.pop();
        // Cannot happen (a segment is started only while its predecessor exists), but if it
        // did, the term and vote would silently restart from zero: refuse instead.
        if (segments.length === 0 && snapshot !== null) {
          throw new StorageError(
            'CORRUPT_LOG',
            `Cannot recover ${this.dir}: its only WAL segment had no valid header, but snapshots exist; the term and vote would be lost`,
          );
        }
      } else {
        warn(
          `Cut ${size - offset} bytes off ${segment.path} at byte ${offset}: a record torn by a crash (${reason})`,
        );
        const file = await this.fs.open(segment.path, 'readWrite');
        try {
          await file.truncate(offset);
          await file.datasync();
        } finally {
          await file.close();
        }
        replay.sizes[replay.sizes.length - 1] = offset;
      }
    }

    this.segments = segments;
    this.writtenHardState = replay.hardState;
    const base: SnapshotPoint =
      snapshot === null ? noSnapshot : { index: snapshot.meta.index, term: snapshot.meta.term };
    this.writtenSnapshot = base;
    this.queuedSnapshot = base;
    this.queuedLastIndex = replay.log.lastIndex();
    this.durableSnapshot = snapshot === null ? null : { point: base, path: candidates[0]!.path };

    const last = segments[segments.length - 1];
    if (last === undefined) {
      await this.startSegment(replay.torn?.segment.seq ?? 1);
      // The first segment of a new data directory: make the directories themselves durable.
      await this.fs.syncDir(this.dir);
      await this.fs.syncDir(dirname(this.dir));
    } else {
      const file = await this.fs.open(last.path, 'readWrite');
      const size = replay.sizes[segments.length - 1]!;
      this.active = {
        segment: last,
        file,
        headerBytes: replay.headerBytes[segments.length - 1]!,
        size,
        dirty: false,
        preallocated: false,
      };
      // A cleanly closed (or cut) last segment gets its room back; no sync needed: the size
      // is made durable by the fdatasync of the first write into it.
      if (size < this.limits.segmentBytesMax) {
        await file.truncate(this.limits.segmentBytesMax);
        this.active.preallocated = true;
      } else {
        this.active.preallocated = replay.fileSizes[segments.length - 1]! > size;
      }
    }

    this.report = {
      segments: segments.length,
      records: replay.records,
      entries: replay.entries,
      snapshotIndex: snapshot === null ? null : snapshot.meta.index,
      tornTail,
      warnings,
    };
    return { hardState: replay.hardState, snapshot, log: replay.log };
  }

  private async listSegments(): Promise<Segment[]> {
    const seqs: number[] = [];
    for (const name of await this.fs.readdir(this.walDir)) {
      const seq = parseSegmentFileName(name);
      if (seq !== null) seqs.push(seq);
    }
    seqs.sort((a, b) => a - b);
    for (let i = 1; i < seqs.length; i++) {
      if (seqs[i] !== seqs[i - 1]! + 1) {
        throw new StorageError(
          'CORRUPT_LOG',
          `Cannot recover the log: segments ${seqs[i - 1]! + 1}..${seqs[i]! - 1} are missing from ${this.walDir} (found ${segmentFileName(seqs[i - 1]!)} then ${segmentFileName(seqs[i]!)})`,
        );
      }
    }
    return seqs.map((seq) => ({ seq, path: join(this.walDir, segmentFileName(seq)), maxIndex: 0 }));
  }

  /** Snapshot files, newest first; removes temporary files a crash left behind. */
  private async listSnapshots(
    warn: (message: string) => void,
  ): Promise<{ point: SnapshotPoint; path: string }[]> {
    const found: { point: SnapshotPoint; path: string }[] = [];
    for (const name of await this.fs.readdir(this.snapDir)) {
      const path = join(this.snapDir, name);
      if (name.endsWith(snapshotTempSuffix)) {
        warn(`Removed ${path}: an unfinished snapshot left by a crash`);
        await this.fs.unlink(path);
        continue;
      }
      const point = parseSnapshotFileName(name);
      if (point !== null) found.push({ point, path });
    }
    return found.sort((a, b) => b.point.index - a.point.index || b.point.term - a.point.term);
  }

  private async readSnapshot(path: string, point: SnapshotPoint): Promise<StoredSnapshot> {
    const snapshot = decodeSnapshotFile(await this.fs.readFile(path), path);
    if (snapshot.meta.index !== point.index || snapshot.meta.term !== point.term) {
      throw new StorageError(
        'CORRUPT_LOG',
        `Cannot read snapshot ${path}: it holds index ${snapshot.meta.index} term ${snapshot.meta.term}, not what its name says`,
      );
    }
    return snapshot;
  }

  /**
   * Replays every segment into a fresh log that starts at `base` (the snapshot). Records about
   * entries at or below the base only matter for what they truncate (see `applyEntries`).
   */
  private async replay(segments: readonly Segment[], base: SnapshotPoint): Promise<Replay> {
    const log = this.createLog();
    if (base.index > 0) log.reset(base.index, base.term);
    const replayer = new LogReplayer(log, base.index);
    const result: Replay = {
      log,
      hardState: emptyHardState,
      certified: new Set([pointKey(noSnapshot)]),
      torn: null,
      sizes: [],
      fileSizes: [],
      headerBytes: [],
      records: 0,
      entries: 0,
    };
    for (let i = 0; i < segments.length; i++) {
      const segment = segments[i]!;
      const isLast = i === segments.length - 1;
      let bytes = await this.fs.readFile(segment.path);
      if (bytes.byteOffset % 8 !== 0) bytes = bytes.slice();
      const views = segmentBytes(segment.path, bytes);
      let sawHeader = false;
      segment.maxIndex = 0;
      const torn = scanSegment(bytes, segment.path, isLast, (record) => {
        result.records++;
        if (!sawHeader) {
          if (record.type !== RecordType.SegmentHeader) {
            throw corruptLog(
              segment.path,
              record.offset,
              'the segment does not start with a header',
            );
          }
          const header = decodeSegmentHeader(bytes, record, segment.path);
          if (header.seq !== segment.seq) {
            throw corruptLog(segment.path, record.offset, `the header says segment ${header.seq}`);
          }
          result.hardState = header.hardState;
          result.headerBytes[i] = recordBytesOf(record.payloadBytes);
          result.certified.add(
            pointKey({ index: header.snapshotIndex, term: header.snapshotTerm }),
          );
          sawHeader = true;
          return;
        }
        switch (record.type) {
          case RecordType.SegmentHeader:
            throw corruptLog(
              segment.path,
              record.offset,
              'a segment header in the middle of a segment',
            );
          case RecordType.Entries: {
            const last = replayer.entries(views, record);
            segment.maxIndex = Math.max(segment.maxIndex, last);
            break;
          }
          case RecordType.HardState:
            result.hardState = decodeHardState(bytes, record, segment.path);
            break;
          case RecordType.SnapshotMark:
            result.certified.add(pointKey(decodeSnapshotRecord(bytes, record, segment.path)));
            break;
          case RecordType.SnapshotInstall: {
            const point = decodeSnapshotRecord(bytes, record, segment.path);
            result.certified.add(pointKey(point));
            if (point.index > base.index) {
              throw corruptLog(
                segment.path,
                record.offset,
                `the log was reset to snapshot ${point.index} (term ${point.term}), but no valid file of that snapshot is in ${this.snapDir}`,
              );
            }
            // An install at or below the base drops everything after the base, like any reset.
            replayer.cutToBase();
            segment.maxIndex = Math.max(segment.maxIndex, point.index);
            break;
          }
        }
      });
      if (!sawHeader) {
        // Empty, or the header itself is torn: the crash came while the segment was started.
        if (!isLast) throw corruptLog(segment.path, 0, 'the segment has no header');
        result.torn = {
          segment,
          offset: 0,
          size: bytes.length,
          reason: torn?.reason ?? 'empty segment',
          wholeSegment: true,
        };
      } else if (torn !== null) {
        result.torn = {
          segment,
          offset: torn.offset,
          size: bytes.length,
          reason: torn.reason,
          wholeSegment: false,
          preallocatedSpace:
            bytes.length === this.limits.segmentBytesMax &&
            isZero(bytes, torn.offset, bytes.length),
        };
      }
      result.sizes[i] = torn === null ? bytes.length : torn.offset;
      result.fileSizes[i] = bytes.length;
    }
    replayer.finish();
    result.entries = log.lastIndex() - log.firstIndex() + 1;
    return result;
  }

  // ---------------------------------------------------------------------------------------
  // Writing

  async save(update: PersistUpdate, sync: boolean): Promise<void> {
    if (typeof update !== 'object' || update === null) {
      throw new TypeError(
        `Cannot save: expected { snapshot, entries, hardState }, got ${String(update)}`,
      );
    }
    if (typeof sync !== 'boolean')
      throw new TypeError(`Cannot save: sync is ${String(sync)}, expected a boolean`);
    const { snapshot, entries, hardState } = update;
    if (snapshot !== null && snapshot !== undefined)
      checkSnapshot(snapshot, 'Cannot save snapshot');
    if (entries !== null && entries !== undefined) {
      const problem = describeBatchProblem(entries);
      if (problem !== null) throw new RangeError(`Cannot save entries: ${problem}`);
    }
    if (hardState !== null && hardState !== undefined) checkHardState(hardState);
    this.checkWritable('save');

    let bytes = 0;
    let maxIndex = 0;
    let lastIndex = this.queuedLastIndex;
    let snapshotPoint: SnapshotPoint | null = null;
    // Recovery replays entries only onto a log that reaches up to just before them.
    if (snapshot) {
      const { index, term } = snapshot.meta;
      if (index < this.queuedSnapshot.index) {
        throw new RangeError(
          `Cannot install snapshot at index ${index}: a snapshot at ${this.queuedSnapshot.index} is already stored`,
        );
      }
      snapshotPoint = { index, term };
      bytes += snapshotRecordBytes;
      maxIndex = index;
      lastIndex = index;
    }
    let plan: ReturnType<typeof planEntriesRecords> | null = null;
    if (entries) {
      if (entries.firstIndex > lastIndex + 1) {
        throw new RangeError(
          `Cannot save entries: first index is ${entries.firstIndex}, expected at most ${lastIndex + 1} (the stored log ends at ${lastIndex})`,
        );
      }
      plan = planEntriesRecords(entries, this.limits.recordBytesMax);
      bytes += plan.bytes;
      lastIndex = lastIndexOf(entries);
      maxIndex = Math.max(maxIndex, lastIndex);
    }
    if (hardState) bytes += hardStateRecordBytes(hardState);

    const encoder = new RecordEncoder(bytes);
    if (snapshotPoint !== null) {
      encoder.snapshot(RecordType.SnapshotInstall, snapshotPoint.index, snapshotPoint.term);
    }
    if (entries && plan !== null) {
      let from = entries.firstIndex;
      for (const to of plan.runEnds) {
        encoder.entries(entries, from, to);
        from = to;
      }
    }
    if (hardState) encoder.hardState(hardState);
    assert(encoder.length === bytes, () => `encoded ${encoder.length} bytes, planned ${bytes}`);

    if (entries || snapshotPoint !== null) this.queuedLastIndex = lastIndex;
    if (snapshotPoint !== null) this.queuedSnapshot = snapshotPoint;
    await new Promise<void>((resolve, reject) => {
      this.enqueue({
        kind: 'write',
        snapshotFile: snapshot ?? null,
        isSave: true,
        records: encoder.bytes,
        sync,
        maxIndex,
        hardState: hardState ?? null,
        snapshot: snapshotPoint,
        resolve,
        reject,
      });
    });
  }

  async saveSnapshot(snapshot: StoredSnapshot): Promise<void> {
    checkSnapshot(snapshot, 'Cannot save snapshot');
    this.checkWritable('save snapshot');
    const { index, term } = snapshot.meta;
    if (index < this.queuedSnapshot.index) {
      throw new RangeError(
        `Cannot save snapshot at index ${index}: a snapshot at ${this.queuedSnapshot.index} is already stored`,
      );
    }
    const encoder = new RecordEncoder(snapshotRecordBytes);
    encoder.snapshot(RecordType.SnapshotMark, index, term);
    const point = { index, term };
    this.queuedSnapshot = point;
    // Replay starts at the snapshot, so a log shorter than it comes back empty at the snapshot.
    this.queuedLastIndex = Math.max(this.queuedLastIndex, index);
    // The very object prepared: another with the same index and term may hold other data.
    const prepared = this.preparedSnapshot === snapshot;
    if (prepared) this.preparedSnapshot = null;
    const written = new Promise<void>((resolve, reject) => {
      this.enqueue({
        kind: 'write',
        snapshotFile: prepared ? null : snapshot,
        isSave: false,
        records: encoder.bytes,
        sync: true,
        maxIndex: 0,
        hardState: null,
        snapshot: point,
        resolve,
        reject,
      });
    });
    const pruned = this.enqueueTask(() => this.pruneSnapshots());
    await Promise.all([written, pruned]);
  }

  /** {@inheritDoc RaftPersistence.setBlockingSync} Applies to the fdatasync of each group. */
  setBlockingSync(blocking: boolean): void {
    this.blockingSync = blocking;
  }

  /**
   * Writes a snapshot's file durably beside the log: saves of entries and hard state neither
   * wait for it nor hold it up (a few MB written and synced in the queue held up every save
   * behind it); a leader's snapshot being installed waits for it. A later
   * {@link saveSnapshot} of the same snapshot object then only queues the record that
   * certifies the file; until that record is durable, recovery ignores the file and removes
   * it.
   */
  async prepareSnapshot(snapshot: StoredSnapshot): Promise<void> {
    checkSnapshot(snapshot, 'Cannot prepare snapshot');
    this.checkWritable('prepare snapshot');
    try {
      await this.writeSnapshotFileInTurn(snapshot);
    } catch (error) {
      this.fail(error);
      throw this.failure!;
    }
    this.preparedSnapshot = snapshot;
  }

  async loadSnapshot(): Promise<StoredSnapshot | null> {
    if (this.phase !== 'open') {
      throw this.phase === 'closed' || this.phase === 'closing'
        ? new ShutdownError('Cannot load snapshot: the storage is closed')
        : new Error('Cannot load snapshot: call load() first');
    }
    const durable = this.durableSnapshot;
    if (durable === null) return null;
    try {
      return await this.readSnapshot(durable.path, durable.point);
    } catch (error) {
      if (error instanceof StorageError) throw error;
      throw this.toStorageError(error, `read snapshot ${durable.path}`);
    }
  }

  async compact(index: number): Promise<void> {
    if (!Number.isSafeInteger(index) || index < 0) {
      throw new RangeError(`Cannot compact: index is ${index}, expected an integer >= 0`);
    }
    this.checkWritable('compact');
    if (index > this.queuedSnapshot.index) {
      throw new RangeError(
        `Cannot compact to ${index}: the latest snapshot is at ${this.queuedSnapshot.index}`,
      );
    }
    await this.enqueueTask(() => this.deleteSegmentsThrough(index));
  }

  async close(): Promise<void> {
    if (this.phase === 'closed' || this.phase === 'closing') return;
    const wasOpen = this.phase === 'open';
    this.phase = 'closing';
    try {
      await this.snapshotFiles;
      while (this.flushing !== null) await this.flushing;
      const active = this.active;
      this.active = null;
      if (active !== null) {
        if (wasOpen && this.failure === null) {
          // A clean shutdown leaves no preallocated zeros for recovery to look at.
          if (active.preallocated) {
            await active.file.truncate(active.size);
            active.dirty = true;
          }
          if (active.dirty) await active.file.datasync();
        }
        await active.file.close();
      }
    } finally {
      this.phase = 'closed';
      await this.lock?.release();
      this.lock = null;
    }
  }

  private checkWritable(action: string): void {
    if (this.failure !== null) throw this.failure;
    if (this.phase === 'closed' || this.phase === 'closing') {
      throw new ShutdownError(`Cannot ${action}: the storage is closed`);
    }
    if (this.phase !== 'open') throw new Error(`Cannot ${action}: call load() first`);
  }

  private enqueue(item: QueueItem): void {
    if (this.failure !== null) {
      item.reject(this.failure);
      return;
    }
    this.queue.push(item);
    this.flushing ??= this.flushLoop();
  }

  private enqueueTask(run: () => Promise<void>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.enqueue({ kind: 'task', run, resolve, reject });
    });
  }

  /**
   * Drains the queue. Each round writes one group: every queued write up to the next snapshot
   * file or task (and up to groupCommitBytesMax), in one write and one fdatasync.
   */
  private async flushLoop(): Promise<void> {
    const groupBytesMax = Math.min(this.limits.groupCommitBytesMax, this.limits.segmentBytesMax);
    try {
      await this.gatherGroup();
      while (this.queue.length > 0) {
        const head = this.queue[0]!;
        if (head.kind === 'task') {
          this.inFlight = this.queue.splice(0, 1);
          await head.run();
          this.inFlight = [];
          head.resolve();
          continue;
        }
        if (head.snapshotFile !== null) {
          this.inFlight = this.queue.splice(0, 1);
          await this.writeSnapshotFileInTurn(head.snapshotFile);
          head.snapshotFile = null;
          this.queue.unshift(head);
          this.inFlight = [];
        }
        const group: WriteItem[] = [];
        let bytes = 0;
        for (const item of this.queue) {
          if (item.kind !== 'write' || item.snapshotFile !== null) break;
          if (group.length > 0 && bytes + item.records.length > groupBytesMax) break;
          group.push(item);
          bytes += item.records.length;
        }
        this.inFlight = this.queue.splice(0, group.length);
        await this.writeGroup(group, bytes);
        this.inFlight = [];
        this.lastGroupSize = group.length;
        for (const item of group) item.resolve();
        await this.gatherGroup();
      }
    } catch (error) {
      this.fail(error);
    } finally {
      this.flushing = null;
    }
  }

  /**
   * Waits for the saves that should share the next group. Saves issued together (in one
   * synchronous run) always do: one microtask lets them all queue. When the last group held
   * several saves, there are several writers, and the wait is one turn of the event loop:
   * callers just resolved that save again at once, or in the same turn, then join this group
   * instead of the first of them going alone (N closed-loop writers would otherwise alternate
   * between groups of 1 and N - 1). A single writer (the Raft Ready loop, one save at a time)
   * does not pay that turn on every save.
   */
  private async gatherGroup(): Promise<void> {
    if (this.lastGroupSize > 1) await yieldTurn();
    else await Promise.resolve();
  }

  private async writeGroup(group: readonly WriteItem[], bytes: number): Promise<void> {
    let active = this.activeSegment();
    if (
      bytes > 0 &&
      active.size + bytes > this.limits.segmentBytesMax &&
      active.size > active.headerBytes
    ) {
      await this.startSegment(active.segment.seq + 1);
      active = this.activeSegment();
    }
    const sync = group.some((item) => item.sync);
    if (bytes > 0) {
      const chunks = group.map((item) => item.records);
      try {
        await writeFully(active.file, chunks, active.size);
      } catch (error) {
        // Best effort: take the partial group back off the tail, so a restart finds a clean
        // log even if recovery would have cut it as a torn record anyway.
        await active.file.truncate(active.size).catch(() => undefined);
        throw error;
      }
      active.size += bytes;
      active.dirty = true;
      this.counters.writes++;
      this.counters.bytesWritten += bytes;
    }
    for (const item of group) if (item.isSave) this.savesAwaitingFsync++;
    if (sync && active.dirty) {
      await active.file.datasync(this.blockingSync);
      active.dirty = false;
      this.counters.fsyncs++;
      this.counters.savesPerFsyncMax = Math.max(
        this.counters.savesPerFsyncMax,
        this.savesAwaitingFsync,
      );
      this.savesAwaitingFsync = 0;
    }
    for (const item of group) {
      if (item.maxIndex > active.segment.maxIndex) active.segment.maxIndex = item.maxIndex;
      if (item.hardState !== null) this.writtenHardState = item.hardState;
      if (item.snapshot !== null) {
        this.writtenSnapshot = item.snapshot;
        // Certified by the record just written: recovery now starts from this file.
        const path = join(this.snapDir, snapshotFileName(item.snapshot.index, item.snapshot.term));
        this.durableSnapshot = { point: item.snapshot, path };
      }
      if (item.isSave) {
        this.counters.saves++;
        if (item.sync) this.counters.syncedSaves++;
      }
    }
  }

  private activeSegment(): ActiveSegment {
    assert(this.active !== null, 'no active segment while writing');
    return this.active;
  }

  /**
   * Closes the active segment (after an fdatasync: a later record acknowledged in the new
   * segment implies every earlier record is durable) and starts segment `seq`, whose header
   * repeats the hard state and snapshot in force so older segments can be deleted.
   */
  private async startSegment(seq: number): Promise<void> {
    const previous = this.active;
    if (previous !== null) {
      // A closed segment ends at its last record: recovery takes zeros after the last record
      // of any segment but the last one for damage. Cut and data go durable in one fdatasync.
      if (previous.preallocated) {
        await previous.file.truncate(previous.size);
        previous.preallocated = false;
        previous.dirty = true;
      }
      if (previous.dirty) {
        await previous.file.datasync();
        previous.dirty = false;
        this.counters.fsyncs++;
      }
      this.active = null;
      await previous.file.close();
    }
    const segment: Segment = { seq, path: join(this.walDir, segmentFileName(seq)), maxIndex: 0 };
    const encoder = new RecordEncoder(segmentHeaderBytes(this.writtenHardState));
    encoder.segmentHeader({
      seq,
      snapshotIndex: this.writtenSnapshot.index,
      snapshotTerm: this.writtenSnapshot.term,
      hardState: this.writtenHardState,
    });
    const file = await this.fs.open(segment.path, 'createNew');
    this.active = {
      segment,
      file,
      headerBytes: encoder.length,
      size: 0,
      dirty: true,
      preallocated: false,
    };
    if (this.limits.segmentBytesMax > encoder.length) {
      await file.truncate(this.limits.segmentBytesMax);
      this.active.preallocated = true;
    }
    await writeFully(file, [encoder.bytes], 0);
    this.active.size = encoder.length;
    await file.datasync();
    this.active.dirty = false;
    // The new name must be durable before anything in the file is acknowledged.
    await this.fs.syncDir(this.walDir);
    this.segments.push(segment);
    this.counters.segmentsCreated++;
  }

  /** Writes a snapshot file atomically: temporary name, fsync, rename, fsync of the directory. */
  private async writeSnapshotFile(snapshot: StoredSnapshot): Promise<void> {
    const { index, term } = snapshot.meta;
    const path = join(this.snapDir, snapshotFileName(index, term));
    const temp = path + snapshotTempSuffix;
    await this.fs.unlink(temp).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
    });
    const file = await this.fs.open(temp, 'createNew');
    try {
      await writeFully(file, encodeSnapshotFile(snapshot), 0);
      await file.sync();
    } finally {
      await file.close();
    }
    await this.fs.rename(temp, path);
    await this.fs.syncDir(this.snapDir);
    this.counters.snapshotsWritten++;
  }

  /** Writes a snapshot file once the ones before it are written: two never share a temp file. */
  private writeSnapshotFileInTurn(snapshot: StoredSnapshot): Promise<void> {
    const written = this.snapshotFiles.then(() => this.writeSnapshotFile(snapshot));
    this.snapshotFiles = written.catch(() => undefined);
    return written;
  }

  /**
   * Keeps the newest `snapshotsRetained` snapshot files the log has certified. A newer file is
   * left alone and not counted: it may be one being written beside the log, not certified yet,
   * and counting it could delete the only snapshot recovery can use.
   */
  private async pruneSnapshots(): Promise<void> {
    const certifiedIndex = this.durableSnapshot?.point.index ?? 0;
    const files: { index: number; term: number; name: string }[] = [];
    for (const name of await this.fs.readdir(this.snapDir)) {
      const point = parseSnapshotFileName(name);
      if (point !== null && point.index <= certifiedIndex) files.push({ ...point, name });
    }
    files.sort((a, b) => b.index - a.index || b.term - a.term);
    let removed = false;
    for (const file of files.slice(this.limits.snapshotsRetained)) {
      await this.fs.unlink(join(this.snapDir, file.name));
      removed = true;
    }
    if (removed) await this.fs.syncDir(this.snapDir);
  }

  /**
   * Deletes the oldest segments while every record in them is about entries <= index. Never
   * the active segment. Oldest first with a directory fsync each, so that after a crash the
   * remaining segments are still a contiguous run.
   */
  private async deleteSegmentsThrough(index: number): Promise<void> {
    while (this.segments.length > 1 && this.segments[0]!.maxIndex <= index) {
      const segment = this.segments[0]!;
      await this.fs.unlink(segment.path);
      await this.fs.syncDir(this.walDir);
      this.segments.shift();
      this.counters.segmentsDeleted++;
    }
  }

  private fail(error: unknown): void {
    const failure = error instanceof StorageError ? error : this.toStorageError(error, 'write');
    this.failure ??= failure;
    const pending = [...this.inFlight, ...this.queue];
    this.inFlight = [];
    this.queue = [];
    for (const item of pending) item.reject(this.failure);
  }

  private toStorageError(error: unknown, action: string): StorageError {
    const code = (error as NodeJS.ErrnoException | null)?.code;
    const detail = error instanceof Error ? error.message : String(error);
    if (code === 'ENOSPC' || code === 'EDQUOT') {
      return new StorageError(
        'DISK_FULL',
        `Cannot ${action}: the disk is full (${detail}); storage is read-only until the node restarts with free space`,
        { cause: error },
      );
    }
    return new StorageError(
      'STORAGE_FAILED',
      `Cannot ${action}: ${detail}; storage is read-only until the node restarts`,
      { cause: error },
    );
  }
}

interface Replay {
  readonly log: LogStore;
  hardState: HardState;
  /** Snapshots the WAL vouches for, as `index/term`. */
  readonly certified: Set<string>;
  torn: {
    readonly segment: Segment;
    readonly offset: number;
    readonly size: number;
    readonly reason: string;
    /** The segment's header is missing or torn: the whole file goes. */
    readonly wholeSegment: boolean;
    /** Only zeros from `offset` to a preallocated segment's end: nothing was torn. */
    readonly preallocatedSpace?: boolean;
  } | null;
  /** Per segment: bytes of its valid prefix. */
  readonly sizes: number[];
  /** Per segment: bytes of the file. */
  readonly fileSizes: number[];
  /** Per segment: bytes of its header record. */
  readonly headerBytes: number[];
  records: number;
  entries: number;
}

/** Captured at load: a test that fakes timers must not be able to stall the WAL. */
const realSetImmediate = setImmediate;

function yieldTurn(): Promise<void> {
  return new Promise((resolve) => realSetImmediate(resolve));
}

/** Hands a WASM log's instance back at once instead of waiting for garbage collection. */
function disposeLog(log: LogStore): void {
  (log as { dispose?: () => void }).dispose?.();
}

function pointKey(point: SnapshotPoint): string {
  return `${point.index}/${point.term}`;
}

function checkHardState(hardState: HardState): void {
  if (typeof hardState !== 'object') throw new TypeError('Cannot save hard state: not an object');
  const { term, vote, commit } = hardState;
  if (!Number.isSafeInteger(term) || term < 0) {
    throw new RangeError(`Cannot save hard state: term is ${term}, expected an integer >= 0`);
  }
  if (!Number.isSafeInteger(commit) || commit < 0) {
    throw new RangeError(`Cannot save hard state: commit is ${commit}, expected an integer >= 0`);
  }
  if (typeof vote !== 'string') throw new TypeError(`Cannot save hard state: vote is not a string`);
}
