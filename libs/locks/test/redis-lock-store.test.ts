import type Redis from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  closeRedis,
  openRedis,
  RedisLockStore,
  RESERVED,
  whenReady,
  type ClusterLockRecord,
} from '@annex-p2phttp/locks';
import { subscription } from '@annex-p2phttp/redis';
import { PrivateRedis } from '../../../test/support/redis';
import { lockStoreContract } from './lock-store.contract';

function record(lockid: string, fields: Partial<ClusterLockRecord> = {}): ClusterLockRecord {
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

describe('RedisLockStore', () => {
  let server: PrivateRedis;
  const connections: Redis[] = [];
  let prefix = 0;

  /** A store on a connection of its own, under this test's prefix. */
  async function store(): Promise<RedisLockStore> {
    const redis = openRedis(server.url, 'command');
    connections.push(redis);
    await whenReady(redis);
    return new RedisLockStore(redis, `test${prefix}:`);
  }

  beforeAll(async () => {
    server = await PrivateRedis.start();
  });
  afterAll(async () => {
    await server.stop();
  });
  beforeEach(() => {
    prefix += 1;
  });
  afterEach(async () => {
    await Promise.all(connections.splice(0).map(closeRedis));
  });

  lockStoreContract('RedisLockStore', store);

  it('stores a key that is not UTF-8 as its [base64url] form', async () => {
    const a = await store();
    const key = 'WORM--\udcff\udcfe\udc80';
    expect(await a.create(record('bytes', { key }), 10)).toBe(true);
    // which any client of Redis reads back unchanged
    const raw = connections[0]!;
    expect(await raw.hget(`test${prefix}:lock:bytes`, 'key')).toBe('[V09STS0t__6A]');
  });

  it('keeps records, with their session, under its prefix', async () => {
    const a = await store();
    const session = { clientUuid: 'c', bypass: ['b1'], version: 4, mode: 'full' as const };
    expect(await a.create(record('one', { session }), 10)).toBe(true);
    expect(await a.get('one')).toEqual(record('one', { session }));
    const raw = connections[0]!;
    expect(await raw.keys(`test${prefix}:*`)).toEqual(
      expect.arrayContaining([
        `test${prefix}:lock:one`,
        `test${prefix}:locks:expiry`,
        `test${prefix}:locks:cover`,
      ]),
    );
    expect((await a.delete('one'))?.lockid).toBe('one');
    expect(await raw.keys(`test${prefix}:*`)).toEqual([]);
  });

  it('bounds live locks across connections that create at once', async () => {
    const [a, b] = [await store(), await store()];
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        (i % 2 === 0 ? a : b).create(record(`l${i}`, { key: `k${i}` }), 7),
      ),
    );
    expect(results.filter(Boolean)).toHaveLength(7);
    expect(await a.count()).toBe(7);
    expect(await b.create(record('l0'), 100)).toBe(false); // duplicate or refused
    const created = results.flatMap((ok, i) => (ok ? [`l${i}`] : []));
    await b.delete(created[0]!);
    expect(await a.create(record('late', { key: 'late' }), 7)).toBe(true);
    expect(await a.create(record('later', { key: 'later' }), 7)).toBe(false);
  });

  it('deletes only what is still expired', async () => {
    const a = await store();
    await a.create(record('a', { key: 'k1', expiresAt: 100 }), 10);
    await a.create(record('b', { key: 'k2', expiresAt: 200 }), 10);
    expect(await a.extend('a', 300)).toBe(true);
    expect(await a.deleteIf('a', { expiredAt: 250 })).toBeUndefined();
    expect((await a.deleteIf('b', { expiredAt: 250 }))?.lockid).toBe('b');
    expect(await a.lockids()).toEqual(['a']);
  });

  it('sweeps expired records and tells their holders', async () => {
    const a = await store();
    const heard: string[] = [];
    const listener = await subscription(server.url, a.keys.unlockChannel, (lockid) =>
      heard.push(lockid),
    );
    connections.push(listener);
    await a.create(record('old', { key: 'k1', expiresAt: 100 }), 10);
    await a.create(record('live', { key: 'k2', expiresAt: 200 }), 10);
    expect((await a.sweepExpired(150)).map((r) => r.lockid)).toEqual(['old']);
    expect(await a.get('old')).toBeUndefined();
    expect(await a.lockids()).toEqual(['live']);
    expect(await a.sweepExpired(150)).toEqual([]);
    const deadline = Date.now() + 5000;
    while (heard.length === 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(heard).toEqual(['old']);
  });

  it('claims a reserved record once, for one holder', async () => {
    const a = await store();
    const session = { clientUuid: 'c', bypass: [], version: 3, mode: 'readonly' as const };
    await a.create(record('r', { holder: RESERVED, expiresAt: 50 }), 10);
    expect(await a.deleteIf('r', { holder: 'someone' })).toBeUndefined();
    const claims = await Promise.all([
      a.claimPending('r', 'svc-1', 10, 5000, session),
      a.claimPending('r', 'svc-2', 10, 5000, session),
    ]);
    expect(claims.filter(Boolean)).toHaveLength(1);
    const claimed = await a.get('r');
    expect(claimed).toMatchObject({ lockedAt: 10, expiresAt: 5000, session });
    expect(['svc-1', 'svc-2']).toContain(claimed?.holder);
    expect(await a.expired(100)).toEqual([]);
    expect(await a.claimPending('gone', 'svc-1', 1, 2, session)).toBe(false);
  });

  it('moves the records of dead holders to one live holder', async () => {
    const [a, b] = [await store(), await store()];
    await a.heartbeatHolder('alive', 60_000);
    await a.create(record('of-alive', { holder: 'alive' }), 10);
    await a.create(record('reserved', { holder: RESERVED }), 10);
    for (let i = 0; i < 6; i += 1) {
      await a.create(record(`of-dead-${i}`, { holder: 'dead', key: `k${i}` }), 10);
    }
    await a.create(record('elsewhere', { holder: 'dead', repository: 'other' }), 10);
    // Adopters are alive themselves (a lock-service heartbeats before it adopts).
    await a.heartbeatHolder('svc-a', 60_000);
    await a.heartbeatHolder('svc-b', 60_000);
    expect((await a.orphanedRepositories('svc-a')).sort()).toEqual(['other', 'repo-uuid']);
    const [first, second] = await Promise.all([
      a.adoptOrphans('svc-a', 100, ['repo-uuid']),
      b.adoptOrphans('svc-b', 100, ['repo-uuid']),
    ]);
    const adopted = [...first, ...second].sort();
    expect(adopted).toEqual([0, 1, 2, 3, 4, 5].map((i) => `of-dead-${i}`));
    expect((await a.get('of-alive'))?.holder).toBe('alive');
    expect((await a.get('reserved'))?.holder).toBe(RESERVED);
    expect((await a.get('elsewhere'))?.holder).toBe('dead');
    expect(await a.orphanedRepositories('svc-a')).toEqual(['other']);
    // What live adopters hold stays theirs; only the dead holder's last record moves.
    await a.heartbeatHolder('svc-c', 60_000);
    expect(await a.adoptOrphans('svc-c', 100)).toEqual(['elsewhere']);
    expect(await a.isHolderAlive('alive')).toBe(true);
    await a.dropHolder('alive');
    expect(await b.adoptOrphans('svc-b', 1)).toEqual(['of-alive']);
  });

  it('tells a Redis that lost its data by the epoch, and restores records past the bound', async () => {
    const a = await store();
    const before = await a.epoch();
    expect(await a.epoch()).toBe(before);
    await a.create(record('kept', { key: 'k1' }), 1);
    await server.restart();
    await whenReady(connections[0]!, 20_000);
    expect(await a.get('kept')).toBeUndefined();
    const after = await a.epoch();
    expect(after).not.toBe(before);
    await a.create(record('new', { key: 'k2' }), 1);
    expect(await a.restore(record('kept', { key: 'k1' }))).toBe(true);
    expect(await a.count()).toBe(2);
    expect(await a.isLocked('repo-uuid', 'k1')).toBe(true);
  });

  it('restores an existing record of the same holder with the later expiry', async () => {
    const a = await store();
    await a.create(record('behind', { key: 'k1', expiresAt: 1000 }), 10);
    await a.create(record('ahead', { key: 'k2', expiresAt: 9000 }), 10);
    await a.create(record('theirs', { key: 'k3', holder: 'holder-b', expiresAt: 1000 }), 10);
    // A new primary that missed extends: the expiry the holder knew wins, never an earlier one.
    expect(await a.restore(record('behind', { key: 'k1', expiresAt: 5000 }))).toBe(true);
    expect(await a.restore(record('ahead', { key: 'k2', expiresAt: 5000 }))).toBe(false);
    expect(await a.restore(record('theirs', { key: 'k3', expiresAt: 5000 }))).toBe(false);
    expect((await a.get('behind'))?.expiresAt).toBe(5000);
    expect((await a.get('ahead'))?.expiresAt).toBe(9000);
    expect(await a.get('theirs')).toMatchObject({ holder: 'holder-b', expiresAt: 1000 });
    expect((await a.expired(2000)).map((r) => r.lockid)).toEqual(['theirs']);
    expect(await a.count()).toBe(3);
    expect(await a.isLocked('repo-uuid', 'k1')).toBe(true);
    await a.delete('behind');
    expect(await a.isLocked('repo-uuid', 'k1')).toBe(false);
  });

  it('lists the records a holder holds', async () => {
    const a = await store();
    await a.create(record('one'), 10);
    await a.create(record('two', { key: 'k2' }), 10);
    await a.create(record('theirs', { key: 'k3', holder: 'holder-b' }), 10);
    await a.create(record('reserved', { key: 'k4', holder: RESERVED }), 10);
    expect((await a.heldBy('holder-a')).sort()).toEqual(['one', 'two']);
    expect(await a.heldBy('holder-b')).toEqual(['theirs']);
    expect(await a.heldBy('nobody')).toEqual([]);
  });

  it('fails at once while Redis is down and works again after it is back', async () => {
    const a = await store();
    await a.create(record('before'), 10);
    await server.stop('SIGKILL');
    try {
      const started = Date.now();
      await expect(a.count()).rejects.toThrow();
      await expect(a.isLocked('repo-uuid', 'SHA256E-s1--a')).rejects.toThrow();
      // Fails fast: far less than any reconnection or request timeout.
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await server.restart();
    }
    await whenReady(connections[0]!, 20_000);
    expect(await a.count()).toBe(0);
  });
});
