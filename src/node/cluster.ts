#!/usr/bin/env node
/**
 * `npm run cluster -- --nodes N`: a local cluster of N node processes on 127.0.0.1, ports
 * 7001.., data under ./data/cluster/<id>. It prints each node's log lines (prefixed, or raw
 * JSON with --json), says when a leader is elected, and Ctrl-C stops every node gracefully
 * (a second Ctrl-C kills them). Node flags after `--` go to every node, e.g.
 * `npm run cluster -- --nodes 5 -- --snapshot-entries 1000`.
 *
 * Each node runs in its own process group, so the terminal's Ctrl-C reaches only this
 * launcher, which then sends every node exactly one SIGTERM (a second signal would make a
 * node exit at once instead of gracefully).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { hostPort, nodeUrl } from '../transport/url.js';
import { envNameOf } from './config.js';

interface Member {
  readonly id: string;
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  process: ChildProcess | null;
  exitCode: number | null;
}

const usage = `Usage: npm run cluster -- [flags] [-- node flags]

Runs a local PhantomDB cluster: one node process per member, on consecutive ports.

  --nodes N            members (default 3)
  --host HOST          address every node listens on (default 127.0.0.1)
  --base-port PORT     port of n1; n2 gets the next one, and so on (default 7001)
  --data-dir DIR       parent of the nodes' data directories (default ./data/cluster)
  --log-level LEVEL    the nodes' log level (default info)
  --json               print the nodes' log lines as raw JSON
  --help               print this help and exit

Ctrl-C stops every node gracefully; a second Ctrl-C kills them.
`;

function fail(message: string): never {
  process.stderr.write(`cluster: ${message}\n`);
  process.exit(2);
}

function integerFlag(
  name: string,
  value: string | undefined,
  fallback: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!/^\d+$/.test(value) || parsed < 1 || parsed > max) {
    fail(`Invalid --${name} "${value}": expected an integer in 1..${max}`);
  }
  return parsed;
}

let parsed;
try {
  parsed = parseArgs({
    args: process.argv.slice(2),
    options: {
      nodes: { type: 'string' },
      host: { type: 'string' },
      'base-port': { type: 'string' },
      'data-dir': { type: 'string' },
      'log-level': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean' },
    },
    allowPositionals: true,
    strict: true,
  });
} catch (error) {
  fail(`${(error as Error).message}\nRun with --help to list the flags.`);
}
const { values, positionals: nodeFlags } = parsed;
if (values.help === true) {
  process.stdout.write(usage);
  process.exit(0);
}
const count = integerFlag('nodes', values.nodes, 3, 99);
const host = values.host ?? '127.0.0.1';
const basePort = integerFlag('base-port', values['base-port'], 7001, 65535 - count + 1);
const dataRoot = path.resolve(values['data-dir'] ?? path.join('data', 'cluster'));
const logLevel = values['log-level'] ?? 'info';
const rawLogs = values.json === true;
const mainScript = fileURLToPath(new URL('./main.js', import.meta.url));
const givenFlag = (name: string): boolean =>
  nodeFlags.some((flag) => flag === `--${name}` || flag.startsWith(`--${name}=`)) ||
  (process.env[envNameOf(name)] ?? '') !== '';
// With TLS the nodes serve HTTPS only, so they must name each other by https:// URLs.
const tls = givenFlag('tls-cert');
// The launcher's own status polling has neither the CA nor a token.
const secured = tls || givenFlag('tokens-file');

const members: Member[] = Array.from({ length: count }, (_, k) => {
  const id = `n${k + 1}`;
  const port = basePort + k;
  return {
    id,
    port,
    url: nodeUrl(tls ? 'https' : 'http', host, port),
    dataDir: path.join(dataRoot, id),
    process: null,
    exitCode: null,
  };
});
const peers = members.map((member) => `${member.id}=${member.url}`).join(',');

mkdirSync(dataRoot, { recursive: true });
const existing = readdirSync(dataRoot).filter((name) => /^n\d+$/.test(name));
const fresh = members.filter((member) => !existsSync(member.dataDir)).length;
if (existing.length > 0 && (existing.length !== count || fresh > 0)) {
  process.stderr.write(
    `cluster: ${dataRoot} holds data of ${existing.join(', ')}; restarted nodes keep the membership stored there, so a cluster of a different size will not form. Remove ${dataRoot} to start afresh.\n`,
  );
}

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

const levelNames: Readonly<Record<number, string>> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};

/** A pino line, shortened for a terminal: time, node, level, message. */
function formatLine(id: string, line: string): string {
  if (rawLogs) return line;
  try {
    const record = JSON.parse(line) as { time?: string; level?: number; msg?: string };
    const time = typeof record.time === 'string' ? record.time.slice(11, 23) : '';
    const level = levelNames[record.level ?? 30] ?? String(record.level);
    return `${time} ${id.padEnd(4)} ${level.padEnd(5)} ${record.msg ?? line}`;
  } catch {
    return `${id.padEnd(4)} ${line}`;
  }
}

