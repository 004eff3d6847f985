/**
 * @phantomdb/consensus — the library entry point.
 */
export * from './errors.js';
export * from './raft/types.js';
export * from './raft/batch.js';
export * from './conflict/index.js';
export * from './storage/index.js';
export { RaftCore, decodeConfChange, encodeConfChange } from './raft/index.js';
export type { ProgressStatus, RaftCoreOptions, RaftStatus } from './raft/index.js';
export * from './consensus/index.js';
export * from './replication/index.js';
export * from './security/index.js';
