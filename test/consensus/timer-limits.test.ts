// Checks that every library setting that ends up as a timer delay is refused past the longest
// delay Node keeps (2^31 - 1 ms; a longer setTimeout fires after 1 ms), and accepted at it.
import { describe, expect, it } from 'vitest';
import {
  resolveReplicationLimits,
  resolveTransportLimits,
  timerDelayMsMax,
} from '../../src/config.js';
import { RaftConsensus } from '../../src/consensus/raft-consensus.js';

const tooLong = timerDelayMsMax + 1;

describe('timer delays', () => {
  it('caps the transport and replication times at the longest timer', () => {
    const transportTimes = [
      'snapshotTransferIdleMs',
      'rpcTimeoutMs',
      'snapshotChunkTimeoutMs',
      'connectTimeoutMs',
      'backoffBaseMs',
      'backoffMaxMs',
    ] as const;
    for (const field of transportTimes) {
      // The message names the field: a too long backoffBaseMs used to be refused only as a
      // backoffMaxMs below it.
      expect(() => resolveTransportLimits({ [field]: tooLong })).toThrow(`Invalid ${field}`);
    }
    expect(
      resolveTransportLimits({ backoffMaxMs: timerDelayMsMax, rpcTimeoutMs: timerDelayMsMax }),
    ).toMatchObject({ backoffMaxMs: timerDelayMsMax, rpcTimeoutMs: timerDelayMsMax });
    const replicationTimes = [
      'heartbeatIntervalMs',
      'requestTimeoutMs',
      'replicationTimeoutMs',
      'cursorRecordIntervalMs',
      'backoffBaseMs',
      'backoffMaxMs',
    ] as const;
    for (const field of replicationTimes) {
      expect(() =>
        resolveReplicationLimits({ backoffMaxMs: timerDelayMsMax, [field]: tooLong }),
      ).toThrow(`Invalid ${field}`);
      expect(
        resolveReplicationLimits({ backoffMaxMs: timerDelayMsMax, [field]: timerDelayMsMax })[
          field
        ],
      ).toBe(timerDelayMsMax);
    }
  });

  it("caps RaftConsensus's tick and waits at the longest timer", () => {
    const nodes = [{ id: 'n1', host: '127.0.0.1', port: 7001 }];
    for (const field of ['tickIntervalMs', 'proposalTimeoutMs', 'readTimeoutMs'] as const) {
      expect(() => new RaftConsensus('n1', nodes, { [field]: tooLong })).toThrow(
        new RegExp(`Invalid ${field}: ${tooLong} \\(expected a positive number of ms up to`),
      );
      expect(() => new RaftConsensus('n1', nodes, { [field]: 0 })).toThrow(RangeError);
      expect(() => new RaftConsensus('n1', nodes, { [field]: timerDelayMsMax })).not.toThrow();
    }
  });
});
