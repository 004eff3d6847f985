/**
 * Rendering of cluster benchmark results: the Markdown tables (per phase, and ours/etcd ratios)
 * and a hand-written SVG chart of throughput and p99 latency per concurrency.
 */
import type { PutProtocol } from './clusters.js';
import type { GcFigures } from './gc-trace.js';

/** CPU and memory of one cluster member during a measured window. */
export interface MemberFigures {
  readonly id: string;
  readonly isLeader: boolean;
  /** Percent of one core, over the window, all threads. */
  readonly cpuPercent: number | undefined;
  /** The part of `cpuPercent` spent in the kernel (syscalls: sockets, loopback TCP, files). */
  readonly systemCpuPercent: number | undefined;
  /** Largest resident set size sampled during the window. */
  readonly rssBytesMax: number | undefined;
  /** Its garbage collections in the window (only with `--gc`). */
  readonly gc?: GcFigures;
}

/** Everything measured in one phase: one system at one concurrency. */
export interface PhaseResult {
  readonly protocol: PutProtocol;
  /** 'phantomdb', 'etcd' or 'baseline' (absent in results written before baselines existed). */
  readonly system?: string;
  readonly label: string;
  readonly connections: number;
  /** Which round of the run this phase belongs to, from 1. */
  readonly round: number;
  readonly windowMs: number;
  readonly ops: number;
  readonly opsPerSecond: number;
  readonly latencyMs: {
    readonly p50: number;
    readonly p90: number;
    readonly p99: number;
    readonly p999: number;
    readonly max: number;
    readonly mean: number;
  };
  readonly errors: Readonly<Record<string, number>>;
  readonly firstError?: string;
  /** Completed measured answers per second of the window. */
  readonly timeline: readonly number[];
  readonly leaderId: string;
  /** Set when the leader or its term changed during the phase. */
  readonly leaderChange?: string;
  /** Acknowledged writes per leader WAL fsync; undefined when the node exposes no fsync metric. */
  readonly writesPerFsync: number | undefined;
  readonly leaderFsyncsPerSecond: number | undefined;
  readonly leaderFsyncMeanMs: number | undefined;
  /** Fraction of the window during which the leader had an fsync in flight (sum / window). */
  readonly leaderFsyncBusy: number | undefined;
  readonly fsyncMetric: string | undefined;
  readonly members: readonly MemberFigures[];
  /** CPU of the load generator process(es), percent of one core. */
  readonly generatorCpuPercent: number | undefined;
  /** CPU of the other (idle) cluster during this phase, percent of one core, all members. */
  readonly idleClusterCpuPercent: number | undefined;
  /** Whole machine, percent of all cores. */
  readonly machineBusyPercent: number;
  /**
   * CPU used by processes outside this benchmark (machine busy time minus the members of both
   * clusters, the generators and the harness), percent of one core: other work on a shared
   * machine that competed with the measurement.
   */
  readonly outsideCpuPercent: number;
  /**
   * Voluntary context switches (wake-ups after blocking) of all members together, per
   * acknowledged write: how many times a thread had to sleep and be woken to get one write
   * through. Involuntary ones (preemptions) measure CPU contention.
   */
  readonly wakeupsPerWrite: number | undefined;
  readonly preemptionsPerWrite: number | undefined;
  /** WAL fsyncs per second of each member (followers too), by member id. */
  readonly memberFsyncsPerSecond: Readonly<Record<string, number>>;
}

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

function fixed(value: number | undefined, digits: number): string {
  return value === undefined || !Number.isFinite(value) ? 'n/a' : value.toFixed(digits);
}

/** Formats a latency in ms with 3 significant digits. */
export function formatMs(value: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
}

function membersColumn(
  members: readonly MemberFigures[],
  pick: (member: MemberFigures) => string,
): string {
  const ordered = [...members].sort((a, b) => Number(b.isLeader) - Number(a.isLeader));
  return ordered.map(pick).join(' / ');
}

