/**
 * Replication between regions: the ReplicationManager (the seed's class), the replicated region
 * configuration, the wire format of `/v1/replication/*`, HTTP and in-process clients, and the
 * routes a node mounts. See README.md for the model.
 */
export * from './types.js';
export * from './region-state.js';
export * from './wire.js';
export * from './client.js';
export * from './link.js';
export * from './replication-manager.js';
export * from './routes.js';
export * from './local-network.js';
export * from './metrics.js';
