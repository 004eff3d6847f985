// Test helper (not a test file): random multi-replica histories of one key, as fast-check
// arbitraries, producing the valid DVV states the conflict tests merge in every order.
import fc from 'fast-check';
import { Hlc } from '../../src/conflict/hlc.js';
import {
  emptyVersionVector,
  recordWrite,
  syncVersions,
  type Replica,
  type Version,
  type Write,
} from '../../src/conflict/dvv.js';

/** One step of a history. */
export type HistoryOp =
  | {
      readonly kind: 'write';
      readonly replica: number;
      /**
       * Whose current context the client read: the replica it writes to ('own'), another one
       * (a number; causal histories read their own instead), or none ('blind').
       */
      readonly readFrom: number | 'own' | 'blind';
      readonly value: number | null;
      readonly advanceMs: number;
    }
  | {
      readonly kind: 'sync';
      readonly from: number;
      readonly to: number;
      readonly advanceMs: number;
    };

/** A history and how its clocks behave. */
export interface HistorySpec {
  readonly replicas: number;
  /** Per replica, added to the shared time to make its wall clock. */
  readonly skewMs: readonly number[];
  readonly ops: readonly HistoryOp[];
  /**
   * Causal clocks: clients read only from the replica they write to, and a sync is a receive
   * event for the receiving replica's clock. Then HLC order agrees with causality.
   */
  readonly causal: boolean;
}

/** Replica ids chosen so that UTF-16 order and code point order disagree (see compareNodeIds). */
export const replicaIds = ['r-a', 'r-\uff61', 'r-\u{1f600}', 'r-b'];

export function historyArb(options: {
  causal: boolean;
  opsMax?: number;
}): fc.Arbitrary<HistorySpec> {
  return fc.integer({ min: 2, max: 4 }).chain((replicas) => {
    const replica = fc.integer({ min: 0, max: replicas - 1 });
    const op: fc.Arbitrary<HistoryOp> = fc.oneof(
      fc.record({
        kind: fc.constant('write' as const),
        replica,
        readFrom: fc.oneof(fc.constantFrom('blind' as const, 'own' as const), replica),
        value: fc.option(fc.integer({ min: 0, max: 50 }), { freq: 6 }),
        advanceMs: fc.integer({ min: 0, max: 3 }),
      }),
      fc.record({
        kind: fc.constant('sync' as const),
        from: replica,
        to: replica,
        advanceMs: fc.integer({ min: 0, max: 3 }),
      }),
    );
    return fc.record({
      replicas: fc.constant(replicas),
      skewMs: fc.array(fc.integer({ min: 0, max: options.causal ? 5 : 40 }), {
        minLength: replicas,
        maxLength: replicas,
      }),
      ops: fc.array(op, { minLength: 1, maxLength: options.opsMax ?? 30 }),
      causal: fc.constant(options.causal),
    });
  });
}

/** Bytes for a small test value. */
export function valueBytes(value: number): Uint8Array {
  return Uint8Array.of(value, value >> 8);
}

/**
 * Runs a history with DVV syncs (MULTI_VALUE, unbounded) and returns every state it produced,
 * oldest first (final states last). In the causal variant a client writing at replica r reads
 * r's own context; otherwise a write's readFrom is taken as given with the blind/own choice,
 * and replicas' clocks do not observe what a sync brings, so HLCs may contradict causality.
 */
export function runHistory(spec: HistorySpec): Version[] {
  let timeMs = 1_000;
  const replicas: Replica[] = [];
  for (let r = 0; r < spec.replicas; r++) {
    const skew = spec.skewMs[r]!;
    replicas.push({
      clock: new Hlc({ node: replicaIds[r]!, wallClockMs: () => timeMs + skew }),
      region: `region-${r % 2}`,
    });
  }
  const states: (Version | undefined)[] = new Array<Version | undefined>(spec.replicas);
  const produced: Version[] = [];
  for (const op of spec.ops) {
    timeMs += op.advanceMs;
    if (op.kind === 'write') {
      const stored = states[op.replica];
      // A client carrying a context read elsewhere: the writing replica's clock may never have
      // seen the writes it overwrites.
      const readAt =
        op.readFrom === 'blind'
          ? -1
          : op.readFrom === 'own' || spec.causal
            ? op.replica
            : op.readFrom;
      const read = readAt < 0 ? undefined : states[readAt];
      const value = op.value === null ? null : valueBytes(op.value);
      const replica = replicas[op.replica]!;
      const { version } = recordWrite(
        stored,
        read?.context ?? emptyVersionVector,
        value,
        replica,
        1 << 16,
      );
      states[op.replica] = version;
      produced.push(version);
    } else {
      const from = states[op.from];
      const to = states[op.to];
      if (from === undefined || op.from === op.to) continue;
      if (to === undefined) {
        states[op.to] = from;
      } else {
        states[op.to] = syncVersions(to, from, 1 << 16).version;
        produced.push(states[op.to]!);
      }
      if (spec.causal) {
        for (const w of from.siblings) replicas[op.to]!.clock.update(w.hlc);
      }
    }
  }
  return produced;
}

/** Values of a version's siblings, for readable failure messages. */
export function describeVersion(version: Version): string {
  const sib = version.siblings.map(
    (w: Write) =>
      `${w.value === null ? 'del' : w.value.join('.')}@${w.hlc.wallMs}.${w.hlc.logical}/${w.dot.node}:${w.dot.counter}`,
  );
  return `[${sib.join(', ')}] ctx ${JSON.stringify([...version.context])}`;
}
