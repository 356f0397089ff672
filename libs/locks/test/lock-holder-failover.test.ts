/**
 * A lock-service's held lock across a Sentinel failover that left the new primary behind: after
 * SENTINEL FAILOVER the old primary stays a writable master until the sentinels demote it, and
 * the gateway's heartbeats and the lock-service's reads keep going to it, while the promoted
 * replica's copy of the record keeps the expiry it had at the switch. When the lock-service then
 * reaches the new primary, that record may look expired although the keeplocked client renewed
 * it all along: the lock must hold, in Redis and in the repository.
 *
 * When a record that names the lock-service is written again after it let the lock go (a
 * gateway's keeplocked finds its record gone after a failover and records it again), the
 * lock-service takes the lock in the repository again.
 *
 * And a gateway's keeplocked writes a record again only when it was lost (its last heartbeat
 * went to another primary, or Redis lost its data), not when it was deleted since (an unlock
 * through another gateway) under the epoch of that heartbeat, however many failovers came before.
 *
 * The two primaries are played by one private redis-server (real records, real epoch, a real
 * repository and git-annex-shell sessions): what the promoted replica had is written back in
 * one transaction that also changes the epoch (as the new primary's replication id does).
 */
import { randomUUID } from 'node:crypto';
import type Redis from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OperationExecutor, RepositoryRegistry } from '@annex-p2phttp/ops';
import {
  closeRedis,
  ClusterLockHolder,
  ClusterRetentionLocks,
  openRedis,
  RedisLockStore,
  RESERVED,
  whenReady,
} from '@annex-p2phttp/locks';
import { LocalShellConnector, SessionPool } from '@annex-p2phttp/p2p';
import { PrivateRedis } from '../../../test/support/redis';
import {
  lockedInRepository,
  makeServedRepo,
  manyFiles,
  Sandbox,
  type ServedRepo,
} from '../../../test/support/repos';

const TTL_MS = 60_000;

let sandbox: Sandbox | undefined;
let repo: ServedRepo;
let server: PrivateRedis | undefined;

beforeAll(async () => {
  server = await PrivateRedis.start();
  sandbox = await Sandbox.create('lock-holder-failover');
  repo = await makeServedRepo(sandbox, sandbox.path('repo'), manyFiles('f', 2, 64));
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await sandbox?.remove();
});

interface Fixture {
  readonly redis: Redis;
  readonly store: RedisLockStore;
  readonly holder: ClusterLockHolder;
  close(): Promise<void>;
}

async function open(): Promise<Fixture> {
  const redis = openRedis(server!.url, 'command');
  await whenReady(redis);
  const store = new RedisLockStore(redis, `failover-${randomUUID().slice(0, 8)}:`);
  const executor = new OperationExecutor(
    new SessionPool({ connector: new LocalShellConnector({}), maxActive: 1, maxIdle: 0 }),
  );
  const registry = new RepositoryRegistry({
    repos: [repo.dir],
    directories: [],
    log: () => undefined,
  });
  await registry.init();
  const holder = new ClusterLockHolder({
    store,
    locker: executor,
    registry,
    holder: `holder-${randomUUID().slice(0, 8)}`,
    sweepIntervalMs: 100,
    log: () => undefined,
  });
  await holder.start();
  return {
    redis,
    store,
    holder,
    close: async () => {
      await holder.close();
      await executor.close(0);
      registry.close();
      await closeRedis(redis);
    },
  };
}

