/**
 * CPU and memory of processes read from /proc, so the figures cover every thread of a node
 * (libuv's fsync threads, Go's goroutines) and not just what a process reports about itself.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

/** CPU time a process has used so far, user and system, in clock ticks. */
export interface CpuTicks {
  readonly userTicks: number;
  readonly systemTicks: number;
}

/**
 * Parses the utime and stime fields of a `/proc/<pid>/stat` line. The command name (field 2)
 * may hold spaces and parentheses, so fields are counted from the last `)`.
 */
export function parseProcStat(line: string): CpuTicks {
  const close = line.lastIndexOf(')');
  if (close < 0) throw new RangeError(`Cannot parse /proc stat line: no ")" in "${line}"`);
  // After ")" come field 3 (state) onwards; utime and stime are fields 14 and 15.
  const fields = line.slice(close + 2).split(' ');
  const userTicks = Number(fields[14 - 3]);
  const systemTicks = Number(fields[15 - 3]);
  if (!Number.isFinite(userTicks) || !Number.isFinite(systemTicks)) {
    throw new RangeError(`Cannot parse /proc stat line: utime/stime missing in "${line}"`);
  }
  return { userTicks, systemTicks };
}

/**
 * Parses the resident set size (`VmRSS`) of a `/proc/<pid>/status` text, in bytes.
 * Returns undefined when the process is a zombie (no VmRSS line).
 */
export function parseRssBytes(status: string): number | undefined {
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  return match === null ? undefined : Number(match[1]) * 1024;
}

/** Reads the CPU ticks of a live process; undefined once it is gone. */
export function readCpuTicks(pid: number): CpuTicks | undefined {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Reads the resident set size of a live process in bytes; undefined once it is gone. */
export function readRssBytes(pid: number): number | undefined {
  try {
    return parseRssBytes(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Context switches of a process, summed over its threads. */
export interface ContextSwitches {
  /** The thread blocked (waited for I/O, a lock, a timer): one wake-up each. */
  readonly voluntary: number;
  /** The thread was preempted while it could still run: a sign of CPU contention. */
  readonly involuntary: number;
}

/** Parses the context switch counters of one `/proc/<pid>/task/<tid>/status` text. */
export function parseContextSwitches(status: string): ContextSwitches {
  const voluntary = /^voluntary_ctxt_switches:\s+(\d+)$/m.exec(status);
  const involuntary = /^nonvoluntary_ctxt_switches:\s+(\d+)$/m.exec(status);
  return { voluntary: Number(voluntary?.[1] ?? 0), involuntary: Number(involuntary?.[1] ?? 0) };
}

/**
 * Reads the context switches of every thread of a live process (a thread that exits takes its
 * count with it, so compare readings of long-lived processes only); undefined once it is gone.
 */
export function readContextSwitches(pid: number): ContextSwitches | undefined {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return undefined;
  }
  let voluntary = 0;
  let involuntary = 0;
  for (const task of tasks) {
    try {
      const counts = parseContextSwitches(readFileSync(`/proc/${pid}/task/${task}/status`, 'utf8'));
      voluntary += counts.voluntary;
      involuntary += counts.involuntary;
    } catch {
      // The thread exited between the listing and the read.
    }
  }
  return { voluntary, involuntary };
}

/** Busy and total jiffies of the whole machine, from the first line of /proc/stat. */
export interface MachineTicks {
  readonly busyTicks: number;
  readonly totalTicks: number;
}

/** Parses the aggregate `cpu` line of /proc/stat; idle and iowait count as not busy. */
export function parseMachineStat(text: string): MachineTicks {
  const line = text.split('\n').find((candidate) => candidate.startsWith('cpu '));
  if (line === undefined) throw new RangeError('Cannot parse /proc/stat: no aggregate cpu line');
  // user nice system idle iowait irq softirq steal (guest time is already inside user).
  const values = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const totalTicks = values.reduce((sum, value) => sum + value, 0);
  const idleTicks = (values[3] ?? 0) + (values[4] ?? 0);
  return { busyTicks: totalTicks - idleTicks, totalTicks };
}

/** Reads the machine's CPU ticks. */
export function readMachineTicks(): MachineTicks {
  return parseMachineStat(readFileSync('/proc/stat', 'utf8'));
}

let clockTicksPerSecond: number | undefined;

/** `sysconf(_SC_CLK_TCK)`: the unit of /proc CPU times (100 on every common Linux build). */
export function clockTicksPerSecondOf(): number {
  if (clockTicksPerSecond === undefined) {
    try {
      clockTicksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
    } catch {
      clockTicksPerSecond = 100;
    }
    if (!(clockTicksPerSecond > 0)) clockTicksPerSecond = 100;
  }
  return clockTicksPerSecond;
}

/** Number of CPUs the machine has online, for "% of the machine" figures. */
export function onlineCpuCount(): number {
  const text = readFileSync('/proc/stat', 'utf8');
  return text.split('\n').filter((line) => /^cpu\d+ /.test(line)).length || 1;
}

/** The kernel (system) part of the CPU used between two readings, % of one core. */
export function systemCpuPercentOf(
  before: CpuTicks | undefined,
  after: CpuTicks | undefined,
  elapsedMs: number,
): number | undefined {
  if (before === undefined || after === undefined || elapsedMs <= 0) return undefined;
  return (
    (((after.systemTicks - before.systemTicks) / clockTicksPerSecondOf()) * 100_000) / elapsedMs
  );
}

/**
 * CPU used between two readings, as a percentage of one core (200 = two cores busy).
 * Undefined when either reading is missing (the process died).
 */
export function cpuPercentOf(
  before: CpuTicks | undefined,
  after: CpuTicks | undefined,
  elapsedMs: number,
): number | undefined {
  if (before === undefined || after === undefined || elapsedMs <= 0) return undefined;
  const ticks = after.userTicks + after.systemTicks - (before.userTicks + before.systemTicks);
  return ((ticks / clockTicksPerSecondOf()) * 100_000) / elapsedMs;
}
