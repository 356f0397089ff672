import { describe, expect, it } from 'vitest';
import { type Dispatcher, type HeldLock } from '@annex-p2phttp/dispatch';
import { MemoryLockStore } from '@annex-p2phttp/locks';
import { type SessionTarget } from '@annex-p2phttp/p2p';
import { LockService } from '../src/lock.service';

const target: SessionTarget = {
  repoPath: '/repo',
  serverUuid: 'server-uuid',
  clientUuid: 'client-uuid',
  bypass: [],
  version: 4,
  mode: 'full',
};

class FakeLock implements HeldLock {
  released = 0;
  private readonly lost: Array<() => void> = [];
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

function setup(options: { lockedFiles?: number; ttlMs?: number; refuse?: boolean } = {}) {
  const held: FakeLock[] = [];
  const dispatcher = {
    lockContent: () => {
      if (options.refuse) {
        return Promise.resolve(null);
      }
      const lock = new FakeLock();
      held.push(lock);
      return Promise.resolve(lock);
    },
  } as unknown as Dispatcher;
  const store = new MemoryLockStore();
  const service = new LockService(store, dispatcher, {
    lockedFiles: options.lockedFiles ?? 10,
    ttlMs: options.ttlMs ?? 60_000,
  });
  return { service, store, held };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('LockService', () => {
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

  it('releases every lock on close and takes no new ones', async () => {
    const { service, held } = setup();
    await service.lock(target, 'A');
    await service.lock(target, 'B');
    await service.close();
    expect(held.map((lock) => lock.released)).toEqual([1, 1]);
    expect(await service.lock(target, 'C')).toBeNull();
  });
});
