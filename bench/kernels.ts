/**
 * The WASM kernels against their TypeScript twins (tinybench). For each kernel and batch size
 * it prints ns per call for the twin, for WASM including moving the input into WASM memory, and
 * for WASM with the input already resident, with the WASM/TS ratios (below 1: WASM faster).
 *
 * Method: each task repeats its call max(1, round(4096 / N)) times per sample so that timer
 * overhead stays negligible at small N; reported is the median sample divided by the
 * repetitions. Logs are created once per row and driven in a steady state (what a task adds,
 * it removes). The conflict scan is measured in its worst case: every incoming entry matches,
 * so the whole overlap is scanned.
 */
import { Bench } from 'tinybench';
import { EntryBatchBuilder, EntryType, describeBatchProblem } from '../src/raft/batch.js';
import type { EntryBatch } from '../src/raft/batch.js';
import type { HlcColumns, KernelBuild } from '../src/kernel/index.js';
import {
  HlcBatchStage,
  TsLog,
  VersionVectorBatchStage,
  WasmLog,
  compareHlcBatch,
  compareHlcWasm,
  compareVersionVectorBatch,
  compareVersionVectorWasm,
  commitThresholdDefault,
  conflictScanThresholdDefault,
  entryOverheadBytes,
  hlcWasmThreshold,
  quorumIndexWasm,
  versionVectorWasmThreshold,
} from '../src/kernel/index.js';
import * as reference from '../src/kernel/reference.js';
import { clearKernelPool } from '../src/kernel/wasm.js';

const timeMs = Number(process.env.BENCH_TIME_MS ?? 200);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const sizes = [1, 16, 256, 4096] as const;

/**
 * Measures each task; returns ns per inner call, keyed by task name: the median sample of a
 * round, the lowest over `rounds` rounds. The machine is shared, so rounds interleave the
 * tasks and the minimum discards the rounds where another process took the core.
 *
 * Each task's repetition loop is compiled separately (`new Function`), so its call to the task
 * stays monomorphic and inlinable instead of sharing one megamorphic call site with every task.
 */
async function measure(
  tasks: Record<string, { reps: number; fn: () => void }>,
): Promise<Map<string, number>> {
  const results = new Map<string, number>();
  for (let round = 0; round < rounds; round++) {
    const bench = new Bench({
      time: timeMs,
      warmupTime: Math.min(50, timeMs),
      subtractTimerOverhead: true,
      throws: true,
    });
    for (const [name, { reps, fn }] of Object.entries(tasks)) {
      // eslint-disable-next-line @typescript-eslint/no-implied-eval -- deliberate: see above
      const loop = new Function(
        'fn',
        'reps',
        'return function repeat() { for (let r = 0; r < reps; r++) fn(); };',
      ) as (fn: () => void, reps: number) => () => void;
      bench.add(name, loop(fn, reps));
    }
    await bench.run();
    for (const task of bench.tasks) {
      const result = task.result;
      if (result.state !== 'completed') {
        throw new Error(`Benchmark ${task.name} did not complete: ${result.state}`);
      }
      const perCall = (result.latency.p50 * 1e6) / tasks[task.name]!.reps;
      results.set(task.name, Math.min(perCall, results.get(task.name) ?? Infinity));
    }
  }
  return results;
}

const repsFor = (n: number): number => Math.max(1, Math.round(4096 / n));

function ns(value: number | undefined): string {
  if (value === undefined) return 'n/a';
  return value >= 100 ? value.toFixed(0) : value.toFixed(1);
}

function ratio(value: number | undefined, base: number | undefined): string {
  if (value === undefined || base === undefined) return 'n/a';
  const r = value / base;
  return `${r.toFixed(2)}× ${r < 0.95 ? '(WASM wins)' : r > 1.05 ? '(**WASM loses**)' : '(tie)'}`;
}

/**
 * Prints a table: one row per size, the given columns in ns, then ratios. A ratio is
 * [label, column] (against the first column) or [label, column, base column].
 */
