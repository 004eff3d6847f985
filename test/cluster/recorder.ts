/**
 * Records what concurrent clients did to a real cluster as a history in the simulator's JSON
 * lines format (src/sim/history.ts), and checks it with the project's checker CLI
 * (`node dist/sim/check-history.js`).
 *
 * Events are appended in the order this process observes them: an invoke before its request
 * is sent, a completion after its answer arrived. That order is consistent with real time, which
 * is all the checker needs. A client whose operation ends `unknown` may still have it take
 * effect later, so (as in Jepsen) it continues under a new process name: a process never has
 * two operations open.
 */
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import {
  formatHistory,
  type HistoryEvent,
  type KvInput,
  type KvOutput,
} from '../../src/sim/history.js';
import type { KvOutcome, KvRequest } from './client.js';
import { checkHistoryPath } from './processes.js';

/** One operation as the test sees it, with times in ms since the recorder started. */
export interface OpRecord {
  /** Process name in the history (changes after an unknown outcome). */
  readonly process: string;
  /** The logical client (stable). */
  readonly client: string;
  /** Node id the request was sent to. */
  readonly node: string;
  readonly request: KvRequest;
  readonly invokedAtMs: number;
  completedAtMs: number;
  outcome: KvOutcome | undefined;
}

/** What the checker said about a history file. */
export interface CheckReport {
  readonly file: string;
  /** 0 linearizable, 1 not, 2 unreadable, 3 undecided (see src/sim/check-history.ts). */
  readonly exitCode: number;
  readonly output: string;
}

/** Counts by outcome, for the summary line. */
export interface OutcomeCounts {
  ok: number;
  fail: number;
  unknown: number;
}

/** Collects the history of one test run. */
export class HistoryRecorder {
  private readonly events: { event: HistoryEvent; t: number }[] = [];
  private readonly generations = new Map<string, number>();
  private readonly startedAt = performance.now();
  /** Every operation, in invocation order. */
  readonly ops: OpRecord[] = [];

  /** Milliseconds since the recorder started. */
  now(): number {
    return performance.now() - this.startedAt;
  }

  /** The process name `client` currently records under. */
  processOf(client: string): string {
    const generation = this.generations.get(client) ?? 0;
    return generation === 0 ? client : `${client}.${generation}`;
  }

  /** Records the invocation of `request` by `client`, sent to `node`. */
  invoke(client: string, node: string, request: KvRequest): OpRecord {
    const t = this.now();
    const record: OpRecord = {
      process: this.processOf(client),
      client,
      node,
      request,
      invokedAtMs: t,
      completedAtMs: Infinity,
      outcome: undefined,
    };
    this.ops.push(record);
    this.events.push({
      event: { type: 'invoke', process: record.process, input: toInput(request), line: 0 },
      t,
    });
    return record;
  }

  /** Records how `record` ended. */
  complete(record: OpRecord, outcome: KvOutcome): void {
    if (record.outcome !== undefined) {
      throw new Error(`Operation of ${record.process} completed twice`);
    }
    const t = this.now();
    record.completedAtMs = t;
    record.outcome = outcome;
    let event: HistoryEvent;
    if (outcome.kind === 'ok') {
      event = { type: 'ok', process: record.process, output: toOutput(outcome), line: 0 };
    } else {
      event = { type: outcome.kind === 'fail' ? 'fail' : 'info', process: record.process, line: 0 };
    }
    this.events.push({ event, t });
    if (outcome.kind === 'unknown') {
      this.generations.set(record.client, (this.generations.get(record.client) ?? 0) + 1);
    }
  }

  /** Counts of completed operations by outcome (open ones count as unknown). */
  counts(filter: (op: OpRecord) => boolean = () => true): OutcomeCounts {
    const counts: OutcomeCounts = { ok: 0, fail: 0, unknown: 0 };
    for (const op of this.ops) {
      if (!filter(op)) continue;
      counts[op.outcome?.kind ?? 'unknown']++;
    }
    return counts;
  }

  /** The history in the simulator's JSON lines format. */
  format(): string {
    return formatHistory(this.events.map(({ event, t }) => ({ event, t: Math.round(t) })));
  }

  /** Writes the history to `file` and runs the checker CLI on it. */
  async writeAndCheck(file: string, timeoutMs = 60_000): Promise<CheckReport> {
    await writeFile(file, this.format());
    return runCheckHistory(file, timeoutMs);
  }

  /** Operations that did not end 'ok', counted by outcome and status or error code. */
  failures(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const op of this.ops) {
      const outcome = op.outcome;
      if (outcome?.kind === 'ok') continue;
      const label =
        outcome === undefined
          ? 'open'
          : `${outcome.kind} ${outcome.status === 0 ? outcome.code : `${outcome.status} ${outcome.code}`}`;
      counts.set(label, (counts.get(label) ?? 0) + 1);
    }
    return counts;
  }

  /** A one-line summary: operations by kind and outcome. */
  summary(): string {
    const parts: string[] = [];
    for (const f of ['put', 'cas', 'get', 'delete'] as const) {
      const counts = this.counts((op) => kindOf(op.request) === f);
      const total = counts.ok + counts.fail + counts.unknown;
      if (total > 0) {
        parts.push(
          `${f} ${total} (ok ${counts.ok}, fail ${counts.fail}, unknown ${counts.unknown})`,
        );
      }
    }
    const failures = [...this.failures()].map(([label, count]) => `${label} x${count}`);
    return `${this.ops.length} ops: ${parts.join('; ')}${failures.length === 0 ? '' : ` [not ok: ${failures.join(', ')}]`}`;
  }
}

/** 'cas' for a conditional put, else the request's `f`. */
export function kindOf(request: KvRequest): 'put' | 'cas' | 'get' | 'delete' {
  if (request.f === 'put' && (request.prevValue !== undefined || request.prevExist !== undefined)) {
    return 'cas';
  }
  return request.f;
}

function toInput(request: KvRequest): KvInput {
  return request;
}

function toOutput(outcome: KvOutcome & { kind: 'ok' }): KvOutput {
  if (outcome.result !== 'ok') return { kind: 'failed', reason: outcome.result };
  return outcome.value === undefined ? { kind: 'ok' } : { kind: 'ok', value: outcome.value };
}

/** Runs `node dist/sim/check-history.js --timeout-ms N FILE` and captures its verdict. */
export async function runCheckHistory(file: string, timeoutMs = 60_000): Promise<CheckReport> {
  const child = spawn(
    process.execPath,
    [checkHistoryPath, '--timeout-ms', String(timeoutMs), file],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exitCode = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve(code ?? -1));
  });
  return { file, exitCode, output: output.trimEnd() };
}
