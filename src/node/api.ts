/**
 * The client HTTP API of a node (the contract of ../shared/DESIGN.md, "Contracts"), mounted on
 * the hyper-express server that also carries the peer routes:
 *
 * | route                        | answer                                                     |
 * | ---------------------------- | ---------------------------------------------------------- |
 * | `PUT /v1/kv/{key}`           | 200 `{index, term}` once committed and applied; 412 / 404  |
 * | `GET /v1/kv/{key}`           | 200 value bytes (linearizable; `?consistency=stale`); 404  |
 * | `DELETE /v1/kv/{key}`        | 200 `{index, term}`; 404 when absent                       |
 * | `GET /v1/status`             | id, state, term, leader, indexes, members with roles       |
 * | `GET /v1/members`            | `{members: [{id, url, role}]}`                             |
 * | `POST /v1/members`           | `{id, url, learner?}`: 200 `{members}` once in force       |
 * | `DELETE /v1/members/{id}`    | 200 `{members}` once in force                              |
 * | `POST /v1/leader/transfer`   | `{to?}`: 200 `{leader, term}` once the new leader leads    |
 * | `GET /v1/regions`            | replication status of every region (the leader's view)     |
 * | `POST /v1/regions`           | `{id, url, primary?}`: 200 `{regions}` once in force       |
 * | `DELETE /v1/regions/{id}`    | 200 `{regions}` once in force; 404 UNKNOWN_REGION          |
 * | `GET /healthz`, `/metrics`   | liveness; Prometheus text                                  |
 *
 * Writes, linearizable reads and admin requests run on the leader: a follower forwards them
 * (forwarder.ts) and, while no leader is known or reachable, keeps looking until the request's
 * deadline; then 503 NO_LEADER with Retry-After. Bodies are JSON unless the client asks for
 * CBOR (`Accept` or `Content-Type: application/cbor`); errors are `{"error":{"code","message"}}`
 * with the status of `httpStatusByCode`.
 *
 * Writes answer once the replication strategy is satisfied, with the receipt in
 * `replication` when there are regions; when their regions do not acknowledge in time (and the fallback is `fail`)
 * they answer 503 REGION_UNAVAILABLE with `index`, `term` and `replication`: the write is
 * committed here and still ships. A key that holds concurrent writes (MULTI_VALUE siblings)
 * is read as 300 Multiple Choices listing every sibling.
 *
 * Access (see {@link ClientAccess}): with a tokens file every route needs
 * `Authorization: Bearer <token>` whose scope covers it (401 without or with an unknown token,
 * 403 with too small a scope); `/healthz` and `/metrics` stay open unless `healthAuth`. With a
 * cluster secret a request marked as forwarded must be signed by a member (401 otherwise), so
 * an outsider cannot pose as one. Each client (token, else remote address) may have
 * `clientRequestsInFlightMax` requests in flight (429 past it) and the node
 * `requestsInFlightMax` in all (503 OVERLOADED).
 */
import { performance } from 'node:perf_hooks';
import { encode as encodeCbor } from 'cbor-x';
import type { Request, Response, Server } from 'hyper-express';
import type { Logger } from 'pino';
import type { KvLimits } from '../config.js';
import type { AdmissionControl } from '../security/admission.js';
import { readSignedBody } from '../security/authenticate.js';
import {
  UnauthorizedError,
  type NonceGuard,
  type RequestSigner,
} from '../security/request-signer.js';
import { TokenStore, type TokenScope } from '../security/tokens.js';
import {
  BadRequestError,
  NotLeaderError,
  PhantomError,
  ShutdownError,
  TimeoutError,
} from '../errors.js';
import type { Version } from '../conflict/dvv.js';
import { formatHlc } from '../conflict/hlc.js';
import type { WriteOutcome } from '../consensus/consensus-manager.js';
import { encodeDelete, encodePut } from '../kv/codec.js';
import {
  ReplicationTimeoutError,
  type Region,
  type RegionInfo,
  type ReplicationFallback,
  type ReplicationStatus,
  type ReplicationStrategy,
} from '../replication/types.js';
import {
  type BodyFormat,
  cborMediaType,
  errorReplyOf,
  jsonMediaType,
  readBody,
  responseFormatOf,
  sendSigned,
  unwatchBody,
  watchBody,
} from '../transport/http.js';
import {
  forwardedByHeader,
  forwardedToHeader,
  leaderHeader,
  targetHeader,
  timeoutHeader,
  type ForwardOutcome,
  type LeaderForwarder,
} from './forwarder.js';
import type { NodeMetrics } from './metrics.js';
import {
  booleanOf,
  keyOfPath,
  kvPathPrefix,
  memberIdOf,
  memberRequestOf,
  parseQuery,
  regionIdOf,
  regionRequestOf,
  parseObjectBody,
  textOf,
  transferTargetOf,
  type MemberRequest,
} from './request.js';

