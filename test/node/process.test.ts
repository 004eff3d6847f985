// Checks the `phantomdb` command as people run it: real `node dist/node/main.js` processes on
// free loopback ports — --help, bad flags, defaults with no flags, graceful SIGTERM (exit 0,
// data kept across a restart), a locked data dir, a taken port; and the cluster launcher.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  NodeProcess,
  call,
  cleanUp,
  clusterScript,
  freePort,
  mainScript,
  portInUse,
  requireBuild,
  statusOf,
  tempDir,
  waitFor,
} from './helpers.js';

beforeAll(requireBuild);
afterEach(cleanUp);

async function startNode(
  args: string[] = [],
  options: { cwd?: string; env?: Record<string, string>; id?: string } = {},
): Promise<{ node: NodeProcess; dir: string }> {
  const dir = await tempDir();
  const port = await freePort();
  const id = options.id ?? 'n1';
  const node = new NodeProcess(
    id,
    `http://127.0.0.1:${port}`,
    ['--id', id, '--listen', `127.0.0.1:${port}`, '--data-dir', path.join(dir, id), ...args],
    path.join(dir, `${id}.log`),
    options.cwd,
    options.env,
  );
  node.start();
  await node.ready();
  return { node, dir };
}

describe('the phantomdb command', () => {
  it('lists every flag with --help and exits 0', () => {
    const result = spawnSync(process.execPath, [mainScript, '--help'], { encoding: 'utf8' });
    expect(result.status).toBe(0);
    for (const flag of [
      '--id',
      '--listen',
      '--peers',
      '--data-dir',
      '--join',
      '--tick-ms',
      '--election-ticks',
      '--heartbeat-ticks',
      '--request-timeout-ms',
      '--snapshot-entries',
      '--snapshot-keep-entries',
      '--log-level',
      '--help',
    ]) {
      expect(result.stdout).toContain(flag);
    }
    expect(result.stdout).toContain('PHANTOMDB_');
  });

  it('refuses a bad flag with exit code 2 and a message naming it', () => {
    const result = spawnSync(process.execPath, [mainScript, '--listen', 'nowhere'], {
      encoding: 'utf8',
    });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('--listen');
    const unknown = spawnSync(process.execPath, [mainScript, '--frobnicate'], { encoding: 'utf8' });
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain('--help');
  });

  it('runs with no flags: a one-node cluster in ./data/n1 on 127.0.0.1:7001', async () => {
    const cwd = await tempDir();
    // The default port may be taken on a shared machine; the environment then moves it, and
    // everything else still comes from the defaults.
    const busy = await portInUse(7001);
    const port = busy ? await freePort() : 7001;
    const env: Record<string, string> = busy ? { PHANTOMDB_LISTEN: `127.0.0.1:${port}` } : {};
    const url = `http://127.0.0.1:${port}`;
    const node = new NodeProcess('n1', url, [], path.join(cwd, 'n1.log'), cwd, env).start();
    await node.ready();
    const lines = node.logLines();
    const listening = lines.find((line) => String(line['msg']).startsWith('Listening on'));
    expect(String(listening?.['msg'])).toContain(`curl -X PUT ${url}/v1/kv/hello -d world`);

    expect((await call('PUT', `${url}/v1/kv/hello`, { body: 'world' })).status).toBe(200);
    expect((await call('GET', `${url}/v1/kv/hello`)).text).toBe('world');
    const status = await statusOf(url);
    expect(status).toMatchObject({ id: 'n1', state: 'leader', members: [{ id: 'n1', url }] });
    expect(existsSync(path.join(cwd, 'data', 'n1', 'wal'))).toBe(true);

    node.signal('SIGTERM');
    expect(await node.exit).toEqual({ code: 0, signal: null });
  });

  it('stops gracefully on SIGTERM (exit 0) and keeps its data and membership', async () => {
    const { node } = await startNode();
    for (let k = 0; k < 20; k++) {
      expect((await call('PUT', `${node.url}/v1/kv/k${k}`, { body: `v${k}` })).status).toBe(200);
    }
    const before = await statusOf(node.url);
    node.signal('SIGTERM');
    expect(await node.exit).toEqual({ code: 0, signal: null });
    const messages = node.logLines().map((line) => String(line['msg']));
    expect(messages).toContain('Stopped node n1');

    // The restarted node is given other peers on the command line: storage wins.
    node.args.push('--peers', `n1=${node.url},n7=http://127.0.0.1:1`);
    node.start();
    await node.ready();
    const after = await statusOf(node.url);
    expect(after.members).toEqual(before.members);
    expect(after.lastApplied).toBeGreaterThanOrEqual(before.lastApplied);
    for (let k = 0; k < 20; k++) {
      expect((await call('GET', `${node.url}/v1/kv/k${k}`)).text).toBe(`v${k}`);
    }
    node.signal('SIGINT');
    expect((await node.exit).code).toBe(0);
  });

  it('refuses a data dir another node holds, and a taken port, with exit code 1', async () => {
    const { node, dir } = await startNode();
    const otherPort = await freePort();
    const locked = spawnSync(
      process.execPath,
      [mainScript, '--listen', `127.0.0.1:${otherPort}`, '--data-dir', path.join(dir, 'n1')],
      { encoding: 'utf8', timeout: 15_000 },
    );
    expect(locked.status).toBe(1);
    expect(locked.stdout).toMatch(/Cannot start.*lock/i);

    const taken = spawnSync(
      process.execPath,
      [
        mainScript,
        '--listen',
        node.url.slice('http://'.length),
        '--data-dir',
        path.join(dir, 'other'),
      ],
      { encoding: 'utf8', timeout: 15_000 },
    );
    expect(taken.status).toBe(1);
    expect(taken.stdout).toContain('Cannot listen');
    // The first node never noticed.
    expect((await call('PUT', `${node.url}/v1/kv/x`, { body: 'y' })).status).toBe(200);
  });
});

