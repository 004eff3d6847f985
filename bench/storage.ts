/**
 * Durable storage figures (FilePersistence on the real disk, in a temp directory):
 *
 * 1. Replay at start: `load()` of a WAL holding 1,000,000 entries of 100 bytes, into the WASM
 *    log and into its TypeScript twin; once written as batches of 64 entries per record (what a
 *    leader's Ready produces under load) and once as one entry per record (the worst case).
 *    The WAL is in the page cache (it was just written), so this is replay CPU, not disk reads.
 * 2. Group commit: 1, 16, 64 and 256 concurrent writers, each saving one 100-byte entry with
 *    `sync` and waiting for it before the next; saves per fdatasync, throughput and latency.
 * 3. Memory: 1,000,000 entries saved (64 writers, 8 entries per save) while a driver-like loop
 *    keeps the in-memory log, snapshots every 10,000 entries and compacts storage and log; RSS
 *    and heap after a forced GC every 50,000 entries, and their spread after warm-up.
 *
 * 4. fsync: what one WAL append costs the writer, 200 bytes written and fdatasynced, on a
 *    file that grows with every append against one preallocated (ftruncate) to its final size,
 *    with the write in libuv's thread pool against on the calling thread (the fdatasync is
 *    always in the pool): the two choices FilePersistence makes for its segments.
 *
 * Run alone with `npx tsx bench/storage.ts [replay|group|memory|fsync]... [--entries=N]` (N replaces
 * the 1,000,000 of sections 1 and 3), or as the `storage` section of `npm run bench`.
 */
import { writeSync } from 'node:fs';
import { mkdtemp, open, rm, readdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { crc32 } from 'node:zlib';
import { EntryBatchBuilder, EntryType } from '../src/raft/batch.js';
import type { EntryBatch } from '../src/raft/batch.js';
import type { LogStore } from '../src/raft/types.js';
import { createLog } from '../src/kernel/index.js';
import { FilePersistence } from '../src/storage/file-persistence.js';
import { forceGc } from './force-gc.js';

const payloadBytes = 100;
const conf = { voters: ['n1'], votersOutgoing: [], learners: [] };

function batchOf(firstIndex: number, count: number, term = 1): EntryBatch {
  const builder = new EntryBatchBuilder(firstIndex, count, count * payloadBytes);
  const payload = new Uint8Array(payloadBytes);
  for (let k = 0; k < count; k++) {
    payload.fill((firstIndex + k) & 0xff);
    builder.add(term, EntryType.Normal, payload);
  }
  return builder.finish();
}

function dispose(log: LogStore): void {
  (log as { dispose?: () => void }).dispose?.();
}

async function withDir<T>(run: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'phantomdb-bench-storage-'));
  try {
    return await run(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function walBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(join(dir, 'wal')))
    total += (await stat(join(dir, 'wal', name))).size;
  return total;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
  console.log(line(header));
  for (const row of rows) console.log(line(row));
}

const mib = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1);

/** 1. Replay of 1,000,000 entries. */
async function benchReplay(entries: number): Promise<void> {
  console.log(
    `\nReplay at start: load() of a WAL of ${entries.toLocaleString('en')} entries of ${payloadBytes} bytes (page cache warm, median of 3)`,
  );
  const rows: string[][] = [];
  for (const perRecord of [64, 1]) {
    await withDir(async (dir) => {
      // One entry per record comes from a recordBytesMax below one entry's record (each entry
      // gets a record of its own): the same bytes on disk as a node saving one entry per Ready.
      const limits = perRecord === 1 ? { recordBytesMax: 64 } : {};
      const writer = new FilePersistence({ dir, limits });
      await writer.load();
      const started = performance.now();
      let pending: Promise<void>[] = [];
      for (let first = 1; first <= entries; first += 64) {
        const count = Math.min(64, entries - first + 1);
        pending.push(
          writer.save({ snapshot: null, entries: batchOf(first, count), hardState: null }, false),
        );
        if (pending.length === 1024) {
          await Promise.all(pending);
          pending = [];
        }
      }
      pending.push(
        writer.save(
          { snapshot: null, entries: null, hardState: { term: 1, vote: 'n1', commit: entries } },
          true,
        ),
      );
      await Promise.all(pending);
      const writeMs = performance.now() - started;
      await writer.close();
      const bytes = await walBytes(dir);
      for (const kernel of ['wasm', 'ts'] as const) {
        const times: number[] = [];
        for (let run = 0; run < 3; run++) {
          forceGc();
          const storage = new FilePersistence({ dir, createLog: () => createLog({ kernel }) });
          const t0 = performance.now();
          const state = await storage.load();
          times.push(performance.now() - t0);
          if (state.log.lastIndex() !== entries)
            throw new Error(`replayed ${state.log.lastIndex()} entries, not ${entries}`);
          await storage.close();
          dispose(state.log);
        }
        const ms = median(times);
        rows.push([
          String(perRecord),
          kernel,
          mib(bytes),
          ms.toFixed(0),
          (((entries / ms) * 1000) / 1e6).toFixed(2),
          ((bytes / 1024 / 1024 / ms) * 1000).toFixed(0),
          (writeMs / 1000).toFixed(1),
        ]);
      }
    });
  }
  printTable(
    ['entries/record', 'log', 'WAL MiB', 'load ms', 'M entries/s', 'MiB/s', 'write s'],
    rows,
  );
  // Every record is checksummed on write and on replay; this says what the checksum costs.
  const big = new Uint8Array(64 * 1024 * 1024).fill(0x5a);
  let t0 = performance.now();
  let crc = crc32(big);
  const bigMs = performance.now() - t0;
  const record = big.subarray(0, 128);
  t0 = performance.now();
  for (let i = 0; i < 1_000_000; i++) crc = crc32(record, crc);
  const smallMs = performance.now() - t0;
  console.log(
    `zlib.crc32: ${(64 / 1024 / (bigMs / 1000)).toFixed(1)} GiB/s over 64 MiB; ${((smallMs * 1e6) / 1_000_000).toFixed(0)} ns per 128-byte record (checksum ${crc.toString(16)})`,
  );
}

