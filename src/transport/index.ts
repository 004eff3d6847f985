/**
 * The peer transport: Raft messages between members over HTTP with CBOR bodies.
 *
 * - {@link mountPeerRoutes} (server.ts) serves `POST /raft/vote`, `/raft/append`,
 *   `/raft/snapshot` and `/raft/timeout-now` on a hyper-express server;
 * - {@link HttpPeerTransport} (client.ts) sends to peers over pooled keep-alive undici
 *   connections, with timeouts and backoff;
 * - codec.ts is the wire format; http.ts holds helpers the client HTTP API shares;
 *   {@link nodeUrl} (url.ts) builds a member's `scheme://host:port`.
 *
 * @example
 * ```ts
 * const server = new Server({ auto_close: false });
 * const routes = mountPeerRoutes(server, { handler: (m, data) => raft.handleMessage(m, data), logger });
 * installErrorHandlers(server, logger);
 * await server.listen(7001, '127.0.0.1');
 * const transport = new HttpPeerTransport({ peers, logger });
 * raft.registerSendCallback((_to, message, data) => transport.send(message, data));
 * ```
 */
export * from './codec.js';
export * from './http.js';
export * from './server.js';
export * from './client.js';
export * from './url.js';