/** A member as the API lists it. */
export interface MemberStatus {
  readonly id: string;
  readonly url: string;
  readonly role: 'voter' | 'learner';
}

/** `GET /v1/status`. */
export interface NodeStatus {
  readonly id: string;
  /** Where this node listens. */
  readonly url: string;
  readonly state: string;
  readonly term: number;
  /** The leader's id ('' when none is known). */
  readonly leader: string;
  /** The leader's URL ('' when unknown). */
  readonly leaderUrl: string;
  readonly commitIndex: number;
  readonly lastApplied: number;
  readonly members: readonly MemberStatus[];
  /** Keys held by this node's state machine. */
  readonly keys: number;
  /** This cluster's region. */
  readonly region: string;
  /** The replication strategy writes through this node use. */
  readonly replicationStrategy: ReplicationStrategy;
  /** Why the node stopped taking writes, or null while its storage is healthy. */
  readonly storageError: { readonly code: string; readonly message: string } | null;
}

/** `GET /v1/regions`: this region's replication settings and each region's status. */
export interface RegionsStatus {
  readonly region: string;
  readonly strategy: ReplicationStrategy;
  readonly fallback: ReplicationFallback;
  readonly conflictStrategy: string;
  /** The primary region's id ('' when none). */
  readonly primary: string;
  readonly allConnected: boolean;
  readonly regions: readonly ReplicationStatus[];
}

/** Who may use the API and how much of it; see the module comment. */
export interface ClientAccess {
  /** Bearer tokens; null: the API is open. */
  readonly tokens: TokenStore | null;
  /** `/healthz` and `/metrics` need a `read` token too. */
  readonly healthAuth: boolean;
  /** Checks requests marked as forwarded (the cluster secret); null: no secret. */
  readonly peerSigner: RequestSigner | null;
  /** Refuses replayed forwarded requests. */
  readonly forwardNonces: NonceGuard | null;
  /** Requests in flight per client and in all. */
  readonly admission: AdmissionControl;
}

/** What the API needs from the node it serves (PhantomNode implements it). */
export interface ClientApiNode {
  readonly id: string;
  readonly access: ClientAccess;
  readonly kvLimits: KvLimits;
  readonly requestTimeoutMs: number;
  readonly logger: Logger;
  readonly metrics: NodeMetrics;
  readonly forwarder: LeaderForwarder;
  /** True once shutdown began: new requests are refused with 503 SHUT_DOWN. */
  isStopping(): boolean;
  /** The storage error that stopped writes, or null. */
  storageFailure(): PhantomError | null;
  isLeader(): boolean;
  /** The leader this node knows of, with its URL; null when none (or its URL is unknown). */
  leader(): { readonly id: string; readonly url: string } | null;
  /** The value of `key` in the local state machine. */
  localGet(key: string): Uint8Array | undefined;
  /** Every sibling of `key` in the local state machine (undefined when never written). */
  localVersion(key: string): Version | undefined;
  /** Index of the last entry applied locally. */
  appliedIndex(): number;
  /**
   * Leader only: proposes a key-value command; resolves once committed and applied here and
   * replicated as the strategy says (ReplicationTimeoutError when regions did not acknowledge).
   */
  propose(payload: Uint8Array): Promise<WriteOutcome>;
  /** Leader only: resolves once reading the local state machine is linearizable. */
  readBarrier(): Promise<{ index: number }>;
  members(): MemberStatus[];
  /** Leader only: adds a member; resolves once the configuration is in force. */
  addMember(member: MemberRequest): Promise<void>;
  /** Leader only: removes a member; resolves once the configuration is in force. */
  removeMember(id: string): Promise<void>;
  /** Leader only: hands leadership over; resolves with the new leader and its term. */
  transferLeadership(to: string | undefined): Promise<{ leader: string; term: number }>;
  /** The regions this region replicates to. */
  regions(): Region[];
  /** Replication settings and per-region status (live on the leader). */
  regionsStatus(): RegionsStatus;
  /** Leader only: adds or updates a region; resolves once in force. */
  addRegion(region: RegionInfo): Promise<boolean>;
  /** Leader only: removes a region; resolves false when there is none with this id. */
  removeRegion(id: string): Promise<boolean>;
  status(): NodeStatus;
  /** Metrics text. */
  renderMetrics(): Promise<{ contentType: string; body: string }>;
  /** Counts a request in flight until the returned function is called (graceful shutdown). */
  beginRequest(): () => void;
}

