/**
 * Redis connections for cluster mode's locks. Connections that serve requests fail fast: while
 * Redis is unreachable a command is rejected at once (no offline queue, one attempt), so a request
 * gets a 503 instead of hanging. Blocking connections (BullMQ workers, queue events, pub/sub) wait
 * for Redis to come back and carry on. ioredis reconnects by itself in both cases.
 */
import Redis, { type RedisOptions } from 'ioredis';

export type RedisRole = 'command' | 'blocking';

export function openRedis(url: string, role: RedisRole, name?: string): Redis {
  const options: RedisOptions = {
    connectionName: name,
    connectTimeout: 5000,
    retryStrategy: (times) => Math.min(100 * times, 1000),
    ...(role === 'command'
      ? { enableOfflineQueue: false, maxRetriesPerRequest: 1 }
      : { maxRetriesPerRequest: null }),
  };
  const redis = new Redis(url, options);
  // Connection errors are reported through failed commands and readiness checks; an 'error'
  // listener keeps ioredis from printing each reconnection attempt.
  redis.on('error', () => undefined);
  return redis;
}

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

/** Closes a connection: QUIT when connected, otherwise drop it at once. */
export async function closeRedis(redis: Redis): Promise<void> {
  if (redis.status === 'end') {
    return;
  }
  if (redis.status === 'ready') {
    try {
      await redis.quit();
      return;
    } catch {
      // fall through to disconnect
    }
  }
  redis.disconnect();
}

/** The locks cannot be reached or did not answer in time: the gateway answers 503. */
export class LocksUnavailableError extends Error {
  readonly status = 503;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LocksUnavailableError';
  }
}
