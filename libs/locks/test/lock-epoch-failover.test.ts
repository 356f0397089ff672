/**
 * The lock epoch across a Redis Sentinel failover with a real replication gap: a record written
 * while the replica could not follow (stopped with SIGSTOP, its link dropped) is lost when the primary dies and
 * the replica is promoted, although the epoch key itself survived. The epoch must change all the
 * same, since that is what tells the keepers of a lock that a missing record was lost rather than
 * released (they then write it again).
 */
import type Redis from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  closeRedis,
  openRedis,
  RedisLockStore,
  type ClusterLockRecord,
} from '@annex-p2phttp/locks';
import { SentinelSet } from '../../../test/support/sentinel';

let set: SentinelSet;
const connections: Redis[] = [];

beforeAll(async () => {
  set = await SentinelSet.start();
}, 60_000);

afterAll(async () => {
  await Promise.all(connections.map((c) => closeRedis(c)));
  await set?.close();
});

function record(lockid: string): ClusterLockRecord {
  return {
    lockid,
    repository: 'repo-uuid',
    key: 'SHA256E-s1--a',
    holder: 'holder-a',
    lockedAt: 0,
    expiresAt: Date.now() + 600_000,
  };
}

describe('the lock epoch behind Sentinel', () => {
  it('changes when a failover lost records in the replication gap', async () => {
    const redis = openRedis(set.url, 'command', 'epoch-test');
    connections.push(redis);
    const store = new RedisLockStore(redis, 'epoch-test:');
    const before = await set.until('the first epoch', () => store.epoch());
    expect(await store.create(record('replicated'), 10)).toBe(true);
    await set.replicasInSync(1);
    // Let the replica see the record, then stop it so that the next write stays on the primary.
    const primary = await set.primary();
    const replica = set.servers.find((s) => s !== primary)!;
    await set.until('the record replicated', async () =>
      (await replica.command('EXISTS', 'epoch-test:lock:replicated')).startsWith(':1')
        ? true
        : undefined,
    );
    // A stopped replica cannot reconnect; once the primary dropped its link, nothing written
    // reaches it any more.
    process.kill(replica.pid!, 'SIGSTOP');
    try {
      await primary.command('CLIENT', 'KILL', 'TYPE', 'replica');
      expect(await store.create(record('in-the-gap'), 10)).toBe(true);
      expect(await store.get('in-the-gap')).toBeDefined();
      await primary.stop('SIGKILL');
    } finally {
      process.kill(replica.pid!, 'SIGCONT');
    }
    await set.failedOverFrom(primary.port);
    const after = await set.until('the epoch from the new primary', () => store.epoch());
    // The gap is real: the record written last is gone, the one before it is there.
    expect(await store.get('in-the-gap')).toBeUndefined();
    expect(await store.get('replicated')).toBeDefined();
    expect(after).not.toBe(before);
  }, 60_000);
});
