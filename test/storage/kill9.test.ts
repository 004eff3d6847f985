// kill -9 at random moments, 25 times over one data directory: a child process (fixtures/
// writer.ts) writes as fast as it can and reports each operation before it starts and once it
// is durable; the test SIGKILLs it, recovers the directory in-process and checks the log is
// exactly what the first N operations wrote, for an N that covers every acknowledged one, every
// payload intact, the log a clean run from the snapshot — then starts the next child on it.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PersistedState } from '../../src/storage/types.js';
import { FilePersistence } from '../../src/storage/file-persistence.js';
import { checkPayload, createTestLog, tempDir } from './helpers/entries.js';
import { readSnapshotData, writerLimits } from './fixtures/writer-protocol.js';

type Op =
  | {
      readonly kind: 'E';
      readonly first: number;
      readonly count: number;
      readonly term: number;
      readonly commit: number;
    }
  | { readonly kind: 'S'; readonly index: number; readonly term: number };

/** The log as the operations so far wrote it: terms by index, and the snapshot in force. */
interface Truth {
  terms: Map<number, number>;
  last: number;
  snapshot: { index: number; term: number };
}

function applyOp(truth: Truth, op: Op): void {
  if (op.kind === 'E') {
    for (let i = op.first; i <= truth.last; i++) truth.terms.delete(i);
    for (let i = op.first; i < op.first + op.count; i++) truth.terms.set(i, op.term);
    truth.last = op.first + op.count - 1;
  } else if (op.index >= truth.snapshot.index) {
    truth.snapshot = { index: op.index, term: op.term };
  }
}

function copyTruth(truth: Truth): Truth {
  return { terms: new Map(truth.terms), last: truth.last, snapshot: { ...truth.snapshot } };
}

function differenceFrom(state: PersistedState, truth: Truth): string | null {
  const snap = state.snapshot?.meta ?? { index: 0, term: 0 };
  if (snap.index !== truth.snapshot.index || snap.term !== truth.snapshot.term) {
    return `snapshot ${snap.index}/${snap.term}, expected ${truth.snapshot.index}/${truth.snapshot.term}`;
  }
  const { log } = state;
  if (log.firstIndex() !== snap.index + 1) return `log starts at ${log.firstIndex()}`;
  const last = Math.max(truth.last, snap.index);
  if (log.lastIndex() !== last) return `log ends at ${log.lastIndex()}, expected ${last}`;
  for (let i = snap.index + 1; i <= last; i++) {
    if (log.termAt(i) !== truth.terms.get(i))
      return `entry ${i}: term ${log.termAt(i)}, expected ${truth.terms.get(i)}`;
  }
  return null;
}

const writer = fileURLToPath(new URL('./fixtures/writer.ts', import.meta.url));
const projectRoot = fileURLToPath(new URL('../..', import.meta.url));

interface Round {
  readonly ready: { last: number; term: number; commit: number };
  readonly ops: Op[];
  readonly acked: number[];
  readonly stderr: string;
}

/** Runs one writer until `killAfterMs` after it is ready, then SIGKILLs it. */
function runWriter(dir: string, seed: number, killAfterMs: number): Promise<Round> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', writer, dir, String(seed)], {
      cwd: projectRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let ready: Round['ready'] | null = null;
    const ops: Op[] = [];
    const acked: number[] = [];
    let stderr = '';
    let buffered = '';
    let timer: NodeJS.Timeout | null = null;
    const startup = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        const f = line.split(' ');
        if (f[0] === 'R') {
          ready = { last: Number(f[1]), term: Number(f[2]), commit: Number(f[3]) };
          clearTimeout(startup);
          timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
        } else if (f[0] === 'I' && f[2] === 'E') {
          ops[Number(f[1]) - 1] = {
            kind: 'E',
            first: Number(f[3]),
            count: Number(f[4]),
            term: Number(f[5]),
            commit: Number(f[6]),
          };
        } else if (f[0] === 'I' && f[2] === 'S') {
          ops[Number(f[1]) - 1] = { kind: 'S', index: Number(f[3]), term: Number(f[4]) };
        } else if (f[0] === 'A') {
          acked.push(Number(f[1]));
        }
      }
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(startup);
      if (timer !== null) clearTimeout(timer);
      if (signal !== 'SIGKILL' || ready === null) {
        reject(
          new Error(
            `writer exited with code ${code}, signal ${signal} before being killed:\n${stderr}`,
          ),
        );
      } else {
        resolve({ ready, ops, acked, stderr });
      }
    });
  });
}

