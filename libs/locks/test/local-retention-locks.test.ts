import { mkdtemp, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { type HeldLock } from '@annex-p2phttp/ops';
import {
  GIT_ANNEX_RETENTION_MS,
  LocalRetentionLocks,
  LockJournal,
  MemoryLockStore,
  type ContentLocker,
} from '@annex-p2phttp/locks';
import { type RepositoryTarget } from '@annex-p2phttp/protocol';

const target: RepositoryTarget = {
  repoPath: '/repo',
  serverUuid: 'server-uuid',
  clientUuid: 'client-uuid',
  bypass: [],
  version: 4,
  mode: 'full',
};

class FakeLock implements HeldLock {
  released = 0;
  abandoned = 0;
  private readonly lost: Array<() => void> = [];
  abandon(): void {
    this.abandoned += 1;
  }
  release(): Promise<void> {
    this.released += 1;
    return Promise.resolve();
  }
  onLost(listener: () => void): void {
    this.lost.push(listener);
  }
  lose(): void {
    for (const listener of this.lost) {
      listener();
    }
  }
}

function setup(
  options: {
    lockedFiles?: number;
    ttlMs?: number;
    refuse?: boolean;
    journal?: LockJournal;
    now?: () => number;
  } = {},
) {
  const held: FakeLock[] = [];
  const locker: ContentLocker = {
    lockContent: () => {
      if (options.refuse) {
        return Promise.resolve(null);
      }
      const lock = new FakeLock();
      held.push(lock);
      return Promise.resolve(lock);
    },
  };
  const store = new MemoryLockStore();
  const service = new LocalRetentionLocks(store, locker, {
    lockedFiles: options.lockedFiles ?? 10,
    ttlMs: options.ttlMs ?? 60_000,
    journal: options.journal,
    now: options.now,
  });
  return { service, store, held };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('LocalRetentionLocks', () => {
  it('records a lock and releases it on unlock', async () => {
    const { service, store, held } = setup();
    const lockid = await service.lock(target, 'KEY');
    expect(lockid).toMatch(/^[0-9a-f-]{36}$/);
    expect(await service.isLocked('server-uuid', 'KEY')).toBe(true);
    expect(await store.get(lockid ?? '')).toMatchObject({ key: 'KEY', repository: 'server-uuid' });
    await service.unlock(lockid ?? '');
    expect(held[0]?.released).toBe(1);
    expect(await service.isLocked('server-uuid', 'KEY')).toBe(false);
    expect(service.size).toBe(0);
  });

  it('expires a lock nobody keeps after the ttl', async () => {
    const { service, held } = setup({ ttlMs: 80 });
    await service.lock(target, 'KEY');
    await sleep(30);
    expect(held[0]?.released).toBe(0);
    await sleep(120);
    expect(held[0]?.released).toBe(1);
    expect(await service.isLocked('server-uuid', 'KEY')).toBe(false);
  });

  it('keeps a lock past the ttl while kept, and expires it a ttl after keeping ends', async () => {
    const { service, held } = setup({ ttlMs: 1200 });
    const lockid = (await service.lock(target, 'KEY')) ?? '';
    const keeper = await service.keep(lockid);
    expect(keeper).not.toBeNull();
    await sleep(1500);
    expect(held[0]?.released).toBe(0);
    await keeper?.end();
    await sleep(600);
    expect(held[0]?.released).toBe(0);
    expect(await service.isLocked('server-uuid', 'KEY')).toBe(true);
    await sleep(900);
    expect(held[0]?.released).toBe(1);
  });

  it('refuses past --lockedfiles and frees the slot when the repository refuses', async () => {
    const bounded = setup({ lockedFiles: 1 });
    expect(await bounded.service.lock(target, 'A')).not.toBeNull();
    expect(await bounded.service.lock(target, 'B')).toBeNull();
    expect(bounded.held).toHaveLength(1);

    const refusing = setup({ refuse: true, lockedFiles: 1 });
    expect(await refusing.service.lock(target, 'A')).toBeNull();
    expect(await refusing.store.count()).toBe(0);
  });

  it('forgets a lock whose session was lost and refuses to keep it', async () => {
    const { service, held } = setup();
    const lockid = (await service.lock(target, 'KEY')) ?? '';
    held[0]?.lose();
    await sleep(0);
    expect(await service.isLocked('server-uuid', 'KEY')).toBe(false);
    expect(await service.keep(lockid)).toBeNull();
    expect(await service.keep('no-such-lock')).toBeNull();
  });

  it('abandons every lock on close (their retention outlives it) and takes no new ones', async () => {
    const { service, held } = setup();
    await service.lock(target, 'A');
    await service.lock(target, 'B');
    await service.close();
    expect(held.map((lock) => [lock.released, lock.abandoned])).toEqual([
      [0, 1],
      [0, 1],
    ]);
    expect(await service.lock(target, 'C')).toBeNull();
  });

  it('takes a kept lock again before git-annex retention would run out, then frees the old one', async () => {
    let now = 1_000_000;
    const { service, held } = setup({ ttlMs: 120_000, now: () => now });
    const lockid = (await service.lock(target, 'KEY')) ?? '';
    const keeper = await service.keep(lockid);
    expect(held).toHaveLength(1);
    // Kept for nine and a half minutes: the next expiry is past the first retention file.
    now += GIT_ANNEX_RETENTION_MS - 30_000;
    await keeper?.end();
    expect(held).toHaveLength(2);
    expect(held.map((lock) => lock.released)).toEqual([1, 0]);
    await service.unlock(lockid);
    expect(held.map((lock) => lock.released)).toEqual([1, 1]);
  });

  it('records locks in the journal, and a new service takes them over', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'lock-journal-'));
    try {
      const journal = new LockJournal(() => Promise.resolve(dir));
      const first = setup({ journal });
      const kept = (await first.service.lock(target, 'KEPT')) ?? '';
      const ended = (await first.service.lock(target, 'ENDED')) ?? '';
      await first.service.unlock(ended);
      expect((await journal.read('/repo')).map((lock) => lock.lockid)).toEqual([kept]);
      await first.service.close();
      expect((await journal.read('/repo')).map((lock) => lock.key)).toEqual(['KEPT']);

      const second = setup({ journal });
      expect(await second.service.restore(['/repo', '/repo'])).toBe(1);
      expect(await second.service.isLocked('server-uuid', 'KEPT')).toBe(true);
      expect(await second.service.keep(kept)).not.toBeNull();
      await second.service.unlock(kept);
      expect(second.held.map((lock) => lock.released)).toEqual([1]);
      expect(await journal.read('/repo')).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('lets go at once of a journaled lock that expired while no service ran', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'lock-journal-'));
    try {
      const journal = new LockJournal(() => Promise.resolve(dir));
      let now = 1_000_000;
      const first = setup({ journal, ttlMs: 1000, now: () => now });
      await first.service.lock(target, 'OLD');
      await first.service.close();
      now += 5000;
      const second = setup({ journal, now: () => now });
      expect(await second.service.restore(['/repo'])).toBe(0);
      // Taken and unlocked at once: git-annex then ends the retention file too.
      expect(second.held.map((lock) => lock.released)).toEqual([1]);
      expect(await second.service.isLocked('server-uuid', 'OLD')).toBe(false);
      expect(await journal.read('/repo')).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
