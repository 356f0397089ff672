/**
 * The Redis URLs of cluster mode (`--redis`, REDIS_URL). Pure: no I/O, no ioredis.
 *
 *   redis://[[user]:password@]host[:port][/db][?db=N]        one Redis (port 6379)
 *   rediss://…                                                the same over TLS
 *   redis+sentinel://[[user]:password@]host1[:port1],host2[:port2],…/master[?options]
 *   rediss+sentinel://…                                       the same, TLS to Redis and sentinels
 *
 * In a Sentinel URL the hosts are the sentinels (port 26379 unless given), the path names the
 * master set as the sentinels know it, and the user and password are those of the Redis servers.
 * Options: `db=N`; `sentinelUsername=`, `sentinelPassword=` for sentinels that ask for a login.
 * Percent-encode a password's `@ : / ? # , %`.
 */
import { AnnexP2PError } from '@annex-p2phttp/protocol';

export interface RedisEndpoint {
  readonly host: string;
  readonly port: number;
}

interface Common {
  readonly username?: string;
  readonly password?: string;
  readonly db?: number;
  readonly tls: boolean;
}

export interface StandaloneTarget extends Common {
  readonly kind: 'standalone';
  readonly host: string;
  readonly port: number;
}

export interface SentinelTarget extends Common {
  readonly kind: 'sentinel';
  readonly sentinels: readonly RedisEndpoint[];
  /** The master set's name, as in the sentinels' `sentinel monitor <name> …`. */
  readonly masterName: string;
  readonly sentinelUsername?: string;
  readonly sentinelPassword?: string;
}

export type RedisTarget = StandaloneTarget | SentinelTarget;

/** A URL that names no Redis: the message says why, never with the password in it. */
export class RedisUrlError extends AnnexP2PError {
  declare readonly code: 'REDIS_URL_INVALID';

  constructor(message: string) {
    super('REDIS_URL_INVALID', message);
    this.name = 'RedisUrlError';
  }
}

const SCHEMES: Record<string, { sentinel: boolean; tls: boolean }> = {
  redis: { sentinel: false, tls: false },
  rediss: { sentinel: false, tls: true },
  'redis+sentinel': { sentinel: true, tls: false },
  'rediss+sentinel': { sentinel: true, tls: true },
};

const SENTINEL_OPTIONS = new Set(['db', 'sentinelUsername', 'sentinelPassword']);
const STANDALONE_OPTIONS = new Set(['db']);

