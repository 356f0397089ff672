/**
 * Whether this process can write where git-annex must write: each served repository's annex
 * directory (objects, partial uploads, lock and retention files). A repository mounted from
 * elsewhere often belongs to another uid: reads work, and the first upload fails with
 * "permission denied" deep in git-annex. Found at start and reported by /readyz instead, with
 * what to do about it.
 */
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { join } from 'node:path';

export interface UnwritableDirectory {
  readonly path: string;
  /** The directory's owner, when it could be read. */
  readonly uid?: number;
  readonly gid?: number;
}

/** Where git-annex writes in the repository at `top` (its top directory, or itself when bare). */
async function annexDirectory(top: string): Promise<string> {
  for (const candidate of [join(top, '.git', 'annex'), join(top, '.git'), join(top, 'annex')]) {
    try {
      if ((await stat(candidate)).isDirectory()) {
        return candidate;
      }
    } catch {
      // not this layout
    }
  }
  return top;
}

/** The annex directories of `repositories` that this process cannot write to. */
export async function unwritableDirectories(
  repositories: readonly string[],
): Promise<UnwritableDirectory[]> {
  const found: UnwritableDirectory[] = [];
  for (const top of repositories) {
    const dir = await annexDirectory(top);
    try {
      await access(dir, constants.W_OK);
    } catch {
      try {
        const { uid, gid } = await stat(dir);
        found.push({ path: dir, uid, gid });
      } catch {
        found.push({ path: dir });
      }
    }
  }
  return found;
}

/** What to tell the operator about one directory this process cannot write. */
export function unwritableAdvice(
  dir: UnwritableDirectory,
  self: { uid: number; gid: number } = {
    uid: process.getuid?.() ?? -1,
    gid: process.getgid?.() ?? -1,
  },
): string {
  const owner = dir.uid === undefined ? 'another user' : `uid ${dir.uid}, gid ${dir.gid ?? '?'}`;
  const runAs = dir.uid === undefined ? 'its owner' : `${dir.uid}:${dir.gid ?? dir.uid}`;
  return (
    `cannot write to ${dir.path} (owned by ${owner}; this process runs as uid ${self.uid}): ` +
    `uploads and locks in that repository will fail. Run annex-p2phttp as the owner ` +
    `(docker run --user ${runAs} ..., or the pod's securityContext) or make it writable for ` +
    `uid ${self.uid} (chown -R ${self.uid}:${self.gid} on the repository).`
  );
}

/**
 * The served repositories' writability, checked at most once per `maxAgeMs` (a readiness probe
 * may ask every few seconds; a host may serve many repositories).
 */
export class WritableCheck {
  private last: { at: number; found: UnwritableDirectory[] } | undefined;
  private running: Promise<UnwritableDirectory[]> | undefined;

  constructor(
    private readonly repositories: () => readonly string[],
    private readonly maxAgeMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** The directories that were not writable at the latest check (checking if it is stale). */
  async unwritable(): Promise<UnwritableDirectory[]> {
    if (this.last !== undefined && this.now() - this.last.at < this.maxAgeMs) {
      return this.last.found;
    }
    this.running ??= unwritableDirectories(this.repositories()).then(
      (found) => {
        this.last = { at: this.now(), found };
        this.running = undefined;
        return found;
      },
      (error: unknown) => {
        this.running = undefined;
        throw error;
      },
    );
    return this.running;
  }

  /** The readiness check: null when every served repository is writable, else which are not. */
  async problem(): Promise<string | null> {
    const found = await this.unwritable();
    return found.length === 0
      ? null
      : `cannot write to ${found.map((dir) => dir.path).join(', ')} (see the log)`;
  }
}
