/**
 * LocalRegionNetwork: regions in one process, connected without sockets — for tests, examples
 * and experiments, as LocalTransport is for Raft members. Requests still go through the wire
 * encoding (encode, validate, decode), so what works here works over HTTP; links can be cut
 * and nodes made unreachable to play outages.
 *
 * @example
 * ```ts
 * const network = new LocalRegionNetwork();
 * const us = new ConsensusManager({ ..., region: 'us', regionClient: network.client() });
 * network.register('local://us-1', us.replication);
 * network.setReachable('local://us-1', false); // an outage
 * ```
 */
import { PhantomError } from '../errors.js';
import { RegionRequestError, type RegionClient } from './client.js';
import type { ReplicationManager } from './replication-manager.js';
import { RegionNotLeaderError } from './types.js';
import {
  decodeHeartbeatRequest,
  decodeRegionAnswer,
  decodeShipRequest,
  encodeBody,
  type RegionHeartbeatRequest,
  type RegionAnswer,
  type RegionBatchRequest,
} from './wire.js';

/** Options of {@link LocalRegionNetwork}. */
export interface LocalRegionNetworkOptions {
  /** Added before each request is handled and before its answer returns. Default 0. */
  readonly delayMs?: number;
  /** Largest request body accepted. Default 16 MiB. */
  readonly bodyBytesMax?: number;
}

/** In-process regions; see the module comment. */
export class LocalRegionNetwork {
  private readonly endpoints = new Map<string, ReplicationManager>();
  private readonly unreachable = new Set<string>();
  private readonly delays = new Map<string, number>();
  private readonly delayMs: number;
  private readonly bodyBytesMax: number;

  constructor(options: LocalRegionNetworkOptions = {}) {
    this.delayMs = options.delayMs ?? 0;
    this.bodyBytesMax = options.bodyBytesMax ?? 16 * 1024 * 1024;
  }

  /** Makes `manager` answer requests sent to `url` (a node's "client URL"). */
  register(url: string, manager: ReplicationManager): void {
    this.endpoints.set(url, manager);
  }

  /** Forgets `url`: requests to it fail as if the node were gone. */
  unregister(url: string): void {
    this.endpoints.delete(url);
  }

  /** Cuts (`false`) or restores (`true`) every request to `url`. */
  setReachable(url: string, reachable: boolean): void {
    if (reachable) this.unreachable.delete(url);
    else this.unreachable.add(url);
  }

  /** Makes each hop to and from `url` take `ms` (a region far away); 0 restores the default. */
  setDelay(url: string, ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`Invalid delay: ${ms} ms`);
    if (ms === 0) this.delays.delete(url);
    else this.delays.set(url, ms);
  }

  /** A client sending into this network. */
  client(): RegionClient {
    return {
      ship: (url, request: RegionBatchRequest, timeoutMs) =>
        this.call(url, timeoutMs, encodeBody(request), (manager, body) =>
          manager.handleShip(decodeShipRequest(body, this.bodyBytesMax)),
        ),
      heartbeat: (url, request: RegionHeartbeatRequest, timeoutMs) =>
        this.call(url, timeoutMs, encodeBody(request), (manager, body) =>
          manager.handleHeartbeat(decodeHeartbeatRequest(body, this.bodyBytesMax)),
        ),
      close: () => Promise.resolve(),
    };
  }

  private async call(
    url: string,
    timeoutMs: number,
    body: Uint8Array,
    handle: (manager: ReplicationManager, body: Uint8Array) => Promise<RegionAnswer> | RegionAnswer,
  ): Promise<RegionAnswer> {
    const exchange = async (): Promise<RegionAnswer> => {
      await this.delay(url);
      const manager = this.endpoints.get(url);
      if (manager === undefined || this.unreachable.has(url)) {
        throw new RegionRequestError('network', `Cannot reach ${url}: unreachable (local network)`);
      }
      let answer: RegionAnswer;
      try {
        answer = await handle(manager, body);
      } catch (error) {
        if (error instanceof RegionNotLeaderError) {
          throw new RegionRequestError('notLeader', `${url} is not its region's leader`, {
            status: error.httpStatus,
            code: error.code,
            leaderUrl: error.leaderUrl,
          });
        }
        if (error instanceof PhantomError) {
          throw new RegionRequestError(
            'status',
            `${url} answered ${error.httpStatus} ${error.code}: ${error.message}`,
            { status: error.httpStatus, code: error.code },
          );
        }
        throw new RegionRequestError('status', `${url} answered 500 INTERNAL`, {
          status: 500,
          code: 'INTERNAL',
          cause: error,
        });
      }
      // The answer crosses the "wire" too (and an outage that began meanwhile loses it).
      await this.delay(url);
      if (this.unreachable.has(url)) {
        throw new RegionRequestError('network', `Cannot reach ${url}: connection lost`);
      }
      return decodeRegionAnswer(encodeBody(answer), 64 * 1024);
    };
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        exchange(),
        new Promise<never>((_resolve, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new RegionRequestError(
                  'timeout',
                  `Cannot reach ${url}: no answer within ${timeoutMs} ms`,
                ),
              ),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  private delay(url: string): Promise<void> {
    const ms = this.delays.get(url) ?? this.delayMs;
    return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
  }
}
