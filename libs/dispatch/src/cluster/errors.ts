/**
 * Errors of cluster dispatch, each with a stable `code`. Failures cross the queue as text
 * (`failedReason`), so `encodeFailure` / `decodeFailure` carry the code of a worker-side error
 * (a P2PError's, say) to the gateway, which then answers as the embedded server would.
 */
import { P2PError, type P2PErrorCode } from '@annex-p2phttp/p2p';

export type DispatchErrorCode =
  /** Redis unreachable, no live worker, or no worker free within --queue-wait: try again later. */
  | 'DISPATCH_UNAVAILABLE'
  /** No answer within --job-timeout. */
  | 'DISPATCH_TIMEOUT'
  /** The job failed on the worker for a reason without a more specific code. */
  | 'DISPATCH_JOB_FAILED'
  /** The byte stream between gateway and worker broke or was never claimed. */
  | 'DISPATCH_STREAM_FAILED'
  /**
   * The worker that took the job does not serve its uuid (yet): another worker of its group may
   * (it has not found a new repository yet, say). Nothing was done: the gateway sends it again.
   */
  | 'DISPATCH_NOT_SERVED';

export class DispatchError extends Error {
  constructor(
    readonly code: DispatchErrorCode,
    message: string,
    /** For DISPATCH_UNAVAILABLE: seconds after which a retry may succeed. */
    readonly retryAfterSeconds = 5,
  ) {
    super(message);
    this.name = 'DispatchError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

export const unavailable = (message: string, retryAfterSeconds = 5): DispatchError =>
  new DispatchError('DISPATCH_UNAVAILABLE', message, retryAfterSeconds);

const P2P_CODES = new Set<string>([
  'P2P_CONNECTION_CLOSED',
  'P2P_SPAWN_FAILED',
  'P2P_HANDSHAKE_FAILED',
  'P2P_UNEXPECTED_REPLY',
  'P2P_REMOTE_ERROR',
  'P2P_BUSY',
  'P2P_POOL_CLOSED',
  'P2P_ABORTED',
] satisfies P2PErrorCode[]);

const DISPATCH_CODES = new Set<string>([
  'DISPATCH_UNAVAILABLE',
  'DISPATCH_TIMEOUT',
  'DISPATCH_JOB_FAILED',
  'DISPATCH_STREAM_FAILED',
  'DISPATCH_NOT_SERVED',
] satisfies DispatchErrorCode[]);

/** `CODE: message`: the failedReason of a job whose processor threw `error`. */
export function encodeFailure(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && (P2P_CODES.has(code) || DISPATCH_CODES.has(code))) {
    return `${code}: ${message}`;
  }
  return `DISPATCH_JOB_FAILED: ${message}`;
}

/** The error a gateway raises for a job that failed with `reason` (see encodeFailure). */
export function decodeFailure(reason: string): Error {
  const match = /^([A-Z][A-Z0-9_]*): ([\s\S]*)$/.exec(reason);
  const code = match?.[1];
  const message = match?.[2] ?? reason;
  if (code !== undefined && P2P_CODES.has(code)) {
    return new P2PError(code as P2PErrorCode, message);
  }
  if (code !== undefined && DISPATCH_CODES.has(code)) {
    return new DispatchError(code as DispatchErrorCode, message);
  }
  return new DispatchError('DISPATCH_JOB_FAILED', `job failed on the proxy worker: ${reason}`);
}