function errorsColumn(phase: PhaseResult): string {
  const entries = Object.entries(phase.errors);
  if (entries.length === 0) return '0';
  return entries.map(([kind, count]) => `${count} ${kind}`).join(', ');
}

/** The system a phase measured: its `system`, or its protocol for older results. */
export function systemOf(phase: PhaseResult): string {
  return phase.system ?? phase.protocol;
}

/**
 * One phase per system and concurrency: the round whose throughput is the median (the lower
 * middle one for an even count), so that every figure in a row comes from the same phase.
 */
export function medianPhases(phases: readonly PhaseResult[]): PhaseResult[] {
  const groups = new Map<string, PhaseResult[]>();
  for (const phase of phases) {
    const key = `${systemOf(phase)} ${phase.connections}`;
    groups.set(key, [...(groups.get(key) ?? []), phase]);
  }
  return [...groups.values()].map((group) => {
    const sorted = [...group].sort((a, b) => a.opsPerSecond - b.opsPerSecond);
    return sorted[Math.floor((sorted.length - 1) / 2)]!;
  });
}

/**
 * The per-phase table, one row per phase given. With `allRounds`, a column shows the spread of
 * throughput over the rounds of the same system and concurrency.
 */
export function phaseTable(
  phases: readonly PhaseResult[],
  allRounds?: readonly PhaseResult[],
): string {
  const roundsLike = (phase: PhaseResult): PhaseResult[] =>
    (allRounds ?? []).filter(
      (other) => systemOf(other) === systemOf(phase) && other.connections === phase.connections,
    );
  const spread = (phase: PhaseResult): string => {
    const same = roundsLike(phase);
    if (same.length < 2) return '';
    const rates = same.map((other) => other.opsPerSecond);
    return `${integer.format(Math.min(...rates))}–${integer.format(Math.max(...rates))} (${same.length})`;
  };
  // The round shown is picked by throughput; at low concurrency its p99 alone can mislead,
  // since the tail varies more from round to round than the rate does.
  const p99Spread = (phase: PhaseResult): string => {
    const same = roundsLike(phase);
    if (same.length < 2) return '';
    const p99s = same.map((other) => other.latencyMs.p99);
    return `${formatMs(Math.min(...p99s))}–${formatMs(Math.max(...p99s))}`;
  };
  const withSpread = (allRounds ?? []).length > phases.length;
  const header = [
    'conns',
    'system',
    'ops/s',
    ...(withSpread ? ['ops/s over rounds'] : []),
    'p50 ms',
    'p99 ms',
    ...(withSpread ? ['p99 ms over rounds'] : []),
    'max ms',
    'errors',
    'writes/fsync',
    'leader fsyncs/s',
    'fsync mean ms',
    'wake-ups/write',
    'CPU % (leader / followers)',
    'of which kernel %',
    'RSS MB (leader / followers)',
    'generator CPU %',
    'machine busy %',
    'outside CPU %',
  ];
  const rows = [...phases]
    .sort(
      (a, b) =>
        a.connections - b.connections ||
        systemOf(a).localeCompare(systemOf(b)) ||
        a.round - b.round,
    )
    .map((phase) => [
      String(phase.connections),
      systemOf(phase) +
        (withSpread || (allRounds ?? phases).every((p) => p.round === 1)
          ? ''
          : ` #${phase.round}`) +
        (phase.leaderChange === undefined ? '' : ' ⚠'),
      integer.format(phase.opsPerSecond),
      ...(withSpread ? [spread(phase)] : []),
      formatMs(phase.latencyMs.p50),
      formatMs(phase.latencyMs.p99),
      ...(withSpread ? [p99Spread(phase)] : []),
      formatMs(phase.latencyMs.max),
      errorsColumn(phase),
      fixed(phase.writesPerFsync, 1),
      fixed(phase.leaderFsyncsPerSecond, 0),
      fixed(phase.leaderFsyncMeanMs, 2),
      fixed(phase.wakeupsPerWrite, 1),
      membersColumn(phase.members, (member) => fixed(member.cpuPercent, 0)),
      membersColumn(phase.members, (member) => fixed(member.systemCpuPercent, 0)),
      membersColumn(phase.members, (member) =>
        fixed(member.rssBytesMax === undefined ? undefined : member.rssBytesMax / 2 ** 20, 0),
      ),
      fixed(phase.generatorCpuPercent, 0),
      fixed(phase.machineBusyPercent, 0),
      fixed(phase.outsideCpuPercent, 0),
    ]);
  return markdownTable(header, rows);
}

