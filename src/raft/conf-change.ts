/**
 * Membership changes: their encoding in the log and how one turns a configuration into the
 * next. Every change of the voter set goes through a joint configuration (Raft thesis §4.3):
 * while joint, decisions need a majority of the old voters AND of the new ones, so no two
 * disjoint majorities can ever decide at once. Learner-only changes cannot affect any
 * majority, so they apply directly.
 */
import { BadRequestError } from '../errors.js';
import type { ConfChange, ConfChangeItem, ConfState, NodeId } from './types.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });
const itemTypes: ReadonlySet<string> = new Set(['addVoter', 'addLearner', 'removeNode']);

/** Encodes a change as the payload of a ConfChange entry (JSON: these entries are rare). */
export function encodeConfChange(change: ConfChange): Uint8Array {
  const changes = change.changes.map((item) =>
    item.url === undefined
      ? { type: item.type, id: item.id }
      : { type: item.type, id: item.id, url: item.url },
  );
  return encoder.encode(JSON.stringify({ changes }));
}

/**
 * Decodes a ConfChange entry's payload. A payload that is not a well-formed change is a
 * {@link BadRequestError}: it came from the log or a peer, not from this process's code.
 */
export function decodeConfChange(payload: Uint8Array): ConfChange {
  let parsed: unknown;
  try {
    parsed = JSON.parse(decoder.decode(payload));
  } catch (error) {
    throw new BadRequestError(
      `Cannot decode a membership change: the payload is not JSON (${String(error)})`,
    );
  }
  if (typeof parsed !== 'object' || parsed === null || !('changes' in parsed)) {
    throw new BadRequestError('Cannot decode a membership change: "changes" is missing');
  }
  const { changes } = parsed;
  if (!Array.isArray(changes)) {
    throw new BadRequestError('Cannot decode a membership change: "changes" is not an array');
  }
  const items: ConfChangeItem[] = [];
  for (const [position, raw] of (changes as unknown[]).entries()) {
    if (typeof raw !== 'object' || raw === null) {
      throw new BadRequestError(
        `Cannot decode a membership change: item ${position} is not an object`,
      );
    }
    const { type, id, url } = raw as Record<string, unknown>;
    if (typeof type !== 'string' || !itemTypes.has(type)) {
      throw new BadRequestError(
        `Cannot decode a membership change: item ${position} has type ${JSON.stringify(type)}`,
      );
    }
    if (typeof id !== 'string' || id === '') {
      throw new BadRequestError(
        `Cannot decode a membership change: item ${position} has id ${JSON.stringify(id)}`,
      );
    }
    if (url !== undefined && typeof url !== 'string') {
      throw new BadRequestError(
        `Cannot decode a membership change: item ${position} has a url that is not a string`,
      );
    }
    const itemType = type as ConfChangeItem['type'];
    items.push(url === undefined ? { type: itemType, id } : { type: itemType, id, url });
  }
  return { changes: items };
}

/** Whether the configuration is joint (C_old,new). */
export function isJoint(conf: ConfState): boolean {
  return conf.votersOutgoing.length > 0;
}

/** Whether `id` votes in either half of the configuration. */
export function isVoter(conf: ConfState, id: NodeId): boolean {
  return conf.voters.includes(id) || conf.votersOutgoing.includes(id);
}

/** Every member (voters of both halves and learners), each once, in a stable order. */
export function membersOf(conf: ConfState): NodeId[] {
  const members = new Set<NodeId>(conf.voters);
  for (const id of conf.votersOutgoing) members.add(id);
  for (const id of conf.learners) members.add(id);
  return [...members];
}

/** Whether the change alters who votes (and so must go through a joint configuration). */
export function touchesVoters(conf: ConfState, change: ConfChange): boolean {
  return change.changes.some(
    (item) => item.type === 'addVoter' || (item.type === 'removeNode' && isVoter(conf, item.id)),
  );
}

