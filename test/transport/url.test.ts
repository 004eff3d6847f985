// Checks nodeUrl and hostPort: hostnames and IPv4 pass through, IPv6 literals get brackets
// (once), with fixed examples, a fast-check property that a URL always parses back to its parts,
// and the node's own --listen parser taking what hostPort gives (as the cluster launcher uses it).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseNodeConfig } from '../../src/node/config.js';
import { hostPort, nodeUrl } from '../../src/transport/url.js';

describe('nodeUrl', () => {
  it('keeps hostnames and IPv4 addresses as they are', () => {
    expect(nodeUrl('http', 'localhost', 7001)).toBe('http://localhost:7001');
    expect(nodeUrl('https', 'db-1.example.com', 443)).toBe('https://db-1.example.com:443');
    expect(nodeUrl('http', '127.0.0.1', 7001)).toBe('http://127.0.0.1:7001');
    expect(nodeUrl('https', '10.0.2.1', 65535)).toBe('https://10.0.2.1:65535');
  });

  it('puts IPv6 literals in brackets', () => {
    expect(nodeUrl('http', '::1', 7001)).toBe('http://[::1]:7001');
    expect(nodeUrl('https', '::', 7002)).toBe('https://[::]:7002');
    expect(nodeUrl('http', 'fd00:1:2::3', 80)).toBe('http://[fd00:1:2::3]:80');
  });

  it('does not bracket an already-bracketed IPv6 host twice', () => {
    expect(nodeUrl('http', '[::1]', 7001)).toBe('http://[::1]:7001');
    expect(nodeUrl('https', '[fd00::3]', 7001)).toBe('https://[fd00::3]:7001');
  });

  it('always yields a URL that parses back to the scheme, host and port', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('http' as const, 'https' as const),
        fc.oneof(fc.ipV4(), fc.ipV6()),
        fc.integer({ min: 1, max: 65535 }),
        (scheme, host, port) => {
          const url = new URL(nodeUrl(scheme, host, port));
          expect(url.protocol).toBe(`${scheme}:`);
          const defaultPort = scheme === 'http' ? 80 : 443;
          expect(url.port).toBe(port === defaultPort ? '' : String(port));
          // The WHATWG parser normalizes IPv6 text, so compare with its own reading of the host.
          const expected = host.includes(':') ? new URL(`http://[${host}]`).hostname : host;
          expect(url.hostname).toBe(expected);
        },
      ),
    );
  });
});

describe('hostPort', () => {
  it('gives a --listen value the node parses back to the same host and port', () => {
    for (const host of ['127.0.0.1', 'localhost', '::1', '[::1]', 'fd00:1:2::3']) {
      const parsed = parseNodeConfig(['--listen', hostPort(host, 7005)], {});
      if (parsed.help) throw new Error('unexpected help');
      expect(parsed.config.listenHost).toBe(host.replace(/^\[(.*)\]$/, '$1'));
      expect(parsed.config.listenPort).toBe(7005);
    }
  });
});
