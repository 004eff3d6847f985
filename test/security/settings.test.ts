// Security settings: the tokens file (validation with messages that never show a token,
// constant-time lookup, nested scopes), secrets that print as [redacted], TLS files checked at
// start, and the node's security flags (defaults off, env and file sources, length and pairing
// rules, errors that name the flag and never the secret).
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { inspect } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, helpText, parseNodeConfig, type NodeConfig } from '../../src/node/config.js';
import { Secret } from '../../src/security/secret.js';
import { TlsConfigError, TlsSettings } from '../../src/security/tls.js';
import {
  ForbiddenError,
  TokenStore,
  TokensFileError,
  tokenDigestOf,
} from '../../src/security/tokens.js';
import { UnauthorizedError } from '../../src/security/request-signer.js';
import { makeCertificates, removeTempDir, securityTempDir } from './support.js';

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((dir) => removeTempDir(dir)));
});

async function freshDir(label: string): Promise<string> {
  const dir = await securityTempDir(label);
  dirs.push(dir);
  return dir;
}

const plain = 'plain-token-0123456789abcdef';

describe('TokenStore', () => {
  it('refuses bad files with messages naming the entry, never a token', () => {
    const cases: [unknown, RegExp][] = [
      [[], /expected an object/],
      [{ tokens: [] }, /non-empty array/],
      [{ tokens: [], extra: 1 }, /unknown field 'extra'/],
      [{ tokens: [{ name: 'a', scope: 'read' }] }, /tokens\[0\] needs sha256/],
      [
        { tokens: [{ name: 'a', scope: 'root', token: plain }] },
        /tokens\[0\]\.scope must be one of read, readwrite, admin/,
      ],
      [{ tokens: [{ name: '', scope: 'read', token: plain }] }, /tokens\[0\]\.name/],
      [{ tokens: [{ name: 'a', scope: 'read', token: 'short' }] }, /at least 16 characters/],
      [{ tokens: [{ name: 'a', scope: 'read', sha256: 'abc' }] }, /64 hex digits/],
      [
        { tokens: [{ name: 'a', scope: 'read', token: plain, sha256: tokenDigestOf(plain) }] },
        /both sha256 and token/,
      ],
      [{ tokens: [{ name: 'a', scope: 'read', token: plain, why: 1 }] }, /unknown field 'why'/],
      [
        {
          tokens: [
            { name: 'a', scope: 'read', token: plain },
            { name: 'a', scope: 'admin', token: `${plain}x` },
          ],
        },
        /tokens\[1\]\.name 'a' is used twice/,
      ],
      [
        {
          tokens: [
            { name: 'a', scope: 'read', token: plain },
            { name: 'b', scope: 'admin', sha256: tokenDigestOf(plain) },
          ],
        },
        /tokens\[1\] has the same token as another entry/,
      ],
    ];
    for (const [content, expected] of cases) {
      let message = '';
      try {
        TokenStore.fromJson(content, 'tokens.json');
      } catch (error) {
        expect(error).toBeInstanceOf(TokensFileError);
        message = (error as Error).message;
      }
      expect(message, JSON.stringify(content)).toMatch(expected);
      expect(message).not.toContain(plain);
    }
  });

  it('authenticates by hash or plain token, and nests the scopes', () => {
    const store = TokenStore.fromJson({
      tokens: [
        { name: 'viewer', scope: 'read', sha256: tokenDigestOf('viewer-token-0123456789') },
        { name: 'app', scope: 'readwrite', token: plain },
      ],
    });
    expect(store.authenticate('Bearer viewer-token-0123456789')).toEqual({
      name: 'viewer',
      scope: 'read',
    });
    expect(store.authenticate(`bearer   ${plain}`)).toEqual({ name: 'app', scope: 'readwrite' });
    expect(() => store.authenticate(undefined)).toThrow(/Missing Authorization/);
    expect(() => store.authenticate('Basic dXNlcjpwYXNz')).toThrow(/expected "Bearer <token>"/);
    expect(() => store.authenticate(`Bearer ${plain}x`)).toThrow(UnauthorizedError);
    const app = store.authenticate(`Bearer ${plain}`);
    TokenStore.authorize(app, 'read', 'GET /v1/kv/{key}');
    TokenStore.authorize(app, 'readwrite', 'PUT /v1/kv/{key}');
    expect(() => TokenStore.authorize(app, 'admin', 'POST /v1/members')).toThrow(ForbiddenError);
    expect(() => TokenStore.authorize(app, 'admin', 'POST /v1/members')).toThrow(
      "Token 'app' has scope readwrite; POST /v1/members needs admin",
    );
  });

  it('loads a file and says where a broken one is broken without quoting it', async () => {
    const dir = await freshDir('tokens');
    const file = path.join(dir, 'tokens.json');
    await writeFile(file, `{"tokens":[{"name":"a","scope":"read","token":"${plain}"`);
    expect(() => TokenStore.load(file)).toThrow(
      `Cannot parse tokens file ${file}: it is not valid JSON`,
    );
    expect(() => TokenStore.load(path.join(dir, 'missing.json'))).toThrow(/ENOENT/);
  });
});