/** An answer, built before it is written (forwarded answers pass through as they came). */
interface Reply {
  readonly status: number;
  readonly contentType: string;
  readonly body: Uint8Array | string;
  readonly headers?: Readonly<Record<string, string>>;
}

/** How often a request waiting for a leader looks again. */
const leaderPollMs = 20;
/** Largest body of an admin request. */
const adminBodyBytesMax = 64 * 1024;
const octetStream = 'application/octet-stream';
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const routeOptions = { max_body_length: Number.MAX_SAFE_INTEGER };
/** Methods counted by name in the request metrics; others count as OTHER (bounded labels). */
const knownMethods = new Set(['GET', 'PUT', 'POST', 'DELETE', 'HEAD', 'PATCH', 'OPTIONS']);

type Handler = (request: Request, format: BodyFormat) => Promise<Reply>;

/** What a route needs: a token scope, or `health` (open unless `healthAuth`). */
type RouteScope = TokenScope | 'health';

/**
 * Mounts the client routes on `server` (before `listen()`). Unknown routes are left to the
 * server's not-found handler (installErrorHandlers), which answers 404 as JSON.
 */
export function mountClientApi(server: Server, node: ClientApiNode): void {
  const { logger, metrics } = node;

  const { access } = node;
  /** A forwarded request's body is read (to check its signature) before the route's own limit. */
  const forwardedBodyBytesMax = Math.max(node.kvLimits.valueBytesMax, adminBodyBytesMax);

  /**
   * Authenticates and admits a request: the forwarding node's signature, the client's token
   * and scope, then the in-flight limits. Returns the function that ends its admission.
   */
  const admit = async (
    request: Request,
    response: Response,
    scope: RouteScope,
    what: string,
  ): Promise<() => void> => {
    let forwarded = false;
    if (access.peerSigner !== null && request.headers[forwardedByHeader] !== undefined) {
      await readSignedBody(request, response, access.peerSigner, forwardedBodyBytesMax, {
        ...(access.forwardNonces === null ? {} : { nonces: access.forwardNonces }),
      });
      const target = request.headers[targetHeader];
      if (target !== node.id) {
        // Signed for another node: a replay sent elsewhere, or a stale leader hint.
        throw new UnauthorizedError(
          `Cannot take a request forwarded to '${String(target).slice(0, 64)}': this node is '${node.id}'`,
        );
      }
      forwarded = true;
    }
    const tokens = access.tokens;
    let client: string | null = null;
    if (tokens !== null && (scope !== 'health' || access.healthAuth)) {
      const identity = tokens.authenticate(request.headers['authorization']);
      TokenStore.authorize(identity, scope === 'health' ? 'read' : scope, what);
      client = `token ${identity.name}`;
    }
    if (scope === 'health') return () => undefined;
    // A request a member forwarded was admitted there, against its client's own limit.
    return access.admission.admit(forwarded ? null : (client ?? `address ${request.ip}`));
  };

  const route =
    (name: string, scope: RouteScope, handler: Handler) =>
    async (request: Request, response: Response): Promise<void> => {
      const started = performance.now();
      const done = node.beginRequest();
      let format: BodyFormat = 'json';
      let status = 500;
      let release = (): void => undefined;
      try {
        watchBody(request, response, access.admission.limits.bodyReadTimeoutMs);
        format = responseFormatOf(request.headers);
        release = await admit(request, response, scope, `${request.method} ${name}`);
        if (node.isStopping()) {
          // A forwarding follower can try the next leader: this one is handing over.
          if (request.headers[forwardedByHeader] !== undefined) throw notLeader(node);
          throw new ShutdownError('Cannot accept the request: the node is shutting down');
        }
        const reply = await handler(request, format);
        status = reply.status;
        write(response, reply);
      } catch (error) {
        const reply = errorReply(error, format);
        status = reply.status;
        logError(logger, error, reply, request);
        write(response, reply);
      } finally {
        unwatchBody(request);
        const method = knownMethods.has(request.method) ? request.method : 'OTHER';
        metrics.onRequest(name, method, status, (performance.now() - started) / 1000);
        release();
        done();
      }
    };

  const notAllowed = (name: string, allow: string, scope: RouteScope = 'read') =>
    route(name, scope, (request) => {
      throw Object.assign(
        new PhantomError(
          'METHOD_NOT_ALLOWED',
          `Cannot ${request.method} ${request.path}: use ${allow.split(', ').join(' or ')}`,
        ),
        { allow },
      );
    });

  // --- Key-value --------------------------------------------------------------------------

  const kvRoute = '/v1/kv/{key}';
  server.put(
    `${kvPathPrefix}*`,
    routeOptions,
    route(kvRoute, 'readwrite', async (request, format) => {
      const key = keyOfPath(request.path, node.kvLimits);
      const query = parseQuery(request.path_query, ['prevValue', 'prevExist']);
      const conditions: { prevValue?: Uint8Array; prevExist?: boolean } = {};
      const prevValue = query.get('prevValue');
      if (prevValue !== undefined) conditions.prevValue = prevValue;
      const prevExist = query.get('prevExist');
      if (prevExist !== undefined) conditions.prevExist = booleanOf('prevExist', prevExist);
      const value = await readBody(request, node.kvLimits.valueBytesMax);
      // Encoding checks key, value and conditions before anything travels.
      const payload = encodePut(key, value, conditions, node.kvLimits);
      return onLeader(request, 'write', value, (deadline) =>
        writeOnLeader(payload, key, format, deadline),
      );
    }),
  );
  server.delete(
    `${kvPathPrefix}*`,
    routeOptions,
    route(kvRoute, 'readwrite', (request, format) => {
      const key = keyOfPath(request.path, node.kvLimits);
      const query = parseQuery(request.path_query, ['prevValue']);
      const prevValue = query.get('prevValue');
      const payload = encodeDelete(
        key,
        prevValue === undefined ? {} : { prevValue },
        node.kvLimits,
      );
      return onLeader(request, 'write', null, (deadline) =>
        writeOnLeader(payload, key, format, deadline),
      );
    }),
  );
  server.get(
    `${kvPathPrefix}*`,
    routeOptions,
    route(kvRoute, 'read', (request, format) => {
      const key = keyOfPath(request.path, node.kvLimits);
      const query = parseQuery(request.path_query, ['consistency']);
      const consistencyBytes = query.get('consistency');
      const consistency =
        consistencyBytes === undefined ? 'linearizable' : textOf('consistency', consistencyBytes);
      if (consistency === 'stale') {
        return Promise.resolve(
          valueReply(key, node.localVersion(key), node.appliedIndex(), format),
        );
      }
      if (consistency !== 'linearizable') {
        throw new BadRequestError(
          `Invalid consistency '${consistency.slice(0, 64)}': expected linearizable or stale`,
        );
      }
      return onLeader(request, 'read', null, async (deadline) => {
        const { index } = await withDeadline(
          node.readBarrier(),
          deadline,
          'The read was not confirmed by a quorum in time',
        );
        return valueReply(key, node.localVersion(key), index, format);
      });
    }),
  );
  server.any(`${kvPathPrefix}*`, routeOptions, notAllowed(kvRoute, 'GET, PUT, DELETE'));

  // --- Status, health, metrics ------------------------------------------------------------

  server.get(
    '/v1/status',
    routeOptions,
    route('/v1/status', 'read', (request, format) => {
      parseQuery(request.path_query, []);
      return Promise.resolve(objectReply(200, node.status(), format));
    }),
  );
  server.any('/v1/status', routeOptions, notAllowed('/v1/status', 'GET'));

  server.get(
    '/healthz',
    routeOptions,
    route('/healthz', 'health', (_request, format) => {
      const failure = node.storageFailure();
      const status = node.status();
      const health = {
        status: failure === null ? 'ok' : 'failed',
        id: status.id,
        state: status.state,
        leader: status.leader,
        ...(failure === null ? {} : { error: { code: failure.code, message: failure.message } }),
      };
      return Promise.resolve(objectReply(failure === null ? 200 : 503, health, format));
    }),
  );
  server.any('/healthz', routeOptions, notAllowed('/healthz', 'GET', 'health'));

  server.get(
    '/metrics',
    routeOptions,
    route('/metrics', 'health', async () => {
      const { contentType, body } = await node.renderMetrics();
      return { status: 200, contentType, body };
    }),
  );
  server.any('/metrics', routeOptions, notAllowed('/metrics', 'GET', 'health'));

  // --- Membership and leadership ----------------------------------------------------------

  const membersReply = (format: BodyFormat): Reply =>
    objectReply(200, { members: node.members() }, format);

  server.get(
    '/v1/members',
    routeOptions,
    route('/v1/members', 'read', (request, format) => {
      parseQuery(request.path_query, []);
      return Promise.resolve(membersReply(format));
    }),
  );
  server.post(
    '/v1/members',
    routeOptions,
    route('/v1/members', 'admin', async (request, format) => {
      parseQuery(request.path_query, []);
      const body = await readBody(request, adminBodyBytesMax);
      const member = memberRequestOf(parseObjectBody(request.headers['content-type'], body));
      return onLeader(request, 'admin', body, async (deadline) => {
        const existing = node.members().find((candidate) => candidate.id === member.id);
        if (existing !== undefined && (existing.role === 'voter' || member.learner)) {
          throw new PhantomError(
            'MEMBER_EXISTS',
            `Cannot add ${member.id}: it is already a ${existing.role} (${existing.url})`,
          );
        }
        await withDeadline(
          adminCall(() => node.addMember(member)),
          deadline,
          `Adding ${member.id} did not take effect in time; it may still`,
        );
        return membersReply(format);
      });
    }),
  );
  server.any('/v1/members', routeOptions, notAllowed('/v1/members', 'GET, POST'));

  server.delete(
    '/v1/members/*',
    routeOptions,
    route('/v1/members/{id}', 'admin', (request, format) => {
      parseQuery(request.path_query, []);
      const id = memberIdOf(request.path.slice('/v1/members/'.length));
      return onLeader(request, 'admin', null, async (deadline) => {
        const members = node.members();
        if (!members.some((member) => member.id === id)) {
          throw new PhantomError('UNKNOWN_MEMBER', `Cannot remove ${id}: it is not a member`);
        }
        if (id === node.id && members.some((m) => m.role === 'voter' && m.id !== id)) {
          // A leader that removes itself leaves the cluster leaderless for an election
          // timeout. Handing over first lets the next leader remove it with no gap; if the
          // hand-over fails, the removal goes ahead here.
          const handedOver = await withDeadline(
            node.transferLeadership(undefined),
            deadline,
            'Leadership transfer did not finish in time',
          ).then(
            () => true,
            () => false,
          );
          if (handedOver) {
            throw new PhantomError('NOT_LEADER', `${id} handed leadership over to be removed`);
          }
        }
        await withDeadline(
          adminCall(() => node.removeMember(id)),
          deadline,
          `Removing ${id} did not take effect in time; it may still`,
        );
        return membersReply(format);
      });
    }),
  );
  server.any('/v1/members/*', routeOptions, notAllowed('/v1/members/{id}', 'DELETE'));

  server.post(
    '/v1/leader/transfer',
    routeOptions,
    route('/v1/leader/transfer', 'admin', async (request, format) => {
      parseQuery(request.path_query, []);
      const body = await readBody(request, adminBodyBytesMax);
      const to = transferTargetOf(parseObjectBody(request.headers['content-type'], body));
      return onLeader(request, 'admin', body, async (deadline) => {
        if (to !== undefined) {
          const member = node.members().find((candidate) => candidate.id === to);
          if (member === undefined) {
            throw new PhantomError(
              'UNKNOWN_MEMBER',
              `Cannot transfer leadership to ${to}: not a member`,
            );
          }
          if (member.role !== 'voter') {
            throw new BadRequestError(
              `Cannot transfer leadership to ${to}: it is a learner, not a voter`,
            );
          }
        }
        const result = await withDeadline(
          adminCall(() => node.transferLeadership(to)),
          deadline,
          'Leadership transfer did not finish in time',
        );
        return objectReply(200, result, format);
      });
    }),
  );
  server.any('/v1/leader/transfer', routeOptions, notAllowed('/v1/leader/transfer', 'POST'));

  // --- Regions ----------------------------------------------------------------------------

  const regionsReply = (format: BodyFormat): Reply =>
    objectReply(200, { regions: node.regions() }, format);

  server.get(
    '/v1/regions',
    routeOptions,
    route('/v1/regions', 'read', (request, format) => {
      parseQuery(request.path_query, []);
      // The leader ships to the regions: only its view is live.
      return onLeader(request, 'read', null, () =>
        Promise.resolve(objectReply(200, node.regionsStatus(), format)),
      );
    }),
  );
  server.post(
    '/v1/regions',
    routeOptions,
    route('/v1/regions', 'admin', async (request, format) => {
      parseQuery(request.path_query, []);
      const body = await readBody(request, adminBodyBytesMax);
      const region = regionRequestOf(parseObjectBody(request.headers['content-type'], body));
      return onLeader(request, 'admin', body, async (deadline) => {
        await withDeadline(
          adminCall(() => node.addRegion(region)),
          deadline,
          `Adding region ${region.id} did not take effect in time; it may still`,
        );
        return regionsReply(format);
      });
    }),
  );
  server.any('/v1/regions', routeOptions, notAllowed('/v1/regions', 'GET, POST'));

  server.delete(
    '/v1/regions/*',
    routeOptions,
    route('/v1/regions/{id}', 'admin', (request, format) => {
      parseQuery(request.path_query, []);
      const id = regionIdOf(request.path.slice('/v1/regions/'.length));
      return onLeader(request, 'admin', null, async (deadline) => {
        const removed = await withDeadline(
          adminCall(() => node.removeRegion(id)),
          deadline,
          `Removing region ${id} did not take effect in time; it may still`,
        );
        if (!removed) {
          throw new PhantomError('UNKNOWN_REGION', `Cannot remove region ${id}: there is none`);
        }
        return regionsReply(format);
      });
    }),
  );
  server.any('/v1/regions/*', routeOptions, notAllowed('/v1/regions/{id}', 'DELETE'));

  // --- Leader routing ---------------------------------------------------------------------

  async function writeOnLeader(
    payload: Uint8Array,
    key: string,
    format: BodyFormat,
    deadline: number,
  ): Promise<Reply> {
    let outcome: WriteOutcome;
    try {
      outcome = await withDeadline(
        node.propose(payload),
        deadline,
        'The write was not committed in time; it may still be',
      );
    } catch (error) {
      if (!(error instanceof ReplicationTimeoutError)) throw error;
      // Committed here, not acknowledged by the regions it had to reach: say both.
      const { receipt } = error;
      return {
        ...objectReply(
          503,
          {
            error: { code: error.code, message: error.message },
            index: receipt.index,
            term: receipt.term,
            replication: receipt,
          },
          format,
        ),
        headers: { 'retry-after': '1' },
      };
    }
    const { index, term, result, replication } = outcome;
    switch (result.kind) {
      case 'ok':
        // Without regions the answer is the contract's `{index, term}` exactly.
        return objectReply(
          200,
          replication === null || replication.acknowledged.length + replication.pending.length === 0
            ? { index, term }
            : { index, term, replication },
          format,
        );
      case 'notFound':
        return objectReply(
          404,
          {
            error: { code: 'KEY_NOT_FOUND', message: `Key '${shorten(key)}' is absent` },
            index,
            term,
          },
          format,
        );
      case 'preconditionFailed':
        return objectReply(
          412,
          {
            error: {
              code: 'PRECONDITION_FAILED',
              message: `Condition failed on key '${shorten(key)}'; 'current' holds its value`,
            },
            index,
            term,
            current: currentValue(result.current, format),
          },
          format,
        );
      case 'invalid':
        throw result.error;
    }
  }

  /**
   * Runs `execute` here if this node leads, else forwards the request to the leader, looking
   * for one until the deadline. `kind` says what may be retried after a forward was lost.
   */
  async function onLeader(
    request: Request,
    kind: 'write' | 'read' | 'admin',
    body: Uint8Array | null,
    execute: (deadline: number) => Promise<Reply>,
  ): Promise<Reply> {
    const started = performance.now();
    const forwardedBy = request.headers[forwardedByHeader];
    let budgetMs = node.requestTimeoutMs;
    if (forwardedBy !== undefined) {
      const given = Number(request.headers[timeoutHeader]);
      if (Number.isFinite(given) && given > 0) budgetMs = Math.min(budgetMs, given);
    }
    const deadline = started + budgetMs;
    let lastProblem = 'no leader is known';
    for (;;) {
      const failure = node.storageFailure();
      if (failure !== null && (kind !== 'read' || node.isLeader())) throw failure;
      if (node.isLeader()) {
        try {
          return await execute(deadline);
        } catch (error) {
          if (!isLeadershipChange(error)) throw error;
          lastProblem = (error as Error).message;
        }
      } else if (forwardedBy !== undefined) {
        // One hop only: the forwarding node looks for the leader again.
        throw notLeader(node);
      } else {
        const leader = node.leader();
        // Never forward to itself: a node that names itself leader without leading is between
        // two states of its own.
        if (leader !== null && leader.id !== node.id) {
          const outcome = await node.forwarder.forward(
            leader.url,
            leader.id,
            {
              method: request.method,
              pathAndQuery: request.url,
              contentType: request.headers['content-type'],
              accept: request.headers['accept'],
              authorization: request.headers['authorization'],
              body,
            },
            Math.max(1, deadline - performance.now()),
          );
          const reply = forwardedReply(outcome, leader.id);
          if (reply !== null) {
            node.metrics.onForward('answered');
            return reply;
          }
          if (outcome.kind === 'lost' && kind !== 'read') {
            node.metrics.onForward('failed');
            throw new PhantomError(
              'PEER_UNREACHABLE',
              `Forwarded the request to the leader ${leader.id} (${leader.url}) but got no answer (${outcome.error.message}); it may or may not have been applied`,
            );
          }
          node.metrics.onForward('retried');
          lastProblem =
            outcome.kind === 'answered'
              ? `${leader.id} is no longer the leader`
              : `the leader ${leader.id} (${leader.url}) is unreachable: ${outcome.error.message}`;
        }
      }
      if (performance.now() + leaderPollMs >= deadline) {
        throw new PhantomError(
          'NO_LEADER',
          `No leader could take the request within ${budgetMs} ms (${lastProblem}); retry later`,
        );
      }
      await sleep(leaderPollMs);
      if (node.isStopping()) {
        throw new ShutdownError('Cannot complete the request: the node is shutting down');
      }
    }
  }
}

