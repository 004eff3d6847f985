/**
 * `npm run sim -- --seeds N [--seed S] [--nodes K] [...]`: runs the deterministic cluster
 * simulator over seeds S .. S+N-1 (S defaults to 1; `--seed S` alone replays that one seed),
 * prints each failing seed with its trace, then a summary. Exit status 0 when every seed
 * passed, 1 when one failed, 2 on bad arguments.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { formatFailure, formatSummary, runSeeds, type BatchOptions } from './runner.js';
import { faultProfileNames, type FaultProfile } from './simulation.js';

const usage = `Usage: sim [--seeds N] [--seed S] [--nodes K] [options]

Runs the deterministic cluster simulator: real Raft cores, virtual time, a lossy network with
partitions, crashes, snapshots, client workload; safety checked on every step and the client
history checked for linearizability at the end of each run.

  --seeds N          run N seeds (default 1), starting at --seed (default 1)
  --seed S           first seed; alone, replays seed S
  --nodes K          voters at bootstrap (default 5)
  --no-churn         keep the membership fixed (by default members are added and removed:
                     learners, promotions, joint changes, removals of the leader)
  --faults P         fault mix for every seed: mixed, leaders or network (default: per seed)
  --fail-fast        stop at the first failing seed
  --trace N          trace lines printed for a failing seed (default 200)
  --history-out DIR  write each failing seed's client history (JSON lines) to DIR
  --verbose          one line per seed
  --unsafe-commit    run the core with its known Figure 8 bug (checks must catch it)
  --stale-reads      serve reads from any node without ReadIndex (checks must catch it)
  --send-before-persist  acknowledge before persisting (checks must catch it)
  -h, --help         show this help

Exit status: 0 all seeds passed, 1 a seed failed, 2 bad arguments.`;

interface CliOptions {
  seeds: number;
  first: number;
  batch: BatchOptions;
  failFast: boolean;
  traceLines: number;
  historyOut: string | null;
  verbose: boolean;
}

function parseArgs(args: readonly string[]): CliOptions | string {
  const options: CliOptions = {
    seeds: 1,
    first: 1,
    batch: {},
    failFast: false,
    traceLines: 200,
    historyOut: null,
    verbose: false,
  };
  let batch: { -readonly [K in keyof BatchOptions]: BatchOptions[K] } = {};
  const integer = (name: string, raw: string | undefined, min: number): number | string => {
    const value = Number(raw);
    return Number.isSafeInteger(value) && value >= min
      ? value
      : `${name} needs an integer >= ${min}, got ${JSON.stringify(raw ?? '')}`;
  };
  for (let k = 0; k < args.length; k++) {
    const arg = args[k]!;
    let value: number | string;
    switch (arg) {
      case '-h':
      case '--help':
        return 'help';
      case '--seeds':
        value = integer(arg, args[++k], 1);
        if (typeof value === 'string') return value;
        options.seeds = value;
        break;
      case '--seed':
        value = integer(arg, args[++k], 0);
        if (typeof value === 'string') return value;
        options.first = value;
        break;
      case '--nodes':
        value = integer(arg, args[++k], 1);
        if (typeof value === 'string') return value;
        if (value > 9) return '--nodes must be at most 9';
        batch = { ...batch, nodes: value };
        break;
      case '--trace':
        value = integer(arg, args[++k], 1);
        if (typeof value === 'string') return value;
        options.traceLines = value;
        break;
      case '--history-out': {
        const dir = args[++k];
        if (dir === undefined || dir === '') return '--history-out needs a directory';
        options.historyOut = dir;
        break;
      }
      case '--no-churn':
        batch = { ...batch, churn: false };
        break;
      case '--faults': {
        const profile = args[++k];
        if (!faultProfileNames.includes(profile as FaultProfile)) {
          return `--faults needs one of ${faultProfileNames.join(', ')}`;
        }
        batch = { ...batch, faults: profile as FaultProfile };
        break;
      }
      case '--unsafe-commit':
        batch = { ...batch, unsafeCommit: true };
        break;
      case '--stale-reads':
        batch = { ...batch, staleReads: true };
        break;
      case '--send-before-persist':
        batch = { ...batch, sendBeforePersist: true };
        break;
      case '--fail-fast':
        options.failFast = true;
        break;
      case '--verbose':
        options.verbose = true;
        break;
      default:
        return `unknown argument ${arg}`;
    }
  }
  options.batch = { ...batch, traceTail: options.traceLines };
  return options;
}

/** Runs the CLI; resolves with the exit status. Exported for in-process tests. */
export async function runSimCli(
  args: readonly string[],
  out: (text: string) => void = (text) => process.stdout.write(text + '\n'),
): Promise<number> {
  const parsed = parseArgs(args);
  if (parsed === 'help') {
    out(usage);
    return 0;
  }
  if (typeof parsed === 'string') {
    out(`sim: ${parsed}\n\n${usage}`);
    return 2;
  }
  const { first, seeds, batch } = parsed;
  out(
    `sim: seeds ${first}..${first + seeds - 1}${batch.churn === false ? ' without membership churn' : ''}`,
  );
  const summary = runSeeds(
    (function* () {
      for (let seed = first; seed < first + seeds; seed++) yield seed;
    })(),
    batch,
    {
      failFast: parsed.failFast,
      onResult: (result) => {
        if (parsed.verbose) {
          out(
            `seed ${result.seed}: ${result.failure === null ? 'ok' : `FAILED (${result.failure.property})`}, ${result.virtualMs.toFixed(0)} ms virtual, ${result.events} events, ${result.operations.ok + result.operations.unknown + result.operations.failed} ops`,
          );
        }
        if (result.failure !== null) out(formatFailure(result, batch, parsed.traceLines));
      },
    },
  );
  if (parsed.historyOut !== null && summary.failures.length > 0) {
    await mkdir(parsed.historyOut, { recursive: true });
    for (const failure of summary.failures) {
      const file = path.join(parsed.historyOut, `seed-${failure.seed}.jsonl`);
      await writeFile(file, failure.history());
      out(
        `history of seed ${failure.seed} written to ${file} (check it with npm run check-history)`,
      );
    }
  }
  out(formatSummary(summary));
  return summary.failures.length === 0 ? 0 : 1;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await runSimCli(process.argv.slice(2));
}
