// Checks flag and environment parsing of the node against the contract in DESIGN.md: defaults,
// precedence (flag > env > default), and a ConfigError naming the flag for every bad value.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  envNameOf,
  helpText,
  parseNodeConfig,
  type NodeConfig,
} from '../../src/node/config.js';

function configOf(argv: string[], env: Record<string, string> = {}): NodeConfig {
  const parsed = parseNodeConfig(argv, env);
  if (parsed.help) throw new Error('unexpected help');
  return parsed.config;
}

function flagOfError(argv: string[], env: Record<string, string> = {}): string {
  try {
    parseNodeConfig(argv, env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).flag;
  }
  throw new Error(`expected ${argv.join(' ')} to be refused`);
}

describe('parseNodeConfig', () => {
  it('runs a one-node cluster on 127.0.0.1:7001 in ./data/n1 with no flags', () => {
    const config = configOf([]);
    expect(config).toMatchObject({
      id: 'n1',
      listenHost: '127.0.0.1',
      listenPort: 7001,
      peers: [{ id: 'n1', url: 'http://127.0.0.1:7001' }],
      dataDir: path.resolve('data', 'n1'),
      join: false,
    });
  });

  it('names the variable of each flag as the launcher looks it up', () => {
    expect(envNameOf('tls-cert')).toBe('PHANTOMDB_TLS_CERT');
    expect(configOf([], { [envNameOf('data-dir')]: '/tmp/x' }).dataDir).toBe('/tmp/x');
  });

  it('takes flags over the environment, and the environment over defaults', () => {
    const env = {
      PHANTOMDB_ID: 'n2',
      PHANTOMDB_LISTEN: '127.0.0.1:7002',
      PHANTOMDB_DATA_DIR: '/tmp/x',
    };
    expect(configOf([], env)).toMatchObject({ id: 'n2', listenPort: 7002, dataDir: '/tmp/x' });
    expect(configOf(['--id', 'n3'], env)).toMatchObject({ id: 'n3', listenPort: 7002 });
    expect(configOf([], { PHANTOMDB_JOIN: 'true', PHANTOMDB_ID: 'a' }).join).toBe(true);
    expect(configOf(['--join']).join).toBe(true);
  });

  it('parses --peers into members and requires this node among them', () => {
    const config = configOf([
      '--id',
      'n2',
      '--peers',
      'n1=http://127.0.0.1:7001,n2=http://127.0.0.1:7002/,n3=https://h:7003',
    ]);
    expect(config.peers).toEqual([
      { id: 'n1', url: 'http://127.0.0.1:7001' },
      { id: 'n2', url: 'http://127.0.0.1:7002' },
      { id: 'n3', url: 'https://h:7003' },
    ]);
    expect(flagOfError(['--peers', 'n2=http://127.0.0.1:7002'])).toBe('peers');
  });

  it('refuses bad values with an error naming the flag', () => {
    expect(flagOfError(['--listen', 'nope'])).toBe('listen');
    expect(flagOfError(['--listen', '127.0.0.1:70000'])).toBe('listen');
    expect(flagOfError(['--id', 'bad id'])).toBe('id');
    expect(flagOfError(['--peers', 'n1'])).toBe('peers');
    expect(flagOfError(['--peers', 'n1=ftp://x:1'])).toBe('peers');
    expect(flagOfError(['--peers', 'n1=http://a:1,n1=http://b:2'])).toBe('peers');
    expect(flagOfError(['--tick-ms', '0'])).toBe('tick-ms');
    expect(flagOfError(['--log-level', 'loud'])).toBe('log-level');
    expect(flagOfError([], { PHANTOMDB_JOIN: 'maybe' })).toBe('join');
    expect(flagOfError(['--unknown'])).toBe('');
  });

  it('defaults the timing and snapshot flags and validates them', () => {
    expect(configOf([])).toMatchObject({
      tickMs: 100,
      electionTicks: 8,
      heartbeatTicks: 1,
      requestTimeoutMs: 5_000,
      snapshotEntries: 100_000,
      snapshotKeepEntries: 1_000,
    });
    // A small snapshot interval keeps a log no longer than it, so lagging followers need it.
    expect(configOf(['--snapshot-entries', '50']).snapshotKeepEntries).toBe(50);
    expect(
      configOf(['--snapshot-entries', '50', '--snapshot-keep-entries', '0']).snapshotKeepEntries,
    ).toBe(0);
    expect(
      configOf([], { PHANTOMDB_ELECTION_TICKS: '20', PHANTOMDB_REQUEST_TIMEOUT_MS: '750' }),
    ).toMatchObject({ electionTicks: 20, requestTimeoutMs: 750 });
    expect(flagOfError(['--election-ticks', '1'])).toBe('election-ticks');
    expect(flagOfError(['--election-ticks', '4', '--heartbeat-ticks', '4'])).toBe(
      'heartbeat-ticks',
    );
    expect(flagOfError(['--request-timeout-ms', '0'])).toBe('request-timeout-ms');
    expect(flagOfError(['--snapshot-keep-entries', 'all'])).toBe('snapshot-keep-entries');
  });

  it('accepts an IPv6 listen address', () => {
    expect(configOf(['--listen', '[::1]:7001']).peers[0]!.url).toBe('http://[::1]:7001');
  });

  it('answers --help with every flag listed', () => {
    expect(parseNodeConfig(['--help'], {})).toEqual({ help: true });
    for (const flag of ['--id', '--listen', '--peers', '--data-dir', '--join', '--help']) {
      expect(helpText()).toContain(flag);
    }
  });
});
