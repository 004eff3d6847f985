// Shared fixtures of the node tests: free ports, temp dirs, HTTP calls, node processes started
// from dist/ in their own process groups (killed at the end, also when a test fails), and
// in-process nodes for fast tests of routing and negotiation.
import type { NodeStatus } from '../../src/node/api.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decode as decodeCbor, encode as encodeCbor } from 'cbor-x';
import { pino } from 'pino';
import { parseNodeConfig, type NodeConfig } from '../../src/node/config.js';
import { PhantomNode, type PhantomNodeOptions } from '../../src/node/node.js';

/** The repository root. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** The built node entry point the tests run. */
export const mainScript = path.join(repoRoot, 'dist/node/main.js');
/** The built cluster launcher. */
export const clusterScript = path.join(repoRoot, 'dist/node/cluster.js');

/** Fails with a clear message when dist/ was not built. */
export function requireBuild(): void {
  if (!existsSync(mainScript) || !existsSync(clusterScript)) {
    throw new Error(`${mainScript} is missing: run \`npm run build\` first (npm test does)`);
  }
}

/** A port the OS says is free now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Whether something listens on 127.0.0.1:`port`. */
export async function portInUse(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(true));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(false)));
  });
}

const tempDirs = new Set<string>();

/** A fresh temp dir, removed by {@link cleanUp}. */
export async function tempDir(prefix = 'phantomdb-node-'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

/** An HTTP answer, body as bytes plus helpers. */
export interface Answer {
  readonly status: number;
  readonly headers: Headers;
  readonly bytes: Uint8Array;
  readonly text: string;
  /** The body parsed as JSON or CBOR, by its Content-Type. */
  json<T = Record<string, unknown>>(): T;
}

/** Options of {@link call}. */
export interface CallOptions {
  readonly body?: Uint8Array | string;
  readonly headers?: Record<string, string>;
  readonly timeoutMs?: number;
}

/** Sends one request; never throws on an HTTP error status. */
export async function call(
  method: string,
  url: string,
  options: CallOptions = {},
): Promise<Answer> {
  const response = await fetch(url, {
    method,
    headers: options.headers ?? {},
    ...(options.body === undefined ? {} : { body: options.body }),
    signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
  });
  const bytes = new Uint8Array(await response.arrayBuffer());
  const text = new TextDecoder().decode(bytes);
  return {
    status: response.status,
    headers: response.headers,
    bytes,
    text,
    json<T>(): T {
      const type = response.headers.get('content-type') ?? '';
      return (type.startsWith('application/cbor') ? decodeCbor(bytes) : JSON.parse(text)) as T;
    },
  };
}

/** CBOR bytes of `value`. */
export function cbor(value: unknown): Uint8Array {
  return encodeCbor(value);
}

/** Polls `probe` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 10_000,
  intervalMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: Error | null = null;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error instanceof Error ? error : new Error(String(error));
    }
    if (Date.now() > deadline) {
      throw new Error(
        `Timed out after ${timeoutMs} ms waiting for ${what}${lastError === null ? '' : ` (last error: ${lastError.message})`}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** `/v1/status` of a node: the API's own type, read back from JSON. */
export type StatusBody = NodeStatus;

/** Reads a node's status. */
export async function statusOf(url: string): Promise<StatusBody> {
  const answer = await call('GET', `${url}/v1/status`, { timeoutMs: 2_000 });
  if (answer.status !== 200) throw new Error(`status of ${url}: ${answer.status} ${answer.text}`);
  return answer.json<StatusBody>();
}

// -------------------------------------------------------------------------------------------
// Node processes

const processes = new Set<NodeProcess>();

/** A node started as `node dist/node/main.js ...` in its own process group. */
export class NodeProcess {
  child: ChildProcess | null = null;
  /** Exit code and signal of the last run, once it ended. */
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }> = Promise.resolve({
    code: null,
    signal: null,
  });

  constructor(
    readonly id: string,
    readonly url: string,
    /** Flags of the next start. */
    public args: string[],
    readonly logFile: string,
    readonly cwd: string = repoRoot,
    readonly env: Readonly<Record<string, string>> = {},
  ) {}

  /** Spawns the process (logs appended to `logFile`). */
  start(): this {
    const fd = openSync(this.logFile, 'a');
    const child = spawn(process.execPath, [mainScript, ...this.args], {
      cwd: this.cwd,
      detached: true,
      stdio: ['ignore', fd, fd],
      env: { ...process.env, ...this.env },
    });
    closeSync(fd);
    this.child = child;
    processes.add(this);
    this.exit = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        if (this.child === child) this.child = null;
        resolve({ code, signal });
      });
    });
    return this;
  }

  /** Waits until `/healthz` answers 200. */
  async ready(timeoutMs = 15_000): Promise<this> {
    await waitFor(
      `${this.id} to answer /healthz`,
      async () => {
        if (this.child === null) throw new Error(`${this.id} exited; log:\n${this.log()}`);
        const answer = await call('GET', `${this.url}/healthz`, { timeoutMs: 1_000 });
        return answer.status === 200 ? true : undefined;
      },
      timeoutMs,
    );
    return this;
  }

  /** Sends `signal` to the whole process group. */
  signal(signal: NodeJS.Signals): void {
    const pid = this.child?.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {
      // The group is gone already.
    }
  }

  /** kill -9 of the group; resolves once the process is gone. */
  async kill(): Promise<void> {
    if (this.child === null) return;
    this.signal('SIGKILL');
    await this.exit;
  }

  /** The log so far. */
  log(): string {
    try {
      return readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  /** The log lines, parsed (lines that are not JSON are skipped). */
  logLines(): Record<string, unknown>[] {
    const lines: Record<string, unknown>[] = [];
    for (const line of this.log().split('\n')) {
      if (line.trim() === '') continue;
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // Not a log line (e.g. a Node warning on stderr).
      }
    }
    return lines;
  }
}