/**
 * The answer to a forwarded request that reached a node which is not the leader: always 421
 * NOT_LEADER (even when no leader is known), which the forwarding node takes as "nothing was
 * done, look for the leader again", with the leader this node knows of in a header.
 */
function notLeader(node: ClientApiNode): PhantomError {
  const leader = node.leader()?.id ?? '';
  const message =
    leader === ''
      ? `Cannot take a forwarded request: ${node.id} is not the leader and knows none`
      : `Cannot take a forwarded request: ${node.id} is not the leader; ${leader} is`;
  return Object.assign(new PhantomError('NOT_LEADER', message), { leader });
}

/** The leader's answer to pass on, or null when the request should be tried again. */
function forwardedReply(outcome: ForwardOutcome, leaderId: string): Reply | null {
  if (outcome.kind !== 'answered') return null;
  // 421: the target is not the leader (any more) and did nothing; look again.
  if (outcome.status === 421) return null;
  return {
    status: outcome.status,
    contentType: outcome.headers['content-type'] ?? octetStream,
    body: outcome.body,
    headers: { ...withoutContentType(outcome.headers), [forwardedToHeader]: leaderId },
  };
}

function withoutContentType(headers: Readonly<Record<string, string>>): Record<string, string> {
  const rest: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (name !== 'content-type') rest[name] = value;
  }
  return rest;
}

