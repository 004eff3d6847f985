/**
 * Concurrent clients that drive a cluster while the test breaks it, recording every operation
 * in a {@link HistoryRecorder}.
 *
 * Two kinds of load:
 * - {@link mixedOperations}: put / linearizable get / compare-and-set on a few shared keys,
 *   with unique values, for the linearizability checker;
 * - {@link uniqueWrites}: each write to a fresh key, so every acknowledged write must be
 *   readable afterwards, whatever happened in between.
 *
 * Each client runs one operation at a time (its process in the history never has two open),
 * picks the node for each operation from `targets()` (the test decides which nodes clients may
 * talk to: all of them, or only those it expects to be reachable), and waits `pauseMs` between
 * operations so two cores are not spent on the clients alone.
 */
import { Xoshiro128 } from '../../src/sim/prng.js';
import { KvClient, type KvOutcome, type KvRequest } from './client.js';
import type { HistoryRecorder, OpRecord } from './recorder.js';
import { sleep } from './processes.js';

/** A node a client may send to. */
export interface Target {
  readonly id: string;
  readonly url: string;
}

/** Chooses the next request of a client; `seq` counts that client's operations from 0. */
export type OperationSource = (client: ClientState, seq: number) => KvRequest;

/** What a client knows, for generating requests. */
export interface ClientState {
  readonly name: string;
  readonly random: Xoshiro128;
  /** Last value this client saw for a key (read, written, or reported by a 412). */
  readonly lastSeen: Map<string, string | null>;
}

/** Options of {@link Workload}. */
export interface WorkloadOptions {
  readonly recorder: HistoryRecorder;
  /** Number of concurrent clients. */
  readonly clients: number;
  readonly operations: OperationSource;
  /** The nodes a client may pick from, asked before each operation. */
  readonly targets: () => readonly Target[];
  /** Seed of the clients' random choices (printed by the tests, for replay). */
  readonly seed: number;
  /** Deadline of one request. */
  readonly timeoutMs?: number;
  /** Pause between two operations of one client. */
  readonly pauseMs?: number;
  /** Client name prefix (default 'c'). */
  readonly prefix?: string;
  /** Called after each completed operation. */
  readonly onComplete?: (record: OpRecord) => void;
}

/**
 * Puts, linearizable gets, compare-and-sets and (optionally) deletes on `keys`; values are
 * unique per client and sequence number so the checker can tell every write apart.
 */
export function mixedOperations(
  keys: readonly string[],
  mix: { put: number; get: number; cas: number; delete?: number } = { put: 2, get: 2, cas: 2 },
): OperationSource {
  const deletes = mix.delete ?? 0;
  const total = mix.put + mix.get + mix.cas + deletes;
  return (client, seq) => {
    const key = client.random.pick(keys);
    const value = `${client.name}-${seq}`;
    const roll = client.random.float() * total;
    if (roll < mix.get) return { f: 'get', key };
    if (roll < mix.get + mix.put) return { f: 'put', key, value };
    if (roll < mix.get + mix.put + deletes) return { f: 'delete', key };
    const seen = client.lastSeen.get(key);
    // With nothing seen yet, create-only is the compare-and-set against "absent".
    if (seen === undefined || seen === null) return { f: 'put', key, value, prevExist: false };
    return { f: 'put', key, value, prevValue: seen };
  };
}

/** Each operation writes a key of its own: `<prefix><client>-<seq>` = `v<seq>`. */
export function uniqueWrites(prefix = 'w-'): OperationSource {
  return (client, seq) => ({ f: 'put', key: `${prefix}${client.name}-${seq}`, value: `v${seq}` });
}

/** A running set of clients; {@link stop} ends them after their current operation. */
export class Workload {
  private running = false;
  private loops: Promise<void>[] = [];
  private readonly kvClients: KvClient[] = [];

  constructor(private readonly options: WorkloadOptions) {}

  /** Starts the clients. */
  start(): void {
    if (this.running) throw new Error('Cannot start the workload: it is running');
    this.running = true;
    const seeds = new Xoshiro128(this.options.seed);
    for (let k = 0; k < this.options.clients; k++) {
      const kv = new KvClient({ timeoutMs: this.options.timeoutMs ?? 2_000 });
      this.kvClients.push(kv);
      const state: ClientState = {
        name: `${this.options.prefix ?? 'c'}${k + 1}`,
        random: seeds.fork(),
        lastSeen: new Map(),
      };
      this.loops.push(this.runClient(kv, state));
    }
  }

  /** Stops after the operations in flight complete (each is bounded by its timeout). */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    this.loops = [];
    await Promise.all(this.kvClients.map((kv) => kv.close()));
    this.kvClients.length = 0;
  }

  private async runClient(kv: KvClient, state: ClientState): Promise<void> {
    const { recorder, operations, targets } = this.options;
    const pauseMs = this.options.pauseMs ?? 10;
    let seq = 0;
    while (this.running) {
      const choices = targets();
      if (choices.length === 0) {
        await sleep(50);
        continue;
      }
      const target = state.random.pick(choices);
      const request = operations(state, seq++);
      const record = recorder.invoke(state.name, target.id, request);
      let outcome: KvOutcome;
      try {
        outcome = await kv.run(target.url, request);
      } catch (error) {
        // A bug of the harness, not a network fault: record it as unknown and go on, so the
        // history stays well formed; the test sees it in the counts.
        outcome = { kind: 'unknown', status: 0, code: 'HARNESS', message: String(error) };
      }
      recorder.complete(record, outcome);
      learn(state, request, outcome);
      this.options.onComplete?.(record);
      // Back off a little more after a failure, so a dead node is not hammered.
      await sleep(outcome.kind === 'ok' ? pauseMs : pauseMs + 20);
    }
  }
}

function learn(state: ClientState, request: KvRequest, outcome: KvOutcome): void {
  if (outcome.kind !== 'ok') {
    // After an unknown write the key's value is unknown: forget it, a later get relearns it.
    if (outcome.kind === 'unknown' && request.f !== 'get') state.lastSeen.delete(request.key);
    return;
  }
  if (request.f === 'get') state.lastSeen.set(request.key, outcome.value ?? null);
  else if (request.f === 'put' && outcome.result === 'ok')
    state.lastSeen.set(request.key, request.value);
  else if (request.f === 'delete' && outcome.result === 'ok') state.lastSeen.set(request.key, null);
  else if (outcome.result === 'notFound') state.lastSeen.set(request.key, null);
  // A 412 names the current value when the node says it; otherwise a get will tell.
  else if (outcome.current !== undefined) state.lastSeen.set(request.key, outcome.current);
  else state.lastSeen.delete(request.key);
}
