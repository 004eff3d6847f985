/**
 * The load generator, run as a child process of the benchmark (`fork` with IPC) so that its
 * event loop competes with neither the harness nor a node: each connection is a closed loop
 * (send one PUT of a 100-byte value, wait for the answer, send the next) on its own undici
 * `Client` (one keep-alive socket, `pipelining: 1`). Requests are precomputed per key, so both systems cost the
 * generator the same per request apart from parsing their answers.
 *
 * Protocol: the child says `ready` once loaded; the parent sends {@link GeneratorRun}; the
 * child sends `progress` every second, then {@link GeneratorDone} and exits. Times are wall-clock milliseconds
 * (`performance.timeOrigin + performance.now()`), shared by every process on the machine.
 */
import { Client } from 'undici';
import type { PutProtocol } from './clusters.js';

/** What to run: sent by the parent. */
export interface GeneratorRun {
  readonly type: 'run';
  readonly origin: string;
  readonly protocol: PutProtocol;
  readonly connections: number;
  /** Size of the key space, keys `bench-000000` ... */
  readonly keys: number;
  readonly valueBytes: number;
  /** Seeds the key choice, so generators and runs differ but are reproducible. */
  readonly seed: number;
  /** Requests go out from when the child receives this until `measureEndMs`. */
  readonly measureStartMs: number;
  readonly measureEndMs: number;
}

/** Once a second during the run. */
export interface GeneratorProgress {
  readonly type: 'progress';
  /** Answers with status 200 whose request started inside the measured window. */
  readonly measuredOps: number;
  readonly warmupOps: number;
  readonly errors: number;
  /** When the counts were taken ({@link wallClockMs}), for a rate that does not alias. */
  readonly atMs: number;
}

/** At the end of the run. */
export interface GeneratorDone {
  readonly type: 'done';
  /** Latency of every measured request, in microseconds. */
  readonly latenciesUs: Float64Array;
  /** Measured answers that completed in each second of the window (a stall shows as a dip). */
  readonly opsPerSecond: number[];
  /** Failures by kind (`status 503`, `ECONNRESET`, ...), over warm-up and measurement. */
  readonly errors: Record<string, number>;
  /** The first failure's detail, to show the user what went wrong. */
  readonly firstError?: string;
}

export type GeneratorMessage = { readonly type: 'ready' } | GeneratorProgress | GeneratorDone;

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes. */
export function wallClockMs(): number {
  return performance.timeOrigin + performance.now();
}

/** A small seeded PRNG (mulberry32): key choice must not depend on Math.random's state. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface PreparedRequest {
  readonly method: 'PUT' | 'POST';
  readonly path: string;
  readonly body: Buffer;
  readonly headers: Record<string, string>;
}

/** The key of index `i`. */
export function keyOf(i: number): string {
  return `bench-${String(i).padStart(6, '0')}`;
}

/** A value of exactly `valueBytes` printable bytes that differs per key. */
export function valueOf(i: number, valueBytes: number): Buffer {
  const value = Buffer.alloc(valueBytes, 0x61 + (i % 26));
  value.write(`v${i}:`, 0, 'latin1');
  return value;
}

/** The request that writes key `i` in the given system's API. */
export function preparePut(protocol: PutProtocol, i: number, valueBytes: number): PreparedRequest {
  const key = keyOf(i);
  const value = valueOf(i, valueBytes);
  if (protocol === 'phantomdb') {
    return {
      method: 'PUT',
      path: `/v1/kv/${encodeURIComponent(key)}`,
      body: value,
      headers: { 'content-type': 'application/octet-stream' },
    };
  }
  const json = JSON.stringify({
    key: Buffer.from(key).toString('base64'),
    value: value.toString('base64'),
  });
  return {
    method: 'POST',
    path: '/v3/kv/put',
    body: Buffer.from(json),
    headers: { 'content-type': 'application/json' },
  };
}

/**
 * Sends one request on `client` and resolves with its status, and its body only when the
 * status is not 200. Uses undici's `dispatch` with a bare handler rather than `request`: no
 * stream per answer, which makes the generator cheaper per request (its CPU is taken from the
 * nodes on a small machine).
 */
