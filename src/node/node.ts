/**
 * PhantomNode: one running PhantomDB server. It wires the library's parts into a process that
 * people run (`npm start`, `phantomdb`):
 *
 * ```
 * client ─HTTP─> api.ts ─(follower: forwarder.ts ─HTTP─> leader)
 *                  │
 *                  └─> ConsensusManager ─> RaftConsensus ─> FilePersistence (WAL fsync)
 *                          │                    ‖ HttpPeerTransport ─> peers
 *                          ├─ committed ─> KvStateMachine ─> reply (after the regions the
 *                          │                                  replication strategy waits for)
 *                          └─ ReplicationManager ─HTTP─> other regions (/v1/replication/*)
 * ```
 *
 * One hyper-express listener carries the client API, the peer RPCs (`/raft/*`) and the
 * replication routes other regions ship to (`/v1/replication/*`). The
 * membership lives in the data directory (RaftConsensus stores the bootstrap members as a
 * snapshot at index 0, changes go through the log), so a restarted node ignores `--peers`.
 *
 * Security (src/security, `config.security`): with a cluster secret every peer RPC and every
 * forwarded request is signed and checked, with a region secret (the cluster secret by
 * default) every region request; with TLS the listener serves HTTPS only and every connection
 * the node opens verifies its peer against the CA; with a tokens file clients need bearer
 * tokens; and client requests in flight are capped per client and in all.
 *
 * @example
 * ```ts
 * const parsed = parseNodeConfig(['--id', 'n1', '--data-dir', '/tmp/n1'], {});
 * if (!parsed.help) {
 *   const node = await PhantomNode.start(parsed.config);
 *   // ... curl -X PUT http://127.0.0.1:7001/v1/kv/x -d 1
 *   await node.stop();
 * }
 * ```
 */
import { performance } from 'node:perf_hooks';
import { Server } from 'hyper-express';
import type { Logger } from 'pino';
import { replicationDefaults, resolveKvLimits, type KvLimits } from '../config.js';
import type { Version } from '../conflict/dvv.js';
import { ConsensusManager, type WriteOutcome } from '../consensus/consensus-manager.js';
import type { RaftConsensus, RaftNodeInfo } from '../consensus/raft-consensus.js';
import { NotLeaderError, PhantomError, ShutdownError, StorageError } from '../errors.js';
import type { KvStateMachine } from '../kv/state-machine.js';
import { HttpRegionClient } from '../replication/client.js';
import { registerReplicationMetrics } from '../replication/metrics.js';
import { mountReplicationRoutes } from '../replication/routes.js';
import { replicatedCommands, type Region, type RegionInfo } from '../replication/types.js';
import { AdmissionControl } from '../security/admission.js';
import { NonceGuard, RequestSigner } from '../security/request-signer.js';
import type { TlsServerOptions } from '../security/tls.js';
import { FilePersistence } from '../storage/file-persistence.js';
import { nodeFs, type StorageFs } from '../storage/fs.js';
import { HttpPeerTransport, PeerUnreachableError } from '../transport/client.js';
import { closeServer, installErrorHandlers } from '../transport/http.js';
import { mountPeerRoutes, type PeerRoutes } from '../transport/server.js';
import { nodeUrl } from '../transport/url.js';
import {
  mountClientApi,
  type ClientAccess,
  type ClientApiNode,
  type MemberStatus,
  type NodeStatus,
  type RegionsStatus,
} from './api.js';
import type { NodeConfig } from './config.js';
import { LeaderForwarder } from './forwarder.js';
import { createNodeLogger } from './logger.js';
import { NodeMetrics } from './metrics.js';
import type { MemberRequest } from './request.js';
import { timedFs } from './timed-fs.js';

/** The command name of key-value entries in the Raft log. */
export const kvCommand = replicatedCommands.kv;

/** Options of {@link PhantomNode.start} beyond the flags. */
export interface PhantomNodeOptions {
  /** Where logs go. Default: pino on stdout at `config.logLevel`. */
  readonly logger?: Logger;
  /** The storage's file system (tests inject disk faults). Default: the real one. */
  readonly fs?: StorageFs;
  /** Key and value size limits. Default: src/config.ts `kvDefaults`. */
  readonly kvLimits?: Partial<KvLimits>;
}

