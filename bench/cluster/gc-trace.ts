/**
 * Garbage collections of our nodes during a phase, read from `node --trace-gc-nvp` lines in
 * the members' logs (`--gc`). A young-generation collection stops the node's main thread and,
 * on a two-core machine, its parallel helpers take the cores the other members need: the tail
 * of latency at low concurrency follows these pauses, and how many bytes each one copies sets
 * how long they are.
 *
 * V8 stamps each line with milliseconds since its isolate started, 50–120 ms after the spawn
 * on a busy machine. So that the measured window lines up with the trace, each node also runs
 * {@link v8StartProbeImport}, which prints when that was on the monotonic clock.
 */
import { markdownTable } from './report.js';
import type { PhaseResult } from './report.js';

/** One collection, as V8 traced it. */
export interface GcEvent {
  /** Milliseconds since the isolate started. */
  readonly atMs: number;
  /**
   * V8's name for it: `s` scavenge and `mmc` minor mark-compact (`--minor-mc`), both of the
   * young generation; `mc` mark-compact of the whole heap.
   */
  readonly kind: string;
  readonly pauseMs: number;
  /** Bytes copied within the young generation (0 for a full collection). */
  readonly survivedBytes: number;
  /** Bytes moved to the old generation. */
  readonly promotedBytes: number;
  /** Bytes allocated since the previous collection. */
  readonly allocatedBytes: number;
}

/** One member's collections over a window. */
export interface GcFigures {
  readonly youngPerSecond: number;
  readonly youngPauseMeanMs: number;
  readonly youngPauseMaxMs: number;
  /** Mean bytes a young collection copied (kept young plus promoted): its pause grows with it. */
  readonly copiedBytesPerYoung: number;
  readonly markCompacts: number;
  /** Share of the window the main thread spent stopped for any collection. */
  readonly pauseShare: number;
}

/** V8's names of the young-generation collections. */
export const youngKinds: ReadonlySet<string> = new Set(['s', 'mmc']);

const lineStart = /^\[\d+:0x[0-9a-f]+\]\s+([\d.]+) ms: pause=([\d.]+) /;

/** The traced collections in `text` (other lines are skipped). */
export function parseGcTrace(text: string): GcEvent[] {
  const events: GcEvent[] = [];
  for (const line of text.split('\n')) {
    const start = lineStart.exec(line);
    if (start === null) continue;
    const field = (name: string): string | undefined =>
      new RegExp(` ${name}=(\\S+)`).exec(line)?.[1];
    events.push({
      atMs: Number(start[1]),
      pauseMs: Number(start[2]),
      kind: field('gc') ?? '?',
      survivedBytes: Number(field('new_space_survived') ?? 0),
      promotedBytes: Number(field('promoted') ?? 0),
      allocatedBytes: Number(field('allocated') ?? 0),
    });
  }
  return events;
}

const v8StartLabel = 'phantomdb-bench-v8-start-us=';

/**
 * A `node --import` value (a data: URL, so no file need exist where the node runs) that prints
 * one line to stdout: when V8 started, in microseconds of the monotonic clock the benchmark's
 * windows use (`process.hrtime`). `performance.nodeTiming.v8Start` is that moment on the
 * process's own performance clock.
 */
export const v8StartProbeImport = `data:text/javascript,${encodeURIComponent(
  `process.stdout.write('${v8StartLabel}' + Math.round(Number(process.hrtime.bigint() / 1000n) -` +
    ` (performance.now() - performance.nodeTiming.v8Start) * 1000) + '\\n');`,
)}`;

/**
 * The V8 start printed by {@link v8StartProbeImport} into a log; undefined when absent, or when
 * the log holds more than one process's (whose traces would then be mixed).
 */
export function v8StartOf(text: string): number | undefined {
  const at = text.indexOf(v8StartLabel);
  if (at < 0 || text.includes(v8StartLabel, at + 1)) return undefined;
  const value = Number.parseInt(text.slice(at + v8StartLabel.length), 10);
  return Number.isFinite(value) ? value : undefined;
}

/** GC figures as results.json files of the first `--gc` runs stored them. */
interface FirstGcFigures {
  readonly scavengesPerSecond: number;
  readonly scavengePauseMeanMs: number;
  readonly scavengePauseMaxMs: number;
  readonly copiedBytesPerScavenge: number;
  readonly markCompacts: number;
  readonly pauseShare: number;
}

/** `phase` with GC figures in today's fields, for redrawing a stored run (`--render-from`). */
export function withCurrentGcFields(phase: PhaseResult): PhaseResult {
  return {
    ...phase,
    members: phase.members.map((member) => {
      const gc = member.gc as GcFigures | FirstGcFigures | undefined;
      if (gc === undefined || !('scavengesPerSecond' in gc)) return member;
      return {
        ...member,
        gc: {
          youngPerSecond: gc.scavengesPerSecond,
          youngPauseMeanMs: gc.scavengePauseMeanMs,
          youngPauseMaxMs: gc.scavengePauseMaxMs,
          copiedBytesPerYoung: gc.copiedBytesPerScavenge,
          markCompacts: gc.markCompacts,
          pauseShare: gc.pauseShare,
        },
      };
    }),
  };
}

/** Figures of the events in [fromMs, toMs) (isolate milliseconds); zeros when none fell in. */
export function gcFiguresOf(events: readonly GcEvent[], fromMs: number, toMs: number): GcFigures {
  const inWindow = events.filter((event) => event.atMs >= fromMs && event.atMs < toMs);
  const young = inWindow.filter((event) => youngKinds.has(event.kind));
  const seconds = (toMs - fromMs) / 1000;
  const sum = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0);
  return {
    youngPerSecond: young.length / seconds,
    youngPauseMeanMs: young.length === 0 ? 0 : sum(young.map((e) => e.pauseMs)) / young.length,
    youngPauseMaxMs: Math.max(0, ...young.map((e) => e.pauseMs)),
    copiedBytesPerYoung:
      young.length === 0
        ? 0
        : sum(young.map((e) => e.survivedBytes + e.promotedBytes)) / young.length,
    markCompacts: inWindow.filter((event) => event.kind === 'mc').length,
    pauseShare: sum(inWindow.map((e) => e.pauseMs)) / (toMs - fromMs),
  };
}

/** The GC table of the report, or undefined when no phase has GC figures. */
export function gcTable(phases: readonly PhaseResult[]): string | undefined {
  const rows = phases.flatMap((phase) =>
    phase.members
      .filter((member) => member.gc !== undefined)
      .map((member) => {
        const gc = member.gc!;
        return [
          String(phase.connections),
          phase.system ?? phase.protocol,
          String(phase.round),
          `${member.id}${member.isLeader ? ' (leader)' : ''}`,
          gc.youngPerSecond.toFixed(1),
          gc.youngPauseMeanMs.toFixed(2),
          gc.youngPauseMaxMs.toFixed(2),
          (gc.copiedBytesPerYoung / 1024).toFixed(0),
          String(gc.markCompacts),
          `${(gc.pauseShare * 100).toFixed(1)}%`,
        ];
      }),
  );
  if (rows.length === 0) return undefined;
  return markdownTable(
    [
      'conns',
      'system',
      'round',
      'member',
      'young GCs/s',
      'young pause mean ms',
      'max ms',
      'KiB copied per young GC',
      'mark-compacts',
      'paused % of window',
    ],
    rows,
  );
}