/**
 * Says why `change` cannot be applied to `conf`, or returns null when it can. Used both when
 * proposing (to refuse early with a clear message) and when applying a committed entry.
 */
export function describeConfChangeProblem(conf: ConfState, change: ConfChange): string | null {
  if (change.changes.length === 0) {
    return isJoint(conf)
      ? null
      : 'Cannot leave the joint configuration: the configuration is not joint';
  }
  if (isJoint(conf)) {
    return 'Cannot change membership: a joint configuration is in force; it must be left first';
  }
  const seen = new Set<NodeId>();
  for (const item of change.changes) {
    if (seen.has(item.id)) return `Cannot change membership: ${item.id} appears twice`;
    seen.add(item.id);
    const voter = conf.voters.includes(item.id);
    const learner = conf.learners.includes(item.id);
    switch (item.type) {
      case 'addVoter':
        if (voter) return `Cannot add voter ${item.id}: it is already a voter`;
        break;
      case 'addLearner':
        if (voter) {
          return `Cannot add learner ${item.id}: it is a voter (remove it first to demote it)`;
        }
        if (learner) return `Cannot add learner ${item.id}: it is already a learner`;
        break;
      case 'removeNode':
        if (!voter && !learner) return `Cannot remove ${item.id}: it is not a member`;
        break;
    }
  }
  const { voters } = applyItems(conf, change);
  if (voters.length === 0) return 'Cannot change membership: no voter would be left';
  return null;
}

/**
 * The configuration after `change`: entering a joint configuration when voters change,
 * leaving it for an empty change, applying learner-only changes directly. Throws RangeError
 * when the change does not apply (see {@link describeConfChangeProblem}).
 */
export function applyConfChange(conf: ConfState, change: ConfChange): ConfState {
  const problem = describeConfChangeProblem(conf, change);
  if (problem !== null) throw new RangeError(problem);
  if (change.changes.length === 0) {
    return { voters: [...conf.voters], votersOutgoing: [], learners: [...conf.learners] };
  }
  const next = applyItems(conf, change);
  return touchesVoters(conf, change)
    ? { voters: next.voters, votersOutgoing: [...conf.voters], learners: next.learners }
    : { voters: next.voters, votersOutgoing: [], learners: next.learners };
}

function applyItems(conf: ConfState, change: ConfChange): { voters: NodeId[]; learners: NodeId[] } {
  const voters = [...conf.voters];
  const learners = [...conf.learners];
  const drop = (list: NodeId[], id: NodeId): void => {
    const at = list.indexOf(id);
    if (at >= 0) list.splice(at, 1);
  };
  for (const item of change.changes) {
    switch (item.type) {
      case 'addVoter':
        // Promoting a learner: it leaves the learners as it joins the voters.
        drop(learners, item.id);
        if (!voters.includes(item.id)) voters.push(item.id);
        break;
      case 'addLearner':
        if (!learners.includes(item.id)) learners.push(item.id);
        break;
      case 'removeNode':
        drop(voters, item.id);
        drop(learners, item.id);
        break;
    }
  }
  return { voters, learners };
}

/** Checks a ConfState given by a caller; throws TypeError naming the problem. */
export function checkConfState(conf: ConfState, what: string): void {
  const lists = [conf.voters, conf.votersOutgoing, conf.learners];
  if (!lists.every((list) => Array.isArray(list))) {
    throw new TypeError(`Invalid ${what}: voters, votersOutgoing and learners must be arrays`);
  }
  for (const list of lists) {
    for (const id of list) {
      if (typeof id !== 'string' || id === '') {
        throw new TypeError(`Invalid ${what}: member id ${JSON.stringify(id)}`);
      }
    }
    if (new Set(list).size !== list.length) {
      throw new TypeError(`Invalid ${what}: a member is listed twice`);
    }
  }
  for (const id of conf.learners) {
    if (isVoter(conf, id)) throw new TypeError(`Invalid ${what}: ${id} is a voter and a learner`);
  }
}