/** Errors that mean "this node is not (or no longer) the leader; nothing was done". */
function isLeadershipChange(error: unknown): boolean {
  return (
    error instanceof NotLeaderError ||
    (error instanceof PhantomError &&
      (error.code === 'NOT_LEADER' ||
        error.code === 'NO_LEADER' ||
        error.code === 'LEADERSHIP_TRANSFER'))
  );
}

/** Library calls of the admin routes: a RangeError there is a request that cannot apply. */
async function adminCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof RangeError) throw new BadRequestError(error.message);
    throw error;
  }
}

/**
 * A read: 200 with the value's bytes; 404 when absent (or deleted); 300 Multiple Choices when
 * the key holds concurrent writes (MULTI_VALUE siblings): `{key, index, siblings}`, each
 * sibling `{value, valueBase64, deleted, region, hlc, dot}` in JSON (value as bytes in CBOR),
 * newest first.
 */
function valueReply(
  key: string,
  version: Version | undefined,
  index: number,
  format: BodyFormat,
): Reply {
  const newest = version?.siblings[0];
  if (version !== undefined && version.siblings.length > 1) {
    const siblings = version.siblings.map((write) => ({
      ...siblingValue(write.value, format),
      deleted: write.value === null,
      region: write.region,
      hlc: formatHlc(write.hlc),
      dot: `${write.dot.node}:${write.dot.counter}`,
    }));
    return {
      ...objectReply(300, { key, index, siblings }, format),
      headers: { 'x-phantomdb-index': String(index) },
    };
  }
  if (newest === undefined || newest.value === null) {
    return objectReply(
      404,
      { error: { code: 'KEY_NOT_FOUND', message: `Key '${shorten(key)}' is absent` }, index },
      format,
    );
  }
  return {
    status: 200,
    contentType: octetStream,
    body: newest.value,
    headers: { 'x-phantomdb-index': String(index) },
  };
}

