/**
 * The key-value state machine: applied from committed log entries, in log order, on every
 * node. It must be deterministic — the same entries give the same state and the same results on
 * every replica — so it reads nothing but its input (no clock, no randomness) and iterates in a
 * fixed order (snapshots sort keys).
 *
 * Semantics are etcd v2's: a put may require `prevValue` (compare-and-set; 404 when the key is
 * absent, 412 when it differs) or `prevExist` (false = create only, 412 when present; true =
 * update only, 404 when absent); a delete of an absent key is 404 and may require `prevValue`.
 *
 * @example
 * ```ts
 * const kv = new KvStateMachine();
 * const payload = kv.encodePut('x', new TextEncoder().encode('1'));   // propose this
 * kv.apply(1, payload); // { kind: 'ok', index: 1, previous: null }
 * kv.get('x');          // Uint8Array [49]
 * ```
 */
import { resolveKvLimits, type KvLimits } from '../config.js';
import type { PhantomError } from '../errors.js';
import { BadRequestError } from '../errors.js';
import {
  decodeCommand,
  decodeSnapshot,
  encodeDelete,
  encodePut,
  encodeSnapshot,
  type DeleteConditions,
  type PutConditions,
} from './codec.js';

/** The outcome of applying one command. */
export type KvResult =
  /** Applied; `previous` is the value before (null when the key was absent). */
  | { readonly kind: 'ok'; readonly index: number; readonly previous: Uint8Array | null }
  /** A `prevValue` / `prevExist=false` condition failed; `current` is the value now. */
  | {
      readonly kind: 'preconditionFailed';
      readonly index: number;
      readonly current: Uint8Array | null;
    }
  /** The key is absent (delete, put with `prevValue` or `prevExist=true`). */
  | { readonly kind: 'notFound'; readonly index: number }
  /**
   * The payload is not a valid command. Every replica reaches the same verdict on the same
   * bytes, so the entry is consumed without changing state rather than stopping the node.
   */
  | { readonly kind: 'invalid'; readonly index: number; readonly error: PhantomError };

/** Options of {@link KvStateMachine}. */
export interface KvStateMachineOptions {
  /** Key and value size limits (src/config.ts, kv section). */
  readonly limits?: Partial<KvLimits>;
}

/** A deterministic key-value store applied from the Raft log. */
export class KvStateMachine {
  /** Limits applied to commands this instance encodes. */
  readonly limits: KvLimits;
  private readonly data = new Map<string, Uint8Array>();
  private applied = 0;

  constructor(options: KvStateMachineOptions = {}) {
    this.limits = resolveKvLimits(options.limits);
  }

  /** Index of the last entry applied (or skipped); 0 before any. */
  get appliedIndex(): number {
    return this.applied;
  }

  /** Number of keys held. */
  get size(): number {
    return this.data.size;
  }

  /** The value of `key` (a view: do not modify it), or undefined when absent. */
  get(key: string): Uint8Array | undefined {
    return this.data.get(key);
  }

  /** Encodes a put command for proposing (validated against this instance's limits). */
  encodePut(key: string, value: Uint8Array, conditions: PutConditions = {}): Uint8Array {
    return encodePut(key, value, conditions, this.limits);
  }

  /** Encodes a delete command for proposing. */
  encodeDelete(key: string, conditions: DeleteConditions = {}): Uint8Array {
    return encodeDelete(key, conditions, this.limits);
  }

  /**
   * Applies the command of log entry `index`, which must be `appliedIndex + 1` (RangeError
   * otherwise: applying out of order is the driver's bug). A corrupt payload gives an
   * `invalid` result and still consumes the index.
   */
  apply(index: number, payload: Uint8Array): KvResult {
    this.checkNext(index, 'apply entry');
    this.applied = index;
    let command;
    try {
      command = decodeCommand(payload);
    } catch (error) {
      if (error instanceof BadRequestError) return { kind: 'invalid', index, error };
      throw error;
    }
    const current = this.data.get(command.key) ?? null;
    if (command.prevValue !== undefined) {
      if (current === null) return { kind: 'notFound', index };
      if (!equalBytes(current, command.prevValue))
        return { kind: 'preconditionFailed', index, current };
    }
    if (command.op === 'delete') {
      if (current === null) return { kind: 'notFound', index };
      this.data.delete(command.key);
      return { kind: 'ok', index, previous: current };
    }
    if (command.prevExist === false && current !== null) {
      return { kind: 'preconditionFailed', index, current };
    }
    if (command.prevExist === true && current === null) return { kind: 'notFound', index };
    this.data.set(command.key, command.value);
    return { kind: 'ok', index, previous: current };
  }

  /** Consumes entry `index` without a command (a leader's no-op or a membership change). */
  skip(index: number): void {
    this.checkNext(index, 'skip entry');
    this.applied = index;
  }

  /** The whole state, applied index included, in the versioned snapshot encoding. */
  snapshot(): Uint8Array {
    const keys = [...this.data.keys()].sort();
    return encodeSnapshot({
      appliedIndex: this.applied,
      entries: keys.map((key) => [key, this.data.get(key)!] as const),
    });
  }

  /**
   * Replaces the state with a snapshot's. Validated first (StorageError CORRUPT_LOG on any
   * problem), so a bad snapshot leaves the current state untouched.
   */
  restore(bytes: Uint8Array): void {
    const contents = decodeSnapshot(bytes);
    this.data.clear();
    for (const [key, value] of contents.entries) this.data.set(key, value);
    this.applied = contents.appliedIndex;
  }

  private checkNext(index: number, what: string): void {
    if (index !== this.applied + 1) {
      throw new RangeError(`Cannot ${what}: index is ${index}, expected ${this.applied + 1}`);
    }
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return false;
  return true;
}
