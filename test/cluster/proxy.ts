/**
 * TCP proxies that stand for the network between nodes, so a test can cut and heal links.
 *
 * Every directed link "a -> b" gets its own {@link LinkProxy}: node a's `--peers` names b by the
 * proxy's port, which forwards to b's real port. Peer traffic is request/response over HTTP,
 * so a link carries a's requests to b *and b's answers to them*: cutting a -> b silences what
 * a initiates towards b, while b -> a (b's requests and a's answers) keeps working. That is
 * the one-way partition a request/response transport can see.
 *
 * A cut destroys the link's open connections. New connections are then either swallowed
 * (`drop`: accepted, bytes read and discarded, nothing answered — like packets lost, the sender
 * waits for its timeout) or reset at once (`reset`: like a host that refuses, the sender
 * fails fast). Client requests never pass through a proxy.
 */
import net from 'node:net';

/** What a cut link does with new connections. */
export type CutMode = 'drop' | 'reset';

/** Counters of one proxy, for tests and failure messages. */
export interface LinkStats {
  /** Connections forwarded to the target. */
  forwarded: number;
  /** Connections swallowed or reset while cut. */
  refused: number;
  /** Bytes forwarded in both directions. */
  bytes: number;
}

/** One directed link: listens on its own port and forwards to `targetPort`. */
export class LinkProxy {
  readonly stats: LinkStats = { forwarded: 0, refused: 0, bytes: 0 };
  private readonly sockets = new Set<net.Socket>();
  private cutMode: CutMode | undefined;

