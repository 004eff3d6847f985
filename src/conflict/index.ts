/**
 * Conflict resolution between regions: hybrid logical clocks, dotted version vectors and the
 * ConflictResolver. See conflict-resolver.ts for how the strategies differ.
 */
export * from './hlc.js';
export * from './dvv.js';
export * from './conflict-resolver.js';
export { NodeRanks } from './columns.js';
