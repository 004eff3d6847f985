/**
 * RegionState: the part of the replicated state that says where this region replicates to —
 * the regions, the primary one, and each region's durable cursor (the highest index of this
 * region's log it acknowledged). It changes only through commands applied from the Raft log,
 * so every node of the region agrees on it and a new leader knows it; snapshots carry it.
 *
 * Commands are small JSON documents (they are rare: region changes, and one cursor record per
 * interval while writes flow):
 *
 *     {"op":"add","id","url","primary"?}   add a region, or change its URL / primary flag
 *     {"op":"remove","id"}                  forget a region (its cursor too)
 *     {"op":"primary","id"}                 make a region the primary ("" for none)
 *     {"op":"cursors","cursors":{"eu":12}}  raise cursors (never lowers one)
 *
 * Applying is deterministic and validates everything; a command that cannot apply (a region
 * removed meanwhile, a malformed document) changes nothing and says why.
 */
import { BadRequestError, StorageError, type PhantomError } from '../errors.js';
import { checkRegionId, type Region } from './types.js';

/** A region command. */
export type RegionCommand =
  | { readonly op: 'add'; readonly id: string; readonly url: string; readonly primary?: boolean }
  | { readonly op: 'remove'; readonly id: string }
  | { readonly op: 'primary'; readonly id: string }
  | { readonly op: 'cursors'; readonly cursors: Readonly<Record<string, number>> };

/** The outcome of applying a region command. */
export type RegionCommandResult =
  | { readonly kind: 'ok'; readonly changed: boolean }
  | { readonly kind: 'unknownRegion'; readonly id: string }
  | { readonly kind: 'invalid'; readonly error: PhantomError };

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });
const stateVersion = 1;

/** Encodes a command for proposing (validated first: TypeError on a malformed one). */
export function encodeRegionCommand(command: RegionCommand): Uint8Array {
  const checked = checkCommand(command, (message) => new TypeError(message));
  return encoder.encode(JSON.stringify(checked));
}

/** Decodes a command; throws BadRequestError naming the problem. */
export function decodeRegionCommand(payload: Uint8Array): RegionCommand {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(payload));
  } catch {
    throw new BadRequestError('Cannot decode region command: not UTF-8 JSON');
  }
  return checkCommand(value, (message) => new BadRequestError(message));
}

function checkCommand(value: unknown, error: (message: string) => Error): RegionCommand {
  const fail = (message: string): never => {
    throw error(`Invalid region command: ${message}`);
  };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return fail('expected an object');
  }
  const { op, id, url, primary, cursors } = value as Record<string, unknown>;
  const checkId = (candidate: unknown): string => {
    try {
      checkRegionId(candidate);
    } catch (problem) {
      return fail((problem as Error).message);
    }
    return candidate;
  };
  switch (op) {
    case 'add': {
      if (typeof url !== 'string' || !/^https?:\/\/[^/?#\s]+$/.test(url)) {
        return fail(`url ${JSON.stringify(url)} is not an http(s) origin`);
      }
      if (primary !== undefined && typeof primary !== 'boolean') {
        return fail('primary must be a boolean');
      }
      return { op, id: checkId(id), url, ...(primary === undefined ? {} : { primary }) };
    }
    case 'remove':
      return { op, id: checkId(id) };
    case 'primary':
      return { op, id: id === '' ? '' : checkId(id) };
    case 'cursors': {
      if (typeof cursors !== 'object' || cursors === null || Array.isArray(cursors)) {
        return fail('cursors must be an object of region id to index');
      }
      const checked: Record<string, number> = {};
      for (const [region, index] of Object.entries(cursors)) {
        checkId(region);
        if (typeof index !== 'number' || !Number.isSafeInteger(index) || index < 0) {
          return fail(`cursor of ${region} is ${String(index)}, expected a non-negative integer`);
        }
        checked[region] = index;
      }
      return { op, cursors: checked };
    }
    default:
      return fail(`unknown op ${JSON.stringify(op)}`);
  }
}

/** The regions this region replicates to; see the module comment. */
export class RegionState {
  private readonly regions = new Map<string, { readonly id: string; readonly url: string }>();
  private primaryId = '';
  private readonly cursors = new Map<string, number>();
  private changeCount = 0;

  /** Bumped by every applied command that changed something (watchers compare it). */
  get generation(): number {
    return this.changeCount;
  }

  /** Every region, sorted by id. */
  list(): Region[] {
    return [...this.regions.values()]
      .sort((a, b) => (a.id < b.id ? -1 : 1))
      .map((region) => ({ ...region, primary: region.id === this.primaryId }));
  }