/** Options of {@link startCluster}. */
export interface ClusterOptions {
  /** Extra flags for every node. */
  readonly args?: readonly string[];
  /** Ids of members to start with --join instead of in the initial membership. */
  readonly joiners?: number;
}

/** A cluster of node processes on free ports with temp data dirs. */
export interface Cluster {
  readonly dir: string;
  readonly nodes: NodeProcess[];
  /** The node the others agree is leader (waits for one). */
  leader(timeoutMs?: number): Promise<NodeProcess>;
  byId(id: string): NodeProcess;
}

/** Starts `size` nodes forming one cluster, plus `joiners` nodes started with --join. */
export async function startCluster(size: number, options: ClusterOptions = {}): Promise<Cluster> {
  requireBuild();
  const dir = await tempDir('phantomdb-cluster-');
  const total = size + (options.joiners ?? 0);
  const ports: number[] = [];
  while (ports.length < total) {
    const port = await freePort();
    if (!ports.includes(port)) ports.push(port);
  }
  const specs = ports.map((port, k) => ({ id: `n${k + 1}`, url: `http://127.0.0.1:${port}` }));
  const peers = specs
    .slice(0, size)
    .map((spec) => `${spec.id}=${spec.url}`)
    .join(',');
  const nodes = specs.map((spec, k) => {
    const joining = k >= size;
    const args = [
      '--id',
      spec.id,
      '--listen',
      spec.url.slice('http://'.length),
      '--data-dir',
      path.join(dir, spec.id),
      ...(joining ? ['--join'] : ['--peers', peers]),
      ...(options.args ?? []),
    ];
    return new NodeProcess(spec.id, spec.url, args, path.join(dir, `${spec.id}.log`));
  });
  for (const node of nodes) node.start();
  await Promise.all(nodes.map((node) => node.ready()));
  const cluster: Cluster = {
    dir,
    nodes,
    byId(id) {
      const node = nodes.find((candidate) => candidate.id === id);
      if (node === undefined) throw new Error(`no node ${id}`);
      return node;
    },
    async leader(timeoutMs = 15_000) {
      const id = await waitFor(
        'one leader every running member agrees on',
        async () => {
          const running = nodes.filter((node) => node.child !== null);
          const statuses = await Promise.all(running.map((node) => statusOf(node.url)));
          const voters = statuses.filter((status) => status.members.length > 0);
          const leader = voters[0]?.leader ?? '';
          if (leader === '' || !voters.every((status) => status.leader === leader)) {
            return undefined;
          }
          return leader;
        },
        timeoutMs,
      );
      return cluster.byId(id);
    },
  };
  return cluster;
}

/** Kills every process group started here and removes every temp dir. */
export async function cleanUp(): Promise<void> {
  await Promise.all([...processes].map((node) => node.kill()));
  processes.clear();
  await Promise.all(
    [...tempDirs].map((dir) => rm(dir, { recursive: true, force: true, maxRetries: 3 })),
  );
  tempDirs.clear();
}

// Last resort when the test process itself goes away: no node outlives it.
process.once('exit', () => {
  for (const node of processes) node.signal('SIGKILL');
});

// -------------------------------------------------------------------------------------------
// In-process nodes

/** Starts a node in this process on a free port with a temp data dir (silent logs). */
export async function startInProcessNode(
  args: readonly string[] = [],
  options: PhantomNodeOptions & { dataDir?: string } = {},
): Promise<{ node: PhantomNode; url: string; config: NodeConfig; dataDir: string }> {
  const port = await freePort();
  const dataDir = options.dataDir ?? path.join(await tempDir(), 'n1');
  const parsed = parseNodeConfig(
    ['--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, ...args],
    {},
  );
  if (parsed.help) throw new Error('unexpected --help');
  const node = await PhantomNode.start(parsed.config, {
    logger: pino({ level: 'silent' }),
    ...options,
  });
  return { node, url: node.url, config: parsed.config, dataDir };
}
