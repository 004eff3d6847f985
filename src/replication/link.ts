/**
 * RegionLink: what a region's leader runs for each other region — one loop that ships this
 * region's writes there in order and in batches, one batch in flight at a time, and probes the
 * region with heartbeats while there is nothing to ship.
 *
 * The loop starts with a heartbeat (a handshake): the receiver answers with its region id, its
 * conflict strategy and its position — the highest index of this region's log it has applied,
 * which it keeps in its replicated state. Shipping resumes from that position, so a new leader
 * neither skips writes nor re-sends what arrived; the durable cursor is only the starting guess.
 * Each batch lists the latest local write of every key written after the position
 * (`KvStateMachine.localChangesSince`); the receiver commits it through its own Raft and answers
 * with its new position. A receiver that is not its region's leader answers 421 with the
 * leader's URL, which the link follows. Failures back off exponentially with jitter, and the
 * link says why in `lastError`.
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { ReplicationLimits } from '../config.js';
import type { ConflictResolutionStrategy } from '../conflict/conflict-resolver.js';
import type { KvStateMachine } from '../kv/state-machine.js';
import { encodeShippedWrites } from '../kv/versioned-codec.js';
import { RegionRequestError, type RegionClient } from './client.js';
import { RegionMismatchError } from './types.js';
import type { RegionAnswer } from './wire.js';

/** What a link needs from the manager that owns it. */
export interface LinkContext {
  readonly region: string;
  readonly kv: KvStateMachine;
  readonly client: RegionClient;
  readonly limits: ReplicationLimits;
  readonly logger: Logger | undefined;
  /** Jitter source in [0, 1). */
  readonly random: () => number;
  /** Wall clock in ms since the epoch (for status). */
  readonly now: () => number;
  conflictStrategy(): ConflictResolutionStrategy;
  /** Called whenever the link's acknowledged position moved. */
  onProgress(link: RegionLink): void;
}

/** Leader hints followed in a row before the link backs off (two nodes pointing at each other). */
const redirectsMax = 3;

/** Ships this region's writes to one other region; see the module comment. */
export class RegionLink {
  /** Highest index of this region's log the region is known to have applied. */
  position: number;
  /** The last exchange succeeded. */
  connected = false;
  /** When the region last answered (ms since the epoch). */
  lastContactMs: number | null = null;
  roundTripMs: number | null = null;
  lastError: string | null = null;
  /** Failures in a row; 0 after a success. */
  failures = 0;
  shippedWrites = 0;
  ackedWrites = 0;
  shippedBatches = 0;
  /** Sync / semi-sync writes that fell back to async waiting for this region. */
  fallbacks = 0;
  /** Ends when the loop has stopped. */
  readonly done: Promise<void>;

  private target: string;
  private running = true;
  private handshaken = false;
  private redirects = 0;
  private wakeRequested = false;
  private waking: ((woken: boolean) => void) | null = null;

  constructor(
    private readonly context: LinkContext,
    readonly id: string,
    readonly url: string,
    startPosition: number,
  ) {
    this.position = startPosition;
    this.target = url;
    this.done = this.run();
  }

  /** True while the link is backing off after a failure. */
  get failing(): boolean {
    return this.failures > 0;
  }

  /** Something new to ship: end the idle wait now. */
  wake(): void {
    if (this.waking !== null) this.waking(true);
    else this.wakeRequested = true;
  }

  /** Stops the loop (an exchange in flight finishes or fails on its own). */
  stop(): void {
    this.running = false;
    this.waking?.(false);
  }

  private async run(): Promise<void> {
    const { kv, limits } = this.context;
    while (this.running) {
      try {
        if (!this.handshaken) await this.heartbeat();
        if (!this.running) break;
        const { items, toIndex } = kv.localChangesSince(
          this.position,
          limits.batchWritesMax,
          limits.batchBytesMax,
        );
        if (items.length > 0) {
          await this.ship(items, toIndex);
          continue;
        }
        const woken = await this.idle(limits.heartbeatIntervalMs, true);
        if (!woken && this.running) await this.heartbeat();
      } catch (error) {
        if (!this.running) break;
        await this.onFailure(error);
      }
    }
  }

  private async heartbeat(): Promise<void> {
    const { context } = this;
    const started = performance.now();
    const answer = await context.client.heartbeat(
      this.target,
      { origin: context.region, strategy: context.conflictStrategy() },
      context.limits.requestTimeoutMs,
    );
    this.onAnswer(answer, started);
    this.handshaken = true;
    this.setPosition(answer.position);
  }

