/**
 * The LockStore contract (lock-store.ts), run against each store: MemoryLockStore (embedded) and
 * RedisLockStore (cluster mode). `open` gives an empty store for each case.
 */
import { describe, expect, it } from 'vitest';
import { type LockRecord, type LockStore } from '@annex-p2phttp/locks';

export function record(lockid: string, fields: Partial<LockRecord> = {}): LockRecord {
  return {
    lockid,
    repository: 'repo-uuid',
    key: 'SHA256E-s1--a',
    holder: 'holder-a',
    lockedAt: 0,
    expiresAt: 1000,
    ...fields,
  };
}

export function lockStoreContract(name: string, open: () => Promise<LockStore>): void {
  describe(`${name} (LockStore contract)`, () => {
    it('records, finds and deletes locks', async () => {
      const store = await open();
      expect(await store.create(record('a'), 10)).toBe(true);
      expect(await store.get('a')).toEqual(record('a'));
      expect(await store.isLocked('repo-uuid', 'SHA256E-s1--a')).toBe(true);
      expect(await store.isLocked('other', 'SHA256E-s1--a')).toBe(false);
      expect(await store.isLocked('repo-uuid', 'SHA256E-s1--b')).toBe(false);
      expect((await store.delete('a'))?.lockid).toBe('a');
      expect(await store.delete('a')).toBeUndefined();
      expect(await store.get('a')).toBeUndefined();
      expect(await store.isLocked('repo-uuid', 'SHA256E-s1--a')).toBe(false);
    });

    it('bounds live locks and refuses duplicate ids', async () => {
      const store = await open();
      expect(await store.create(record('a'), 2)).toBe(true);
      expect(await store.create(record('a'), 2)).toBe(false);
      expect(await store.create(record('b', { key: 'k2' }), 2)).toBe(true);
      expect(await store.create(record('c', { key: 'k3' }), 2)).toBe(false);
      expect(await store.count()).toBe(2);
      expect(await store.get('c')).toBeUndefined();
      await store.delete('a');
      expect(await store.count()).toBe(1);
      expect(await store.create(record('c', { key: 'k3' }), 2)).toBe(true);
    });

    it('keeps a key covered while any of its locks lives', async () => {
      const store = await open();
      await store.create(record('a'), 10);
      await store.create(record('b'), 10);
      await store.delete('a');
      expect(await store.isLocked('repo-uuid', 'SHA256E-s1--a')).toBe(true);
      await store.delete('b');
      expect(await store.isLocked('repo-uuid', 'SHA256E-s1--a')).toBe(false);
    });

    it('extends live locks and lists the expired ones', async () => {
      const store = await open();
      await store.create(record('a', { key: 'k1', expiresAt: 100 }), 10);
      await store.create(record('b', { key: 'k2', expiresAt: 200 }), 10);
      expect((await store.expired(150)).map((r) => r.lockid)).toEqual(['a']);
      expect((await store.expired(200)).map((r) => r.lockid).sort()).toEqual(['a', 'b']);
      expect(await store.extend('a', 300)).toBe(true);
      expect((await store.get('a'))?.expiresAt).toBe(300);
      expect((await store.expired(250)).map((r) => r.lockid)).toEqual(['b']);
      expect(await store.extend('zzz', 300)).toBe(false);
      expect(await store.get('zzz')).toBeUndefined();
    });

    it('keeps the bytes of a key that is not UTF-8', async () => {
      const store = await open();
      // WORM-- ff fe 80 and WORM-- ff fe 81: both would be the same text in UTF-8 (U+FFFD)
      const key = 'WORM--\udcff\udcfe\udc80';
      const sibling = 'WORM--\udcff\udcfe\udc81';
      expect(await store.create(record('bytes', { key }), 10)).toBe(true);
      expect((await store.get('bytes'))?.key).toBe(key);
      expect(await store.isLocked('repo-uuid', key)).toBe(true);
      expect(await store.isLocked('repo-uuid', sibling)).toBe(false);
      expect(await store.isLocked('repo-uuid', 'WORM--\ufffd\ufffd\ufffd')).toBe(false);
      expect((await store.delete('bytes'))?.key).toBe(key);
      expect(await store.isLocked('repo-uuid', key)).toBe(false);
    });
  });
}
