import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  HelpRequested,
  parseServeArgs,
  serveHelp,
  type ServeOptions,
} from '../src/index';

const CWD = '/srv/annex/repo';

function failure(argv: string[]): ConfigError {
  try {
    parseServeArgs(argv, CWD);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`parseServeArgs(${JSON.stringify(argv)}) did not fail`);
}

describe('parseServeArgs', () => {
  it('defaults like git annex p2phttp, serving the current directory', () => {
    expect(parseServeArgs([], CWD, {})).toEqual({
      port: 9417,
      bind: [],
      jobs: 8,
      proxyConnections: 8,
      clusterJobs: 1,
      lockedFiles: 100,
      lockTtlMs: 600_000,
      uploadIdleMs: 60_000,
      trustForwardedFor: false,
      chainFiles: [],
      authEnv: false,
      authEnvHttp: false,
      unauthReadonly: false,
      unauthAppendonly: false,
      unauthNolocking: false,
      wideopen: false,
      repos: [CWD],
      directories: [],
      debug: false,
      redisPrefix: 'annex-p2phttp:',
      healthPort: 9419,
      queueWaitMs: 30_000,
      jobTimeoutMs: 600_000,
      dataPort: 9418,
      stallCheckMs: 30_000,
      workerJobs: 64,
      shards: 8,
      logLevel: 'info',
      authHookCacheMs: 10_000,
    });
  });

  it('reads --policy (or ANNEX_P2PHTTP_POLICY), --auth-hook, --auth-hook-cache, --path-prefix', () => {
    const o = parseServeArgs(
      [
        '--policy',
        'conf/policy.yaml',
        '--auth-hook',
        'http://forge.internal:3000/annex-auth',
        '--auth-hook-cache',
        '0',
        '--path-prefix',
        '/annex/',
      ],
      CWD,
      { ANNEX_P2PHTTP_POLICY: '/etc/other.yaml' },
    );
    expect(o.policyFile).toBe('/srv/annex/repo/conf/policy.yaml');
    expect(o.authHook).toBe('http://forge.internal:3000/annex-auth');
    expect(o.authHookCacheMs).toBe(0);
    expect(o.pathPrefix).toBe('/annex');
    expect(parseServeArgs([], CWD, { ANNEX_P2PHTTP_POLICY: '/etc/p.yaml' }).policyFile).toBe(
      '/etc/p.yaml',
    );
  });

  it('refuses --unauth-* and --wideopen together with --policy, saying why', () => {
    expect(failure(['--policy', 'p.yaml', '--wideopen', '--unauth-nolocking']).message).toBe(
      '--policy cannot be combined with --unauth-nolocking, --wideopen: the policy file says ' +
        'per repository what anonymous users may do ("anonymous:" and "nolocking:")',
    );
    expect(failure(['--policy', 'p.yaml', '--unauth-readonly']).message).toMatch(
      /^--policy cannot be combined with --unauth-readonly:/,
    );
  });

  it('refuses a bad --auth-hook, --auth-hook-cache or --path-prefix', () => {
    expect(failure(['--auth-hook', 'forge:3000']).message).toMatch(/^--auth-hook "forge:3000"/);
    expect(failure(['--auth-hook-cache', '-1']).message).toMatch(/^--auth-hook-cache "-1"/);
    for (const prefix of ['annex', '/a b', '/a/../b', '/a?x']) {
      expect(failure(['--path-prefix', prefix]).message).toMatch(/^--path-prefix /);
    }
    expect(parseServeArgs(['--path-prefix', '/'], CWD).pathPrefix).toBeUndefined();
  });

  it('reads every option', () => {
    const o = parseServeArgs(
      [
        '--port=8080',
        '--bind',
        '127.0.0.1',
        '--bind',
        '::1',
        '--jobs',
        '4',
        '--proxyconnections',
        '3',
        '--clusterjobs',
        '2',
        '--lockedfiles',
        '0',
        '--lock-ttl',
        '30',
        '--upload-idle',
        '15',
        '--trust-forwarded-for',
        '--certfile',
        'tls/cert.pem',
        '--privatekeyfile',
        '/etc/key.pem',
        '--chainfile',
        'a.pem',
        '--chainfile',
        'b.pem',
        '--authenv',
        '--authenv-http',
        '--unauth-readonly',
        '--unauth-appendonly',
        '--unauth-nolocking',
        '--wideopen',
        '--repo',
        '../other',
        '--repo',
        '/abs/repo',
        '--directory',
        'many',
        '--debug',
        '--redis',
        'redis://cache:6380/2',
        '--redis-prefix',
        'site-a:',
        '--health-port',
        '9500',
        '--ops-listen',
        '127.0.0.1:9420',
        '--log-format',
        'text',
        '--log-level',
        'warn',
      ],
      CWD,
      {},
    );
    expect(o).toEqual({
      port: 8080,
      bind: ['127.0.0.1', '::1'],
      jobs: 4,
      proxyConnections: 3,
      clusterJobs: 2,
      lockedFiles: 0,
      lockTtlMs: 30_000,
      uploadIdleMs: 15_000,
      trustForwardedFor: true,
      certFile: '/srv/annex/repo/tls/cert.pem',
      privateKeyFile: '/etc/key.pem',
      chainFiles: ['/srv/annex/repo/a.pem', '/srv/annex/repo/b.pem'],
      authEnv: true,
      authEnvHttp: true,
      unauthReadonly: true,
      unauthAppendonly: true,
      unauthNolocking: true,
      wideopen: true,
      repos: ['/srv/annex/other', '/abs/repo'],
      directories: ['/srv/annex/repo/many'],
      debug: true,
      redis: 'redis://cache:6380/2',
      redisPrefix: 'site-a:',
      healthPort: 9500,
      queueWaitMs: 30_000,
      jobTimeoutMs: 600_000,
      dataPort: 9418,
      stallCheckMs: 30_000,
      workerJobs: 64,
      shards: 8,
      opsListen: { host: '127.0.0.1', port: 9420 },
      logFormat: 'text',
      logLevel: 'warn',
      authHookCacheMs: 10_000,
    });
  });

  it('reads the ops listener and log options, and refuses bad ones', () => {
    expect(parseServeArgs(['--ops-listen', '[::1]:0'], CWD).opsListen).toEqual({
      host: '::1',
      port: 0,
    });
    expect(parseServeArgs(['--ops-listen', ':9420'], CWD).opsListen).toEqual({
      host: '0.0.0.0',
      port: 9420,
    });
    expect(parseServeArgs(['--ops-listen', 'ops.local:9420'], CWD).opsListen).toEqual({
      host: 'ops.local',
      port: 9420,
    });
    expect(parseServeArgs(['-d'], CWD).logLevel).toBe('debug');
    expect(parseServeArgs(['-d', '--log-level', 'error'], CWD).logLevel).toBe('error');
    expect(parseServeArgs([], CWD).logFormat).toBeUndefined();
    for (const bad of ['9420', 'host:', 'host:70000', '::1:9420', 'a b:1']) {
      expect(failure(['--ops-listen', bad]).message).toContain('--ops-listen');
    }
    expect(failure(['--log-format', 'xml']).message).toContain('--log-format "xml"');
    expect(failure(['--log-level', 'trace']).message).toContain('--log-level "trace"');
  });

  it('reads the cluster options, from the command line or the environment', () => {
    const o = parseServeArgs(
      [
        '--redis',
        'redis://127.0.0.1:6390/2',
        '--redis-prefix',
        'site-a:',
        '--queue-wait',
        '5',
        '--job-timeout',
        '60',
        '--data-port',
        '0',
        '--advertise-url',
        'http://10.0.0.7:9418/',
        '--stall-check',
        '3',
        '--worker-jobs',
        '5',
        '--shards',
        '16',
        '--worker-group',
        'site-a_1',
      ],
      CWD,
    );
    expect(o).toMatchObject({
      redis: 'redis://127.0.0.1:6390/2',
      redisPrefix: 'site-a:',
      queueWaitMs: 5000,
      jobTimeoutMs: 60_000,
      dataPort: 0,
      advertiseUrl: 'http://10.0.0.7:9418',
      stallCheckMs: 3000,
      workerJobs: 5,
      shards: 16,
      workerGroup: 'site-a_1',
    });
    expect(parseServeArgs([], CWD, { ANNEX_P2PHTTP_WORKER_GROUP: 'g2' }).workerGroup).toBe('g2');
    expect(parseServeArgs([], CWD).workerGroup).toBeUndefined();
    expect(parseServeArgs(['--jobs', '12'], CWD).workerJobs).toBe(96);
    const env = { REDIS_URL: 'redis://redis:6379', ANNEX_P2PHTTP_REDIS_PREFIX: 'b:' };
    expect(parseServeArgs([], CWD, env)).toMatchObject({
      redis: 'redis://redis:6379',
      redisPrefix: 'b:',
    });
    expect(parseServeArgs(['--redis', 'redis://other:1'], CWD, env).redis).toBe('redis://other:1');
    expect(parseServeArgs([], CWD, { REDIS_URL: '' }).redis).toBeUndefined();
  });

  it('refuses bad cluster options, naming each', () => {
    const error = failure([
      '--redis',
      'localhost:6379',
      '--redis-prefix',
      'a b',
      '--queue-wait',
      '0',
      '--data-port',
      '70000',
      '--advertise-url',
      'ftp://x',
      '--stall-check',
      '-1',
      '--worker-jobs',
      '0',
      '--shards',
      '0',
      '--worker-group',
      'a.b',
    ]);
    for (const flag of [
      '--redis',
      '--redis-prefix',
      '--queue-wait',
      '--data-port',
      '--advertise-url',
      '--stall-check',
      '--worker-jobs',
      '--shards',
      '--worker-group',
    ]) {
      expect(error.message).toContain(flag);
    }
  });

  it('accepts -J N, -JN and --jobs=N; --proxyconnections follows the jobs', () => {
    for (const argv of [['-J', '3'], ['-J3'], ['--jobs=3'], ['--jobs', '3']]) {
      const o = parseServeArgs(argv, CWD);
      expect(o.jobs).toBe(3);
      expect(o.proxyConnections).toBe(3);
    }
    expect(parseServeArgs(['-J', 'cpus'], CWD).jobs).toBe(availableParallelism());
    expect(parseServeArgs(['-J2', '--proxyconnections', '0'], CWD).proxyConnections).toBe(0);
  });

  it('port 0 and -d', () => {
    const o = parseServeArgs(['--port', '0', '-d'], CWD);
    expect(o.port).toBe(0);
    expect(o.debug).toBe(true);
  });

  it('with only --directory, no repository is served by default', () => {
    const o = parseServeArgs(['--directory', '/srv'], CWD);
    expect(o.repos).toEqual([]);
    expect(o.directories).toEqual(['/srv']);
  });

  it('--socket, resolved, alone or with other options', () => {
    const o = parseServeArgs(['--socket', 'p2p.sock', '--wideopen'], CWD);
    expect(o.socket).toBe('/srv/annex/repo/p2p.sock');
    expect(o.port).toBe(9417);
    expect(o.bind).toEqual([]);
  });

  it.each([
    [['--jobs', '0'], '--jobs "0": must be an integer >= 1'],
    [['-J0'], '--jobs "0": must be an integer >= 1'],
    [['--jobs', 'many'], '--jobs "many"'],
    [['--jobs', '1.5'], '--jobs "1.5"'],
    [['--jobs', '+2'], '--jobs "+2"'],
    [['--port', '65536'], '--port "65536": must be an integer from 0 to 65535'],
    [['--port', '-1'], '--port "-1"'],
    [['--port', '0x50'], '--port "0x50"'],
    [['--port', ''], '--port ""'],
    [['--proxyconnections', '-1'], '--proxyconnections "-1": must be a non-negative integer'],
    [['--clusterjobs', '1e3'], '--clusterjobs "1e3"'],
    [['--lockedfiles', '99999999999999999999'], '--lockedfiles "99999999999999999999"'],
    [['--lock-ttl', '0'], '--lock-ttl "0": must be an integer >= 1'],
    [['--upload-idle', '0'], '--upload-idle "0": must be an integer >= 1'],
    [['--upload-idle', 'x'], '--upload-idle "x"'],
    [['--lock-ttl', '1.5'], '--lock-ttl "1.5"'],
    [['--socket', 's', '--port', '1'], '--socket cannot be combined with --port'],
    [['--socket', 's', '--bind', '::'], '--socket cannot be combined with --bind'],
    [
      ['--socket', 's', '--port', '1', '--bind', '::'],
      '--socket cannot be combined with --port or --bind',
    ],
    [['--certfile', 'c.pem'], '--certfile needs --privatekeyfile'],
    [['--privatekeyfile', 'k.pem'], '--privatekeyfile needs --certfile'],
    [['--chainfile', 'ch.pem'], '--chainfile needs --certfile'],
    [['--repo', ''], '--repo: must not be empty'],
    [['--bind', ''], '--bind: must not be empty'],
    [['--frobnicate'], "unknown option '--frobnicate'"],
    [['--prot', '80'], 'Did you mean --port?'],
    [['--port'], "option '--port <N>' argument missing"],
    [['serve'], 'too many arguments'],
  ])('rejects %j', (argv, message) => {
    expect(failure(argv).message).toContain(message);
  });

  it('reports every bad option in one error, one per line', () => {
    const err = failure(['--jobs', '0', '--port', 'x', '--clusterjobs', '-2', '--certfile', 'c']);
    expect(err.message.split('\n')).toEqual([
      '--port "x": must be an integer from 0 to 65535',
      '--jobs "0": must be an integer >= 1',
      '--clusterjobs "-2": must be a non-negative integer',
      '--certfile needs --privatekeyfile (HTTPS needs both)',
    ]);
  });

  it('reads the cluster options from the environment, and checks them', () => {
    const env = { REDIS_URL: 'redis://redis:6379', ANNEX_P2PHTTP_REDIS_PREFIX: 'site:' };
    const o = parseServeArgs([], CWD, env);
    expect(o.redis).toBe('redis://redis:6379');
    expect(o.redisPrefix).toBe('site:');
    expect(parseServeArgs(['--redis', 'rediss://r:1'], CWD, env).redis).toBe('rediss://r:1');
    expect(parseServeArgs([], CWD, {}).redis).toBeUndefined();
    expect(
      failure([
        '--redis',
        'http://x',
        '--health-port',
        '70000',
        '--redis-prefix',
        ' ',
      ]).message.split('\n'),
    ).toEqual([
      '--health-port "70000": must be an integer from 0 to 65535',
      '--redis "http://x": must be a redis://, rediss://, redis+sentinel:// or rediss+sentinel:// URL',
      '--redis-prefix " ": must be 1 to 64 of A-Z a-z 0-9 _ . : -',
    ]);
  });

  it('--help throws HelpRequested carrying the help text', () => {
    for (const argv of [['--help'], ['-h'], ['--port', '1', '--help']]) {
      const err = failure(argv);
      expect(err).toBeInstanceOf(HelpRequested);
      expect((err as HelpRequested).helpText).toBe(serveHelp());
    }
  });
});

