// Helpers for storage tests: deterministic, self-checking payloads and log read-outs.
import { crc32 } from 'node:zlib';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';
import { EntryBatchBuilder, EntryType } from '../../../src/raft/batch.js';
import type { EntryBatch } from '../../../src/raft/batch.js';
import type { LogStore } from '../../../src/raft/types.js';
import { createLog } from '../../../src/kernel/index.js';
import { TsLog } from '../../../src/kernel/reference.js';

/** A fresh WASM log (the debug build, with assertions) for recovery to replay into. */
export function createTestLog(): LogStore {
  return createLog({ build: 'debug' });
}

/** A fresh TypeScript-twin log: for tests that make thousands of logs. */
export function createTwinLog(): LogStore {
  return new TsLog();
}

/**
 * The payload of entry (index, term): `size` bytes (>= 16) starting with index, term and a
 * CRC-32 of the rest, the rest derived from (index, term). Any bit flip or mix-up shows.
 */
export function payloadFor(index: number, term: number, size = 100): Uint8Array {
  const bytes = new Uint8Array(Math.max(16, size));
  const view = new DataView(bytes.buffer);
  view.setUint32(0, index % 2 ** 32, true);
  view.setUint32(4, term, true);
  let x = (index * 2654435761 + term * 40503) >>> 0;
  for (let i = 12; i < bytes.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    bytes[i] = x >>> 24;
  }
  view.setUint32(8, crc32(bytes.subarray(12)), true);
  return bytes;
}

/** Null when `payload` is exactly `payloadFor(index, term, payload.length)`, else what is wrong. */
export function checkPayload(index: number, term: number, payload: Uint8Array): string | null {
  const expected = payloadFor(index, term, payload.length);
  if (payload.length < 16) return `entry ${index}: payload of ${payload.length} bytes`;
  for (let i = 0; i < expected.length; i++) {
    if (payload[i] !== expected[i])
      return `entry ${index} (term ${term}): payload differs at byte ${i}`;
  }
  return null;
}

/** A batch of entries `firstIndex ..` with the given terms and `payloadFor` payloads. */
export function makeBatch(firstIndex: number, terms: readonly number[], size = 100): EntryBatch {
  const builder = new EntryBatchBuilder(firstIndex, terms.length, terms.length * size);
  terms.forEach((term, k) =>
    builder.add(term, EntryType.Normal, payloadFor(firstIndex + k, term, size)),
  );
  return builder.finish();
}

/** `count` entries from `firstIndex`, all of `term`. */
export function runOf(firstIndex: number, count: number, term: number, size = 100): EntryBatch {
  return makeBatch(firstIndex, new Array<number>(count).fill(term), size);
}

/** The terms of `log`'s entries, index `firstIndex()` first. */
export function termsOf(log: LogStore): number[] {
  const terms: number[] = [];
  for (let i = log.firstIndex(); i <= log.lastIndex(); i++) terms.push(log.termAt(i));
  return terms;
}

/** Throws when an entry's payload is not `payloadFor(index, term)` of its own index and term. */
export function expectIntact(log: LogStore): void {
  for (let i = log.firstIndex(); i <= log.lastIndex(); i++) {
    const problem = checkPayload(i, log.termAt(i), log.payloadAt(i));
    if (problem !== null) throw new Error(problem);
  }
}

/** A temporary directory, and a function that removes it. */
export async function tempDir(prefix = 'phantomdb-storage-'): Promise<{
  readonly path: string;
  readonly remove: () => Promise<void>;
}> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

/** A fresh {@link tempDir} for each test of the enclosing `describe`, removed after it. */
export function useTempDir(prefix: string): { readonly path: string } {
  let dir: Awaited<ReturnType<typeof tempDir>> | undefined;
  beforeEach(async () => {
    dir = await tempDir(prefix);
  });
  afterEach(async () => {
    await dir?.remove();
    dir = undefined;
  });
  return {
    get path(): string {
      if (dir === undefined) throw new Error('useTempDir: its path exists only while a test runs');
      return dir.path;
    },
  };
}
