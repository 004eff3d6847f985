/**
 * LocalTransport: connects several {@link RaftConsensus} instances in one process, for tests,
 * examples and demos. Each message is delivered asynchronously (after `delayMs`, or on the next
 * turn of the event loop), answered by the target's handler, and the answer travels back the
 * same way. Tests shape the network: cut links one way or both, partition the cluster, isolate a
 * node, drop a share of messages at random, and heal.
 *
 * A lost message surfaces as a {@link LinkDownError} from the send callback, which is what a real
 * transport reports when a peer cannot be reached; the node then backs off that peer.
 *
 * @example
 * ```ts
 * const transport = new LocalTransport();
 * for (const raft of rafts) transport.connect(raft);
 * transport.isolate('n1'); // n1 can neither send nor receive
 * transport.heal();
 * ```
 */
import type { Message, NodeId } from '../raft/types.js';
import type { RaftConsensus, RaftNodeInfo } from './raft-consensus.js';

/** A message could not cross the in-process network (link cut, node gone, dropped). */
export class LinkDownError extends Error {
  override readonly name = 'LinkDownError';
  /** Stable code, like the transport's PeerUnreachableError. */
  readonly code = 'PEER_UNREACHABLE';
}

/** Options of {@link LocalTransport}. */
export interface LocalTransportOptions {
  /** Delay of each hop, in ms (0: the next turn of the event loop). Default 0. */
  readonly delayMs?: number;
  /** Random source for `setDropRate`. Default Math.random. */
  readonly random?: () => number;
}

/** Counters of what the network did, for assertions. */
export interface LocalTransportStats {
  delivered: number;
  dropped: number;
}

/** The in-process network; see the module comment. */
export class LocalTransport {
  private readonly nodes = new Map<NodeId, RaftConsensus>();
  private readonly cuts = new Set<string>();
  private readonly delayMs: number;
  private readonly random: () => number;
  private dropRate = 0;
  /** Counters since creation. */
  readonly stats: LocalTransportStats = { delivered: 0, dropped: 0 };

  constructor(options: LocalTransportOptions = {}) {
    const delay = options.delayMs ?? 0;
    if (!Number.isFinite(delay) || delay < 0) {
      throw new RangeError(`Invalid delayMs: ${delay} (expected a non-negative number)`);
    }
    this.delayMs = delay;
    this.random = options.random ?? Math.random;
  }

  /** Attaches a node: registers its send callback and routes messages addressed to it. */
  connect(node: RaftConsensus): void {
    const id = node.status().id;
    this.nodes.set(id, node);
    node.registerSendCallback((to, message, snapshotData) =>
      this.send(id, to, message, snapshotData),
    );
  }

  /** Detaches a node (messages to it are lost from now on). */
  disconnect(id: NodeId): void {
    this.nodes.delete(id);
  }

  /** Drops messages from `from` to `to` (one way). */
  cutOneWay(from: NodeId, to: NodeId): void {
    this.cuts.add(`${from}>${to}`);
  }

  /** Drops messages between `a` and `b`, both ways. */
  cut(a: NodeId, b: NodeId): void {
    this.cutOneWay(a, b);
    this.cutOneWay(b, a);
  }

  /** Cuts `id` off from every node connected now. */
  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) if (other !== id) this.cut(id, other);
  }

  /** Splits the connected nodes into groups that cannot reach each other. */
  partition(...groups: readonly (readonly NodeId[])[]): void {
    for (const group of groups) {
      for (const other of groups) {
        if (other === group) continue;
        for (const a of group) for (const b of other) this.cutOneWay(a, b);
      }
    }
  }

  /** Loses each message with probability `rate` (0 to 1). */
  setDropRate(rate: number): void {
    if (!(rate >= 0 && rate <= 1)) {
      throw new RangeError(`Invalid drop rate: ${rate} (expected a number in 0..1)`);
    }
    this.dropRate = rate;
  }

  /** Restores every link and stops random drops. */
  heal(): void {
    this.cuts.clear();
    this.dropRate = 0;
  }

  private passes(from: NodeId, to: NodeId): boolean {
    if (this.cuts.has(`${from}>${to}`) || !this.nodes.has(to) || !this.nodes.has(from)) {
      return false;
    }
    return this.dropRate === 0 || this.random() >= this.dropRate;
  }

  private async hop(from: NodeId, to: NodeId): Promise<void> {
    await new Promise((resolve) =>
      this.delayMs > 0 ? setTimeout(resolve, this.delayMs) : setImmediate(resolve),
    );
    if (!this.passes(from, to)) {
      this.stats.dropped++;
      throw new LinkDownError(`Cannot reach ${to} from ${from}: the link is down`);
    }
  }

  private async send(
    from: NodeId,
    to: RaftNodeInfo,
    message: Message,
    snapshotData?: Uint8Array,
  ): Promise<Message | null> {
    await this.hop(from, to.id);
    const target = this.nodes.get(to.id);
    if (target === undefined) throw new LinkDownError(`Cannot reach ${to.id}: not connected`);
    this.stats.delivered++;
    const response = await target.handleMessage(message, snapshotData);
    if (response === null) return null;
    // The answer crosses the network too, and can be lost on the way back.
    await this.hop(to.id, from);
    this.stats.delivered++;
    return response;
  }
}
