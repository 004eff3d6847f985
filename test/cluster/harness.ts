/**
 * A cluster of real node processes on loopback, for fault tests: N `node dist/node/main.js`
 * processes, each in its own process group with a temp data dir and a log file, wired through
 * one TCP proxy per directed link ({@link LinkNetwork}) so the test can cut links, partition
 * the cluster and heal it. Clients talk to the nodes' real ports.
 *
 * @example
 * ```ts
 * const cluster = await Cluster.start({ size: 3 });
 * try {
 *   const leader = await cluster.waitForLeader();
 *   cluster.network.isolate(leader);
 *   const next = await cluster.waitForLeader({ among: cluster.ids().filter((id) => id !== leader) });
 *   cluster.network.heal();
 * } finally {
 *   await cluster.teardown();
 * }
 * ```
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { LinkNetwork, type LinkProxy } from './proxy.js';
import {
  NodeProcess,
  freePort,
  nodeMainPath,
  registerTempDir,
  removeTempDir,
  sleep,
} from './processes.js';
import type { Target } from './workload.js';

/** `GET /v1/status` as the contract defines it (extra fields are allowed). */
export interface NodeStatus {
  readonly id: string;
  readonly state: string;
  readonly term: number;
  readonly leader: string;
  readonly commitIndex: number;
  readonly lastApplied: number;
  readonly members: readonly {
    readonly id: string;
    readonly url: string;
    readonly role?: string;
  }[];
}

/** A raw HTTP answer. */
export interface HttpAnswer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly bytes: Uint8Array;
  readonly text: string;
}

/** Options of {@link Cluster.start}. */
export interface ClusterOptions {
  /** Nodes started as the initial members (n1..nN). */
  readonly size: number;
  /** `--snapshot-entries` of every node. */
  readonly snapshotEntries?: number;
  /** `--tick-ms` of every node (default: the node's own default). */
  readonly tickMs?: number;
  /** `--log-level` of every node (default 'info'). */
  readonly logLevel?: string;
  /** More flags for every node. */
  readonly extraArgs?: readonly string[];
  /** Label of the temp dir (default 'cluster'). */
  readonly name?: string;
}

/** Thrown when the node binary is missing: the tests need `npm run build` first. */
export class NotBuiltError extends Error {
  override readonly name = 'NotBuiltError';
}

/** A running cluster; always end it with {@link teardown}. */
export class Cluster {
  /** The network between the nodes. */
  readonly network = new LinkNetwork();
  private readonly nodes = new Map<string, NodeProcess>();
  private readonly ports = new Map<string, number>();
  private tornDown = false;

  private constructor(
    /** The temp dir holding every node's data dir and log. */
    readonly dir: string,
    private readonly options: ClusterOptions,
  ) {}

  /** Starts `size` nodes wired through link proxies and waits until each is healthy. */
  static async start(options: ClusterOptions): Promise<Cluster> {
    if (!existsSync(nodeMainPath)) {
      throw new NotBuiltError(`${nodeMainPath} does not exist: run \`npm run build\` first`);
    }
    const dir = await mkdtemp(path.join(os.tmpdir(), `phantomdb-${options.name ?? 'cluster'}-`));
    registerTempDir(dir);
    const cluster = new Cluster(dir, options);
    try {
      const ids = Array.from({ length: options.size }, (_, k) => `n${k + 1}`);
      for (const id of ids) await cluster.allocate(id);
      for (const id of ids) {
        cluster.createNode(id, ['--peers', cluster.peersFlag(id, ids)]);
      }
      await Promise.all(ids.map((id) => cluster.node(id).start()));
    } catch (error) {
      await cluster.teardown();
      throw error;
    }
    return cluster;
  }

  /** Ids of every node this cluster has created, in creation order. */
  ids(): string[] {
    return [...this.nodes.keys()];
  }