/** A sibling's value: bytes in CBOR; UTF-8 text (when it is) and base64 in JSON. */
function siblingValue(value: Uint8Array | null, format: BodyFormat): Record<string, unknown> {
  if (value === null)
    return format === 'cbor' ? { value: null } : { value: null, valueBase64: null };
  const current = currentValue(value, format) as Record<string, unknown>;
  return current;
}

/** The current value in a 412: bytes in CBOR; UTF-8 text (when it is) and base64 in JSON. */
function currentValue(value: Uint8Array | null, format: BodyFormat): unknown {
  if (value === null) return null;
  // A Buffer, not a Uint8Array: cbor-x tags typed arrays (tag 64), Buffers are plain bytes.
  if (format === 'cbor')
    return { value: Buffer.from(value.buffer, value.byteOffset, value.length) };
  let text: string | null;
  try {
    text = utf8.decode(value);
  } catch {
    text = null;
  }
  return { value: text, valueBase64: Buffer.from(value).toString('base64') };
}

function objectReply(status: number, body: unknown, format: BodyFormat): Reply {
  return format === 'cbor'
    ? { status, contentType: cborMediaType, body: encodeCbor(body) }
    : { status, contentType: jsonMediaType, body: JSON.stringify(body) };
}

function errorReply(error: unknown, format: BodyFormat): Reply {
  const { status, code, message } = errorReplyOf(error);
  const headers: Record<string, string> = {};
  if (status === 503 || status === 429) headers['retry-after'] = '1';
  const allow = (error as { allow?: unknown } | null)?.allow;
  if (typeof allow === 'string') headers['allow'] = allow;
  const leader = (error as { leader?: unknown } | null)?.leader;
  if (status === 421 && typeof leader === 'string') headers[leaderHeader] = leader;
  if (status === 401) headers['www-authenticate'] = 'Bearer realm="phantomdb"';
  return { ...objectReply(status, { error: { code, message } }, format), headers };
}