/**
 * One row per concurrency measured on both systems: ours / etcd, or ours / `against` (e.g.
 * 'baseline', our node from another build).
 */
export function ratioTable(phases: readonly PhaseResult[], against = 'etcd'): string | undefined {
  const rows: string[][] = [];
  for (const connections of [...new Set(phases.map((phase) => phase.connections))].sort(
    (a, b) => a - b,
  )) {
    const ours = phases.find((p) => p.connections === connections && systemOf(p) === 'phantomdb');
    const etcd = phases.find((p) => p.connections === connections && systemOf(p) === against);
    if (ours === undefined || etcd === undefined) continue;
    rows.push([
      String(connections),
      integer.format(ours.opsPerSecond),
      integer.format(etcd.opsPerSecond),
      `${(ours.opsPerSecond / etcd.opsPerSecond).toFixed(2)}×`,
      formatMs(ours.latencyMs.p99),
      formatMs(etcd.latencyMs.p99),
      `${(ours.latencyMs.p99 / etcd.latencyMs.p99).toFixed(2)}×`,
    ]);
  }
  if (rows.length === 0) return undefined;
  return markdownTable(
    [
      'conns',
      'ours ops/s',
      `${against} ops/s`,
      `throughput ours/${against}`,
      'ours p99 ms',
      `${against} p99 ms`,
      `p99 ours/${against}`,
    ],
    rows,
  );
}