  /** The node `id`; throws for an unknown id. */
  node(id: string): NodeProcess {
    const node = this.nodes.get(id);
    if (node === undefined) throw new RangeError(`Unknown node ${id}`);
    return node;
  }

  /** Nodes whose process is running (not stopped, not paused). */
  running(): NodeProcess[] {
    return [...this.nodes.values()].filter((node) => node.state === 'running');
  }

  /** Client targets for the given ids (default: every node). */
  targets(ids: readonly string[] = this.ids()): Target[] {
    return ids.map((id) => ({ id, url: this.node(id).url }));
  }

  /**
   * The `--peers` value for `id`: itself by its real URL, every other member by the proxy of
   * the link `id -> other`.
   */
  peersFlag(id: string, members: readonly string[]): string {
    return members
      .map((member) =>
        member === id
          ? `${member}=http://127.0.0.1:${this.portOf(member)}`
          : `${member}=${this.network.link(id, member).url}`,
      )
      .join(',');
  }

  /**
   * Creates a node that is not a member yet, started with `--join` and `--peers` naming only
   * itself, and reachable by the others through an inbound proxy (its URL in the replicated
   * membership is shared by every node). Returns the URL to give `POST /v1/members`.
   */
  async addJoiningNode(id: string, extraArgs: readonly string[] = []): Promise<string> {
    await this.allocate(id);
    const inbound: LinkProxy = await this.network.addInbound(id, this.portOf(id));
    this.createNode(id, [
      '--join',
      '--peers',
      `${id}=http://127.0.0.1:${this.portOf(id)}`,
      ...extraArgs,
    ]);
    await this.node(id).start();
    return inbound.url;
  }

  /** `GET /v1/status` of `id`; undefined when it does not answer 200 in time. */
  async status(id: string, timeoutMs = 1_000): Promise<NodeStatus | undefined> {
    const node = this.node(id);
    if (node.state !== 'running') return undefined;
    try {
      const response = await request(`${node.url}/v1/status`, {
        signal: AbortSignal.timeout(timeoutMs),
      });
      const text = await response.body.text();
      if (response.statusCode !== 200) return undefined;
      return JSON.parse(text) as NodeStatus;
    } catch {
      return undefined;
    }
  }

  /** Statuses of the given nodes (default: all running), unanswered ones left out. */
  async statuses(
    ids: readonly string[] = this.running().map((node) => node.id),
  ): Promise<NodeStatus[]> {
    const all = await Promise.all(ids.map((id) => this.status(id)));
    return all.filter((status): status is NodeStatus => status !== undefined);
  }

