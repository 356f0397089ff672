import { describe, expect, it } from 'vitest';
import {
  bullPrefix,
  ClusterKeys,
  DEFAULT_REDIS_PREFIX,
  LOCK_REQUEST_QUEUE,
  LockKeys,
  RedisKeys,
} from '../src';

/**
 * The names existing deployments have in their Redis: a change here makes their queues, adverts
 * and locks unreadable after an upgrade. These strings are spelt out, not built.
 */
describe('the Redis key scheme', () => {
  it('keeps the default prefix and the lock request queue', () => {
    expect(DEFAULT_REDIS_PREFIX).toBe('annex-p2phttp:');
    expect(LOCK_REQUEST_QUEUE).toBe('lock-requests');
    expect(bullPrefix('p:')).toBe('p:bull');
  });

  it('names every cluster key as before', () => {
    const keys = new ClusterKeys('annex-p2phttp:');
    expect(keys.prefix).toBe('annex-p2phttp:');
    expect(keys.bullPrefix).toBe('annex-p2phttp:bull');
    expect(keys.workers).toBe('annex-p2phttp:workers');
    expect(keys.workerPrefix).toBe('annex-p2phttp:worker:');
    expect(keys.worker('w1')).toBe('annex-p2phttp:worker:w1');
    expect(keys.routesPrefix).toBe('annex-p2phttp:routes:');
    expect(keys.routes('w1')).toBe('annex-p2phttp:routes:w1');
    expect(keys.uuids).toBe('annex-p2phttp:uuids');
    expect(keys.epoch).toBe('annex-p2phttp:epoch');
    expect(keys.cancel).toBe('annex-p2phttp:cancel');
    expect(keys.query('g.8.3')).toBe('annex-p2phttp:query:g.8.3');
    expect(keys.reply('gw1')).toBe('annex-p2phttp:reply:gw1');
    expect(keys.events('g.8.3')).toBe('annex-p2phttp:bull:g.8.3:events');
    expect(new ClusterKeys().prefix).toBe('annex-p2phttp:');
  });

  it('names every lock key as before', () => {
    const keys = new LockKeys('other:');
    expect(keys.prefix).toBe('other:');
    expect(keys.bullPrefix).toBe('other:bull');
    expect(keys.recordPrefix).toBe('other:lock:');
    expect(keys.record('L1')).toBe('other:lock:L1');
    expect(keys.expiry).toBe('other:locks:expiry');
    expect(keys.cover).toBe('other:locks:cover');
    expect(keys.holderPrefix).toBe('other:locks:holder:');
    expect(keys.holder('h1')).toBe('other:locks:holder:h1');
    expect(keys.epoch).toBe('other:locks:epoch');
    expect(keys.unlockChannel).toBe('other:locks:unlock');
    expect(keys.released('L1')).toBe('other:locks:released:L1');
    expect(new LockKeys().record('L1')).toBe('annex-p2phttp:lock:L1');
  });

  it('is one scheme: both groups under one prefix and one BullMQ prefix', () => {
    const keys = new RedisKeys('d:');
    expect(keys.prefix).toBe('d:');
    expect(keys.bullPrefix).toBe('d:bull');
    expect(keys.cluster.bullPrefix).toBe(keys.bullPrefix);
    expect(keys.locks.bullPrefix).toBe(keys.bullPrefix);
    expect(keys.cluster.epoch).not.toBe(keys.locks.epoch);
    expect(new RedisKeys().prefix).toBe('annex-p2phttp:');
  });
});
