/**
 * Conflict resolution throughput: `resolveConflicts` per strategy at batch sizes 1, 16, 256 and
 * 4096, with the batch kernels of src/kernel (TypeScript twin below their WASM threshold, WASM
 * above) against the plain twins of src/kernel/reference.ts, and against resolving the same
 * conflicts one by one without the column layout. Two more tables time the column layout plus
 * the kernels, and the kernels alone on prefilled columns, to show what share of a batch each is.
 *
 * Workload: a region catching up on keys written in three regions — per key one local and one
 * remote write (32-byte values) with three-entry contexts; half concurrent, a quarter where the
 * remote descends from the local write, a quarter the reverse; 1 in 64 concurrent pairs share
 * wall time and logical counter (a tie).
 *
 * Run alone with `npx tsx bench/conflict.ts`, or as the `conflict` section of `npm run bench`.
 */
import { pathToFileURL } from 'node:url';
import { Bench } from 'tinybench';
import {
  ConflictResolutionStrategy,
  ConflictResolver,
  dispatchKernels,
  twinKernels,
  type ClockKernels,
  type ConflictInfo,
  type Write,
} from '../src/conflict/index.js';
import { ConflictColumns } from '../src/conflict/columns.js';
import { compareHlcWasm, compareVersionVectorWasm } from '../src/kernel/index.js';

const sizes = [1, 16, 256, 4096] as const;
const regions = ['us-east-1', 'eu-west-1', 'ap-south-1'] as const;
const poolSize = 4096;
const nowMs = 1_700_000_000_000;

/** A seeded generator (mulberry32), so every run measures the same conflicts. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The catch-up workload described in the module comment. */
export function catchUpConflicts(count: number, seed = 1): ConflictInfo[] {
  const next = random(seed);
  const int = (max: number) => Math.floor(next() * max);
  const conflicts: ConflictInfo[] = [];
  for (let i = 0; i < count; i++) {
    const base = regions.map(() => 1 + int(50));
    const a = int(3);
    const b = (a + 1 + int(2)) % 3;
    const stamp = (wallMs: number, logical: number, node: string) => ({ wallMs, logical, node });
    const value = () => Uint8Array.from({ length: 32 }, () => int(256));
    const wallA = nowMs - int(2_000);
    const tie = i % 64 === 0;
    const wallB = tie ? wallA : nowMs - int(2_000);
    const writeOf = (r: number, counter: number, wallMs: number, logical: number): Write => ({
      value: value(),
      hlc: stamp(wallMs, logical, regions[r]!),
      dot: { node: regions[r]!, counter },
      region: regions[r]!,
    });
    const context = (extra: Record<number, number>) =>
      new Map(regions.map((id, r) => [id, extra[r] ?? base[r]!] as const));
    const x = writeOf(a, base[a]! + 1, wallA, tie ? 3 : int(4));
    const kind = i % 4;
    if (kind <= 1) {
      const y = writeOf(b, base[b]! + 1, wallB, tie ? 3 : int(4));
      conflicts.push({
        key: `key-${i}`,
        local: { siblings: [x], context: context({ [a]: base[a]! + 1 }) },
        remote: { siblings: [y], context: context({ [b]: base[b]! + 1 }) },
      });
    } else {
      // The newer write saw the older one: its context covers both dots, its clock is later.
      const y = writeOf(b, base[b]! + 1, wallA + 1 + int(50), 0);
      const older = { siblings: [x], context: context({ [a]: base[a]! + 1 }) };
      const newer = { siblings: [y], context: context({ [a]: base[a]! + 1, [b]: base[b]! + 1 }) };
      conflicts.push(
        kind === 2
          ? { key: `key-${i}`, local: older, remote: newer }
          : { key: `key-${i}`, local: newer, remote: older },
      );
    }
  }
  return conflicts;
}

/** The WASM kernels at every size (copy-in), to show what they cost below the threshold. */
const wasmKernels: ClockKernels = {
  compareHlcBatch: compareHlcWasm,
  compareVersionVectorBatch: compareVersionVectorWasm,
};