/**
 * Every option of `git annex p2phttp` in git-annex-p2phttp(1) as of git-annex 10.20260421, written
 * as the man page writes it (`--name=value`), and what it sets here: the same meaning, or the
 * documented equivalent (README options table), so that switching is renaming the command.
 */
describe('the options of git annex p2phttp (10.20260421)', () => {
  const cases: [string[], Partial<ServeOptions>][] = [
    [
      ['--directory=/srv/annex', '--directory=more'],
      {
        directories: ['/srv/annex', '/srv/annex/repo/more'],
        repos: [],
      },
    ],
    [['--jobs=12'], { jobs: 12, proxyConnections: 12 }],
    [['-J12'], { jobs: 12 }],
    [['--jobs=cpus'], { jobs: availableParallelism() }],
    [['--jobs=100', '--cpus=2'], { jobs: 100, cpus: 2 }],
    [['--cpus=2'], { cpus: 2 }],
    [['--proxyconnections=3'], { proxyConnections: 3 }],
    [['--clusterjobs=4'], { clusterJobs: 4 }],
    [['--lockedfiles=50'], { lockedFiles: 50 }],
    [['--lock-ttl=90'], { lockTtlMs: 90_000 }],
    [['--upload-idle=5'], { uploadIdleMs: 5_000 }],
    [['--port=8080'], { port: 8080 }],
    [['--bind=127.0.0.1'], { bind: ['127.0.0.1'] }],
    [['--socket=/run/p2phttp.sock'], { socket: '/run/p2phttp.sock' }],
    [
      ['--certfile=c.pem', '--privatekeyfile=k.pem', '--chainfile=a.pem', '--chainfile=b.pem'],
      {
        certFile: '/srv/annex/repo/c.pem',
        privateKeyFile: '/srv/annex/repo/k.pem',
        chainFiles: ['/srv/annex/repo/a.pem', '/srv/annex/repo/b.pem'],
      },
    ],
    [['--authenv'], { authEnv: true, authEnvHttp: false }],
    [['--authenv-http'], { authEnvHttp: true, authEnv: false }],
    [['--unauth-readonly'], { unauthReadonly: true }],
    [['--unauth-appendonly'], { unauthAppendonly: true }],
    [
      ['--authenv', '--unauth-readonly', '--unauth-nolocking'],
      {
        authEnv: true,
        unauthReadonly: true,
        unauthNolocking: true,
      },
    ],
    [['--wideopen'], { wideopen: true }],
  ];

  it.each(cases)('%j', (argv, expected) => {
    expect(parseServeArgs(argv, CWD, {})).toMatchObject(expected);
  });

  it('leaves --cpus unset unless given, and takes 1 to 1024', () => {
    expect(parseServeArgs([], CWD, {}).cpus).toBeUndefined();
    expect(parseServeArgs(['--cpus', '1'], CWD, {}).cpus).toBe(1);
    expect(parseServeArgs(['--cpus=1024'], CWD, {}).cpus).toBe(1024);
    for (const bad of ['0', '1025', 'cpus', '-1', '1.5']) {
      expect(failure([`--cpus=${bad}`]).message).toContain(`--cpus "${bad}"`);
    }
  });
});

