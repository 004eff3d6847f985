/**
 * The safety properties the simulator checks as the run goes (Raft paper, Figure 3), plus the
 * Ready contract. Each check is fed by the node driver at the moment the property could first
 * be broken, so a violation is reported at the event that caused it, with the trace leading up
 * to it.
 *
 * - Election safety: at most one leader per term, across every configuration.
 * - Log matching: two logs holding an entry with the same index and term hold the same entry,
 *   and (checked by induction) the same entry before it.
 * - Leader completeness: every entry known committed is in the log of every later leader.
 * - State machine safety: no two nodes apply different entries at one index; a committed entry
 *   is never changed.
 * - Commit monotonicity: a node's commit index never goes back, across restarts not below what
 *   it had persisted.
 * - Durability (checked by the simulation, which sees every node's storage): when a leader
 *   commits an entry, a majority of voters already hold it in stable storage.
 * - The Ready contract: only leader requests before persisting, at most one response per
 *   request, of the right type.
 */
import { EntryType, payloadOf, type EntryBatch } from '../raft/batch.js';
import type { LogStore, Message, NodeId } from '../raft/types.js';

/** A broken property: the run fails with this message. */
export class SafetyViolation extends Error {
  override readonly name = 'SafetyViolation';
  constructor(
    readonly property: string,
    message: string,
  ) {
    super(`${property}: ${message}`);
  }
}

/** FNV-1a 32 of an entry's type and payload: enough to tell two entries apart. */
export function entryDigest(type: number, payload: Uint8Array): number {
  let hash = (0x811c9dc5 ^ type) >>> 0;
  hash = Math.imul(hash, 0x01000193);
  for (let k = 0; k < payload.length; k++) {
    hash = Math.imul(hash ^ payload[k]!, 0x01000193);
  }
  return hash >>> 0;
}

interface LoggedEntry {
  readonly digest: number;
  readonly previousTerm: number;
}

interface CommittedEntry {
  readonly term: number;
  /** Digest once some node applied it (null while only its term is known). */
  digest: number | null;
}

const requestResponse: Readonly<Record<string, string>> = {
  vote: 'voteResp',
  append: 'appendResp',
  snapshot: 'appendResp',
  heartbeat: 'heartbeatResp',
};

/** Request types that may leave before the Ready is persisted. */
const earlyTypes: ReadonlySet<string> = new Set(['append', 'heartbeat', 'snapshot', 'timeoutNow']);

/** Collects what every node did and throws {@link SafetyViolation} on the first broken rule. */
export class SafetyMonitor {
  private readonly leaders = new Map<number, NodeId>();
  /** (index, term) -> the entry, as first seen in any node's log. */
  private readonly logged = new Map<string, LoggedEntry>();
  /** index -> the committed entry's term (and digest once applied somewhere). */
  private readonly committed = new Map<number, CommittedEntry>();
  /** Highest index any node reported committed. */
  private committedIndex = 0;
  /** Per node, requests delivered since its last Ready: rpcId -> request type. */
  private readonly openRequests = new Map<NodeId, Map<number, string>>();
  /** Distinct (term, leader) pairs seen. */
  elections = 0;

  /** A node took the leader role in `term`; `log` is its log at that moment. */
  onLeader(node: NodeId, term: number, log: LogStore): void {
    const known = this.leaders.get(term);
    if (known !== undefined && known !== node) {
      throw new SafetyViolation(
        'election safety',
        `${node} became leader of term ${term}, which ${known} already leads`,
      );
    }
    if (known === undefined) {
      this.leaders.set(term, node);
      this.elections++;
    }
    // Leader completeness: everything committed so far must be in the new leader's log.
    const lastIndex = log.lastIndex();
    if (lastIndex < this.committedIndex) {
      throw new SafetyViolation(
        'leader completeness',
        `${node} leads term ${term} with a log ending at ${lastIndex}, but ${this.committedIndex} is committed`,
      );
    }
    for (let index = Math.max(1, log.firstIndex()); index <= this.committedIndex; index++) {
      const entry = this.committed.get(index);
      if (entry !== undefined && log.termAt(index) !== entry.term) {
        throw new SafetyViolation(
          'leader completeness',
          `${node} leads term ${term} holding term ${log.termAt(index)} at index ${index}, where term ${entry.term} was committed`,
        );
      }
    }
  }

  /** Entries a node is about to persist (Ready.entries); `log` already holds them. */
  onEntries(node: NodeId, batch: EntryBatch, log: LogStore): void {
    let previousTerm = log.termAt(batch.firstIndex - 1);
    for (let k = 0; k < batch.count; k++) {
      const index = batch.firstIndex + k;
      const term = batch.terms[k]!;
      const digest = entryDigest(batch.types[k]!, payloadOf(batch, k));
      const key = `${index}/${term}`;
      const seen = this.logged.get(key);
      if (seen === undefined) {
        this.logged.set(key, { digest, previousTerm });
      } else if (seen.digest !== digest || seen.previousTerm !== previousTerm) {
        throw new SafetyViolation(
          'log matching',
          `${node} holds entry ${index}/${term} ${seen.digest !== digest ? 'with different contents' : `after term ${previousTerm} (elsewhere after term ${seen.previousTerm})`} than another log`,
        );
      }
      // A different entry at a committed index is no violation by itself: a deposed leader
      // still appends to its own log until it hears of the new term. Committing or applying
      // it would be (onCommit, onApply, onLeader check that).
      previousTerm = term;
    }
  }

