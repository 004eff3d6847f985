/**
 * A reader for the Prometheus text exposition format, enough to take counters and histogram
 * sums from a node's `/metrics` (ours through prom-client, etcd through client_golang).
 */

/** One sample line: metric name, labels, value. */
export interface PromSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const sampleLine = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/;
const labelPair = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Parses exposition text into samples; comment and blank lines are skipped. */
export function parsePrometheusText(text: string): PromSample[] {
  const samples: PromSample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const match = sampleLine.exec(line);
    if (match === null) throw new RangeError(`Cannot parse metrics line "${line}"`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(labelPair)) {
      labels[pair[1]!] = pair[2]!.replace(/\\(.)/g, (_all, char: string) =>
        char === 'n' ? '\n' : char,
      );
    }
    const valueText = match[3]!;
    const value =
      valueText === '+Inf' ? Infinity : valueText === '-Inf' ? -Infinity : Number(valueText);
    samples.push({ name: match[1]!, labels, value });
  }
  return samples;
}

/** Sum of every sample with this exact name (over all label sets); undefined if none. */
export function sumOf(samples: readonly PromSample[], name: string): number | undefined {
  let found = false;
  let total = 0;
  for (const sample of samples) {
    if (sample.name !== name) continue;
    found = true;
    total += sample.value;
  }
  return found ? total : undefined;
}

/**
 * The name of the histogram (its `_count` series) that times WAL fsyncs, chosen by name among
 * those exposed: it must mention fsync or sync, and a name that also mentions the WAL wins.
 * Undefined when the node exposes no such metric.
 */
export function findFsyncHistogram(samples: readonly PromSample[]): string | undefined {
  const names = [...new Set(samples.map((sample) => sample.name))].filter(
    (name) => name.endsWith('_count') && /f(data)?sync/i.test(name),
  );
  names.sort((a, b) => Number(/wal/i.test(b)) - Number(/wal/i.test(a)) || a.localeCompare(b));
  const chosen = names[0];
  return chosen === undefined ? undefined : chosen.slice(0, -'_count'.length);
}