  /** The region with this id, or undefined. */
  get(id: string): Region | undefined {
    const region = this.regions.get(id);
    return region === undefined ? undefined : { ...region, primary: id === this.primaryId };
  }

  /** The primary region's id ('' when none). */
  get primary(): string {
    return this.primaryId;
  }

  /** The durable cursor of a region (0 when none recorded). */
  cursor(id: string): number {
    return this.cursors.get(id) ?? 0;
  }

  /** Applies one command (see the module comment). */
  apply(payload: Uint8Array): RegionCommandResult {
    let command: RegionCommand;
    try {
      command = decodeRegionCommand(payload);
    } catch (error) {
      if (error instanceof BadRequestError) return { kind: 'invalid', error };
      throw error;
    }
    const result = this.applyCommand(command);
    if (result.kind === 'ok' && result.changed) this.changeCount++;
    return result;
  }

  private applyCommand(command: RegionCommand): RegionCommandResult {
    switch (command.op) {
      case 'add': {
        const existing = this.regions.get(command.id);
        let changed = existing?.url !== command.url;
        this.regions.set(command.id, { id: command.id, url: command.url });
        if (command.primary === true && this.primaryId !== command.id) {
          this.primaryId = command.id;
          changed = true;
        } else if (command.primary === false && this.primaryId === command.id) {
          this.primaryId = '';
          changed = true;
        }
        return { kind: 'ok', changed };
      }
      case 'remove': {
        if (!this.regions.delete(command.id)) return { kind: 'unknownRegion', id: command.id };
        this.cursors.delete(command.id);
        if (this.primaryId === command.id) this.primaryId = '';
        return { kind: 'ok', changed: true };
      }
      case 'primary': {
        if (command.id !== '' && !this.regions.has(command.id)) {
          return { kind: 'unknownRegion', id: command.id };
        }
        const changed = this.primaryId !== command.id;
        this.primaryId = command.id;
        return { kind: 'ok', changed };
      }
      case 'cursors': {
        let changed = false;
        for (const [id, index] of Object.entries(command.cursors)) {
          // A region removed while the record was in flight keeps no cursor.
          if (!this.regions.has(id) || index <= this.cursor(id)) continue;
          this.cursors.set(id, index);
          changed = true;
        }
        return { kind: 'ok', changed };
      }
    }
  }

  /** The whole state as bytes (deterministic: sorted). */
  encode(): Uint8Array {
    const regions = this.list().map(({ id, url }) => ({ id, url, cursor: this.cursor(id) }));
    return encoder.encode(
      JSON.stringify({ version: stateVersion, primary: this.primaryId, regions }),
    );
  }

  /**
   * Replaces the state with encoded bytes (empty bytes: no regions). Validated first:
   * StorageError CORRUPT_LOG on any problem, leaving the state as it was.
   */
  restore(bytes: Uint8Array): void {
    const corrupt = (message: string): never => {
      throw new StorageError('CORRUPT_LOG', `Cannot restore region state: ${message}`);
    };
    if (bytes.length === 0) {
      this.regions.clear();
      this.cursors.clear();
      this.primaryId = '';
      this.changeCount++;
      return;
    }
    let value: unknown;
    try {
      value = JSON.parse(decoder.decode(bytes));
    } catch {
      return corrupt('not UTF-8 JSON');
    }
    const { version, primary, regions } = (value ?? {}) as Record<string, unknown>;
    if (version !== stateVersion)
      corrupt(`version is ${String(version)}, expected ${stateVersion}`);
    if (!Array.isArray(regions)) return corrupt('regions is not an array');
    const restored: { id: string; url: string; cursor: number }[] = [];
    for (const region of regions as unknown[]) {
      const { id, url, cursor } = (region ?? {}) as Record<string, unknown>;
      try {
        checkRegionId(id);
      } catch (error) {
        corrupt((error as Error).message);
      }
      if (typeof url !== 'string' || typeof cursor !== 'number' || !Number.isSafeInteger(cursor)) {
        return corrupt(`region ${String(id)} is malformed`);
      }
      restored.push({ id: id as string, url, cursor });
    }
    if (
      typeof primary !== 'string' ||
      (primary !== '' && !restored.some((r) => r.id === primary))
    ) {
      return corrupt(`primary ${JSON.stringify(primary)} is not a region`);
    }
    this.regions.clear();
    this.cursors.clear();
    for (const { id, url, cursor } of restored) {
      this.regions.set(id, { id, url });
      if (cursor > 0) this.cursors.set(id, cursor);
    }
    this.primaryId = primary;
    this.changeCount++;
  }
}
