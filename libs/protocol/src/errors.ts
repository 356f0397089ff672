// The one error base of annex-p2phttp, and the error types of the protocol library (PROTOCOL.md
// §1.2 framing errors, §2.1/§3 parameter errors).
import { type AnnexP2PErrorCode } from './error-codes';

export interface AnnexP2PErrorOptions {
  readonly cause?: unknown;
  /** Seconds after which a retry may succeed, where the failure knows better than its code. */
  readonly retryAfterSeconds?: number;
}

/**
 * The base of every error that crosses a module boundary: a stable `code` to branch on (the
 * message is for people), an optional `cause` and, for "try again later" failures, an optional
 * `retryAfterSeconds`. The HTTP answer to each code is the gateway's business, not the thrower's.
 */
export class AnnexP2PError extends Error {
  readonly retryAfterSeconds?: number;

  constructor(
    readonly code: AnnexP2PErrorCode,
    message: string,
    options: AnnexP2PErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AnnexP2PError';
    if (options.retryAfterSeconds !== undefined) {
      this.retryAfterSeconds = options.retryAfterSeconds;
    }
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/** A malformed or unknown server line, an over-long line or a truncated stream. */
export class ProtocolError extends AnnexP2PError {
  declare readonly code: 'P2P_PROTOCOL';

  constructor(message: string) {
    super('P2P_PROTOCOL', message);
    this.name = 'ProtocolError';
  }
}

/** A rejected HTTP parameter value; `message` is meant for the HTTP client (400 body). */
export class InvalidParameterError extends AnnexP2PError {
  declare readonly code: 'BAD_PARAM';

  constructor(
    readonly param: string,
    message: string,
  ) {
    super('BAD_PARAM', message);
    this.name = 'InvalidParameterError';
  }
}
