// Checks the check-history CLI: verdict lines and exit statuses (0 / 1 / 2 / 3) in process on
// files written to a temp dir, and once through a real child process for the entry point.
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exitCodes, runCheckHistory } from '../../src/sim/check-history.js';

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

const good = [
  'INFO  jepsen.util - 0\t:invoke\t:write\t1',
  'INFO  jepsen.util - 0\t:ok\t:write\t1',
  'INFO  jepsen.util - 1\t:invoke\t:read\tnil',
  'INFO  jepsen.util - 1\t:ok\t:read\t1',
].join('\n');
const bad = good.replace(':ok\t:read\t1', ':ok\t:read\t7');
const header = '{"format":"phantomdb-history","version":1}';
const wide = [header];
for (let k = 0; k < 14; k++) {
  wide.push(
    JSON.stringify({ type: 'invoke', process: `w${k}`, f: 'put', key: 'x', value: `${k}` }),
  );
}
wide.push('{"type":"invoke","process":"r","f":"get","key":"x"}');
wide.push('{"type":"ok","process":"r","result":"ok","value":"13"}');
wide.push('{"type":"invoke","process":"r","f":"get","key":"x"}');
wide.push('{"type":"ok","process":"r","result":"ok","value":"0"}');

let dir = '';
const file = (name: string) => path.join(dir, name);

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'check-history-'));
  await writeFile(file('good.log'), good);
  await writeFile(file('bad.log'), bad);
  await writeFile(file('garbage.txt'), 'not a history\n');
  await writeFile(file('wide.jsonl'), wide.join('\n'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function run(...args: string[]): Promise<{ status: number; output: string }> {
  const lines: string[] = [];
  const status = await runCheckHistory(args, (line) => lines.push(line));
  return { status, output: lines.join('\n') };
}

describe('check-history', () => {
  it('exits 0 with one verdict line per linearizable file', async () => {
    const { status, output } = await run(file('good.log'), file('wide.jsonl'));
    expect(status).toBe(exitCodes.linearizable);
    expect(output.split('\n')).toHaveLength(2);
    expect(output).toMatch(/good\.log: linearizable \(jepsen-etcd, 2 ops, 1 key,/);
    expect(output).toMatch(/wide\.jsonl: linearizable \(phantomdb-jsonl, 16 ops/);
  });

  it('exits 1 and explains a non-linearizable file', async () => {
    const { status, output } = await run(file('good.log'), file('bad.log'));
    expect(status).toBe(exitCodes.notLinearizable);
    expect(output).toMatch(/bad\.log: NOT linearizable/);
    expect(output).toContain('cannot place p1 get("register") -> "7" [line 3]');
  });

  it('exits 2 on a file it cannot read or parse, even next to a bad one', async () => {
    const missing = await run(file('missing.log'), file('bad.log'));
    expect(missing.status).toBe(exitCodes.unreadable);
    expect(missing.output).toMatch(/missing\.log: cannot read: ENOENT/);
    const garbage = await run(file('garbage.txt'));
    expect(garbage.status).toBe(exitCodes.unreadable);
    expect(garbage.output).toMatch(/garbage\.txt: cannot parse: Cannot detect the history format/);
    expect((await run()).status).toBe(exitCodes.unreadable);
    expect((await run('--steps-max', 'x', file('good.log'))).status).toBe(exitCodes.unreadable);
  });

  it('exits 3 when it gives up under its bound, and never calls that a pass', async () => {
    const { status, output } = await run('--steps-max', '5', file('wide.jsonl'));
    expect(status).toBe(exitCodes.undecided);
    expect(output).toMatch(/wide\.jsonl: UNDECIDED, not a pass/);
    expect(output).toMatch(/gave up on key "x" after \d+ search steps/);
  });

  it('runs as a program with the same exit statuses', () => {
    const tsx = path.join(projectRoot, 'node_modules', '.bin', 'tsx');
    const script = path.join(projectRoot, 'src', 'sim', 'check-history.ts');
    const passed = spawnSync(tsx, [script, file('good.log')], { encoding: 'utf8' });
    expect(passed.status).toBe(0);
    expect(passed.stdout).toMatch(/good\.log: linearizable/);
    const failed = spawnSync(tsx, [script, file('good.log'), file('bad.log')], {
      encoding: 'utf8',
    });
    expect(failed.status).toBe(1);
  });
});
