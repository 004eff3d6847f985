// Checks that the node's security, Raft, replication and promotion flags and the library's
// checks (resolveSecurityLimits, resolveRaftLimits, resolveReplicationLimits, RaftConsensus's
// `promotion`) accept and refuse the same values: loops over each group's bounds table put each
// limit at its edges and just past them on both sides, check the cross-field rules, and
// fast-check compares the two sides on arbitrary integers.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  raftDefaults,
  raftLimitBounds,
  replicationDefaults,
  replicationLimitBounds,
  resolveRaftLimits,
  resolveReplicationLimits,
  resolveSecurityLimits,
  securityDefaults,
  securityLimitBounds,
  type IntegerBounds,
  type IntegerBoundsTable,
} from '../../src/config.js';
import {
  RaftConsensus,
  memberPromotionBounds,
  memberPromotionDefaults,
} from '../../src/consensus/raft-consensus.js';
import {
  ConfigError,
  defaultElectionTicks,
  memberPromotionFlags,
  parseNodeConfig,
  raftLimitFlags,
  replicationLimitFlags,
  securityLimitFlags,
  type NodeConfig,
} from '../../src/node/config.js';

type Values = Record<string, number>;
type Side = 'library' | 'node';

/** One group of limits: its table, its flags, and how each side is asked. */
interface Group {
  readonly name: string;
  readonly bounds: IntegerBoundsTable<string>;
  readonly flags: Readonly<Partial<Record<string, string>>>;
  /** What each side uses for a limit that is not given. */
  readonly defaults: Readonly<Record<Side, Values>>;
  /** Runs the library's check; returns the values it kept, or null when it does not tell. */
  readonly resolve: (overrides: Values) => Values | null;
  /** What the library puts before a field's name in its message. */
  readonly fieldPrefix: string;
  /** Flags the node is given beside the group's, so that only the group's bounds decide. */
  readonly nodeArgv: readonly string[];
  /** A value the node refuses for a field (and all above), by a rule outside the table. */
  readonly nodeCeiling: Readonly<Values>;
  readonly nodeValues: (config: NodeConfig) => Values;
}

const alone = [{ id: 'x', host: '127.0.0.1', port: 7009 }];

/** The numeric fields of a limits object (the switches and the promotion mode left out). */
function numbersOf(record: object): Values {
  return Object.fromEntries(
    Object.entries(record).filter(
      (entry): entry is [string, number] => typeof entry[1] === 'number',
    ),
  );
}

const groups: readonly Group[] = [
  {
    name: 'security',
    bounds: securityLimitBounds,
    flags: securityLimitFlags,
    defaults: { library: numbersOf(securityDefaults), node: numbersOf(securityDefaults) },
    resolve: (overrides) => numbersOf(resolveSecurityLimits(overrides)),
    fieldPrefix: '',
    nodeArgv: [],
    nodeCeiling: {},
    nodeValues: (config) => numbersOf(config.security.limits),
  },
  {
    name: 'raft',
    bounds: raftLimitBounds,
    flags: raftLimitFlags,
    defaults: {
      library: numbersOf(raftDefaults),
      node: numbersOf({ ...raftDefaults, electionTicks: defaultElectionTicks }),
    },
    resolve: (overrides) => numbersOf(resolveRaftLimits(overrides)),
    fieldPrefix: '',
    nodeArgv: [],
    nodeCeiling: {},
    nodeValues: (config) => ({
      electionTicks: config.electionTicks,
      heartbeatTicks: config.heartbeatTicks,
    }),
  },
  {
    name: 'replication',
    bounds: replicationLimitBounds,
    flags: replicationLimitFlags,
    defaults: {
      library: numbersOf(replicationDefaults),
      // The node's default is derived from --request-timeout-ms (600000 here, see nodeArgv).
      node: numbersOf({ ...replicationDefaults, replicationTimeoutMs: 2_000 }),
    },
    resolve: (overrides) => numbersOf(resolveReplicationLimits(overrides)),
    fieldPrefix: '',
    // --replication-timeout-ms must be below --request-timeout-ms, whose largest is 600000.
    nodeArgv: ['--request-timeout-ms=600000'],
    nodeCeiling: { replicationTimeoutMs: 600_000 },
    nodeValues: (config) => ({ replicationTimeoutMs: config.replicationTimeoutMs }),
  },
  {
    name: 'promotion',
    bounds: memberPromotionBounds,
    flags: memberPromotionFlags,
    defaults: {
      library: numbersOf(memberPromotionDefaults),
      node: numbersOf(memberPromotionDefaults),
    },
    resolve: (overrides) => {
      // The constructor only checks its options: it starts no timer before initialize().
      new RaftConsensus('x', alone, { promotion: overrides });
      return null;
    },
    fieldPrefix: 'promotion.',
    nodeArgv: [],
    nodeCeiling: {},
    nodeValues: (config) => ({
      lagEntriesMax: config.promotion.lagEntriesMax,
      timeoutMs: config.promotion.timeoutMs,
    }),
  },
];

