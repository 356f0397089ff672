import { describe, expect, it } from 'vitest';
import { ConnectionPool } from '@annex-p2phttp/p2p';
import { FakeConnection, makeFakePool as makePool } from './fake-connection';

describe('ConnectionPool', () => {
  it('reuses an idle connection of the same key and opens another for a different key', async () => {
    const { pool, opened } = makePool({ maxActive: 4, maxIdle: 4 });
    const a = await pool.acquire('a');
    a.release(true);
    const again = await pool.acquire('a');
    expect(again.connection).toBe(a.connection);
    const b = await pool.acquire('b');
    expect(b.connection).not.toBe(a.connection);
    expect(opened).toHaveLength(2);
    expect(pool.stats()).toMatchObject({ active: 2, idle: 0, opened: 2, reused: 1 });
    again.release(true);
    b.release(true);
    expect(pool.stats()).toMatchObject({ active: 0, idle: 2 });
  });

  it('closes a connection given back as not reusable', async () => {
    const { pool } = makePool({ maxActive: 2, maxIdle: 2 });
    const lease = await pool.acquire('a');
    lease.release(false);
    expect(lease.connection.closed).toBe(true);
    expect(pool.stats().idle).toBe(0);
    expect(pool.size).toBe(0);
  });

  it('bounds idle connections by evicting the least recently used across keys', async () => {
    const { pool } = makePool({ maxActive: 10, maxIdle: 2 });
    const leases = await Promise.all(['a', 'b', 'c', 'd'].map((key) => pool.acquire(key)));
    for (const lease of leases) {
      lease.release(true);
    }
    const [a, b, c, d] = leases.map((lease) => lease.connection);
    expect(a?.closed).toBe(true);
    expect(b?.closed).toBe(true);
    expect(c?.closed).toBe(false);
    expect(d?.closed).toBe(false);
    expect(pool.stats()).toMatchObject({ idle: 2, evicted: 2 });
    // Touching c makes d the oldest.
    const again = await pool.acquire('c');
    again.release(true);
    const e = await pool.acquire('e');
    e.release(true);
    expect(d?.closed).toBe(true);
    expect(c?.closed).toBe(false);
  });

  it('bounds active connections and serves waiters in arrival order', async () => {
    const { pool } = makePool({ maxActive: 2, maxIdle: 2 });
    const first = await pool.acquire('a');
    const second = await pool.acquire('b');
    const order: string[] = [];
    const waiting = ['c', 'd', 'e'].map((key) =>
      pool.acquire(key).then((lease) => {
        order.push(key);
        return lease;
      }),
    );
    await Promise.resolve();
    expect(pool.stats()).toMatchObject({ active: 2, waiting: 3 });
    first.release(true);
    const c = await waiting[0];
    expect(order).toEqual(['c']);
    second.release(true);
    c?.release(true);
    const [, d, e] = await Promise.all(waiting);
    expect(order).toEqual(['c', 'd', 'e']);
    d?.release(true);
    e?.release(true);
    expect(pool.stats()).toMatchObject({ active: 0, waiting: 0 });
  });

  it('gives a freed slot to the waiting client that holds the fewest', async () => {
    const { pool } = makePool({ maxActive: 2, maxIdle: 2 });
    const held = [
      await pool.acquire('k', { client: 'greedy' }),
      await pool.acquire('k', { client: 'greedy' }),
    ];
    const order: string[] = [];
    const wait = (client: string) =>
      pool.acquire('k', { client }).then((lease) => {
        order.push(client);
        return lease;
      });
    const greedyMore = wait('greedy');
    const other = wait('other');
    await Promise.resolve();
    expect(pool.stats()).toMatchObject({ active: 2, waiting: 2 });
    held[0]?.release(true);
    (await other).release(true);
    expect(order).toEqual(['other']);
    (await greedyMore).release(true);
    held[1]?.release(true);
    expect(order).toEqual(['other', 'greedy']);
    expect(pool.stats()).toMatchObject({ active: 0, waiting: 0 });
  });

  it('does not let a newcomer overtake a waiter', async () => {
    const { pool } = makePool({ maxActive: 1, maxIdle: 1 });
    const holder = await pool.acquire('a');
    const order: string[] = [];
    const waiter = pool.acquire('a').then((lease) => {
      order.push('waiter');
      return lease;
    });
    holder.release(true);
    const newcomer = pool.acquire('a').then((lease) => {
      order.push('newcomer');
      return lease;
    });
    (await waiter).release(true);
    (await newcomer).release(true);
    expect(order).toEqual(['waiter', 'newcomer']);
  });

  it('drops an aborted waiter without giving it a slot', async () => {
    const { pool } = makePool({ maxActive: 1, maxIdle: 1 });
    const holder = await pool.acquire('a');
    const controller = new AbortController();
    const aborted = pool.acquire('a', { signal: controller.signal });
    controller.abort();
    await expect(aborted).rejects.toMatchObject({ code: 'P2P_ABORTED' });
    expect(pool.stats().waiting).toBe(0);
    holder.release(true);
    expect(pool.stats().active).toBe(0);
  });

  it('frees the slot when opening fails', async () => {
    const { pool } = makePool({ maxActive: 1, maxIdle: 1, failOpen: (key) => key === 'bad' });
    await expect(pool.acquire('bad')).rejects.toThrow(/cannot open bad/);
    expect(pool.stats()).toMatchObject({ active: 0, openFailures: 1 });
    const lease = await pool.acquire('good');
    lease.release(true);
  });

  it('lets uncounted leases bypass the active bound', async () => {
    const { pool } = makePool({ maxActive: 1, maxIdle: 1 });
    const counted = await pool.acquire('a');
    const lock = await pool.acquire('a', { counted: false });
    expect(pool.stats()).toMatchObject({ active: 1, uncounted: 1 });
    lock.release(true);
    counted.release(true);
    expect(pool.stats()).toMatchObject({ active: 0, uncounted: 0, idle: 1 });
  });

  it('forgets an idle connection that died', async () => {
    const { pool } = makePool({ maxActive: 1, maxIdle: 1 });
    const lease = await pool.acquire('a');
    lease.release(true);
    lease.connection.close();
    expect(pool.stats().idle).toBe(0);
    const fresh = await pool.acquire('a');
    expect(fresh.connection).not.toBe(lease.connection);
    fresh.release(true);
  });

  it('expires idle connections after the idle timeout', async () => {
    let now = 0;
    const pool = new ConnectionPool<FakeConnection>({
      maxActive: 2,
      maxIdle: 2,
      idleTimeoutMs: 20,
      now: () => now,
      open: (key) => Promise.resolve(new FakeConnection(key, 0)),
    });
    const lease = await pool.acquire('a');
    lease.release(true);
    now = 25;
    await new Promise((resolve) => setTimeout(resolve, 40));
    expect(lease.connection.closed).toBe(true);
    expect(pool.stats()).toMatchObject({ idle: 0, expired: 1 });
  });

  it('on close fails waiters, closes idle connections and waits for leased ones', async () => {
    const { pool } = makePool({ maxActive: 1, maxIdle: 1 });
    const idle = await pool.acquire('a');
    idle.release(true);
    const busy = await pool.acquire('b');
    const waiter = pool.acquire('c');
    let closed = false;
    const closing = pool.close().then(() => {
      closed = true;
    });
    await expect(waiter).rejects.toMatchObject({ code: 'P2P_POOL_CLOSED' });
    await expect(pool.acquire('d')).rejects.toMatchObject({ code: 'P2P_POOL_CLOSED' });
    expect(idle.connection.closed).toBe(true);
    await Promise.resolve();
    expect(closed).toBe(false);
    busy.release(true);
    await closing;
    expect(busy.connection.closed).toBe(true);
    expect(pool.size).toBe(0);
  });
});
