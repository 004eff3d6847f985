/**
 * Peer-message codec figures: encode and decode time of one AppendEntries message carrying 1,
 * 16, 256 and 4096 entries of 100-byte payloads, and its size on the wire, for
 *
 * - `cbor packed`: src/transport/codec.ts, what peers send (typed arrays as byte strings,
 *   decode fully validated);
 * - `cbor entries`: the same fields through cbor-x with one map per entry, to show what
 *   packing buys (decoded into an EntryBatch, not validated);
 * - `json entries`: JSON with one object per entry and base64 payloads, what a JSON transport
 *   would send (decoded into an EntryBatch, not validated).
 *
 * Decoding of `cbor packed` is timed twice: with the body placed in its buffer so that the
 * most of `terms` (8-aligned) and `ends` (4-aligned) can be typed-array views over it, and so
 * that both must be copied; the table names the views in each case and in the case a body
 * gets at offset 0 of its own buffer (as hyper-express and undici hand bodies out).
 *
 * Run alone with `npx tsx bench/codec.ts [--time-ms=N]` (sampling time per task, default 300),
 * or as the `codec` section of `npm run bench`.
 */
import { pathToFileURL } from 'node:url';
import { Decoder, Encoder } from 'cbor-x';
import { Bench } from 'tinybench';
import { EntryBatchBuilder, EntryType, payloadOf, type EntryBatch } from '../src/raft/batch.js';
import type { AppendRequest } from '../src/raft/types.js';
import { decodeMessage, encodeMessage } from '../src/transport/codec.js';

const sizes = [1, 16, 256, 4096];
const payloadBytes = 100;

function appendOf(count: number): AppendRequest {
  const builder = new EntryBatchBuilder(1001, count, count * payloadBytes);
  const payload = new Uint8Array(payloadBytes);
  for (let k = 0; k < count; k++) {
    payload.fill(k & 0xff);
    builder.add(7, EntryType.Normal, payload);
  }
  return {
    type: 'append',
    from: 'n1',
    to: 'n2',
    term: 7,
    prevLogIndex: 1000,
    prevLogTerm: 7,
    entries: builder.finish(),
    commit: 990,
  };
}

interface EntryWire {
  term: number;
  type: number;
  data: Uint8Array | string;
}

interface AppendWire {
  type: string;
  from: string;
  to: string;
  term: number;
  prevLogIndex: number;
  prevLogTerm: number;
  commit: number;
  entries: EntryWire[];
}

/** The message with one object per entry; `data` as bytes (CBOR) or base64 (JSON). */
function perEntryWire(message: AppendRequest, base64: boolean): AppendWire {
  const { entries: batch, ...fields } = message;
  const entries: EntryWire[] = [];
  for (let k = 0; k < batch.count; k++) {
    const data = payloadOf(batch, k);
    entries.push({
      term: batch.terms[k]!,
      type: batch.types[k]!,
      data: base64
        ? Buffer.from(data.buffer, data.byteOffset, data.length).toString('base64')
        : data,
    });
  }
  return { ...fields, entries };
}

function batchOfWire(wire: AppendWire): EntryBatch {
  const builder = new EntryBatchBuilder(
    wire.prevLogIndex + 1,
    wire.entries.length,
    wire.entries.length * payloadBytes,
  );
  for (const entry of wire.entries) {
    const data = typeof entry.data === 'string' ? Buffer.from(entry.data, 'base64') : entry.data;
    builder.add(entry.term, entry.type as EntryType, data);
  }
  return builder.finish();
}

const perEntryEncoder = new Encoder({
  useRecords: false,
  tagUint8Array: false,
  variableMapSize: true,
});
const perEntryDecoder = new Decoder({ useRecords: false, mapsAsObjects: true });

function encodeCborEntries(message: AppendRequest): Uint8Array {
  return perEntryEncoder.encode(perEntryWire(message, false));
}

function decodeCborEntries(bytes: Uint8Array): EntryBatch {
  return batchOfWire(perEntryDecoder.decode(bytes) as AppendWire);
}

function encodeJsonEntries(message: AppendRequest): Uint8Array {
  return Buffer.from(JSON.stringify(perEntryWire(message, true)));
}

function decodeJsonEntries(bytes: Uint8Array): EntryBatch {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8');
  return batchOfWire(JSON.parse(text) as AppendWire);
}

/** Which of the batch's terms and ends decoding `bytes` left as views over `bytes`. */
function viewsOf(bytes: Uint8Array): string {
  const decoded = decodeMessage(bytes);
  if (decoded.type !== 'append') throw new Error('not an append');
  const views = [];
  if (decoded.entries.terms.buffer === bytes.buffer) views.push('terms');
  if (decoded.entries.ends.buffer === bytes.buffer) views.push('ends');
  return views.length === 0 ? 'none' : views.join('+');
}

/** `bytes` copied to `shift` bytes into a fresh 8-aligned buffer. */
function placed(bytes: Uint8Array, shift: number): Uint8Array {
  const buffer = new Uint8Array(bytes.length + shift);
  buffer.set(bytes, shift);
  return buffer.subarray(shift);
}

