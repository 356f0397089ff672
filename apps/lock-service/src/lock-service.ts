/**
 * The lock-service app of cluster mode: takes lock requests from the BullMQ queue
 * LOCK_REQUEST_QUEUE, holds the repository-side locks (ClusterLockHolder), releases them on
 * unlock messages (pub/sub) and expiry, and serves /healthz, /readyz and /metrics. It owns, and
 * ends on close in this order: the worker (no new requests; running ones finish), the held locks
 * (their sessions end by a signal, leaving git-annex's retention files), the sessions, the health server, the Redis connections.
 * Every step is bounded and those that need Redis are skipped while it is unreachable
 * (shutdown-steps.ts), so that it stops in time whatever the state of Redis.
 */
import { access, constants } from 'node:fs/promises';
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { Worker } from 'bullmq';
import { type LockServiceConfig } from '@annex-p2phttp/config';
import {
  boundedStep,
  Deadline,
  InFlight,
  NO_ANSWER_FROM_REDIS,
  OperationExecutor,
  REDIS_STEP_MS,
  redisUnreachable,
  RepositoryRegistry,
  SHUTDOWN_CLEANUP_MS,
  unwritableAdvice,
  WritableCheck,
} from '@annex-p2phttp/ops';
import { subscription } from '@annex-p2phttp/redis';
import {
  closeRedis,
  ClusterLockHolder,
  LOCK_REQUEST_QUEUE,
  openRedis,
  RedisLockStore,
  whenReady,
  type LockReply,
  type LockRequest,
} from '@annex-p2phttp/locks';
import { logFunction, loggerFor, Metrics, mirrorRedis, type Logger } from '@annex-p2phttp/metrics';
import { LocalShellConnector, SessionPool } from '@annex-p2phttp/p2p';
import { PrimaryWatch } from '@annex-p2phttp/redis';
import { startHealthServer } from './health-server';

export const DEFAULT_LOCK_CONCURRENCY = 16;
export const DEFAULT_SHUTDOWN_DEADLINE_MS = 10_000;

/** What the command line does not set: for tests. */
export interface LockServiceTuning {
  /** Lock requests handled at once (default 16). */
  readonly concurrency?: number;
  /** This instance's holder identity (default host:pid:random). */
  readonly holder?: string;
  readonly holderTtlMs?: number;
  readonly sweepIntervalMs?: number;
  /** How long SIGTERM/close waits for locks to be released (default 10 s). */
  readonly shutdownDeadlineMs?: number;
  /** The structured log (default: from the config's --log-format and --log-level). */
  readonly logger?: Logger;
  /** Overrides where its messages go (tests). */
  readonly log?: (message: string) => void;
}

export interface RunningLockService {
  readonly holder: string;
  /** Base URL of the health server. */
  readonly healthUrl: string;
  readonly locks: ClusterLockHolder;
  readonly metrics: Metrics;
  close(): Promise<void>;
}

