// Shared fixtures of the transport tests: a live peer server on a free port, a log capture,
// fast-check arbitraries of valid Raft messages, and a comparable form of decoded messages.
import fc from 'fast-check';
import { Server } from 'hyper-express';
import { pino, type Logger } from 'pino';
import type { TransportLimits } from '../../src/config.js';
import { EntryBatchBuilder, type EntryBatch, type EntryType } from '../../src/raft/batch.js';
import type {
  AppendRequest,
  Message,
  NodeId,
  SnapshotMeta,
  SnapshotRequest,
} from '../../src/raft/types.js';
import { closeServer, installErrorHandlers } from '../../src/transport/http.js';
import { mountPeerRoutes, type PeerHandler, type PeerRoutes } from '../../src/transport/server.js';

/** A pino logger whose lines land in `lines`, parsed. */
export function captureLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino(
    { level: 'debug' },
    { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
  );
  return { logger, lines };
}

/** A running server with the peer routes mounted. */
export interface PeerServer {
  readonly server: Server;
  readonly routes: PeerRoutes;
  readonly port: number;
  readonly url: string;
  readonly lines: Record<string, unknown>[];
  close(): void;
}

/** Starts a hyper-express server on a free port of 127.0.0.1 with the peer routes. */
export async function startPeerServer(
  handler: PeerHandler,
  options: { limits?: Partial<TransportLimits>; localId?: NodeId } = {},
): Promise<PeerServer> {
  const { logger, lines } = captureLogger();
  const server = new Server({ auto_close: false });
  const routes = mountPeerRoutes(server, { handler, logger, ...options });
  installErrorHandlers(server, logger);
  await server.listen(0, '127.0.0.1');
  const port = server.port;
  return {
    server,
    routes,
    port,
    url: `http://127.0.0.1:${port}`,
    lines,
    close: () => {
      routes.close();
      closeServer(server);
    },
  };
}

/** The response a well-behaved core gives to each request type. */
export const echoHandler: PeerHandler = (request, snapshotData) => {
  const base = { from: request.to, to: request.from, term: request.term };
  switch (request.type) {
    case 'vote':
      return Promise.resolve({
        type: 'voteResp',
        ...base,
        preVote: request.preVote,
        granted: true,
      });
    case 'append':
      return Promise.resolve({
        type: 'appendResp',
        ...base,
        success: true,
        matchIndex: request.prevLogIndex + request.entries.count,
        rejectIndex: 0,
        hintIndex: 0,
        hintTerm: 0,
      });
    case 'heartbeat':
      return Promise.resolve({ type: 'heartbeatResp', ...base, context: request.context });
    case 'snapshot':
      return Promise.resolve({
        type: 'appendResp',
        ...base,
        success: true,
        matchIndex: request.snapshot.index,
        rejectIndex: 0,
        hintIndex: 0,
        hintTerm: snapshotData?.length ?? -1,
      });
    default:
      return Promise.resolve(null);
  }
};

/** Builds a batch of `count` entries of `payloadBytes` each, all in `term`. */
export function makeBatch(
  firstIndex: number,
  count: number,
  payloadBytes: number,
  term = 1,
): EntryBatch {
  const builder = new EntryBatchBuilder(firstIndex, count, count * payloadBytes);
  const payload = new Uint8Array(payloadBytes);
  for (let k = 0; k < count; k++) {
    payload.fill(k & 0xff);
    builder.add(term, 0, payload);
  }
  return builder.finish();
}

/** An append request carrying `batch`. */
export function makeAppend(batch: EntryBatch, term = 1, from = 'n1', to = 'n2'): AppendRequest {
  return {
    type: 'append',
    from,
    to,
    term,
    prevLogIndex: batch.firstIndex - 1,
    prevLogTerm: batch.firstIndex === 1 ? 0 : 1,
    entries: batch,
    commit: batch.firstIndex - 1,
  };
}

