/**
 * Node configuration from command-line flags and `PHANTOMDB_<FLAG>` environment variables.
 *
 * The flags are a published contract (../shared/DESIGN.md, "Contracts"): scripts outside the
 * project start nodes with them. A flag given on the command line wins over the environment;
 * both win over the default. Every value is validated here, so the rest of the node can trust
 * its config; a bad value is a {@link ConfigError} that names the flag.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  raftDefaults,
  raftLimitBounds,
  replicationDefaults,
  replicationLimitBounds,
  resolveRaftLimits,
  resolveReplicationLimits,
  resolveSecurityLimits,
  securityDefaults,
  securityLimitBounds,
  type IntegerBoundsTable,
  type RaftIntegerLimit,
  type ReplicationLimits,
  type SecurityLimits,
} from '../config.js';
import { ConflictResolutionStrategy } from '../conflict/conflict-resolver.js';
import {
  memberPromotionBounds,
  memberPromotionDefaults,
  type MemberPromotion,
} from '../consensus/raft-consensus.js';
import { ReplicationStrategy, type ReplicationFallback } from '../replication/types.js';
import { Secret, readSecretFile, secretBytesMin } from '../security/secret.js';
import { TlsConfigError, TlsSettings } from '../security/tls.js';
import { TokenStore, TokensFileError } from '../security/tokens.js';
import { nodeUrl } from '../transport/url.js';

/** A flag value that cannot be used; `flag` is the flag's name without dashes. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly flag: string,
    message: string,
  ) {
    super(message);
  }
}

/** One member of the cluster as named on the command line. */
export interface PeerSpec {
  readonly id: string;
  readonly url: string;
}

/** Everything a node needs to start, validated. */
export interface NodeConfig {
  readonly id: string;
  readonly listenHost: string;
  readonly listenPort: number;
  /** Every member, this node included. */
  readonly peers: readonly PeerSpec[];
  readonly dataDir: string;
  /** Wait to be added through POST /v1/members instead of forming a cluster. */
  readonly join: boolean;
  /** How a member added as a voter gets its vote (RaftConsensus `promotion`). */
  readonly promotion: MemberPromotion;
  /** Length of one Raft tick. */
  readonly tickMs: number;
  /** Ticks without a leader before a follower campaigns (randomized in [n, 2n)). */
  readonly electionTicks: number;
  /** Ticks between leader heartbeats; below electionTicks. */
  readonly heartbeatTicks: number;
  /** How long a client request may wait for a leader, a commit or a read before it fails. */
  readonly requestTimeoutMs: number;
  /** Take a state-machine snapshot every this many applied entries. */
  readonly snapshotEntries: number;
  /** Log entries kept behind a snapshot, so a follower that lags less catches up by log. */
  readonly snapshotKeepEntries: number;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** This cluster's region id: the same on every node, fixed once data exists. */
  readonly region: string;
  /** When a write counts as done with respect to other regions. */
  readonly replicationStrategy: ReplicationStrategy;
  /** What a sync / semi-sync write does when its regions do not acknowledge it in time. */
  readonly replicationFallback: ReplicationFallback;
  /** How long a sync / semi-sync write waits for its regions. */
  readonly replicationTimeoutMs: number;
  /** How writes from other regions are merged with local ones (the same in every region). */
  readonly conflictStrategy: ConflictResolutionStrategy;
  /** Secrets, TLS, client tokens and admission limits. */
  readonly security: NodeSecurityConfig;
}

/**
 * The security settings of a node. Every field defaults to off, so a node started without
 * these flags is open as before (`npm start` needs no flags).
 */
export interface NodeSecurityConfig {
  /** Signs and checks every peer RPC and forwarded request; null: peers are not authenticated. */
  readonly clusterSecret: Secret | null;
  /** Signs and checks region replication requests; defaults to the cluster secret. */
  readonly regionSecret: Secret | null;
  /** TLS for the listener and for every connection the node opens; null: plain HTTP. */
  readonly tls: TlsSettings | null;
  /** Client bearer tokens; null: the client API is open. */
  readonly tokens: TokenStore | null;
  /** `/healthz` and `/metrics` need a `read` token too (when there are tokens). */
  readonly healthAuth: boolean;
  readonly limits: SecurityLimits;
  /** Flags that carried a secret on the command line, where `ps` shows it (main.ts hides it). */
  readonly secretsInArgv: readonly string[];
}

