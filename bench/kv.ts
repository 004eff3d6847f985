/**
 * What the key-value state holds per key: JS heap and off-heap bytes after every key of 20,000
 * was written once and then three times (100-byte values, stamped commands as a leader
 * proposes them), in two shapes:
 *
 * - written here only: each key holds one write of this region, the form a single-region
 *   cluster keeps (src/kv/key-record.ts stores it compactly);
 * - merged with another region first: a write from region `eu` was merged into every key
 *   before the local writes, so each key's context names two regions and is kept in full.
 *
 * Each state's `snapshot()` is timed too (median of 21 back to back, the JIT warm), and the
 * way a node takes its snapshots instead: `captureSnapshot()` in the Raft loop (median of 21),
 * then `encode()` over several turns of the event loop, each turn timed by a task queued
 * between them (one encoding per state). The longest turn is what the loop can wait for at
 * worst.
 *
 * Why it matters: a key outlives the young generation, so every byte of a key's version is
 * copied twice by the scavenger, and on a node under load key versions were most of what a
 * scavenge copied (bench/README.md, "What the tail at 1 connection is").
 *
 * Run alone with `npx tsx bench/kv.ts`, or as the `kv` section of `npm run bench`.
 */
import { pathToFileURL } from 'node:url';
import { Bench } from 'tinybench';
import { ConflictResolutionStrategy } from '../src/conflict/conflict-resolver.js';
import { Hlc } from '../src/conflict/hlc.js';
import { KvStateMachine } from '../src/kv/state-machine.js';
import { encodeRemoteBatch, encodeStampedCommand } from '../src/kv/versioned-codec.js';
import { forceGc } from './force-gc.js';

const keyCount = 20_000;
const value = new Uint8Array(100).fill(7);
/**
 * The keys, first written in a fixed shuffled order, as clients write them: a snapshot sorts
 * the keys it takes in the map's order, and an order already sorted made that sort look free.
 */
const keys = Array.from({ length: keyCount }, (_, k) => `key-${String(k).padStart(8, '0')}`);
for (let k = keys.length - 1, seed = 1; k > 0; k--) {
  seed = (seed * 48_271) % 2_147_483_647;
  const other = seed % (k + 1);
  [keys[k], keys[other]] = [keys[other]!, keys[k]!];
}

/** Every key written once by region `eu`, shipped to `into` as one batch. */
function mergeRemoteWrites(into: KvStateMachine): void {
  const eu = new KvStateMachine({ region: 'eu' });
  const clock = new Hlc({ node: 'eu' });
  for (const key of keys) {
    eu.apply(eu.appliedIndex + 1, encodeStampedCommand(clock.now(), eu.encodePut(key, value)));
  }
  const { items, toIndex } = eu.localChangesSince(0, keyCount, 1 << 30);
  const batch = encodeRemoteBatch({
    origin: 'eu',
    fromIndex: 1,
    toIndex,
    strategy: ConflictResolutionStrategy.LATEST_TIMESTAMP,
    items,
  });
  const result = into.applyRemoteBatch(into.appliedIndex + 1, batch);
  if (result.kind !== 'applied') throw new Error(`remote batch: ${result.kind}`);
}

function writeEveryKey(kv: KvStateMachine, clock: Hlc): void {
  for (const key of keys) {
    const command = encodeStampedCommand(clock.now(), kv.encodePut(key, value));
    const result = kv.apply(kv.appliedIndex + 1, command);
    if (result.kind !== 'ok') throw new Error(`put ${key}: ${result.kind}`);
  }
}

/**
 * Every state measured stays alive until the process ends: one freed while the next is
 * measured would make that figure too small.
 */
const measured: KvStateMachine[] = [];

interface Held {
  readonly heapBytes: number;
  readonly offHeapBytes: number;
}

/**
 * A full GC, then a pause for V8 to release the freed array buffers' memory (it does that on
 * a background task after the GC), so both figures are live data only.
 */
async function settle(): Promise<NodeJS.MemoryUsage> {
  forceGc();
  await new Promise((resolve) => setTimeout(resolve, 100));
  forceGc();
  return process.memoryUsage();
}

async function heldBy(build: () => KvStateMachine): Promise<{ kv: KvStateMachine; held: Held }> {
  const before = await settle();
  const kv = build();
  const after = await settle();
  const offHeap = (usage: NodeJS.MemoryUsage): number => usage.external + usage.arrayBuffers;
  return {
    kv,
    held: {
      heapBytes: (after.heapUsed - before.heapUsed) / keyCount,
      offHeapBytes: (offHeap(after) - offHeap(before)) / keyCount,
    },
  };
}

/** The median time of 21 calls of `task` in a row. */
async function medianOf21(name: string, task: () => void): Promise<number> {
  const bench = new Bench({ iterations: 21, time: 0, warmup: false });
  bench.add(name, task);
  await bench.run();
  const result = bench.tasks[0]!.result;
  if (!('latency' in result)) throw new Error(`No result for ${name}`);
  return result.latency.p50;
}

/** The size of `kv`'s snapshot, and the median time of 21 `snapshot()` calls in a row. */
async function timeSnapshot(kv: KvStateMachine): Promise<{ bytes: number; medianMs: number }> {
  const bytes = kv.snapshot().length;
  return { bytes, medianMs: await medianOf21('snapshot()', () => kv.snapshot()) };
}

/** `captureSnapshot()`'s median time, and the turns one `encode()` takes (see the module comment). */
async function timeCapture(
  kv: KvStateMachine,
): Promise<{ captureMs: number; turns: number; longestTurnMs: number }> {
  const captureMs = await medianOf21('captureSnapshot()', () => kv.captureSnapshot().release());
  const turns: number[] = [];
  let encoding = true;
  let turnStart = 0;
  const endTurn = (): void => {
    const now = performance.now();
    turns.push(now - turnStart);
    turnStart = now;
  };
  const tick = (): void => {
    endTurn();
    if (encoding) setImmediate(tick);
  };
  const capture = kv.captureSnapshot();
  turnStart = performance.now();
  setImmediate(tick);
  await capture.encode();
  encoding = false;
  endTurn();
  return { captureMs, turns: turns.length, longestTurnMs: Math.max(...turns) };
}

export async function run(): Promise<void> {
  console.log(
    `KvStateMachine of region us, ${keyCount.toLocaleString('en-US')} keys, values of ${value.length} bytes; bytes held per key after a forced GC`,
  );
  console.log('');
  console.log(
    '| shape | writes per key | heap B/key | off-heap B/key | snapshot KB | snapshot() ms | captureSnapshot() ms | encode() turns | longest turn ms |',
  );
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const [shape, merged] of [
    ['written here only', false],
    ['merged with another region first', true],
  ] as const) {
    for (const writes of [1, 3]) {
      const { kv, held } = await heldBy(() => {
        const kv = new KvStateMachine({ region: 'us' });
        if (merged) mergeRemoteWrites(kv);
        const clock = new Hlc({ node: 'us' });
        for (let round = 0; round < writes; round++) writeEveryKey(kv, clock);
        return kv;
      });
      measured.push(kv);
      const { bytes, medianMs } = await timeSnapshot(kv);
      const { captureMs, turns, longestTurnMs } = await timeCapture(kv);
      console.log(
        `| ${shape} | ${writes} | ${Math.round(held.heapBytes)} | ${Math.round(held.offHeapBytes)} | ${Math.round(bytes / 1024)} | ${medianMs.toFixed(1)} | ${captureMs.toFixed(2)} | ${turns} | ${longestTurnMs.toFixed(1)} |`,
      );
    }
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await run();