/** A running node; see the module comment. */
export class PhantomNode implements ClientApiNode {
  readonly id: string;
  readonly kvLimits: KvLimits;
  readonly requestTimeoutMs: number;
  readonly logger: Logger;
  readonly metrics: NodeMetrics;
  readonly forwarder: LeaderForwarder;
  readonly access: ClientAccess;
  /** The URL this node listens on. */
  readonly url: string;

  private readonly config: NodeConfig;
  private readonly persistence: FilePersistence;
  private readonly manager: ConsensusManager;
  private readonly kv: KvStateMachine;
  private readonly raft: RaftConsensus;
  private readonly transport: HttpPeerTransport;
  private readonly server: Server;
  private readonly peerRoutes: PeerRoutes;
  private watcher: NodeJS.Timeout | null = null;
  private inFlight = 0;
  private stopping: Promise<void> | null = null;
  /** Set when storage failed: writes are refused from then on. */
  private storageError: PhantomError | null = null;
  /** The leader last logged ('' for none, which is also how a node starts). */
  private lastLeader = '';
  private lastMembers = '';

  private constructor(config: NodeConfig, options: PhantomNodeOptions) {
    this.config = config;
    this.id = config.id;
    this.kvLimits = resolveKvLimits(options.kvLimits);
    this.requestTimeoutMs = config.requestTimeoutMs;
    const { security } = config;
    const scheme = security.tls === null ? 'http' : 'https';
    this.url = nodeUrl(scheme, config.listenHost, config.listenPort);
    this.logger = options.logger ?? createNodeLogger(config.id, config.logLevel);
    this.metrics = new NodeMetrics({
      nodeId: config.id,
      raft: () => {
        const status = this.raft.status();
        return { ...status, members: status.members.length };
      },
      storage: () => this.persistence.stats(),
      keys: () => this.kv.size,
    });
    const signerOptions = { limits: security.limits };
    const peerSigner =
      security.clusterSecret === null
        ? null
        : new RequestSigner(security.clusterSecret, 'peer', signerOptions);
    const regionSigner =
      security.regionSecret === null
        ? null
        : new RequestSigner(security.regionSecret, 'region', signerOptions);
    const tls = security.tls?.connectOptions();
    const connectSecurity = (signer: RequestSigner | null) => ({
      ...(tls === undefined ? {} : { tls }),
      interceptors: signer === null ? [] : [signer.interceptor()],
    });
    this.access = {
      tokens: security.tokens,
      healthAuth: security.healthAuth,
      peerSigner,
      forwardNonces:
        peerSigner === null
          ? null
          : new NonceGuard(security.limits.authClockSkewMs, security.limits.replayNoncesMax),
      admission: new AdmissionControl(security.limits),
    };
    this.persistence = new FilePersistence({
      dir: config.dataDir,
      fs: timedFs(options.fs ?? nodeFs, (seconds, failed) =>
        this.metrics.onDatasync(seconds, failed),
      ),
      onWarning: (message) => this.logger.warn({ dataDir: config.dataDir }, message),
    });
    this.manager = new ConsensusManager({
      nodeId: config.id,
      raftNodes: config.peers.map(nodeInfoOf),
      region: config.region,
      replicationStrategy: config.replicationStrategy,
      replicationFallback: config.replicationFallback,
      replicationLimits: { replicationTimeoutMs: config.replicationTimeoutMs },
      conflictResolutionStrategy: config.conflictStrategy,
      regionClient: new HttpRegionClient({
        connectTimeoutMs: Math.min(2_000, replicationDefaults.requestTimeoutMs),
        ...connectSecurity(regionSigner),
      }),
      kvLimits: this.kvLimits,
      logger: this.logger,
      raft: {
        persistence: this.persistence,
        tickIntervalMs: config.tickMs,
        limits: { electionTicks: config.electionTicks, heartbeatTicks: config.heartbeatTicks },
        proposalTimeoutMs: config.requestTimeoutMs,
        snapshotEveryEntries: config.snapshotEntries,
        compactKeepEntries: config.snapshotKeepEntries,
        join: config.join,
        promotion: config.promotion,
        trace: (event, fields) => this.onTrace(event, fields),
        onError: (error) => this.onRaftError(error),
      },
    });
    this.raft = this.manager.raft;
    this.kv = this.manager.kv;
    registerReplicationMetrics(this.metrics.registry, this.manager);
    this.transport = new HttpPeerTransport({
      logger: this.logger.child({ component: 'peers' }),
      ...connectSecurity(peerSigner),
    });
    this.raft.registerSendCallback((_to, message, data) => this.transport.send(message, data));
    this.forwarder = new LeaderForwarder({ nodeId: config.id, ...connectSecurity(peerSigner) });

    this.server = createServer(security.tls?.serverOptions());
    this.peerRoutes = mountPeerRoutes(this.server, {
      handler: (message, data) => this.raft.handleMessage(message, data),
      logger: this.logger.child({ component: 'peers' }),
      localId: config.id,
      signer: peerSigner,
      bodyReadTimeoutMs: security.limits.bodyReadTimeoutMs,
    });
    mountReplicationRoutes(this.server, this.manager.replication, {
      signer: regionSigner,
      bodyReadTimeoutMs: security.limits.bodyReadTimeoutMs,
      bodyBytesMax: this.manager.replicationLimits.batchBodyBytesMax,
      logger: this.logger.child({ component: 'replication' }),
      onRequest: (route, status, seconds) => this.metrics.onRequest(route, 'POST', status, seconds),
    });
    mountClientApi(this.server, this);
    installErrorHandlers(this.server, this.logger);
  }

