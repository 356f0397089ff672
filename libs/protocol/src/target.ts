/**
 * What a request is aimed at, declared once and narrowed by extension rather than re-shaped on
 * every hop: the P2P session parameters a client asks for, the uuid it asks them of (what crosses
 * between processes, where the repository's path means nothing), and the repository on the
 * machine that serves that uuid (what opens a git-annex-shell session).
 */

/** How git-annex-shell serves the session (PROTOCOL.md §1.6): fixed per request by authorization. */
export type ServerMode = 'full' | 'readonly' | 'appendonly';

/** The P2P session parameters of a request: sessions are interchangeable only when these match. */
export interface SessionParams {
  /** The HTTP client's uuid, recorded by git-annex as the peer. */
  readonly clientUuid: string;
  /** In request order: the order is part of the pool key. */
  readonly bypass: readonly string[];
  /** The P2P protocol version the session speaks. */
  readonly version: number;
  readonly mode: ServerMode;
}

/** A served uuid with the session parameters: what a gateway sends to whoever serves the uuid. */
export interface ServedTarget extends SessionParams {
  /** The uuid to serve: the repository's own, or one it proxies (a remote or a cluster). */
  readonly serverUuid: string;
  /**
   * Who asks: `user:<name>`, or `address:<ip>` for an anonymous client. Session slots are shared
   * fairly between requesters. Not part of the pool key.
   */
  readonly requester?: string;
}

/** A served uuid in a repository of this machine: what a session is opened on. */
export interface RepositoryTarget extends ServedTarget {
  /** Directory of the repository that serves `serverUuid`. */
  readonly repoPath: string;
  /**
   * The served uuid is the repository's own (not a proxied remote or a cluster), so its object
   * files may be read directly. Not part of the pool key.
   */
  readonly direct?: boolean;
  /**
   * The served uuid is a special remote that the repository proxies: git-annex-shell answers
   * neither GETTIMESTAMP nor REMOVE-BEFORE for it (its session dies), so the server answers the
   * one and judges the other. Not part of the pool key.
   */
  readonly specialRemote?: boolean;
}