/** A Markdown table with a header row. */
export function markdownTable(header: readonly string[], rows: readonly string[][]): string {
  const escape = (cell: string): string => cell.replaceAll('|', '\\|');
  const lines = [
    `| ${header.map(escape).join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...rows.map((row) => `| ${row.map(escape).join(' | ')} |`),
  ];
  return lines.join('\n');
}

const colors: Readonly<Record<string, string>> = {
  phantomdb: '#1f77b4',
  etcd: '#ff7f0e',
  baseline: '#7f7f7f',
};

function escapeXml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

/** A round upper bound for a linear axis (1, 2, 2.5 or 5 times a power of ten). */
export function niceCeiling(value: number): number {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

interface Panel {
  readonly title: string;
  readonly yLabel: string;
  readonly log: boolean;
  readonly value: (phase: PhaseResult) => number;
}

/**
 * The chart: throughput (linear axis) and p99 latency (log axis, as latencies span decades)
 * against concurrency, one line per system.
 */
export function renderChart(phases: readonly PhaseResult[], title: string): string {
  const levels = [...new Set(phases.map((phase) => phase.connections))].sort((a, b) => a - b);
  const systems = ['phantomdb', 'etcd', 'baseline'].filter((system) =>
    phases.some((phase) => systemOf(phase) === system),
  );
  const panels: Panel[] = [
    { title: 'Throughput', yLabel: 'PUT/s', log: false, value: (p) => p.opsPerSecond },
    { title: 'p99 latency', yLabel: 'ms (log scale)', log: true, value: (p) => p.latencyMs.p99 },
  ];
  const width = 1000;
  const height = 420;
  const panelWidth = 360;
  const panelHeight = 280;
  const top = 70;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="16">${escapeXml(title)}</text>`,
  ];
  panels.forEach((panel, panelIndex) => {
    const left = 90 + panelIndex * (panelWidth + 130);
    const bottom = top + panelHeight;
    const values = phases.map(panel.value).filter((v) => Number.isFinite(v) && v > 0);
    const xOf = (i: number): number =>
      left + (levels.length === 1 ? panelWidth / 2 : (i * panelWidth) / (levels.length - 1));
    let yOf: (v: number) => number;
    const ticks: number[] = [];
    if (panel.log) {
      const low = 10 ** Math.floor(Math.log10(Math.min(...values, 1)));
      const high = 10 ** Math.ceil(Math.log10(Math.max(...values, 10)));
      yOf = (v) =>
        bottom -
        ((Math.log10(v) - Math.log10(low)) / (Math.log10(high) - Math.log10(low))) * panelHeight;
      for (let tick = low; tick <= high * 1.0001; tick *= 10) ticks.push(tick);
    } else {
      const high = niceCeiling(Math.max(...values, 1));
      yOf = (v) => bottom - (v / high) * panelHeight;
      for (let i = 0; i <= 5; i++) ticks.push((high * i) / 5);
    }
    parts.push(
      `<text x="${left + panelWidth / 2}" y="${top - 16}" text-anchor="middle" font-size="14">${panel.title}</text>`,
      `<line x1="${left}" y1="${bottom}" x2="${left + panelWidth}" y2="${bottom}" stroke="black"/>`,
      `<line x1="${left}" y1="${top}" x2="${left}" y2="${bottom}" stroke="black"/>`,
      `<text x="${left - 60}" y="${top + panelHeight / 2}" text-anchor="middle" transform="rotate(-90 ${left - 60} ${top + panelHeight / 2})">${panel.yLabel}</text>`,
      `<text x="${left + panelWidth / 2}" y="${bottom + 36}" text-anchor="middle">concurrent connections</text>`,
    );
    for (const tick of ticks) {
      const y = yOf(tick).toFixed(1);
      const label = tick >= 1000 ? integer.format(tick) : String(Number(tick.toPrecision(3)));
      parts.push(
        `<line x1="${left}" y1="${y}" x2="${left + panelWidth}" y2="${y}" stroke="#ddd"/>`,
        `<text x="${left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${label}</text>`,
      );
    }
    levels.forEach((level, i) => {
      parts.push(
        `<text x="${xOf(i).toFixed(1)}" y="${bottom + 16}" text-anchor="middle">${level}</text>`,
      );
    });
    for (const [systemIndex, system] of systems.entries()) {
      // Labels of the second line go below its points, so close values do not overprint.
      const labelDy = systemIndex === 0 ? -6 : 14;
      const points = levels
        .map((level, i) => {
          const phase = phases.find((p) => p.connections === level && systemOf(p) === system);
          const value = phase === undefined ? NaN : panel.value(phase);
          return Number.isFinite(value) && value > 0
            ? { x: xOf(i), y: yOf(value), value }
            : undefined;
        })
        .filter((point) => point !== undefined);
      if (points.length > 1) {
        parts.push(
          `<polyline fill="none" stroke="${colors[system]}" stroke-width="2" points="${points
            .map((p) => `${p.x.toFixed(1)},${p.y.toFixed(1)}`)
            .join(' ')}"/>`,
        );
      }
      for (const point of points) {
        const label = panel.log ? formatMs(point.value) : integer.format(point.value);
        parts.push(
          `<circle cx="${point.x.toFixed(1)}" cy="${point.y.toFixed(1)}" r="4" fill="${colors[system]}"/>`,
          `<text x="${(point.x + 6).toFixed(1)}" y="${(point.y + labelDy).toFixed(1)}" fill="${colors[system]}" font-size="10">${label}</text>`,
        );
      }
    }
  });
  systems.forEach((system, i) => {
    const label = phases.find((phase) => systemOf(phase) === system)?.label ?? system;
    const x = 90 + i * 260;
    parts.push(
      `<rect x="${x}" y="${height - 30}" width="14" height="14" fill="${colors[system]}"/>`,
      `<text x="${x + 20}" y="${height - 19}">${escapeXml(label)}</text>`,
    );
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