  /**
   * Opens storage (recovering the log and membership), starts Raft and listens. Rejects when
   * the data directory is locked by another process or corrupt, or the address is taken;
   * nothing is left running then.
   */
  static async start(config: NodeConfig, options: PhantomNodeOptions = {}): Promise<PhantomNode> {
    const node = new PhantomNode(config, options);
    await node.open();
    return node;
  }

  private async open(): Promise<void> {
    const { config, logger } = this;
    logger.info(
      { dataDir: config.dataDir, join: config.join, listen: this.url },
      `Starting node ${config.id} in region ${config.region}`,
    );
    this.logSecurity();
    const started = performance.now();
    try {
      await this.manager.initialize();
    } catch (error) {
      await this.closeNetwork();
      throw error;
    }
    // The peer address book comes from the recovered membership, before any vote goes out.
    this.watch();
    this.watcher = setInterval(() => this.watch(), config.tickMs);
    const recovery = this.persistence.recovery;
    if (recovery !== null) {
      logger.info(
        {
          segments: recovery.segments,
          entries: recovery.entries,
          snapshotIndex: recovery.snapshotIndex,
          tornTail: recovery.tornTail,
          ms: Math.round(performance.now() - started),
        },
        'Storage recovered',
      );
    }
    try {
      await listenExclusively(this.server, config.listenPort, config.listenHost);
    } catch (error) {
      clearInterval(this.watcher);
      await this.manager.shutdown();
      await this.closeNetwork();
      throw new Error(
        `Cannot listen on ${config.listenHost}:${config.listenPort}: the address is in use or not local (${String(error)})`,
        { cause: error },
      );
    }
    const members = this.members();
    if (members.length === 0) {
      logger.info(
        { url: this.url },
        `Listening on ${this.url}; waiting to be added: curl -X POST <member>/v1/members -H 'content-type: application/json' -d '{"id":"${config.id}","url":"${this.url}"}'`,
      );
    } else {
      logger.info(
        { url: this.url, members },
        `Listening on ${this.url}; try: curl -X PUT ${this.url}/v1/kv/hello -d world && curl ${this.url}/v1/kv/hello`,
      );
    }
  }

