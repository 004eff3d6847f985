/**
 * The sending side of the peer transport: {@link HttpPeerTransport} posts Raft requests to
 * peers over keep-alive HTTP with undici and resolves with the peer's response.
 *
 * Per peer there are two undici dispatchers, like etcd's rafthttp keeps a stream for appends
 * beside its pipeline for the rest:
 * - a replication `Client`: one connection carrying AppendEntries one after another, so they
 *   reach the follower in the order they were sent. Spread over several connections they
 *   could overtake each other, and each overtaken append is rejected and costs the leader a
 *   probe round. They are not HTTP-pipelined either: uWebSockets.js (the fork hyper-express
 *   runs on here) closes a connection that pipelines requests it answers asynchronously, as
 *   test/transport/server.test.ts shows. So one append is in flight per follower, and the
 *   appends the core hands out meanwhile wait in a queue here. When the connection frees up,
 *   every queued append that continues the one before it (its `prevLogIndex` is the previous
 *   one's last index, same term) goes out merged into one request: one HTTP round trip and
 *   one follower fsync for all of them, however many the core's in-flight window let it
 *   produce. The merged request's answer acknowledges them all (the core frees its in-flight
 *   window by index); the sends merged into a later one resolve with null.
 * - An append without entries (the leader telling a follower its new commit index) lingers up
 *   to `commitLingerMs` before it goes alone: under a closed-loop client the next append
 *   usually follows within a fraction of that and carries the commit index along, instead of
 *   waiting behind a request of its own.
 * - a control `Pool` of `controlConnectionsPerPeer` connections for votes, heartbeats,
 *   timeout-now and snapshot chunks, so none of them waits behind a megabyte of entries.
 *
 * Each message is encoded once; the transport never retries on its own (Raft retransmits, and
 * a retried append could arrive after a newer one). After a failure a peer is left alone for an
 * exponentially growing, jittered delay; sends in that window fail at once with
 * {@link PeerUnreachableError} (reason 'backoff'), which the node reports to the core as
 * `reportUnreachable`. One success ends the backoff.
 *
 * @example
 * ```ts
 * const transport = new HttpPeerTransport({ peers: new Map([['n2', 'http://10.0.0.2:7001']]) });
 * const response = await transport.send(voteRequest); // VoteResponse, or null if dropped
 * await transport.close();
 * ```
 */
import { performance } from 'node:perf_hooks';
import { crc32 } from 'node:zlib';
import type { Logger } from 'pino';
import { Client, Pool, type Dispatcher } from 'undici';
import type { ConnectionOptions } from 'node:tls';
import { composeInterceptors } from '../security/request-signer.js';
import { transientBytes, transientEntryArrays } from '../bytes.js';
import { lastIndexOf, payloadBytesOf, type EntryBatch } from '../raft/batch.js';
import { resolveTransportLimits, type TransportLimits } from '../config.js';
import { BadRequestError, PhantomError, ShutdownError } from '../errors.js';
import type { AppendRequest, Message, NodeId, SnapshotRequest } from '../raft/types.js';
import {
  decodeMessage,
  checkAppendShape,
  encodeMessage,
  encodeSnapshotChunk,
  type SnapshotChunk,
} from './codec.js';
import { cborMediaType } from './http.js';
import { pooledReadConnector } from './pooled-read.js';
import { peerRoutePaths, responseTypeByRequestType, type PeerRequest } from './server.js';

/** Why a peer could not be reached. */
export type PeerFailureReason =
  /** Connection refused, reset or closed; DNS failure. */
  | 'network'
  /** No complete answer within the request's deadline (or no TCP connection in time). */
  | 'timeout'
  /** The peer failed recently and its backoff delay has not passed; nothing was sent. */
  | 'backoff'
  /** The peer answered with an error status. */
  | 'status'
  /** The peer answered something that is not the expected response. */
  | 'malformed';

/**
 * A peer did not answer a request usefully. For Raft it is all the same (the core is told
 * `reportUnreachable`), but `reason`, `status` and `peerCode` say what happened.
 */
export class PeerUnreachableError extends PhantomError {
  override readonly name = 'PeerUnreachableError';
  /** HTTP status the peer answered with (reason 'status'), else 0. */
  readonly status: number;
  /** Error code from the peer's JSON error body (reason 'status'), else ''. */
  readonly peerCode: string;