function printTable(
  title: string,
  rowLabel: string,
  rows: readonly (string | number)[],
  columns: readonly string[],
  ratios: readonly (readonly [string, string] | readonly [string, string, string])[],
  value: (row: string | number, column: string) => number | undefined,
): void {
  console.log(`### ${title}\n`);
  const header = [rowLabel, ...columns.map((c) => `${c} (ns)`), ...ratios.map(([label]) => label)];
  console.log(`| ${header.join(' | ')} |`);
  console.log(`|${header.map(() => '---').join('|')}|`);
  for (const row of rows) {
    const cells = [
      String(row),
      ...columns.map((c) => ns(value(row, c))),
      ...ratios.map((r) => ratio(value(row, r[1]), value(row, r[2] ?? columns[0]!))),
    ];
    console.log(`| ${cells.join(' | ')} |`);
  }
  console.log('');
}

function entries(
  firstIndex: number,
  n: number,
  term: (i: number) => number,
  payloadBytes = 64,
): EntryBatch {
  const builder = new EntryBatchBuilder(firstIndex, n, n * payloadBytes);
  const payload = new Uint8Array(payloadBytes).fill(7);
  for (let i = 0; i < n; i++) builder.add(term(i), EntryType.Normal, payload);
  return builder.finish();
}

/** Term of entry i (0-based) of the resident logs: runs of 1000 entries per term. */
const termOf = (i: number): number => 1 + Math.floor(i / 1000);
const residentEntries = 8192;

type Scannable = { findConflict(terms: Float64Array, slot: number, n: number): number };
type EndsWriter = {
  writeEnds(
    ends: Uint32Array,
    from: number,
    n: number,
    slot: number,
    offset: number,
    base: number,
  ): void;
};

function makeLogs(): { ts: TsLog; wasm: (build: KernelBuild, threshold?: number) => WasmLog } {
  const ts = new TsLog({ entriesInitial: 16384, payloadBytesInitial: 4 * 1024 * 1024 });
  ts.append(entries(1, residentEntries, termOf));
  const wasm = (build: KernelBuild, threshold = conflictScanThresholdDefault): WasmLog => {
    const log = new WasmLog({
      build,
      conflictScanThreshold: threshold,
      commitThreshold: threshold,
      entriesInitial: 16384,
      payloadBytesInitial: 4 * 1024 * 1024,
    });
    log.append(entries(1, residentEntries, termOf));
    return log;
  };
  return { ts, wasm };
}

