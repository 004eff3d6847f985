// The cluster benchmark's `--gc` report: parsing `node --trace-gc-nvp` lines as this Node
// prints them, the V8 start probe that lines the trace up with the monotonic clock (checked
// against a collection forced at a known moment), the per-window figures, and withGcFigures
// placing each member's window by its own V8 start.
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  gcFiguresOf,
  gcTable,
  parseGcTrace,
  v8StartOf,
  v8StartProbeImport,
  withCurrentGcFields,
} from '../../bench/cluster/gc-trace.js';
import { withGcFigures } from '../../bench/cluster.js';
import type { BenchCluster } from '../../bench/cluster/clusters.js';
import type { PhaseWindow } from '../../bench/cluster/phase.js';
import type { PhaseResult } from '../../bench/cluster/report.js';

const line = (atMs: number, kind: string, pauseMs: number, survived = 0, promoted = 0): string =>
  `[23677:0x3f106100]   ${atMs} ms: pause=${pauseMs} mutator=10.0 gc=${kind} reduce_memory=0 ` +
  `scavenge=${pauseMs} promoted=${promoted} new_space_survived=${survived} nodes_promoted=4`;

describe('gc trace', () => {
  it('reads the collections this Node traces, and when its V8 started', () => {
    const output = execFileSync(
      process.execPath,
      [
        '--trace-gc-nvp',
        '--expose-gc',
        `--import=${v8StartProbeImport}`,
        '-e',
        // Young garbage, some of it kept, for scavenges that copy something; then, after a
        // quiet 300 ms, one young collection forced at a moment printed on the monotonic clock.
        'const kept = []; for (let i = 0; i < 2e5; i++) { const o = { i, s: "x" + i }; ' +
          'if (i % 8 === 0) kept.push(o); } setTimeout(() => { ' +
          'const at = process.hrtime.bigint() / 1000n; gc({ type: "minor" }); ' +
          'console.log("forced-at-us=" + at, kept.length); }, 300);',
      ],
      { encoding: 'utf8' },
    );
    const events = parseGcTrace(`{"level":40,"msg":"a log line"}\n${output}`);
    const young = events.filter((event) => event.kind === 's');
    expect(young.length).toBeGreaterThan(1);
    expect(young.some((event) => event.survivedBytes + event.promotedBytes > 0)).toBe(true);
    expect(young.every((event) => event.allocatedBytes > 0)).toBe(true);
    for (const event of events) {
      expect(event.pauseMs).toBeGreaterThanOrEqual(0);
      expect(Number.isInteger(event.survivedBytes)).toBe(true);
    }
    const v8StartUs = v8StartOf(output)!;
    const forcedAtUs = Number(/forced-at-us=(\d+)/.exec(output)![1]);
    // Nothing else collects in the quiet 300 ms, so only the forced collection can be near
    // where the probe places it; a probe off by the spawn delay (50 ms or more) finds none.
    const expectedMs = (forcedAtUs - v8StartUs) / 1000;
    const nearestMs = Math.min(...young.map((event) => Math.abs(event.atMs - expectedMs)));
    expect(nearestMs).toBeLessThan(5);
  });

  it('finds no V8 start in a log without the probe, or with two processes in it', () => {
    expect(v8StartOf('{"level":30}\n' + line(5, 's', 1))).toBeUndefined();
    const probe = 'phantomdb-bench-v8-start-us=';
    expect(v8StartOf(`${probe}100\n${line(5, 's', 1)}`)).toBe(100);
    expect(v8StartOf(`${probe}100\n${line(5, 's', 1)}\n${probe}900\n`)).toBeUndefined();
  });

  it('redraws figures stored under the first field names', () => {
    const stored = {
      scavengesPerSecond: 2,
      scavengePauseMeanMs: 1.5,
      scavengePauseMaxMs: 3,
      copiedBytesPerScavenge: 2048,
      markCompacts: 1,
      pauseShare: 0.01,
    };
    const phase = {
      protocol: 'phantomdb',
      connections: 1,
      round: 1,
      members: [{ id: 'n1', isLeader: true, gc: stored }],
    } as unknown as PhaseResult;
    expect(gcTable([withCurrentGcFields(phase)])).toContain(
      '| 1 | phantomdb | 1 | n1 (leader) | 2.0 | 1.50 | 3.00 | 2 | 1 | 1.0% |',
    );
  });

  it('sums only the window; young collections of either kind, mark-compacts apart', () => {
    const events = parseGcTrace(
      [
        line(900, 's', 9, 1, 1), // before the window
        line(1000, 's', 1.5, 300_000, 100_000),
        line(1500, 'mc', 7, 0, 0),
        line(2500, 'mmc', 2.5, 500_000, 300_000), // a minor mark-compact is a young collection
        line(3000, 's', 9, 1, 1), // the window's end is open
      ].join('\n'),
    );
    expect(gcFiguresOf(events, 1000, 3000)).toEqual({
      youngPerSecond: 1,
      youngPauseMeanMs: 2,
      youngPauseMaxMs: 2.5,
      copiedBytesPerYoung: 600_000,
      markCompacts: 1,
      pauseShare: 11 / 2000,
    });
    expect(gcFiguresOf(events, 5000, 6000)).toEqual({
      youngPerSecond: 0,
      youngPauseMeanMs: 0,
      youngPauseMaxMs: 0,
      copiedBytesPerYoung: 0,
      markCompacts: 0,
      pauseShare: 0,
    });
  });

  it('renders a row per traced member and nothing without traces', () => {
    const gc = gcFiguresOf(parseGcTrace(line(10, 's', 1.25, 2048, 1024)), 0, 1000);
    const phase = {
      protocol: 'phantomdb',
      system: 'phantomdb',
      connections: 16,
      round: 2,
      members: [
        { id: 'n1', isLeader: true, cpuPercent: 1, systemCpuPercent: 0, rssBytesMax: 1, gc },
        { id: 'n2', isLeader: false, cpuPercent: 1, systemCpuPercent: 0, rssBytesMax: 1 },
      ],
    } as unknown as PhaseResult;
    const table = gcTable([phase])!;
    expect(table).toContain('KiB copied per young GC');
    expect(table).toContain(
      '| 16 | phantomdb | 2 | n1 (leader) | 1.0 | 1.25 | 1.25 | 3 | 0 | 0.1% |',
    );
    expect(table).not.toContain('n2');
    expect(gcTable([{ ...phase, members: [phase.members[1]!] }])).toBeUndefined();
  });
});