  constructor(
    readonly peerId: NodeId,
    readonly reason: PeerFailureReason,
    message: string,
    options: { cause?: unknown; status?: number; peerCode?: string } = {},
  ) {
    super('PEER_UNREACHABLE', message, { cause: options.cause });
    this.status = options.status ?? 0;
    this.peerCode = options.peerCode ?? '';
  }
}

/** Options of {@link HttpPeerTransport}. */
export interface HttpPeerTransportOptions {
  /** Peer id -> base URL (`http://host:port`, optionally with a path prefix). */
  readonly peers?: ReadonlyMap<NodeId, string>;
  readonly limits?: Partial<TransportLimits>;
  /** Logs a peer becoming unreachable and reachable again (one line each way). */
  readonly logger?: Logger;
  /** Source of backoff jitter in [0, 1); default Math.random. */
  readonly random?: () => number;
  /** Clock in milliseconds; default performance.now. */
  readonly now?: () => number;
  /** TLS for https peers: the CA to verify them, this node's certificate (mutual TLS). */
  readonly tls?: ConnectionOptions;
  /** undici interceptors every request passes through (the cluster secret's signer). */
  readonly interceptors?: readonly Dispatcher.DispatcherComposeInterceptor[];
}

/** What the transport knows of one peer. */
export interface PeerStatus {
  readonly url: string;
  /** Failures in a row (requests failing together in one outage count once). */
  readonly consecutiveFailures: number;
  /** Milliseconds until sends are tried again; 0 when not backing off. */
  readonly backoffRemainingMs: number;
}

interface PeerLink {
  readonly id: NodeId;
  readonly url: string;
  readonly basePath: string;
  readonly replication: Client;
  readonly control: Pool;
  consecutiveFailures: number;
  retryAtMs: number;
  lastFailureAtMs: number;
  /** Appends waiting for the replication connection, in the order the core sent them. */
  readonly appends: QueuedAppend[];
  /** An append request is on the replication connection now. */
  appendInFlight: boolean;
  /** Set while an entry-less append lingers (see the module comment). */
  lingerTimer: NodeJS.Timeout | null;
}

interface QueuedAppend {
  readonly message: AppendRequest;
  readonly resolve: (response: Message | null) => void;
  readonly reject: (error: unknown) => void;
}

interface Answer {
  readonly status: number;
  readonly body: Uint8Array;
}

const pathByRequestType: Readonly<Record<PeerRequest['type'], string>> = {
  vote: peerRoutePaths.vote,
  append: peerRoutePaths.append,
  heartbeat: peerRoutePaths.append,
  snapshot: peerRoutePaths.snapshot,
  timeoutNow: peerRoutePaths.timeoutNow,
};

const requestHeaders = { 'content-type': cborMediaType, accept: cborMediaType };

/** Raft's peer transport over HTTP + CBOR; see the module comment. */
export class HttpPeerTransport {
  private readonly limits: TransportLimits;
  private readonly logger: Logger | undefined;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly tls: ConnectionOptions | undefined;
  private readonly interceptors: readonly Dispatcher.DispatcherComposeInterceptor[];
  private readonly links = new Map<NodeId, PeerLink>();
  private readonly closing = new Set<Promise<void>>();
  private nextTransferId: number;
  private closed = false;

  constructor(options: HttpPeerTransportOptions = {}) {
    this.limits = resolveTransportLimits(options.limits);
    this.logger = options.logger;
    this.random = options.random ?? Math.random;
    this.now = options.now ?? (() => performance.now());
    this.tls = options.tls;
    this.interceptors = options.interceptors ?? [];
    // A fresh start point per process, so a restarted sender's ids do not repeat old ones.
    this.nextTransferId = Math.floor(this.random() * 2 ** 31);
    this.setPeers(options.peers ?? new Map());
  }

