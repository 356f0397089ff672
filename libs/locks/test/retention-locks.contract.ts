/**
 * The RetentionLocks contract (DESIGN.md "Locks"), run against each way locks are held: the
 * embedded server's LocalRetentionLocks, and the cluster pair (a gateway's ClusterRetentionLocks,
 * a lock-service's ClusterLockHolder, Redis between them). Both over a real repository and
 * git-annex-shell sessions; whether the repository itself holds a lock is asked of a separate
 * git-annex-shell session (REMOVE-BEFORE dies with "content is locked" while a lock is held).
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { type ContentLocker, type RetentionLocks } from '@annex-p2phttp/locks';
import { type RepositoryTarget } from '@annex-p2phttp/protocol';
import { lockedInRepository, type ServedRepo } from '../../../test/support/repos';

export interface RetentionLocksOptions {
  /** `--lockedfiles`. */
  readonly lockedFiles: number;
  /** Lock expiry after locking or after the last heartbeat. */
  readonly ttlMs: number;
}

export interface RetentionLocksFixture {
  readonly locks: RetentionLocks;
  /** Ends what the fixture started (after the test closed `locks` or not). */
  close(): Promise<void>;
}

export interface RetentionLocksAdapter {
  /** The repository served; each case uses annexed files of its own. */
  repo(): ServedRepo;
  /** Fresh locks over that repository. */
  open(options: RetentionLocksOptions): Promise<RetentionLocksFixture>;
}

/** Files the served repository needs: the cases take them in turn. */
export const CONTRACT_FILES = 24;

/**
 * The adapters' repository-side locks, from `locker`, take RELEASE_MS to release (a repository
 * slow to answer UNLOCKCONTENT): an unlock that answers before the repository let go shows.
 */
export const RELEASE_MS = 300;

export function slowToRelease(locker: ContentLocker): ContentLocker {
  return {
    lockContent: async (target, key) => {
      const held = await locker.lockContent(target, key);
      if (held === null) {
        return null;
      }
      return {
        release: async () => {
          await delay(RELEASE_MS);
          await held.release();
        },
        abandon: () => held.abandon(),
        onLost: (listener) => held.onLost(listener),
      };
    },
  };
}

const ABSENT = `SHA256E-s3--${'0'.repeat(64)}.bin`;

