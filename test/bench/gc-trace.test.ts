// The cluster benchmark's `--gc` report: parsing `node --trace-gc-nvp` lines, as this Node
// prints them, and the per-window figures.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { gcFiguresOf, gcTable, parseGcTrace } from '../../bench/cluster/gc-trace.js';
import type { PhaseResult } from '../../bench/cluster/report.js';

const scavengeLine = (atMs: number, pauseMs: number, survived: number, promoted: number): string =>
  `[23677:0x3f106100]   ${atMs} ms: pause=${pauseMs} mutator=10.0 gc=s reduce_memory=0 ` +
  `scavenge=${pauseMs} promoted=${promoted} new_space_survived=${survived} nodes_promoted=4`;

describe('gc trace', () => {
  it('reads the collections this Node traces, among other output', () => {
    const output = execFileSync(
      process.execPath,
      [
        '--trace-gc-nvp',
        '-e',
        // Enough young garbage, some of it kept, for a few scavenges that copy something.
        'const kept = []; for (let i = 0; i < 2e5; i++) { const o = { i, s: "x" + i }; ' +
          'if (i % 8 === 0) kept.push(o); } console.log("done", kept.length);',
      ],
      { encoding: 'utf8' },
    );
    const events = parseGcTrace(`{"level":40,"msg":"a log line"}\n${output}`);
    const scavenges = events.filter((event) => event.kind === 's');
    expect(scavenges.length).toBeGreaterThan(0);
    for (const event of events) {
      expect(event.atMs).toBeGreaterThanOrEqual(0);
      expect(event.pauseMs).toBeGreaterThanOrEqual(0);
      expect(Number.isInteger(event.survivedBytes)).toBe(true);
    }
    expect(scavenges.some((event) => event.survivedBytes + event.promotedBytes > 0)).toBe(true);
    expect(events.map((event) => event.atMs)).toEqual(
      [...events.map((event) => event.atMs)].sort((a, b) => a - b),
    );
  });

  it('sums only the window, per second and per scavenge', () => {
    const events = parseGcTrace(
      [
        scavengeLine(900, 9, 1, 1), // before the window
        scavengeLine(1000, 1.5, 300_000, 100_000),
        '[23677:0x3f106100]     1500 ms: pause=7.0 mutator=33.3 gc=mc reduce_memory=0 promoted=0',
        scavengeLine(2500, 2.5, 500_000, 300_000),
        scavengeLine(3000, 9, 1, 1), // the window's end is open
      ].join('\n'),
    );
    const figures = gcFiguresOf(events, 1000, 3000);
    expect(figures).toEqual({
      scavengesPerSecond: 1,
      scavengePauseMeanMs: 2,
      scavengePauseMaxMs: 2.5,
      copiedBytesPerScavenge: 600_000,
      markCompacts: 1,
      pauseShare: 11 / 2000,
    });
    expect(gcFiguresOf(events, 5000, 6000)).toBeUndefined();
  });

  it('renders a row per traced member and nothing without traces', () => {
    const gc = gcFiguresOf(parseGcTrace(scavengeLine(10, 1.25, 2048, 1024)), 0, 1000)!;
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
    expect(table).toContain(
      '| 16 | phantomdb | 2 | n1 (leader) | 1.0 | 1.25 | 1.25 | 3 | 0 | 0.1% |',
    );
    expect(table).not.toContain('n2');
    expect(gcTable([{ ...phase, members: [phase.members[1]!] }])).toBeUndefined();
  });
});