describe('serveHelp', () => {
  const help = serveHelp();
  const flags = [
    '--port',
    '--bind',
    '--socket',
    '-J, --jobs',
    '--cpus',
    '--proxyconnections',
    '--clusterjobs',
    '--lockedfiles',
    '--certfile',
    '--privatekeyfile',
    '--chainfile',
    '--authenv',
    '--authenv-http',
    '--unauth-readonly',
    '--unauth-appendonly',
    '--unauth-nolocking',
    '--wideopen',
    '--repo',
    '--directory',
    '-d, --debug',
    '--redis',
    '--redis-prefix',
    '--health-port',
    '--ops-listen',
    '--log-format',
    '--log-level',
    '--policy',
    '--auth-hook',
    '--auth-hook-cache',
    '--path-prefix',
    '-h, --help',
  ];

  it.each(flags)('lists %s with a one-line description', (flag) => {
    const line = help.split('\n').find((l) => l.trimStart().startsWith(`${flag} `));
    expect(line).toBeDefined();
    const index = help.split('\n').indexOf(line as string);
    const next = help.split('\n')[index + 1] ?? '';
    // The description follows on the same line; the next line is another option (or the end).
    expect(line?.slice(flag.length).trim().length).toBeGreaterThan(10);
    expect(next === '' || /^\s{2}-/.test(next)).toBe(true);
  });
});
