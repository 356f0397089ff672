import { describe, expect, it } from 'vitest';
import { MemoryLockStore, type LockRecord } from '@annex-p2phttp/locks';

function record(lockid: string, key = 'SHA256E-s1--a', expiresAt = 1000): LockRecord {
  return { lockid, repository: 'repo-uuid', key, holder: 'me', lockedAt: 0, expiresAt };
}

describe('MemoryLockStore', () => {
  it('records, finds and deletes locks', async () => {
    const store = new MemoryLockStore();
    expect(await store.create(record('a'), 10)).toBe(true);
    expect(await store.get('a')).toMatchObject({ lockid: 'a', key: 'SHA256E-s1--a' });
    expect(await store.isLocked('repo-uuid', 'SHA256E-s1--a')).toBe(true);
    expect(await store.isLocked('other', 'SHA256E-s1--a')).toBe(false);
    expect((await store.delete('a'))?.lockid).toBe('a');
    expect(await store.delete('a')).toBeUndefined();
    expect(await store.isLocked('repo-uuid', 'SHA256E-s1--a')).toBe(false);
  });

  it('bounds live locks and refuses duplicate ids', async () => {
    const store = new MemoryLockStore();
    expect(await store.create(record('a'), 2)).toBe(true);
    expect(await store.create(record('a'), 2)).toBe(false);
    expect(await store.create(record('b', 'k2'), 2)).toBe(true);
    expect(await store.create(record('c', 'k3'), 2)).toBe(false);
    expect(await store.count()).toBe(2);
    await store.delete('a');
    expect(await store.create(record('c', 'k3'), 2)).toBe(true);
  });

  it('keeps a key covered while any of its locks lives', async () => {
    const store = new MemoryLockStore();
    await store.create(record('a'), 10);
    await store.create(record('b'), 10);
    await store.delete('a');
    expect(await store.isLocked('repo-uuid', 'SHA256E-s1--a')).toBe(true);
    await store.delete('b');
    expect(await store.isLocked('repo-uuid', 'SHA256E-s1--a')).toBe(false);
  });

  it('extends and lists expired locks', async () => {
    const store = new MemoryLockStore();
    await store.create(record('a', 'k1', 100), 10);
    await store.create(record('b', 'k2', 200), 10);
    expect((await store.expired(150)).map((r) => r.lockid)).toEqual(['a']);
    expect(await store.extend('a', 300)).toBe(true);
    expect(await store.expired(250)).toEqual([expect.objectContaining({ lockid: 'b' })]);
    expect(await store.extend('zzz', 300)).toBe(false);
  });
});
