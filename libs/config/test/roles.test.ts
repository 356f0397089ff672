import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  deepFreeze,
  embeddedConfig,
  gatewayConfig,
  lockServiceConfig,
  parseServeArgs,
  workerConfig,
  type ServeOptions,
} from '../src';

const CWD = '/srv/annex';
const REDIS = ['--redis', 'redis://r:6379'];

function parse(argv: string[]): ServeOptions {
  return parseServeArgs(argv, CWD, {});
}

/** Every nested object or array of `value` is frozen. */
function frozenThroughout(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) {
    return true;
  }
  return Object.isFrozen(value) && Object.values(value).every(frozenThroughout);
}

describe('the options are frozen', () => {
  it('throws on any write, at any depth (modules are strict)', () => {
    const options = parse(['--repo', 'a', '--bind', '127.0.0.1', '--ops-listen', ':9420']);
    expect(frozenThroughout(options)).toBe(true);
    const writable = options as unknown as {
      port: number;
      repos: string[];
      opsListen: { port: number };
    };
    expect(() => (writable.port = 1)).toThrow(TypeError);
    expect(() => writable.repos.push('/elsewhere')).toThrow(TypeError);
    expect(() => (writable.opsListen.port = 1)).toThrow(TypeError);
    expect(() => delete (writable as { port?: number }).port).toThrow(TypeError);
    expect(options.port).toBe(9417);
    expect(options.repos).toEqual(['/srv/annex/a']);
    expect(options.opsListen).toEqual({ host: '0.0.0.0', port: 9420 });
  });

  it('deepFreeze freezes plain values and leaves primitives alone', () => {
    const value = deepFreeze({ a: [{ b: 1 }], c: 'x' });
    expect(frozenThroughout(value)).toBe(true);
    expect(deepFreeze(3)).toBe(3);
    expect(deepFreeze(null)).toBeNull();
  });
});

describe('each role gets its slice', () => {
  it('embedded: the API, the sessions and the repositories, nothing of cluster mode', () => {
    const config = embeddedConfig(
      parse(['--repo', 'a', '-J', '3', '--wideopen', '--lock-ttl', '5', '--data-port', '1']),
    );
    expect(config).toMatchObject({
      repos: ['/srv/annex/a'],
      directories: [],
      jobs: 3,
      proxyConnections: 3,
      wideopen: true,
      authEnv: false,
      lockTtlMs: 5000,
      lockedFiles: 100,
      port: 9417,
      logLevel: 'info',
    });
    for (const key of ['redis', 'redisPrefix', 'dataPort', 'healthPort', 'shards', 'queueWaitMs']) {
      expect(config).not.toHaveProperty(key);
    }
    expect(config).not.toHaveProperty('socket'); // unset options are left out
    expect(frozenThroughout(config)).toBe(true);
  });

  it('gateway: the API and the queues; no repositories or sessions', () => {
    const config = gatewayConfig(
      parse([...REDIS, '--redis-prefix', 'p:', '--queue-wait', '7', '--path-prefix', '/annex/']),
    );
    expect(config).toMatchObject({
      redis: 'redis://r:6379',
      redisPrefix: 'p:',
      queueWaitMs: 7000,
      jobTimeoutMs: 600_000,
      pathPrefix: '/annex',
      uploadIdleMs: 60_000,
    });
    for (const key of ['repos', 'directories', 'jobs', 'dataPort', 'healthPort', 'workerJobs']) {
      expect(config).not.toHaveProperty(key);
    }
    expect(frozenThroughout(config)).toBe(true);
  });

  it('proxy-worker: sessions, repositories, queues and its data port', () => {
    const config = workerConfig(
      parse([...REDIS, '--directory', 'd', '-J', '2', '--shards', '4', '--worker-group', 'g1']),
    );
    expect(config).toMatchObject({
      redis: 'redis://r:6379',
      redisPrefix: 'annex-p2phttp:',
      repos: [],
      directories: ['/srv/annex/d'],
      jobs: 2,
      workerJobs: 64,
      shards: 4,
      workerGroup: 'g1',
      dataPort: 9418,
      stallCheckMs: 30_000,
      bind: [],
    });
    for (const key of ['port', 'lockTtlMs', 'policyFile', 'healthPort', 'wideopen']) {
      expect(config).not.toHaveProperty(key);
    }
    expect(frozenThroughout(config)).toBe(true);
  });

  it('lock-service: repositories, Redis and its health port on the first --bind', () => {
    const config = lockServiceConfig(
      parse([...REDIS, '--bind', '10.0.0.1', '--bind', '10.0.0.2', '--health-port', '0']),
    );
    expect(config).toEqual({
      redis: 'redis://r:6379',
      redisPrefix: 'annex-p2phttp:',
      repos: [CWD],
      directories: [],
      healthPort: 0,
      healthHost: '10.0.0.1',
      clusterJobs: 1,
      debug: false,
      logLevel: 'info',
    });
    expect(lockServiceConfig(parse(REDIS))).not.toHaveProperty('healthHost');
    expect(lockServiceConfig(parse(REDIS)).healthPort).toBe(9419);
    expect(frozenThroughout(config)).toBe(true);
  });

  it('a cluster role without Redis is a ConfigError naming the role', () => {
    const options = parse([]);
    expect(() => gatewayConfig(options)).toThrow(
      new ConfigError('gateway needs --redis URL (or REDIS_URL)'),
    );
    expect(() => workerConfig(options)).toThrow('proxy-worker needs --redis URL');
    expect(() => lockServiceConfig(options)).toThrow('lock-service needs --redis URL');
    expect(() => lockServiceConfig(options)).toThrow(ConfigError);
  });
});
