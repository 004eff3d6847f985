/**
 * Child processes of the benchmark, each in its own process group so that stopping it stops
 * everything it started, and a registry that kills whatever is left when the benchmark ends,
 * fails, or is interrupted with Ctrl-C.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { openSync, closeSync, rmSync, writeFileSync } from 'node:fs';
import { setPriority } from 'node:os';
import { createServer } from 'node:net';
import type { AddressInfo, Server } from 'node:net';

/** A started server process: its pid is also its process group id. */
export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Where its stdout and stderr go. */
  readonly logPath: string;
  /** Resolves with the exit code (or the signal name) once the process has exited. */
  readonly exited: Promise<number | string>;
  /** True once the process has exited. */
  hasExited(): boolean;
}

const live = new Set<ManagedProcess>();
let niceValue = 0;

/** Sets the priority that {@link applyPriority} gives to processes started from now on. */
export function setChildPriority(nice: number): void {
  niceValue = nice;
}

/**
 * Gives a child started in its own session the benchmark's priority. Where the kernel groups
 * sessions for scheduling (`sched_autogroup`), CPU is shared between sessions first and a
 * process's nice only counts inside its own, so the session's autogroup nice is set too.
 * Best effort: a failure leaves the default priority.
 */
export function applyPriority(pid: number): void {
  if (niceValue === 0) return;
  try {
    setPriority(pid, niceValue);
  } catch {
    // Not permitted (a negative nice needs root): keep the default.
  }
  try {
    writeFileSync(`/proc/${pid}/autogroup`, String(niceValue));
  } catch {
    // No autogroup support, or not permitted.
  }
}
let handlersInstalled = false;

const tempDirs = new Set<string>();

/** Registers a temporary directory to remove if the benchmark is interrupted or fails. */
export function registerTempDir(dir: string): void {
  tempDirs.add(dir);
}

/** Removes a temporary directory (once its processes are stopped) and forgets it. */
export function removeTempDir(dir: string): void {
  tempDirs.delete(dir);
  rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}

/**
 * Kills every process group still registered, at once, with SIGKILL, then removes the
 * registered temporary directories. Synchronous, so that it can run in an 'exit' handler.
 */
export function killAllNow(): void {
  for (const managed of live) {
    try {
      process.kill(-managed.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  live.clear();
  for (const dir of tempDirs) {
    try {
      // A process killed a moment ago may still be closing files: retry a few times.
      rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
    } catch {
      // Left behind under the OS temp dir; nothing else to do on the way out.
    }
  }
  tempDirs.clear();
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  // 'exit' runs on every way out of the benchmark process (error, process.exit, end of work),
  // so no node or etcd outlives it.
  process.on('exit', killAllNow);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      console.error(`\nbench cluster: ${signal}, stopping every process it started`);
      killAllNow();
      process.exit(signal === 'SIGINT' ? 130 : 143);
    });
  }
}

/**
 * Starts `command args` detached in a new process group, stdout and stderr written to
 * `logPath`. The process is registered for cleanup until {@link stopProcess} has seen it exit.
 */
export function startProcess(
  name: string,
  command: string,
  args: readonly string[],
  options: { readonly logPath: string; readonly env?: NodeJS.ProcessEnv; readonly cwd?: string },
): ManagedProcess {
  installHandlers();
  // A fresh log: one process's output per file (a reused --out folder must not mix runs).
  const log = openSync(options.logPath, 'w');
  let child: ChildProcess;
  try {
    child = spawn(command, args, {
      detached: true,
      stdio: ['ignore', log, log],
      env: options.env ?? process.env,
      cwd: options.cwd,
    });
  } finally {
    closeSync(log);
  }
  if (child.pid === undefined) {
    throw new Error(`Cannot start ${name}: spawn of ${command} gave no pid`);
  }
  applyPriority(child.pid);
  let exitedFlag = false;
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      exitedFlag = true;
      resolve(code ?? signal ?? 'unknown');
    });
    child.once('error', (error) => {
      exitedFlag = true;
      resolve(`spawn error: ${error.message}`);
    });
  });
  const managed: ManagedProcess = {
    name,
    pid: child.pid,
    child,
    logPath: options.logPath,
    exited,
    hasExited: () => exitedFlag,
  };
  live.add(managed);
  return managed;
}

/**
 * Stops a process group: SIGTERM (a node shuts down gracefully and writes its CPU profile),
 * then SIGKILL if it has not exited within `graceMs`. Resolves with how it exited.
 */
export async function stopProcess(
  managed: ManagedProcess,
  graceMs = 10_000,
): Promise<number | string> {
  if (!managed.hasExited()) {
    try {
      process.kill(-managed.pid, 'SIGTERM');
    } catch {
      // Already gone.
    }
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), graceMs);
    });
    const outcome = await Promise.race([managed.exited, timedOut]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      try {
        process.kill(-managed.pid, 'SIGKILL');
      } catch {
        // Gone in the meantime.
      }
      await managed.exited;
      live.delete(managed);
      return `killed after ${graceMs} ms without exiting on SIGTERM`;
    }
  }
  // The leader of the group exited; anything it left in its group goes too.
  try {
    process.kill(-managed.pid, 'SIGKILL');
  } catch {
    // Nothing left.
  }
  live.delete(managed);
  return managed.exited;
}

/**
 * Asks the OS for `count` distinct free TCP ports on 127.0.0.1, holding all of them open until
 * every one is known so that no two are the same.
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', resolve);
      });
    }
    return servers.map((server) => (server.address() as AddressInfo).port);
  } finally {
    await Promise.all(
      servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))),
    );
  }
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `probe` every `intervalMs` until it returns a value other than undefined, or throws
 * once `timeoutMs` has passed, with the last failure in the message.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
  intervalMs = 100,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let lastProblem = 'no answer yet';
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastProblem = (error as Error).message;
    }
    if (performance.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what} (${lastProblem})`);
    }
    await sleep(intervalMs);
  }
}
