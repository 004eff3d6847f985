/**
 * `npm run check-history -- FILE...`: checks client histories for linearizability.
 *
 * Reads each file, detects its format (Jepsen etcd log, kv EDN lines, or the simulator's JSON
 * lines), and prints one verdict line per file, followed by a short explanation when a history
 * is not linearizable or the checker gave up. Exit status: 0 when every file is linearizable,
 * 1 when one is not, 2 when a file cannot be read or parsed, 3 when the checker gave up on one
 * under its bounds (undecided is not a pass). The worst status wins: 2, then 1, then 3.
 */
import { readFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { HistoryParseError, parseHistory } from './history.js';
import { checkHistory, explainResult } from './linearizability.js';

const usage = `Usage: check-history [--timeout-ms N] [--steps-max N] FILE...

Checks each client history for linearizability and prints one verdict line per file.
Formats (detected): Jepsen etcd logs (register read/write/cas), kv EDN lines
(get/put/append), and the simulator's JSON lines (put/get/delete/cas).

  --timeout-ms N   give up on a file after N ms of search (default 10000)
  --steps-max N    give up on a file after N search steps (default 20000000)
  -h, --help       show this help

Exit status: 0 all linearizable, 1 one is not, 2 a file cannot be read or parsed,
3 the checker gave up on one (undecided, not a pass).`;

/** Exit statuses; when files differ the worst wins, in the order 2 > 1 > 3 > 0. */
export const exitCodes = { linearizable: 0, notLinearizable: 1, unreadable: 2, undecided: 3 };

const precedence = [0, 3, 1, 2];

/**
 * Runs the CLI with `args` (without node and the script), writing to `out`; resolves with the
 * exit status. Exported for in-process tests.
 */
export async function runCheckHistory(
  args: readonly string[],
  out: (line: string) => void = (line) => process.stdout.write(line + '\n'),
): Promise<number> {
  const files: string[] = [];
  let timeoutMs = 10_000;
  let stepsMax = 20_000_000;
  for (let k = 0; k < args.length; k++) {
    const arg = args[k]!;
    if (arg === '-h' || arg === '--help') {
      out(usage);
      return 0;
    }
    if (arg === '--timeout-ms' || arg === '--steps-max') {
      const value = Number(args[++k]);
      if (!Number.isSafeInteger(value) || value < 1) {
        out(`check-history: ${arg} needs a positive integer\n\n${usage}`);
        return exitCodes.unreadable;
      }
      if (arg === '--timeout-ms') timeoutMs = value;
      else stepsMax = value;
      continue;
    }
    if (arg.startsWith('-')) {
      out(`check-history: unknown option ${arg}\n\n${usage}`);
      return exitCodes.unreadable;
    }
    files.push(arg);
  }
  if (files.length === 0) {
    out(usage);
    return exitCodes.unreadable;
  }
  let status = 0;
  const worse = (next: number): void => {
    if (precedence.indexOf(next) > precedence.indexOf(status)) status = next;
  };
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      out(`${file}: cannot read: ${(error as Error).message}`);
      worse(exitCodes.unreadable);
      continue;
    }
    let history;
    try {
      history = parseHistory(text);
    } catch (error) {
      if (!(error instanceof HistoryParseError)) throw error;
      out(`${file}: cannot parse: ${error.message}`);
      worse(exitCodes.unreadable);
      continue;
    }
    const result = checkHistory(history, { timeoutMs, stepsMax });
    const facts = `${history.format}, ${plural(result.operations, 'op')}, ${plural(result.keys.length, 'key')}, ${result.steps} steps, ${result.elapsedMs.toFixed(1)} ms`;
    switch (result.verdict) {
      case 'linearizable':
        out(`${file}: linearizable (${facts})`);
        break;
      case 'not-linearizable':
        out(`${file}: NOT linearizable (${facts})`);
        out(indent(explainResult(result)));
        worse(exitCodes.notLinearizable);
        break;
      case 'unknown':
        out(`${file}: UNDECIDED, not a pass (${facts})`);
        out(indent(explainResult(result)));
        worse(exitCodes.undecided);
        break;
    }
  }
  return status;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => `  ${line}`)
    .join('\n');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await runCheckHistory(process.argv.slice(2));
}
