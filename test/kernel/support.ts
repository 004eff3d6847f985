// Shared by the kernel tests: every log implementation under test, and a deliberately simple
// model of the Raft log (an array of entry objects) that the implementations are checked against.
import { Buffer } from 'node:buffer';
import type { EntryBatch } from '../../src/raft/batch.js';
import { EntryBatchBuilder, payloadOf } from '../../src/raft/batch.js';
import type { LogStore, MatchResult } from '../../src/raft/types.js';
import type { CreateLogOptions, PackedLogLike } from '../../src/kernel/index.js';
import { createLog } from '../../src/kernel/index.js';

export type TestLog = LogStore & PackedLogLike & { dispose?: () => void };

/** One implementation of the log: a name and a factory taking sizing options. */
export interface LogImpl {
  readonly name: string;
  readonly create: (options?: CreateLogOptions) => TestLog;
}

function impl(name: string, base: CreateLogOptions): LogImpl {
  return { name, create: (options = {}) => createLog({ ...base, ...options }) };
}

/**
 * Every implementation: the TS twin, and each WASM build with the conflict scan and the append
 * commit forced into WASM (thresholds 0) or left at their default dispatch (JS below them).
 */
export const logImpls: readonly LogImpl[] = [
  impl('ts', { kernel: 'ts' }),
  impl('wasm-debug', { build: 'debug', conflictScanThreshold: 0, commitThreshold: 0 }),
  impl('wasm-release', { build: 'release' }),
  impl('wasm-release-forced', { build: 'release', conflictScanThreshold: 0, commitThreshold: 0 }),
  impl('wasm-scalar', { build: 'scalar', conflictScanThreshold: 0, commitThreshold: 0 }),
];

/** Disposes a WASM log (returns its instance to the pool); no-op for the twin. */
export function disposeLog(log: TestLog): void {
  log.dispose?.();
}

/**
 * One entry of a batch to build. The payload is described, not held, so that fast-check
 * counterexamples print small and shrink fast: `size` bytes of a pattern set by `seed`.
 */
export interface EntrySpec {
  readonly term: number;
  readonly type: 0 | 1 | 2;
  readonly size: number;
  readonly seed: number;
}

/** A payload of `size` bytes with a pattern depending on `seed`. */
export function patternPayload(size: number, seed: number): Uint8Array {
  const payload = new Uint8Array(size);
  for (let i = 0; i < size; i++) payload[i] = (i * 31 + seed) & 255;
  return payload;
}

const payloads = new Map<string, Uint8Array>();

/** The payload an {@link EntrySpec} describes (memoized; do not modify). */
export function payloadOfSpec(spec: EntrySpec): Uint8Array {
  const key = `${spec.size}/${spec.seed}`;
  let payload = payloads.get(key);
  if (payload === undefined) {
    payload = patternPayload(spec.size, spec.seed);
    if (payloads.size > 4096) payloads.clear();
    payloads.set(key, payload);
  }
  return payload;
}

/** A batch of the given entries starting at `firstIndex`. */
export function batchOf(firstIndex: number, entries: readonly EntrySpec[]): EntryBatch {
  const builder = new EntryBatchBuilder(firstIndex, entries.length + 1);
  for (const entry of entries) builder.add(entry.term, entry.type, payloadOfSpec(entry));
  return builder.finish();
}

/** The model: entries as objects, first index, and the term of the compaction point. */
export class ModelLog {
  first = 1;
  compactTerm = 0;
  entries: EntrySpec[] = [];

  get last(): number {
    return this.first + this.entries.length - 1;
  }

  termAt(index: number): number {
    if (index === this.first - 1) return this.compactTerm;
    if (index < this.first || index > this.last) throw new RangeError('out of range');
    return this.entries[index - this.first]!.term;
  }

  has(index: number): boolean {
    return index >= this.first && index <= this.last;
  }

  append(firstIndex: number, entries: readonly EntrySpec[]): void {
    if (firstIndex !== this.last + 1) throw new RangeError('append: wrong first index');
    this.entries.push(...entries);
  }

