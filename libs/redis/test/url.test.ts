import { describe, expect, it } from 'vitest';
import {
  describeRedisTarget,
  parseRedisUrl,
  redactRedisUrl,
  redisOptions,
  RedisUrlError,
  targetOptions,
} from '../src';

describe('parseRedisUrl: one Redis', () => {
  it('reads host, port, credentials, database and TLS', () => {
    expect(parseRedisUrl('redis://127.0.0.1:6390')).toEqual({
      kind: 'standalone',
      host: '127.0.0.1',
      port: 6390,
      tls: false,
    });
    expect(parseRedisUrl('rediss://u%40x:p%3Aw@[::1]/3')).toEqual({
      kind: 'standalone',
      host: '::1',
      port: 6379,
      username: 'u@x',
      password: 'p:w',
      db: 3,
      tls: true,
    });
    expect(parseRedisUrl('redis://:secret@cache?db=2')).toEqual({
      kind: 'standalone',
      host: 'cache',
      port: 6379,
      password: 'secret',
      db: 2,
      tls: false,
    });
    expect(parseRedisUrl('REDIS://cache/')).toMatchObject({ host: 'cache', port: 6379 });
  });

  it('gives ioredis the same', () => {
    expect(targetOptions(parseRedisUrl('rediss://u%40x:p%3Aw@[::1]/3'))).toEqual({
      host: '::1',
      port: 6379,
      username: 'u@x',
      password: 'p:w',
      db: 3,
      tls: {},
    });
  });
});

describe('parseRedisUrl: Sentinel', () => {
  it('reads the sentinels, the master name, credentials and options', () => {
    expect(
      parseRedisUrl(
        'redis+sentinel://:pa%2Css@s1:26380,10.0.0.2,[fd00::3]:26381/mymaster?db=4&sentinelPassword=s%26p',
      ),
    ).toEqual({
      kind: 'sentinel',
      sentinels: [
        { host: 's1', port: 26380 },
        { host: '10.0.0.2', port: 26379 },
        { host: 'fd00::3', port: 26381 },
      ],
      masterName: 'mymaster',
      password: 'pa,ss',
      db: 4,
      sentinelPassword: 's&p',
      tls: false,
    });
    expect(parseRedisUrl('rediss+sentinel://app:pw@s1/set%20one?sentinelUsername=watch')).toEqual({
      kind: 'sentinel',
      sentinels: [{ host: 's1', port: 26379 }],
      masterName: 'set one',
      username: 'app',
      password: 'pw',
      sentinelUsername: 'watch',
      tls: true,
    });
  });

  it('gives ioredis sentinels, the name, the master role and TLS both ways', () => {
    const options = targetOptions(
      parseRedisUrl('rediss+sentinel://:pw@s1:1,s2:2/m?sentinelPassword=sp&db=1'),
    );
    expect(options).toMatchObject({
      sentinels: [
        { host: 's1', port: 1 },
        { host: 's2', port: 2 },
      ],
      name: 'm',
      role: 'master',
      password: 'pw',
      sentinelPassword: 'sp',
      db: 1,
      tls: {},
      enableTLSForSentinelMode: true,
      sentinelTLS: {},
    });
    expect(options.host).toBeUndefined();
  });

  it('command connections fail fast, blocking ones wait', () => {
    const url = 'redis+sentinel://s1,s2,s3/m';
    const command = redisOptions(url, 'command', 'c');
    expect(command).toMatchObject({
      connectionName: 'c',
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
    });
    const blocking = redisOptions(url, 'blocking');
    expect(blocking.maxRetriesPerRequest).toBeNull();
    // ioredis' failover detector can end a connection for good (a failover announced while it
    // reconnects): not used.
    expect(command.failoverDetector).toBeUndefined();
    expect(blocking.failoverDetector).toBeUndefined();
    // A demoted master's READONLY answer makes the connection look for the new one.
    expect(
      command.reconnectOnError?.(new Error("READONLY You can't write against a replica.")),
    ).toBe(true);
    expect(command.reconnectOnError?.(new Error('ERR wrong number of arguments'))).toBe(false);
  });
});

describe('parseRedisUrl: refusals', () => {
  const refused: [string, RegExp][] = [
    ['http://x', /redis:\/\/, rediss:\/\/, redis\+sentinel:\/\//],
    ['cache:6379', /must be a redis/],
    ['', /must be a redis/],
    ['redis://x/abc', /database must be a number/],
    ['redis://x:0', /not a port/],
    ['redis://x:70000', /not a port/],
    ['redis://x:port', /not a port/],
    ['redis://a,b/0', /several hosts need a redis\+sentinel/],
    ['redis://x/1?db=2', /database is given twice/],
    ['redis://x?family=6', /unknown option "family"/],
    ['redis+sentinel:///m', /at least one sentinel/],
    ['redis+sentinel://s1', /ends in \/<master name>/],
    ['redis+sentinel://s1/', /ends in \/<master name>/],
    ['redis+sentinel://s1/m/2', /ends in \/<master name>/],
    ['redis+sentinel://s1,,s2/m', /empty host/],
    ['redis+sentinel://s1/m?db=x', /database must be a number/],
    ['redis+sentinel://s1/m?sentinelpassword=x', /unknown option "sentinelpassword"/],
    ['redis+sentinel://s1/m?db=1&db=2', /given twice/],
    ['redis+sentinel://fd00::1/m', /IPv6 address goes in brackets/],
    ['redis+sentinel://s_1!/m', /not a host name/],
    ['redis+sentinel://:p%zz@s1/m', /password is not valid percent-encoding/],
  ];
  it.each(refused)('%s', (url, message) => {
    expect(() => parseRedisUrl(url)).toThrow(RedisUrlError);
    expect(() => parseRedisUrl(url)).toThrow(message);
  });

  it('never says the password', () => {
    for (const url of [
      'redis+sentinel://:hunter2@s1/m?bad=1',
      'redis://u:hunter2@x:99999',
      'redis+sentinel://:hunter2@s1/m?sentinelPassword=%zz',
    ]) {
      expect(() => parseRedisUrl(url)).toThrow(RedisUrlError);
      try {
        parseRedisUrl(url);
      } catch (error) {
        expect((error as Error).message).not.toContain('hunter2');
      }
    }
  });
});

describe('redactRedisUrl and describeRedisTarget', () => {
  it('hide passwords', () => {
    expect(redactRedisUrl('redis+sentinel://u:pw@s1,s2/m?db=1&sentinelPassword=sp')).toBe(
      'redis+sentinel://u:***@s1,s2/m?db=1&sentinelPassword=***',
    );
    expect(redactRedisUrl('redis://cache:6379')).toBe('redis://cache:6379');
    expect(redactRedisUrl('redis://token@cache')).toBe('redis://token@cache');
    expect(describeRedisTarget(parseRedisUrl('rediss+sentinel://:pw@s1,[::1]:2/m'))).toBe(
      'master "m" of the sentinels s1:26379,[::1]:2 (TLS)',
    );
    expect(describeRedisTarget(parseRedisUrl('redis://:pw@cache'))).toBe('redis://cache:6379');
  });
});
