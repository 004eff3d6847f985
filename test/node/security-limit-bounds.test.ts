// Checks that the node's security-limit flags and resolveSecurityLimits refuse and accept the
// same values: a loop over securityLimitBounds puts each limit at its edges and just past them
// on both sides, and fast-check compares the two sides on arbitrary integers.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  resolveSecurityLimits,
  securityDefaults,
  securityLimitBounds,
  type SecurityLimits,
} from '../../src/config.js';
import { ConfigError, parseNodeConfig, securityLimitFlags } from '../../src/node/config.js';

type Field = keyof SecurityLimits;
type Overrides = { -readonly [F in Field]?: number };

const fields = Object.keys(securityLimitBounds) as Field[];
const flaggedFields = Object.keys(securityLimitFlags) as Field[];

/**
 * Overrides that set `field` to `value` and leave only `field`'s own bounds to decide: a limit
 * it must be at least is at its minimum, and a limit that must be at least it follows it up
 * (within its own range).
 */
function overridesOf(field: Field, value: number): Overrides {
  const overrides: Overrides = { [field]: value };
  for (let floor = securityLimitBounds[field].atLeast; floor !== undefined;) {
    overrides[floor] = securityLimitBounds[floor].min;
    floor = securityLimitBounds[floor].atLeast;
  }
  for (const other of fields) {
    const bounds = securityLimitBounds[other];
    if (bounds.atLeast !== field) continue;
    const raised = Number.isSafeInteger(value) ? value : bounds.min;
    overrides[other] = Math.min(bounds.max, Math.max(securityDefaults[other], raised));
  }
  return overrides;
}

/** The field `resolveSecurityLimits` refuses `overrides` for, or null when it accepts them. */
function libraryRefusal(overrides: Overrides): Field | null {
  try {
    const limits = resolveSecurityLimits(overrides);
    for (const field of Object.keys(overrides) as Field[]) {
      expect(limits[field]).toBe(overrides[field]);
    }
    return null;
  } catch (error) {
    expect(error).toBeInstanceOf(RangeError);
    const field = /^Invalid (\w+): /.exec((error as Error).message)?.[1];
    expect(fields).toContain(field);
    return field as Field;
  }
}

/** The flag the node refuses `overrides` (as flags) for, or null when it accepts them. */
function nodeRefusal(overrides: Overrides): string | null {
  const argv = (Object.keys(overrides) as Field[]).map((field) => {
    const flag = securityLimitFlags[field];
    // Every limit the test sets must have a flag, or the node would run with a different value.
    expect(flag, `a flag for ${field}`).toBeDefined();
    return `--${flag}=${String(overrides[field])}`;
  });
  try {
    const parsed = parseNodeConfig(argv, {});
    if (parsed.help) throw new Error('unexpected help');
    for (const field of Object.keys(overrides) as Field[]) {
      expect(parsed.config.security.limits[field]).toBe(overrides[field]);
    }
    return null;
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    const { flag, message } = error as ConfigError;
    expect(message).toContain(`--${flag}`);
    return flag;
  }
}

describe('securityLimitBounds', () => {
  it('holds the defaults, and lists a limit before any limit that must be at least it', () => {
    for (const field of fields) {
      const { min, max, atLeast } = securityLimitBounds[field];
      expect(securityDefaults[field], field).toBeGreaterThanOrEqual(min);
      expect(securityDefaults[field], field).toBeLessThanOrEqual(max);
      if (atLeast === undefined) continue;
      expect(fields.indexOf(atLeast), field).toBeLessThan(fields.indexOf(field));
      if (flaggedFields.includes(field)) {
        expect(flaggedFields.indexOf(atLeast), field).toBeLessThan(flaggedFields.indexOf(field));
      }
    }
  });

  it('is what resolveSecurityLimits accepts: the edges, and nothing past them or fractional', () => {
    for (const field of fields) {
      const { min, max } = securityLimitBounds[field];
      expect(libraryRefusal(overridesOf(field, min)), `${field} = ${min}`).toBeNull();
      expect(libraryRefusal(overridesOf(field, max)), `${field} = ${max}`).toBeNull();
      for (const value of [min - 1, max + 1, min + 0.5]) {
        expect(libraryRefusal(overridesOf(field, value)), `${field} = ${value}`).toBe(field);
      }
    }
  });

  it('is what the node flags accept, with the flag named in the refusal', () => {
    for (const field of flaggedFields) {
      const { min, max } = securityLimitBounds[field];
      const flag = securityLimitFlags[field];
      expect(nodeRefusal(overridesOf(field, min)), `--${flag} ${min}`).toBeNull();
      expect(nodeRefusal(overridesOf(field, max)), `--${flag} ${max}`).toBeNull();
      for (const value of [min - 1, max + 1, min + 0.5]) {
        expect(nodeRefusal(overridesOf(field, value)), `--${flag} ${value}`).toBe(flag);
      }
    }
  });

  it('makes both sides hold a limit to at least the one its atLeast names', () => {
    for (const field of fields) {
      const floorField = securityLimitBounds[field].atLeast;
      if (floorField === undefined) continue;
      const floor = securityDefaults[floorField];
      const atFloor = { [floorField]: floor, [field]: floor };
      const below = { [floorField]: floor, [field]: floor - 1 };
      expect(libraryRefusal(atFloor)).toBeNull();
      expect(libraryRefusal(below)).toBe(field);
      if (!flaggedFields.includes(field)) continue;
      expect(nodeRefusal(atFloor)).toBeNull();
      expect(nodeRefusal(below)).toBe(securityLimitFlags[field]);
    }
  });

  it('lets the node and resolveSecurityLimits agree on any integer for a flagged limit', () => {
    const cases = fc.constantFrom(...flaggedFields).chain((field) => {
      const { min, max } = securityLimitBounds[field];
      return fc.tuple(
        fc.constant(field),
        fc.oneof(
          fc.integer({ min: min - 3, max: min + 3 }),
          fc.integer({ min: max - 3, max: max + 3 }),
          fc.integer({ min: 0, max: 2 * max }),
        ),
      );
    });
    fc.assert(
      fc.property(cases, ([field, value]) => {
        const overrides = overridesOf(field, value);
        const library = libraryRefusal(overrides);
        const node = nodeRefusal(overrides);
        expect(library === null ? null : securityLimitFlags[library]).toBe(node);
      }),
    );
  });
});
