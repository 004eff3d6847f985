/**
 * Node processes for the cluster tests: spawning `node dist/node/main.js` in its own process
 * group, signalling it (kill -9, SIGSTOP, SIGCONT), restarting it on the same port and data
 * directory, and making sure nothing outlives the test run.
 *
 * Cleanup has three layers, because a leaked node keeps a port and a core busy on a shared
 * 2-core machine: the tests' afterEach/afterAll call {@link NodeProcess.kill}; an `exit`
 * handler of the test process kills every group still registered; and a small reaper process,
 * started once per test process and fed the group ids over a pipe, kills them when that pipe
 * closes — which also happens when the test process itself is killed with SIGKILL (vitest
 * does that to a worker that hangs), where no handler of ours runs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';

/** The project root (two levels above this file). */
export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The node's entry point, built by `npm run build`. */
export const nodeMainPath = path.join(projectRoot, 'dist', 'node', 'main.js');

/** The linearizability checker's CLI, built by `npm run build`. */
export const checkHistoryPath = path.join(projectRoot, 'dist', 'sim', 'check-history.js');

/** A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') {
    throw new Error('Cannot find a free port: the server has no TCP address');
  }
  return address.port;
}

// ---------------------------------------------------------------------------------------------
// Process-group registry, exit handler and reaper

const liveGroups = new Set<number>();
const liveDirs = new Set<string>();
let reaper: ChildProcess | undefined;
let exitHandlerInstalled = false;

// The reaper reads "+pid", "-pid", "+dir path", "-dir path" lines; at end of input it kills the
// groups it still holds and removes the directories. It ignores SIGINT/SIGTERM so a Ctrl-C on
// the test run reaches it only through its stdin closing, after the test process is gone.
const reaperSource = `
const fs = require('node:fs');
const groups = new Set();
const dirs = new Set();
let buffered = '';
process.on('SIGINT', () => {});
process.on('SIGTERM', () => {});
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  buffered += chunk;
  let newline;
  while ((newline = buffered.indexOf('\\n')) >= 0) {
    const line = buffered.slice(0, newline);
    buffered = buffered.slice(newline + 1);
    if (line.startsWith('+dir ')) dirs.add(line.slice(5));
    else if (line.startsWith('-dir ')) dirs.delete(line.slice(5));
    else if (line.startsWith('+')) groups.add(Number(line.slice(1)));
    else if (line.startsWith('-')) groups.delete(Number(line.slice(1)));
  }
});
process.stdin.on('end', () => {
  for (const pgid of groups) {
    try { process.kill(-pgid, 'SIGKILL'); } catch {}
  }
  for (const dir of dirs) {
    try { fs.rmSync(dir, { recursive: true, force: true }); } catch {}
  }
  process.exit(0);
});
`;

function tellReaper(line: string): void {
  if (reaper === undefined) {
    reaper = spawn(process.execPath, ['-e', reaperSource], {
      detached: true,
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    reaper.on('error', () => {
      reaper = undefined;
    });
    // Neither the reaper nor its pipe may keep the test process alive.
    reaper.unref();
    (reaper.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  }
  reaper.stdin?.write(line + '\n');
}

function installExitHandler(): void {
  if (exitHandlerInstalled) return;
  exitHandlerInstalled = true;
  process.on('exit', () => {
    for (const pgid of liveGroups) killGroup(pgid, 'SIGKILL');
  });
}

function killGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw error;
  }
}

/** Registers a temp directory with the reaper, so it is removed even if the run is killed. */
export function registerTempDir(dir: string): void {
  liveDirs.add(dir);
  tellReaper(`+dir ${dir}`);
}

/** Removes a temp directory and forgets it. */
export async function removeTempDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  liveDirs.delete(dir);
  tellReaper(`-dir ${dir}`);
}

/** Kills every node process group this test process still has running (SIGKILL). */
export function killAllNodeProcesses(): void {
  for (const pgid of [...liveGroups]) {
    killGroup(pgid, 'SIGKILL');
    liveGroups.delete(pgid);
    tellReaper(`-${pgid}`);
  }
}

