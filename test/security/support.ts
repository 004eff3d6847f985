/**
 * Shared fixtures of the security tests: test certificates made with openssl at test time,
 * tokens files, and small secured clusters of real node processes (`node dist/node/main.js`)
 * whose status is read with a token and, under TLS, over HTTPS with the test CA. Processes and
 * temp dirs are registered with the cluster harness's reaper, and {@link tearDownAfterAll} ends a
 * process suite, so nothing outlives the run.
 */
import type { NodeStatus } from '../../src/node/api.js';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Agent, request, type Dispatcher } from 'undici';
import { afterAll } from 'vitest';
import { acquireMachineLock } from '../cluster/harness.js';
import {
  NodeProcess,
  freePort,
  killAllNodeProcesses,
  nodeMainPath,
  registerTempDir,
  removeTempDir,
  sleep,
  type NodeProcessOptions,
} from '../cluster/processes.js';

export { acquireMachineLock, freePort, killAllNodeProcesses, sleep };

/** The secret every test cluster shares (and intruders do not). */
export const clusterSecret = 'test-cluster-secret-0123456789abcdef';
/** Another secret of the right length: a node configured with it is an outsider. */
export const wrongSecret = 'not-the-cluster-secret-0123456789ab';

/** Plain-text tokens of the test tokens file, by scope. */
export const tokens = {
  read: 'read-token-aaaaaaaaaaaaaaaaaaaaaaaa',
  readwrite: 'readwrite-token-bbbbbbbbbbbbbbbbbbbb',
  admin: 'admin-token-cccccccccccccccccccccccc',
} as const;

/** `Authorization` header of a scope's token. */
export function bearer(scope: keyof typeof tokens): Record<string, string> {
  return { authorization: `Bearer ${tokens[scope]}` };
}

/** Files made at test time: the cluster's CA and node certificate, and a rogue pair. */
export interface Certificates {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** A CA the cluster does not trust, and a certificate it signed (for 127.0.0.1). */
  readonly rogueCaFile: string;
  readonly rogueCertFile: string;
  readonly rogueKeyFile: string;
}

/** A temp dir registered with the reaper; remove it with {@link removeTempDir}. */
export async function securityTempDir(label: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `phantomdb-security-${label}-`));
  registerTempDir(dir);
  return dir;
}

export { removeTempDir };

/**
 * Makes a CA and a node certificate for 127.0.0.1 / localhost signed by it, and the same from a
 * second, untrusted CA, with openssl (P-256 keys: quick to make).
 */
export function makeCertificates(dir: string): Certificates {
  const run = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  };
  const ext = path.join(dir, 'san.cnf');
  writeFileSync(ext, 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  // A P-256 key, unencrypted, written to <prefix>-key.pem.
  const newKey = (prefix: string): string[] => [
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    `${prefix}-key.pem`,
  ];
  const pair = (prefix: string, caPrefix: string): void => {
    run('req', ...newKey(prefix), '-out', `${prefix}.csr`, '-subj', `/CN=${prefix}`);
    run(
      'x509',
      '-req',
      '-in',
      `${prefix}.csr`,
      '-CA',
      `${caPrefix}.pem`,
      '-CAkey',
      `${caPrefix}-key.pem`,
      '-CAcreateserial',
      '-out',
      `${prefix}.pem`,
      '-days',
      '2',
      '-extfile',
      ext,
    );
  };
  const ca = (prefix: string): void => {
    run(
      'req',
      '-x509',
      ...newKey(prefix),
      '-out',
      `${prefix}.pem`,
      '-days',
      '2',
      '-subj',
      `/CN=${prefix}`,
    );
  };
  ca('ca');
  pair('node', 'ca');
  ca('rogue-ca');
  pair('rogue', 'rogue-ca');
  return {
    caFile: path.join(dir, 'ca.pem'),
    certFile: path.join(dir, 'node.pem'),
    keyFile: path.join(dir, 'node-key.pem'),
    rogueCaFile: path.join(dir, 'rogue-ca.pem'),
    rogueCertFile: path.join(dir, 'rogue.pem'),
    rogueKeyFile: path.join(dir, 'rogue-key.pem'),
  };
}

/** Writes the test tokens file (read as a SHA-256, the others in plain text) and returns it. */
export async function writeTokensFile(dir: string): Promise<string> {
  const { createHash } = await import('node:crypto');
  const file = path.join(dir, 'tokens.json');
  const sha256 = createHash('sha256').update(tokens.read).digest('hex');
  await writeFile(
    file,
    JSON.stringify({
      tokens: [
        { name: 'monitor', scope: 'read', sha256 },
        { name: 'app', scope: 'readwrite', token: tokens.readwrite },
        { name: 'ops', scope: 'admin', token: tokens.admin },
      ],
    }),
  );
  return file;
}

