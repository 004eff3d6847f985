/**
 * The Raft core: a deterministic state machine (see README.md in this folder for the Ready
 * loop), membership change helpers, and the data types it consumes and produces.
 */
export { RaftCore } from './core.js';
export type { ProgressStatus, RaftCoreOptions, RaftStatus } from './core.js';
export {
  applyConfChange,
  decodeConfChange,
  describeConfChangeProblem,
  encodeConfChange,
  isJoint,
  isVoter,
  membersOf,
} from './conf-change.js';
export { Inflights, Progress } from './progress.js';
export type { ProgressState } from './progress.js';
export { CommitQuorum, jointResult, majorityResult } from './quorum.js';
export type { VoteResult } from './quorum.js';
export * from './types.js';
export * from './batch.js';
