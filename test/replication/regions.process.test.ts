// Checks replication between real regions: single-node regions run as `node dist/node/main.js`
// processes on loopback (free ports, temp data dirs, killed at the end), configured over HTTP
// (POST /v1/regions) and exercised through the client API: each strategy's wait (sync, semi-sync
// with a primary, async), fail vs fallback while a region is paused (SIGSTOP) or dead (kill -9),
// nothing lost across kill -9 of a receiving and of a sending region, concurrent writes of one
// key converging alike everywhere, MULTI_VALUE siblings read as 300 and collapsed by a write,
// and the seed's usage example (examples/usage.ts) running to the end.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  NodeProcess,
  call,
  cleanUp,
  freePort,
  repoRoot,
  requireBuild,
  tempDir,
  waitFor,
  type Answer,
} from '../node/helpers.js';

interface Region {
  readonly id: string;
  readonly node: NodeProcess;
}

interface Receipt {
  readonly strategy: string;
  readonly acknowledged: string[];
  readonly pending: string[];
  readonly required: string[];
  readonly fellBack: boolean;
  readonly reason: string;
}

const json = { 'content-type': 'application/json' };

async function startRegion(dir: string, id: string, flags: string[]): Promise<Region> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const node = new NodeProcess(
    `${id}-1`,
    url,
    [
      '--id',
      `${id}-1`,
      '--listen',
      `127.0.0.1:${port}`,
      '--data-dir',
      path.join(dir, id),
      '--region',
      id,
      '--request-timeout-ms',
      '4000',
      '--replication-timeout-ms',
      '1000',
      ...flags,
    ],
    path.join(dir, `${id}.log`),
  );
  node.start();
  await node.ready();
  return { id, node };
}

async function addRegion(from: Region, to: Region, primary = false): Promise<void> {
  const answer = await call('POST', `${from.node.url}/v1/regions`, {
    headers: json,
    body: JSON.stringify({ id: to.id, url: to.node.url, ...(primary ? { primary } : {}) }),
  });
  expect(answer.status, answer.text).toBe(200);
}

async function mesh(regions: readonly Region[]): Promise<void> {
  for (const from of regions) {
    for (const to of regions) if (to !== from) await addRegion(from, to);
  }
}

function put(region: Region, key: string, value: string): Promise<Answer> {
  return call('PUT', `${region.node.url}/v1/kv/${key}`, { body: value });
}

/** The value of `key` in `region`'s local state (stale read), or undefined when absent. */
async function localValue(region: Region, key: string): Promise<string | undefined> {
  const answer = await call('GET', `${region.node.url}/v1/kv/${key}?consistency=stale`, {
    timeoutMs: 2_000,
  });
  if (answer.status === 404) return undefined;
  if (answer.status !== 200) throw new Error(`GET ${key} on ${region.id}: ${answer.status}`);
  return answer.text;
}

async function untilEverywhere(
  regions: readonly Region[],
  key: string,
  value: string,
): Promise<void> {
  for (const region of regions) {
    await waitFor(
      `${key}=${value} in ${region.id}`,
      async () => ((await localValue(region, key)) === value ? true : undefined),
      15_000,
    );
  }
}