function start(member: Member): void {
  const child = spawn(
    process.execPath,
    [
      mainScript,
      '--id',
      member.id,
      '--listen',
      hostPort(host, member.port),
      '--peers',
      peers,
      '--data-dir',
      member.dataDir,
      '--log-level',
      logLevel,
      ...nodeFlags,
    ],
    { detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  member.process = child;
  say(`cluster: ${member.id} is pid ${child.pid ?? '?'}, ${member.url}, data ${member.dataDir}`);
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on('line', (line) => say(formatLine(member.id, line)));
  }
  child.on('exit', (code, signal) => {
    member.exitCode = code ?? 128;
    member.process = null;
    if (!stopping) {
      say(
        `cluster: ${member.id} exited (${signal ?? `code ${code}`}) while the cluster was running`,
      );
    }
    if (members.every((candidate) => candidate.process === null)) {
      const failed = members.some((candidate) => candidate.exitCode !== 0);
      say(stopping ? 'cluster: every node stopped' : 'cluster: every node exited');
      process.exit(failed || !stopping ? 1 : 0);
    }
  });
}

let stopping = false;
function onSignal(): void {
  if (stopping) {
    say('cluster: killing every node');
    for (const member of members) signalGroup(member, 'SIGKILL');
    process.exit(130);
  }
  stopping = true;
  say('cluster: stopping every node (Ctrl-C again to kill them)');
  for (const member of members) signalGroup(member, 'SIGTERM');
}

function signalGroup(member: Member, signal: NodeJS.Signals): void {
  const pid = member.process?.pid;
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
// If this launcher dies of anything else, it takes its nodes with it.
process.on('exit', () => {
  for (const member of members) signalGroup(member, 'SIGKILL');
});

/** Polls the nodes' status until one reports a leader every member agrees on. */
async function announceLeader(): Promise<void> {
  if (secured) {
    say(
      `cluster: ${count} node${count === 1 ? '' : 's'} starting with TLS or tokens: ${members.map((member) => `${member.id} ${member.url}`).join(', ')}; their logs name the leader (Ctrl-C stops all)`,
    );
    return;
  }
  const deadline = Date.now() + 30_000;
  while (!stopping && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    const leaders = await Promise.all(
      members.map(async (member) => {
        try {
          const response = await fetch(`${member.url}/v1/status`, {
            signal: AbortSignal.timeout(1000),
          });
          const status = (await response.json()) as { leader?: string };
          return status.leader ?? '';
        } catch {
          return '';
        }
      }),
    );
    const leader = leaders[0] ?? '';
    if (leader !== '' && leaders.every((candidate) => candidate === leader)) {
      const url = members.find((member) => member.id === leader)?.url ?? members[0]!.url;
      say(
        `cluster: ${count} node${count === 1 ? '' : 's'} up, leader ${leader}: ${members.map((member) => `${member.id} ${member.url}`).join(', ')}`,
      );
      say(
        `cluster: try  curl -X PUT ${members[count - 1]!.url}/v1/kv/hello -d world && curl ${url}/v1/kv/hello   (Ctrl-C stops all)`,
      );
      return;
    }
  }
  if (!stopping) say("cluster: no leader after 30 s; see the nodes' logs above");
}

say(`cluster: starting ${count} node${count === 1 ? '' : 's'}, data under ${dataRoot}`);
for (const member of members) start(member);
await announceLeader();
