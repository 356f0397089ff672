/**
 * The proxy worker of cluster mode (`annex-p2phttp proxy-worker`): takes jobs from the --shards
 * BullMQ queues of its worker group (keys.ts; a repository's jobs go to the queue of its uuid's
 * shard, and each job names the uuid), up to --worker-jobs at once per queue: jobs served from
 * the object files need no session, and those that do wait for one of the --jobs session slots,
 * see job-processor.ts. It runs them on its own pool of git-annex-shell sessions, streams get
 * and put bytes over its data port, and advertises the uuids it serves (each repository's own
 * and those it proxies) with their queue in Redis: its advert with a heartbeat TTL, its routes
 * only as they change (directory.ts). So its Redis connections and its per-heartbeat work do not
 * grow with the number of repositories it serves.
 *
 * A worker group is the set of workers that serve the same repositories (replicas on shared
 * storage): --worker-group, by default derived from the worker's --repo and --directory paths, so
 * that workers configured alike share their queues and workers that are not never take each
 * other's jobs. A worker that takes a job for a uuid it does not serve (yet) refuses it as not
 * served, before doing anything, and the gateway sends it again (bullmq-dispatcher.ts).
 *
 * A job runs once: stalled jobs (their worker died) are failed, not re-run (maxStalledCount 0).
 * Shutdown (close): withdraw the advert, stop taking jobs, let running ones finish until the
 * deadline, then cancel them and end every session, then close the queues. Steps that need Redis
 * are bounded and skipped while it is unreachable (shutdown-steps.ts), so that the worker stops
 * within its grace whatever the state of Redis; the log says what could not be done.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { hostname } from 'node:os';
import { type AddressInfo } from 'node:net';
import { Queue, Worker } from 'bullmq';
import {
  repositoryLocation,
  type RepositoriesConfig,
  type WorkerConfig,
} from '@annex-p2phttp/config';
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
  SHUTDOWN_GRACE_MS,
  unwritableAdvice,
  waitUntil,
  WritableCheck,
} from '@annex-p2phttp/ops';
import {
  blockingOptions,
  ClusterKeys,
  commandConnection,
  connected,
  DispatchError,
  encodeFailure,
  quietLog,
  queueOf,
  RouteAdvertiser,
  shardQueue,
  type Route,
  QueryServer,
  STREAM_PATH,
  StreamTable,
  subscription,
  unavailable,
  type JobOperation,
  type JobPayload,
  type JobResult,
  type WorkerAdvert,
} from '@annex-p2phttp/dispatch';
import {
  handleHealthRequest,
  Health,
  HEALTH_PATHS,
  logFunction,
  loggerFor,
  logNodeRequest,
  Metrics,
  mirrorPool,
  mirrorRedis,
  type Logger,
} from '@annex-p2phttp/metrics';
import { describeRedisTarget, parseRedisUrl, PrimaryWatch } from '@annex-p2phttp/redis';
import { LocalShellConnector, SessionPool } from '@annex-p2phttp/p2p';
import { JobProcessor, type ClusterJob } from './job-processor';

export interface ProxyWorkerTuning {
  /** Advert refresh interval; the advert lives three times as long. Default 2000 ms. */
  readonly heartbeatMs?: number;
  /** How long an offered stream waits for its gateway. Default 5000 ms. */
  readonly claimTimeoutMs?: number;
  /** The structured log (default: from the options' --log-format and --log-level). */
  readonly logger?: Logger;
  /** Overrides where its messages go (tests). */
  readonly log?: (message: string) => void;
}

export interface RunningProxyWorker {
  readonly id: string;
  /** The data port's advertised base URL. */
  readonly url: string;
  /** The data port's local address. */
  readonly listening: string;
  readonly pool: SessionPool;
  /** Stops as the module comment says; in-flight jobs get `graceMs`. */
  close(graceMs?: number): Promise<void>;
}

