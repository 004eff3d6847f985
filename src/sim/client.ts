/**
 * A simulated client: issues put / get / compare-and-set / create / delete operations one at a
 * time against a few keys, like a real client would.
 *
 * - It sends to the node it believes leads and follows NotLeader hints (trying another node
 *   when there is no hint); those answers, like "dropped" and "busy", mean the request had no
 *   effect, so the same operation is retried, until the operation's deadline.
 * - A request that gets no answer in time may or may not have taken effect. A write is then
 *   finished as unknown (`info`) — resending it could apply it twice, which no history of
 *   single operations can explain — and the client moves on. A read is retried elsewhere.
 * - Every invocation and completion goes into the history, in the order they happen.
 */
import type { NodeId } from '../raft/types.js';
import type { HistoryEvent, KvInput, KvOutput } from './history.js';
import type { ClientReply, ClientRequest } from './node.js';
import type { Xoshiro128 } from './prng.js';

/** What a client needs from the simulation. */
export interface ClientHost {
  now(): number;
  readonly random: Xoshiro128;
  /** Nodes a client may contact. */
  memberIds(): readonly NodeId[];
  sendToNode(client: SimClient, node: NodeId, request: ClientRequest): void;
  /** Calls `client.onTimeout(requestId)` after `delayMs`. */
  scheduleTimeout(client: SimClient, delayMs: number, requestId: number): void;
  /** Calls `client.wake()` after `delayMs`. */
  scheduleWake(client: SimClient, delayMs: number): void;
  record(event: HistoryEvent): void;
}

/** Client timing, in virtual milliseconds. */
export interface ClientSettings {
  readonly keys: readonly string[];
  /** No answer to one request within this long: unknown (write) or retry (read). */
  readonly requestTimeoutMs: number;
  /** An operation gives up after this long in total (unknown, or failed if never sent). */
  readonly operationDeadlineMs: number;
  /** Pause between operations, in [0, thinkMsMax]. */
  readonly thinkMsMax: number;
  /** Pause before retrying after a NotLeader / busy answer. */
  readonly retryMs: number;
}

interface CurrentOperation {
  readonly input: KvInput;
  readonly startedAt: number;
  requestId: number;
  /** Some request of this operation may have been executed. */
  mayHaveApplied: boolean;
}

/** Operation counts for the summary. */
export interface ClientStats {
  ok: number;
  failed: number;
  unknown: number;
}

/** One client process. */
export class SimClient {
  /** The process name in the history. */
  readonly process: string;
  readonly stats: ClientStats = { ok: 0, failed: 0, unknown: 0 };
  private current: CurrentOperation | null = null;
  private requestSeq = 0;
  private valueSeq = 0;
  private leaderGuess: NodeId = '';
  private stopped = false;
  /** Last value seen per key, to make compare-and-set likely to succeed. */
  private readonly seen = new Map<string, string | null>();

  constructor(
    readonly id: number,
    private readonly host: ClientHost,
    private readonly settings: ClientSettings,
  ) {
    this.process = `c${id}`;
  }

  /** Whether an operation is in progress. */
  get active(): boolean {
    return this.current !== null;
  }

  /** Starts no new operation after the current one. */
  stop(): void {
    this.stopped = true;
  }

  /** Starts the next operation if idle. */
  wake(): void {
    if (this.stopped || this.current !== null) return;
    const input = this.nextInput();
    this.current = { input, startedAt: this.host.now(), requestId: 0, mayHaveApplied: false };
    this.host.record({ type: 'invoke', process: this.process, input, line: 0 });
    this.sendCurrent();
  }