describe('Secret', () => {
  it('prints as [redacted] however it is printed', () => {
    const secret = Secret.fromText('do-not-print-me-0123456789');
    const shown = [
      String(secret),
      // eslint-disable-next-line @typescript-eslint/restrict-template-expressions -- the point
      `${secret}`,
      JSON.stringify({ secret }),
      inspect(secret),
      inspect({ secret }),
    ];
    for (const text of shown) expect(text).not.toContain('do-not-print-me');
    expect(secret.revealText()).toBe('do-not-print-me-0123456789');
  });
});

describe('TlsSettings', () => {
  it('checks the files at start and names them, never the passphrase', async () => {
    const dir = await freshDir('tls-files');
    const certs = makeCertificates(dir);
    const settings = TlsSettings.load({
      certFile: certs.certFile,
      keyFile: certs.keyFile,
      caFile: certs.caFile,
      passphrase: null,
    });
    expect(settings.serverOptions()).toEqual({
      cert_file_name: certs.certFile,
      key_file_name: certs.keyFile,
      ca_file_name: certs.caFile,
    });
    expect(() =>
      TlsSettings.load({
        certFile: certs.certFile,
        keyFile: certs.rogueKeyFile,
        caFile: null,
        passphrase: null,
      }),
    ).toThrow(TlsConfigError);
    expect(() =>
      TlsSettings.load({
        certFile: path.join(dir, 'nope.pem'),
        keyFile: certs.keyFile,
        caFile: null,
        passphrase: null,
      }),
    ).toThrow(/Cannot read --tls-cert .*nope\.pem: ENOENT/);
    expect(() =>
      TlsSettings.load({
        certFile: path.join(dir, 'san.cnf'),
        keyFile: certs.keyFile,
        caFile: null,
        passphrase: null,
      }),
    ).toThrow(/not a PEM file/);
  });
});

