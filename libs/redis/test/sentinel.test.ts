/**
 * The connection factory against a real Sentinel set (one primary, one replica, three
 * sentinels): a command connection fails fast while the primary is gone, finds the promoted
 * replica by itself, and follows a second, forced failover in which the old primary is alive and
 * demoted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type Redis from 'ioredis';
import { SentinelSet } from '../../../test/support/sentinel';
import { closeRedis, openRedis, PrimaryWatch, primaryId } from '../src';

let set: SentinelSet;
const connections: Redis[] = [];

beforeAll(async () => {
  set = await SentinelSet.start();
}, 60_000);

afterAll(async () => {
  await Promise.all(connections.map((c) => closeRedis(c)));
  await set?.close();
});

/** The port of the server the connection reached. */
async function portOf(redis: Redis): Promise<number> {
  const [, port] = (await redis.call('CONFIG', 'GET', 'port')) as [string, string];
  return Number(port);
}

describe('a command connection behind Sentinel', () => {
  it('follows a crash failover and a forced one, failing fast in between', async () => {
    const redis = openRedis(set.url, 'command', 'sentinel-test');
    connections.push(redis);
    const watch = new PrimaryWatch(redis);
    await set.until('connected', () =>
      Promise.resolve(redis.status === 'ready' ? true : undefined),
    );
    const first = await watch.current();
    expect(first).toMatch(/^[0-9a-f]{40}$/);
    await redis.set('before', '1');
    await set.replicasInSync(1);

    const old = await set.primary();
    await old.stop('SIGKILL');
    // While no primary is there, a command is refused at once rather than queued.
    const refused = await redis.set('during', '1').then(
      () => 'written',
      (error: Error) => error.message,
    );
    expect(refused).not.toBe('written');
    const promoted = await set.failedOverFrom(old.port);
    await set.until('written to the new primary', async () =>
      (await redis.set('after', '1')) === 'OK' ? true : undefined,
    );
    expect(await portOf(redis)).toBe(promoted);
    expect(await redis.get('before')).toBe('1');
    expect(await watch.current()).not.toBe(first);
    expect(watch.stats()).toMatchObject({ primaryChanges: 1, connected: true });
    expect(watch.stats().reconnects).toBeGreaterThanOrEqual(1);

    // The old primary comes back as a replica; then the sentinels demote the live primary.
    await set.rejoinAsReplica(old);
    await set.replicasInSync(1);
    const second = await watch.current();
    await set.forceFailover();
    await set.failedOverFrom(promoted);
    // The demoted server stays a master until the sentinels reconfigure it (some seconds);
    // then it drops its clients and the connection finds the new master.
    await set.until('written to the new primary after the forced failover', async () =>
      (await redis.set('again', '1')) === 'OK' && (await portOf(redis)) === old.port
        ? true
        : undefined,
    );
    expect(await primaryId(redis)).not.toBe(second);
    expect(watch.stats().primaryChanges).toBe(2);
  }, 60_000);
});