  /**
   * Replaces the address book (membership changed). Peers gone or moved to another URL have
   * their connections closed and their in-flight requests fail; new peers start with no
   * backoff. Throws TypeError, changing nothing, when a URL is not an http(s) URL.
   */
  setPeers(peers: ReadonlyMap<NodeId, string>): void {
    if (this.closed) throw new ShutdownError('Cannot set peers: the transport is closed');
    const parsed = new Map<NodeId, URL>();
    for (const [id, url] of peers) parsed.set(id, parsePeerUrl(id, url));
    for (const [id, link] of this.links) {
      if (peers.get(id) !== link.url) this.dropLink(link);
    }
    for (const [id, url] of parsed) {
      if (!this.links.has(id)) this.links.set(id, this.createLink(id, peers.get(id)!, url));
    }
  }

  /** The peers known now, with their backoff state. */
  peerStatus(): Map<NodeId, PeerStatus> {
    const now = this.now();
    const status = new Map<NodeId, PeerStatus>();
    for (const [id, link] of this.links) {
      status.set(id, {
        url: link.url,
        consecutiveFailures: link.consecutiveFailures,
        backoffRemainingMs: Math.max(0, link.retryAtMs - now),
      });
    }
    return status;
  }

  /**
   * Sends a request to `message.to` and resolves with its response, or null when the peer's
   * core dropped it (always null for timeoutNow). A SnapshotRequest needs `snapshotData`,
   * which goes in chunks of `snapshotChunkBytes`.
   *
   * Rejects with {@link PeerUnreachableError} when the peer cannot be reached, times out,
   * answers an error or garbage, or is backing off; with PhantomError UNKNOWN_MEMBER for a peer
   * not in the address book; with ShutdownError once closed; with TypeError for a response
   * message (responses travel in the HTTP answer to their request) or misplaced snapshot data.
   */
  async send(message: Message, snapshotData?: Uint8Array): Promise<Message | null> {
    if (this.closed) {
      throw new ShutdownError(`Cannot send ${message.type}: the transport is closed`);
    }
    if (!isPeerRequest(message)) {
      throw new TypeError(
        `Cannot send ${message.type}: only requests are sent; a response travels in the HTTP answer to its request`,
      );
    }
    if ((message.type === 'snapshot') !== snapshotData instanceof Uint8Array) {
      throw new TypeError(
        message.type === 'snapshot'
          ? 'Cannot send snapshot: its data is missing'
          : `Cannot send ${message.type}: only a snapshot request carries snapshot data`,
      );
    }
    const link = this.links.get(message.to);
    if (link === undefined) {
      throw new PhantomError(
        'UNKNOWN_MEMBER',
        `Cannot send ${message.type} to ${message.to}: no address is known for it`,
      );
    }
    // A malformed append is the caller's mistake (TypeError), not the peer's: it fails here,
    // before it could be merged with others, and starts no backoff.
    if (message.type === 'append') checkAppendShape(message);
    const startedAtMs = this.now();
    if (startedAtMs < link.retryAtMs) throw this.backoffError(link, message.type, startedAtMs);
    try {
      const response =
        message.type === 'snapshot'
          ? await this.sendSnapshot(link, message, snapshotData!)
          : await this.sendMessage(link, message);
      this.onSuccess(link);
      return response;
    } catch (error) {
      if (this.closed) {
        throw new ShutdownError(`Cannot send ${message.type}: the transport was closed meanwhile`);
      }
      // An append failed with its batch, which classified the error and started the backoff.
      if (message.type === 'append') throw error;
      const failure = this.failureOf(link, message, error);
      if (failure instanceof PeerUnreachableError) this.onFailure(link, startedAtMs, failure);
      throw failure;
    }
  }

