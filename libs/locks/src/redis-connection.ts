/**
 * Redis connections for cluster mode's locks. Connections that serve requests fail fast: while
 * Redis is unreachable a command is rejected at once (no offline queue, no retry), so a request
 * gets a 503 instead of hanging. Blocking connections (BullMQ workers, queue events, pub/sub) wait
 * for Redis to come back and carry on. ioredis reconnects by itself in both cases.
 */
import type Redis from 'ioredis';
import { AnnexP2PError } from '@annex-p2phttp/protocol';

// The connections themselves come from the one factory of cluster mode.
export { closeRedis, openRedis, type RedisRole } from '@annex-p2phttp/redis';

/** Resolves once the connection is ready; rejects after `timeoutMs`. */
export function whenReady(redis: Redis, timeoutMs = 10_000): Promise<void> {
  if (redis.status === 'ready') {
    return Promise.resolve();
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new LocksUnavailableError(`Redis not reachable within ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = () => {
      cleanup();
      resolve();
    };
    const onEnd = () => {
      cleanup();
      reject(new LocksUnavailableError('Redis connection closed'));
    };
    const cleanup = () => {
      clearTimeout(timer);
      redis.off('ready', onReady);
      redis.off('end', onEnd);
    };
    redis.on('ready', onReady);
    redis.on('end', onEnd);
  });
}

/** The locks cannot be reached or did not answer in time (code LOCKS_UNAVAILABLE). */
export class LocksUnavailableError extends AnnexP2PError {
  declare readonly code: 'LOCKS_UNAVAILABLE';

  constructor(message: string, options?: { cause?: unknown }) {
    super('LOCKS_UNAVAILABLE', message, options);
    this.name = 'LocksUnavailableError';
  }
}