  /** A node reports commit index `commit`; its log gives the terms of newly committed entries. */
  onCommit(node: NodeId, commit: number, log: LogStore): void {
    if (commit <= this.committedIndex) return;
    const from = Math.max(this.committedIndex + 1, log.firstIndex());
    for (let index = from; index <= commit; index++) {
      const term = log.termAt(index);
      const known = this.committed.get(index);
      if (known === undefined) this.committed.set(index, { term, digest: null });
      else if (known.term !== term) {
        throw new SafetyViolation(
          'state machine safety',
          `${node} commits term ${term} at index ${index}, where term ${known.term} was committed`,
        );
      }
    }
    this.committedIndex = commit;
  }

  /** A node applies (or skips) committed entries. */
  onApply(node: NodeId, batch: EntryBatch): void {
    for (let k = 0; k < batch.count; k++) {
      const index = batch.firstIndex + k;
      const term = batch.terms[k]!;
      const digest = entryDigest(batch.types[k]!, payloadOf(batch, k));
      const known = this.committed.get(index);
      if (known === undefined) {
        this.committed.set(index, { term, digest });
        continue;
      }
      if (known.term !== term || (known.digest !== null && known.digest !== digest)) {
        throw new SafetyViolation(
          'state machine safety',
          `${node} applies ${describeEntry(batch, k)} at index ${index}, but term ${known.term}${known.digest === null ? '' : ` digest ${known.digest.toString(16)}`} was committed there`,
        );
      }
      known.digest = digest;
    }
    this.committedIndex = Math.max(this.committedIndex, batch.firstIndex + batch.count - 1);
  }

  /** A node's commit index, after any input; `floor` is what it must not go below. */
  checkCommitMonotonic(node: NodeId, commit: number, floor: number): void {
    if (commit < floor) {
      throw new SafetyViolation(
        'commit monotonicity',
        `${node}'s commit index went back from ${floor} to ${commit}`,
      );
    }
  }

  /** A request was delivered to `node` under `rpcId`. */
  onRequest(node: NodeId, rpcId: number, type: string): void {
    let open = this.openRequests.get(node);
    if (open === undefined) {
      open = new Map<number, string>();
      this.openRequests.set(node, open);
    }
    open.set(rpcId, type);
  }

  /** Checks a Ready's messages against the contract. */
  onReadyMessages(node: NodeId, early: readonly Message[], afterPersist: readonly Message[]): void {
    this.onEarlyMessages(node, early);
    const open = this.openRequests.get(node);
    for (const message of afterPersist) {
      if (message.type === 'vote' || message.type === 'timeoutNow') continue;
      if (earlyTypes.has(message.type)) continue;
      const rpcId = message.rpcId;
      if (rpcId === undefined) {
        throw new SafetyViolation(
          'ready contract',
          `${node} sent a ${message.type} without an rpcId`,
        );
      }
      const type = open?.get(rpcId);
      if (type === undefined) {
        throw new SafetyViolation(
          'ready contract',
          `${node} answered rpc ${rpcId}, which is not a request delivered to it since its previous Ready (a second answer, a late one, or never asked)`,
        );
      }
      if (requestResponse[type] !== message.type) {
        throw new SafetyViolation(
          'ready contract',
          `${node} answered a ${type} (rpc ${rpcId}) with a ${message.type}`,
        );
      }
      open!.delete(rpcId);
    }
    // Whatever was delivered before this Ready and not answered in it was dropped by the core:
    // the driver answers "no reply", and a later answer would break the contract.
    open?.clear();
  }

  /**
   * Checks requests that leave before persisting (a Ready's `messages`, or what
   * `takeMessages()` hands out while a Ready is in flight): only leader requests, no answers.
   */
  onEarlyMessages(node: NodeId, early: readonly Message[]): void {
    for (const message of early) {
      if (!earlyTypes.has(message.type)) {
        throw new SafetyViolation(
          'ready contract',
          `${node} put a ${message.type} in Ready.messages; only leader requests may leave before persisting`,
        );
      }
      if (message.rpcId !== undefined) {
        throw new SafetyViolation(
          'ready contract',
          `${node} sent a request carrying rpcId ${message.rpcId}`,
        );
      }
    }
  }

  /** Forgets requests a node can no longer answer (it crashed). */
  onCrash(node: NodeId): void {
    this.openRequests.delete(node);
  }

  /** Highest index known committed. */
  get commitIndex(): number {
    return this.committedIndex;
  }
}

function describeEntry(batch: EntryBatch, k: number): string {
  const type = batch.types[k]!;
  const name =
    type === EntryType.Normal ? 'normal' : type === EntryType.Noop ? 'noop' : 'conf change';
  return `a ${name} entry of term ${batch.terms[k]!}`;
}