  /** Closes every connection; in-flight sends fail with ShutdownError. */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      for (const link of this.links.values()) this.dropLink(link);
    }
    await Promise.all(this.closing);
  }

  private createLink(id: NodeId, url: string, parsed: URL): PeerLink {
    const common = {
      // For undici's own connector (TLS, https:); pooledReadConnector takes it as an argument.
      connectTimeout: this.limits.connectTimeoutMs,
      maxResponseSize: this.limits.messageBodyBytesMax,
      connect:
        this.tls ??
        (parsed.protocol === 'http:'
          ? pooledReadConnector(this.limits.connectTimeoutMs)
          : undefined),
    };
    return {
      id,
      url,
      basePath: parsed.pathname.replace(/\/+$/, ''),
      replication: composeInterceptors(new Client(parsed.origin, common), this.interceptors),
      control: composeInterceptors(
        new Pool(parsed.origin, { ...common, connections: this.limits.controlConnectionsPerPeer }),
        this.interceptors,
      ),
      consecutiveFailures: 0,
      retryAtMs: 0,
      lastFailureAtMs: Number.NEGATIVE_INFINITY,
      appends: [],
      appendInFlight: false,
      lingerTimer: null,
    };
  }

  private dropLink(link: PeerLink): void {
    if (this.links.get(link.id) === link) this.links.delete(link.id);
    this.failAppends(
      link,
      new ShutdownError(
        this.closed
          ? 'Cannot send append: the transport is closed'
          : `Cannot send append to ${link.id}: the peer was removed`,
      ),
    );
    const closing = Promise.all([link.replication.destroy(), link.control.destroy()]).then(
      () => undefined,
      () => undefined,
    );
    this.closing.add(closing);
    void closing.then(() => this.closing.delete(closing));
  }

  private async sendMessage(link: PeerLink, message: PeerRequest): Promise<Message | null> {
    if (message.type === 'append') {
      return new Promise<Message | null>((resolve, reject) => {
        link.appends.push({ message, resolve, reject });
        this.pumpAppends(link);
      });
    }
    const answer = await post(
      link.control,
      link.basePath + pathByRequestType[message.type],
      encodeMessage(message),
      this.limits.rpcTimeoutMs,
    );
    return this.responseOf(link, message, answer);
  }

  /**
   * Sends the queued appends that chain onto the first one as one request, if the replication
   * connection is free. An entry-less append alone waits up to `commitLingerMs` for company.
   */
  private pumpAppends(link: PeerLink): void {
    if (link.appendInFlight || link.appends.length === 0) return;
    const lingerMs = this.limits.commitLingerMs;
    if (lingerMs > 0 && link.appends.every((queued) => queued.message.entries.count === 0)) {
      link.lingerTimer ??= setTimeout(() => {
        link.lingerTimer = null;
        this.flushAppends(link);
      }, lingerMs);
      return;
    }
    this.flushAppends(link);
  }

  private flushAppends(link: PeerLink): void {
    if (link.lingerTimer !== null) {
      clearTimeout(link.lingerTimer);
      link.lingerTimer = null;
    }
    if (link.appendInFlight || link.appends.length === 0) return;
    if (this.closed || this.links.get(link.id) !== link) {
      this.failAppends(
        link,
        new ShutdownError(`Cannot send append to ${link.id}: the peer was removed`),
      );
      return;
    }
    const batch = takeChain(link.appends, this.limits.messageBodyBytesMax - appendEnvelopeBytes);
    const now = this.now();
    if (now < link.retryAtMs) {
      // A request that failed while these waited started the backoff: they fail like any send
      // in the backoff window, without touching the network.
      const error = this.backoffError(link, 'append', now);
      for (const queued of batch) queued.reject(error);
      this.pumpAppends(link);
      return;
    }
    const last = batch[batch.length - 1]!;
    let message: AppendRequest;
    let body: Uint8Array;
    try {
      message = batch.length === 1 ? last.message : mergeAppends(batch.map((q) => q.message));
      body = encodeMessage(message);
    } catch (error) {
      // Not reachable with appends checked when queued; if it were, these fail and the
      // connection stays usable for the next ones.
      for (const queued of batch) queued.reject(error);
      this.pumpAppends(link);
      return;
    }
    link.appendInFlight = true;
    const onAnswer = (answer: Answer): void => {
      const response = this.responseOf(link, message, answer);
      for (const queued of batch) queued.resolve(queued === last ? response : null);
    };
    const onError = (error: unknown): void => {
      // Start the backoff before the next queued appends are looked at, so that they fail
      // at once instead of trying a peer that just failed.
      const failure = this.closed ? error : this.failureOf(link, message, error);
      if (failure instanceof PeerUnreachableError) this.onFailure(link, now, failure);
      for (const queued of batch) queued.reject(failure);
    };
    post(link.replication, link.basePath + peerRoutePaths.append, body, this.limits.rpcTimeoutMs)
      .then(onAnswer)
      .catch(onError)
      .finally(() => {
        link.appendInFlight = false;
        this.pumpAppends(link);
      });
  }

  private failAppends(link: PeerLink, error: Error): void {
    if (link.lingerTimer !== null) {
      clearTimeout(link.lingerTimer);
      link.lingerTimer = null;
    }
    const queued = link.appends.splice(0);
    for (const item of queued) item.reject(error);
  }

  private backoffError(link: PeerLink, type: string, now: number): PeerUnreachableError {
    return new PeerUnreachableError(
      link.id,
      'backoff',
      `Cannot send ${type} to ${link.id}: it failed ${link.consecutiveFailures === 1 ? 'once' : `${link.consecutiveFailures} times in a row`}; next try in ${Math.ceil(link.retryAtMs - now)} ms`,
    );
  }

  /** Sends the chunks one after another; the last one's answer is the snapshot's response. */
  private async sendSnapshot(
    link: PeerLink,
    request: SnapshotRequest,
    data: Uint8Array,
  ): Promise<Message | null> {
    const transferId = this.nextTransferId;
    this.nextTransferId = (this.nextTransferId + 1) % 2 ** 53;
    const checksum = crc32(data);
    const chunkBytes = this.limits.snapshotChunkBytes;
    for (let offset = 0; ; offset += chunkBytes) {
      const end = Math.min(data.length, offset + chunkBytes);
      const done = end === data.length;
      const chunk: SnapshotChunk = {
        from: request.from,
        transferId,
        offset,
        total: data.length,
        done,
        data: data.subarray(offset, end),
        request: offset === 0 ? request : null,
        crc32: done ? checksum : null,
      };
      const answer = await post(
        link.control,
        link.basePath + peerRoutePaths.snapshot,
        encodeSnapshotChunk(chunk),
        this.limits.snapshotChunkTimeoutMs,
      );
      if (done) return this.responseOf(link, request, answer);
      if (answer.status !== 204) {
        throw this.unexpectedAnswer(link, request, answer, `to chunk at offset ${offset}`);
      }
      if (this.closed || this.links.get(link.id) !== link) {
        throw new ShutdownError(`Cannot send snapshot to ${link.id}: the peer was removed`);
      }
    }
  }

  private responseOf(link: PeerLink, request: PeerRequest, answer: Answer): Message | null {
    const expected = responseTypeByRequestType[request.type];
    if (answer.status === 204) return null;
    if (answer.status !== 200 || expected === null) {
      throw this.unexpectedAnswer(link, request, answer, '');
    }
    const response = decodeMessage(answer.body, { depthMax: this.limits.cborDepthMax });
    if (
      response.type !== expected ||
      response.from !== request.to ||
      response.to !== request.from
    ) {
      throw new BadRequestError(
        `answered with ${response.type} from ${response.from} to ${response.to}, expected ${expected} from ${request.to} to ${request.from}`,
      );
    }
    return response;
  }

  private unexpectedAnswer(
    link: PeerLink,
    request: PeerRequest,
    answer: Answer,
    what: string,
  ): PeerUnreachableError {
    const { code, message } = errorOfBody(answer.body);
    const detail = code === '' ? '' : ` ${code}: ${message}`;
    return new PeerUnreachableError(
      link.id,
      answer.status >= 200 && answer.status < 300 ? 'malformed' : 'status',
      `Cannot send ${request.type} to ${link.id}: it answered ${answer.status}${what === '' ? '' : ` ${what}`}${detail}`,
      { status: answer.status, peerCode: code },
    );
  }

  private failureOf(link: PeerLink, message: PeerRequest, error: unknown): PhantomError {
    if (error instanceof PeerUnreachableError || error instanceof ShutdownError) return error;
    const prefix = `Cannot send ${message.type} to ${link.id} at ${link.url}`;
    if (error instanceof BadRequestError) {
      return new PeerUnreachableError(link.id, 'malformed', `${prefix}: ${error.message}`, {
        cause: error,
      });
    }
    const name = error instanceof Error ? error.name : '';
    const code = errorCodeOf(error);
    if (name === 'TimeoutError' || timeoutCodes.has(code)) {
      const timeoutMs =
        message.type === 'snapshot' ? this.limits.snapshotChunkTimeoutMs : this.limits.rpcTimeoutMs;
      const what = code === 'UND_ERR_CONNECT_TIMEOUT' ? 'no connection' : 'no answer';
      return new PeerUnreachableError(
        link.id,
        'timeout',
        `${prefix}: ${what} within ${timeoutMs} ms`,
        {
          cause: error,
        },
      );
    }
    if (code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE') {
      return new PeerUnreachableError(
        link.id,
        'malformed',
        `${prefix}: the answer is larger than ${this.limits.messageBodyBytesMax} bytes`,
        { cause: error },
      );
    }
    const detail = error instanceof Error ? error.message : String(error);
    return new PeerUnreachableError(
      link.id,
      'network',
      `${prefix}: ${detail}${code === '' ? '' : ` (${code})`}`,
      { cause: error },
    );
  }

  private onFailure(link: PeerLink, startedAtMs: number, error: PeerUnreachableError): void {
    // Requests in flight when a peer dies all fail together; they are one failure, not many,
    // or a single outage with deep pipelining would jump straight to the longest delay.
    if (startedAtMs < link.lastFailureAtMs || this.links.get(link.id) !== link) return;
    const now = this.now();
    link.consecutiveFailures++;
    const exponent = Math.min(link.consecutiveFailures - 1, 30);
    const ceilingMs = Math.min(this.limits.backoffMaxMs, this.limits.backoffBaseMs * 2 ** exponent);
    // "Equal jitter": at least half the delay, so a dead peer is not hammered, and a random
    // rest, so the members of a cluster do not all retry in the same instant.
    const delayMs = ceilingMs / 2 + (this.random() * ceilingMs) / 2;
    link.retryAtMs = now + delayMs;
    link.lastFailureAtMs = now;
    if (link.consecutiveFailures === 1) {
      this.logger?.warn(
        { peer: link.id, url: link.url, reason: error.reason },
        `Peer unreachable: ${error.message}`,
      );
    }
  }

  private onSuccess(link: PeerLink): void {
    if (link.consecutiveFailures > 0) {
      this.logger?.info(
        { peer: link.id, url: link.url, failures: link.consecutiveFailures },
        'Peer reachable again',
      );
    }
    link.consecutiveFailures = 0;
    link.retryAtMs = 0;
  }
}