async function benchLog(): Promise<void> {
  const { ts, wasm } = makeLogs();
  const release = wasm('release', 0);
  const scalar = wasm('scalar', 0);
  const dispatch = wasm('release');

  // Conflict scan, kernel only (no batch validation): the part WASM is for.
  const scan: Record<string, { reps: number; fn: () => void }> = {};
  for (const n of sizes) {
    const incoming = new Float64Array(n).map((_, i) => termOf(i));
    const reps = repsFor(n);
    scan[`ts ${n}`] = {
      reps,
      fn: () => void (ts as unknown as Scannable).findConflict(incoming, 0, n),
    };
    scan[`simd copy ${n}`] = {
      reps,
      fn: () => void (release as unknown as Scannable).findConflict(incoming, 0, n),
    };
    scan[`scalar copy ${n}`] = {
      reps,
      fn: () => void (scalar as unknown as Scannable).findConflict(incoming, 0, n),
    };
    scan[`simd resident ${n}`] = {
      reps,
      fn: () => {
        release.stagedTerms().set(incoming);
        void release.findConflictStaged(1, n);
      },
    };
  }
  // The resident rows above still copy the terms in: measure the pure call separately.
  for (const n of sizes) {
    const incoming = new Float64Array(n).map((_, i) => termOf(i));
    for (const [name, log] of [
      ['simd staged', release],
      ['scalar staged', scalar],
    ] as const) {
      scan[`${name} ${n}`] = {
        reps: repsFor(n),
        fn: () => void log.findConflictStaged(1, n),
      };
      log.stagedTerms().set(incoming);
    }
  }
  const scanResults = await measure(scan);
  printTable(
    'Conflict scan (AppendEntries matching, kernel only), N incoming entries all matching',
    'N',
    sizes,
    ['ts', 'simd copy', 'scalar copy', 'simd staged', 'scalar staged'],
    [
      ['SIMD incl. copy-in / TS', 'simd copy'],
      ['scalar incl. copy-in / TS', 'scalar copy'],
      ['SIMD resident / TS', 'simd staged'],
      ['scalar resident / TS', 'scalar staged'],
    ],
    (n, column) => scanResults.get(`${column} ${n}`),
  );
  for (const n of sizes) {
    // Every staged scan above re-used the same staged terms: check they really matched.
    if (release.findConflictStaged(1, n) !== n) throw new Error('staged terms were not resident');
  }

  // Threshold search: where does WASM (copy-in) overtake the JS scan over the resident view?
  const thresholdSizes = [4, 8, 16, 24, 32, 48, 64, 96, 128];
  const threshold: Record<string, { reps: number; fn: () => void }> = {};
  for (const n of thresholdSizes) {
    const incoming = new Float64Array(n).map((_, i) => termOf(i));
    const ends = Uint32Array.from({ length: n }, (_, i) => (i + 1) * 64);
    threshold[`commit ts ${n}`] = {
      reps: repsFor(n),
      fn: () => (ts as unknown as EndsWriter).writeEnds(ends, 0, n, residentEntries, 0, 0),
    };
    threshold[`commit wasm ${n}`] = {
      reps: repsFor(n),
      fn: () => (release as unknown as EndsWriter).writeEnds(ends, 0, n, residentEntries, 0, 0),
    };
    threshold[`ts ${n}`] = {
      reps: repsFor(n),
      fn: () => void (ts as unknown as Scannable).findConflict(incoming, 0, n),
    };
    threshold[`simd copy ${n}`] = {
      reps: repsFor(n),
      fn: () => void (release as unknown as Scannable).findConflict(incoming, 0, n),
    };
  }
  const thresholdResults = await measure(threshold);
  printTable(
    `Threshold search: conflict scan (threshold ${conflictScanThresholdDefault}) and append commit ` +
      `(threshold ${commitThresholdDefault}); below a threshold the WASM log runs the JS loop over its views`,
    'N',
    thresholdSizes,
    ['ts', 'simd copy', 'commit ts', 'commit wasm'],
    [
      ['scan: SIMD incl. copy-in / TS', 'simd copy'],
      ['commit: WASM / TS', 'commit wasm', 'commit ts'],
    ],
    (n, column) => thresholdResults.get(`${column} ${n}`),
  );

  // matchAndAppend end to end: argument and batch validation + scan; nothing to write.
  const match: Record<string, { reps: number; fn: () => void }> = {};
  for (const n of sizes) {
    const batch = entries(1, n, termOf);
    match[`ts ${n}`] = { reps: repsFor(n), fn: () => void ts.matchAndAppend(0, 0, batch) };
    match[`validation ${n}`] = { reps: repsFor(n), fn: () => void describeBatchProblem(batch) };
    match[`wasm dispatch ${n}`] = {
      reps: repsFor(n),
      fn: () => void dispatch.matchAndAppend(0, 0, batch),
    };
    match[`wasm forced ${n}`] = {
      reps: repsFor(n),
      fn: () => void release.matchAndAppend(0, 0, batch),
    };
  }
  const matchResults = await measure(match);
  printTable(
    'matchAndAppend end to end (validates the batch, then scans), N entries all matching; ' +
      '"validation" is describeBatchProblem alone, which both sides run first',
    'N',
    sizes,
    ['ts', 'wasm dispatch', 'wasm forced', 'validation'],
    [
      ['WASM (dispatch) / TS', 'wasm dispatch'],
      ['WASM (always) / TS', 'wasm forced'],
    ],
    (n, column) => matchResults.get(`${column} ${n}`),
  );

  // Append N + truncate: the batch is copied into the resident tail through views, then one
  // call commits the payload locations (WASM) or a JS loop does (twin).
  const append: Record<string, { reps: number; fn: () => void }> = {};
  for (const n of sizes) {
    const batch = entries(residentEntries + 1, n, () => 9);
    for (const [name, log] of [
      ['ts', ts],
      ['wasm', dispatch],
    ] as const) {
      append[`${name} ${n}`] = {
        reps: repsFor(n),
        fn: () => {
          log.append(batch);
          log.truncateFrom(residentEntries + 1);
        },
      };
    }
  }
  // The commit call alone (WASM) against the twin's loop, input already in place.
  for (const n of sizes) {
    const ends = Uint32Array.from({ length: n }, (_, i) => (i + 1) * 64);
    append[`ts ends ${n}`] = {
      reps: repsFor(n),
      fn: () => (ts as unknown as EndsWriter).writeEnds(ends, 0, n, residentEntries, 0, 0),
    };
    append[`wasm ends ${n}`] = {
      reps: repsFor(n),
      fn: () => (release as unknown as EndsWriter).writeEnds(ends, 0, n, residentEntries, 0, 0),
    };
  }
  const appendResults = await measure(append);
  printTable(
    'append N entries (64-byte payloads) + truncateFrom, steady state',
    'N',
    sizes,
    ['ts', 'wasm', 'ts ends', 'wasm ends'],
    [
      ['WASM incl. input / TS', 'wasm'],
      ['commit: WASM (ends copied in + call) / TS loop', 'wasm ends', 'ts ends'],
    ],
    (n, column) => appendResults.get(`${column} ${n}`),
  );
  console.log(
    'Append has no "resident" variant: writing the batch into WASM memory *is* the append. ' +
      'The "ends" columns isolate the commit step (payload ends -> starts/lengths).\n',
  );

  // Append N + compact N: lazy compaction reclaims the dead prefix in amortized moves.
  const compact: Record<string, { reps: number; fn: () => void }> = {};
  for (const n of sizes) {
    for (const [name, make] of [
      ['ts', () => new TsLog({ entriesInitial: 16384, payloadBytesInitial: 4 * 1024 * 1024 })],
      ['wasm', () => new WasmLog({ entriesInitial: 16384, payloadBytesInitial: 4 * 1024 * 1024 })],
    ] as const) {
      const log = make();
      log.append(entries(1, residentEntries, termOf));
      const builder = new EntryBatchBuilder(1, n, n * 64);
      const payload = new Uint8Array(64).fill(3);
      for (let i = 0; i < n; i++) builder.add(9, EntryType.Normal, payload);
      const template = builder.finish();
      compact[`${name} ${n}`] = {
        reps: repsFor(n),
        fn: () => {
          const next = { ...template, firstIndex: log.lastIndex() + 1 };
          log.append(next);
          log.compactTo(log.firstIndex() - 1 + n);
        },
      };
    }
  }
  const compactResults = await measure(compact);
  printTable(
    'append N + compactTo (drop N from the front), steady state with 8,192 live entries',
    'N',
    sizes,
    ['ts', 'wasm'],
    [['WASM / TS', 'wasm']],
    (n, column) => compactResults.get(`${column} ${n}`),
  );

  // Reads: termAt goes through a cached Float64Array view on both sides (no call per lookup).
  const reads: Record<string, { reps: number; fn: () => void }> = {};
  for (const n of sizes) {
    for (const [name, log] of [
      ['ts', ts],
      ['wasm', dispatch],
    ] as const) {
      reads[`termAt ${name} ${n}`] = {
        reps: repsFor(n),
        fn: () => {
          let sum = 0;
          for (let i = 1; i <= n; i++) sum += log.termAt(i);
          if (sum < 0) throw new Error('unreachable');
        },
      };
      reads[`slice ${name} ${n}`] = {
        reps: repsFor(n),
        fn: () => void log.slice(1, 1 + n, Infinity),
      };
    }
  }
  const readResults = await measure(reads);
  printTable(
    'N × termAt (JS reads a Float64Array view of the resident terms on both sides)',
    'N',
    sizes,
    ['termAt ts', 'termAt wasm'],
    [['WASM / TS', 'termAt wasm']],
    (n, column) => readResults.get(`${column} ${n}`),
  );
  printTable(
    'slice N entries (64-byte payloads), copied out as an EntryBatch',
    'N',
    sizes,
    ['slice ts', 'slice wasm'],
    [['WASM / TS', 'slice wasm']],
    (n, column) => readResults.get(`${column} ${n}`),
  );

  // Creating logs: a simulator creates thousands.
  const creation = await measure({
    ts: { reps: 1, fn: () => void new TsLog() },
    'wasm pooled': {
      reps: 1,
      fn: () => new WasmLog().dispose(),
    },
    'wasm fresh': {
      reps: 1,
      fn: () => {
        clearKernelPool();
        new WasmLog().dispose();
      },
    },
  });
  console.log('### Creating a log (default sizing: 1,024 entries, 64 KiB arena)\n');
  console.log(
    '| TsLog (ns) | WasmLog, instance from the pool, then dispose (ns) | WasmLog, new instance (ns) |',
  );
  console.log('|---|---|---|');
  console.log(
    `| ${ns(creation.get('ts'))} | ${ns(creation.get('wasm pooled'))} | ${ns(creation.get('wasm fresh'))} |\n`,
  );

  // Memory per entry, growing the way a log does: many small appends.
  const grown = new WasmLog();
  const n = 100_000;
  const step = 64;
  for (let index = 1; index <= n; index += step) grown.append(entries(index, step, () => 1, 0));
  console.log('### Bytes per entry beyond the payload\n');
  console.log(
    `- layout: ${entryOverheadBytes} bytes per entry slot (term f64 8 + payload start u32 4 + ` +
      'payload length u32 4 + type u8 1); limit 24',
  );
  console.log(
    `- measured: ${grown.lastIndex().toLocaleString('en-US')} entries with 0-byte payloads, appended ${step} at a ` +
      `time to a default log, occupy ${grown.memoryBytes() - grown.storageCapacity().payloadBytes} bytes of entry ` +
      `arrays = ${((grown.memoryBytes() - grown.storageCapacity().payloadBytes) / grown.lastIndex()).toFixed(1)} ` +
      `bytes per live entry (capacity ${grown.storageCapacity().entries} slots: the slack of 1.4× growth)\n`,
  );
  for (const log of [release, scalar, dispatch, grown]) log.dispose();
}