// ---------------------------------------------------------------------------------------------
// One node process

/** How to start one node; `args` are the node's flags. */
export interface NodeProcessOptions {
  readonly id: string;
  /** Real port the node listens on (client API and peer RPCs). */
  readonly port: number;
  readonly dataDir: string;
  /** Where stdout and stderr of every incarnation are appended. */
  readonly logFile: string;
  /** Flags after `--id/--listen/--data-dir` (e.g. `--peers`, `--join`, `--snapshot-entries`). */
  readonly args: readonly string[];
  /** Script to run instead of dist/node/main.js (the harness's own tests use a stand-in). */
  readonly main?: string;
}

/** Where a node process is in its life. */
export type NodeRunState = 'stopped' | 'running' | 'paused';

/**
 * One node: a process (or none, between a kill and a restart) with a fixed id, port, data
 * directory and log file. Restarting reuses all four, like a machine that reboots.
 */
export class NodeProcess {
  readonly id: string;
  readonly port: number;
  readonly dataDir: string;
  readonly logFile: string;
  /** The node's client URL: its real port, never a proxy. */
  readonly url: string;
  private args: readonly string[];
  private readonly main: string;
  private child: ChildProcess | undefined;
  private log: WriteStream | undefined;
  private runState: NodeRunState = 'stopped';
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private incarnation = 0;

  constructor(options: NodeProcessOptions) {
    this.id = options.id;
    this.port = options.port;
    this.dataDir = options.dataDir;
    this.logFile = options.logFile;
    this.args = options.args;
    this.main = options.main ?? nodeMainPath;
    this.url = `http://127.0.0.1:${options.port}`;
  }

  /** Whether the process runs, is stopped by SIGSTOP, or does not exist. */
  get state(): NodeRunState {
    return this.runState;
  }

  /** Process id of the current incarnation (undefined when stopped). */
  get pid(): number | undefined {
    return this.runState === 'stopped' ? undefined : this.child?.pid;
  }

  /** How the last incarnation ended, if it did on its own or by a signal. */
  get lastExit(): { code: number | null; signal: NodeJS.Signals | null } | undefined {
    return this.exitInfo;
  }

  /** Replaces the flags used by the next {@link start} (e.g. drop `--join` after joining). */
  setArgs(args: readonly string[]): void {
    this.args = args;
  }

  /** Spawns the process in its own group; resolves once `GET /healthz` answers 200. */
  async start(readyTimeoutMs = 15_000): Promise<void> {
    if (this.runState !== 'stopped') {
      throw new Error(`Cannot start ${this.id}: it is ${this.runState}`);
    }
    installExitHandler();
    await this.closeLog();
    this.incarnation++;
    this.exitInfo = undefined;
    const log = createWriteStream(this.logFile, { flags: 'a' });
    this.log = log;
    log.write(`--- ${this.id} incarnation ${this.incarnation} at ${new Date().toISOString()}\n`);
    const argv = [
      this.main,
      '--id',
      this.id,
      '--listen',
      `127.0.0.1:${this.port}`,
      '--data-dir',
      this.dataDir,
      ...this.args,
    ];
    await mkdir(path.dirname(this.dataDir), { recursive: true });
    const child = spawn(process.execPath, argv, {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: path.dirname(this.dataDir),
    });
    this.child = child;
    this.runState = 'running';
    const pid = child.pid;
    if (pid !== undefined) {
      liveGroups.add(pid);
      tellReaper(`+${pid}`);
    }
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    child.on('exit', (code, signal) => {
      if (this.child === child) {
        this.exitInfo = { code, signal };
        this.runState = 'stopped';
      }
      if (pid !== undefined) {
        liveGroups.delete(pid);
        tellReaper(`-${pid}`);
      }
    });
    // 'close' comes after the pipes are drained, so this line ends the incarnation's output.
    child.on('close', (code, signal) => {
      if (log.writable) {
        log.write(`--- ${this.id} exited: code ${String(code)}, signal ${String(signal)}\n`);
      }
    });
    child.on('error', (error) => {
      log.write(`--- ${this.id} spawn error: ${error.message}\n`);
      if (this.child === child && child.pid === undefined) this.runState = 'stopped';
    });
    await this.waitHealthy(readyTimeoutMs);
  }

