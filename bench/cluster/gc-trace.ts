/**
 * Garbage collections of our nodes during a phase, read from `node --trace-gc-nvp` lines in
 * the members' logs (`--gc`). A scavenge stops the node's main thread and, on a two-core
 * machine, its parallel helpers take the cores the other members need: the tail of latency at
 * low concurrency follows these pauses, and how many bytes each scavenge copies sets how long
 * they are.
 *
 * V8 stamps each line with milliseconds since the isolate started, a few tens of milliseconds
 * after the process was spawned; the window is placed by the spawn time, so its edges are
 * that much late.
 */
import { markdownTable } from './report.js';
import type { PhaseResult } from './report.js';

/** One collection, as V8 traced it. */
export interface GcEvent {
  /** Milliseconds since the isolate started. */
  readonly atMs: number;
  /** `s` scavenge, `mc` mark-compact, `mmc` memory-reducing mark-compact, ... */
  readonly kind: string;
  readonly pauseMs: number;
  /** Bytes the scavenge copied within the young generation (0 for others). */
  readonly survivedBytes: number;
  /** Bytes moved to the old generation. */
  readonly promotedBytes: number;
}

/** One member's collections over a window. */
export interface GcFigures {
  readonly scavengesPerSecond: number;
  readonly scavengePauseMeanMs: number;
  readonly scavengePauseMaxMs: number;
  /** Mean bytes a scavenge copied (kept young plus promoted): what its pause grows with. */
  readonly copiedBytesPerScavenge: number;
  readonly markCompacts: number;
  /** Share of the window the main thread spent stopped for any collection. */
  readonly pauseShare: number;
}

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
    });
  }
  return events;
}

/** Figures of the events in [fromMs, toMs) (isolate milliseconds), or undefined if none. */
export function gcFiguresOf(
  events: readonly GcEvent[],
  fromMs: number,
  toMs: number,
): GcFigures | undefined {
  const inWindow = events.filter((event) => event.atMs >= fromMs && event.atMs < toMs);
  if (inWindow.length === 0) return undefined;
  const scavenges = inWindow.filter((event) => event.kind === 's');
  const seconds = (toMs - fromMs) / 1000;
  const sum = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0);
  return {
    scavengesPerSecond: scavenges.length / seconds,
    scavengePauseMeanMs:
      scavenges.length === 0 ? 0 : sum(scavenges.map((e) => e.pauseMs)) / scavenges.length,
    scavengePauseMaxMs: Math.max(0, ...scavenges.map((e) => e.pauseMs)),
    copiedBytesPerScavenge:
      scavenges.length === 0
        ? 0
        : sum(scavenges.map((e) => e.survivedBytes + e.promotedBytes)) / scavenges.length,
    markCompacts: inWindow.filter((event) => event.kind.endsWith('mc')).length,
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
          gc.scavengesPerSecond.toFixed(1),
          gc.scavengePauseMeanMs.toFixed(2),
          gc.scavengePauseMaxMs.toFixed(2),
          (gc.copiedBytesPerScavenge / 1024).toFixed(0),
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
      'scavenges/s',
      'scavenge pause mean ms',
      'max ms',
      'KB copied per scavenge',
      'mark-compacts',
      'paused % of window',
    ],
    rows,
  );
}
