/**
 * The cluster directory against a real private redis-server: adverts make uuids served, their
 * expiry or withdrawal makes them unavailable (503) but still known, Redis down makes lookups
 * fail at once, and a Redis restarted empty still leaves remembered uuids unavailable, not
 * unknown, until a worker advertises them again. A cluster that is starting (no advert yet, a
 * worker still starting, an epoch younger than the settle time) answers unavailable, never
 * unknown.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PrivateRedis } from '../../../test/support/redis';
import {
  advertise as advertiseRoutes,
  ClusterDirectory,
  ClusterKeys,
  commandConnection,
  DispatchError,
  RouteAdvertiser,
  withdraw,
  type Route,
  type WorkerAdvert,
} from '../src/index';

let redis: PrivateRedis;
let connection: ReturnType<typeof commandConnection>;
const keys = new ClusterKeys('unit-directory:');

/** An advert, and the uuids served through each queue (queue → uuids). */
type TestAdvert = WorkerAdvert & { readonly queues: Record<string, string[]> };

const advert = (id: string, queues: Record<string, string[]>): TestAdvert => ({
  id,
  url: `http://${id}:9418`,
  group: 'g',
  shards: 8,
  queues,
  jobs: 2,
  startedAt: Date.now(),
});

/** Writes the advert and its routes (each uuid through its queue). */
async function advertise(
  redis: typeof connection,
  into: ClusterKeys,
  { queues, ...rest }: TestAdvert,
  ttlMs: number,
): Promise<void> {
  const routes: Record<string, Route> = {};
  for (const [queue, uuids] of Object.entries(queues)) {
    for (const uuid of uuids) {
      routes[uuid] = { queue };
    }
  }
  await advertiseRoutes(redis, into, rest, ttlMs, routes);
}

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
    const directory = new ClusterDirectory({ redis: connection, keys, cacheMs: 0, settleMs: 0 });
    // No worker has advertised: nobody can tell whether r1 will be served.
    expect(await unavailable(directory, 'r1')).toMatch(/no proxy worker has advertised yet/);
    expect(await directory.lookup('-bad')).toBeUndefined();
    await advertise(connection, keys, advert('w1', { r1: ['r1', 'p1'] }), 60_000);
    expect(await directory.lookup('r1')).toEqual({ uuid: 'r1', path: 'r1' });
    expect(await directory.lookup('p1')).toEqual({ uuid: 'p1', path: 'r1' });
    expect(await directory.lookup('r2')).toBeUndefined();
    expect((await directory.read()).workers).toBe(1);
  });

  it('answers unavailable once no live worker serves a known uuid', async () => {
    const directory = new ClusterDirectory({ redis: connection, keys, cacheMs: 0, settleMs: 0 });
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
      settleMs: 0,
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
    const directory = new ClusterDirectory({ redis: connection, keys, cacheMs: 0, settleMs: 0 });
    expect(await directory.lookup('r1')).toEqual({ uuid: 'r1', path: 'r1' });
    await redis.stop();
    expect(await unavailable(directory, 'r1')).toMatch(/cluster state unavailable/);
    await redis.restart();
    await ready();
    // Redis lost everything: r1 is remembered by this gateway, so unavailable, not unknown; r4
    // may be served in a moment, as the epoch starts again with the next advert.
    expect(await unavailable(directory, 'r1')).toMatch(/no live proxy worker/);
    expect(await unavailable(directory, 'r4')).toMatch(/no proxy worker has advertised yet/);
    await advertise(connection, keys, advert('w1', { r1: ['r1'] }), 60_000);
    expect(await directory.lookup('r1')).toEqual({ uuid: 'r1', path: 'r1' });
    expect(await directory.lookup('r4')).toBeUndefined();
  });
});

describe('RouteAdvertiser', () => {
  const routed = new ClusterKeys('unit-directory-routes:');
  const worker: WorkerAdvert = {
    id: 'rw',
    url: 'http://rw:1',
    group: 'g',
    shards: 8,
    jobs: 2,
    startedAt: 0,
  };
  const many = (count: number) =>
    new Map<string, Route>(
      Array.from({ length: count }, (_, i) => [
        `u${i}`,
        { queue: `g.${i % 8}`, location: `r/${i}` },
      ]),
    );

  it('writes only what changed, and a gateway reads the routes again only when they did', async () => {
    const advertiser = new RouteAdvertiser(connection, routed, 60_000);
    const directory = new ClusterDirectory({
      redis: connection,
      keys: routed,
      cacheMs: 0,
      settleMs: 0,
    });
    const routes = many(300);
    await advertiser.publish(worker, routes);
    expect(advertiser.lastSent).toBe(300);
    expect(await directory.lookup('u299')).toEqual({
      uuid: 'u299',
      path: 'g.3',
      location: 'r/299',
    });
    const changes = directory.routeChanges;
    // Heartbeats: the advert is refreshed, no route is sent, the gateway reads none.
    await advertiser.publish(worker);
    await advertiser.publish(worker, new Map(routes));
    expect(advertiser.lastSent).toBe(0);
    await directory.read();
    expect(directory.routeChanges).toBe(changes);
    // One repository appears and one vanishes: two routes are sent, the gateway reads them.
    routes.set('new', { queue: 'g.2', location: 'r/new' });
    routes.delete('u0');
    await advertiser.publish(worker, new Map(routes));
    expect(advertiser.lastSent).toBe(2);
    expect(await directory.lookup('new')).toEqual({ uuid: 'new', path: 'g.2', location: 'r/new' });
    expect(directory.routeChanges).toBe(changes + 1);
    // Known once, so unavailable rather than unknown.
    expect(await unavailable(directory, 'u0')).toMatch(/no live proxy worker/);
    expect((await directory.read()).live.size).toBe(300);
  });

  it('writes every route again when Redis lost them', async () => {
    const advertiser = new RouteAdvertiser(connection, routed, 60_000);
    const directory = new ClusterDirectory({
      redis: connection,
      keys: routed,
      cacheMs: 0,
      settleMs: 0,
    });
    const lost: WorkerAdvert = { ...worker, id: 'rw2' };
    await advertiser.publish(lost, many(50));
    await connection.del(routed.routes('rw2'));
    await advertiser.publish(lost);
    expect(advertiser.lastSent).toBe(50);
    expect(await directory.lookup('u49')).toEqual({ uuid: 'u49', path: 'g.1', location: 'r/49' });
    await advertiser.withdraw('rw2');
    expect(await connection.exists(routed.routes('rw2'), routed.worker('rw2'))).toBe(0);
  });
});