interface ShardWorker {
  readonly worker: Worker<JobPayload, JobResult, JobOperation>;
  /** For queue metrics. */
  readonly queue: Queue;
}

const DEFAULT_HEARTBEAT_MS = 2000;
/** How often the worker looks whether its repositories changed (an O(1) check). */
const ROUTE_CHECK_MS = 250;

/**
 * The worker group unless --worker-group names one: a hash of the --repo and --directory paths,
 * so that workers configured alike (replicas on shared storage) form one group.
 */
export function defaultWorkerGroup(options: RepositoriesConfig): string {
  const roots = JSON.stringify([[...options.repos].sort(), [...options.directories].sort()]);
  return `g${createHash('sha256').update(roots).digest('hex').slice(0, 12)}`;
}

export async function startProxyWorker(
  options: WorkerConfig,
  tuning: ProxyWorkerTuning = {},
): Promise<RunningProxyWorker> {
  const logger = tuning.logger ?? loggerFor(options, 'proxy-worker');
  const log = quietLog(tuning.log ?? logFunction(logger, 'warn'));
  const heartbeatMs = tuning.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
  const keys = new ClusterKeys(options.redisPrefix);
  const id = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const group = options.workerGroup ?? defaultWorkerGroup(options);
  const shards = options.shards;
  const queueNames = Array.from({ length: shards }, (_, shard) => shardQueue(group, shards, shard));
  const queueFor = (repository: string) => queueOf(group, shards, repository);

  const startedAt = Date.now();
  const redis = commandConnection(options.redis, `annex-p2phttp:proxy-worker:${id}`);
  redis.on('error', () => {}); // reconnects by itself; readiness reports it
  const primary = new PrimaryWatch(redis);
  const advertiser = new RouteAdvertiser(redis, keys, heartbeatMs * 3);
  // Until its repositories are read, the worker tells gateways that it is starting, so that they
  // answer 503 rather than 404 for the uuids it is about to serve (directory.ts).
  const announceStarting = () => {
    const advert: WorkerAdvert = { id, url: '', group, shards, jobs: options.jobs, startedAt };
    void advertiser.publish({ ...advert, starting: true }).catch(() => {});
  };
  redis.on('ready', announceStarting);
  const starting = setInterval(announceStarting, heartbeatMs);
  starting.unref();
  const registry = new RepositoryRegistry({
    repos: [...options.repos],
    directories: [...options.directories],
    log,
  });
  try {
    // Reads the --repo repositories; those below --directory are served (and advertised, the
    // advert saying `starting` until the first walk is done) as they are found.
    await registry.start();
  } catch (error) {
    registry.close();
    await advertiser.withdraw(id).catch(() => {});
    redis.disconnect();
    throw error;
  } finally {
    clearInterval(starting);
    redis.off('ready', announceStarting);
  }
  const writable = new WritableCheck(() =>
    registry
      .list()
      .filter((repo) => repo.kind === 'repository')
      .map((repo) => repo.path),
  );
  for (const dir of await writable.unwritable()) {
    log(unwritableAdvice(dir));
  }
  const pool = new SessionPool({
    connector: new LocalShellConnector({ debug: options.debug, clusterJobs: options.clusterJobs }),
    maxActive: options.jobs,
    maxIdle: options.proxyConnections,
  });
  const executor = new OperationExecutor(pool, undefined, {
    log,
    uploadIdleMs: options.uploadIdleMs,
  });
  const streams = new StreamTable(tuning.claimTimeoutMs);
  const metrics = new Metrics('proxy-worker');
  mirrorRedis(metrics, () => primary.stats());

  if (!(await connected(redis, 10_000))) {
    log(
      `redis: not reachable yet (${describeRedisTarget(parseRedisUrl(options.redis))}); advertising once it is`,
    );
  }

  const shardWorkers = new Map<string, ShardWorker>();
  /** uuid → route, for every uuid served (as last advertised). */
  let routes = new Map<string, Route>();
  /** The registry's generation `routes` were made at. */
  let routesAt = -1;
  /** Jobs being run, so that shutdown can wait for them whether or not Redis is there. */
  const jobs = new InFlight();
  let stopping = false;
  let closing: Promise<void> | null = null;

  const health = new Health(metrics, {
    accepting: () => Promise.resolve(stopping ? 'shutting down' : null),
    redis: () => redis.ping().then(() => null),
    repositories: () =>
      Promise.resolve(
        !registry.firstScanFinished
          ? 'still reading the repositories'
          : routes.size === 0
            ? 'no repository served'
            : null,
      ),
    writable: () => writable.problem(),
    queues: () => {
      const stopped = [...shardWorkers]
        .filter(([, entry]) => !entry.worker.isRunning())
        .map(([queue]) => `queue ${queue}: worker not running`);
      return Promise.resolve(stopped.length === 0 ? null : stopped.join(', '));
    },
  });
  // The data port: streams (get and put bytes), and the health paths.
  const server = createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0] ?? '';
    logNodeRequest(logger, request, response, dataPortRoute(path));
    if (streams.handle(request, response) || handleHealthRequest(health, request, response)) {
      return;
    }
    const allowed = request.method === 'GET' || request.method === 'HEAD';
    response
      .writeHead(allowed ? 404 : 405, { 'content-type': 'text/plain;charset=utf-8' })
      .end(allowed ? 'not found\n' : 'method not allowed\n');
  });

  const listening = await listen(server, options);
  const url = options.advertiseUrl ?? defaultAdvertiseUrl(options, listening.port);

  const processor = new JobProcessor({
    registry,
    executor,
    streams,
    baseUrl: url,
    sessionWaitMs: options.queueWaitMs,
    queueOf: queueFor,
  });
  mirrorPool(metrics, () => ({ ...executor.stats(), streams: processor.streams }));
  const queries = new QueryServer({
    redisUrl: options.redis,
    redis,
    keys,
    concurrency: options.workerJobs,
    log,
    handle: async (queue, payload, signal) => {
      const started = performance.now();
      try {
        return await processor.query(payload, queue, signal);
      } finally {
        metrics.queueJobDuration.observe(
          { queue, operation: payload.op },
          (performance.now() - started) / 1000,
        );
      }
    },
  });

  /**
   * The routes of every uuid served now (each repository's own and those it proxies, through
   * the repository's shard queue), when the registry changed since they were made; else null.
   */
  const changedRoutes = (): Map<string, Route> | null => {
    const generation = registry.generation;
    if (generation === routesAt) {
      return null;
    }
    routesAt = generation;
    const locations = new Map<string, string>();
    const next = new Map<string, Route>();
    const list = registry.list();
    for (const repo of list) {
      if (repo.kind === 'repository') {
        const location = repositoryLocation(repo.path, options.directories);
        locations.set(repo.uuid, location);
        next.set(repo.uuid, { queue: queueFor(repo.uuid), location });
      }
    }
    for (const repo of list) {
      if (repo.kind !== 'repository' && repo.gateway !== undefined) {
        const location = locations.get(repo.gateway);
        if (location !== undefined) {
          next.set(repo.uuid, { queue: queueFor(repo.gateway), location });
        }
      }
    }
    routes = next;
    return next;
  };

  const startQueue = (queue: string): ShardWorker => {
    const worker = new Worker<JobPayload, JobResult, JobOperation>(
      queue,
      (job: ClusterJob, _token, signal) =>
        jobs.run(async () => {
          const started = performance.now();
          try {
            // A job that outlived a failover while its completion did not: it ran already, or
            // its requester gave up on it when it lost that primary. Either way, not again.
            if (await primary.isAnotherPrimary(job.data.primary)) {
              metrics.queueJobsStale.inc();
              log(`queue ${queue}: a job queued on an earlier Redis primary is not run`);
              throw unavailable('queued on an earlier Redis primary (before a failover): not run');
            }
            return await processor.process(job, queue, signal ?? new AbortController().signal);
          } catch (error) {
            // The reason carries the error code to the gateway (see encodeFailure).
            throw new Error(encodeFailure(error));
          } finally {
            metrics.queueJobDuration.observe(
              { queue, operation: job.name },
              (performance.now() - started) / 1000,
            );
          }
        }),
      {
        connection: blockingOptions(options.redis),
        prefix: keys.bullPrefix,
        name: id,
        concurrency: options.workerJobs,
        maxStalledCount: 0,
        stalledInterval: options.stallCheckMs,
        lockDuration: options.stallCheckMs,
        removeOnFail: { age: 3600, count: 1000 },
      },
    );
    worker.on('error', (error) => log(`queue ${queue}: ${error.message}`));
    worker.on('failed', (job) => {
      metrics.queueJobsFailed.inc({ queue, operation: job?.name ?? 'unknown' });
    });
    const metricsQueue = new Queue(queue, { connection: redis, prefix: keys.bullPrefix });
    metricsQueue.on('error', () => {});
    return { worker, queue: metricsQueue };
  };

  for (const queue of queueNames) {
    shardWorkers.set(queue, startQueue(queue));
  }
  queries.setQueues(queueNames);

  metrics.onCollect(async () => {
    for (const [queue, entry] of shardWorkers) {
      try {
        const counts = await entry.queue.getJobCounts('wait', 'active');
        metrics.queueJobs.set({ queue, state: 'waiting' }, counts.wait ?? 0);
        metrics.queueJobs.set({ queue, state: 'active' }, counts.active ?? 0);
      } catch {
        // Redis down: keep the last values; /readyz says why.
      }
    }
  });

  /** Refreshes the advert; with `routes`, the uuids served changed and are written too. */
  const publish = async (changed: Map<string, Route> | null) => {
    const advert: WorkerAdvert = {
      id,
      url,
      group,
      shards,
      jobs: options.jobs,
      startedAt,
      ...(registry.firstScanFinished ? {} : { starting: true as const }),
    };
    await advertiser.publish(advert, changed ?? undefined);
  };
  const heartbeat = async () => {
    try {
      await registry.refresh();
      if (stopping) {
        return; // withdrawn, or about to be: never advertise again
      }
      await publish(changedRoutes());
    } catch (error) {
      log(`advert not refreshed: ${error instanceof Error ? error.message : String(error)}`);
    }
  };
  /** Between heartbeats: what changed is advertised at once (gateways learn it within ~1 s). */
  const checkRoutes = async () => {
    if (stopping || registry.generation === routesAt || redis.status !== 'ready') {
      return;
    }
    try {
      await publish(changedRoutes());
    } catch (error) {
      log(`routes not advertised: ${error instanceof Error ? error.message : String(error)}`);
    }
  };
  // Redis back (perhaps empty after a restart): advertise at once.
  redis.on('ready', () => void heartbeat());
  if (redis.status === 'ready') {
    await heartbeat();
  }
  const timer = setInterval(() => void heartbeat(), heartbeatMs);
  timer.unref();
  const routeTimer = setInterval(() => void checkRoutes(), ROUTE_CHECK_MS);
  routeTimer.unref();
  // The first walk done: say so at once (gateways stop answering 503 for unknown uuids).
  registry.whenScanned().then(
    () => void heartbeat(),
    (error: unknown) => log(`reading the repositories failed: ${String(error)}`),
  );

  const subscriber = await subscription(options.redis, keys.cancel, (jobId) => {
    for (const entry of shardWorkers.values()) {
      entry.worker.cancelJob(jobId, 'the requester went away');
    }
  }).catch(() => null); // Redis not there yet: only cancelling waits for its own bounds

  const close = (graceMs = SHUTDOWN_GRACE_MS): Promise<void> => {
    closing ??= (async () => {
      stopping = true;
      clearInterval(timer);
      clearInterval(routeTimer);
      registry.close();
      const grace = new Deadline(graceMs);
      const cleanup = grace.extended(SHUTDOWN_CLEANUP_MS);
      await boundedStep('withdraw the advert', () => advertiser.withdraw(id), {
        withinMs: grace.cap(REDIS_STEP_MS),
        late: NO_ANSWER_FROM_REDIS,
        skip: redisUnreachable(redis),
        log,
      });
      // Stop taking jobs and queries. BullMQ's close also waits for its connections, which
      // never comes while Redis is unreachable: the jobs themselves are awaited here.
      const workers = [...shardWorkers.values()];
      const queuesClosed = Promise.all(workers.map((entry) => entry.worker.close()));
      queuesClosed.catch(() => {});
      // BullMQ may hand out one more job as it is being closed: its workers stop running once
      // nothing is being fetched or run, which takes Redis (and no longer than a Redis step).
      const stillFetching = waitUntil(() => workers.every((entry) => !entry.worker.isRunning()));
      const drained = async () => {
        await Promise.all([jobs.idle(), queries.close(grace.remaining)]);
        await boundedStep('see the job queues stop', () => stillFetching.reached, {
          withinMs: grace.cap(REDIS_STEP_MS),
          skip: redisUnreachable(redis),
          cut: stillFetching.stop,
          log: () => {},
        });
        await jobs.idle();
      };
      await boundedStep('finish the running jobs', drained, {
        withinMs: grace.remaining,
        cut: () => {
          stillFetching.stop();
          for (const entry of workers) {
            entry.worker.cancelAllJobs('shutting down');
          }
          streams.close(new DispatchError('DISPATCH_UNAVAILABLE', 'shutting down'));
          void pool.close(true);
        },
        log,
      });
      streams.close(new DispatchError('DISPATCH_UNAVAILABLE', 'shutting down'));
      // Sessions, then what is left in the journals, by the end of the cleanup at the latest.
      await executor.close(cleanup.cap(SHUTDOWN_CLEANUP_MS), log, cleanup);
      await boundedStep(
        'close the job queues',
        () => Promise.all([queuesClosed, ...workers.map((entry) => entry.queue.close())]),
        {
          withinMs: cleanup.cap(REDIS_STEP_MS),
          late: NO_ANSWER_FROM_REDIS,
          skip: workers.length > 0 ? redisUnreachable(redis) : null,
          cut: () => {
            for (const entry of workers) {
              entry.worker.disconnect().catch(() => {});
            }
          },
          log,
        },
      );
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      subscriber?.disconnect();
      redis.disconnect();
    })();
    return closing;
  };

  return { id, url, listening: `http://${listening.host}:${listening.port}`, pool, close };
}