/** A snapshot request with a small configuration. */
export function makeSnapshotRequest(index = 100, term = 3): SnapshotRequest {
  return {
    type: 'snapshot',
    from: 'n1',
    to: 'n2',
    term,
    snapshot: {
      index,
      term,
      conf: { voters: ['n1', 'n2', 'n3'], votersOutgoing: [], learners: [] },
    },
  };
}

/**
 * A message with its batch turned into plain arrays trimmed to `count`, so that two messages
 * compare equal with toEqual exactly when they carry the same data.
 */
export function comparable(message: Message): unknown {
  if (message.type !== 'append') return { ...message };
  const { entries } = message;
  const dataBytes = entries.count === 0 ? 0 : entries.ends[entries.count - 1]!;
  return {
    ...message,
    entries: {
      firstIndex: entries.firstIndex,
      count: entries.count,
      terms: Array.from(entries.terms.subarray(0, entries.count)),
      types: Array.from(entries.types.subarray(0, entries.count)),
      ends: Array.from(entries.ends.subarray(0, entries.count)),
      data: Array.from(entries.data.subarray(0, dataBytes)),
    },
  };
}

const maxIndex = 2 ** 53 - 1;

/** Node ids of 1..12 graphemes (any Unicode). */
export const nodeIdArb = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 });

const indexArb = fc.integer({ min: 0, max: maxIndex });
const rpcIdArb = fc.option(fc.integer({ min: 0, max: maxIndex }), { nil: undefined });

function baseArb(term: fc.Arbitrary<number>) {
  return fc.record(
    { from: nodeIdArb, to: nodeIdArb, term, rpcId: rpcIdArb },
    { requiredKeys: ['from', 'to', 'term'] },
  );
}

function withoutUndefinedRpcId<T extends { rpcId?: number }>(value: T): T {
  if (value.rpcId === undefined) delete value.rpcId;
  return value;
}

const confArb = fc.record({
  voters: fc.uniqueArray(nodeIdArb, { maxLength: 7 }),
  votersOutgoing: fc.uniqueArray(nodeIdArb, { maxLength: 7 }),
  learners: fc.uniqueArray(nodeIdArb, { maxLength: 3 }),
});

/** Snapshot metadata no newer than `term`; only the empty snapshot (index 0) has term 0. */
const snapshotMetaArb = (term: number): fc.Arbitrary<SnapshotMeta> => {
  const empty = confArb.map((conf) => ({ index: 0, term: 0, conf }));
  if (term === 0) return empty;
  return fc.oneof(
    empty,
    fc.record({
      index: fc.integer({ min: 1, max: maxIndex }),
      term: fc.integer({ min: 1, max: term }),
      conf: confArb,
    }),
  );
};

/** An EntryBatch whose terms run non-decreasing from prevLogTerm up to term. */
function appendArb(): fc.Arbitrary<Message> {
  return fc.integer({ min: 1, max: 2 ** 40 }).chain((term) =>
    fc
      .record({
        base: baseArb(fc.constant(term)),
        prevLogIndex: fc.integer({ min: 0, max: 2 ** 50 }),
        prevLogTerm: fc.integer({ min: 0, max: term }),
        commit: indexArb,
        entries: fc.array(
          fc.record({
            step: fc.nat({ max: 3 }),
            type: fc.constantFrom<EntryType>(0, 1, 2),
            payload: fc.uint8Array({ maxLength: 40 }),
          }),
          { maxLength: 24 },
        ),
        slack: fc.nat({ max: 5 }),
      })
      .map(({ base, prevLogIndex, prevLogTerm, commit, entries, slack }) => {
        const builder = new EntryBatchBuilder(prevLogIndex + 1, entries.length + slack);
        let entryTerm = Math.max(1, prevLogTerm);
        for (const entry of entries) {
          entryTerm = Math.min(term, entryTerm + (entry.step === 3 ? 1 : 0));
          builder.add(entryTerm, entry.type, entry.payload);
        }
        const message: AppendRequest = {
          type: 'append',
          ...base,
          prevLogIndex,
          prevLogTerm,
          entries: builder.finish(),
          commit,
        };
        return withoutUndefinedRpcId({ ...message });
      }),
  );
}

