/**
 * The pool with many (server uuid, client uuid) pairs, as a gateway that proxies many remotes for
 * many clients has: the idle bound (`--proxyconnections`) holds after every step, the least
 * recently used idle connection across all keys is the one closed, and one key gets as many
 * connections as concurrent requests need.
 */
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { poolKey, type Lease } from '@annex-p2phttp/p2p';
import { FakeConnection, makeFakePool } from './fake-connection';

/** `count` pool keys of distinct (server, client) pairs: 20 served uuids × count/20 clients. */
function manyKeys(count: number): string[] {
  const servers = Array.from({ length: 20 }, () => randomUUID());
  const clients = Array.from({ length: Math.ceil(count / servers.length) }, () => randomUUID());
  const keys: string[] = [];
  for (const clientUuid of clients) {
    for (const serverUuid of servers) {
      if (keys.length < count) {
        keys.push(
          poolKey({
            repoPath: '/srv/annex/gateway',
            serverUuid,
            clientUuid,
            bypass: [],
            version: 4,
            mode: 'full',
          }),
        );
      }
    }
  }
  return keys;
}

/** A deterministic shuffle (Fisher-Yates over a linear congruential generator). */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let state = seed >>> 0;
  for (let i = out.length - 1; i > 0; i -= 1) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    const j = state % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