async function metric(region: Region, name: string, labels: string): Promise<number> {
  const text = (await call('GET', `${region.node.url}/metrics`)).text;
  const line = text.split('\n').find((row) => row.startsWith(`${name}{`) && row.includes(labels));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('regions as processes', () => {
  let dir = '';
  // us: sync, failing; eu: semi-sync with us as primary; ap: async; sa: sync, falling back.
  let us: Region;
  let eu: Region;
  let ap: Region;
  let sa: Region;
  let all: Region[];

  beforeAll(async () => {
    requireBuild();
    dir = await tempDir('phantomdb-regions-');
    [us, eu, ap, sa] = await Promise.all([
      startRegion(dir, 'us', ['--replication', 'sync']),
      startRegion(dir, 'eu', ['--replication', 'semi-sync']),
      startRegion(dir, 'ap', ['--replication', 'async']),
      startRegion(dir, 'sa', ['--replication', 'sync', '--replication-fallback', 'async']),
    ]);
    all = [us, eu, ap, sa];
    // Concurrent writes of one key, made before the regions know each other: a real conflict
    // in every pair, resolved when each region catches the others up from scratch.
    for (const region of all) {
      expect((await put(region, 'race', `from-${region.id}`)).status).toBe(200);
    }
    await mesh(all);
    await addRegion(eu, us, true);
  }, 60_000);

  afterAll(cleanUp);

  it('lists regions with live status on the leader; bad region requests get clear 4xx', async () => {
    const status = (await call('GET', `${eu.node.url}/v1/regions`)).json<{
      region: string;
      strategy: string;
      primary: string;
      regions: { regionId: string; primary: boolean; live: boolean }[];
    }>();
    expect(status).toMatchObject({ region: 'eu', strategy: 'SEMI_SYNCHRONOUS', primary: 'us' });
    expect(status.regions.map((region) => [region.regionId, region.primary, region.live])).toEqual([
      ['ap', false, true],
      ['sa', false, true],
      ['us', true, true],
    ]);
    const self = await call('POST', `${us.node.url}/v1/regions`, {
      headers: json,
      body: JSON.stringify({ id: 'us', url: eu.node.url }),
    });
    expect(self.status).toBe(400);
    expect(self.json<{ error: { message: string } }>().error.message).toMatch(
      /that is this region/,
    );
    const badUrl = await call('POST', `${us.node.url}/v1/regions`, {
      headers: json,
      body: JSON.stringify({ id: 'x', url: 'ftp://x' }),
    });
    expect(badUrl.status).toBe(400);
    const unknown = await call('DELETE', `${us.node.url}/v1/regions/nowhere`);
    expect(unknown.status).toBe(404);
    expect(unknown.json<{ error: { code: string } }>().error.code).toBe('UNKNOWN_REGION');
    expect((await call('PATCH', `${us.node.url}/v1/regions`)).status).toBe(405);
  });

  it('concurrent writes of one key converge to the same value in every region', async () => {
    const values = await waitFor(
      'every region to settle on one value of race',
      async () => {
        const seen = await Promise.all(all.map((region) => localValue(region, 'race')));
        return seen.every((value) => value === seen[0]) ? seen : undefined;
      },
      15_000,
    );
    expect(values[0]).toMatch(/^from-(us|eu|ap|sa)$/);
    let conflicts = 0;
    for (const region of all) {
      conflicts += await metric(region, 'phantomdb_conflicts_total', 'outcome="timestamp"');
    }
    expect(conflicts).toBeGreaterThanOrEqual(3);
  });

  it('sync waits for every region, semi-sync for the primary, async for none', async () => {
    const sync = await put(us, 'sync-1', 'x');
    expect(sync.status, sync.text).toBe(200);
    const syncReceipt = sync.json<{ replication: Receipt }>().replication;
    expect(syncReceipt).toMatchObject({ strategy: 'SYNCHRONOUS', fellBack: false, pending: [] });
    expect(syncReceipt.acknowledged).toEqual(['ap', 'eu', 'sa']);
    // Acknowledged means committed there: every region serves it already.
    for (const region of [eu, ap, sa]) expect(await localValue(region, 'sync-1')).toBe('x');

    const semi = await put(eu, 'semi-1', 'y');
    expect(semi.status, semi.text).toBe(200);
    const semiReceipt = semi.json<{ replication: Receipt }>().replication;
    expect(semiReceipt).toMatchObject({ strategy: 'SEMI_SYNCHRONOUS', required: ['us'] });
    expect(semiReceipt.acknowledged).toContain('us');
    expect(await localValue(us, 'semi-1')).toBe('y');

    const async = await put(ap, 'async-1', 'z');
    expect(async.status, async.text).toBe(200);
    expect(async.json<{ replication: Receipt }>().replication).toMatchObject({
      strategy: 'ASYNCHRONOUS',
      required: [],
      acknowledged: [],
      fellBack: false,
    });
    await untilEverywhere(all, 'async-1', 'z');
    await untilEverywhere(all, 'semi-1', 'y');
  });

  it('with a region paused, semi-sync still completes, sync fails or falls back, and all converges', async () => {
    ap.node.signal('SIGSTOP');
    try {
      const semi = await put(eu, 'paused-semi', '1');
      expect(semi.status, semi.text).toBe(200);
      expect(semi.json<{ replication: Receipt }>().replication.pending).toContain('ap');

      const started = performance.now();
      const failed = await put(us, 'paused-sync', '2');
      expect(performance.now() - started).toBeGreaterThanOrEqual(900);
      expect(failed.status).toBe(503);
      const body = failed.json<{
        error: { code: string; message: string };
        index: number;
        replication: Receipt;
      }>();
      expect(body.error.code).toBe('REGION_UNAVAILABLE');
      expect(body.error.message).toMatch(
        /committed in region us and will still be shipped, but region ap did not acknowledge it/,
      );
      expect(body.replication).toMatchObject({ pending: ['ap'], fellBack: false });
      expect(body.replication.acknowledged).toEqual(['eu', 'sa']);
      // Durable here despite the error.
      expect(await localValue(us, 'paused-sync')).toBe('2');

      const fellBack = await put(sa, 'paused-fallback', '3');
      expect(fellBack.status, fellBack.text).toBe(200);
      expect(fellBack.json<{ replication: Receipt }>().replication).toMatchObject({
        fellBack: true,
        pending: ['ap'],
        reason: 'no acknowledgement within 1000 ms',
      });
      const regions = (await call('GET', `${sa.node.url}/v1/regions`)).json<{
        regions: { regionId: string; fallbacks: number }[];
      }>();
      expect(regions.regions.find((region) => region.regionId === 'ap')!.fallbacks).toBe(1);
      expect(await metric(sa, 'phantomdb_replication_fallbacks_total', 'region="ap"')).toBe(1);
      expect(await metric(us, 'phantomdb_replication_sync_failures_total', '')).toBe(1);
    } finally {
      ap.node.signal('SIGCONT');
    }
    await untilEverywhere([ap], 'paused-sync', '2');
    await untilEverywhere([ap], 'paused-fallback', '3');
    await untilEverywhere([ap], 'paused-semi', '1');
  });

  it('loses nothing when a receiving region and then a sending one are killed with -9', async () => {
    await ap.node.kill();
    await waitFor(
      'us to see ap down',
      async () => {
        const status = (await call('GET', `${us.node.url}/v1/regions`)).json<{
          regions: { regionId: string; connected: boolean }[];
        }>();
        return status.regions.find((region) => region.regionId === 'ap')!.connected
          ? undefined
          : true;
      },
      10_000,
    );
    // Known down: the sync write fails at once, the fallback one falls back at once.
    const failed = await put(us, 'down-sync', '1');
    expect(failed.status).toBe(503);
    expect(failed.json<{ error: { message: string } }>().error.message).toMatch(
      /region ap is unreachable/,
    );
    const fellBack = await put(sa, 'down-fallback', '2');
    expect(fellBack.json<{ replication: Receipt }>().replication.reason).toMatch(
      /region ap is unreachable/,
    );
    for (let k = 0; k < 20; k++) {
      expect((await put(eu, `down-${k}`, `${k}`)).status).toBe(200);
    }
    const pending = (await call('GET', `${eu.node.url}/v1/regions`)).json<{
      regions: { regionId: string; pending: number; lagEntries: number; connected: boolean }[];
    }>();
    expect(pending.regions.find((region) => region.regionId === 'ap')).toMatchObject({
      connected: false,
      pending: 20,
    });
    // The sender dies too, with writes for ap not yet shipped; it restarts from its data dir.
    await sa.node.kill();
    sa.node.start();
    await sa.node.ready();
    ap.node.start();
    await ap.node.ready();
    await untilEverywhere([ap], 'down-19', '19');
    await untilEverywhere([ap], 'down-sync', '1');
    await untilEverywhere([ap], 'down-fallback', '2');
    // ap's own writes survived its kill -9.
    expect(await localValue(ap, 'async-1')).toBe('z');
    for (let k = 0; k < 20; k++) expect(await localValue(ap, `down-${k}`)).toBe(`${k}`);
    await waitFor(
      'eu to report ap caught up',
      async () => {
        const status = (await call('GET', `${eu.node.url}/v1/regions`)).json<{
          regions: { regionId: string; pending: number; connected: boolean }[];
        }>();
        const entry = status.regions.find((region) => region.regionId === 'ap')!;
        return entry.connected && entry.pending === 0 ? true : undefined;
      },
      10_000,
    );
  });
});

describe('MULTI_VALUE regions as processes', () => {
  afterAll(cleanUp);

  it('show concurrent writes as siblings (300) and collapse them after a write that saw them', async () => {
    requireBuild();
    const dir = await tempDir('phantomdb-regions-mv-');
    const [left, right] = await Promise.all([
      startRegion(dir, 'left', ['--conflict', 'multi-value']),
      startRegion(dir, 'right', ['--conflict', 'multi-value']),
    ]);
    expect((await put(left, 'k', 'from-left')).status).toBe(200);
    expect((await put(right, 'k', 'from-right')).status).toBe(200);
    await mesh([left, right]);
    const siblingsOf = async (region: Region) => {
      const answer = await call('GET', `${region.node.url}/v1/kv/k`);
      if (answer.status !== 300) return undefined;
      return answer
        .json<{ siblings: { value: string; region: string; deleted: boolean }[] }>()
        .siblings.map((sibling) => `${sibling.value}@${sibling.region}`)
        .sort();
    };
    for (const region of [left, right]) {
      const siblings = await waitFor(`siblings in ${region.id}`, () => siblingsOf(region), 15_000);
      expect(siblings).toEqual(['from-left@left', 'from-right@right']);
    }
    // CBOR readers get the values as bytes.
    const cbor = await call('GET', `${left.node.url}/v1/kv/k`, {
      headers: { accept: 'application/cbor' },
    });
    expect(cbor.status).toBe(300);
    const values = cbor
      .json<{ siblings: { value: Uint8Array }[] }>()
      .siblings.map((s) => new TextDecoder().decode(s.value));
    expect(values.sort()).toEqual(['from-left', 'from-right']);

    expect((await put(right, 'k', 'merged')).status).toBe(200);
    await untilEverywhere([left, right], 'k', 'merged');

    // A region's id is part of its data: a restart under another name is refused.
    await left.node.kill();
    const index = left.node.args.indexOf('--region');
    left.node.args[index + 1] = 'elsewhere';
    left.node.start();
    expect((await left.node.exit).code).toBe(1);
    expect(left.node.log()).toMatch(
      /it belongs to region left, this state machine to region elsewhere/,
    );
  });
});

describe('the seed usage example', () => {
  it('runs against the processes it starts, and stops them', async () => {
    requireBuild();
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', path.join(repoRoot, 'examples/usage.ts')],
      { cwd: repoRoot, timeout: 60_000 },
    );
    expect(stdout).toMatch(/submitCommand\("WRITE", "key1:value1"\) -> index \d+; key1 = value1/);
    // The primary always; region2 too if it was as quick.
    expect(stdout).toMatch(/replicateData under SEMI_SYNCHRONOUS -> acknowledged by \[ 'region1'/);
    expect(stdout).toMatch(/region2 reads test_key = test_value/);
    expect(stdout).toMatch(
      /us-east reads from_region2 \(written in region2\) = "hello from region2"/,
    );
    expect(stdout).toMatch(/Current leader: node1/);
    expect(stdout).toMatch(/Region region1 \(primary\): connected=true/);
  }, 60_000);
});