describe('security flags', () => {
  const configOf = (argv: string[], env: Record<string, string> = {}): NodeConfig => {
    const parsed = parseNodeConfig(argv, env);
    if (parsed.help) throw new Error('unexpected help');
    return parsed.config;
  };
  const errorOf = (argv: string[], env: Record<string, string> = {}): ConfigError => {
    try {
      parseNodeConfig(argv, env);
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return error as ConfigError;
    }
    throw new Error(`accepted ${argv.join(' ')}`);
  };

  it('is all off by default, so a node with no flags stays open', () => {
    const { security } = configOf([]);
    expect(security.clusterSecret).toBeNull();
    expect(security.regionSecret).toBeNull();
    expect(security.tls).toBeNull();
    expect(security.tokens).toBeNull();
    expect(security.healthAuth).toBe(false);
    expect(security.limits).toMatchObject({
      clientRequestsInFlightMax: 1024,
      requestsInFlightMax: 8192,
    });
  });

  it('takes secrets from the flag, the environment or a file; the region secret defaults to it', async () => {
    const dir = await freshDir('secret-file');
    const file = path.join(dir, 'secret');
    await writeFile(file, '  file-secret-0123456789abcdef\n');
    const fromFile = configOf(['--cluster-secret-file', file]).security;
    expect(fromFile.clusterSecret?.revealText()).toBe('file-secret-0123456789abcdef');
    expect(fromFile.regionSecret?.revealText()).toBe('file-secret-0123456789abcdef');
    expect(fromFile.secretsInArgv).toEqual([]);
    const fromEnv = configOf([], {
      PHANTOMDB_CLUSTER_SECRET: 'env-secret-0123456789abcdef',
    }).security;
    expect(fromEnv.clusterSecret?.revealText()).toBe('env-secret-0123456789abcdef');
    const fromFlag = configOf([
      '--cluster-secret',
      'flag-secret-0123456789abcdef',
      '--region-secret',
      'region-secret-0123456789abc',
    ]).security;
    expect(fromFlag.regionSecret?.revealText()).toBe('region-secret-0123456789abc');
    expect(fromFlag.secretsInArgv).toEqual(['cluster-secret', 'region-secret']);
  });

  it('refuses bad combinations with the flag named and the secret never shown', async () => {
    const short = errorOf(['--cluster-secret', 'tiny-secret']);
    expect(short.flag).toBe('cluster-secret');
    expect(short.message).toMatch(/the secret is 11 bytes, use at least 16/);
    expect(short.message).not.toContain('tiny-secret');
    expect(
      errorOf(['--cluster-secret', 'x'.repeat(20), '--cluster-secret-file', '/x']).message,
    ).toMatch(/not both/);
    expect(errorOf(['--cluster-secret-file', '/does/not/exist']).message).toMatch(/ENOENT/);
    expect(errorOf(['--tls-cert', '/x.pem']).message).toMatch(
      /--tls-cert and --tls-key go together/,
    );
    expect(errorOf(['--tls-ca', '/ca.pem']).flag).toBe('tls-ca');
    expect(errorOf(['--health-auth']).message).toMatch(/needs --tokens-file/);
    expect(errorOf(['--tokens-file', '/does/not/exist.json']).flag).toBe('tokens-file');
    expect(errorOf(['--client-inflight-max', '100', '--inflight-max', '50']).flag).toBe(
      'inflight-max',
    );
    expect(errorOf(['--auth-clock-skew-ms', '10']).flag).toBe('auth-clock-skew-ms');
    const dir = await freshDir('tls-flags');
    const certs = makeCertificates(dir);
    const wrongKey = errorOf([
      '--tls-cert',
      certs.certFile,
      '--tls-key',
      certs.rogueKeyFile,
      '--tls-key-passphrase',
      'hidden-passphrase',
    ]);
    expect(wrongKey.flag).toBe('tls-cert');
    expect(wrongKey.message).not.toContain('hidden-passphrase');
    const tls = configOf([
      '--tls-cert',
      certs.certFile,
      '--tls-key',
      certs.keyFile,
      '--tls-ca',
      certs.caFile,
      '--listen',
      '127.0.0.1:7443',
    ]);
    expect(tls.peers).toEqual([{ id: 'n1', url: 'https://127.0.0.1:7443' }]);
  });

  it('lists every security flag in --help', () => {
    const help = helpText();
    for (const flag of [
      '--cluster-secret SECRET',
      '--cluster-secret-file FILE',
      '--region-secret SECRET',
      '--region-secret-file FILE',
      '--tls-cert FILE',
      '--tls-key FILE',
      '--tls-key-passphrase PASS',
      '--tls-ca FILE',
      '--tokens-file FILE',
      '--health-auth',
      '--auth-clock-skew-ms MS',
      '--client-inflight-max N',
      '--inflight-max N',
    ]) {
      expect(help).toContain(flag);
    }
  });
});