/** 2. Group commit under concurrent writers. */
async function benchGroupCommit(levels: readonly number[], durationMs: number): Promise<void> {
  console.log(
    `\nGroup commit: N writers, each saving one ${payloadBytes}-byte entry with sync=true and awaiting it, for ${durationMs / 1000} s`,
  );
  const rows: string[][] = [];
  for (const writers of levels) {
    await withDir(async (dir) => {
      const storage = new FilePersistence({ dir });
      await storage.load();
      let next = 1;
      const latencies: number[] = [];
      const deadline = performance.now() + durationMs;
      const loop = async (): Promise<void> => {
        while (performance.now() < deadline) {
          const index = next++;
          const t0 = performance.now();
          await storage.save({ snapshot: null, entries: batchOf(index, 1), hardState: null }, true);
          latencies.push(performance.now() - t0);
        }
      };
      const started = performance.now();
      await Promise.all(Array.from({ length: writers }, loop));
      const seconds = (performance.now() - started) / 1000;
      const stats = storage.stats();
      await storage.close();
      latencies.sort((a, b) => a - b);
      rows.push([
        String(writers),
        Math.round(stats.syncedSaves / seconds).toLocaleString('en'),
        Math.round(stats.fsyncs / seconds).toLocaleString('en'),
        (stats.syncedSaves / stats.fsyncs).toFixed(1),
        String(stats.savesPerFsyncMax),
        latencies[Math.floor(latencies.length * 0.5)]!.toFixed(2),
        latencies[Math.floor(latencies.length * 0.99)]!.toFixed(2),
      ]);
    });
  }
  printTable(
    ['writers', 'saves/s', 'fdatasyncs/s', 'saves/fsync', 'max', 'p50 ms', 'p99 ms'],
    rows,
  );
}

/** 3. Memory over 1,000,000 writes with snapshots and compaction. */
async function benchMemory(entries: number): Promise<void> {
  const writers = 64;
  const perSave = 8;
  const snapshotEvery = 10_000;
  const sampleEvery = 50_000;
  console.log(
    `\nMemory: ${entries.toLocaleString('en')} entries (${writers} writers x ${perSave} entries per save, sync), a 64 KiB snapshot + compaction every ${snapshotEvery.toLocaleString('en')} entries; after a forced GC`,
  );
  await withDir(async (dir) => {
    const storage = new FilePersistence({ dir, limits: { segmentBytesMax: 8 * 1024 * 1024 } });
    const { log } = await storage.load();
    const snapshotData = new Uint8Array(64 * 1024).fill(7);
    let next = 1;
    let snapshotAt = snapshotEvery;
    let sampleAt = sampleEvery;
    const samples: {
      entries: number;
      rss: number;
      heap: number;
      external: number;
      logEntries: number;
      logBytes: number;
      segments: number;
    }[] = [];
    let housekeeping: Promise<void> = Promise.resolve();
    const started = performance.now();
    const loop = async (): Promise<void> => {
      while (next <= entries) {
        const batch = batchOf(next, Math.min(perSave, entries - next + 1));
        next += batch.count;
        // The driver keeps the log in memory and persists the same batch.
        log.append(batch);
        await storage.save(
          { snapshot: null, entries: batch, hardState: { term: 1, vote: 'n1', commit: next - 1 } },
          true,
        );
        if (next - 1 >= snapshotAt) {
          const index = snapshotAt;
          snapshotAt += snapshotEvery;
          housekeeping = housekeeping.then(async () => {
            await storage.saveSnapshot({ meta: { index, term: 1, conf }, data: snapshotData });
            await storage.compact(index);
            log.compactTo(index);
          });
          await housekeeping;
        }
        if (next - 1 >= sampleAt) {
          sampleAt += sampleEvery;
          forceGc();
          const usage = process.memoryUsage();
          samples.push({
            entries: next - 1,
            rss: usage.rss,
            heap: usage.heapUsed,
            external: usage.external + usage.arrayBuffers,
            logEntries: log.lastIndex() - log.firstIndex() + 1,
            logBytes: (log as { memoryBytes?: () => number }).memoryBytes?.() ?? Number.NaN,
            segments: (await readdir(join(dir, 'wal'))).length,
          });
        }
      }
    };
    await Promise.all(Array.from({ length: writers }, loop));
    const seconds = (performance.now() - started) / 1000;
    const stats = storage.stats();
    await storage.close();
    printTable(
      [
        'entries',
        'RSS MiB',
        'heap MiB',
        'external+buffers MiB',
        'log entries held',
        'log MiB',
        'WAL segments',
      ],
      samples.map((s) => [
        s.entries.toLocaleString('en'),
        mib(s.rss),
        mib(s.heap),
        mib(s.external),
        s.logEntries.toLocaleString('en'),
        mib(s.logBytes),
        String(s.segments),
      ]),
    );
    const warm = samples.slice(Math.ceil(samples.length / 5));
    const spread = (values: number[]): string => {
      const mean = values.reduce((a, b) => a + b, 0) / values.length;
      const low = ((Math.min(...values) - mean) / mean) * 100;
      const high = ((Math.max(...values) - mean) / mean) * 100;
      return `${low.toFixed(1)}% .. +${high.toFixed(1)}% around ${mib(mean)} MiB`;
    };
    console.log(
      `after warm-up (last ${warm.length} samples): RSS ${spread(warm.map((s) => s.rss))}; heap ${spread(warm.map((s) => s.heap))}`,
    );
    console.log(
      `${seconds.toFixed(1)} s, ${Math.round(entries / seconds).toLocaleString('en')} entries/s, ${stats.syncedSaves.toLocaleString('en')} saves in ${stats.fsyncs.toLocaleString('en')} fdatasyncs (${(stats.syncedSaves / stats.fsyncs).toFixed(1)} per fsync), ${stats.segmentsCreated} segments created, ${stats.segmentsDeleted} deleted, ${stats.snapshotsWritten} snapshots`,
    );
  });
}