  /** Says, once at start, what protects this node, and what does not (never a secret). */
  private logSecurity(): void {
    const { security } = this.config;
    const summary = {
      peerAuth: security.clusterSecret === null ? 'none' : 'hmac-sha256',
      regionAuth: security.regionSecret === null ? 'none' : 'hmac-sha256',
      tls:
        security.tls === null ? 'off' : security.tls.files.caFile === null ? 'on' : 'on, CA given',
      clientTokens: security.tokens?.size ?? 0,
      healthAuth: security.healthAuth,
      clientRequestsInFlightMax: security.limits.clientRequestsInFlightMax,
      requestsInFlightMax: security.limits.requestsInFlightMax,
    };
    this.logger.info(summary, 'Security settings');
    if (security.clusterSecret === null && (this.config.peers.length > 1 || this.config.join)) {
      this.logger.warn(
        'No --cluster-secret: any process that reaches this port can send Raft messages; set one for a deployment',
      );
    }
    if (security.tokens !== null && security.tls === null) {
      this.logger.warn('Bearer tokens without --tls-cert travel in clear text');
    }
    if (security.secretsInArgv.length > 0) {
      this.logger.warn(
        { flags: security.secretsInArgv.map((name) => `--${name}`) },
        'Secrets given as flags are visible to other users of this machine until the process title hides them; prefer the PHANTOMDB_* environment variables or the -file flags',
      );
    }
  }