  /**
   * Waits until one node of `among` (default: all running) says it is the leader and a
   * majority of `among` name it as leader in the same term. Returns its id.
   */
  async waitForLeader(
    options: { among?: readonly string[]; timeoutMs?: number; notIn?: readonly string[] } = {},
  ): Promise<string> {
    const deadline = Date.now() + (options.timeoutMs ?? 15_000);
    for (;;) {
      const among = options.among ?? this.running().map((node) => node.id);
      const last = await this.statuses(among);
      const leaders = last.filter(
        (status) => status.state === 'leader' && !(options.notIn ?? []).includes(status.id),
      );
      for (const leader of leaders) {
        const agreeing = last.filter(
          (status) => status.leader === leader.id && status.term === leader.term,
        ).length;
        if (agreeing > among.length / 2) return leader.id;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `No leader agreed on by a majority of [${among.join(', ')}] in time; statuses: ${JSON.stringify(last)}`,
        );
      }
      await sleep(50);
    }
  }

  /**
   * Waits until every node of `ids` (default: all running) reports the same commit index and
   * applied index, with applied = commit — they have converged. Returns the applied index.
   */
  async waitConverged(
    options: { ids?: readonly string[]; timeoutMs?: number; atLeast?: number } = {},
  ): Promise<number> {
    const deadline = Date.now() + (options.timeoutMs ?? 20_000);
    for (;;) {
      const ids = options.ids ?? this.running().map((node) => node.id);
      const last = await this.statuses(ids);
      if (last.length === ids.length) {
        const applied = last[0]!.lastApplied;
        const same = last.every(
          (status) => status.lastApplied === applied && status.commitIndex === applied,
        );
        if (same && applied >= (options.atLeast ?? 0)) return applied;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `Nodes [${ids.join(', ')}] did not converge in time; statuses: ${JSON.stringify(
            last.map(({ id, state, term, leader, commitIndex, lastApplied }) => ({
              id,
              state,
              term,
              leader,
              commitIndex,
              lastApplied,
            })),
          )}`,
        );
      }
      await sleep(100);
    }
  }

  /**
   * A raw request to node `id`, for the API tests; returns status, headers and the body as
   * bytes and as text.
   */
  async http(
    id: string,
    method: 'GET' | 'PUT' | 'POST' | 'DELETE' | 'PATCH' | 'HEAD' | 'OPTIONS',
    pathAndQuery: string,
    options: {
      body?: string | Uint8Array;
      headers?: Record<string, string>;
      timeoutMs?: number;
    } = {},
  ): Promise<HttpAnswer> {
    const response = await request(`${this.node(id).url}${pathAndQuery}`, {
      method,
      ...(options.body === undefined ? {} : { body: options.body }),
      ...(options.headers === undefined ? {} : { headers: options.headers }),
      signal: AbortSignal.timeout(options.timeoutMs ?? 5_000),
    });
    const bytes = new Uint8Array(await response.body.arrayBuffer());
    return {
      status: response.statusCode,
      headers: response.headers,
      bytes,
      text: new TextDecoder().decode(bytes),
    };
  }

  /**
   * An admin request (membership, leadership) sent to `via`, retried while the answer says
   * "not now" (409 a change in progress, 429, 5xx, no answer) until `done()` holds — the
   * request may have taken effect even when its answer was lost. Returns the attempts' answers.
   */
  async admin(
    via: () => string | Promise<string>,
    method: 'POST' | 'DELETE',
    pathAndQuery: string,
    body: unknown,
    done: () => Promise<boolean>,
    timeoutMs = 30_000,
  ): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    const answers: string[] = [];
    for (;;) {
      if (await done()) return answers;
      const id = await via();
      try {
        const answer = await this.http(id, method, pathAndQuery, {
          ...(body === undefined
            ? {}
            : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
          timeoutMs: 10_000,
        });
        answers.push(`${id}: ${answer.status} ${answer.text.slice(0, 300)}`);
        const retriable = answer.status === 409 || answer.status === 429 || answer.status >= 500;
        if (answer.status >= 400 && !retriable) {
          throw new Error(`${method} ${pathAndQuery} via ${id} refused: ${answers.at(-1)}`);
        }
      } catch (error) {
        if (error instanceof Error && error.message.includes('refused:')) throw error;
        answers.push(`${id}: ${String(error)}`);
      }
      // Give the change time to commit and apply before asking again.
      const until = Date.now() + 3_000;
      while (Date.now() < until) {
        if (await done()) return answers;
        await sleep(100);
      }
      if (Date.now() > deadline) {
        throw new Error(`${method} ${pathAndQuery} did not take effect: ${answers.join(' | ')}`);
      }
    }
  }

  /** Ids of the members `id` reports in its status (undefined when it does not answer). */
  async membersOf(id: string): Promise<string[] | undefined> {
    return (await this.status(id))?.members.map((member) => member.id).sort();
  }

  /** Log tails of every node, for failure messages. */
  async logTails(bytes = 2_000): Promise<string> {
    const parts: string[] = [];
    for (const node of this.nodes.values()) {
      parts.push(`==== ${node.id} (${node.logFile})\n${await node.logTail(bytes)}`);
    }
    return parts.join('\n');
  }

  /**
   * Kills every process group, closes the proxies and removes the temp dir. Safe to call
   * twice. With PHANTOMDB_KEEP_CLUSTER_DIR=1 the dir (logs, data) is kept and its path printed.
   */
  async teardown(): Promise<void> {
    if (this.tornDown) return;
    this.tornDown = true;
    await Promise.all([...this.nodes.values()].map((node) => node.kill()));
    await Promise.all([...this.nodes.values()].map((node) => node.closeLog()));
    await this.network.close();
    if (process.env['PHANTOMDB_KEEP_CLUSTER_DIR'] === '1') {
      console.log(`cluster dir kept: ${this.dir}`);
      return;
    }
    await removeTempDir(this.dir);
  }

  /** Real port of `id`. */
  portOf(id: string): number {
    const port = this.ports.get(id);
    if (port === undefined) throw new RangeError(`Unknown node ${id}`);
    return port;
  }

  private async allocate(id: string): Promise<void> {
    if (this.ports.has(id)) throw new RangeError(`Node ${id} exists already`);
    const port = await freePort();
    this.ports.set(id, port);
    await this.network.addNode(id, port, this.ports);
  }

  private createNode(id: string, args: readonly string[]): NodeProcess {
    const nodeDir = path.join(this.dir, id);
    const common = [
      '--log-level',
      this.options.logLevel ?? 'info',
      ...(this.options.tickMs === undefined ? [] : ['--tick-ms', String(this.options.tickMs)]),
      ...(this.options.snapshotEntries === undefined
        ? []
        : ['--snapshot-entries', String(this.options.snapshotEntries)]),
      ...(this.options.extraArgs ?? []),
    ];
    const node = new NodeProcess({
      id,
      port: this.portOf(id),
      dataDir: path.join(nodeDir, 'data'),
      logFile: path.join(this.dir, `${id}.log`),
      args: [...args, ...common],
    });
    this.nodes.set(id, node);
    return node;
  }
}