  matchAndAppend(prevIndex: number, prevTerm: number, entries: readonly EntrySpec[]): MatchResult {
    if (prevIndex < this.first - 1) throw new RangeError('match: below compaction point');
    if (prevIndex > this.last) return { ok: false, hintIndex: this.last + 1, hintTerm: 0 };
    const local = this.termAt(prevIndex);
    if (local !== prevTerm) {
      let hint = prevIndex;
      while (hint - 1 >= this.first - 1 && this.termAt(hint - 1) === local) hint--;
      return { ok: false, hintIndex: hint, hintTerm: local };
    }
    for (let k = 0; k < entries.length; k++) {
      const index = prevIndex + 1 + k;
      if (index > this.last || this.termAt(index) !== entries[k]!.term) {
        this.entries.length = index - this.first;
        this.entries.push(...entries.slice(k));
        return { ok: true, lastNewIndex: prevIndex + entries.length, firstWrittenIndex: index };
      }
    }
    return { ok: true, lastNewIndex: prevIndex + entries.length, firstWrittenIndex: 0 };
  }

  truncateFrom(index: number): void {
    if (index < this.first || index > this.last + 1) throw new RangeError('truncate: range');
    this.entries.length = index - this.first;
  }

  compactTo(index: number): void {
    if (index > this.last) throw new RangeError('compact: past last');
    if (index < this.first) return;
    this.compactTerm = this.termAt(index);
    this.entries = this.entries.slice(index - this.first + 1);
    this.first = index + 1;
  }

  reset(index: number, term: number): void {
    if ((index === 0) !== (term === 0)) throw new RangeError('reset: term 0 only at 0');
    this.first = index + 1;
    this.compactTerm = term;
    this.entries = [];
  }

  /** Entries from..to-1, the longest prefix within maxBytes but at least one. */
  slice(from: number, to: number, maxBytes: number): { firstIndex: number; entries: EntrySpec[] } {
    if (from < this.first || to > this.last + 1 || from > to) throw new RangeError('slice: range');
    const out: EntrySpec[] = [];
    let bytes = 0;
    for (let index = from; index < to; index++) {
      const entry = this.entries[index - this.first]!;
      if (out.length > 0 && bytes + entry.size > maxBytes) break;
      bytes += entry.size;
      out.push(entry);
    }
    return { firstIndex: from, entries: out };
  }

  payloadBytes(): number {
    return this.entries.reduce((sum, entry) => sum + entry.size, 0);
  }
}

/** Bytes as hex: compares natively and prints readably. */
export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** A batch as plain data (payloads as hex), for deep equality. */
export function plainBatch(batch: EntryBatch): {
  firstIndex: number;
  entries: { term: number; type: number; payload: string }[];
} {
  const entries = [];
  for (let k = 0; k < batch.count; k++) {
    entries.push({
      term: batch.terms[k]!,
      type: batch.types[k]!,
      payload: hex(payloadOf(batch, k)),
    });
  }
  return { firstIndex: batch.firstIndex, entries };
}

/** The model's entries `from..to-1` as plain data, for deep equality with {@link plainBatch}. */
export function plainEntries(
  firstIndex: number,
  entries: readonly EntrySpec[],
): ReturnType<typeof plainBatch> {
  return {
    firstIndex,
    entries: entries.map((entry) => ({
      term: entry.term,
      type: entry.type,
      payload: hex(payloadOfSpec(entry)),
    })),
  };
}

/** Throws unless `log` holds exactly what `model` holds. */
export function expectSameContent(log: TestLog, model: ModelLog, label: string): void {
  const fail = (what: string): never => {
    throw new Error(`${label}: ${what}`);
  };
  if (log.firstIndex() !== model.first) fail(`firstIndex ${log.firstIndex()} != ${model.first}`);
  if (log.lastIndex() !== model.last) fail(`lastIndex ${log.lastIndex()} != ${model.last}`);
  if (log.termAt(model.first - 1) !== model.compactTerm) fail('compaction term differs');
  if (log.payloadBytes() !== model.payloadBytes()) fail('payloadBytes differs');
  for (let index = model.first; index <= model.last; index++) {
    const entry = model.entries[index - model.first]!;
    if (log.termAt(index) !== entry.term) fail(`term of ${index}`);
    if (log.typeAt(index) !== entry.type) fail(`type of ${index}`);
    if (Buffer.compare(log.payloadAt(index), payloadOfSpec(entry)) !== 0)
      fail(`payload of ${index}`);
  }
  log.checkInvariants();
}