function fieldsOf(group: Group): string[] {
  return Object.keys(group.bounds);
}

function flaggedFieldsOf(group: Group): string[] {
  return fieldsOf(group).filter((field) => group.flags[field] !== undefined);
}

function boundsOf(group: Group, field: string): IntegerBounds<string> {
  const bounds = group.bounds[field];
  if (bounds === undefined) throw new Error(`${group.name} has no field ${field}`);
  return bounds;
}

function flagOf(group: Group, field: string): string {
  const flag = group.flags[field];
  if (flag === undefined) throw new Error(`${group.name}.${field} has no flag`);
  return flag;
}

/** The lowest and highest value of `field` one side can accept, the other fields permitting. */
function edgesOf(group: Group, field: string, side: Side): { min: number; max: number } {
  const { min, max, atLeast, below, flagMax } = boundsOf(group, field);
  let low = min;
  let high = side === 'node' ? (flagMax ?? max) : max;
  if (atLeast !== undefined) low = Math.max(low, edgesOf(group, atLeast, side).min);
  if (below !== undefined) high = Math.min(high, edgesOf(group, below, side).max - 1);
  const ceiling = group.nodeCeiling[field];
  if (side === 'node' && ceiling !== undefined) high = Math.min(high, ceiling - 1);
  return { min: low, max: high };
}

/**
 * Overrides that set `field` to `value` and leave only `field`'s own bounds to decide: a limit it
 * must be at least is at its lowest, one it must be below at its highest, one that must be at
 * least it follows it up, and one that must be below it is at its lowest.
 */
function overridesOf(group: Group, field: string, value: number, side: Side): Values {
  const overrides: Values = { [field]: value };
  for (let floor = boundsOf(group, field).atLeast; floor !== undefined;) {
    overrides[floor] = edgesOf(group, floor, side).min;
    floor = boundsOf(group, floor).atLeast;
  }
  for (let ceiling = boundsOf(group, field).below; ceiling !== undefined;) {
    overrides[ceiling] = edgesOf(group, ceiling, side).max;
    ceiling = boundsOf(group, ceiling).below;
  }
  for (const other of fieldsOf(group)) {
    const bounds = boundsOf(group, other);
    if (bounds.atLeast === field) {
      const raised = Number.isSafeInteger(value) ? value : bounds.min;
      const fallback = group.defaults[side][other]!;
      overrides[other] = Math.min(edgesOf(group, other, side).max, Math.max(fallback, raised));
    }
    if (bounds.below === field) overrides[other] = edgesOf(group, other, side).min;
  }
  return overrides;
}

/** The field the library refuses `overrides` for, or null when it accepts them. */
function libraryRefusal(group: Group, overrides: Values): string | null {
  try {
    const resolved = group.resolve(overrides);
    if (resolved !== null) {
      for (const [field, value] of Object.entries(overrides)) expect(resolved[field]).toBe(value);
    }
    return null;
  } catch (error) {
    expect(error).toBeInstanceOf(RangeError);
    const named = /^Invalid ([\w.]+): /.exec((error as Error).message)?.[1] ?? '';
    expect(named.startsWith(group.fieldPrefix), named).toBe(true);
    const field = named.slice(group.fieldPrefix.length);
    expect(fieldsOf(group)).toContain(field);
    return field;
  }
}