describe('ConnectionPool with 200 (server, client) pairs', () => {
  const KEYS = manyKeys(200);

  it('has 200 distinct keys', () => {
    expect(new Set(KEYS).size).toBe(200);
  });

  it('keeps the idle bound and closes exactly the least recently released connections', async () => {
    const maxIdle = 64;
    const { pool, opened } = makeFakePool({ maxActive: 1000, maxIdle });
    const leases = await Promise.all(KEYS.map((key) => pool.acquire(key)));
    expect(opened).toHaveLength(200);
    const order = shuffled(leases, 7);
    order.forEach((lease, index) => {
      lease.release(true);
      expect(pool.stats().idle).toBe(Math.min(index + 1, maxIdle));
      // After `index + 1` releases, all but the last `maxIdle` released are closed.
      const closedCount = order.filter((l) => l.connection.closed).length;
      expect(closedCount).toBe(Math.max(0, index + 1 - maxIdle));
    });
    const survivors = order.slice(-maxIdle).map((l) => l.connection);
    expect(order.slice(0, -maxIdle).every((l) => l.connection.closed)).toBe(true);
    expect(survivors.every((c) => !c.closed)).toBe(true);
    expect(pool.stats()).toMatchObject({ idle: maxIdle, evicted: 200 - maxIdle, active: 0 });
    expect(pool.size).toBe(maxIdle);

    // Reusing the oldest 16 survivors makes them the most recent; 16 releases of other keys
    // then evict the next 16 oldest, not the reused ones.
    const reused = survivors.slice(0, 16);
    for (const connection of reused) {
      const lease = await pool.acquire(connection.key);
      expect(lease.connection).toBe(connection);
      lease.release(true);
    }
    const evictedClosed = order.slice(0, -maxIdle).map((l) => l.key);
    const fresh = await Promise.all(evictedClosed.slice(0, 16).map((key) => pool.acquire(key)));
    for (const lease of fresh) {
      lease.release(true);
    }
    const expectClosed = survivors.slice(16, 32);
    expect(expectClosed.every((c) => c.closed)).toBe(true);
    expect(reused.every((c) => !c.closed)).toBe(true);
    expect(survivors.slice(32).every((c) => !c.closed)).toBe(true);
    expect(pool.stats()).toMatchObject({ idle: maxIdle, evicted: 200 - maxIdle + 16 });
    await pool.close();
    expect(opened.every((c) => c.closed)).toBe(true);
  });

  it('matches a model of the LRU idle list under random acquires, releases and deaths', async () => {
    type Op =
      | { op: 'acquire'; key: number }
      | { op: 'release'; lease: number; reusable: boolean }
      | { op: 'die'; idle: number };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      {
        weight: 4,
        arbitrary: fc.record({ op: fc.constant('acquire' as const), key: fc.nat(199) }),
      },
      {
        weight: 4,
        arbitrary: fc.record({
          op: fc.constant('release' as const),
          lease: fc.nat(),
          reusable: fc.boolean(),
        }),
      },
      { weight: 1, arbitrary: fc.record({ op: fc.constant('die' as const), idle: fc.nat() }) },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 40 }),
        fc.array(opArb, { minLength: 50, maxLength: 600 }),
        async (maxIdle, ops) => {
          const { pool, opened } = makeFakePool({ maxActive: 10_000, maxIdle });
          /** The model: idle connections, least recently released first. */
          let idle: FakeConnection[] = [];
          const held: Lease<FakeConnection>[] = [];
          const evicted = new Set<FakeConnection>();
          for (const step of ops) {
            switch (step.op) {
              case 'acquire': {
                const key = KEYS[step.key] as string;
                const lease = await pool.acquire(key);
                const mine = idle.filter((c) => c.key === key);
                const expected = mine[mine.length - 1];
                if (expected === undefined) {
                  expect(lease.reused).toBe(false);
                  expect(lease.connection).toBe(opened[opened.length - 1]);
                } else {
                  // The most recently released connection of that key, warmest first.
                  expect(lease.connection).toBe(expected);
                  idle = idle.filter((c) => c !== expected);
                }
                held.push(lease);
                break;
              }
              case 'release': {
                if (held.length === 0) {
                  break;
                }
                const [lease] = held.splice(step.lease % held.length, 1) as [Lease<FakeConnection>];
                lease.release(step.reusable);
                if (!step.reusable || maxIdle === 0) {
                  expect(lease.connection.closed).toBe(true);
                  break;
                }
                idle.push(lease.connection);
                while (idle.length > maxIdle) {
                  const oldest = idle.shift() as FakeConnection;
                  expect(oldest.closed, 'the evicted connection is closed').toBe(true);
                  evicted.add(oldest);
                }
                break;
              }
              case 'die': {
                // An idle git-annex-shell exits on its own: the pool forgets it.
                if (idle.length === 0) {
                  break;
                }
                const victim = idle[step.idle % idle.length] as FakeConnection;
                victim.close();
                idle = idle.filter((c) => c !== victim);
                break;
              }
            }
            const stats = pool.stats();
            expect(stats.idle).toBeLessThanOrEqual(maxIdle);
            expect(stats.idle).toBe(idle.length);
            expect(stats.evicted).toBe(evicted.size);
            expect(stats.active).toBe(held.length);
            expect(idle.every((c) => !c.closed)).toBe(true);
            expect(held.every((l) => !l.connection.closed)).toBe(true);
            expect(pool.size).toBe(idle.length + held.length);
          }
          for (const lease of held) {
            lease.release(true);
          }
          await pool.close();
          expect(opened.every((c) => c.closed)).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('opens several connections for one key under concurrent load, up to the active bound', async () => {
    const maxActive = 8;
    const { pool, opened } = makeFakePool({ maxActive, maxIdle: 16 });
    const key = KEYS[0] as string;
    const first = await Promise.all(Array.from({ length: maxActive }, () => pool.acquire(key)));
    expect(new Set(first.map((l) => l.connection)).size).toBe(maxActive);
    expect(opened).toHaveLength(maxActive);
    for (const lease of first) {
      lease.release(true);
    }
    expect(pool.stats().idle).toBe(maxActive);

    // 20 concurrent requests for that key: at most 8 at once, served by the 8 idle connections.
    let inUse = 0;
    let peak = 0;
    const work = Array.from({ length: 20 }, async () => {
      const lease = await pool.acquire(key);
      inUse += 1;
      peak = Math.max(peak, inUse);
      await new Promise((resolve) => setImmediate(resolve));
      inUse -= 1;
      lease.release(true);
      return lease.connection;
    });
    const used = await Promise.all(work);
    expect(peak).toBe(maxActive);
    expect(opened).toHaveLength(maxActive);
    expect(new Set(used)).toEqual(new Set(first.map((l) => l.connection)));
    expect(pool.stats()).toMatchObject({ idle: maxActive, active: 0, waiting: 0, evicted: 0 });

    // Other keys share the active bound, and one key's connections are evicted like any other.
    const others = await Promise.all(KEYS.slice(1, 9).map((k) => pool.acquire(k)));
    expect(opened).toHaveLength(2 * maxActive);
    for (const lease of others) {
      lease.release(true);
    }
    expect(pool.stats().idle).toBe(16);
    const extra = await pool.acquire(KEYS[9] as string);
    extra.release(true);
    expect(first.filter((l) => l.connection.closed)).toHaveLength(1);
    await pool.close();
  });
});