/** Parses a Redis URL (see the module comment); throws RedisUrlError when it names none. */
export function parseRedisUrl(url: string): RedisTarget {
  const match = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)(\?[^#]*)?$/.exec(url);
  const scheme = match ? SCHEMES[(match[1] ?? '').toLowerCase()] : undefined;
  if (!match || !scheme) {
    throw new RedisUrlError(
      'must be a redis://, rediss://, redis+sentinel:// or rediss+sentinel:// URL',
    );
  }
  const authority = match[2] ?? '';
  const path = match[3] ?? '';
  const query = match[4] ?? '';
  const at = authority.lastIndexOf('@');
  const userinfo = at < 0 ? '' : authority.slice(0, at);
  const hostList = at < 0 ? authority : authority.slice(at + 1);
  const credentials = parseUserinfo(userinfo);
  const params = parseQuery(query, scheme.sentinel ? SENTINEL_OPTIONS : STANDALONE_OPTIONS);
  const common: Common = {
    ...credentials,
    ...(params.db === undefined ? {} : { db: parseDb(params.db) }),
    tls: scheme.tls,
  };

  if (!scheme.sentinel) {
    if (hostList.includes(',')) {
      throw new RedisUrlError('several hosts need a redis+sentinel:// URL');
    }
    const endpoint = parseEndpoint(hostList, 6379, true);
    const pathDb = path.replace(/^\//, '');
    if (pathDb !== '') {
      if (params.db !== undefined) {
        throw new RedisUrlError('the database is given twice (path and ?db=)');
      }
      return { kind: 'standalone', ...endpoint, ...common, db: parseDb(pathDb) };
    }
    return { kind: 'standalone', ...endpoint, ...common };
  }

  if (hostList === '') {
    throw new RedisUrlError('a redis+sentinel:// URL names at least one sentinel host');
  }
  const sentinels = hostList.split(',').map((part) => parseEndpoint(part, 26379, false));
  const segments = path.replace(/^\//, '').split('/');
  if (segments.length !== 1 || segments[0] === '') {
    throw new RedisUrlError(
      'a redis+sentinel:// URL ends in /<master name> (the database is ?db=N)',
    );
  }
  const masterName = decode(segments[0] ?? '', 'the master name');
  return {
    kind: 'sentinel',
    sentinels,
    masterName,
    ...common,
    ...(params.sentinelUsername === undefined ? {} : { sentinelUsername: params.sentinelUsername }),
    ...(params.sentinelPassword === undefined ? {} : { sentinelPassword: params.sentinelPassword }),
  };
}

/** The URL as it may be logged: passwords replaced by `***`. */
export function redactRedisUrl(url: string): string {
  return url
    .replace(/^([^:/?#]+:\/\/)([^@/?#]*)@/, (_all, scheme: string, userinfo: string) => {
      const colon = userinfo.indexOf(':');
      return colon < 0 ? `${scheme}${userinfo}@` : `${scheme}${userinfo.slice(0, colon)}:***@`;
    })
    .replace(/([?&]sentinelPassword=)[^&#]*/g, '$1***');
}

/** A short description for logs and metrics: the kind and where, no secrets. */
export function describeRedisTarget(target: RedisTarget): string {
  if (target.kind === 'standalone') {
    return `${target.tls ? 'rediss' : 'redis'}://${hostPort(target)}`;
  }
  const sentinels = target.sentinels.map(hostPort).join(',');
  return `master "${target.masterName}" of the sentinels ${sentinels}${target.tls ? ' (TLS)' : ''}`;
}

function hostPort({ host, port }: RedisEndpoint): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function parseUserinfo(userinfo: string): { username?: string; password?: string } {
  if (userinfo === '') {
    return {};
  }
  const colon = userinfo.indexOf(':');
  const user = colon < 0 ? userinfo : userinfo.slice(0, colon);
  const password = colon < 0 ? '' : userinfo.slice(colon + 1);
  const result: { username?: string; password?: string } = {};
  if (user !== '') {
    result.username = decode(user, 'the user name');
  }
  if (password !== '') {
    result.password = decode(password, 'the password');
  }
  return result;
}

function parseEndpoint(text: string, defaultPort: number, emptyIsLocal: boolean): RedisEndpoint {
  if (text === '') {
    if (emptyIsLocal) {
      return { host: '127.0.0.1', port: defaultPort };
    }
    throw new RedisUrlError('an empty host in the list of sentinels');
  }
  const bracketed = /^\[([0-9A-Fa-f:.]+)\](?::(.*))?$/.exec(text);
  let host: string;
  let port: string | undefined;
  if (bracketed) {
    host = bracketed[1] ?? '';
    port = bracketed[2];
  } else {
    const colon = text.lastIndexOf(':');
    if (colon >= 0 && text.indexOf(':') !== colon) {
      throw new RedisUrlError(`an IPv6 address goes in brackets: [${text}]`);
    }
    host = colon < 0 ? text : text.slice(0, colon);
    port = colon < 0 ? undefined : text.slice(colon + 1);
    if (!/^[A-Za-z0-9._-]+$/.test(host)) {
      throw new RedisUrlError(`not a host name: ${JSON.stringify(host)}`);
    }
  }
  if (port === undefined || port === '') {
    return { host, port: defaultPort };
  }
  if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    throw new RedisUrlError(`not a port: ${JSON.stringify(port)}`);
  }
  return { host, port: Number(port) };
}

function parseQuery(query: string, allowed: ReadonlySet<string>): Record<string, string> {
  const params: Record<string, string> = {};
  for (const part of query.replace(/^\?/, '').split('&')) {
    if (part === '') {
      continue;
    }
    const equals = part.indexOf('=');
    const name = decode(equals < 0 ? part : part.slice(0, equals), 'an option name');
    const value = decode(equals < 0 ? '' : part.slice(equals + 1).replace(/\+/g, ' '), name);
    if (!allowed.has(name)) {
      throw new RedisUrlError(
        `unknown option ${JSON.stringify(name)} (this URL takes ${[...allowed].join(', ')})`,
      );
    }
    if (name in params) {
      throw new RedisUrlError(`the option ${name} is given twice`);
    }
    params[name] = value;
  }
  return params;
}

function parseDb(text: string): number {
  if (!/^\d{1,5}$/.test(text)) {
    throw new RedisUrlError(`the database must be a number: ${JSON.stringify(text)}`);
  }
  return Number(text);
}

function decode(text: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new RedisUrlError(`${what} is not valid percent-encoding`);
  }
}