function newResolver(
  strategy: ConflictResolutionStrategy,
  kernels: ClockKernels,
): ConflictResolver {
  const resolver = new ConflictResolver(strategy, {
    kernels,
    batchSizeMin: 1,
    wallClockMs: () => nowMs,
  });
  resolver.initialize();
  resolver.registerCustomResolver((_conflict, candidates) =>
    candidates.reduce((best, w) => (w.region < best.region ? w : best)),
  );
  return resolver;
}

/** Batches of `size` taken in turn from the pool; enough per sample to beat timer noise. */
function batchesOf(
  pool: ConflictInfo[],
  size: number,
): { batches: ConflictInfo[][]; reps: number } {
  const batches: ConflictInfo[][] = [];
  for (let start = 0; start + size <= pool.length; start += size) {
    batches.push(pool.slice(start, start + size));
  }
  return { batches, reps: Math.max(1, Math.round(4096 / size)) };
}

/**
 * This process's CPU time (user + system) in ms: on a shared machine, time spent waiting for a
 * core does not count, so a busy neighbour does not skew the comparison.
 */
function cpuTimeMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

function perSecond(ms: number, items: number): number {
  return (items * 1000) / ms;
}

function format(rate: number): string {
  return rate >= 1e6 ? `${(rate / 1e6).toFixed(2)} M` : `${(rate / 1e3).toFixed(0)} k`;
}

/**
 * Runs the benchmark and prints two tables. Times are CPU time of this process (see
 * {@link cpuTimeMs}); every task runs in `rounds` interleaved rounds of `timeMs` each and
 * keeps its best median, so a neighbour's burst slows one round of a task, not the comparison.
 */
