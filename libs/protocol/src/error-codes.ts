/**
 * Every stable error code of annex-p2phttp, declared once (as undici's UND_ERR_*). Callers branch
 * on the code, never on the message text; the gateway maps each code to one HTTP answer
 * (apps/gateway/src/error-status.ts). A new code needs a row there, or its test fails.
 */

/** Failures of a P2P session with git-annex-shell (libs/p2p). They cross the job queue as is. */
export const P2P_ERROR_CODES = [
  /** The connection ended (process exit, EOF, kill). */
  'P2P_CONNECTION_CLOSED',
  /** No session could be set up (spawn failed, no VERSION, wrong reply to it). */
  'P2P_HANDSHAKE_FAILED',
  /** The peer sent `ERROR msg`. */
  'P2P_REMOTE_ERROR',
  /** A connection was used while not idle. */
  'P2P_BUSY',
  /** The connection pool is shutting down. */
  'P2P_POOL_CLOSED',
  /** The caller aborted (the client went away). */
  'P2P_ABORTED',
] as const;

/** Failures of cluster dispatch (libs/dispatch/cluster). They cross the job queue as is. */
export const DISPATCH_ERROR_CODES = [
  /** Redis unreachable, no live worker, or no worker free within --queue-wait: try again later. */
  'DISPATCH_UNAVAILABLE',
  /** The dispatcher (or its query lane) is shutting down. */
  'DISPATCH_CLOSED',
  /** No answer within --job-timeout. */
  'DISPATCH_TIMEOUT',
  /** The job failed on the worker for a reason without a more specific code. */
  'DISPATCH_JOB_FAILED',
  /** The byte stream between gateway and worker broke or was never claimed. */
  'DISPATCH_STREAM_FAILED',
  /**
   * The worker that took the job does not serve its uuid (yet): another worker of its group may
   * (it has not found a new repository yet, say). Nothing was done: the gateway sends it again.
   */
  'DISPATCH_NOT_SERVED',
] as const;

export const ERROR_CODES = [
  /** A malformed or unknown server line, an over-long line or a truncated stream. */
  'P2P_PROTOCOL',
  /** A rejected HTTP parameter value. */
  'BAD_PARAM',
  ...P2P_ERROR_CODES,
  ...DISPATCH_ERROR_CODES,
  /** The locks (Redis, the lock-service) cannot be reached or did not answer in time. */
  'LOCKS_UNAVAILABLE',
  /** The authorization hook could not decide. */
  'AUTH_HOOK_UNAVAILABLE',
  /** A problem with the configuration the user gave. */
  'CONFIG_INVALID',
  /** A policy file that cannot be used. */
  'CONFIG_POLICY_INVALID',
  /** `--help` was given: not a failure, the message is the help text. */
  'CONFIG_HELP_REQUESTED',
  /** A URL that names no Redis. */
  'REDIS_URL_INVALID',
] as const;

export type AnnexP2PErrorCode = (typeof ERROR_CODES)[number];
export type P2PErrorCode = (typeof P2P_ERROR_CODES)[number];
export type DispatchErrorCode = (typeof DISPATCH_ERROR_CODES)[number];
