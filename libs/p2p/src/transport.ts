/**
 * A byte transport to one P2P peer: what a connector hands to a P2PConnection. For a local
 * repository it is the stdio of `git-annex-shell p2pstdio`; an ssh connector gives the same shape.
 */
import { type Readable, type Writable } from 'node:stream';

export interface Transport {
  /** Bytes from the peer. */
  readonly input: Readable;
  /** Bytes to the peer. */
  readonly output: Writable;
  /** The peer's diagnostics (stderr), drained by the connection. */
  readonly diagnostics: Readable | null;
  /** Ends the transport now (kills the process). Idempotent. */
  destroy(): void;
  /**
   * Ends the peer's input after the bytes written so far reached it, so that the peer sees the
   * end of its input rather than losing what was still queued; a peer that does not exit by
   * itself is ended as by `destroy` after a grace period. Without it, `destroy` is used.
   */
  end?(): void;
  /** Resolves once the peer is gone (process exited), whatever the reason. */
  readonly exited: Promise<void>;
  /** A short description for logs and errors (never contains secrets). */
  readonly description: string;
}