/** The flag the node refuses `overrides` (as flags) for, or null when it accepts them. */
function nodeRefusal(group: Group, overrides: Values): string | null {
  const argv = [
    ...group.nodeArgv,
    ...Object.entries(overrides).map(([field, value]) => `--${flagOf(group, field)}=${value}`),
  ];
  try {
    const parsed = parseNodeConfig(argv, {});
    if (parsed.help) throw new Error('unexpected help');
    const values = group.nodeValues(parsed.config);
    for (const [field, value] of Object.entries(overrides)) expect(values[field]).toBe(value);
    return null;
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    const { flag, message } = error as ConfigError;
    expect(message).toContain(`--${flag}`);
    return flag;
  }
}

describe.each(groups)('$name limit bounds', (group) => {
  const fields = fieldsOf(group);
  const flaggedFields = flaggedFieldsOf(group);

  it('hold the defaults of both sides, and list a limit before any limit bound to it', () => {
    expect(flaggedFields.length).toBeGreaterThan(0);
    for (const field of Object.keys(group.flags)) expect(fields).toContain(field);
    for (const field of fields) {
      const { min, max, atLeast, below, flagMax } = boundsOf(group, field);
      expect(min, field).toBeLessThanOrEqual(max);
      if (flagMax !== undefined) {
        expect(flagMax, field).toBeGreaterThanOrEqual(min);
        expect(flagMax, field).toBeLessThan(max);
      }
      for (const side of ['library', 'node'] as const) {
        const { min: low, max: high } = edgesOf(group, field, side);
        expect(group.defaults[side][field], `${side} ${field}`).toBeGreaterThanOrEqual(low);
        if (side === 'library' || flaggedFields.includes(field)) {
          expect(group.defaults[side][field], `${side} ${field}`).toBeLessThanOrEqual(high);
        }
      }
      for (const other of [atLeast, below]) {
        if (other === undefined) continue;
        expect(fields.indexOf(other), field).toBeLessThan(fields.indexOf(field));
      }
    }
  });

  it('is what the library accepts: the edges, and nothing past them or fractional', () => {
    for (const field of fields) {
      const { min, max } = edgesOf(group, field, 'library');
      for (const value of [min, max]) {
        const overrides = overridesOf(group, field, value, 'library');
        expect(libraryRefusal(group, overrides), `${field} = ${value}`).toBeNull();
      }
      for (const value of [min - 1, max + 1, min + 0.5]) {
        const overrides = overridesOf(group, field, value, 'library');
        expect(libraryRefusal(group, overrides), `${field} = ${value}`).toBe(field);
      }
    }
  });

  it('is what the node flags accept, flagMax included, with the flag named in the refusal', () => {
    for (const field of flaggedFields) {
      const flag = flagOf(group, field);
      const { min, max } = edgesOf(group, field, 'node');
      for (const value of [min, max]) {
        const overrides = overridesOf(group, field, value, 'node');
        expect(nodeRefusal(group, overrides), `--${flag} ${value}`).toBeNull();
      }
      for (const value of [min - 1, max + 1, min + 0.5]) {
        const overrides = overridesOf(group, field, value, 'node');
        expect(nodeRefusal(group, overrides), `--${flag} ${value}`).toBe(flag);
      }
    }
  });

  it('makes both sides hold a limit to the limit its atLeast or below names', () => {
    for (const field of fields) {
      const { atLeast, below } = boundsOf(group, field);
      const other = atLeast ?? below;
      if (other === undefined) continue;
      for (const side of ['library', 'node'] as const) {
        if (side === 'node' && !flaggedFields.includes(field)) continue;
        const bound = group.defaults[side][other]!;
        // At the bound is fine for atLeast and one too many for below; one step off is the
        // other way round.
        const inside = atLeast !== undefined ? bound : bound - 1;
        const outside = atLeast !== undefined ? bound - 1 : bound;
        const refusal = side === 'library' ? libraryRefusal : nodeRefusal;
        const named = side === 'library' ? field : flagOf(group, field);
        expect(refusal(group, { [other]: bound, [field]: inside }), `${side} ${field}`).toBeNull();
        expect(refusal(group, { [other]: bound, [field]: outside }), `${side} ${field}`).toBe(
          named,
        );
        // Given alone, the other limit never clashes with this one's default.
        if (side === 'node' && flaggedFields.includes(other)) {
          const { min, max } = edgesOf(group, other, 'node');
          for (const value of [min, max]) {
            const label = `--${flagOf(group, other)} ${value} alone`;
            expect(nodeRefusal(group, { [other]: value }), label).toBeNull();
          }
        }
      }
    }
  });

  it('lets the node and the library agree on any integer for a flagged limit', () => {
    const near = (edge: number): fc.Arbitrary<number> =>
      fc.integer({ min: -3, max: 3 }).map((step) => edge + step);
    const cases = fc.constantFrom(...flaggedFields).chain((field) => {
      const node = edgesOf(group, field, 'node');
      const library = edgesOf(group, field, 'library');
      return fc.tuple(
        fc.constant(field),
        fc.oneof(
          near(node.min),
          near(node.max),
          near(library.max),
          fc.integer({ min: 0, max: 2 * node.max }),
          fc.maxSafeNat(),
        ),
      );
    });
    fc.assert(
      fc.property(cases, ([field, value]) => {
        const overrides = overridesOf(group, field, value, 'node');
        const library = libraryRefusal(group, overrides);
        const node = nodeRefusal(group, overrides);
        const pastNode = value > edgesOf(group, field, 'node').max;
        const expected =
          library !== null ? flagOf(group, library) : pastNode ? flagOf(group, field) : null;
        expect(node).toBe(expected);
      }),
    );
  });
});

