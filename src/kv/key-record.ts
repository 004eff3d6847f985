/**
 * What the key-value state keeps per key: its current {@link Version}, and the latest write of
 * this region with the state it produced (what ships to other regions).
 *
 * Most keys hold one write of this region that superseded everything before it: one sibling,
 * its dot `(region, n)`, and a context of that dot alone. A record keeps that state as its
 * value, HLC and counter, and builds the Version (a write, its dot, a sibling array and a
 * one-entry Map) only when asked for it: a key then takes about 470 bytes of heap instead of
 * about 870 (`npm run bench -- kv`, which measures both forms). A key outlives the young generation
 * (a busy node rewrites a key every few seconds at most), so the scavenger copies a record
 * twice, and on a node under load key versions were most of what each scavenge copied: their
 * size sets how long the node stops.
 */
import { withDot, type Version, type Write } from '../conflict/dvv.js';
import { compareHlc, hlcLogicalMax, type HlcTimestamp } from '../conflict/hlc.js';
import type { KeySnapshot } from './versioned-codec.js';

/** The smallest timestamp after `ts` (a zero timestamp when null), issued as `node`. */
export function successorOf(ts: HlcTimestamp | null, node: string): HlcTimestamp {
  if (ts === null) return { wallMs: 0, logical: 0, node };
  return ts.logical < hlcLogicalMax
    ? { wallMs: ts.wallMs, logical: ts.logical + 1, node }
    : { wallMs: ts.wallMs + 1, logical: 0, node };
}

/** Whether `version` is one write of `region` whose context is its dot alone. */
function isLoneLocalWrite(version: Version, region: string): boolean {
  if (version.siblings.length !== 1 || version.context.size !== 1) return false;
  const write = version.siblings[0]!;
  return (
    write.region === region &&
    write.dot.node === region &&
    version.context.get(region) === write.dot.counter
  );
}

/** One key's state in the key-value state machine's map (see the module comment). */
export class KeyRecord {
  /** Index of the latest write of this key that originated here; 0 for none. */
  localIndex = 0;
  /** The latest local write as a lone local write: its dot counter, 0 when not in that form. */
  private loneCounter = 0;
  private loneValue: Uint8Array | null = null;
  private loneHlc: HlcTimestamp | null = null;
  /** The latest local write's state when it is not a lone local write; else null. */
  private fullLocal: Version | null = null;
  /** The current state when it is not the latest local write's (remote writes merged); else null. */
  private merged: Version | null = null;

  private constructor(
    /** The key, as the state's map holds it (so that a rewrite keeps no second copy alive). */
    readonly key: string,
    private readonly region: string,
  ) {}

  /** A key first written by another region. */
  static remote(key: string, region: string, version: Version): KeyRecord {
    const record = new KeyRecord(key, region);
    record.merged = version;
    return record;
  }

  /** A key as a snapshot stored it. */
  static restored(
    key: string,
    region: string,
    version: Version,
    localIndex: number,
    local: Version | null,
  ): KeyRecord {
    const record = new KeyRecord(key, region);
    record.localIndex = localIndex;
    if (local === null) {
      record.merged = version;
      return record;
    }
    if (isLoneLocalWrite(local, region)) {
      const write = local.siblings[0]!;
      record.setLone(write.value, write.hlc, write.dot.counter);
    } else {
      record.fullLocal = local;
    }
    // The snapshot decoder gives one object for both when the current state is the local one.
    if (version !== local) record.merged = version;
    return record;
  }

  /** A key first written here. */
  static local(
    key: string,
    region: string,
    index: number,
    value: Uint8Array | null,
    hlc: HlcTimestamp,
  ): KeyRecord {
    const record = new KeyRecord(key, region);
    record.setLone(value, hlc, 1);
    record.localIndex = index;
    return record;
  }

  /** Whether the current state is the latest local write, kept as a lone local write. */
  private get isLoneLocal(): boolean {
    return this.merged === null && this.loneCounter > 0;
  }

  /** The current state: siblings newest first, and the causal context. Treat it as immutable. */
  get version(): Version {
    return this.merged ?? this.local!;
  }

  /** The state the latest local write produced; null when there was none. */
  get local(): Version | null {
    if (this.loneCounter === 0) return this.fullLocal;
    const write: Write = {
      value: this.loneValue,
      hlc: this.loneHlc!,
      dot: { node: this.region, counter: this.loneCounter },
      region: this.region,
    };
    return { siblings: [write], context: new Map([[this.region, this.loneCounter]]) };
  }

  /**
   * What a snapshot stores of this key. When the current state is the latest local write's,
   * both are the same object, which the snapshot encoding stores once.
   */
  toSnapshot(): KeySnapshot {
    const local = this.local;
    return { key: this.key, version: this.merged ?? local!, localIndex: this.localIndex, local };
  }

  /** The HLC of the latest local write; null when there was none. */
  get localHlc(): HlcTimestamp | null {
    return this.loneCounter > 0 ? this.loneHlc : (this.fullLocal?.siblings[0]!.hlc ?? null);
  }

  /** The newest sibling's value; null when it is a delete. */
  get value(): Uint8Array | null {
    return this.isLoneLocal ? this.loneValue : this.version.siblings[0]!.value;
  }

  /** The highest dot counter of this region the current state has seen (0 for none). */
  get localCounter(): number {
    if (this.isLoneLocal) return this.loneCounter;
    return this.version.context.get(this.region) ?? 0;
  }

  /** Whether the current state's context names no replica but this region. */
  seenOnlyLocally(): boolean {
    if (this.isLoneLocal) return true;
    for (const node of this.version.context.keys()) if (node !== this.region) return false;
    return true;
  }

  /** `hlc`, moved past each sibling's HLC that is not older (newest first). */
  laterThanSiblings(hlc: HlcTimestamp): HlcTimestamp {
    if (this.isLoneLocal) {
      return compareHlc(hlc, this.loneHlc!) <= 0 ? successorOf(this.loneHlc, hlc.node) : hlc;
    }
    let later = hlc;
    for (const sibling of this.version.siblings) {
      if (compareHlc(later, sibling.hlc) <= 0) later = successorOf(sibling.hlc, later.node);
    }
    return later;
  }

  /**
   * Records a write of this region that supersedes the current state; its dot is this region's
   * next. When that state had seen only this region's writes (so the new context is the new dot
   * alone), the record keeps it as a lone local write.
   */
  writeLocal(index: number, value: Uint8Array | null, hlc: HlcTimestamp): void {
    const counter = this.localCounter + 1;
    if (this.seenOnlyLocally()) {
      this.setLone(value, hlc, counter);
      this.fullLocal = null;
    } else {
      const dot = { node: this.region, counter };
      const write: Write = { value, hlc, dot, region: this.region };
      this.fullLocal = { siblings: [write], context: withDot(this.version.context, dot) };
      this.loneCounter = 0;
      this.loneValue = null;
      this.loneHlc = null;
    }
    this.merged = null;
    this.localIndex = index;
  }

  /** Replaces the current state with remote writes merged into it. */
  merge(version: Version): void {
    this.merged = version;
  }

  private setLone(value: Uint8Array | null, hlc: HlcTimestamp, counter: number): void {
    this.loneValue = value;
    this.loneHlc = hlc;
    this.loneCounter = counter;
  }
}
