/**
 * Errors of the P2P layer. Each carries a stable `code` (declared with every other code in
 * @annex-p2phttp/protocol) so callers branch on the code, not on the message text.
 */
import {
  AnnexP2PError,
  type AnnexP2PErrorOptions,
  type P2PErrorCode,
} from '@annex-p2phttp/protocol';

export type { P2PErrorCode } from '@annex-p2phttp/protocol';

export class P2PError extends AnnexP2PError {
  declare readonly code: P2PErrorCode;

  constructor(code: P2PErrorCode, message: string, options?: AnnexP2PErrorOptions) {
    super(code, message, options);
    this.name = 'P2PError';
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