describe('kill -9', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  beforeAll(async () => {
    dir = await tempDir('phantomdb-kill9-');
  });
  afterAll(async () => {
    await dir.remove();
  });

  it(
    'loses nothing acknowledged across 25 kills at random moments',
    { timeout: 180_000 },
    async () => {
      const baseSeed = Number(process.env.KILL9_SEED ?? 20240611);
      let random = baseSeed;
      const next = (): number => (random = (random * 16807) % 2147483647) / 2147483647;
      let truth: Truth = { terms: new Map(), last: 0, snapshot: { index: 0, term: 0 } };
      let totalAcked = 0;
      let tornTails = 0;
      let snapshots = 0;

      for (let round = 1; round <= 25; round++) {
        const seed = baseSeed + round;
        const killAfterMs = 20 + Math.floor(next() * 400);
        const { ready, ops, acked } = await runWriter(dir.path, seed, killAfterMs);
        const context = `round ${round} (seed ${seed}, killed ${killAfterMs} ms after start)`;
        // The child started from what the previous round recovered.
        expect(ready.last, context).toBe(Math.max(truth.last, truth.snapshot.index));
        // The storage writes in issue order, so once operation k is acknowledged, operations
        // 1..k are all durable (acknowledgements themselves may arrive out of order: a snapshot's
        // resolves after the compaction that follows it).
        const ackedCount = Math.max(0, ...acked);
        totalAcked += ops.slice(0, ackedCount).filter((op) => op.kind === 'E').length;
        snapshots += ops.slice(0, ackedCount).filter((op) => op.kind === 'S').length;

        const storage = new FilePersistence({
          dir: dir.path,
          createLog: createTestLog,
          limits: writerLimits,
          onWarning: () => undefined,
        });
        const state = await storage.load();
        if (storage.recovery?.tornTail) tornTails++;
        await storage.close();

        // Every payload is intact and the terms never go down along the log.
        const { log } = state;
        for (let i = log.firstIndex(); i <= log.lastIndex(); i++) {
          expect(checkPayload(i, log.termAt(i), log.payloadAt(i)), context).toBeNull();
          expect(log.termAt(i), context).toBeGreaterThanOrEqual(log.termAt(i - 1));
        }
        if (state.snapshot !== null) {
          expect(readSnapshotData(state.snapshot.data), context).toEqual({
            index: state.snapshot.meta.index,
            term: state.snapshot.meta.term,
          });
        }
        // The hard state is at least the last acknowledged one.
        const lastAckedWrite = ops.slice(0, ackedCount).findLast((op) => op.kind === 'E');
        if (lastAckedWrite?.kind === 'E') {
          expect(state.hardState.term, context).toBeGreaterThanOrEqual(lastAckedWrite.term);
          expect(state.hardState.commit, context).toBeGreaterThanOrEqual(lastAckedWrite.commit);
        }

        // The log is what the first n operations wrote, for some n >= the acknowledged ones.
        let candidate = copyTruth(truth);
        for (let k = 0; k < ackedCount; k++) applyOp(candidate, ops[k]!);
        let matched: Truth | null = null;
        const tried: string[] = [];
        for (let n = ackedCount; n <= ops.length; n++) {
          const difference = differenceFrom(state, candidate);
          if (difference === null) {
            matched = candidate;
            break;
          }
          tried.push(`after ${n} of ${ops.length} operations: ${difference}`);
          if (n < ops.length) {
            candidate = copyTruth(candidate);
            applyOp(candidate, ops[n]!);
          }
        }
        expect(
          matched,
          `${context}: the recovered log matches no prefix of the operations:\n${tried.slice(0, 3).join('\n')}`,
        ).not.toBeNull();
        truth = matched!;
      }
      // The test must have exercised what it claims: many acknowledged writes and snapshots.
      expect(totalAcked).toBeGreaterThan(100);
      expect(snapshots).toBeGreaterThan(0);
      console.log(
        `kill -9: 25 rounds, ${totalAcked} acknowledged saves, ${snapshots} snapshots, ${tornTails} torn tails cut, log ends at ${truth.last}`,
      );
    },
  );
});