  private constructor(
    /** Name of the sender ('*' for a proxy shared by every sender). */
    readonly from: string,
    /** Name of the receiver. */
    readonly to: string,
    readonly targetPort: number,
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  /** Starts a proxy on a free port of 127.0.0.1 (or on `port`). */
  static async start(options: {
    from: string;
    to: string;
    targetPort: number;
    port?: number;
  }): Promise<LinkProxy> {
    const server = net.createServer({ noDelay: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address();
    if (address === null || typeof address === 'string') {
      server.close();
      throw new Error('Cannot start a link proxy: the server has no TCP address');
    }
    const proxy = new LinkProxy(options.from, options.to, options.targetPort, server, address.port);
    server.on('connection', (socket) => proxy.onConnection(socket));
    return proxy;
  }

  /** The URL a sender uses for the receiver through this link. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Whether the link is cut, and how. */
  get mode(): CutMode | undefined {
    return this.cutMode;
  }

  /** Cuts the link: open connections are destroyed, new ones dropped or reset. */
  cut(mode: CutMode = 'drop'): void {
    this.cutMode = mode;
    this.destroyAll();
  }

  /** Heals the link. Connections swallowed while it was cut are reset, as a real peer would. */
  heal(): void {
    if (this.cutMode === undefined) return;
    this.cutMode = undefined;
    this.destroyAll();
  }

  /** Stops listening and destroys every connection. */
  async close(): Promise<void> {
    this.destroyAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private destroyAll(): void {
    for (const socket of this.sockets) destroyHard(socket);
    this.sockets.clear();
  }

  private track(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }

  private onConnection(client: net.Socket): void {
    client.on('error', () => client.destroy());
    if (this.cutMode === 'reset') {
      this.stats.refused++;
      destroyHard(client);
      return;
    }
    this.track(client);
    if (this.cutMode === 'drop') {
      this.stats.refused++;
      client.on('data', () => {});
      return;
    }
    this.stats.forwarded++;
    const upstream = net.connect({ host: '127.0.0.1', port: this.targetPort, noDelay: true });
    this.track(upstream);
    // Either side ending or failing ends the other, as a broken TCP path would.
    upstream.on('error', () => destroyHard(client));
    client.on('error', () => destroyHard(upstream));
    upstream.on('close', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('data', (chunk: Buffer) => {
      this.stats.bytes += chunk.length;
      if (!client.write(chunk)) upstream.pause();
    });
    client.on('data', (chunk: Buffer) => {
      this.stats.bytes += chunk.length;
      if (!upstream.write(chunk)) client.pause();
    });
    client.on('drain', () => upstream.resume());
    upstream.on('drain', () => client.resume());
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
  }
}

function destroyHard(socket: net.Socket): void {
  // RST rather than FIN: the peer sees ECONNRESET, not a clean end it might wait on.
  if (
    !socket.destroyed &&
    typeof socket.resetAndDestroy === 'function' &&
    socket.readyState === 'open'
  ) {
    socket.resetAndDestroy();
  } else {
    socket.destroy();
  }
}

/** The key of a directed link in a {@link LinkNetwork}. */
function linkKey(from: string, to: string): string {
  return `${from}->${to}`;
}

/**
 * The network of a cluster: one {@link LinkProxy} per directed link between named nodes, plus
 * optional inbound proxies ('*' -> node) for members whose URL every node shares (a member
 * added through `POST /v1/members` has one URL in the replicated configuration).
 */
export class LinkNetwork {
  private readonly links = new Map<string, LinkProxy>();

  /** Adds the links between `id` (real port `port`) and every node already known, both ways. */
  async addNode(id: string, port: number, ports: ReadonlyMap<string, number>): Promise<void> {
    for (const [other, otherPort] of ports) {
      if (other === id) continue;
      if (!this.links.has(linkKey(id, other))) {
        this.links.set(
          linkKey(id, other),
          await LinkProxy.start({ from: id, to: other, targetPort: otherPort }),
        );
      }
      if (!this.links.has(linkKey(other, id))) {
        this.links.set(
          linkKey(other, id),
          await LinkProxy.start({ from: other, to: id, targetPort: port }),
        );
      }
    }
  }

  /** Adds (or returns) the inbound proxy of `id`, shared by every sender. */
  async addInbound(id: string, port: number): Promise<LinkProxy> {
    const existing = this.links.get(linkKey('*', id));
    if (existing !== undefined) return existing;
    const proxy = await LinkProxy.start({ from: '*', to: id, targetPort: port });
    this.links.set(linkKey('*', id), proxy);
    return proxy;
  }

  /** The proxy of link `from -> to`; throws if there is none. */
  link(from: string, to: string): LinkProxy {
    const proxy = this.links.get(linkKey(from, to));
    if (proxy === undefined) throw new RangeError(`Unknown link ${linkKey(from, to)}`);
    return proxy;
  }

  /** Every proxy, directed links and inbound ones. */
  all(): LinkProxy[] {
    return [...this.links.values()];
  }

  /** Cuts `from -> to` only. */
  cut(from: string, to: string, mode: CutMode = 'drop'): void {
    this.link(from, to).cut(mode);
  }

  /** Cuts both directions between `a` and `b`. */
  cutBoth(a: string, b: string, mode: CutMode = 'drop'): void {
    this.cut(a, b, mode);
    this.cut(b, a, mode);
  }

  /** Cuts every link into and out of `id` (its inbound proxy too). */
  isolate(id: string, mode: CutMode = 'drop'): void {
    for (const proxy of this.links.values()) {
      if (proxy.from === id || proxy.to === id) proxy.cut(mode);
    }
  }

  /**
   * Splits the nodes into groups that cannot reach each other; links inside a group work.
   * Nodes in no group are left alone. Inbound proxies of grouped nodes are cut, since they
   * cannot tell their senders apart.
   */
  partition(groups: readonly (readonly string[])[], mode: CutMode = 'drop'): void {
    const groupOf = new Map<string, number>();
    groups.forEach((group, index) => {
      for (const id of group) {
        if (groupOf.has(id)) throw new RangeError(`Node ${id} is in two partition groups`);
        groupOf.set(id, index);
      }
    });
    for (const proxy of this.links.values()) {
      const to = groupOf.get(proxy.to);
      if (proxy.from === '*') {
        if (to !== undefined && groups.length > 1) proxy.cut(mode);
        continue;
      }
      const from = groupOf.get(proxy.from);
      if (from !== undefined && to !== undefined && from !== to) proxy.cut(mode);
    }
  }

  /** Heals every link. */
  heal(): void {
    for (const proxy of this.links.values()) proxy.heal();
  }

  /** The links that are cut now, as "a->b" strings. */
  cutLinks(): string[] {
    return [...this.links.entries()]
      .filter(([, proxy]) => proxy.mode !== undefined)
      .map(([key]) => key);
  }

  /** Closes every proxy. */
  async close(): Promise<void> {
    await Promise.all([...this.links.values()].map((proxy) => proxy.close()));
    this.links.clear();
  }
}
