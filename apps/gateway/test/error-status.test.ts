import { describe, expect, it } from 'vitest';
import { ConfigError, HelpRequested, PolicyError } from '@annex-p2phttp/config';
import { DispatchError, unavailable } from '@annex-p2phttp/dispatch';
import { LocksUnavailableError } from '@annex-p2phttp/locks';
import { AbortError, ConnectionClosedError, P2PError, RemoteError } from '@annex-p2phttp/p2p';
import {
  type AnnexP2PError,
  type AnnexP2PErrorCode,
  ERROR_CODES,
  InvalidParameterError,
  ProtocolError,
} from '@annex-p2phttp/protocol';
import { RedisUrlError } from '@annex-p2phttp/redis';
import { AuthHookUnavailable } from '../src/auth-hook';
import { ERROR_STATUS, httpAnswer } from '../src/error-status';

interface Expected {
  readonly error: AnnexP2PError;
  readonly status: number;
  readonly message: string;
  readonly headers: Record<string, string>;
}

const internal = { status: 500, message: 'internal server error', headers: {} };

/** One row per code: the error as its thrower makes it, and the answer the client gets. */
const ROWS: { readonly [code in AnnexP2PErrorCode]: Expected } = {
  P2P_PROTOCOL: {
    error: new ProtocolError('bad line'),
    status: 500,
    message: 'bad line',
    headers: {},
  },
  BAD_PARAM: {
    error: new InvalidParameterError('key', 'invalid key: empty'),
    status: 400,
    message: 'invalid key: empty',
    headers: {},
  },
  P2P_CONNECTION_CLOSED: {
    error: new ConnectionClosedError('git-annex-shell exited', 'gone'),
    status: 500,
    message: 'git-annex-shell exited: gone',
    headers: {},
  },
  P2P_HANDSHAKE_FAILED: {
    error: new P2PError('P2P_HANDSHAKE_FAILED', 'no handshake'),
    status: 502,
    message: 'no handshake',
    headers: {},
  },
  P2P_REMOTE_ERROR: {
    error: new RemoteError('content is locked'),
    status: 500,
    message: 'content is locked',
    headers: {},
  },
  P2P_BUSY: {
    error: new P2PError('P2P_BUSY', 'not idle'),
    status: 500,
    message: 'not idle',
    headers: {},
  },
  P2P_POOL_CLOSED: {
    error: new P2PError('P2P_POOL_CLOSED', 'server is shutting down'),
    status: 503,
    message: 'server is shutting down',
    headers: { 'retry-after': '5' },
  },
  P2P_ABORTED: { error: new AbortError(), status: 499, message: 'operation aborted', headers: {} },
  DISPATCH_UNAVAILABLE: {
    error: unavailable('no live proxy worker serves this repository'),
    status: 503,
    message: 'no live proxy worker serves this repository',
    headers: { 'retry-after': '5' },
  },
  DISPATCH_CLOSED: {
    error: new DispatchError('DISPATCH_CLOSED', 'shutting down'),
    status: 503,
    message: 'shutting down',
    headers: { 'retry-after': '5' },
  },
  DISPATCH_NOT_SERVED: {
    error: new DispatchError('DISPATCH_NOT_SERVED', 'not served here'),
    status: 503,
    message: 'not served here',
    headers: { 'retry-after': '5' },
  },
  DISPATCH_TIMEOUT: {
    error: new DispatchError('DISPATCH_TIMEOUT', 'no answer'),
    status: 504,
    message: 'no answer',
    headers: {},
  },
  DISPATCH_JOB_FAILED: {
    error: new DispatchError('DISPATCH_JOB_FAILED', 'boom'),
    status: 500,
    message: 'boom',
    headers: {},
  },
  DISPATCH_STREAM_FAILED: {
    error: new DispatchError('DISPATCH_STREAM_FAILED', 'stream broke'),
    status: 502,
    message: 'stream broke',
    headers: {},
  },
  LOCKS_UNAVAILABLE: {
    error: new LocksUnavailableError('lost the connection to Redis'),
    status: 503,
    message: 'lost the connection to Redis',
    headers: { 'retry-after': '5' },
  },
  AUTH_HOOK_UNAVAILABLE: {
    error: new AuthHookUnavailable('hook timed out'),
    status: 503,
    message: 'authorization service unavailable',
    headers: { 'retry-after': '1' },
  },
  CONFIG_INVALID: { error: new ConfigError('--port: not a number'), ...internal },
  CONFIG_POLICY_INVALID: { error: new PolicyError('policy.yaml:1: bad'), ...internal },
  CONFIG_HELP_REQUESTED: { error: new HelpRequested('usage: …'), ...internal },
  REDIS_URL_INVALID: { error: new RedisUrlError('not a port: "x"'), ...internal },
};

describe('error code → HTTP answer', () => {
  it.each(Object.entries(ROWS))('%s', (code, row) => {
    expect(row.error.code).toBe(code);
    const { status, message, headers } = httpAnswer(row.error);
    expect({ status, message, headers }).toEqual({
      status: row.status,
      message: row.message,
      headers: row.headers,
    });
  });

  it('has a row for every code, and none for a code that does not exist', () => {
    for (const code of ERROR_CODES) {
      expect(ERROR_STATUS[code], code).toBeDefined();
      expect(ROWS[code], code).toBeDefined();
    }
    expect(Object.keys(ERROR_STATUS).sort()).toEqual([...ERROR_CODES].sort());
  });

  it('sends the Retry-After the error knows better than its code', () => {
    expect(httpAnswer(unavailable('Redis is failing over', 60)).headers).toEqual({
      'retry-after': '60',
    });
  });

  it('sends no Retry-After where the code has none', () => {
    const late = new DispatchError('DISPATCH_TIMEOUT', 'no answer', 30);
    expect(httpAnswer(late).headers).toEqual({});
  });
});