export function retentionLocksContract(name: string, adapter: RetentionLocksAdapter): void {
  describe(`${name} (RetentionLocks contract)`, { timeout: 30_000 }, () => {
    let next = 0;
    /** An annexed key no earlier case used (a closed holder may leave it locked a while). */
    const freshKey = (): string => {
      const keys = [...adapter.repo().keys.values()].sort();
      const key = keys[next++];
      if (key === undefined) {
        throw new Error(`more than ${keys.length} keys used: raise CONTRACT_FILES`);
      }
      return key;
    };
    const target = (): RepositoryTarget => ({
      repoPath: adapter.repo().dir,
      serverUuid: adapter.repo().uuid,
      clientUuid: randomUUID(),
      bypass: [],
      version: 4,
      mode: 'full',
    });
    const uuid = () => adapter.repo().uuid;

    async function withLocks(
      options: Partial<RetentionLocksOptions>,
      run: (locks: RetentionLocks) => Promise<void>,
    ): Promise<void> {
      const fixture = await adapter.open({ lockedFiles: 100, ttlMs: 60_000, ...options });
      try {
        await run(fixture.locks);
      } finally {
        await fixture.close();
      }
    }

    it('locks in the repository and records the lock', async () => {
      const key = freshKey();
      await withLocks({}, async (locks) => {
        expect(await locks.isLocked(uuid(), key)).toBe(false);
        const lockid = await locks.lock(target(), key);
        expect(lockid).toMatch(/^[0-9a-f-]{36}$/);
        expect(await locks.isLocked(uuid(), key)).toBe(true);
        expect(await locks.isLocked(randomUUID(), key)).toBe(false);
        expect(await lockedInRepository(adapter.repo(), key)).toBe(true);
        await locks.unlock(lockid ?? '');
      });
    });

    it('refuses content the repository does not have, and keeps no record', async () => {
      await withLocks({}, async (locks) => {
        expect(await locks.lock(target(), ABSENT)).toBeNull();
        expect(await locks.count()).toBe(0);
        expect(await locks.isLocked(uuid(), ABSENT)).toBe(false);
      });
    });

    it('unlocks at once, in the records and in the repository', async () => {
      const key = freshKey();
      await withLocks({}, async (locks) => {
        const lockid = (await locks.lock(target(), key)) ?? '';
        await locks.unlock(lockid);
        // Once unlock answered, the repository removes the content: a client's remove right
        // after its unlock is not refused.
        expect(await lockedInRepository(adapter.repo(), key)).toBe(false);
        expect(await locks.isLocked(uuid(), key)).toBe(false);
        expect(await locks.count()).toBe(0);
        expect(await locks.keep(lockid)).toBeNull();
        await locks.unlock(lockid); // unknown now: a no-op
      });
    });

    it('keeps a kept lock past its ttl, and lets it expire a ttl after keeping ends', async () => {
      const key = freshKey();
      await withLocks({ ttlMs: 2000 }, async (locks) => {
        const lockid = (await locks.lock(target(), key)) ?? '';
        expect(await locks.keep(randomUUID())).toBeNull();
        const keeper = await locks.keep(lockid);
        expect(keeper).not.toBeNull();
        await delay(3000);
        expect(await locks.isLocked(uuid(), key)).toBe(true);
        expect(await lockedInRepository(adapter.repo(), key)).toBe(true);
        await keeper?.end();
        const ended = Date.now();
        await delay(1000);
        expect(await locks.isLocked(uuid(), key)).toBe(true);
        await until(
          'the lock expired',
          async () => ((await locks.isLocked(uuid(), key)) ? undefined : true),
          8000,
        );
        expect(Date.now() - ended).toBeGreaterThanOrEqual(1500);
        await until('the repository unlocked', async () =>
          (await lockedInRepository(adapter.repo(), key)) ? undefined : true,
        );
        expect(await locks.keep(lockid)).toBeNull();
      });
    });

    it('counts live locks', async () => {
      const [a, b] = [freshKey(), freshKey()];
      await withLocks({}, async (locks) => {
        const first = (await locks.lock(target(), a)) ?? '';
        const second = (await locks.lock(target(), b)) ?? '';
        expect(await locks.count()).toBe(2);
        await locks.unlock(first);
        expect(await locks.count()).toBe(1);
        await locks.unlock(second);
        expect(await locks.count()).toBe(0);
      });
    });

    it('refuses past --lockedfiles, and takes locks again once one is unlocked', async () => {
      const [a, b, c] = [freshKey(), freshKey(), freshKey()];
      await withLocks({ lockedFiles: 2 }, async (locks) => {
        const first = (await locks.lock(target(), a)) ?? '';
        expect(await locks.lock(target(), b)).not.toBeNull();
        expect(await locks.lock(target(), c)).toBeNull();
        expect(await locks.count()).toBe(2);
        expect(await lockedInRepository(adapter.repo(), c)).toBe(false);
        await locks.unlock(first);
        expect(await locks.lock(target(), c)).not.toBeNull();
      });
    });

    it('takes no lock once closed, and leaves those held locked in the repository', async () => {
      const [held, later] = [freshKey(), freshKey()];
      await withLocks({}, async (locks) => {
        expect(await locks.lock(target(), held)).not.toBeNull();
        await locks.close();
        expect(await locks.lock(target(), later)).toBeNull();
        expect(await lockedInRepository(adapter.repo(), later)).toBe(false);
        // Closing is no unlock: the lock outlives whoever held it (its retention file).
        expect(await lockedInRepository(adapter.repo(), held)).toBe(true);
      });
    });
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(
  what: string,
  probe: () => Promise<true | undefined>,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe()) {
      return;
    }
    await delay(50);
  }
  throw new Error(`timed out waiting: ${what}`);
}
