/**
 * Errors of the P2P layer. Each carries a stable `code` so callers branch on the code, not on the
 * message text.
 */
export type P2PErrorCode =
  | 'P2P_CONNECTION_CLOSED'
  | 'P2P_SPAWN_FAILED'
  | 'P2P_HANDSHAKE_FAILED'
  | 'P2P_UNEXPECTED_REPLY'
  | 'P2P_REMOTE_ERROR'
  | 'P2P_BUSY'
  | 'P2P_POOL_CLOSED'
  | 'P2P_ABORTED';

export class P2PError extends Error {
  constructor(
    readonly code: P2PErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'P2PError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/** The peer sent `ERROR msg`: the session is still usable, the text is the reason. */
export class RemoteError extends P2PError {
  constructor(readonly remoteMessage: string) {
    super('P2P_REMOTE_ERROR', remoteMessage || 'git-annex-shell reported an error');
    this.name = 'RemoteError';
  }
}

/** The connection ended (process exit, EOF, kill); `stderr` holds the last words of the peer. */
export class ConnectionClosedError extends P2PError {
  constructor(
    message: string,
    readonly stderr: string = '',
  ) {
    super('P2P_CONNECTION_CLOSED', stderr ? `${message}: ${stderr}` : message);
    this.name = 'ConnectionClosedError';
  }
}

export class AbortError extends P2PError {
  constructor(message = 'operation aborted') {
    super('P2P_ABORTED', message);
    this.name = 'AbortError';
  }
}
