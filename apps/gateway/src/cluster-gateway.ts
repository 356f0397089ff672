/**
 * The gateway of cluster mode (`annex-p2phttp gateway`, or `serve --redis URL`): the same HTTP API
 * as the embedded server, with the BullMQ dispatcher and the cluster directory (uuids learnt from
 * the proxy workers' adverts) behind it. It holds no repository and no session: every operation
 * is a job for a proxy worker. Its retention locks come from `locks` (the lock service's
 * RetentionLocks); without one, lockcontent answers 503.
 */
import { type ServeOptions } from '@annex-p2phttp/config';
import {
  BullMqDispatcher,
  ClusterDirectory,
  ClusterKeys,
  commandConnection,
  connected,
} from '@annex-p2phttp/dispatch';
import { type RetentionLocks } from '@annex-p2phttp/locks';
import type Redis from 'ioredis';
import { startGateway, type RunningGateway } from './server';
import { UnavailableRetentionLocks } from './unavailable-locks';

export interface ClusterGatewayOptions extends ServeOptions {
  readonly redis: string;
}

/** What a RetentionLocks factory gets to build cluster-wide locks. */
export interface ClusterLocksContext {
  readonly options: ClusterGatewayOptions;
  readonly keys: ClusterKeys;
  /** The gateway's command connection (fail-fast); owned by the gateway. */
  readonly redis: Redis;
}

export type RetentionLocksFactory = (context: ClusterLocksContext) => RetentionLocks;

export interface RunningClusterGateway extends RunningGateway {
  readonly dispatcher: BullMqDispatcher;
  readonly directory: ClusterDirectory;
}

export async function startClusterGateway(
  options: ClusterGatewayOptions,
  env: NodeJS.ProcessEnv = process.env,
  locksFactory?: RetentionLocksFactory,
): Promise<RunningClusterGateway> {
  const log = (message: string) => process.stderr.write(`annex-p2phttp: ${message}\n`);
  const keys = new ClusterKeys(options.redisPrefix);
  const redis = commandConnection(options.redis, 'annex-p2phttp:gateway');
  let lastError = '';
  redis.on('error', (error: Error) => {
    // Reconnects by itself; say so once per distinct problem.
    if (error.message !== lastError) {
      lastError = error.message;
      log(`redis: ${error.message}`);
    }
  });
  redis.on('ready', () => {
    lastError = '';
  });
  if (!(await connected(redis, 10_000))) {
    log(`redis: not reachable yet at ${options.redis}; answering 503 until it is`);
  }
  const directory = new ClusterDirectory({ redis, keys });
  const dispatcher = new BullMqDispatcher({
    redisUrl: options.redis,
    redis,
    keys,
    queueWaitMs: options.queueWaitMs,
    jobTimeoutMs: options.jobTimeoutMs,
    log,
  });
  const locks = locksFactory?.({ options, keys, redis }) ?? new UnavailableRetentionLocks();
  const gateway = await startGateway(
    options,
    {
      directory,
      dispatcher,
      locks,
      readiness: async () => {
        try {
          const snapshot = await directory.read();
          return snapshot.workers === 0 ? ['no live proxy worker'] : [];
        } catch (error) {
          return [error instanceof Error ? error.message : String(error)];
        }
      },
      close: async (graceMs) => {
        await locks.close();
        await dispatcher.close(graceMs);
        redis.disconnect();
      },
    },
    env,
  );
  return { ...gateway, dispatcher, directory };
}