function isPeerRequest(message: Message): message is PeerRequest {
  return Object.hasOwn(responseTypeByRequestType, message.type);
}

/** undici's codes for a request that did not get its answer in time. */
const timeoutCodes = new Set([
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

/** Room for an append's CBOR map beside its entries, when merging appends under a size. */
const appendEnvelopeBytes = 1024;

/** Bytes an append's entries take on the wire: payloads, and term, type and end per entry. */
function wireBytesOf(batch: EntryBatch): number {
  return payloadBytesOf(batch) + 13 * batch.count;
}

/**
 * Takes off the front of `queue` the first append and every following one that continues it
 * (same term, its entries start right after the previous one's), up to `bytesMax` wire bytes
 * of entries (the first is taken whatever its size).
 */
function takeChain(queue: QueuedAppend[], bytesMax: number): QueuedAppend[] {
  const first = queue[0]!.message;
  let lastIndex = lastIndexOf(first.entries);
  let bytes = wireBytesOf(first.entries);
  let taken = 1;
  for (; taken < queue.length; taken++) {
    const next = queue[taken]!.message;
    if (next.term !== first.term || next.prevLogIndex !== lastIndex) break;
    const nextBytes = wireBytesOf(next.entries);
    if (bytes + nextBytes > bytesMax) break;
    bytes += nextBytes;
    lastIndex = lastIndexOf(next.entries);
  }
  return queue.splice(0, taken);
}

/**
 * One append carrying the entries of a chain of appends (see {@link takeChain}), with the
 * newest commit index among them. Copies the entries once, into one packed batch.
 */
export function mergeAppends(chain: readonly AppendRequest[]): AppendRequest {
  const first = chain[0]!;
  let count = 0;
  let dataBytes = 0;
  let commit = 0;
  let withEntries: AppendRequest | null = null;
  let appendsWithEntries = 0;
  for (const message of chain) {
    count += message.entries.count;
    dataBytes += payloadBytesOf(message.entries);
    commit = Math.max(commit, message.commit);
    if (message.entries.count > 0) {
      withEntries = message;
      appendsWithEntries++;
    }
  }
  // The usual merge under a light load: a commit-only append and the next one with entries.
  // Entries of one message only: they are the merged entries as they are (they start right
  // after the first one's prevLogIndex, as the appends without entries before it end there).
  if (appendsWithEntries <= 1) {
    return { ...first, entries: withEntries?.entries ?? first.entries, commit };
  }
  // Lives until the merged request is encoded and answered.
  const { terms, types, ends } = transientEntryArrays(count);
  const data = transientBytes(dataBytes);
  let at = 0;
  let base = 0;
  for (const { entries } of chain) {
    const n = entries.count;
    if (n === 0) continue;
    terms.set(entries.terms.subarray(0, n), at);
    types.set(entries.types.subarray(0, n), at);
    for (let k = 0; k < n; k++) ends[at + k] = base + entries.ends[k]!;
    const bytes = entries.ends[n - 1]!;
    data.set(entries.data.subarray(0, bytes), base);
    at += n;
    base += bytes;
  }
  const entries: EntryBatch = {
    firstIndex: first.entries.firstIndex,
    count,
    terms,
    types,
    ends,
    data,
  };
  return { ...first, entries, commit };
}

/** A request not answered within its deadline (mapped to reason 'timeout'). */
class RequestTimeoutError extends Error {
  override readonly name = 'TimeoutError';
}

/**
 * POSTs `body` and collects the whole answer within `timeoutMs` of the call (queueing in
 * undici included). A raw undici dispatch: no response stream to build, and a plain timer
 * cleared on the answer instead of an `AbortSignal.timeout()`, whose timer outlives every
 * request and fires later for nothing (undici's own headers and body timeouts are too coarse:
 * they tick every half second).
 */
function post(
  dispatcher: Dispatcher,
  path: string,
  body: Uint8Array,
  timeoutMs: number,
): Promise<Answer> {
  return new Promise<Answer>((resolve, reject) => {
    let status = 0;
    const chunks: Buffer[] = [];
    let size = 0;
    let controller: Dispatcher.DispatchController | null = null;
    let timedOut: RequestTimeoutError | null = null;
    const timer = setTimeout(() => {
      timedOut = new RequestTimeoutError(`No answer within ${timeoutMs} ms`);
      // Not started yet (queued behind other requests): aborted as soon as it starts.
      controller?.abort(timedOut);
      reject(timedOut);
    }, timeoutMs);
    // A dispatcher that throws at once (a destroyed client) must not leave the timer behind.
    try {
      dispatcher.dispatch(
        { method: 'POST', path, headers: requestHeaders, body },
        {
          onRequestStart(started) {
            controller = started;
            if (timedOut !== null) started.abort(timedOut);
          },
          onResponseStart(_controller, statusCode) {
            status = statusCode;
          },
          onResponseData(_controller, chunk) {
            chunks.push(chunk);
            size += chunk.length;
          },
          onResponseEnd() {
            clearTimeout(timer);
            const joined = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
            resolve({
              status,
              body: new Uint8Array(joined.buffer, joined.byteOffset, joined.byteLength),
            });
          },
          onResponseError(_controller, error) {
            clearTimeout(timer);
            reject(error);
          },
        },
      );
    } catch (error) {
      clearTimeout(timer);
      reject(error instanceof Error ? error : new Error(String(error)));
    }
  });
}

function parsePeerUrl(id: NodeId, url: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(`Invalid URL for peer ${id}: '${url}'`);
  }
  if (
    (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') ||
    parsed.search !== '' ||
    parsed.hash !== ''
  ) {
    throw new TypeError(
      `Invalid URL for peer ${id}: '${url}' (expected http(s)://host:port[/prefix])`,
    );
  }
  return parsed;
}

function errorCodeOf(error: unknown): string {
  if (typeof error !== 'object' || error === null) return '';
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : '';
}

/** The `{"error":{"code","message"}}` of an error answer, or empty strings. */
function errorOfBody(body: Uint8Array): { code: string; message: string } {
  try {
    const parsed = JSON.parse(new TextDecoder().decode(body)) as {
      error?: { code?: unknown; message?: unknown };
    };
    const code = parsed.error?.code;
    const message = parsed.error?.message;
    if (typeof code === 'string' && typeof message === 'string') return { code, message };
  } catch {
    // Not a JSON error body: the status alone has to do.
  }
  return { code: '', message: '' };
}
