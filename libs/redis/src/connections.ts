/**
 * The one Redis connection factory of cluster mode: every app's connections, and the options
 * handed to BullMQ for the connections it opens itself, come from here, whatever the URL names
 * (one Redis, or a master set behind Redis Sentinel; url.ts).
 *
 * Requests must fail fast while Redis is down or failing over (the gateway answers 503 at once),
 * so connections that send commands have no offline queue and no retries; connections that block
 * (BullMQ workers, event readers, subscribers) wait and reconnect forever. Behind Sentinel every
 * (re)connection asks the sentinels for the current master and checks that the server it reached
 * is a master; a command answered READONLY (the server was demoted to a replica while this
 * connection stayed open) drops the connection, which then finds the new master.
 */
import { type RedisOptions as BullMqRedisOptions } from 'bullmq';
import Redis, { type RedisOptions } from 'ioredis';
import { parseRedisUrl, type RedisTarget } from './url';

export type RedisRole = 'command' | 'blocking';

/** Reconnects every 100 ms at first, then at most every second. */
const retryStrategy = (times: number): number => Math.min(100 * times, 1000);

/** A demoted master answers writes with READONLY: reconnect, through the sentinels. */
const reconnectOnError = (error: Error): boolean => error.message.startsWith('READONLY');

/** ioredis options (no role yet) for a parsed URL. */
export function targetOptions(target: RedisTarget): RedisOptions {
  const options: RedisOptions = {};
  if (target.username !== undefined) {
    options.username = target.username;
  }
  if (target.password !== undefined) {
    options.password = target.password;
  }
  if (target.db !== undefined) {
    options.db = target.db;
  }
  if (target.kind === 'standalone') {
    options.host = target.host;
    options.port = target.port;
    if (target.tls) {
      options.tls = {};
    }
    return options;
  }
  options.sentinels = target.sentinels.map(({ host, port }) => ({ host, port }));
  options.name = target.masterName;
  options.role = 'master';
  if (target.sentinelUsername !== undefined) {
    options.sentinelUsername = target.sentinelUsername;
  }
  if (target.sentinelPassword !== undefined) {
    options.sentinelPassword = target.sentinelPassword;
  }
  // Ask the next sentinel soon when one does not answer; start again from the first after a
  // round where none did, at most every second.
  options.sentinelCommandTimeout = 2000;
  options.sentinelRetryStrategy = retryStrategy;
  if (target.tls) {
    options.tls = {};
    options.enableTLSForSentinelMode = true;
    options.sentinelTLS = {};
  }
  return options;
}

/** The options of a connection of `role` to the Redis `url` names. Throws RedisUrlError. */
export function redisOptions(url: string, role: RedisRole, name?: string): RedisOptions {
  const target = parseRedisUrl(url);
  const options: RedisOptions = {
    ...targetOptions(target),
    connectTimeout: 5000,
    retryStrategy,
    reconnectOnError,
    ...(name === undefined ? {} : { connectionName: name }),
  };
  if (role === 'command') {
    options.enableOfflineQueue = false;
    options.maxRetriesPerRequest = 0;
    options.commandTimeout = 10_000;
  } else {
    // BullMQ's blocking connections need this; the others wait for Redis as well.
    options.maxRetriesPerRequest = null;
  }
  // No failoverDetector: ioredis' detector can end a connection for good when a failover is
  // announced while it is reconnecting. A demoted master closes its clients itself once the
  // sentinels reconfigure it, and a READONLY answer before that makes the connection reconnect.
  return options;
}

/**
 * Opens a connection. Its 'error' events are consumed (it reconnects by itself; failed commands
 * and readiness checks report the trouble); callers may listen as well.
 */
export function openRedis(url: string, role: RedisRole, name?: string): Redis {
  const redis = new Redis(redisOptions(url, role, name));
  redis.on('error', () => undefined);
  return redis;
}

/** For commands: fails at once while disconnected, reconnects in the background. */
export function commandConnection(url: string, name: string): Redis {
  return openRedis(url, 'command', name);
}

/** Options for connections BullMQ opens itself (blocking ones): wait and reconnect forever. */
export function blockingOptions(url: string, name?: string): RedisOptions & BullMqRedisOptions {
  return redisOptions(url, 'blocking', name) as RedisOptions & BullMqRedisOptions;
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
      redis.off('end', onEnd);
      resolve(ok);
    };
    const onReady = () => done(true);
    const onEnd = () => done(false);
    const timer = setTimeout(() => done(false), timeoutMs);
    redis.on('ready', onReady);
    redis.on('end', onEnd);
  });
}

/**
 * A connection subscribed to `channel` for as long as it lives, calling `onMessage` with each
 * message. It subscribes again itself after every reconnect: ioredis' own resubscription leaves a
 * rejection nobody handles when the connection closes before it is confirmed. `onListening` hears
 * when messages can arrive (true once a subscription is confirmed) and when they cannot (false
 * when the connection is lost: whatever is published meanwhile never arrives). Resolves once the
 * first subscription is confirmed; rejects (and closes the connection) if it cannot be.
 */
export async function subscription(
  url: string,
  channel: string,
  onMessage: (message: string) => void,
  name?: string,
  onListening: (listening: boolean) => void = () => {},
): Promise<Redis> {
  const subscriber = new Redis({
    ...blockingOptions(url, name),
    autoResubscribe: false,
  });
  subscriber.on('error', () => {}); // reconnects by itself
  subscriber.on('message', (received: string, message: string) => {
    if (received === channel) {
      onMessage(message);
    }
  });
  let first = true;
  subscriber.on('close', () => onListening(false));
  subscriber.on('ready', () => {
    if (!first) {
      subscriber.subscribe(channel).then(
        () => onListening(true),
        () => {}, // closed meanwhile: nothing to receive
      );
    }
  });
  try {
    await subscriber.subscribe(channel);
    first = false;
    onListening(true);
    return subscriber;
  } catch (error) {
    subscriber.disconnect();
    throw error;
  }
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
