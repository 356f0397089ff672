/**
 * The pool key: connections are interchangeable only when every one of these matches
 * (PROTOCOL.md §4, plus the server mode of §1.6, which is fixed per process).
 */
import { type RepositoryTarget, type ServerMode } from '@annex-p2phttp/protocol';

export function poolKey(target: RepositoryTarget): string {
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
export function targetOfKey(key: string): RepositoryTarget {
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
