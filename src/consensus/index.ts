/**
 * RaftConsensus (the seed's class: the Raft core driven with real timers, persistence and
 * transport callbacks), the in-process transport that connects several of them, and the
 * ConsensusManager facade over consensus, replication between regions and conflict resolution.
 */
export {
  RaftConsensus,
  decodeCommand,
  encodeCommand,
  memberPromotionBounds,
  memberPromotionDefaults,
} from './raft-consensus.js';
export type {
  ApplyCommandCallback,
  CommandResult,
  MemberPromotion,
  RaftConsensusOptions,
  RaftConsensusStatus,
  RaftMember,
  RaftNodeInfo,
  RaftState,
  SendAppendEntriesCallback,
  SendHeartbeatCallback,
  SendMessageCallback,
  SendRequestVoteCallback,
  SendSnapshotCallback,
  SendTimeoutNowCallback,
  SnapshotCallbacks,
  SnapshotEncoder,
} from './raft-consensus.js';
export { LinkDownError, LocalTransport } from './local-transport.js';
export { ConsensusManager } from './consensus-manager.js';
export type { ConsensusConfig, WriteOutcome } from './consensus-manager.js';
export type { LocalTransportOptions, LocalTransportStats } from './local-transport.js';
