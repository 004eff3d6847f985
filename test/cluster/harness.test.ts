// Checks the cluster harness without the node: link proxies (forward, cut, drop, reset, heal,
// partition), answer classification, process control (kill -9, SIGSTOP/SIGCONT, restart) on a
// stand-in server script, and the recorder + checker pipeline against in-process fake stores,
// one correct (linearizable) and one serving stale reads (must be caught).
import http from 'node:http';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  checkHistoryPath,
  killAllNodeProcesses,
  NodeProcess,
  freePort,
  removeTempDir,
  registerTempDir,
  sleep,
} from './processes.js';
import { LinkNetwork, LinkProxy } from './proxy.js';
import { classifyAnswer, classifyNetworkError, KvClient, type KvRequest } from './client.js';
import { HistoryRecorder } from './recorder.js';
import { mixedOperations, Workload } from './workload.js';
import { acquireMachineLock } from './harness.js';
import { existsSync } from 'node:fs';

let dir = '';

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'phantomdb-harness-'));
  registerTempDir(dir);
});

afterAll(async () => {
  killAllNodeProcesses();
  await removeTempDir(dir);
});

/** An echo server: answers every chunk with the same bytes. */
async function startEcho(): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Connects, sends `text`, and resolves with what came back within `waitMs`, or how it ended. */
async function roundTrip(port: number, text: string, waitMs = 300): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let received = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(received === '' ? 'silence' : received);
    }, waitMs);
    socket.on('data', (chunk) => {
      received += chunk.toString();
      if (received.length >= text.length) {
        clearTimeout(timer);
        socket.end();
        resolve(received);
      }
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(`error ${error.code ?? error.message}`);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(received === '' ? 'closed' : received);
    });
    socket.write(text);
  });
}

describe('LinkProxy', () => {
  it('forwards, drops or resets while cut, destroys open connections, and heals', async () => {
    const echo = await startEcho();
    const proxy = await LinkProxy.start({ from: 'a', to: 'b', targetPort: echo.port });
    try {
      expect(await roundTrip(proxy.port, 'hello')).toBe('hello');

      // An open connection dies when the link is cut.
      const open = net.connect({ host: '127.0.0.1', port: proxy.port });
      await new Promise((resolve) => open.once('connect', resolve));
      open.write('x');
      await new Promise((resolve) => open.once('data', resolve));
      const closed = new Promise<string>((resolve) => {
        open.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
        open.on('close', () => resolve('close'));
      });
      proxy.cut('drop');
      expect(['ECONNRESET', 'close']).toContain(await closed);

      // Dropped: accepted, never answered.
      expect(await roundTrip(proxy.port, 'lost')).toBe('silence');
      proxy.cut('reset');
      expect(await roundTrip(proxy.port, 'refused')).toMatch(/^(error ECONNRESET|closed)$/);
      expect(proxy.stats.refused).toBeGreaterThanOrEqual(2);

      proxy.heal();
      expect(await roundTrip(proxy.port, 'again')).toBe('again');
    } finally {
      await proxy.close();
      await echo.close();
    }
  });

  it('resets the client when the target is down', async () => {
    const port = await freePort();
    const proxy = await LinkProxy.start({ from: 'a', to: 'b', targetPort: port });
    try {
      expect(await roundTrip(proxy.port, 'anyone?')).toMatch(/^(error ECONNRESET|closed)$/);
    } finally {
      await proxy.close();
    }
  });
});

describe('LinkNetwork', () => {
  it('cuts exactly the links across a partition, one way, or around an isolated node', async () => {
    const network = new LinkNetwork();
    const ports = new Map<string, number>();
    try {
      for (const id of ['n1', 'n2', 'n3']) {
        ports.set(id, await freePort());
        await network.addNode(id, ports.get(id)!, ports);
      }
      expect(network.all()).toHaveLength(6);
      network.partition([['n1'], ['n2', 'n3']]);
      expect(network.cutLinks().sort()).toEqual(['n1->n2', 'n1->n3', 'n2->n1', 'n3->n1']);
      network.heal();
      expect(network.cutLinks()).toEqual([]);
      network.cut('n2', 'n3');
      expect(network.cutLinks()).toEqual(['n2->n3']);
      network.heal();
      network.isolate('n3');
      expect(network.cutLinks().sort()).toEqual(['n1->n3', 'n2->n3', 'n3->n1', 'n3->n2']);
      expect(() => network.partition([['n1'], ['n1', 'n2']])).toThrow(RangeError);
    } finally {
      await network.close();
    }
  });
});