interface FlagSpec {
  readonly name: string;
  readonly type: 'string' | 'boolean';
  readonly placeholder?: string;
  readonly help: string;
}

/**
 * Default election timeout in ticks. With the 100 ms tick a follower campaigns 0.8-1.6 s after
 * its last heartbeat, so a cluster that loses its leader serves writes again within about 1.7 s
 * (pre-vote, vote and the new leader's first commit add a few round trips and fsyncs). etcd's
 * 1 s base would put the worst case past 2 s; much lower risks needless elections when a
 * loaded machine stalls a node's event loop for a few hundred milliseconds.
 */
export const defaultElectionTicks = 8;

/** The flags, in the order `--help` lists them. */
const flagSpecs: readonly FlagSpec[] = [
  { name: 'id', type: 'string', placeholder: 'ID', help: "this node's id (default n1)" },
  {
    name: 'listen',
    type: 'string',
    placeholder: 'HOST:PORT',
    help: 'address for the client API and peer RPCs (default 127.0.0.1:7001)',
  },
  {
    name: 'peers',
    type: 'string',
    placeholder: 'ID=URL,...',
    help: 'every member, this node included (default: this node alone, a one-node cluster)',
  },
  {
    name: 'data-dir',
    type: 'string',
    placeholder: 'DIR',
    help: 'where the log and snapshots live (default ./data/<id>)',
  },
  {
    name: 'join',
    type: 'boolean',
    help: 'start empty and wait to be added through POST /v1/members',
  },
  {
    name: 'promotion',
    type: 'string',
    placeholder: 'RULE',
    help: 'auto|immediate: a member added as a voter joins as a learner and is promoted once caught up, or votes at once (default auto)',
  },
  {
    name: 'promotion-lag-entries',
    type: 'string',
    placeholder: 'N',
    help: `auto promotion: a learner is caught up when at most N entries behind the leader (default ${memberPromotionDefaults.lagEntriesMax})`,
  },
  {
    name: 'promotion-timeout-ms',
    type: 'string',
    placeholder: 'MS',
    help: `auto promotion: how long a learner may take to catch up before the addition fails and it stays a learner (default ${memberPromotionDefaults.timeoutMs})`,
  },
  {
    name: 'tick-ms',
    type: 'string',
    placeholder: 'MS',
    help: 'length of a Raft tick (default 100)',
  },
  {
    name: 'election-ticks',
    type: 'string',
    placeholder: 'N',
    help: 'ticks without a leader before a follower campaigns, randomized in [N, 2N) (default 8)',
  },
  {
    name: 'heartbeat-ticks',
    type: 'string',
    placeholder: 'N',
    help: 'ticks between leader heartbeats, below --election-ticks (default 1)',
  },
  {
    name: 'request-timeout-ms',
    type: 'string',
    placeholder: 'MS',
    help: 'how long a client request may wait for a leader, a commit or a read (default 5000)',
  },
  {
    name: 'snapshot-entries',
    type: 'string',
    placeholder: 'N',
    help: 'snapshot the state machine every N applied entries, each member at its own offset (default 100000, as etcd)',
  },
  {
    name: 'snapshot-keep-entries',
    type: 'string',
    placeholder: 'N',
    help: 'log entries kept behind a snapshot for lagging followers (default: the smaller of 1000 and --snapshot-entries)',
  },
  {
    name: 'region',
    type: 'string',
    placeholder: 'NAME',
    help: "this cluster's region id, the same on every node and never changed (default default)",
  },
  {
    name: 'replication',
    type: 'string',
    placeholder: 'MODE',
    help: 'sync|semi-sync|async: a write waits for every region, the primary one, or none (default async)',
  },
  {
    name: 'replication-fallback',
    type: 'string',
    placeholder: 'ACTION',
    help: 'fail|async: a sync or semi-sync write its regions do not acknowledge in time fails (it stays committed here) or falls back to async (default fail)',
  },
  {
    name: 'replication-timeout-ms',
    type: 'string',
    placeholder: 'MS',
    help: 'how long a sync or semi-sync write waits for its regions, below --request-timeout-ms (default 2000, or half the request timeout when that is less)',
  },
  {
    name: 'conflict',
    type: 'string',
    placeholder: 'STRATEGY',
    help: 'latest-timestamp|lww|multi-value: how writes from other regions merge, the same in every region (default latest-timestamp)',
  },
  {
    name: 'cluster-secret',
    type: 'string',
    placeholder: 'SECRET',
    help: 'shared by the members: peer RPCs and forwarded requests are signed with it and unsigned ones refused (401); at least 16 bytes; prefer the env PHANTOMDB_CLUSTER_SECRET or --cluster-secret-file (default: none, peers are not authenticated)',
  },
  {
    name: 'cluster-secret-file',
    type: 'string',
    placeholder: 'FILE',
    help: 'read --cluster-secret from FILE (surrounding whitespace ignored)',
  },
  {
    name: 'region-secret',
    type: 'string',
    placeholder: 'SECRET',
    help: 'shared by every region that replicates with this one: /v1/replication/* requests are signed with it (default: the cluster secret)',
  },
  {
    name: 'region-secret-file',
    type: 'string',
    placeholder: 'FILE',
    help: 'read --region-secret from FILE',
  },
  {
    name: 'tls-cert',
    type: 'string',
    placeholder: 'FILE',
    help: "PEM certificate (chain): the listener serves HTTPS only, and it is this node's client certificate towards peers; peer URLs are then https:// (default: plain HTTP)",
  },
  { name: 'tls-key', type: 'string', placeholder: 'FILE', help: 'PEM private key of --tls-cert' },
  {
    name: 'tls-key-passphrase',
    type: 'string',
    placeholder: 'PASS',
    help: 'passphrase of an encrypted --tls-key (prefer the env PHANTOMDB_TLS_KEY_PASSPHRASE)',
  },
  {
    name: 'tls-ca',
    type: 'string',
    placeholder: 'FILE',
    help: 'PEM CA bundle: peers, leaders and regions must present certificates it signed, and a client certificate from another CA is refused (default: the system CAs)',
  },
  {
    name: 'tokens-file',
    type: 'string',
    placeholder: 'FILE',
    help: 'JSON bearer tokens with scopes read|readwrite|admin; clients then need "Authorization: Bearer <token>" (401 without, 403 without the scope) (default: the client API is open)',
  },
  {
    name: 'health-auth',
    type: 'boolean',
    help: '/healthz and /metrics need a read token too (default: they stay open for probes and scrapers)',
  },
  {
    name: 'auth-clock-skew-ms',
    type: 'string',
    placeholder: 'MS',
    help: `how far a signed peer or region request's clock may be off, either way (default ${securityDefaults.authClockSkewMs})`,
  },
  {
    name: 'client-inflight-max',
    type: 'string',
    placeholder: 'N',
    help: `client requests in flight per token (or per remote address without tokens); past it 429 (default ${securityDefaults.clientRequestsInFlightMax})`,
  },
  {
    name: 'inflight-max',
    type: 'string',
    placeholder: 'N',
    help: `client requests in flight on this node in all; past it 503 OVERLOADED (default ${securityDefaults.requestsInFlightMax})`,
  },
  {
    name: 'log-level',
    type: 'string',
    placeholder: 'LEVEL',
    help: 'fatal|error|warn|info|debug|trace|silent (default info)',
  },
  { name: 'help', type: 'boolean', help: 'print this help and exit' },
];

