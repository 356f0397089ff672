/**
 * What the embedded server remembers of the retention locks it holds, so that a restarted server
 * (after SIGTERM or a crash) takes them over: one small file per lock in the repository it was
 * taken in, `<git dir>/annex/p2phttp-locks/<lockid>.json`, written when the lock is taken and when
 * its expiry moves, and removed when it ends. The repository-side lock itself outlives the server
 * through git-annex's retention file (DESIGN.md "Locks"); this lets the next server unlock it
 * early (`{"unlock":true}`), keep it (keeplocked) and let it go when it expires.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { fromWireText, wireText } from '@annex-p2phttp/protocol';

export interface JournaledLock {
  readonly lockid: string;
  /** The directory the lock was taken in (what git-annex-shell was given). */
  readonly repoPath: string;
  readonly serverUuid: string;
  /** The key (a byte string). */
  readonly key: string;
  readonly clientUuid: string;
  readonly bypass: readonly string[];
  readonly version: number;
  readonly mode: 'full' | 'readonly' | 'appendonly';
  readonly lockedAt: number;
  /** Milliseconds since the epoch. */
  readonly expiresAt: number;
}

/** The folder below a repository's git directory that holds the journal. */
export const LOCK_JOURNAL_DIR = path.join('annex', 'p2phttp-locks');

const LOCKID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const MODES = new Set(['full', 'readonly', 'appendonly']);

/** The text of a journal file. */
export function formatJournaledLock(lock: JournaledLock): string {
  return `${JSON.stringify({ ...lock, key: wireText(lock.key) })}\n`;
}

/** A journal file's lock, or undefined when the text is not one (a torn or foreign file). */
export function parseJournaledLock(text: string): JournaledLock | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) {
    return undefined;
  }
  const v = value as Record<string, unknown>;
  const strings = ['lockid', 'repoPath', 'serverUuid', 'key', 'clientUuid'] as const;
  if (!strings.every((name) => typeof v[name] === 'string' && v[name] !== '')) {
    return undefined;
  }
  const numbers = ['version', 'lockedAt', 'expiresAt'] as const;
  if (!numbers.every((name) => Number.isSafeInteger(v[name]))) {
    return undefined;
  }
  if (
    !LOCKID.test(v.lockid as string) ||
    !MODES.has(v.mode as string) ||
    !Array.isArray(v.bypass) ||
    !v.bypass.every((u) => typeof u === 'string')
  ) {
    return undefined;
  }
  let key: string;
  try {
    key = fromWireText(v.key as string);
  } catch {
    return undefined;
  }
  return {
    lockid: v.lockid as string,
    repoPath: v.repoPath as string,
    serverUuid: v.serverUuid as string,
    key,
    clientUuid: v.clientUuid as string,
    bypass: v.bypass,
    version: v.version as number,
    mode: v.mode as JournaledLock['mode'],
    lockedAt: v.lockedAt as number,
    expiresAt: v.expiresAt as number,
  };
}

export class LockJournal {
  /** `gitDir`: a repository's git directory, from the directory it is served from. */
  constructor(private readonly gitDir: (repoPath: string) => Promise<string>) {}

  /** Records (or updates) a lock; atomic, so a crash leaves the old or the new text. */
  async write(lock: JournaledLock): Promise<void> {
    const dir = await this.dir(lock.repoPath);
    await mkdir(dir, { recursive: true });
    const temp = path.join(dir, `.${lock.lockid}.${randomUUID()}.tmp`);
    try {
      await writeFile(temp, formatJournaledLock(lock), { mode: 0o600 });
      await rename(temp, path.join(dir, `${lock.lockid}.json`));
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
  }

  async remove(repoPath: string, lockid: string): Promise<void> {
    await rm(path.join(await this.dir(repoPath), `${lockid}.json`), { force: true });
  }

  /**
   * The locks recorded in the repository served from `repoPath`. Files that are not locks
   * (torn writes, leftovers) are removed.
   */
  async read(repoPath: string): Promise<JournaledLock[]> {
    const dir = await this.dir(repoPath);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return [];
    }
    const locks: JournaledLock[] = [];
    for (const name of names) {
      const file = path.join(dir, name);
      const lock = name.endsWith('.json')
        ? parseJournaledLock(await readFile(file, 'utf8').catch(() => ''))
        : undefined;
      if (lock && `${lock.lockid}.json` === name) {
        // Where the repository is served from now (it may have moved).
        locks.push({ ...lock, repoPath });
      } else {
        await rm(file, { force: true, recursive: true });
      }
    }
    return locks;
  }

  private async dir(repoPath: string): Promise<string> {
    return path.join(await this.gitDir(repoPath), LOCK_JOURNAL_DIR);
  }
}
