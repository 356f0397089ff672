/**
 * The cluster directory against a real private redis-server: adverts make uuids served, their
 * expiry or withdrawal makes them unavailable (503) but still known, Redis down makes lookups
 * fail at once, and a Redis restarted empty still leaves remembered uuids unavailable, not
 * unknown, until a worker advertises them again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PrivateRedis } from '../../../test/support/redis';
import {
  advertise,
  ClusterDirectory,
  ClusterKeys,
  commandConnection,
  DispatchError,
  withdraw,
  type WorkerAdvert,
} from '../src/index';

let redis: PrivateRedis;
let connection: ReturnType<typeof commandConnection>;
const keys = new ClusterKeys('unit-directory:');

const advert = (id: string, queues: Record<string, string[]>): WorkerAdvert => ({
  id,
  url: `http://${id}:9418`,
  queues,
  jobs: 2,
  startedAt: Date.now(),
});

async function unavailable(directory: ClusterDirectory, uuid: string): Promise<string> {
  const error = await directory.lookup(uuid).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DispatchError);
  expect((error as DispatchError).code).toBe('DISPATCH_UNAVAILABLE');
  return (error as DispatchError).message;
}

async function ready(): Promise<void> {
  for (let i = 0; i < 200 && connection.status !== 'ready'; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

beforeAll(async () => {
  redis = await PrivateRedis.start();
  connection = commandConnection(redis.url, 'unit');
  connection.on('error', () => {});
  await ready();
}, 60_000);

afterAll(async () => {
  connection?.disconnect();
  await redis?.stop();
});

describe('ClusterDirectory', () => {
  it('serves what live workers advertise, through their queue', async () => {
    const directory = new ClusterDirectory({ redis: connection, keys, cacheMs: 0 });
    expect(await directory.lookup('r1')).toBeUndefined();
    expect(await directory.lookup('-bad')).toBeUndefined();
    await advertise(connection, keys, advert('w1', { r1: ['r1', 'p1'] }), 60_000);
    expect(await directory.lookup('r1')).toEqual({ uuid: 'r1', path: 'r1' });
    expect(await directory.lookup('p1')).toEqual({ uuid: 'p1', path: 'r1' });
    expect(await directory.lookup('r2')).toBeUndefined();
    expect((await directory.read()).workers).toBe(1);
  });

  it('answers unavailable once no live worker serves a known uuid', async () => {
    const directory = new ClusterDirectory({ redis: connection, keys, cacheMs: 0 });
    await advertise(connection, keys, advert('w2', { r2: ['r2'] }), 60_000);
    await advertise(connection, keys, advert('w3', { r2: ['r2'] }), 300);
    expect(await directory.lookup('r2')).toEqual({ uuid: 'r2', path: 'r2' });
    await withdraw(connection, keys, 'w2');
    // w3's advert still lives for a moment, then expires.
    expect(await directory.lookup('r2')).toEqual({ uuid: 'r2', path: 'r2' });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await unavailable(directory, 'r2')).toMatch(/no live proxy worker/);
    expect(await connection.zscore(keys.workers, 'w3')).toBeNull();
  });

  it('caches a snapshot, and re-reads early for an unknown uuid', async () => {
    const directory = new ClusterDirectory({
      redis: connection,
      keys,
      cacheMs: 60_000,
      missRefreshMs: 0,
    });
    await directory.read();
    const reads = directory.snapshotReads;
    await directory.lookup('r1');
    await directory.lookup('r1');
    expect(directory.snapshotReads).toBe(reads);
    await advertise(connection, keys, advert('w4', { r4: ['r4'] }), 60_000);
    expect(await directory.lookup('r4')).toEqual({ uuid: 'r4', path: 'r4' });
    expect(directory.snapshotReads).toBe(reads + 1);
  });

  it('fails at once while Redis is down, remembers served uuids across an empty restart', async () => {
    const directory = new ClusterDirectory({ redis: connection, keys, cacheMs: 0 });
    expect(await directory.lookup('r1')).toEqual({ uuid: 'r1', path: 'r1' });
    await redis.stop();
    expect(await unavailable(directory, 'r1')).toMatch(/cluster state unavailable/);
    await redis.restart();
    await ready();
    // Redis lost everything: r1 is remembered by this gateway, so unavailable, not unknown.
    expect(await unavailable(directory, 'r1')).toMatch(/no live proxy worker/);
    expect(await directory.lookup('r4')).toBeUndefined();
    await advertise(connection, keys, advert('w1', { r1: ['r1'] }), 60_000);
    expect(await directory.lookup('r1')).toEqual({ uuid: 'r1', path: 'r1' });
  });
});