/** Writes `secret` to a file (how the tests pass secrets: not in argv). */
export async function writeSecretFile(dir: string, name: string, secret: string): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, `${secret}\n`, { mode: 0o600 });
  return file;
}

/** A raw HTTP answer. */
export interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
}

/** One request; `dispatcher` carries the TLS settings. */
export async function call(
  url: string,
  options: {
    method?: Dispatcher.HttpMethod;
    headers?: Record<string, string>;
    body?: string | Uint8Array;
    dispatcher?: Dispatcher;
    timeoutMs?: number;
  } = {},
): Promise<Answer> {
  const response = await request(url, {
    method: options.method ?? 'GET',
    ...(options.headers === undefined ? {} : { headers: options.headers }),
    ...(options.body === undefined ? {} : { body: options.body }),
    ...(options.dispatcher === undefined ? {} : { dispatcher: options.dispatcher }),
    signal: AbortSignal.timeout(options.timeoutMs ?? 5_000),
  });
  const text = await response.body.text();
  return { status: response.statusCode, headers: response.headers, text };
}

/** `GET /v1/status`, the API's own type. */
export type Status = NodeStatus;

/** A node process whose health check speaks HTTPS with the test CA when the node serves TLS. */
class SecuredNodeProcess extends NodeProcess {
  constructor(
    options: NodeProcessOptions,
    readonly baseUrl: string,
    private readonly dispatcher: Dispatcher | undefined,
  ) {
    super(options);
  }

  override async waitHealthy(timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.state === 'stopped') {
        throw new Error(
          `Node ${this.id} exited before it was healthy; log:\n${await this.logTail()}`,
        );
      }
      try {
        const answer = await call(`${this.baseUrl}/healthz`, {
          ...(this.dispatcher === undefined ? {} : { dispatcher: this.dispatcher }),
          timeoutMs: 1_000,
        });
        if (answer.status === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        throw new Error(`Node ${this.id} not healthy in time; log:\n${await this.logTail()}`);
      }
      await sleep(50);
    }
  }
}

/** Options of {@link SecureCluster.start}. */
export interface SecureClusterOptions {
  readonly size: number;
  readonly label: string;
  /** Flags every node gets (secret, tokens, TLS files...). */
  readonly args: readonly string[];
  /** Serve and speak TLS with these certificates. */
  readonly certificates?: Certificates;
  /** Token the harness reads status with (default: the read token). */
  readonly statusToken?: string;
}

/** A few real node processes on loopback, wired directly (no proxies). */
export class SecureCluster {
  readonly nodes: SecuredNodeProcess[] = [];
  /** Trusts the test CA (undefined without TLS). */
  readonly dispatcher: Agent | undefined;

  private constructor(
    readonly dir: string,
    readonly scheme: 'http' | 'https',
    certificates: Certificates | undefined,
    private readonly statusToken: string,
  ) {
    this.dispatcher =
      certificates === undefined
        ? undefined
        : new Agent({ connect: { ca: readFileSync(certificates.caFile) } });
  }

  /** Starts `size` nodes n1..nN and waits until each is healthy. */
  static async start(options: SecureClusterOptions): Promise<SecureCluster> {
    if (!existsSync(nodeMainPath)) {
      throw new Error(`${nodeMainPath} does not exist: run \`npm run build\` first`);
    }
    const dir = await securityTempDir(options.label);
    const scheme = options.certificates === undefined ? 'http' : 'https';
    const cluster = new SecureCluster(
      dir,
      scheme,
      options.certificates,
      options.statusToken ?? tokens.read,
    );
    try {
      const ports = await Promise.all(Array.from({ length: options.size }, () => freePort()));
      const peers = ports.map((port, k) => `n${k + 1}=${scheme}://127.0.0.1:${port}`).join(',');
      ports.forEach((port, k) => {
        cluster.add(`n${k + 1}`, port, ['--peers', peers, ...options.args]);
      });
      await Promise.all(cluster.nodes.map((node) => node.start()));
    } catch (error) {
      await cluster.teardown();
      throw error;
    }
    return cluster;
  }

  /**
   * Creates (does not start) a node process of this cluster's kind; `dispatcher` is what its
   * health check trusts (default: this cluster's CA).
   */
  add(
    id: string,
    port: number,
    args: readonly string[],
    dispatcher: Dispatcher | undefined = this.dispatcher,
  ): SecuredNodeProcess {
    const node = new SecuredNodeProcess(
      {
        id,
        port,
        dataDir: path.join(this.dir, id, 'data'),
        logFile: path.join(this.dir, `${id}.log`),
        args: ['--log-level', 'info', ...args],
      },
      `${this.scheme}://127.0.0.1:${port}`,
      dispatcher,
    );
    this.nodes.push(node);
    return node;
  }