export async function runConflictBench(
  options: { timeMs?: number; rounds?: number } = {},
): Promise<void> {
  const timeMs = options.timeMs ?? 150;
  const rounds = options.rounds ?? 3;
  const pool = catchUpConflicts(poolSize);
  const tasks: [name: string, items: number, body: () => void][] = [];

  for (const strategy of Object.values(ConflictResolutionStrategy)) {
    for (const size of sizes) {
      const { batches, reps } = batchesOf(pool, size);
      const variants: [string, (batch: ConflictInfo[]) => void][] = [];
      for (const [kind, kernels] of [
        ['kernel', dispatchKernels],
        ['twin', twinKernels],
      ] as const) {
        const resolver = newResolver(strategy, kernels);
        variants.push([kind, (batch) => void resolver.resolveConflicts(batch)]);
      }
      const single = newResolver(strategy, twinKernels);
      variants.push([
        'single',
        (batch) => {
          for (const conflict of batch) single.resolveConflict(conflict);
        },
      ]);
      for (const [kind, run] of variants) {
        let next = 0;
        tasks.push([
          `${strategy} ${size} ${kind}`,
          size * reps,
          () => {
            for (let r = 0; r < reps; r++) {
              run(batches[next]!);
              next = next + 1 === batches.length ? 0 : next + 1;
            }
          },
        ]);
      }
    }
  }

  for (const size of sizes) {
    const { batches, reps } = batchesOf(pool, size);
    for (const [kind, kernels] of [
      ['kernel', dispatchKernels],
      ['twin', twinKernels],
      ['wasm', wasmKernels],
    ] as const) {
      const columns = new ConflictColumns();
      let next = 0;
      tasks.push([
        `layout ${size} ${kind}`,
        size * reps,
        () => {
          for (let r = 0; r < reps; r++) {
            const batch = batches[next]!;
            next = next + 1 === batches.length ? 0 : next + 1;
            const width = columns.fillContexts(batch, 0, size);
            kernels.compareVersionVectorBatch(
              columns.localContexts,
              columns.remoteContexts,
              size,
              width,
              columns.relations,
            );
            columns.fillClocks(batch, 0, size);
            kernels.compareHlcBatch(columns.local, columns.remote, size, columns.orders);
          }
        },
      ]);
    }
  }

  for (const size of sizes) {
    const reps = Math.max(1, Math.round(4096 / size));
    const columns = new ConflictColumns();
    const width = columns.fillContexts(pool, 0, size);
    columns.fillClocks(pool, 0, size);
    for (const [kind, kernels] of [
      ['twin', twinKernels],
      ['wasm', wasmKernels],
    ] as const) {
      tasks.push([
        `kernels ${size} ${kind}`,
        size * reps,
        () => {
          for (let r = 0; r < reps; r++) {
            kernels.compareVersionVectorBatch(
              columns.localContexts,
              columns.remoteContexts,
              size,
              width,
              columns.relations,
            );
            kernels.compareHlcBatch(columns.local, columns.remote, size, columns.orders);
          }
        },
      ]);
    }
  }

  const bestMs = new Map<string, number>();
  for (let round = 0; round < rounds; round++) {
    const bench = new Bench({
      time: timeMs,
      warmupTime: 50,
      iterations: 8,
      now: cpuTimeMs,
      subtractTimerOverhead: true,
    });
    for (const [name, , body] of tasks) bench.add(name, body);
    await bench.run();
    for (const task of bench.tasks) {
      const result = task.result;
      if (!('latency' in result)) throw new Error(`No result for ${task.name}`);
      const ms = result.latency.p50;
      bestMs.set(task.name, Math.min(ms, bestMs.get(task.name) ?? Infinity));
    }
  }
  const items = new Map(tasks.map(([name, count]) => [name, count]));
  const rate = (name: string): number => perSecond(bestMs.get(name)!, items.get(name)!);

  console.log(
    "\nresolveConflicts throughput, conflicts per CPU-second (best of the rounds' medians)",
  );
  console.log('batch kernel = src/kernel (TS twin below 256, WASM from 256); twin = reference.ts');
  const header = ['strategy', 'batch', 'batch kernel', 'batch twin', 'kernel/twin', 'one by one'];
  const rows: string[][] = [];
  for (const strategy of Object.values(ConflictResolutionStrategy)) {
    for (const size of sizes) {
      const kernel = rate(`${strategy} ${size} kernel`);
      const twin = rate(`${strategy} ${size} twin`);
      const single = rate(`${strategy} ${size} single`);
      rows.push([
        strategy,
        String(size),
        format(kernel),
        format(twin),
        `${(kernel / twin).toFixed(2)}x`,
        format(single),
      ]);
    }
  }
  printTable(header, rows);

  console.log('\ncolumn layout + both kernels only, conflicts per CPU-second');
  const layoutRows = sizes.map((size) => {
    const twin = rate(`layout ${size} twin`);
    return [
      String(size),
      format(rate(`layout ${size} kernel`)),
      format(twin),
      format(rate(`layout ${size} wasm`)),
      `${(rate(`layout ${size} wasm`) / twin).toFixed(2)}x`,
    ];
  });
  printTable(['batch', 'kernel (dispatch)', 'twin', 'wasm always', 'wasm/twin'], layoutRows);

  console.log('\nboth kernels only (columns filled beforehand, width 3), conflicts per CPU-second');
  const kernelRows = sizes.map((size) => {
    const twin = rate(`kernels ${size} twin`);
    const wasm = rate(`kernels ${size} wasm`);
    return [String(size), format(twin), format(wasm), `${(wasm / twin).toFixed(2)}x`];
  });
  printTable(['batch', 'twin', 'wasm (copy-in)', 'wasm/twin'], kernelRows);
}

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
  console.log(line(header));
  for (const row of rows) console.log(line(row));
}

/** The `conflict` section of `npm run bench` (bench/index.ts); BENCH_TIME_MS sets `timeMs`. */
export async function run(): Promise<void> {
  const timeMs = process.env.BENCH_TIME_MS;
  await runConflictBench(timeMs === undefined ? {} : { timeMs: Number(timeMs) });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await run();
}