/** A lock as a gateway's lockcontent makes it: reserved, then taken and claimed by the holder. */
async function lock(fixture: Fixture, key: string): Promise<string> {
  const lockid = randomUUID();
  const now = Date.now();
  const reserved = await fixture.store.create(
    { lockid, repository: repo.uuid, key, holder: RESERVED, lockedAt: now, expiresAt: now + 5000 },
    100,
  );
  expect(reserved).toBe(true);
  const reply = await fixture.holder.handle({
    lockid,
    serverUuid: repo.uuid,
    key,
    clientUuid: randomUUID(),
    bypass: [],
    version: 4,
    mode: 'full',
    ttlMs: TTL_MS,
  });
  expect(reply).toEqual({ locked: true });
  return lockid;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe('a held lock across a failover to a primary that is behind', () => {
  it('keeps the expiry its holder knew when the new primary has an older one', async () => {
    const fixture = await open();
    try {
      const key = [...repo.keys.values()].sort()[0]!;
      const lockid = await lock(fixture, key);
      const known = (await fixture.store.get(lockid))!.expiresAt;
      // Let a round of upkeep read the record (the holder's view of its expiry).
      await delay(300);
      expect(await lockedInRepository(repo, key)).toBe(true);

      // The new primary: the record as the replica had it, its expiry long past (the extends
      // since went to the old primary), and another epoch. One transaction, so that no round of
      // upkeep sees the old expiry under the old epoch (that would be a real expiry).
      const { keys } = fixture.store;
      const stale = Date.now() - 1000;
      await fixture.redis
        .multi()
        .hset(keys.record(lockid), 'expiresAt', String(stale))
        .zadd(keys.expiry, stale, lockid)
        .del(keys.epoch)
        .exec();

      // Several rounds of upkeep on the new primary.
      await delay(1000);
      const record = await fixture.store.get(lockid);
      expect(record?.expiresAt).toBe(known);
      expect(await fixture.store.isLocked(repo.uuid, key)).toBe(true);
      expect(fixture.holder.lockids()).toContain(lockid);
      expect(await lockedInRepository(repo, key)).toBe(true);
    } finally {
      await fixture.close();
    }
  }, 60_000);

  it('takes a lock again when its record is written again after the holder let it go', async () => {
    const fixture = await open();
    try {
      const key = [...repo.keys.values()].sort()[1]!;
      const lockid = await lock(fixture, key);
      const record = (await fixture.store.get(lockid))!;
      // The record vanishes under the same epoch: the holder lets the lock go.
      await fixture.store.delete(lockid);
      await until('the lock let go', async () =>
        (await lockedInRepository(repo, key)) ? undefined : true,
      );
      expect(fixture.holder.lockids()).not.toContain(lockid);

      // A gateway's keeplocked writes the record again, naming the holder it had.
      expect(await fixture.store.restore({ ...record, expiresAt: Date.now() + TTL_MS })).toBe(true);
      await until('the lock taken again', async () =>
        fixture.holder.lockids().includes(lockid) && (await lockedInRepository(repo, key))
          ? true
          : undefined,
      );
      expect(await fixture.store.isLocked(repo.uuid, key)).toBe(true);
    } finally {
      await fixture.close();
    }
  }, 60_000);

  it('leaves deleted a record unlocked elsewhere, in a keeplocked gateway that outlived a failover', async () => {
    const redis = openRedis(server!.url, 'command');
    await whenReady(redis);
    const prefix = `keeper-${randomUUID().slice(0, 8)}:`;
    const store = new RedisLockStore(redis, prefix);
    const gateway = new ClusterRetentionLocks({
      redisUrl: server!.url,
      prefix,
      lockedFiles: 10,
      ttlMs: TTL_MS,
      heartbeatMs: 100,
    });
    try {
      await gateway.ready();
      const lockid = randomUUID();
      const now = Date.now();
      const key = 'SHA256E-s1--a';
      expect(
        await store.create(
          {
            lockid,
            repository: repo.uuid,
            key,
            holder: 'svc',
            lockedAt: now,
            expiresAt: now + TTL_MS,
          },
          10,
        ),
      ).toBe(true);
      const keeper = await gateway.keep(lockid);
      expect(keeper).not.toBeNull();
      // A failover that kept the record: another epoch, the heartbeats go on.
      await redis.del(store.keys.epoch);
      await delay(500);
      expect(await store.get(lockid)).toBeDefined();
      // Unlocked through another gateway under this epoch: the record stays deleted.
      await store.delete(lockid);
      await delay(500);
      keeper?.stop();
      expect(await store.get(lockid)).toBeUndefined();
      expect(await store.isLocked(repo.uuid, key)).toBe(false);
    } finally {
      await gateway.close();
      await closeRedis(redis);
    }
  }, 30_000);
});

async function until(what: string, probe: () => Promise<true | undefined>): Promise<void> {
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    if (await probe()) {
      return;
    }
    await delay(50);
  }
  throw new Error(`timed out waiting: ${what}`);
}