  /**
   * Stops gracefully: stops accepting connections and requests, hands leadership to another
   * voter if this node leads, lets requests in flight finish (up to the request timeout),
   * waits for the fsync in flight, closes storage and every socket. Idempotent.
   */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    const { logger } = this;
    logger.info({ inFlight: this.inFlight }, `Stopping node ${this.id}`);
    this.server.close();
    if (this.watcher !== null) clearInterval(this.watcher);
    this.watcher = null;
    await this.handOverLeadership();
    const deadline = performance.now() + this.requestTimeoutMs;
    while (this.inFlight > 0 && performance.now() < deadline) await sleep(10);
    await this.manager.shutdown();
    await this.closeNetwork();
    logger.info({ inFlight: this.inFlight }, `Stopped node ${this.id}`);
  }

  /** A leader that stops hands over first, so the cluster need not wait an election timeout. */
  private async handOverLeadership(): Promise<void> {
    const others = this.members().filter((m) => m.role === 'voter' && m.id !== this.id);
    if (!this.isLeader() || others.length === 0 || this.storageFailure() !== null) return;
    const budgetMs = this.config.electionTicks * this.config.tickMs;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.raft.transferLeadership(),
        new Promise((_resolve, reject) => {
          timer = setTimeout(() => reject(new Error(`not done within ${budgetMs} ms`)), budgetMs);
        }),
      ]);
      this.logger.info({ leader: this.raft.getLeader() }, 'Handed leadership over before stopping');
    } catch (error) {
      this.logger.warn({ err: error }, 'Could not hand leadership over before stopping');
    } finally {
      clearTimeout(timer);
    }
  }

  private async closeNetwork(): Promise<void> {
    this.peerRoutes.close();
    await this.transport.close().catch(() => undefined);
    await this.forwarder.close().catch(() => undefined);
    closeServer(this.server);
  }

  // ---------------------------------------------------------------------------------------
  // ClientApiNode

  isStopping(): boolean {
    return this.stopping !== null;
  }

  storageFailure(): PhantomError | null {
    return this.persistence.failed ?? this.storageError;
  }

  isLeader(): boolean {
    return this.raft.getState() === 'leader';
  }

  leader(): { id: string; url: string } | null {
    const id = this.raft.getLeader();
    if (id === '') return null;
    if (id === this.id) return { id, url: this.url };
    const member = this.raft.getMembers().find((candidate) => candidate.id === id);
    return member === undefined || member.url === '' ? null : { id, url: member.url };
  }

  localGet(key: string): Uint8Array | undefined {
    return this.kv.get(key);
  }

  localVersion(key: string): Version | undefined {
    return this.kv.getVersion(key);
  }

  appliedIndex(): number {
    return this.raft.getLastApplied();
  }

  async propose(payload: Uint8Array): Promise<WriteOutcome> {
    let committed;
    try {
      committed = await this.manager.proposeKv(payload);
      this.metrics.onProposal(true);
    } catch (error) {
      const refused =
        error instanceof NotLeaderError ||
        (error instanceof PhantomError && error.code === 'LEADERSHIP_TRANSFER');
      if (!refused) this.metrics.onProposal(false);
      throw error;
    }
    // Committed here; now the regions the replication strategy waits for.
    return this.manager.replicated(committed);
  }

  readBarrier(): Promise<{ index: number }> {
    return this.raft.linearizableRead();
  }

  regions(): Region[] {
    return this.manager.replication.getRegions();
  }

  regionsStatus(): RegionsStatus {
    const replication = this.manager.replication;
    return {
      region: this.manager.region,
      strategy: replication.getReplicationStrategy(),
      fallback: replication.getFallback(),
      conflictStrategy: this.manager.conflictStrategy(),
      primary: replication.getPrimaryRegion(),
      allConnected: replication.areAllRegionsConnected(),
      regions: replication.getReplicationStatus(),
    };
  }

  addRegion(region: RegionInfo): Promise<boolean> {
    return this.manager.addReplicationRegion(region);
  }

  removeRegion(id: string): Promise<boolean> {
    return this.manager.removeReplicationRegion(id);
  }

  members(): MemberStatus[] {
    return this.manager.getMembers().map(({ id, url, role }) => ({ id, url, role }));
  }

  async addMember(member: MemberRequest): Promise<void> {
    await this.manager.addMember(nodeInfoOf(member), { learner: member.learner });
  }

  async removeMember(id: string): Promise<void> {
    await this.manager.removeMember(id);
  }

  async transferLeadership(to: string | undefined): Promise<{ leader: string; term: number }> {
    await this.manager.transferLeadership(to);
    return { leader: this.raft.getLeader(), term: this.raft.getCurrentTerm() };
  }

  status(): NodeStatus {
    const status = this.raft.status();
    const leader = this.leader();
    const failure = this.storageFailure();
    return {
      id: status.id,
      url: this.url,
      state: status.state,
      term: status.term,
      leader: status.leader,
      leaderUrl: leader?.url ?? '',
      commitIndex: status.commitIndex,
      lastApplied: status.lastApplied,
      members: status.members.map(({ id, url, role }) => ({ id, url, role })),
      keys: this.kv.size,
      region: this.manager.region,
      replicationStrategy: this.manager.replication.getReplicationStrategy(),
      storageError: failure === null ? null : { code: failure.code, message: failure.message },
    };
  }

  renderMetrics(): Promise<{ contentType: string; body: string }> {
    return this.metrics.render();
  }

  beginRequest(): () => void {
    this.inFlight++;
    let done = false;
    return () => {
      if (!done) this.inFlight--;
      done = true;
    };
  }

  // ---------------------------------------------------------------------------------------
  // Raft callbacks

  private onRaftError(error: unknown): void {
    if (error instanceof PeerUnreachableError) {
      this.metrics.onRpcError(error.peerId, error.reason);
      return;
    }
    if (error instanceof ShutdownError) return;
    if (error instanceof StorageError) {
      if (this.storageError === null) {
        this.storageError = error;
        this.logger.error(
          { err: error, code: error.code, dataDir: this.config.dataDir },
          `Storage failed; this node takes no more writes and serves stale reads only: ${error.message}`,
        );
      }
      return;
    }
    if (error instanceof PhantomError && error.code === 'UNKNOWN_MEMBER') {
      this.metrics.onRpcError('unknown', 'unknownMember');
      return;
    }
    this.logger.warn({ err: error }, 'Raft reported a problem');
  }

  private onTrace(event: string, fields: Record<string, unknown>): void {
    switch (event) {
      case 'becomeCandidate':
        this.logger.info({ term: fields['term'] }, `Campaigning in term ${String(fields['term'])}`);
        break;
      case 'checkQuorumFailed':
        this.logger.warn(
          { term: fields['term'] },
          'Stepping down: no quorum answered within an election timeout',
        );
        break;
      case 'transferStart':
        this.logger.info(
          { to: fields['to'] },
          `Transferring leadership to ${String(fields['to'])}`,
        );
        break;
      case 'transferAbort':
        // 'role change' is the transfer succeeding: this node stepped down for the target.
        if (fields['reason'] !== 'role change') {
          this.logger.warn(fields, `Leadership transfer given up: ${String(fields['reason'])}`);
        }
        break;
      case 'snapshotInstall':
        this.logger.info(
          { index: fields['index'], term: fields['term'] },
          "Installing the leader's snapshot",
        );
        break;
      case 'confChange':
        // The member directory is up to date by now: give new peers an address at once
        // rather than at the next tick.
        setImmediate(() => {
          if (this.watcher !== null) this.watch();
        });
        break;
      case 'removedLeaderStepsDown':
        this.logger.info(fields, 'Removed from the cluster while leading; stepping down');
        break;
      default:
        break;
    }
  }

  /** Each tick: log leader changes, and follow membership changes in the peer address book. */
  private watch(): void {
    const leader = this.raft.getLeader();
    if (leader !== this.lastLeader) {
      this.lastLeader = leader;
      const term = this.raft.getCurrentTerm();
      const message =
        leader === ''
          ? 'No leader known'
          : leader === this.id
            ? `Leading in term ${term}`
            : `Following leader ${leader} in term ${term}`;
      this.logger.info({ leader, term, state: this.raft.getState() }, message);
    }
    const members = this.raft.getMembers();
    const signature = members.map((m) => `${m.id}=${m.url}:${m.role}`).join(',');
    if (signature !== this.lastMembers) {
      this.lastMembers = signature;
      const peers = new Map<string, string>();
      for (const member of members) {
        if (member.id !== this.id && member.url !== '') peers.set(member.id, member.url);
      }
      try {
        this.transport.setPeers(peers);
      } catch (error) {
        this.logger.error({ err: error }, 'Cannot update the peer address book');
      }
      this.logger.info(
        { members: members.map(({ id, url, role }) => ({ id, url, role })) },
        `Membership: ${members.map((m) => `${m.id}${m.role === 'learner' ? ' (learner)' : ''}`).join(', ') || 'none'}`,
      );
    }
  }
}