  /** The node `id`. */
  node(id: string): SecuredNodeProcess {
    const node = this.nodes.find((candidate) => candidate.id === id);
    if (node === undefined) throw new RangeError(`Unknown node ${id}`);
    return node;
  }

  /** A request to node `id`. */
  http(
    id: string,
    method: Dispatcher.HttpMethod,
    pathAndQuery: string,
    options: {
      headers?: Record<string, string>;
      body?: string | Uint8Array;
      timeoutMs?: number;
    } = {},
  ): Promise<Answer> {
    return call(`${this.node(id).baseUrl}${pathAndQuery}`, {
      method,
      ...options,
      ...(this.dispatcher === undefined ? {} : { dispatcher: this.dispatcher }),
    });
  }

  /** `GET /v1/status` of `id` with the status token; undefined when it does not answer 200. */
  async status(id: string): Promise<Status | undefined> {
    try {
      const answer = await this.http(id, 'GET', '/v1/status', {
        headers: { authorization: `Bearer ${this.statusToken}` },
        timeoutMs: 2_000,
      });
      return answer.status === 200 ? (JSON.parse(answer.text) as Status) : undefined;
    } catch {
      return undefined;
    }
  }

  /** Waits until a majority of the first `size` nodes name the same leader in the same term. */
  async waitForLeader(
    ids = this.nodes.map((node) => node.id),
    timeoutMs = 15_000,
  ): Promise<Status> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const statuses = (await Promise.all(ids.map((id) => this.status(id)))).filter(
        (status): status is Status => status !== undefined,
      );
      for (const leader of statuses.filter((status) => status.state === 'leader')) {
        const agreeing = statuses.filter(
          (status) => status.leader === leader.id && status.term === leader.term,
        ).length;
        if (agreeing > ids.length / 2) return leader;
      }
      if (Date.now() > deadline) {
        throw new Error(`No leader in time: ${JSON.stringify(statuses)}\n${await this.logTails()}`);
      }
      await sleep(50);
    }
  }

  /** Log tails of every node, for failure messages. */
  async logTails(bytes = 1_500): Promise<string> {
    const parts = await Promise.all(
      this.nodes.map(async (node) => `==== ${node.id}\n${await node.logTail(bytes)}`),
    );
    return parts.join('\n');
  }

  /** The whole log of node `id` (throws when it cannot be read: a check of it must not pass empty). */
  log(id: string): Promise<string> {
    return readFile(this.node(id).logFile, 'utf8');
  }

  /** Kills every node and removes the temp dir. */
  async teardown(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.kill()));
    await Promise.all(this.nodes.map((node) => node.closeLog()));
    await this.dispatcher?.close();
    if (process.env['PHANTOMDB_KEEP_CLUSTER_DIR'] === '1') {
      console.log(`security cluster dir kept: ${this.dir}`);
      return;
    }
    await removeTempDir(this.dir);
  }
}

/** What a process suite's beforeAll has started so far; read when the suite ends. */
export interface SuiteResources {
  /** Releases the machine-wide lock (undefined until taken). */
  readonly release: (() => Promise<void>) | undefined;
  /** The suite's clusters; undefined for one that did not start (it tore itself down). */
  readonly clusters: readonly (SecureCluster | undefined)[];
  /** The suite's files dir (secrets, tokens, certificates); '' until made. */
  readonly dir: string;
}

/**
 * Installs the afterAll of a process suite: tears down its clusters, removes its files dir,
 * kills every node process group this test process still has and releases the machine lock.
 * `resources` is called then, so it sees what beforeAll got to start even if it failed midway.
 */
export function tearDownAfterAll(resources: () => SuiteResources): void {
  afterAll(async () => {
    const { release, clusters, dir } = resources();
    try {
      const started = clusters.filter((cluster): cluster is SecureCluster => cluster !== undefined);
      // Every teardown runs to its end before the kill below, even when another one failed.
      const outcomes = await Promise.allSettled(started.map((cluster) => cluster.teardown()));
      const failures = outcomes.flatMap((outcome) =>
        outcome.status === 'rejected' ? [outcome.reason as unknown] : [],
      );
      if (failures.length > 0) throw new AggregateError(failures, 'Cluster teardown failed');
    } finally {
      // Even when a teardown above failed: no node may outlive the suite, nor its files; and
      // the lock is released even when removing the files fails, or the other suites wait.
      try {
        killAllNodeProcesses();
        if (dir !== '') await removeTempDir(dir);
      } finally {
        await release?.();
      }
    }
  }, 60_000);
}
