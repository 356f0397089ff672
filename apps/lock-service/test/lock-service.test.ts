/**
 * The lock-service's wiring, over a private redis-server and a real repository: it starts,
 * answers its health endpoints, takes lock requests from the queue and unlock messages from
 * pub/sub, and on close stops answering and marks its holder gone.
 */
import { randomUUID } from 'node:crypto';
import type Redis from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  closeRedis,
  ClusterRetentionLocks,
  openRedis,
  RedisLockStore,
  whenReady,
} from '@annex-p2phttp/locks';
import { lockServiceConfig, parseServeArgs } from '@annex-p2phttp/config';
import { startLockService, type RunningLockService } from '../src';
import { PrivateRedis } from '../../../test/support/redis';
import { makeServedRepo, manyFiles, Sandbox, type ServedRepo } from '../../../test/support/repos';

let redis: PrivateRedis | undefined;
let sandbox: Sandbox | undefined;
let repo: ServedRepo;

beforeAll(async () => {
  redis = await PrivateRedis.start();
  sandbox = await Sandbox.create('lock-service');
  repo = await makeServedRepo(sandbox, sandbox.path('repo'), manyFiles('f', 1, 64));
}, 120_000);

afterAll(async () => {
  await redis?.stop();
  await sandbox?.remove();
});

async function get(url: string): Promise<{ status: number; body: string }> {
  const response = await fetch(url);
  return { status: response.status, body: await response.text() };
}

async function until(what: string, probe: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!probe()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting: ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('startLockService', { timeout: 30_000 }, () => {
  it('starts, serves lock requests and unlocks, answers health, and stops', async () => {
    const url = redis!.url;
    const prefix = `svc-${randomUUID().slice(0, 8)}:`;
    const config = lockServiceConfig(
      parseServeArgs(
        [
          '--redis',
          url,
          '--redis-prefix',
          prefix,
          '--repo',
          repo.dir,
          '--health-port',
          '0',
          '--bind',
          '127.0.0.1',
        ],
        repo.dir,
      ),
    );
    const service: RunningLockService = await startLockService(config, {
      // No upkeep round during the test: only the unlock message can release the lock.
      sweepIntervalMs: 60_000,
      log: () => undefined,
    });
    const gateway = new ClusterRetentionLocks({ redisUrl: url, prefix, lockedFiles: 10 });
    const command: Redis = openRedis(url, 'command');
    try {
      const health = await get(`${service.healthUrl}/healthz`);
      expect(health.status).toBe(200);
      expect(JSON.parse(health.body)).toEqual({ status: 'ok' });
      const ready = await get(`${service.healthUrl}/readyz`);
      expect(ready.status).toBe(200);
      expect(JSON.parse(ready.body)).toMatchObject({ status: 'ready' });
      expect(
        (JSON.parse(ready.body) as { checks: { name: string }[] }).checks.map((c) => c.name),
      ).toEqual(['redis', 'repositories', 'writable']);
      expect((await get(`${service.healthUrl}/metrics`)).body).toMatch(
        /annex_p2phttp_locks\{app="lock-service"\} 0/,
      );
      await whenReady(command);
      const store = new RedisLockStore(command, prefix);
      expect(await store.isHolderAlive(service.holder)).toBe(true);

      await gateway.ready();
      const [key] = [...repo.keys.values()];
      const lockid = await gateway.lock(
        { serverUuid: repo.uuid, clientUuid: randomUUID(), bypass: [], version: 4, mode: 'full' },
        key!,
      );
      expect(service.locks.lockids()).toEqual([lockid]);
      expect((await store.get(lockid!))?.holder).toBe(service.holder);
      await gateway.unlock(lockid!);
      await until('the unlock message released the lock', () => service.locks.size === 0);

      await service.close();
      await service.close(); // a second close waits for the first
      await expect(fetch(`${service.healthUrl}/healthz`)).rejects.toThrow();
      expect(await store.isHolderAlive(service.holder)).toBe(false);
    } finally {
      await service.close();
      await gateway.close();
      await closeRedis(command);
    }
  });
});