/**
 * The hyper-express server, serving TLS when given its options. hyper-express's own error for
 * a bad TLS setup lists every option, passphrase included; this one names the files only.
 */
function createServer(tls: TlsServerOptions | undefined): Server {
  if (tls === undefined) return new Server({ auto_close: false });
  try {
    return new Server({ auto_close: false, ...tls });
  } catch {
    throw new Error(
      `Cannot serve TLS with ${tls.cert_file_name} and ${tls.key_file_name}: uWebSockets.js refused them`,
    );
  }
}

function nodeInfoOf(peer: { readonly id: string; readonly url: string }): RaftNodeInfo {
  const parsed = new URL(peer.url);
  const port = parsed.port === '' ? (parsed.protocol === 'https:' ? 443 : 80) : Number(parsed.port);
  return { id: peer.id, host: parsed.hostname, port, url: parsed.origin };
}

/** uWebSockets.js's listen option that refuses a port another socket holds. */
const listenExclusivePort = 1;

/**
 * Listens like `server.listen`, but refuses a port already taken. uWebSockets.js sets
 * SO_REUSEPORT by default, so a second node started on a taken port would silently share it,
 * each getting some of the connections; hyper-express has no way to pass the option, so its
 * call to the uWS app's listen is redirected for this one call.
 */
async function listenExclusively(server: Server, port: number, host: string): Promise<void> {
  const app = server.uws_instance as unknown as {
    listen: (...args: unknown[]) => unknown;
  };
  const listen = app.listen;
  app.listen = (listenHost: unknown, listenPort: unknown, callback: unknown) =>
    listen.call(app, listenHost, listenPort, listenExclusivePort, callback);
  try {
    await server.listen(port, host);
  } finally {
    app.listen = listen;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