/** The `--help` text. */
export function helpText(): string {
  const rows = flagSpecs.map((spec) => {
    const left = `--${spec.name}${spec.placeholder === undefined ? '' : ` ${spec.placeholder}`}`;
    return `  ${left.padEnd(28)} ${spec.help}`;
  });
  return [
    'Usage: phantomdb [flags]',
    '',
    'Runs a PhantomDB consensus node. Every flag can also be set as an environment variable',
    'PHANTOMDB_<FLAG> (upper case, dashes as underscores), e.g. PHANTOMDB_DATA_DIR=/var/lib/p.',
    'A restarted node takes its membership from its data directory, not from --peers.',
    '',
    ...rows,
    '',
  ].join('\n');
}

/**
 * The flags that set a security limit. Their bounds are `securityLimitBounds` (src/config.ts),
 * read in that table's order, so a flag refuses just what `resolveSecurityLimits` refuses, with
 * the flag named; a limit without a flag keeps its default.
 */
export const securityLimitFlags: Readonly<Partial<Record<keyof SecurityLimits, string>>> = {
  clientRequestsInFlightMax: 'client-inflight-max',
  requestsInFlightMax: 'inflight-max',
  authClockSkewMs: 'auth-clock-skew-ms',
};

/**
 * The flags that set a Raft limit, bounded by `raftLimitBounds` (src/config.ts): a flag refuses
 * what `resolveRaftLimits` refuses and what is past the table's node-only `flagMax`, with the
 * flag named. `--election-ticks` defaults to {@link defaultElectionTicks}, not the library's.
 */