/** The placements (0..7 bytes into a buffer) that leave the most and the fewest views. */
function bestAndWorst(bytes: Uint8Array): { best: Uint8Array; worst: Uint8Array } {
  const placements = Array.from({ length: 8 }, (_, shift) => placed(bytes, shift));
  // terms (8 bytes an entry) count double: a view of them saves the bigger copy.
  const score = (candidate: Uint8Array): number => {
    const views = viewsOf(candidate);
    return (views.includes('terms') ? 2 : 0) + (views.includes('ends') ? 1 : 0);
  };
  placements.sort((a, b) => score(b) - score(a));
  return { best: placements[0]!, worst: placements.at(-1)! };
}

function nsOf(bench: Bench, name: string): number {
  const result = bench.getTask(name)?.result;
  if (result === undefined || !('latency' in result)) throw new Error(`No result for ${name}`);
  return result.latency.p50 * 1e6;
}

function formatNs(ns: number): string {
  return ns >= 1e6
    ? `${(ns / 1e6).toFixed(2)} ms`
    : ns >= 1e4
      ? `${(ns / 1e3).toFixed(1)} µs`
      : `${ns.toFixed(0)} ns`;
}

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
  console.log(line(header));
  for (const row of rows) console.log(line(row));
}

/** Runs the benchmark and prints its table; `timeMs` is the sampling time per task. */
export async function runCodecBench(options: { timeMs?: number } = {}): Promise<void> {
  const timeMs = options.timeMs ?? 300;
  const bench = new Bench({ time: timeMs, warmupTime: 100 });
  const sizesOnWire = new Map<string, number>();
  const views = new Map<string, string>();

  for (const count of sizes) {
    const message = appendOf(count);
    const packed = encodeMessage(message);
    const { best, worst } = bestAndWorst(packed);
    views.set(`${count} best`, viewsOf(best));
    views.set(`${count} worst`, viewsOf(worst));
    views.set(`${count} natural`, viewsOf(placed(packed, 0)));
    const cborEntries = encodeCborEntries(message);
    const jsonEntries = encodeJsonEntries(message);
    sizesOnWire.set(`${count} packed`, packed.length);
    sizesOnWire.set(`${count} cbor entries`, cborEntries.length);
    sizesOnWire.set(`${count} json entries`, jsonEntries.length);

    bench.add(`${count} packed encode`, () => void encodeMessage(message));
    bench.add(`${count} packed decode best`, () => void decodeMessage(best));
    bench.add(`${count} packed decode worst`, () => void decodeMessage(worst));
    bench.add(`${count} cbor entries encode`, () => void encodeCborEntries(message));
    bench.add(`${count} cbor entries decode`, () => void decodeCborEntries(cborEntries));
    bench.add(`${count} json entries encode`, () => void encodeJsonEntries(message));
    bench.add(`${count} json entries decode`, () => void decodeJsonEntries(jsonEntries));
  }
  await bench.run();

  console.log(
    `\nAppendEntries codec, one message of N entries x ${payloadBytes} B (median sample)`,
  );
  const rows: string[][] = [];
  for (const count of sizes) {
    const packedEncode = nsOf(bench, `${count} packed encode`);
    const packedDecode = nsOf(bench, `${count} packed decode best`);
    const worstDecode = nsOf(bench, `${count} packed decode worst`);
    const jsonEncode = nsOf(bench, `${count} json entries encode`);
    const jsonDecode = nsOf(bench, `${count} json entries decode`);
    rows.push([
      String(count),
      formatNs(packedEncode),
      `${formatNs(packedDecode)} (${views.get(`${count} best`)!})`,
      `${formatNs(worstDecode)} (${views.get(`${count} worst`)!})`,
      views.get(`${count} natural`)!,
      formatNs(nsOf(bench, `${count} cbor entries encode`)),
      formatNs(nsOf(bench, `${count} cbor entries decode`)),
      formatNs(jsonEncode),
      formatNs(jsonDecode),
      `${(jsonEncode / packedEncode).toFixed(1)}x`,
      `${(jsonDecode / packedDecode).toFixed(1)}x`,
    ]);
  }
  printTable(
    [
      'entries',
      'packed enc',
      'packed dec (views)',
      'dec, copies (views)',
      'views at offset 0',
      'cbor/entry enc',
      'cbor/entry dec',
      'json enc',
      'json dec',
      'json/packed enc',
      'json/packed dec',
    ],
    rows,
  );

  console.log('\nBytes on the wire');
  printTable(
    ['entries', 'packed', 'cbor/entry', 'json', 'json/packed'],
    sizes.map((count) => {
      const packed = sizesOnWire.get(`${count} packed`)!;
      const json = sizesOnWire.get(`${count} json entries`)!;
      return [
        String(count),
        String(packed),
        String(sizesOnWire.get(`${count} cbor entries`)!),
        String(json),
        `${(json / packed).toFixed(2)}x`,
      ];
    }),
  );
}

/** The `codec` section of `npm run bench` (bench/index.ts); BENCH_TIME_MS sets `timeMs`. */
export async function run(): Promise<void> {
  const timeMs = process.env.BENCH_TIME_MS;
  await runCodecBench(timeMs === undefined ? {} : { timeMs: Number(timeMs) });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const timeArgument = process.argv.find((argument) => argument.startsWith('--time-ms='));
  await runCodecBench(timeArgument === undefined ? {} : { timeMs: Number(timeArgument.slice(10)) });
}