async function benchQuorum(): Promise<void> {
  const voterCounts = [3, 5, 7, 9, 15, 31, 101, 1001];
  const tasks: Record<string, { reps: number; fn: () => void }> = {};
  for (const count of voterCounts) {
    const matchIndexes = Float64Array.from(
      { length: count },
      (_, i) => 1_000_000 + ((i * 7919) % 1000),
    );
    const reps = repsFor(count);
    tasks[`ts ${count}`] = { reps, fn: () => void reference.quorumIndex(matchIndexes, count) };
    tasks[`wasm ${count}`] = { reps, fn: () => void quorumIndexWasm(matchIndexes, count) };
  }
  const results = await measure(tasks);
  printTable(
    'quorumIndex (copy of the match indexes + quickselect), by number of voters',
    'voters',
    voterCounts,
    ['ts', 'wasm'],
    [['WASM incl. copy-in / TS', 'wasm']],
    (count, column) => results.get(`${column} ${count}`),
  );
  console.log(
    'quorumIndex has no resident variant: selection reorders its input, so copying it is part of the kernel.\n',
  );
}

const clockSizes = [1, 16, 32, 64, 128, 256, 512, 1024, 4096] as const;

async function benchClocks(): Promise<void> {
  const hlc: Record<string, { reps: number; fn: () => void }> = {};
  const vv: Record<string, { reps: number; fn: () => void }> = {};
  const width = 5;
  for (const n of clockSizes) {
    const reps = repsFor(n);
    const column = (shift: number): HlcColumns => ({
      wall: Float64Array.from({ length: n }, (_, i) => 1_700_000_000_000 + ((i + shift) % 3)),
      logical: Uint32Array.from({ length: n }, (_, i) => (i * (shift + 1)) % 4),
      node: Uint32Array.from({ length: n }, (_, i) => (i + shift) % 5),
    });
    const a = column(0);
    const b = column(1);
    const out = new Int8Array(n);
    const stage = new HlcBatchStage(n);
    for (const [to, from] of [
      [stage.a, a],
      [stage.b, b],
    ] as const) {
      to.wall.set(from.wall);
      to.logical.set(from.logical);
      to.node.set(from.node);
    }
    hlc[`ts ${n}`] = { reps, fn: () => reference.compareHlcBatch(a, b, n, out) };
    hlc[`copy ${n}`] = { reps, fn: () => compareHlcWasm(a, b, n, out) };
    hlc[`resident ${n}`] = { reps, fn: () => stage.compare(n) };
    hlc[`dispatch ${n}`] = { reps, fn: () => compareHlcBatch(a, b, n, out) };

    const va = Float64Array.from({ length: n * width }, (_, i) => (i * 13) % 4);
    const vb = Float64Array.from({ length: n * width }, (_, i) => (i * 7) % 4);
    const vvStage = new VersionVectorBatchStage(n, width);
    vvStage.a.set(va);
    vvStage.b.set(vb);
    vv[`ts ${n}`] = { reps, fn: () => reference.compareVersionVectorBatch(va, vb, n, width, out) };
    vv[`copy ${n}`] = { reps, fn: () => compareVersionVectorWasm(va, vb, n, width, out) };
    vv[`resident ${n}`] = { reps, fn: () => vvStage.compare(n) };
    vv[`dispatch ${n}`] = { reps, fn: () => compareVersionVectorBatch(va, vb, n, width, out) };
  }
  const hlcResults = await measure(hlc);
  printTable(
    `compareHlcBatch, N stamp pairs (dispatch: WASM from ${hlcWasmThreshold})`,
    'N',
    clockSizes,
    ['ts', 'copy', 'resident', 'dispatch'],
    [
      ['WASM incl. copy-in/out / TS', 'copy'],
      ['WASM resident / TS', 'resident'],
      ['dispatch / TS', 'dispatch'],
    ],
    (n, column) => hlcResults.get(`${column} ${n}`),
  );
  const vvResults = await measure(vv);
  printTable(
    `compareVersionVectorBatch, N pairs of ${width}-counter vectors (dispatch: WASM from ${versionVectorWasmThreshold})`,
    'N',
    clockSizes,
    ['ts', 'copy', 'resident', 'dispatch'],
    [
      ['WASM incl. copy-in/out / TS', 'copy'],
      ['WASM resident / TS', 'resident'],
      ['dispatch / TS', 'dispatch'],
    ],
    (n, column) => vvResults.get(`${column} ${n}`),
  );
}

/** Runs every kernel benchmark and prints the tables. */
export async function run(): Promise<void> {
  console.log(
    `ns per call: median sample, lowest of ${rounds} rounds of ${timeMs} ms per task (tinybench; ` +
      'repetitions max(1, round(4096/N)) per sample). Ratios are WASM / TS: below 1 WASM is faster.\n',
  );
  await benchLog();
  await benchQuorum();
  await benchClocks();
}