export const raftLimitFlags: Readonly<Partial<Record<RaftIntegerLimit, string>>> = {
  electionTicks: 'election-ticks',
  heartbeatTicks: 'heartbeat-ticks',
};

/**
 * The flags that set a replication limit, bounded by `replicationLimitBounds` (src/config.ts),
 * and `--replication-timeout-ms` also below `--request-timeout-ms` (a rule of the node only).
 */
export const replicationLimitFlags: Readonly<Partial<Record<keyof ReplicationLimits, string>>> = {
  replicationTimeoutMs: 'replication-timeout-ms',
};

/**
 * The flags that set a number of the promotion rule, bounded by `memberPromotionBounds`
 * (src/consensus/raft-consensus.ts), its `flagMax` included.
 */
export const memberPromotionFlags: Readonly<
  Partial<Record<Exclude<keyof MemberPromotion, 'mode'>, string>>
> = {
  lagEntriesMax: 'promotion-lag-entries',
  timeoutMs: 'promotion-timeout-ms',
};

/** The result of parsing: either a config to run with, or a request for help. */
export type ParsedConfig =
  { readonly help: true } | { readonly help: false; readonly config: NodeConfig };

/** The environment variable that sets flag `--name`: `PHANTOMDB_<NAME>`, dashes as underscores. */
export function envNameOf(name: string): string {
  return `PHANTOMDB_${name.toUpperCase().replaceAll('-', '_')}`;
}

/**
 * Parses flags and environment into a validated {@link NodeConfig}.
 * Throws {@link ConfigError} naming the first bad flag.
 */