async function listen(
  server: Server,
  options: Pick<WorkerConfig, 'bind' | 'dataPort'>,
): Promise<{ host: string; port: number }> {
  const host = options.bind[0];
  const attempt = (where: string) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.dataPort, where, () => {
        server.off('error', reject);
        resolve();
      });
    });
  try {
    await attempt(host ?? '::');
  } catch (error) {
    if (host !== undefined || (error as NodeJS.ErrnoException).code !== 'EAFNOSUPPORT') {
      throw error;
    }
    await attempt('0.0.0.0');
  }
  const address = server.address() as AddressInfo;
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return { host: shown, port: address.port };
}

/** http://BIND:PORT for a specific --bind address, else http://HOSTNAME:PORT. */
export function defaultAdvertiseUrl(options: Pick<WorkerConfig, 'bind'>, port: number): string {
  const bind = options.bind[0];
  if (bind !== undefined && bind !== '::' && bind !== '0.0.0.0') {
    return `http://${bind.includes(':') ? `[${bind}]` : bind}:${port}`;
  }
  return `http://${hostname()}:${port}`;
}

/** The access log's name for a request on the data port. */
function dataPortRoute(path: string): string {
  if (path.startsWith(STREAM_PATH)) {
    return 'stream';
  }
  return HEALTH_PATHS.includes(path) ? path.slice(1) : 'unmatched';
}
