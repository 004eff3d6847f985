// Shipping between key-value state machines in tests, as a region's replication link does
// (KvStateMachine.localChangesSince, then applyRemoteBatch on the other side), without the
// link, so that a test controls what is shipped when.
import { ConflictResolutionStrategy } from '../../src/conflict/conflict-resolver.js';
import type { KvStateMachine } from '../../src/kv/state-machine.js';
import { encodeRemoteBatch, type RemoteBatch } from '../../src/kv/versioned-codec.js';

/** The batch of everything `from` wrote after `position`; null when it wrote nothing since. */
export function remoteBatchSince(
  from: KvStateMachine,
  position: number,
  strategy: RemoteBatch['strategy'],
): Uint8Array | null {
  const { items, toIndex } = from.localChangesSince(position, 100_000, 1 << 30);
  if (items.length === 0) return null;
  return encodeRemoteBatch({
    origin: from.region,
    fromIndex: position + 1,
    toIndex,
    strategy,
    items,
  });
}

/** Ships everything `from` wrote after `position` to `to`; null when there was nothing. */
export function ship(
  from: KvStateMachine,
  to: KvStateMachine,
  position = to.inboundPosition(from.region),
  strategy: RemoteBatch['strategy'] = ConflictResolutionStrategy.LATEST_TIMESTAMP,
): ReturnType<KvStateMachine['applyRemoteBatch']> | null {
  const payload = remoteBatchSince(from, position, strategy);
  return payload === null ? null : to.applyRemoteBatch(to.appliedIndex + 1, payload);
}
