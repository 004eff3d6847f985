/**
 * RaftConsensus (the seed's class: the Raft core driven with real timers, persistence and
 * transport callbacks) and the in-process transport that connects several of them.
 */
export { RaftConsensus, decodeCommand, encodeCommand } from './raft-consensus.js';
export type {
  ApplyCommandCallback,
  CommandResult,
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
} from './raft-consensus.js';
export { LinkDownError, LocalTransport } from './local-transport.js';
export type { LocalTransportOptions, LocalTransportStats } from './local-transport.js';
