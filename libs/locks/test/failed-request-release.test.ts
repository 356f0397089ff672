/**
 * A lock request that fails because Redis went away (a crash, a failover) leaves the gateway's
 * reservation in Redis: deleting it fails too while Redis is away. That record covers the key, so
 * every remove of it is refused until the record expires (the request timeout and then some). The
 * gateway must delete it as soon as Redis answers again.
 *
 * Real faults: a private redis-server that keeps its data on disk (append-only file, fsync on every
 * write) is killed with SIGKILL while the request waits for a lock-service (none runs), and is
 * started again on the same port with the same files, as a restarted Redis or a promoted replica
 * that had the reservation.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterRetentionLocks, LocksUnavailableError } from '@annex-p2phttp/locks';
import { PrivateRedis } from '../../../test/support/redis';

const PREFIX = 'failed-request:';
const SERVER = '11111111-2222-4333-8444-555555555555';
const KEY = 'SHA256E-s4--88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589';
const REQUEST_TIMEOUT_MS = 40_000;

let dir: string;
let redis: PrivateRedis;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'annex-p2phttp-failed-request-'));
  redis = await PrivateRedis.start(undefined, [
    '--appendonly',
    'yes',
    '--appendfsync',
    'always',
    '--dir',
    dir,
  ]);
}, 30_000);

afterAll(async () => {
  await redis?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) {
      return value;
    }
    if (Date.now() > deadline) {
      throw new Error(`not within ${ms} ms: ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const records = async () =>
  Number((await redis.command('ZCARD', `${PREFIX}locks:expiry`)).slice(1));

describe('a lock request that failed with Redis', () => {
  it('has its reservation deleted once Redis answers again, not when it expires', async () => {
    const locks = new ClusterRetentionLocks({
      redisUrl: redis.url,
      prefix: PREFIX,
      lockedFiles: 10,
      requestTimeoutMs: REQUEST_TIMEOUT_MS,
    });
    try {
      await locks.ready();
      const target = {
        repoPath: '/nowhere',
        serverUuid: SERVER,
        clientUuid: '99999999-2222-4333-8444-555555555555',
        bypass: [],
        version: 4,
        mode: 'full' as const,
      };
      // No lock-service runs: the request waits for a reply, with its reservation recorded.
      const request = locks.lock(target, KEY);
      request.catch(() => undefined);
      await until(
        'the reservation recorded',
        async () => ((await records()) === 1 ? true : undefined),
        10_000,
      );
      expect(await locks.isLocked(SERVER, KEY)).toBe(true);

      await redis.restart();
      await expect(request).rejects.toBeInstanceOf(LocksUnavailableError);
      // Redis came back with its data: the reservation was on disk.
      const restarted = Date.now();
      // Gone within seconds of Redis answering; left alone it would stay until
      // REQUEST_TIMEOUT_MS + 5 s after it was made.
      await until(
        'the reservation deleted',
        async () => ((await records()) === 0 ? true : undefined),
        10_000,
      );
      expect(Date.now() - restarted).toBeLessThan(REQUEST_TIMEOUT_MS);
      expect(await until('an answer', () => locks.isLocked(SERVER, KEY), 10_000)).toBe(false);
    } finally {
      await locks.close();
    }
  }, 90_000);
});
