/**
 * PrimaryWatch and primaryId against a private redis-server: the id is the server's replication
 * id, and a restart makes a new one (counted as a reconnect and a primary change), so that work
 * stamped before it is recognised as queued on another primary.
 */
import type Redis from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { PrivateRedis } from '../../../test/support/redis';
import { closeRedis, openRedis, PrimaryWatch } from '../src';

const servers: PrivateRedis[] = [];
const connections: Redis[] = [];

afterEach(async () => {
  await Promise.all(connections.splice(0).map((c) => closeRedis(c)));
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

async function ready(redis: Redis): Promise<void> {
  for (let i = 0; i < 200 && redis.status !== 'ready'; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  expect(redis.status).toBe('ready');
}

describe('PrimaryWatch', () => {
  it('follows the replication id across a restart', async () => {
    const server = await PrivateRedis.start();
    servers.push(server);
    const redis = openRedis(server.url, 'command');
    connections.push(redis);
    const watch = new PrimaryWatch(redis);
    await ready(redis);
    const first = await watch.current();
    expect(first).toMatch(/^[0-9a-f]{40}$/);
    expect(await watch.isAnotherPrimary(first)).toBe(false);
    expect(await watch.isAnotherPrimary(undefined)).toBe(false);
    await server.restart();
    for (let i = 0; i < 200 && watch.stats().primaryChanges === 0; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const second = await watch.current();
    expect(second).not.toBe(first);
    expect(await watch.isAnotherPrimary(first)).toBe(true);
    expect(watch.stats()).toEqual({ reconnects: 1, primaryChanges: 1, connected: true });
  }, 30_000);
});