describe('the rules beside the tables', () => {
  it('names heartbeatTicks when it is not below electionTicks, on both sides', () => {
    expect(() => resolveRaftLimits({ heartbeatTicks: raftDefaults.electionTicks })).toThrow(
      /^Invalid heartbeatTicks: 10 \(expected an integer in 1\.\.9\)$/,
    );
    expect(() => parseNodeConfig(['--election-ticks=4', '--heartbeat-ticks=4'], {})).toThrow(
      'Invalid --heartbeat-ticks 4: it must be below --election-ticks (4)',
    );
  });

  it('holds --replication-timeout-ms below --request-timeout-ms, a rule of the node only', () => {
    const config = (argv: string[]): NodeConfig => {
      const parsed = parseNodeConfig(argv, {});
      if (parsed.help) throw new Error('unexpected help');
      return parsed.config;
    };
    expect(config(['--request-timeout-ms=1000']).replicationTimeoutMs).toBe(500);
    expect(
      config(['--request-timeout-ms=1000', '--replication-timeout-ms=999']).replicationTimeoutMs,
    ).toBe(999);
    expect(() =>
      parseNodeConfig(['--request-timeout-ms=1000', '--replication-timeout-ms=1000'], {}),
    ).toThrow(
      'Invalid --replication-timeout-ms 1000: it must be below --request-timeout-ms (1000)',
    );
    // The library knows no client request timeout: its only ceiling is what setTimeout can wait.
    expect(resolveReplicationLimits({ replicationTimeoutMs: 600_000 }).replicationTimeoutMs).toBe(
      600_000,
    );
  });

  it('keeps the node-only ceilings the flags have always had', () => {
    // The table-driven tests read the ceilings from the tables; these pin the values, so that
    // a changed table cannot silently change a published flag's range.
    const ceilings: [string, number][] = [
      ['election-ticks', 10_000],
      ['promotion-lag-entries', 1e9],
      ['promotion-timeout-ms', 86_400_000],
    ];
    for (const [flag, ceiling] of ceilings) {
      expect(() => parseNodeConfig([`--${flag}=${ceiling}`], {})).not.toThrow();
      expect(() => parseNodeConfig([`--${flag}=${ceiling + 1}`], {})).toThrow(`--${flag}`);
    }
  });

  it('refuses a fractional promotion timeout in the library as the node does', () => {
    expect(() => new RaftConsensus('x', alone, { promotion: { timeoutMs: 400.5 } })).toThrow(
      /^Invalid promotion\.timeoutMs: 400\.5 \(expected an integer in 1\.\.2147483647\)$/,
    );
  });
});