async function benchFsync(appends: number, rounds: number): Promise<void> {
  console.log(
    `\n### One WAL append: 200 bytes written + fdatasync, ${appends} appends per run, ${rounds} runs each (median of runs)\n`,
  );
  const record = new Uint8Array(200).fill(7);
  const variants = [
    { name: 'growing file, write in the pool', preallocate: false, inline: false },
    { name: 'growing file, write inline', preallocate: false, inline: true },
    { name: 'preallocated, write in the pool', preallocate: true, inline: false },
    { name: 'preallocated, write inline', preallocate: true, inline: true },
  ];
  const results = variants.map(() => [] as number[]);
  await withDir(async (dir) => {
    for (let round = 0; round < rounds; round++) {
      // Interleaved, so that a busy moment of a shared machine hits every variant alike.
      for (const [v, variant] of variants.entries()) {
        const path = join(dir, `fsync-${round}-${v}`);
        const handle = await open(path, 'w+');
        if (variant.preallocate) {
          await handle.truncate(appends * record.length + 4096);
          await handle.sync();
        }
        const started = performance.now();
        for (let k = 0; k < appends; k++) {
          const position = k * record.length;
          if (variant.inline) writeSync(handle.fd, record, 0, record.length, position);
          else await handle.write(record, 0, record.length, position);
          await handle.datasync();
        }
        results[v]!.push(((performance.now() - started) * 1000) / appends);
        await handle.close();
        await rm(path);
      }
    }
  });
  const base = median(results[0]!);
  printTable(
    ['file and write', 'µs per append (median)', 'runs (min–max µs)', 'vs growing, pool'],
    variants.map((variant, v) => {
      const values = results[v]!;
      return [
        variant.name,
        median(values).toFixed(0),
        `${Math.min(...values).toFixed(0)}–${Math.max(...values).toFixed(0)}`,
        `${(median(values) / base).toFixed(2)}×`,
      ];
    }),
  );
}

/** Runs the sections named in `sections` (all by default) and prints their tables. */
export async function runStorageBench(
  options: { sections?: readonly string[]; entries?: number; groupCommitMs?: number } = {},
): Promise<void> {
  const sections = options.sections?.length
    ? options.sections
    : ['replay', 'group', 'memory', 'fsync'];
  const entries = options.entries ?? 1_000_000;
  for (const section of sections) {
    if (section === 'replay') await benchReplay(entries);
    else if (section === 'group')
      await benchGroupCommit([1, 16, 64, 256], options.groupCommitMs ?? 3000);
    else if (section === 'memory') await benchMemory(entries);
    else if (section === 'fsync') await benchFsync(2000, 7);
    else
      throw new RangeError(
        `Unknown storage bench section ${JSON.stringify(section)}: expected replay, group, memory or fsync`,
      );
  }
}

/** The `storage` section of `npm run bench` (bench/index.ts): every table above. */
export async function run(): Promise<void> {
  await runStorageBench();
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const entriesArg = args.find((arg) => arg.startsWith('--entries='));
  await runStorageBench({
    sections: args.filter((arg) => !arg.startsWith('--')),
    ...(entriesArg === undefined ? {} : { entries: Number(entriesArg.slice('--entries='.length)) }),
  });
}