// ---------------------------------------------------------------------------------------------
// One cluster at a time on the machine

/** The machine-wide lock of the cluster tests. */
export const machineLockDir = path.join(os.tmpdir(), 'phantomdb-cluster-tests.lock');

/**
 * Serializes the cluster test files across vitest workers: two 3-node clusters on two cores
 * would make every timing figure (failover, write gaps) measure the other test instead. The
 * lock is a directory holding the owner's pid; a lock whose owner is dead is taken over.
 * Returns the release function.
 */
export async function acquireMachineLock(
  timeoutMs = 300_000,
  lockDir = machineLockDir,
): Promise<() => Promise<void>> {
  const deadline = Date.now() + timeoutMs;
  const ownerFile = path.join(lockDir, 'owner');
  let ownerlessSince = Infinity;
  for (;;) {
    try {
      await mkdir(lockDir);
      await writeFile(ownerFile, String(process.pid));
      return async () => {
        try {
          if ((await readFile(ownerFile, 'utf8')) === String(process.pid)) {
            await rm(lockDir, { recursive: true, force: true });
          }
        } catch {
          // already gone
        }
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    let owner = NaN;
    try {
      owner = Number(await readFile(ownerFile, 'utf8'));
    } catch {
      // the owner is between mkdir and writeFile, or just released
    }
    // A dead owner, or none for seconds (it died between mkdir and writeFile): take over.
    ownerlessSince =
      Number.isInteger(owner) && owner > 0 ? Infinity : Math.min(ownerlessSince, Date.now());
    if (
      (ownerlessSince !== Infinity && Date.now() - ownerlessSince > 5_000) ||
      (owner > 0 && !isAlive(owner))
    ) {
      await rm(lockDir, { recursive: true, force: true });
      ownerlessSince = Infinity;
      continue;
    }
    if (Date.now() > deadline) {
      throw new Error(`Cannot take ${lockDir}: held by pid ${owner} for too long`);
    }
    await sleep(200);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