  /** A node's answer to request `requestId`. */
  onReply(requestId: number, reply: ClientReply): void {
    const current = this.current;
    if (current === null || requestId !== current.requestId) return;
    if (reply.kind === 'result') {
      this.finish({ type: 'ok', process: this.process, output: reply.output, line: 0 });
      this.remember(current.input, reply.output);
      return;
    }
    // Certainly not executed: retry the same operation, at the hinted leader if any.
    if (reply.kind === 'notLeader') {
      this.leaderGuess = reply.leader === '' ? '' : reply.leader;
    } else if (reply.kind === 'dropped') {
      this.leaderGuess = '';
    }
    current.requestId = ++this.requestSeq; // invalidates the pending timeout
    const retryAt = this.host.now() + this.settings.retryMs;
    if (retryAt - current.startedAt > this.settings.operationDeadlineMs) {
      this.finishUnknownOrFailed();
      return;
    }
    this.host.scheduleTimeout(this, this.settings.retryMs, -current.requestId);
  }

  /** Timer for request `requestId`; a negative id is a scheduled retry. */
  onTimeout(requestId: number): void {
    const current = this.current;
    if (current === null) return;
    if (requestId < 0) {
      if (-requestId === current.requestId) this.sendCurrent();
      return;
    }
    if (requestId !== current.requestId) return;
    // No answer: the request may be stuck in a log or lost. A write may have happened.
    this.leaderGuess = '';
    if (current.input.f !== 'get') {
      current.mayHaveApplied = true;
      this.finishUnknownOrFailed();
      return;
    }
    if (
      this.host.now() - current.startedAt + this.settings.retryMs >
      this.settings.operationDeadlineMs
    ) {
      this.finishUnknownOrFailed();
      return;
    }
    this.sendCurrent();
  }

  private sendCurrent(): void {
    const current = this.current!;
    current.requestId = ++this.requestSeq;
    const members = this.host.memberIds();
    const target =
      this.leaderGuess !== '' && members.includes(this.leaderGuess)
        ? this.leaderGuess
        : this.host.random.pick(members);
    this.leaderGuess = target;
    this.host.sendToNode(this, target, {
      client: this.id,
      requestId: current.requestId,
      input: current.input,
    });
    this.host.scheduleTimeout(this, this.settings.requestTimeoutMs, current.requestId);
  }

  private finishUnknownOrFailed(): void {
    const current = this.current!;
    // A read never changes anything, so giving it up is always "unknown" (the checker drops
    // it); a write that never reached a log certainly failed.
    const type = current.input.f === 'get' || current.mayHaveApplied ? 'info' : 'fail';
    this.finish({ type, process: this.process, line: 0 });
  }

  private finish(event: HistoryEvent): void {
    this.current = null;
    this.host.record(event);
    if (event.type === 'ok') this.stats.ok++;
    else if (event.type === 'fail') this.stats.failed++;
    else this.stats.unknown++;
    if (!this.stopped)
      this.host.scheduleWake(this, this.host.random.float() * this.settings.thinkMsMax);
  }

  private remember(input: KvInput, output: KvOutput): void {
    if (input.f === 'get' && output.kind === 'ok' && output.value !== undefined) {
      this.seen.set(input.key, output.value);
    } else if (input.f === 'put' && output.kind === 'ok') {
      this.seen.set(input.key, input.value);
    } else if (input.f === 'delete' && output.kind === 'ok') {
      this.seen.set(input.key, null);
    }
  }

  private nextInput(): KvInput {
    const { random } = this.host;
    const key = random.pick(this.settings.keys);
    const value = `${this.process}.${++this.valueSeq}`;
    const roll = random.float();
    if (roll < 0.4) return { f: 'get', key };
    if (roll < 0.65) return { f: 'put', key, value };
    if (roll < 0.85) {
      const seen = this.seen.get(key);
      // Compare against the last value seen (likely to succeed) or a stale guess.
      const prevValue =
        seen !== undefined && seen !== null && random.chance(0.8)
          ? seen
          : `c${random.int(4)}.${random.between(1, Math.max(1, this.valueSeq))}`;
      return { f: 'put', key, value, prevValue };
    }
    if (roll < 0.93) return { f: 'put', key, value, prevExist: false };
    const seen = this.seen.get(key);
    return seen !== undefined && seen !== null && random.chance(0.5)
      ? { f: 'delete', key, prevValue: seen }
      : { f: 'delete', key };
  }
}
