/**
 * The pool key: connections are interchangeable only when every one of these matches
 * (PROTOCOL.md §4, plus the server mode of §1.6, which is fixed per process).
 */
import { type ServerMode } from './local-connector';

export interface SessionTarget {
  readonly repoPath: string;
  readonly serverUuid: string;
  readonly clientUuid: string;
  /** In request order: the order is part of the key. */
  readonly bypass: readonly string[];
  readonly version: number;
  readonly mode: ServerMode;
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
  /**
   * Who asks: `user:<name>`, or `address:<ip>` for an anonymous client. Session slots are shared
   * fairly between requesters (FairQueue). Not part of the pool key.
   */
  readonly requester?: string;
}

export function poolKey(target: SessionTarget): string {
  return JSON.stringify([
    target.repoPath,
    target.serverUuid,
    target.clientUuid,
    target.bypass,
    target.version,
    target.mode,
  ]);
}

/** The target a key was made from (keys carry everything needed to open a session). */
export function targetOfKey(key: string): SessionTarget {
  const [repoPath, serverUuid, clientUuid, bypass, version, mode] = JSON.parse(key) as [
    string,
    string,
    string,
    string[],
    number,
    ServerMode,
  ];
  return { repoPath, serverUuid, clientUuid, bypass, version, mode };
}