describe('answer classification', () => {
  const put: KvRequest = { f: 'put', key: 'k', value: 'v' };
  const cas: KvRequest = { f: 'put', key: 'k', value: 'v', prevValue: 'u' };
  const get: KvRequest = { f: 'get', key: 'k' };
  const error = (code: string) => JSON.stringify({ error: { code, message: 'm' } });

  it('acks, observations, certain failures and unknown outcomes', () => {
    expect(classifyAnswer(put, 200, '{"index":7,"term":2}')).toMatchObject({
      kind: 'ok',
      result: 'ok',
      index: 7,
      term: 2,
    });
    expect(classifyAnswer(cas, 412, error('PRECONDITION_FAILED'))).toMatchObject({
      kind: 'ok',
      result: 'precondition',
    });
    const withCurrent = JSON.stringify({
      error: { code: 'PRECONDITION_FAILED', message: 'm' },
      current: { value: 'w', valueBase64: 'dw==' },
    });
    expect(classifyAnswer(cas, 412, withCurrent)).toMatchObject({ current: 'w' });
    expect(classifyAnswer(cas, 404, error('KEY_NOT_FOUND'))).toMatchObject({
      kind: 'ok',
      result: 'notFound',
    });
    expect(classifyAnswer(get, 200, 'abc')).toMatchObject({ kind: 'ok', value: 'abc' });
    expect(classifyAnswer(get, 404, error('KEY_NOT_FOUND'))).toMatchObject({
      kind: 'ok',
      value: null,
    });
    // A route that does not exist is not an absent key.
    expect(classifyAnswer(get, 404, error('NOT_FOUND')).kind).toBe('fail');
    expect(classifyAnswer(get, 503, error('NO_LEADER'))).toMatchObject({ kind: 'fail' });
    for (const status of [400, 405, 413, 415, 421, 429]) {
      expect(classifyAnswer(put, status, error('BAD_REQUEST')).kind).toBe('fail');
    }
    for (const status of [408, 500, 503, 504, 507]) {
      expect(classifyAnswer(put, status, error('NO_LEADER')).kind).toBe('unknown');
    }
  });

  it('network errors: refused is certain, anything after sending is not', () => {
    expect(classifyNetworkError(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }))).toEqual({
      kind: 'fail',
      code: 'ECONNREFUSED',
    });
    expect(classifyNetworkError(Object.assign(new Error('x'), { code: 'ECONNRESET' })).kind).toBe(
      'unknown',
    );
    expect(classifyNetworkError(new DOMException('late', 'TimeoutError'))).toEqual({
      kind: 'unknown',
      code: 'TIMEOUT',
    });
  });
});

describe('acquireMachineLock', () => {
  it('serializes holders and takes over the lock of a dead owner', async () => {
    const lockDir = path.join(dir, 'lock');
    const release = await acquireMachineLock(1_000, lockDir);
    await expect(acquireMachineLock(300, lockDir)).rejects.toThrow(/held by pid/);
    await release();
    const again = await acquireMachineLock(1_000, lockDir);
    await again();
    // A lock left by a process that is gone is stale.
    await mkdir(lockDir);
    await writeFile(path.join(lockDir, 'owner'), '2147483646');
    const takeover = await acquireMachineLock(1_000, lockDir);
    expect(await readFile(path.join(lockDir, 'owner'), 'utf8')).toBe(String(process.pid));
    await takeover();
  });
});

describe('NodeProcess', () => {
  afterEach(() => killAllNodeProcesses());

  it('starts, pauses, resumes, kills -9 and restarts a process group', async () => {
    const script = path.join(dir, 'stand-in.mjs');
    await writeFile(
      script,
      `import http from 'node:http';
const listen = process.argv[process.argv.indexOf('--listen') + 1];
const [host, port] = listen.split(':');
const started = Date.now();
http.createServer((req, res) => res.end(String(started))).listen(Number(port), host);
console.log('stand-in listening on ' + listen);
`,
    );
    const port = await freePort();
    const node = new NodeProcess({
      id: 's1',
      port,
      dataDir: path.join(dir, 's1', 'data'),
      logFile: path.join(dir, 's1.log'),
      args: [],
      main: script,
    });
    const client = new KvClient({ timeoutMs: 500 });
    try {
      await node.start(5_000);
      expect(node.state).toBe('running');
      const first = await fetch(`${node.url}/healthz`).then((r) => r.text());

      node.pause();
      expect(node.state).toBe('paused');
      const frozen = await client.run(node.url, { f: 'get', key: 'x' });
      expect(frozen).toMatchObject({ kind: 'fail', code: 'TIMEOUT' });
      node.resume();
      await node.waitHealthy(5_000);

      await node.kill();
      expect(node.state).toBe('stopped');
      expect(node.lastExit?.signal).toBe('SIGKILL');
      const refused = await client.run(node.url, { f: 'put', key: 'x', value: 'v' });
      expect(refused).toMatchObject({ kind: 'fail', code: 'ECONNREFUSED' });

      await node.restart(5_000);
      const second = await fetch(`${node.url}/healthz`).then((r) => r.text());
      expect(second).not.toBe(first);
      await node.kill();
      await node.closeLog();
      const log = await readFile(node.logFile, 'utf8');
      expect(log).toContain('incarnation 2');
      expect(log).toContain(`stand-in listening on 127.0.0.1:${port}`);
    } finally {
      await client.close();
      await node.kill();
    }
  });
});

