/**
 * The one table from an error code to the HTTP answer the gateway gives (PROTOCOL.md §2.6: error
 * bodies are plain text). Libraries throw errors with stable codes (@annex-p2phttp/protocol's
 * ERROR_CODES); only here do codes become statuses. The table's type asks for a row per code, and
 * its test checks every code of ERROR_CODES at run time too.
 */
import { type AnnexP2PError, type AnnexP2PErrorCode } from '@annex-p2phttp/protocol';

/**
 * How loud a failure is in the gateway's log: `none` (the client's business or a transient
 * state), `warn`, `error` (an operator should look), `stack` (a bug: the stack is logged).
 */
export type ErrorLogLevel = 'none' | 'warn' | 'error' | 'stack';

export interface ErrorStatus {
  readonly status: number;
  /** Sends Retry-After with this many seconds, unless the error itself knows better. */
  readonly retryAfterSeconds?: number;
  /** The body the client gets instead of the error's own message. */
  readonly message?: string;
  readonly log: ErrorLogLevel;
}

/** An error that should never reach a request: answered as any unexpected failure is. */
const INTERNAL: ErrorStatus = { status: 500, message: 'internal server error', log: 'stack' };

export const ERROR_STATUS: { readonly [code in AnnexP2PErrorCode]: ErrorStatus } = {
  P2P_PROTOCOL: { status: 500, log: 'warn' },
  BAD_PARAM: { status: 400, log: 'none' },
  P2P_CONNECTION_CLOSED: { status: 500, log: 'warn' },
  P2P_HANDSHAKE_FAILED: { status: 502, log: 'error' },
  P2P_REMOTE_ERROR: { status: 500, log: 'warn' },
  P2P_BUSY: { status: 500, log: 'warn' },
  P2P_POOL_CLOSED: { status: 503, retryAfterSeconds: 5, log: 'none' },
  P2P_ABORTED: { status: 499, log: 'none' },
  DISPATCH_UNAVAILABLE: { status: 503, retryAfterSeconds: 5, log: 'none' },
  DISPATCH_CLOSED: { status: 503, retryAfterSeconds: 5, log: 'none' },
  DISPATCH_NOT_SERVED: { status: 503, retryAfterSeconds: 5, log: 'none' },
  DISPATCH_TIMEOUT: { status: 504, log: 'warn' },
  DISPATCH_JOB_FAILED: { status: 500, log: 'warn' },
  DISPATCH_STREAM_FAILED: { status: 502, log: 'warn' },
  LOCKS_UNAVAILABLE: { status: 503, retryAfterSeconds: 5, log: 'warn' },
  AUTH_HOOK_UNAVAILABLE: {
    status: 503,
    retryAfterSeconds: 1,
    message: 'authorization service unavailable',
    log: 'none',
  },
  CONFIG_INVALID: INTERNAL,
  CONFIG_POLICY_INVALID: INTERNAL,
  CONFIG_HELP_REQUESTED: INTERNAL,
  REDIS_URL_INVALID: INTERNAL,
};

export interface HttpAnswer {
  readonly status: number;
  readonly message: string;
  readonly headers: Record<string, string>;
  readonly log: ErrorLogLevel;
}

/** The HTTP answer to `error`, by its code. */
export function httpAnswer(error: AnnexP2PError): HttpAnswer {
  const row = ERROR_STATUS[error.code];
  const headers: Record<string, string> = {};
  if (row.retryAfterSeconds !== undefined) {
    headers['retry-after'] = String(error.retryAfterSeconds ?? row.retryAfterSeconds);
  }
  return { status: row.status, message: row.message ?? error.message, headers, log: row.log };
}