describe('ClusterDirectory while the cluster starts', () => {
  const start = new ClusterKeys('unit-directory-start:');

  it('answers unavailable until the epoch is settleMs old, then unknown', async () => {
    const directory = new ClusterDirectory({ redis: connection, keys: start, cacheMs: 0 });
    const settleMs = 800;
    const quick = new ClusterDirectory({ redis: connection, keys: start, cacheMs: 0, settleMs });
    expect(await unavailable(quick, 'nothing')).toMatch(/no proxy worker has advertised yet/);
    expect((await quick.read()).epochAgeMs).toBeUndefined();
    await advertise(connection, start, advert('s1', { a1: ['a1'] }), 60_000);
    // Served at once; an unknown uuid must wait for the epoch to be old enough.
    expect(await quick.lookup('a1')).toEqual({ uuid: 'a1', path: 'a1' });
    expect(await unavailable(quick, 'nothing')).toMatch(/have not all advertised yet/);
    await new Promise((resolve) => setTimeout(resolve, settleMs + 100));
    expect(await quick.lookup('nothing')).toBeUndefined();
    expect(await quick.settled()).toBe(true);
    // The default settle time (one advert lifetime) has not passed yet for this epoch.
    expect(await directory.settled()).toBe(false);
  });

  it('is not settled while a live worker says it is starting', async () => {
    const quick = new ClusterDirectory({
      redis: connection,
      keys: start,
      cacheMs: 0,
      settleMs: 0,
    });
    expect(await quick.lookup('nothing')).toBeUndefined();
    await advertise(connection, start, { ...advert('s2', {}), starting: true }, 60_000);
    const snapshot = await quick.read();
    expect(snapshot).toMatchObject({ workers: 1, starting: 1 });
    expect(await unavailable(quick, 'later')).toMatch(/have not all advertised yet/);
    await advertise(connection, start, advert('s2', { b1: ['b1', 'later'] }), 60_000);
    expect(await quick.lookup('later')).toEqual({ uuid: 'later', path: 'b1' });
    expect(await quick.lookup('nothing')).toBeUndefined();
  });

  it('serves what a starting worker has read already, and nothing is unknown until it is done', async () => {
    const keys = new ClusterKeys('unit-directory-partial:');
    const quick = new ClusterDirectory({ redis: connection, keys, cacheMs: 0, settleMs: 0 });
    await advertise(connection, keys, { ...advert('p1', { c1: ['c1'] }), starting: true }, 60_000);
    expect(await quick.lookup('c1')).toEqual({ uuid: 'c1', path: 'c1' });
    expect(await unavailable(quick, 'c2')).toMatch(/have not all advertised yet/);
    await advertise(connection, keys, advert('p1', { c1: ['c1'], c2: ['c2'] }), 60_000);
    expect(await quick.lookup('c2')).toEqual({ uuid: 'c2', path: 'c2' });
    expect(await quick.lookup('nothing')).toBeUndefined();
  });

  it('lets a lookup wait for the adverts up to startupWaitMs', async () => {
    const waiting = new ClusterKeys('unit-directory-wait:');
    const directory = new ClusterDirectory({
      redis: connection,
      keys: waiting,
      cacheMs: 0,
      missRefreshMs: 50,
      settleMs: 60_000,
      startupWaitMs: 5000,
    });
    const lookup = directory.lookup('c1');
    await new Promise((resolve) => setTimeout(resolve, 300));
    await advertise(connection, waiting, advert('s3', { c1: ['c1'] }), 60_000);
    expect(await lookup).toEqual({ uuid: 'c1', path: 'c1' });
    const bounded = new ClusterDirectory({
      redis: connection,
      keys: waiting,
      cacheMs: 0,
      settleMs: 60_000,
      startupWaitMs: 300,
    });
    const started = performance.now();
    const error = await bounded.lookup('c2').catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'DISPATCH_UNAVAILABLE', retryAfterSeconds: 60 });
    expect(performance.now() - started).toBeGreaterThanOrEqual(250);
  });
});