/** Any valid message of any type. */
export const messageArb: fc.Arbitrary<Message> = fc.oneof(
  fc.integer({ min: 0, max: maxIndex }).chain((term) =>
    fc
      .record({
        base: baseArb(fc.constant(term)),
        preVote: fc.boolean(),
        lastLogIndex: indexArb,
        lastLogTerm: fc.integer({ min: 0, max: term }),
        transfer: fc.boolean(),
      })
      .map(({ base, ...rest }): Message =>
        withoutUndefinedRpcId({ type: 'vote', ...base, ...rest }),
      ),
  ),
  fc
    .record({
      base: baseArb(indexArb),
      preVote: fc.boolean(),
      granted: fc.boolean(),
      // A refusal may carry the voter's commit index and the term there (at most its term).
      commit: fc.option(fc.record({ index: fc.integer({ min: 1, max: 2 ** 40 }), term: fc.nat() })),
    })
    .map(({ base, commit, ...rest }): Message =>
      withoutUndefinedRpcId({
        type: 'voteResp',
        ...base,
        ...rest,
        ...(commit === null || base.term < 1
          ? {}
          : { commit: { index: commit.index, term: 1 + (commit.term % base.term) } }),
      }),
    ),
  appendArb(),
  fc
    .record({
      base: baseArb(indexArb),
      success: fc.boolean(),
      matchIndex: indexArb,
      rejectIndex: indexArb,
      hintIndex: indexArb,
      hintTerm: indexArb,
    })
    .map(({ base, ...rest }): Message =>
      withoutUndefinedRpcId({ type: 'appendResp', ...base, ...rest }),
    ),
  fc
    .record({ base: baseArb(indexArb), commit: indexArb, context: indexArb })
    .map(({ base, ...rest }): Message =>
      withoutUndefinedRpcId({ type: 'heartbeat', ...base, ...rest }),
    ),
  fc
    .record({ base: baseArb(indexArb), context: indexArb })
    .map(({ base, ...rest }): Message =>
      withoutUndefinedRpcId({ type: 'heartbeatResp', ...base, ...rest }),
    ),
  fc
    .integer({ min: 0, max: maxIndex })
    .chain((term) =>
      fc
        .record({ base: baseArb(fc.constant(term)), snapshot: snapshotMetaArb(term) })
        .map(({ base, snapshot }): Message =>
          withoutUndefinedRpcId({ type: 'snapshot', ...base, snapshot }),
        ),
    ),
  baseArb(indexArb).map((base): Message => withoutUndefinedRpcId({ type: 'timeoutNow', ...base })),
);

/** Ways to damage a byte string. */
export type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; length: number };

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.nat({ max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 9 }),
  }),
  fc.record({
    kind: fc.constant('delete' as const),
    at: fc.nat(),
    length: fc.integer({ min: 1, max: 9 }),
  }),
);

/** Applies mutations in order; positions wrap around the current length. */
export function mutate(bytes: Uint8Array, mutations: readonly Mutation[]): Uint8Array {
  let result = Uint8Array.from(bytes);
  for (const mutation of mutations) {
    const at = result.length === 0 ? 0 : mutation.at % result.length;
    switch (mutation.kind) {
      case 'flip':
        if (result.length > 0) result[at] = result[at]! ^ (1 << mutation.bit);
        break;
      case 'set':
        if (result.length > 0) result[at] = mutation.value;
        break;
      case 'truncate':
        result = result.slice(0, at);
        break;
      case 'insert': {
        const grown = new Uint8Array(result.length + mutation.bytes.length);
        grown.set(result.subarray(0, at));
        grown.set(mutation.bytes, at);
        grown.set(result.subarray(at), at + mutation.bytes.length);
        result = grown;
        break;
      }
      case 'delete': {
        const end = Math.min(result.length, at + mutation.length);
        const shrunk = new Uint8Array(result.length - (end - at));
        shrunk.set(result.subarray(0, at));
        shrunk.set(result.subarray(end), at);
        result = shrunk;
        break;
      }
    }
  }
  return result;
}
