/**
 * The key-value state machine and its encodings.
 */
export * from './codec.js';
export { KvSnapshotCapture, type SnapshotHeader } from './snapshot-capture.js';
export * from './state-machine.js';