describe('placing the windows', () => {
  it("reads each member's window from its own V8 start, and notes a log without a trace", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'phantomdb-gc-trace-'));
    try {
      const probe = 'phantomdb-bench-v8-start-us=';
      // n1's V8 started at 5 s on the monotonic clock, so the window [6 s, 8 s) is 1000..3000
      // in its trace; n2's log holds no trace.
      await writeFile(
        join(dir, 'n1.log'),
        [
          `${probe}5000000`,
          line(900, 's', 9, 1, 1),
          line(1000, 's', 2, 1024, 1024),
          line(2999, 's', 4, 3072, 1024),
          line(3000, 's', 9, 1, 1),
        ].join('\n'),
      );
      await writeFile(join(dir, 'n2.log'), '{"level":30,"msg":"no trace"}\n');
      const member = (id: string) => ({
        id,
        clientUrl: '',
        process: { logPath: join(dir, `${id}.log`) },
      });
      const cluster = {
        protocol: 'phantomdb',
        members: [member('n1'), member('n2')],
      } as unknown as BenchCluster;
      const phase = {
        protocol: 'phantomdb',
        connections: 1,
        round: 1,
        members: [
          { id: 'n1', isLeader: true },
          { id: 'n2', isLeader: false },
        ],
      } as unknown as PhaseResult;
      const window: PhaseWindow = { startMonotonicUs: 6_000_000, endMonotonicUs: 8_000_000 };
      const notes: string[] = [];
      const [traced] = await withGcFigures([phase], new Map([[phase, { cluster, window }]]), notes);
      expect(traced!.members[0]!.gc).toEqual({
        youngPerSecond: 1,
        youngPauseMeanMs: 3,
        youngPauseMaxMs: 4,
        copiedBytesPerYoung: 3072,
        markCompacts: 0,
        pauseShare: 6 / 2000,
      });
      expect(traced!.members[1]!.gc).toBeUndefined();
      expect(notes).toEqual([
        `--gc: no usable GC trace in ${join(dir, 'n2.log')}; its member has no GC figures`,
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
