/**
 * The key-value state machine and its encodings.
 */
export * from './codec.js';
export * from './snapshot-capture.js';
export * from './state-machine.js';
