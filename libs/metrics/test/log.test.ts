import { describe, expect, it } from 'vitest';
import { defaultLogFormat, Logger, redact, type LogFormat, type LogLevel } from '../src/index';

function capture(format: LogFormat, level: LogLevel = 'info') {
  const lines: string[] = [];
  const logger = new Logger(
    { format, level, write: (line) => lines.push(line), now: () => Date.UTC(2026, 11, 7, 1, 2, 3) },
    { app: 'gateway' },
  );
  return { logger, lines };
}

describe('Logger', () => {
  it('writes one JSON object per line with time, level, msg, app and fields', () => {
    const { logger, lines } = capture('json');
    logger.info('listening on http://127.0.0.1:9417', { port: 9417 });
    logger.warn('multi\nline');
    expect(lines).toHaveLength(2);
    expect(
      lines.every((line) => line.endsWith('\n') && line.indexOf('\n') === line.length - 1),
    ).toBe(true);
    expect(JSON.parse(lines[0]!)).toEqual({
      time: '2026-12-07T01:02:03.000Z',
      level: 'info',
      msg: 'listening on http://127.0.0.1:9417',
      app: 'gateway',
      port: 9417,
    });
    expect(JSON.parse(lines[1]!)).toMatchObject({ level: 'warn', msg: 'multi\nline' });
  });

  it('drops lines below its level', () => {
    const { logger, lines } = capture('json', 'warn');
    logger.debug('d');
    logger.info('i');
    logger.warn('w');
    logger.error('e');
    expect(lines.map((line) => (JSON.parse(line) as { msg: string }).msg)).toEqual(['w', 'e']);
    expect(logger.enabled('info')).toBe(false);
    expect(logger.enabled('error')).toBe(true);
  });

  it('writes access lines with every field, anonymous when no user', () => {
    const { logger, lines } = capture('json');
    logger.access({
      method: 'POST',
      route: 'put',
      version: 'v4',
      repository: '2c3b4d5e-6f70-4182-93a4-b5c6d7e8f901',
      status: 200,
      bytesIn: 1234,
      bytesOut: 56,
      durationMs: 12.34567,
      user: null,
      client: '::ffff:127.0.0.1',
    });
    expect(JSON.parse(lines[0]!)).toEqual({
      time: '2026-12-07T01:02:03.000Z',
      level: 'info',
      msg: 'access',
      app: 'gateway',
      method: 'POST',
      route: 'put',
      version: 'v4',
      repository: '2c3b4d5e-6f70-4182-93a4-b5c6d7e8f901',
      status: 200,
      bytesIn: 1234,
      bytesOut: 56,
      durationMs: 12.346,
      user: 'anonymous',
      client: '::ffff:127.0.0.1',
    });
  });

  it('never writes credentials, whatever it is handed', () => {
    const { logger, lines } = capture('json');
    const header = `Basic ${Buffer.from('alice:s3cret').toString('base64')}`;
    logger.warn(`redis: connect redis://:hunter2@cache:6379 failed`, {
      authorization: header,
      password: 's3cret',
      detail: `header was ${header}`,
      url: 'rediss://user:hunter2@cache:6380/0',
      error: new Error('Bearer abc.def.ghi rejected'),
    });
    const text = lines.join('');
    for (const secret of ['s3cret', 'hunter2', header.slice(6), 'abc.def.ghi']) {
      expect(text).not.toContain(secret);
    }
    expect(JSON.parse(lines[0]!)).toMatchObject({
      msg: 'redis: connect redis://:***@cache:6379 failed',
      authorization: '***',
      password: '***',
      detail: 'header was Basic ***',
      url: 'rediss://user:***@cache:6380/0',
      error: 'Bearer *** rejected',
    });
  });

  it('writes text lines for people: app, level unless info, fields as key=value', () => {
    const { logger, lines } = capture('text', 'debug');
    logger.info('listening on http://127.0.0.1:9417');
    logger.warn('cannot write', { path: '/data/repos/a b' });
    logger.child({ app: 'embedded' }).debug('scan');
    expect(lines).toEqual([
      'gateway: listening on http://127.0.0.1:9417\n',
      'gateway: warn: cannot write path="/data/repos/a b"\n',
      'annex-p2phttp: debug: scan\n',
    ]);
  });

  it('defaults to json unless the stream is a terminal', () => {
    expect(defaultLogFormat({ isTTY: true })).toBe('text');
    expect(defaultLogFormat({})).toBe('json');
  });
});

describe('redact', () => {
  it('takes credentials out of URLs and Authorization values only', () => {
    expect(redact('http://u:p@h/x and http://h/y')).toBe('http://u:***@h/x and http://h/y');
    expect(redact('Basic YWxpY2U6cw== ok')).toBe('Basic *** ok');
    expect(redact('no secrets: a:b@c')).toBe('no secrets: a:b@c');
  });
});