export async function startLockService(
  config: LockServiceConfig,
  tuning: LockServiceTuning = {},
): Promise<RunningLockService> {
  const logger = tuning.logger ?? loggerFor(config, 'lock-service');
  const log = tuning.log ?? logFunction(logger, 'warn');
  const registry = new RepositoryRegistry({
    repos: [...config.repos],
    directories: [...config.directories],
    log,
  });
  try {
    await registry.init();
  } catch (error) {
    registry.close();
    throw error;
  }
  // Taking a lock writes in the repository (git-annex's lock and retention files).
  const writable = new WritableCheck(() =>
    registry
      .list()
      .filter((repo) => repo.kind === 'repository')
      .map((repo) => repo.path),
  );
  for (const dir of await writable.unwritable()) {
    log(unwritableAdvice(dir));
  }

  const holderId = tuning.holder ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const redis = openRedis(config.redis, 'command', 'annex-p2phttp-lock-service');
  const workerRedis = openRedis(config.redis, 'blocking', 'annex-p2phttp-lock-worker');
  let subscriber: Awaited<ReturnType<typeof subscription>> | undefined;
  const closeConnections = () =>
    Promise.all(
      [redis, workerRedis, ...(subscriber ? [subscriber] : [])].map((connection) =>
        closeRedis(connection),
      ),
    );

  const pool = new SessionPool({
    connector: new LocalShellConnector({ debug: config.debug, clusterJobs: config.clusterJobs }),
    // Locks take uncounted sessions; nothing else runs here, and no session is kept idle.
    maxActive: 1,
    maxIdle: 0,
  });
  const executor = new OperationExecutor(pool);
  const store = new RedisLockStore(redis, config.redisPrefix);
  const metrics = new Metrics('lock-service');
  const primary = new PrimaryWatch(redis);
  mirrorRedis(metrics, () => primary.stats());
  const locks = new ClusterLockHolder({
    store,
    locker: executor,
    registry,
    holder: holderId,
    redisProblem: () => redisUnreachable(redis),
    holderTtlMs: tuning.holderTtlMs,
    sweepIntervalMs: tuning.sweepIntervalMs,
    onExpired: () => metrics.lockExpirations.inc(),
    log,
  });
  metrics.onCollect(() => metrics.locksLive.set(locks.size));

  /** Lock requests being handled, so that shutdown can wait for them whatever Redis does. */
  const requests = new InFlight();
  let worker: Worker<LockRequest, LockReply> | null = null;
  try {
    await whenReady(redis);
    subscriber = await subscription(
      config.redis,
      store.keys.unlockChannel,
      (lockid) => void locks.unlocked(lockid),
      'annex-p2phttp-lock-unlocks',
    );
    await locks.start();
    worker = new Worker<LockRequest, LockReply>(
      LOCK_REQUEST_QUEUE,
      (job) =>
        requests.run(async () => {
          // Queued on an earlier primary (it outlived a failover): its gateway answered 503
          // when it lost that primary, and nobody would keep or release the lock.
          if (await primary.isAnotherPrimary(job.data.primary)) {
            metrics.queueJobsStale.inc();
            throw new Error('queued on an earlier Redis primary (before a failover): not run');
          }
          return locks.handle(job.data);
        }),
      {
        connection: workerRedis,
        prefix: store.keys.bullPrefix,
        concurrency: tuning.concurrency ?? DEFAULT_LOCK_CONCURRENCY,
        // A request whose lock-service died is not run again: its gateway answers 503.
        maxStalledCount: 0,
        // Wait for requests in blocks of one second, so that closing does not wait longer.
        drainDelay: 1,
      },
    );
    worker.on('error', (error) => log(`lock request worker: ${error.message}`));
  } catch (error) {
    await locks.close(0);
    await pool.close(true);
    await closeConnections();
    throw error;
  }

  const repoPaths = [...config.repos, ...config.directories];
  const health = await startHealthServer({
    port: config.healthPort,
    host: config.healthHost,
    metrics,
    log: logger,
    checks: {
      redis: () =>
        redis.ping().then(
          () => null,
          (error: unknown) =>
            `Redis unreachable: ${error instanceof Error ? error.message : String(error)}`,
        ),
      repositories: async () => {
        for (const path of repoPaths) {
          try {
            await access(path, constants.R_OK | constants.X_OK);
          } catch {
            return `repository not readable: ${path}`;
          }
        }
        return null;
      },
      writable: () => writable.problem(),
    },
  });

  const running = worker;
  let closing: Promise<void> | null = null;
  const close = () => {
    closing ??= (async () => {
      registry.close();
      const grace = new Deadline(tuning.shutdownDeadlineMs ?? DEFAULT_SHUTDOWN_DEADLINE_MS);
      const cleanup = grace.extended(SHUTDOWN_CLEANUP_MS);
      // No new requests; those running finish (or give up by the deadline). BullMQ's close
      // also waits for its connections, which never comes while Redis is unreachable: the
      // requests themselves are awaited here.
      const stopped = running.close();
      stopped.catch(() => undefined);
      await boundedStep('finish the lock requests in flight', () => requests.idle(), {
        withinMs: grace.remaining,
        log,
      });
      await boundedStep('stop holding locks', () => locks.close(grace.remaining), {
        withinMs: cleanup.remaining,
        log,
      });
      await boundedStep('end the sessions', () => pool.close(), {
        withinMs: cleanup.remaining,
        cut: () => void pool.close(true),
        log,
      });
      await health.close();
      const connections = [redis, workerRedis, ...(subscriber ? [subscriber] : [])];
      await boundedStep(
        'close the lock request queue and the Redis connections',
        () => Promise.all([stopped, ...connections.map((connection) => closeRedis(connection))]),
        {
          withinMs: cleanup.cap(REDIS_STEP_MS),
          late: NO_ANSWER_FROM_REDIS,
          skip: redisUnreachable(redis),
          cut: () => {
            running.disconnect().catch(() => undefined);
            for (const connection of connections) {
              connection.disconnect();
            }
          },
          log,
        },
      );
    })();
    return closing;
  };
  return { holder: holderId, healthUrl: health.url, locks, metrics, close };
}
