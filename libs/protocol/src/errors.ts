// Error types of the protocol library (PROTOCOL.md §1.2 framing errors, §2.1/§3 parameter errors).

/** A malformed or unknown server line, an over-long line or a truncated stream. */
export class ProtocolError extends Error {
  readonly code = 'P2P_PROTOCOL';

  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/** A rejected HTTP parameter value; `message` is meant for the HTTP client (400 body). */
export class InvalidParameterError extends Error {
  readonly code = 'BAD_PARAM';

  constructor(
    readonly param: string,
    message: string,
  ) {
    super(message);
    this.name = 'InvalidParameterError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}