function logError(logger: Logger, error: unknown, reply: Reply, request: Request): void {
  const { status } = reply;
  const fields = { status, method: request.method, path: request.path };
  if (status >= 500) {
    const { code, message } = errorReplyOf(error);
    logger.error({ ...fields, code, err: error }, message);
  } else if (logger.isLevelEnabled('debug')) {
    logger.debug({ ...fields, code: errorReplyOf(error).code }, (error as Error).message);
  }
}

function write(response: Response, reply: Reply): void {
  if (response.completed) return;
  if (response.initiated) {
    response.close();
    return;
  }
  response.status(reply.status);
  response.header('content-type', reply.contentType);
  if (reply.headers !== undefined) {
    for (const [name, value] of Object.entries(reply.headers)) response.header(name, value);
  }
  // Signed when the request was a signed forward: the forwarding node checks it.
  sendSigned(response, reply.status, reply.body);
}

/** Resolves or rejects as `promise` does, or rejects with TimeoutError at `deadline`. */
function withDeadline<T>(promise: Promise<T>, deadline: number, message: string): Promise<T> {
  const remainingMs = deadline - performance.now();
  // Whatever happens to it later must not become an unhandled rejection.
  promise.catch(() => undefined);
  if (remainingMs <= 0) return Promise.reject(new TimeoutError(message));
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new TimeoutError(message)), remainingMs);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function shorten(key: string): string {
  return key.length <= 64 ? key : `${key.slice(0, 64)}...`;
}