  /** Polls `GET /healthz` until 200; fails early if the process exits. */
  async waitHealthy(timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.runState === 'stopped') {
        throw new Error(
          `Node ${this.id} exited before it was healthy (${JSON.stringify(this.exitInfo)}); log tail:\n${await this.logTail()}`,
        );
      }
      try {
        const response = await request(`${this.url}/healthz`, {
          signal: AbortSignal.timeout(1_000),
        });
        await response.body.dump();
        if (response.statusCode === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        throw new Error(
          `Node ${this.id} not healthy after ${timeoutMs} ms; log tail:\n${await this.logTail()}`,
        );
      }
      await sleep(50);
    }
  }

  /** kill -9 of the whole process group; resolves once the process is gone. */
  async kill(): Promise<void> {
    await this.signalAndWait('SIGKILL');
  }

  /** Graceful stop (SIGTERM); resolves with the exit code once the process is gone. */
  async terminate(timeoutMs = 10_000): Promise<number | null> {
    await this.signalAndWait('SIGTERM', timeoutMs);
    return this.exitInfo?.code ?? null;
  }

  /** SIGSTOP: the process freezes, sockets stay open, the kernel keeps accepting connections. */
  pause(): void {
    this.requireAlive('pause');
    killGroup(this.child!.pid!, 'SIGSTOP');
    this.runState = 'paused';
  }

  /** SIGCONT after {@link pause}. */
  resume(): void {
    this.requireAlive('resume');
    killGroup(this.child!.pid!, 'SIGCONT');
    this.runState = 'running';
  }

  /** kill -9 (if running) then start again on the same port and data directory. */
  async restart(readyTimeoutMs = 15_000): Promise<void> {
    if (this.runState !== 'stopped') await this.kill();
    await this.start(readyTimeoutMs);
  }

  /** What the current (or last) incarnation wrote so far. */
  async currentLog(): Promise<string> {
    let text: string;
    try {
      text = await readFile(this.logFile, 'utf8');
    } catch {
      return '';
    }
    const marker = `--- ${this.id} incarnation ${this.incarnation} at `;
    const start = text.lastIndexOf(marker);
    return start < 0 ? text : text.slice(start);
  }

  /** The last `bytes` of the log file, for failure messages. */
  async logTail(bytes = 4_000): Promise<string> {
    try {
      const text = await readFile(this.logFile, 'utf8');
      return text.slice(-bytes);
    } catch {
      return '(no log)';
    }
  }

  private requireAlive(what: string): void {
    if (this.runState === 'stopped' || this.child?.pid === undefined) {
      throw new Error(`Cannot ${what} ${this.id}: it is not running`);
    }
  }

  private async signalAndWait(signal: NodeJS.Signals, timeoutMs = 10_000): Promise<void> {
    const child = this.child;
    if (this.runState === 'stopped' || child?.pid === undefined) return;
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    // A stopped process only acts on SIGTERM once continued; SIGKILL needs no help.
    if (this.runState === 'paused' && signal !== 'SIGKILL') killGroup(child.pid, 'SIGCONT');
    killGroup(child.pid, signal);
    const timer = new Promise<'timeout'>((resolve) =>
      setTimeout(() => resolve('timeout'), timeoutMs).unref(),
    );
    if ((await Promise.race([exited, timer])) === 'timeout') {
      killGroup(child.pid, 'SIGKILL');
      await exited;
    }
    this.runState = 'stopped';
    // Let the pipes drain into the log before anyone reads it.
    await new Promise((resolve) => setImmediate(resolve));
  }

  /** Closes the log stream (after the process is gone). */
  async closeLog(): Promise<void> {
    const log = this.log;
    this.log = undefined;
    if (log === undefined) return;
    await new Promise<void>((resolve) => log.end(() => resolve()));
  }
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