export function parseNodeConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ParsedConfig {
  let values: Record<string, string | boolean | undefined>;
  try {
    const options = Object.fromEntries(flagSpecs.map((spec) => [spec.name, { type: spec.type }]));
    values = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new ConfigError('', `${(error as Error).message}\nRun with --help to list the flags.`);
  }
  const lookup = (name: string): string | boolean | undefined => {
    const given = values[name];
    if (given !== undefined) return given;
    const fromEnv = env[envNameOf(name)];
    if (fromEnv === undefined || fromEnv === '') return undefined;
    const spec = flagSpecs.find((candidate) => candidate.name === name);
    return spec?.type === 'boolean' ? parseBooleanEnv(name, fromEnv) : fromEnv;
  };
  const text = (name: string): string | undefined => lookup(name) as string | undefined;

  if (lookup('help') === true) return { help: true };

  const id = text('id') ?? 'n1';
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(id)) {
    throw new ConfigError(
      'id',
      `Invalid --id "${id}": use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  const [listenHost, listenPort] = parseHostPort(text('listen') ?? '127.0.0.1:7001');
  const security = parseSecurity(text, lookup, (name) => values[name] !== undefined);
  const scheme = security.tls === null ? 'http' : 'https';
  const selfUrl = nodeUrl(scheme, listenHost, listenPort);
  const peersText = text('peers');
  const peers = peersText === undefined ? [{ id, url: selfUrl }] : parsePeers(peersText);
  if (!peers.some((peer) => peer.id === id)) {
    throw new ConfigError(
      'peers',
      `Invalid --peers: it must name every member, this node ("${id}") included`,
    );
  }

  const snapshotEntries = parseIntegerFlag(
    'snapshot-entries',
    text('snapshot-entries'),
    // Taking a snapshot stalls the node (the state machine is serialized on the main thread),
    // which at 10,000 showed in p99 latency under load (bench/README.md, Performance log).
    100_000,
    1,
    1e9,
  );
  const raftFlagDefaults = { ...raftDefaults, electionTicks: defaultElectionTicks };
  // The flags were checked against the same tables, so the resolvers here cannot refuse them;
  // the call only merges them into the defaults.
  const { electionTicks, heartbeatTicks } = resolveRaftLimits({
    ...raftFlagDefaults,
    ...parseLimitFlags(text, raftLimitBounds, raftLimitFlags, raftFlagDefaults),
  });
  const requestTimeoutMs = parseIntegerFlag(
    'request-timeout-ms',
    text('request-timeout-ms'),
    5_000,
    1,
    600_000,
  );
  const replicationFlagDefaults = {
    ...replicationDefaults,
    replicationTimeoutMs: Math.max(1, Math.min(2_000, Math.floor(requestTimeoutMs / 2))),
  };
  const { replicationTimeoutMs } = resolveReplicationLimits({
    ...replicationFlagDefaults,
    ...parseLimitFlags(
      text,
      replicationLimitBounds,
      replicationLimitFlags,
      replicationFlagDefaults,
    ),
  });
  if (text('replication-timeout-ms') !== undefined && replicationTimeoutMs >= requestTimeoutMs) {
    // A write waits for its regions inside the client's request; past the request's deadline
    // the client would be told the write may not have committed, which is not the case.
    throw new ConfigError(
      'replication-timeout-ms',
      `Invalid --replication-timeout-ms ${replicationTimeoutMs}: it must be below --request-timeout-ms (${requestTimeoutMs})`,
    );
  }
  return {
    help: false,
    config: {
      id,
      listenHost,
      listenPort,
      peers,
      dataDir: path.resolve(text('data-dir') ?? path.join('data', id)),
      join: lookup('join') === true,
      promotion: {
        ...memberPromotionDefaults,
        mode: parseChoice('promotion', text('promotion') ?? memberPromotionDefaults.mode, {
          auto: 'auto',
          immediate: 'immediate',
        } as const),
        ...parseLimitFlags(
          text,
          memberPromotionBounds,
          memberPromotionFlags,
          memberPromotionDefaults,
        ),
      },
      tickMs: parseIntegerFlag('tick-ms', text('tick-ms'), 100, 1, 60_000),
      electionTicks,
      heartbeatTicks,
      requestTimeoutMs,
      snapshotEntries,
      snapshotKeepEntries: parseIntegerFlag(
        'snapshot-keep-entries',
        text('snapshot-keep-entries'),
        Math.min(1_000, snapshotEntries),
        0,
        1e9,
      ),
      logLevel: parseLogLevel(text('log-level') ?? 'info'),
      region: parseRegion(text('region') ?? 'default'),
      replicationStrategy: parseChoice('replication', text('replication') ?? 'async', {
        sync: ReplicationStrategy.SYNCHRONOUS,
        'semi-sync': ReplicationStrategy.SEMI_SYNCHRONOUS,
        async: ReplicationStrategy.ASYNCHRONOUS,
      }),
      replicationFallback: parseChoice(
        'replication-fallback',
        text('replication-fallback') ?? 'fail',
        { fail: 'fail', async: 'async' } as const,
      ),
      replicationTimeoutMs,
      conflictStrategy: parseChoice('conflict', text('conflict') ?? 'latest-timestamp', {
        'latest-timestamp': ConflictResolutionStrategy.LATEST_TIMESTAMP,
        lww: ConflictResolutionStrategy.LWW_REGISTER,
        'multi-value': ConflictResolutionStrategy.MULTI_VALUE,
      }),
      security,
    },
  };
}

/** Reads and checks the security flags; see {@link NodeSecurityConfig}. */
function parseSecurity(
  text: (name: string) => string | undefined,
  lookup: (name: string) => string | boolean | undefined,
  onCommandLine: (name: string) => boolean,
): NodeSecurityConfig {
  const secretsInArgv = ['cluster-secret', 'region-secret', 'tls-key-passphrase'].filter((name) =>
    onCommandLine(name),
  );
  const clusterSecret = secretOf('cluster-secret', text);
  const regionSecret = secretOf('region-secret', text) ?? clusterSecret;

  const certFile = text('tls-cert');
  const keyFile = text('tls-key');
  const caFile = text('tls-ca');
  const passphrase = text('tls-key-passphrase');
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new ConfigError(
      certFile === undefined ? 'tls-cert' : 'tls-key',
      'Invalid TLS flags: --tls-cert and --tls-key go together',
    );
  }
  if (certFile === undefined && (caFile !== undefined || passphrase !== undefined)) {
    throw new ConfigError(
      caFile !== undefined ? 'tls-ca' : 'tls-key-passphrase',
      `Invalid --${caFile !== undefined ? 'tls-ca' : 'tls-key-passphrase'}: it needs --tls-cert and --tls-key (a node serves TLS and speaks it to its peers, or neither)`,
    );
  }
  let tls: TlsSettings | null = null;
  if (certFile !== undefined && keyFile !== undefined) {
    try {
      tls = TlsSettings.load({
        certFile,
        keyFile,
        caFile: caFile ?? null,
        passphrase: passphrase === undefined ? null : Secret.fromText(passphrase),
      });
    } catch (error) {
      if (!(error instanceof TlsConfigError)) throw error;
      throw new ConfigError('tls-cert', error.message);
    }
  }

  const tokensFile = text('tokens-file');
  let tokens: TokenStore | null = null;
  if (tokensFile !== undefined) {
    try {
      tokens = TokenStore.load(tokensFile);
    } catch (error) {
      if (!(error instanceof TokensFileError)) throw error;
      throw new ConfigError('tokens-file', error.message);
    }
  }
  const healthAuth = lookup('health-auth') === true;
  if (healthAuth && tokens === null) {
    throw new ConfigError('health-auth', 'Invalid --health-auth: it needs --tokens-file');
  }

  const limits = resolveSecurityLimits(
    parseLimitFlags(text, securityLimitBounds, securityLimitFlags, securityDefaults),
  );
  return { clusterSecret, regionSecret, tls, tokens, healthAuth, limits, secretsInArgv };
}

/**
 * Reads the flags that set limits of one group (`flags`, by field), checked against the group's
 * bounds table in its order: a flag refuses what the group's resolver refuses, and what is past
 * the table's node-only `flagMax`, with the flag named. Returns a value for each flagged field:
 * its default when the flag is not set, raised to the limit its `atLeast` names if need be.
 */
function parseLimitFlags<Field extends string>(
  text: (name: string) => string | undefined,
  bounds: IntegerBoundsTable<Field>,
  flags: Readonly<Partial<Record<Field, string>>>,
  defaults: Readonly<Record<Field, number>>,
): Partial<Record<Field, number>> {
  const limits: Partial<Record<Field, number>> = {};
  const flagOf = (field: Field): string => {
    const flag = flags[field];
    return flag === undefined ? field : `--${flag}`;
  };
  for (const field of Object.keys(bounds) as Field[]) {
    const flag = flags[field];
    if (flag === undefined) continue;
    const { min, max, atLeast, below, flagMax } = bounds[field];
    const floor = atLeast === undefined ? min : (limits[atLeast] ?? defaults[atLeast]);
    // The default rises to the floor, so raising --client-inflight-max alone is not refused
    // because of the default --inflight-max. (No default needs lowering to a `below`: the
    // defaults of --heartbeat-ticks and --election-ticks leave room at every election value.)
    const fallback = Math.max(defaults[field], floor);
    const value = parseIntegerFlag(flag, text(flag), fallback, min, flagMax ?? max);
    if (atLeast !== undefined && value < floor) {
      throw new ConfigError(
        flag,
        `Invalid --${flag} ${value}: it must be at least ${flagOf(atLeast)} (${floor})`,
      );
    }
    if (below !== undefined) {
      const ceiling = limits[below] ?? defaults[below];
      if (value >= ceiling) {
        throw new ConfigError(
          flag,
          `Invalid --${flag} ${value}: it must be below ${flagOf(below)} (${ceiling})`,
        );
      }
    }
    limits[field] = value;
  }
  return limits;
}

/** The secret of `--<name>` or `--<name>-file`, checked for length; null when neither is set. */
function secretOf(name: string, text: (name: string) => string | undefined): Secret | null {
  const given = text(name);
  const file = text(`${name}-file`);
  if (given !== undefined && file !== undefined) {
    throw new ConfigError(name, `Invalid --${name}: give it or --${name}-file, not both`);
  }
  let secret: Secret;
  if (file !== undefined) {
    try {
      secret = readSecretFile(file);
    } catch (error) {
      throw new ConfigError(`${name}-file`, `Invalid --${name}-file: ${(error as Error).message}`);
    }
  } else if (given !== undefined) {
    secret = Secret.fromText(given);
  } else {
    return null;
  }
  if (secret.length < secretBytesMin) {
    // The length only: the secret itself never appears in a message.
    throw new ConfigError(
      name,
      `Invalid --${name}${file === undefined ? '' : '-file'}: the secret is ${secret.length} bytes, use at least ${secretBytesMin} (e.g. openssl rand -hex 32)`,
    );
  }
  return secret;
}

function parseRegion(value: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(value)) {
    throw new ConfigError(
      'region',
      `Invalid --region "${value}": use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  return value;
}

function parseChoice<T>(name: string, value: string, choices: Readonly<Record<string, T>>): T {
  if (!Object.hasOwn(choices, value)) {
    throw new ConfigError(
      name,
      `Invalid --${name} "${value}": expected one of ${Object.keys(choices).join(', ')}`,
    );
  }
  return choices[value]!;
}

function parseBooleanEnv(name: string, value: string): boolean {
  if (/^(1|true|yes|on)$/i.test(value)) return true;
  if (/^(0|false|no|off)$/i.test(value)) return false;
  throw new ConfigError(
    name,
    `Invalid PHANTOMDB_${name.toUpperCase().replaceAll('-', '_')}="${value}": expected true or false`,
  );
}

function parseHostPort(value: string): [string, number] {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  const port = match === null ? NaN : Number(match[3]);
  if (match === null || port > 65535) {
    throw new ConfigError(
      'listen',
      `Invalid --listen "${value}": expected HOST:PORT, e.g. 127.0.0.1:7001`,
    );
  }
  return [match[1] ?? match[2]!, port];
}

function parsePeers(value: string): PeerSpec[] {
  const peers: PeerSpec[] = [];
  for (const item of value.split(',')) {
    const separator = item.indexOf('=');
    const id = item.slice(0, separator).trim();
    const url = item.slice(separator + 1).trim();
    if (separator <= 0 || url === '') {
      throw new ConfigError(
        'peers',
        `Invalid --peers item "${item}": expected ID=URL, e.g. n2=http://127.0.0.1:7002`,
      );
    }
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new ConfigError('peers', `Invalid --peers item "${item}": "${url}" is not a URL`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new ConfigError(
        'peers',
        `Invalid --peers item "${item}": the URL must be http:// or https://`,
      );
    }
    if (peers.some((peer) => peer.id === id)) {
      throw new ConfigError('peers', `Invalid --peers: member "${id}" is named twice`);
    }
    peers.push({ id, url: parsed.origin });
  }
  return peers;
}

function parseIntegerFlag(
  name: string,
  value: string | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!/^\d+$/.test(value) || parsed < min || parsed > max) {
    throw new ConfigError(
      name,
      `Invalid --${name} "${value}": expected an integer in ${min}..${max}`,
    );
  }
  return parsed;
}

const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

function parseLogLevel(value: string): NodeConfig['logLevel'] {
  const level = logLevels.find((candidate) => candidate === value);
  if (level === undefined) {
    throw new ConfigError(
      'log-level',
      `Invalid --log-level "${value}": expected one of ${logLevels.join(', ')}`,
    );
  }
  return level;
}