describe('npm run cluster (dist/node/cluster.js)', () => {
  it('starts N nodes that elect a leader, and Ctrl-C stops them all with exit 0', async () => {
    const dir = await tempDir();
    const base = await consecutiveFreePorts(3);
    const launcher = spawn(
      process.execPath,
      [clusterScript, '--nodes', '3', '--base-port', String(base), '--data-dir', dir],
      { detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const pids: number[] = [];
    let output = '';
    launcher.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
      for (const match of chunk.matchAll(/is pid (\d+)/g)) pids.push(Number(match[1]));
    });
    launcher.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    const exited = new Promise<number | null>((resolve) => launcher.once('exit', resolve));
    try {
      await waitFor(
        'the launcher to announce a leader',
        () => (/3 nodes up, leader n\d/.test(output) ? true : undefined),
        20_000,
      );
      const urls = [0, 1, 2].map((k) => `http://127.0.0.1:${base + k}`);
      expect((await call('PUT', `${urls[2]}/v1/kv/c`, { body: 'v' })).status).toBe(200);
      expect((await call('GET', `${urls[0]}/v1/kv/c`)).text).toBe('v');
      expect(existsSync(path.join(dir, 'n2', 'wal'))).toBe(true);
      expect(pids).toHaveLength(3);

      launcher.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(output).toContain('every node stopped');
      for (const pid of pids) expect(alive(pid), `node pid ${pid}`).toBe(false);
    } finally {
      for (const pid of [launcher.pid, ...pids]) {
        if (pid !== undefined && alive(pid)) process.kill(-pid, 'SIGKILL');
      }
    }
  });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function consecutiveFreePorts(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    let free = true;
    for (let k = 0; k < count && free; k++) free = !(await portInUse(base + k));
    if (free) return base;
  }
  throw new Error(`no ${count} consecutive free ports found`);
}
