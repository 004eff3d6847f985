/**
 * The run's trace: what happened, when, on which node. The last events are kept in a ring and
 * printed when a run fails; optionally every line is also folded into a digest (FNV-1a 64) or
 * kept whole, which is how the determinism test compares two runs of one seed byte for byte.
 * Records are formatted lazily, so keeping the ring costs no string work on a passing run.
 */
import type { Message } from '../raft/types.js';
import { lastIndexOf } from '../raft/batch.js';

/** One trace record; `describe` renders its detail. */
interface TraceRecord {
  readonly time: number;
  readonly node: string;
  readonly describe: () => string;
}

/** How much of the trace to keep. */
export interface TraceOptions {
  /** Records kept for the failure report. */
  readonly ringSize: number;
  /** Fold every line into {@link Trace.digest} (formats every record). */
  readonly digest: boolean;
  /** Keep every line (formats every record; memory grows with the run). */
  readonly keepAll: boolean;
}

/** A ring of recent records plus an optional digest / full copy of every line. */
export class Trace {
  private readonly ring: (TraceRecord | undefined)[];
  private next = 0;
  private total = 0;
  private hashHigh = 0xcbf29ce4;
  private hashLow = 0x84222325;
  private readonly all: string[] | null;

  constructor(private readonly options: TraceOptions) {
    this.ring = new Array<TraceRecord | undefined>(Math.max(1, options.ringSize));
    this.all = options.keepAll ? [] : null;
  }

  /** Records an event; `describe` is called only if the line is needed. */
  record(time: number, node: string, describe: () => string): void {
    const record = { time, node, describe };
    this.ring[this.next] = record;
    this.next = (this.next + 1) % this.ring.length;
    this.total++;
    if (this.options.digest || this.all !== null) {
      const line = formatRecord(record);
      if (this.options.digest) this.fold(line);
      this.all?.push(line);
    }
  }

  /** Records ever made. */
  get length(): number {
    return this.total;
  }

  /** The last `count` records as lines, oldest first. */
  tail(count = this.ring.length): string[] {
    const lines: string[] = [];
    const kept = Math.min(count, this.ring.length, this.total);
    for (let k = kept; k > 0; k--) {
      const record = this.ring[(this.next - k + this.ring.length * 2) % this.ring.length];
      if (record !== undefined) lines.push(formatRecord(record));
    }
    return lines;
  }

  /** Every line (only with `keepAll`). */
  lines(): readonly string[] {
    return this.all ?? [];
  }

  /** FNV-1a 64 of every line so far, as 16 hex digits (only with `digest`). */
  digest(): string {
    return (
      (this.hashHigh >>> 0).toString(16).padStart(8, '0') +
      (this.hashLow >>> 0).toString(16).padStart(8, '0')
    );
  }

  private fold(line: string): void {
    // 64-bit FNV-1a in two 32-bit halves: prime 2^40 + 0x1b3.
    let high = this.hashHigh;
    let low = this.hashLow;
    for (let k = 0; k <= line.length; k++) {
      low ^= k === line.length ? 10 : line.charCodeAt(k) & 0xff;
      const lowProduct = (low >>> 0) * 0x1b3;
      const carry = Math.floor(lowProduct / 4294967296);
      high = (Math.imul(high, 0x1b3) + Math.imul(low, 0x100) + carry) | 0;
      low = lowProduct | 0;
    }
    this.hashHigh = high;
    this.hashLow = low;
  }
}

function formatRecord(record: TraceRecord): string {
  return `${record.time.toFixed(3).padStart(10)} ${record.node.padEnd(4)} ${record.describe()}`;
}

/** A Raft message in one short line, e.g. `n1->n2 append t3 prev 10/2 +3 (11..13) commit 9`. */
export function describeMessage(message: Message): string {
  const head = `${message.from}->${message.to} ${message.type} t${message.term}`;
  const rpc = message.rpcId === undefined ? '' : ` rpc${message.rpcId}`;
  switch (message.type) {
    case 'vote':
      return `${head}${message.preVote ? ' pre' : ''} last ${message.lastLogIndex}/${message.lastLogTerm}${message.transfer ? ' transfer' : ''}${rpc}`;
    case 'voteResp':
      return `${head}${message.preVote ? ' pre' : ''} ${message.granted ? 'granted' : 'rejected'}${rpc}`;
    case 'append': {
      const { entries } = message;
      const range = entries.count === 0 ? '' : ` (${entries.firstIndex}..${lastIndexOf(entries)})`;
      return `${head} prev ${message.prevLogIndex}/${message.prevLogTerm} +${entries.count}${range} commit ${message.commit}${rpc}`;
    }
    case 'appendResp':
      return message.success
        ? `${head} ok match ${message.matchIndex}${rpc}`
        : `${head} reject ${message.rejectIndex} hint ${message.hintIndex}/${message.hintTerm}${rpc}`;
    case 'heartbeat':
      return `${head} commit ${message.commit} ctx ${message.context}${rpc}`;
    case 'heartbeatResp':
      return `${head} ctx ${message.context}${rpc}`;
    case 'snapshot':
      return `${head} snapshot ${message.snapshot.index}/${message.snapshot.term} voters ${message.snapshot.conf.voters.join(',')}${rpc}`;
    case 'timeoutNow':
      return head;
  }
}