  private async ship(
    items: ReturnType<KvStateMachine['localChangesSince']>['items'],
    toIndex: number,
  ): Promise<void> {
    const { context } = this;
    const fromIndex = this.position + 1;
    const started = performance.now();
    const answer = await context.client.ship(
      this.target,
      {
        origin: context.region,
        fromIndex,
        toIndex,
        strategy: context.conflictStrategy(),
        items: encodeShippedWrites(items),
      },
      context.limits.requestTimeoutMs,
    );
    this.onAnswer(answer, started);
    this.shippedBatches++;
    this.shippedWrites += items.length;
    for (const item of items) if (item.index <= answer.position) this.ackedWrites++;
    if (answer.position < fromIndex - 1 || answer.position >= toIndex) {
      // Applied (or already there), or the receiver is behind what this link believed (its
      // state was rebuilt): either way its position is the truth to resume from.
      this.setPosition(answer.position);
      return;
    }
    throw new RegionRequestError(
      'malformed',
      `Region ${this.id} answered position ${answer.position} to a batch of ${fromIndex}..${toIndex}`,
    );
  }

  private onAnswer(answer: RegionAnswer, startedMs: number): void {
    const { context } = this;
    if (answer.region !== this.id) {
      throw new RegionMismatchError(
        `The node at ${this.target} belongs to region ${answer.region}, not ${this.id}: correct the URL of region ${this.id}`,
      );
    }
    const strategy = context.conflictStrategy();
    if (answer.strategy !== strategy) {
      throw new RegionMismatchError(
        `Region ${this.id} resolves conflicts with ${answer.strategy}, this region with ${strategy}: regions must use the same strategy to converge`,
      );
    }
    this.roundTripMs = Math.round((performance.now() - startedMs) * 10) / 10;
    this.lastContactMs = context.now();
    if (this.failures > 0) {
      context.logger?.info(
        { region: this.id, url: this.target, failures: this.failures },
        `Region ${this.id} reachable again`,
      );
    }
    this.connected = true;
    this.failures = 0;
    this.redirects = 0;
    this.lastError = null;
  }

  private setPosition(position: number): void {
    if (position === this.position) return;
    this.position = position;
    this.context.onProgress(this);
  }

  private async onFailure(error: unknown): Promise<void> {
    const { context } = this;
    this.handshaken = false;
    if (
      error instanceof RegionRequestError &&
      error.reason === 'notLeader' &&
      error.details.leaderUrl !== undefined &&
      error.details.leaderUrl !== '' &&
      error.details.leaderUrl !== this.target &&
      this.redirects < redirectsMax
    ) {
      // Not a failure of the region: go to its leader at once.
      this.redirects++;
      this.target = error.details.leaderUrl;
      return;
    }
    const message = error instanceof Error ? error.message : String(error);
    if (!(error instanceof RegionRequestError || error instanceof RegionMismatchError)) {
      // A bug or a local failure (e.g. the state machine); keep trying, but say so loudly.
      context.logger?.error({ err: error, region: this.id }, `Replication to ${this.id} failed`);
    }
    this.connected = false;
    this.lastError = message;
    this.failures++;
    this.redirects = 0;
    // Leader hints go stale; after a failure start again from the configured URL.
    this.target = this.url;
    if (this.failures === 1) {
      context.logger?.warn(
        { region: this.id, url: this.url },
        `Region ${this.id} unreachable: ${message}`,
      );
    }
    const { backoffBaseMs, backoffMaxMs } = context.limits;
    const ceilingMs = Math.min(backoffMaxMs, backoffBaseMs * 2 ** Math.min(this.failures - 1, 30));
    await this.idle(ceilingMs / 2 + (context.random() * ceilingMs) / 2, false);
  }

  /**
   * Waits `ms`, or less when stopped (and, if `wakeable`, when {@link wake} is called).
   * Resolves true when woken.
   */
  private idle(ms: number, wakeable: boolean): Promise<boolean> {
    if (!this.running) return Promise.resolve(false);
    if (wakeable && this.wakeRequested) {
      this.wakeRequested = false;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(false), ms);
      const finish = (woken: boolean): void => {
        if (woken && !wakeable && this.running) {
          // A backoff is not cut short by new writes; remember them for afterwards.
          this.wakeRequested = true;
          return;
        }
        clearTimeout(timer);
        this.waking = null;
        resolve(woken);
      };
      this.waking = finish;
    });
  }
}
