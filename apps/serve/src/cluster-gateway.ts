/**
 * The gateway of cluster mode (`annex-p2phttp gateway`, or `serve --redis URL`): the same HTTP API
 * as the embedded server, with the BullMQ dispatcher and the cluster directory (uuids learnt from
 * the proxy workers' adverts) behind it. It holds no repository and no session: every operation
 * is a job for a proxy worker. Retention locks are asked of the lock-service through Redis
 * (ClusterRetentionLocks), so any gateway can lock, keep, unlock and check any lock. The backend
 * is composed here and plugged into the HTTP API of apps/gateway (`startGateway`), as embedded.ts
 * plugs the embedded one.
 */
import { type GatewayConfig } from '@annex-p2phttp/config';
import {
  BullMqDispatcher,
  ClusterDirectory,
  ClusterKeys,
  commandConnection,
  connected,
} from '@annex-p2phttp/dispatch';
import {
  boundedStep,
  Deadline,
  NO_ANSWER_FROM_REDIS,
  REDIS_STEP_MS,
  redisUnreachable,
} from '@annex-p2phttp/ops';
import { ClusterRetentionLocks, type RetentionLocks } from '@annex-p2phttp/locks';
import { logFunction, loggerFor, Metrics, mirrorRedis, type Logger } from '@annex-p2phttp/metrics';
import type Redis from 'ioredis';
import { describeRedisTarget, parseRedisUrl } from '@annex-p2phttp/redis';
import { startGateway, type RunningGateway } from '@annex-p2phttp/gateway';
import { gatewayShutdown } from './gateway-shutdown';

/** What a RetentionLocks factory gets to build cluster-wide locks. */
export interface ClusterLocksContext {
  readonly options: GatewayConfig;
  readonly keys: ClusterKeys;
  /** The gateway's command connection (fail-fast); owned by the gateway. */
  readonly redis: Redis;
}

export type RetentionLocksFactory = (context: ClusterLocksContext) => RetentionLocks;

export interface RunningClusterGateway extends RunningGateway {
  readonly dispatcher: BullMqDispatcher;
  readonly directory: ClusterDirectory;
}

/** Where the URL points, without its passwords, for the log. */
export function describeRedis(url: string): string {
  return describeRedisTarget(parseRedisUrl(url));
}

export async function startClusterGateway(
  options: GatewayConfig,
  env: NodeJS.ProcessEnv = process.env,
  locksFactory?: RetentionLocksFactory,
  logger: Logger = loggerFor(options, 'gateway'),
): Promise<RunningClusterGateway> {
  const log = logFunction(logger, 'warn');
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
    log(`redis: not reachable yet (${describeRedis(options.redis)}); answering 503 until it is`);
  }
  // While the cluster starts (directory.ts), a request for a uuid no worker has advertised yet
  // waits for the adverts as a job waits for a worker: at most --queue-wait, then 503.
  const directory = new ClusterDirectory({ redis, keys, startupWaitMs: options.queueWaitMs });
  const dispatcher = new BullMqDispatcher({
    redisUrl: options.redis,
    redis,
    keys,
    queueWaitMs: options.queueWaitMs,
    jobTimeoutMs: options.jobTimeoutMs,
    log,
    uploadIdleMs: options.uploadIdleMs,
  });
  let locks: RetentionLocks;
  let clusterLocks: ClusterRetentionLocks | undefined;
  if (locksFactory) {
    locks = locksFactory({ options, keys, redis });
  } else {
    clusterLocks = new ClusterRetentionLocks({
      redisUrl: options.redis,
      prefix: options.redisPrefix,
      lockedFiles: options.lockedFiles,
      ttlMs: options.lockTtlMs,
    });
    // Not fatal: lock requests answer 503 until Redis is there.
    await clusterLocks.ready().catch((error: unknown) => log(`locks: ${String(error)}`));
    locks = clusterLocks;
  }
  const metrics = new Metrics('gateway');
  mirrorRedis(metrics, () => dispatcher.primary.stats());
  metrics.onCollect(() => {
    const stats = dispatcher.stats();
    metrics.poolWaiters.set(stats.waiting);
    metrics.streams.set(stats.streams);
  });
  // Both checks of /readyz read the directory once.
  let reading: ReturnType<ClusterDirectory['read']> | null = null;
  const readDirectory = () =>
    (reading ??= directory.read().finally(() => {
      reading = null;
    }));
  const gateway = await startGateway(
    options,
    {
      directory,
      dispatcher,
      locks,
      metrics,
      checks: {
        redis: () => readDirectory().then(() => null),
        'proxy-workers': async () => {
          const { workers, starting } = await readDirectory();
          const detail = `${workers} live, ${starting} starting`;
          return workers > 0 ? { note: detail } : detail;
        },
      },
      // Each step is bounded and skipped while Redis is unreachable (shutdown-steps.ts).
      close: async (graceMs) => {
        const grace = new Deadline(graceMs);
        await boundedStep('close the lock queue', () => locks.close(), {
          withinMs: grace.cap(REDIS_STEP_MS),
          late: NO_ANSWER_FROM_REDIS,
          skip: redisUnreachable(redis),
          cut: () =>
            clusterLocks ? clusterLocks.disconnect() : void locks.close().catch(() => {}),
          log,
        });
        await dispatcher.close(grace.remaining);
        redis.disconnect();
      },
      shutdown: gatewayShutdown(logger),
    },
    env,
    logger,
  );
  return { ...gateway, dispatcher, directory };
}