function send(
  client: Client,
  origin: string,
  prepared: PreparedRequest,
): Promise<{ statusCode: number; body: string }> {
  return new Promise((resolve, reject) => {
    let statusCode = 0;
    let chunks: Buffer[] | undefined;
    client.dispatch(
      {
        origin,
        method: prepared.method,
        path: prepared.path,
        body: prepared.body,
        headers: prepared.headers,
      },
      // undici's Client still asserts the classic handler shape (onConnect, onHeaders, ...).
      {
        onConnect() {},
        onHeaders(status) {
          statusCode = status;
          if (status !== 200) chunks = [];
          return true;
        },
        onData(chunk) {
          chunks?.push(chunk);
          return true;
        },
        onComplete() {
          resolve({
            statusCode,
            body: chunks === undefined ? '' : Buffer.concat(chunks).toString('utf8'),
          });
        },
        onError(error) {
          reject(error);
        },
      },
    );
  });
}

async function run(
  spec: GeneratorRun,
  report: (message: GeneratorMessage, then?: () => void) => void,
): Promise<void> {
  const requests = Array.from({ length: spec.keys }, (_unused, i) =>
    preparePut(spec.protocol, i, spec.valueBytes),
  );
  const random = mulberry32(spec.seed);
  const latenciesUs: number[] = [];
  const windowSeconds = Math.ceil((spec.measureEndMs - spec.measureStartMs) / 1000);
  const opsPerSecond = new Array<number>(windowSeconds).fill(0);
  const errors: Record<string, number> = {};
  let firstError: string | undefined;
  let warmupOps = 0;
  let errorCount = 0;

  const noteError = (kind: string, detail: string): void => {
    errors[kind] = (errors[kind] ?? 0) + 1;
    errorCount++;
    firstError ??= detail;
  };

  const clients = Array.from(
    { length: spec.connections },
    () =>
      new Client(spec.origin, {
        pipelining: 1,
        keepAliveTimeout: 60_000,
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
      }),
  );

  const loop = async (client: Client): Promise<void> => {
    for (;;) {
      const startMs = wallClockMs();
      if (startMs >= spec.measureEndMs) return;
      const prepared = requests[Math.floor(random() * requests.length)]!;
      try {
        const { statusCode, body } = await send(client, spec.origin, prepared);
        if (statusCode !== 200) {
          noteError(`status ${statusCode}`, `${statusCode} ${body.slice(0, 300)}`);
          continue;
        }
        const endMs = wallClockMs();
        if (startMs < spec.measureStartMs) {
          warmupOps++;
        } else {
          latenciesUs.push((endMs - startMs) * 1000);
          const second = Math.floor((endMs - spec.measureStartMs) / 1000);
          if (second < opsPerSecond.length) opsPerSecond[second]!++;
        }
      } catch (error) {
        const code = (error as { code?: string }).code ?? (error as Error).name;
        noteError(code, (error as Error).message);
        // A refused or reset connection fails at once; do not spin on it.
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }
  };

  const progress = setInterval(() => {
    report({
      type: 'progress',
      measuredOps: latenciesUs.length,
      warmupOps,
      errors: errorCount,
      atMs: wallClockMs(),
    });
  }, 1000);
  try {
    await Promise.all(clients.map((client) => loop(client)));
  } finally {
    clearInterval(progress);
    await Promise.all(clients.map((client) => client.close()));
  }
  await new Promise<void>((resolve) => {
    report(
      {
        type: 'done',
        latenciesUs: Float64Array.from(latenciesUs),
        opsPerSecond,
        errors,
        ...(firstError === undefined ? {} : { firstError }),
      },
      resolve,
    );
  });
}

// Run only as a forked child; importing this module (for keyOf, preparePut) does nothing.
if (process.send !== undefined && process.env.PHANTOMDB_BENCH_GENERATOR === '1') {
  const report = (message: GeneratorMessage, then?: () => void): void => {
    process.send!(message, undefined, {}, () => then?.());
  };
  process.once('message', (message: GeneratorRun) => {
    run(message, report).then(
      () => process.disconnect(),
      (error: unknown) => {
        console.error(error);
        process.exit(1);
      },
    );
  });
  // The parent going away (Ctrl-C, crash) ends the generator too.
  process.once('disconnect', () => process.exit(0));
  report({ type: 'ready' });
}
