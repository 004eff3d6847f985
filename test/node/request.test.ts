// Checks the parsing of client requests (keys in paths, query strings, admin bodies) with
// property tests against the platform's own URL encoders, and the typed errors of bad input.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encode as encodeCbor } from 'cbor-x';
import { kvDefaults } from '../../src/config.js';
import { BadRequestError } from '../../src/errors.js';
import {
  booleanOf,
  keyOfPath,
  kvPathPrefix,
  memberIdOf,
  memberRequestOf,
  parseObjectBody,
  parseQuery,
  percentDecode,
  textOf,
  transferTargetOf,
} from '../../src/node/request.js';

function codeOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(BadRequestError);
    return (error as BadRequestError).code;
  }
  throw new Error('expected a BadRequestError');
}

const utf8Length = (text: string): number => new TextEncoder().encode(text).length;

describe('keyOfPath', () => {
  it('gives back any well-formed key encoded with encodeURIComponent', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 64 }), (key) => {
        expect(keyOfPath(kvPathPrefix + encodeURIComponent(key), kvDefaults)).toBe(key);
      }),
    );
  });

  it('keeps unencoded slashes and plus signs as they are', () => {
    expect(keyOfPath('/v1/kv/a/b/c', kvDefaults)).toBe('a/b/c');
    expect(keyOfPath('/v1/kv/a+b', kvDefaults)).toBe('a+b');
    expect(keyOfPath('/v1/kv/a%2Fb', kvDefaults)).toBe('a/b');
  });

  it('refuses empty, undecodable and too long keys with BAD_KEY', () => {
    expect(codeOf(() => keyOfPath('/v1/kv/', kvDefaults))).toBe('BAD_KEY');
    expect(codeOf(() => keyOfPath('/v1/kv/%', kvDefaults))).toBe('BAD_KEY');
    expect(codeOf(() => keyOfPath('/v1/kv/%C3%28', kvDefaults))).toBe('BAD_KEY');
    expect(codeOf(() => keyOfPath('/v1/kv/%ED%A0%80', kvDefaults))).toBe('BAD_KEY');
    const longest = 'é'.repeat(kvDefaults.keyBytesMax / 2);
    expect(utf8Length(longest)).toBe(kvDefaults.keyBytesMax);
    expect(keyOfPath(kvPathPrefix + encodeURIComponent(longest), kvDefaults)).toBe(longest);
    expect(
      codeOf(() => keyOfPath(kvPathPrefix + encodeURIComponent(`${longest}x`), kvDefaults)),
    ).toBe('BAD_KEY');
  });
});

describe('parseQuery', () => {
  it('decodes what URLSearchParams encodes', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), fc.boolean(), (value, flag) => {
        const query = new URLSearchParams({ prevValue: value, prevExist: String(flag) });
        const parsed = parseQuery(query.toString(), ['prevValue', 'prevExist']);
        expect(textOf('prevValue', parsed.get('prevValue')!)).toBe(value);
        expect(booleanOf('prevExist', parsed.get('prevExist')!)).toBe(flag);
      }),
    );
  });

  it('decodes percent escapes to arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const escaped = [...bytes].map((byte) => `%${byte.toString(16).padStart(2, '0')}`);
        expect(percentDecode(escaped.join(''))).toEqual(bytes);
      }),
    );
    expect(percentDecode('a+b%20c')).toEqual(new TextEncoder().encode('a b c'));
  });

  it('treats an absent query, empty parts and a bare name as expected', () => {
    expect(parseQuery(undefined, ['a']).size).toBe(0);
    expect(parseQuery('', ['a']).size).toBe(0);
    expect(parseQuery('&&a&', ['a']).get('a')).toEqual(new Uint8Array(0));
  });

  it('refuses unknown and repeated parameters and malformed escapes', () => {
    expect(() => parseQuery('prevvalue=x', ['prevValue'])).toThrow(/prevvalue.*prevValue/);
    expect(() => parseQuery('x=1', [])).toThrow(/takes none/);
    expect(() => parseQuery('a=1&a=2', ['a'])).toThrow(/twice/);
    expect(() => parseQuery('a=%4', ['a'])).toThrow(/percent escape/);
    expect(() => parseQuery('a=%zz', ['a'])).toThrow(/percent escape/);
    expect(() => booleanOf('prevExist', new TextEncoder().encode('yes'))).toThrow(/true or false/);
    expect(() => textOf('consistency', Uint8Array.of(0xff))).toThrow(/UTF-8/);
  });
});

describe('admin bodies', () => {
  const body = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value));

  it('parses JSON, CBOR and an empty body into objects', () => {
    expect(parseObjectBody('application/json', body({ to: 'n2' }))).toEqual({ to: 'n2' });
    expect(parseObjectBody(undefined, body({ to: 'n2' }))).toEqual({ to: 'n2' });
    expect(parseObjectBody('application/cbor', encodeCbor({ to: 'n2' }))).toEqual({ to: 'n2' });
    expect(parseObjectBody('application/json; charset=utf-8', new Uint8Array(0))).toEqual({});
    expect(codeOf(() => parseObjectBody('text/plain', body({})))).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect(codeOf(() => parseObjectBody('application/json', body([1])))).toBe('BAD_REQUEST');
    expect(codeOf(() => parseObjectBody('application/json', Uint8Array.of(0x7b)))).toBe(
      'BAD_REQUEST',
    );
    expect(codeOf(() => parseObjectBody('application/cbor', Uint8Array.of(0x5f)))).toBe(
      'BAD_REQUEST',
    );
  });

  it('validates a new member and keeps only the URL origin', () => {
    expect(memberRequestOf({ id: 'n4', url: 'http://10.0.0.4:7001/' })).toEqual({
      id: 'n4',
      url: 'http://10.0.0.4:7001',
      learner: false,
    });
    expect(memberRequestOf({ id: 'n4', url: 'https://h', learner: true }).learner).toBe(true);
    for (const bad of [
      {},
      { id: 'n4' },
      { id: '', url: 'http://h:1' },
      { id: 'has space', url: 'http://h:1' },
      { id: 'n4', url: 'h:1' },
      { id: 'n4', url: 'file:///etc' },
      { id: 'n4', url: 42 },
      { id: 'n4', url: 'http://h:1', learner: 1 },
      { id: 'n4', url: 'http://h:1', role: 'voter' },
    ]) {
      expect(
        codeOf(() => memberRequestOf(bad)),
        JSON.stringify(bad),
      ).toBe('BAD_REQUEST');
    }
  });

  it('validates member ids in paths and transfer targets', () => {
    expect(memberIdOf('n2')).toBe('n2');
    expect(memberIdOf('n%32')).toBe('n2');
    expect(codeOf(() => memberIdOf('%zz'))).toBe('BAD_REQUEST');
    expect(codeOf(() => memberIdOf('a/b'))).toBe('BAD_REQUEST');
    expect(transferTargetOf({})).toBeUndefined();
    expect(transferTargetOf({ to: null })).toBeUndefined();
    expect(transferTargetOf({ to: 'n3' })).toBe('n3');
    expect(codeOf(() => transferTargetOf({ to: 3 }))).toBe('BAD_REQUEST');
    expect(codeOf(() => transferTargetOf({ leader: 'n3' }))).toBe('BAD_REQUEST');
  });
});