/**
 * A one-process fake of the node's KV API (PUT with prevValue/prevExist, GET, 412, 404). With
 * `staleReads`, a GET answers from a copy taken 30 writes ago: a bug the checker must catch.
 */
async function startFakeStore(
  staleReads: boolean,
): Promise<{ url: string; close: () => Promise<void> }> {
  const data = new Map<string, string>();
  const history: Map<string, string>[] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const key = decodeURIComponent(url.pathname.slice('/v1/kv/'.length));
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      // A little jitter so operations overlap.
      setTimeout(() => {
        if (req.method === 'GET') {
          const view = staleReads && history.length > 30 ? history[history.length - 30]! : data;
          const value = view.get(key);
          if (value === undefined) {
            res.statusCode = 404;
            res.end(JSON.stringify({ error: { code: 'KEY_NOT_FOUND', message: 'no key' } }));
          } else res.end(value);
          return;
        }
        const current = data.get(key);
        const prevValue = url.searchParams.get('prevValue');
        const prevExist = url.searchParams.get('prevExist');
        if (prevValue !== null && current === undefined) {
          res.statusCode = 404;
          res.end(JSON.stringify({ error: { code: 'KEY_NOT_FOUND', message: 'no key' } }));
          return;
        }
        if (
          (prevValue !== null && current !== prevValue) ||
          (prevExist === 'false' && current !== undefined)
        ) {
          res.statusCode = 412;
          res.end(
            JSON.stringify({
              error: { code: 'PRECONDITION_FAILED', message: 'differs' },
              current: current === undefined ? null : { value: current },
            }),
          );
          return;
        }
        data.set(key, body);
        history.push(new Map(data));
        res.end(JSON.stringify({ index: history.length, term: 1 }));
      }, Math.random() * 3);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('recorder and checker', () => {
  it('a correct store gives a linearizable history; stale reads are caught', async () => {
    expect(existsSync(checkHistoryPath), `${checkHistoryPath} is missing: run npm run build`).toBe(
      true,
    );
    for (const stale of [false, true]) {
      const store = await startFakeStore(stale);
      const recorder = new HistoryRecorder();
      const workload = new Workload({
        recorder,
        clients: 4,
        operations: mixedOperations(['a', 'b']),
        targets: () => [{ id: 'fake', url: store.url }],
        seed: 7,
        pauseMs: 0,
      });
      workload.start();
      while (recorder.counts().ok < 300) await sleep(20);
      await workload.stop();
      await store.close();
      const report = await recorder.writeAndCheck(path.join(dir, `fake-${String(stale)}.jsonl`));
      console.log(
        `fake store (stale reads: ${String(stale)}): ${recorder.summary()}\n${report.output}`,
      );
      expect(
        recorder.counts((op) => op.request.f === 'put' && op.outcome?.kind === 'ok').ok,
      ).toBeGreaterThan(50);
      expect(report.exitCode).toBe(stale ? 1 : 0);
    }
  });

  it('renames a client after an unknown outcome so no process has two open operations', () => {
    const recorder = new HistoryRecorder();
    const first = recorder.invoke('c1', 'n1', { f: 'put', key: 'k', value: '1' });
    recorder.complete(first, { kind: 'unknown', status: 0, code: 'TIMEOUT', message: '' });
    const second = recorder.invoke('c1', 'n1', { f: 'get', key: 'k' });
    recorder.complete(second, { kind: 'ok', result: 'ok', status: 200, value: '1' });
    expect(second.process).toBe('c1.1');
    const lines = recorder
      .format()
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines[0]).toEqual({ format: 'phantomdb-history', version: 1 });
    expect(lines.slice(1).map((line) => [line['type'], line['process']])).toEqual([
      ['invoke', 'c1'],
      ['info', 'c1'],
      ['invoke', 'c1.1'],
      ['ok', 'c1.1'],
    ]);
    expect(() => recorder.complete(second, { kind: 'ok', result: 'ok', status: 200 })).toThrow();
  });
});
