/**
 * Errors of cluster dispatch, each with a stable `code` (declared with every other code in
 * @annex-p2phttp/protocol). Failures cross the queue as text (`failedReason`), so `encodeFailure` /
 * `decodeFailure` carry the code of a worker-side error (a P2PError's, say) to the gateway, which
 * then answers as the embedded server would.
 */
import { P2PError } from '@annex-p2phttp/p2p';
import {
  AnnexP2PError,
  DISPATCH_ERROR_CODES,
  type DispatchErrorCode,
  P2P_ERROR_CODES,
  type P2PErrorCode,
} from '@annex-p2phttp/protocol';

export type { DispatchErrorCode } from '@annex-p2phttp/protocol';

export class DispatchError extends AnnexP2PError {
  declare readonly code: DispatchErrorCode;

  constructor(
    code: DispatchErrorCode,
    message: string,
    /** For DISPATCH_UNAVAILABLE: seconds after which a retry may succeed. */
    retryAfterSeconds?: number,
  ) {
    super(code, message, retryAfterSeconds === undefined ? {} : { retryAfterSeconds });
    this.name = 'DispatchError';
  }
}

export const unavailable = (message: string, retryAfterSeconds = 5): DispatchError =>
  new DispatchError('DISPATCH_UNAVAILABLE', message, retryAfterSeconds);

/** The dispatcher (or its query lane) is shutting down: the client may try again elsewhere. */
export const shuttingDown = (): DispatchError =>
  new DispatchError('DISPATCH_CLOSED', 'shutting down');

const P2P_CODES = new Set<string>(P2P_ERROR_CODES);
const DISPATCH_CODES = new Set<string>(DISPATCH_ERROR_CODES);

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
