/**
 * Redis connections of cluster mode. Requests must fail fast while Redis is down (the gateway
 * answers 503 at once), so the connection that sends commands has no offline queue; connections
 * that block (BullMQ workers, event readers) retry forever and reconnect on their own.
 */
import { type RedisOptions as BullMqRedisOptions } from 'bullmq';
import Redis, { type RedisOptions } from 'ioredis';

/** ioredis options from a redis:// or rediss:// URL (host, port, user, password, db, TLS). */
export function redisOptionsFromUrl(url: string): RedisOptions {
  const parsed = new URL(url);
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new Error(`not a redis:// URL: ${url}`);
  }
  const options: RedisOptions = {
    host: parsed.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    port: parsed.port === '' ? 6379 : Number(parsed.port),
  };
  if (parsed.username !== '') {
    options.username = decodeURIComponent(parsed.username);
  }
  if (parsed.password !== '') {
    options.password = decodeURIComponent(parsed.password);
  }
  const db = parsed.pathname.replace(/^\//, '');
  if (db !== '') {
    if (!/^\d+$/.test(db)) {
      throw new Error(`the database in a redis:// URL must be a number: ${url}`);
    }
    options.db = Number(db);
  }
  if (parsed.protocol === 'rediss:') {
    options.tls = {};
  }
  return options;
}

/** Reconnects every 100 ms at first, then at most every 2 s. */
const retryStrategy = (times: number): number => Math.min(100 * times, 2000);

/** For commands: fails at once while disconnected, reconnects in the background. */
export function commandConnection(url: string, name: string): Redis {
  return new Redis({
    ...redisOptionsFromUrl(url),
    connectionName: name,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 5000,
    commandTimeout: 10_000,
    retryStrategy,
  });
}

/** Options for connections BullMQ opens itself (blocking ones): wait and reconnect forever. */
export function blockingOptions(url: string): RedisOptions & BullMqRedisOptions {
  return {
    ...redisOptionsFromUrl(url),
    maxRetriesPerRequest: null,
    retryStrategy,
  };
}

/** A log that says each distinct message once per `quietMs` (reconnect loops repeat them). */
export function quietLog(
  log: (message: string) => void,
  quietMs = 30_000,
): (message: string) => void {
  const said = new Map<string, number>();
  return (message) => {
    const now = Date.now();
    const last = said.get(message);
    if (last !== undefined && now - last < quietMs) {
      return;
    }
    if (said.size > 100) {
      said.clear();
    }
    said.set(message, now);
    log(message);
  };
}

/**
 * Waits until `redis` is connected, at most `timeoutMs`; resolves false if it is not by then (it
 * keeps trying in the background). For start-up, so that a process does not answer 503 to its
 * first requests only because its connection was still being set up.
 */
export async function connected(redis: Redis, timeoutMs: number): Promise<boolean> {
  if (redis.status === 'ready') {
    return true;
  }
  return new Promise<boolean>((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      redis.off('ready', onReady);
      resolve(ok);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    redis.on('ready', onReady);
  });
}

/**
 * A connection subscribed to `channel` for as long as it lives, calling `onMessage` with each
 * message. It subscribes again itself after every reconnect: ioredis' own resubscription leaves a
 * rejection nobody handles when the connection closes before it is confirmed. Resolves once the
 * first subscription is confirmed; rejects (and closes the connection) if it cannot be.
 */
export async function subscription(
  url: string,
  channel: string,
  onMessage: (message: string) => void,
  name?: string,
): Promise<Redis> {
  const subscriber = new Redis({
    ...blockingOptions(url),
    autoResubscribe: false,
    connectionName: name,
  });
  subscriber.on('error', () => {}); // reconnects by itself
  subscriber.on('message', (received: string, message: string) => {
    if (received === channel) {
      onMessage(message);
    }
  });
  let first = true;
  subscriber.on('ready', () => {
    if (!first) {
      subscriber.subscribe(channel).catch(() => {}); // closed meanwhile: nothing to receive
    }
  });
  try {
    await subscriber.subscribe(channel);
    first = false;
    return subscriber;
  } catch (error) {
    subscriber.disconnect();
    throw error;
  }
}
