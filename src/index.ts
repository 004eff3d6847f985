/**
 * @phantomdb/consensus — the library entry point.
 */
export * from './errors.js';
export * from './raft/types.js';
export * from './raft/batch.js';
