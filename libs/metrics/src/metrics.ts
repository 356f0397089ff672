/**
 * The Prometheus metrics every app exposes at /metrics, defined once so that the names, units and
 * labels are the same whichever process serves them. Labels are low-cardinality only: never keys,
 * lockids, client or repository UUIDs. Each app creates its own registry (with an `app` default
 * label) and fills in the families it has; gauges that mirror a component's state are read when
 * Prometheus scrapes, through collectors registered with `onCollect`.
 */
import {
  collectDefaultMetrics,
  Counter,
  Gauge,
  Histogram,
  Registry,
  type CounterConfiguration,
} from 'prom-client';

export type AppName = 'gateway' | 'proxy-worker' | 'lock-service' | 'embedded';

const PREFIX = 'annex_p2phttp_';

/** Seconds; from a cached checkpresent (~1 ms) to a slow multi-gigabyte transfer. */
const DURATION_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120, 600,
];

export class Metrics {
  readonly registry = new Registry();

  readonly httpRequests: Counter<'route' | 'version' | 'method' | 'status'>;
  readonly httpDuration: Histogram<'route' | 'version' | 'method'>;
  readonly httpSentBytes: Counter<'route'>;
  readonly httpReceivedBytes: Counter<'route'>;

  readonly poolConnections: Gauge<'state'>;
  readonly poolWaiters: Gauge;
  readonly poolOpens: Counter;
  readonly poolOpenFailures: Counter;
  readonly poolEvictions: Counter;
  readonly poolExpirations: Counter;
  readonly streams: Gauge;

  readonly locksLive: Gauge;
  readonly lockExpirations: Counter;
  readonly keepLockedOpen: Gauge;

  readonly queueJobs: Gauge<'queue' | 'state'>;
  readonly queueJobsFailed: Counter<'queue' | 'operation'>;
  readonly queueJobDuration: Histogram<'queue' | 'operation'>;
  readonly queueJobsStale: Counter;

  readonly redisConnected: Gauge;
  readonly redisReconnects: Counter;
  readonly redisPrimaryChanges: Counter;

  private readonly collectors: (() => void | Promise<void>)[] = [];

  constructor(readonly app: AppName) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ app });
    collectDefaultMetrics({ register: this.registry });

    this.httpRequests = new Counter({
      name: `${PREFIX}http_requests_total`,
      help: 'HTTP requests answered, by route, API version, method and status code.',
      labelNames: ['route', 'version', 'method', 'status'],
      registers,
    });
    this.httpDuration = new Histogram({
      name: `${PREFIX}http_request_duration_seconds`,
      help: 'Time from receiving an HTTP request to the end of its response.',
      labelNames: ['route', 'version', 'method'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.httpSentBytes = counter(registers, 'http_sent_bytes_total', 'Response body bytes sent.', [
      'route',
    ]);
    this.httpReceivedBytes = counter(
      registers,
      'http_received_bytes_total',
      'Request body bytes received.',
      ['route'],
    );

    this.poolConnections = new Gauge({
      name: `${PREFIX}pool_connections`,
      help: 'P2P connections (git-annex-shell sessions) by state: idle, active or locking.',
      labelNames: ['state'],
      registers,
    });
    this.poolWaiters = new Gauge({
      name: `${PREFIX}pool_waiters`,
      help: 'Operations waiting for a free job slot.',
      registers,
    });
    this.poolOpens = counter(registers, 'pool_opens_total', 'P2P connections opened.');
    this.poolOpenFailures = counter(
      registers,
      'pool_open_failures_total',
      'P2P connections that failed to open.',
    );
    this.poolEvictions = counter(
      registers,
      'pool_evictions_total',
      'Idle P2P connections closed to keep within the idle bound (--proxyconnections).',
    );
    this.poolExpirations = counter(
      registers,
      'pool_expirations_total',
      'Idle P2P connections closed after their idle timeout.',
    );
    this.streams = new Gauge({
      name: `${PREFIX}streams`,
      help: 'GET and PUT bodies being streamed.',
      registers,
    });

    this.locksLive = new Gauge({
      name: `${PREFIX}locks`,
      help: 'Live retention locks (lockcontent).',
      registers,
    });
    this.lockExpirations = counter(
      registers,
      'lock_expirations_total',
      'Retention locks released because they expired.',
    );
    this.keepLockedOpen = new Gauge({
      name: `${PREFIX}keeplocked_requests`,
      help: 'Open keeplocked requests.',
      registers,
    });

    this.queueJobs = new Gauge({
      name: `${PREFIX}queue_jobs`,
      help: 'Jobs in a queue, by state: waiting or active.',
      labelNames: ['queue', 'state'],
      registers,
    });
    this.queueJobsFailed = counter(
      registers,
      'queue_jobs_failed_total',
      'Jobs that failed, by queue and operation.',
      ['queue', 'operation'],
    );
    this.queueJobDuration = new Histogram({
      name: `${PREFIX}queue_job_duration_seconds`,
      help: 'Time a job took from being taken by a worker to its completion.',
      labelNames: ['queue', 'operation'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.queueJobsStale = counter(
      registers,
      'queue_jobs_stale_total',
      'Jobs not run because they were queued on an earlier Redis primary (before a failover).',
    );

    this.redisConnected = new Gauge({
      name: `${PREFIX}redis_connected`,
      help: "1 while the app's command connection to Redis is ready, else 0.",
      registers,
    });
    this.redisReconnects = counter(
      registers,
      'redis_reconnects_total',
      "Times the app's command connection to Redis was lost and made again.",
    );
    this.redisPrimaryChanges = counter(
      registers,
      'redis_primary_changes_total',
      'Times the Redis primary behind that connection changed (a failover, or a restart).',
    );
  }

  /**
   * Registers a function run before each scrape, to copy a component's state into gauges (or
   * cumulative totals into counters, with `CounterMirror`). Returns a function that unregisters it.
   */
  onCollect(collector: () => void | Promise<void>): () => void {
    this.collectors.push(collector);
    return () => {
      const index = this.collectors.indexOf(collector);
      if (index >= 0) {
        this.collectors.splice(index, 1);
      }
    };
  }

  /** The text exposition of every metric, for GET /metrics. */
  async render(): Promise<{ contentType: string; body: string }> {
    for (const collector of this.collectors) {
      await collector();
    }
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

function counter<L extends string = never>(
  registers: Registry[],
  name: string,
  help: string,
  labelNames: L[] = [],
): Counter<L> {
  const config: CounterConfiguration<L> = { name: `${PREFIX}${name}`, help, labelNames, registers };
  return new Counter(config);
}

/**
 * Mirrors a cumulative total kept elsewhere (a pool's `opened` count, say) into a counter: each
 * `update` adds what the total grew by since the last one.
 */
export class CounterMirror {
  private last = 0;

  constructor(private readonly counter: Counter) {}

  update(total: number): void {
    if (total > this.last) {
      this.counter.inc(total - this.last);
    }
    this.last = Math.max(this.last, total);
  }
}

/** What a Redis connection watch reports (PrimaryWatch of @annex-p2phttp/redis). */
export interface RedisCounts {
  readonly connected: boolean;
  readonly reconnects: number;
  readonly primaryChanges: number;
}

/** Copies a Redis connection's state into the redis metrics at each scrape. */
export function mirrorRedis(metrics: Metrics, read: () => RedisCounts): () => void {
  const reconnects = new CounterMirror(metrics.redisReconnects);
  const changes = new CounterMirror(metrics.redisPrimaryChanges);
  return metrics.onCollect(() => {
    const counts = read();
    metrics.redisConnected.set(counts.connected ? 1 : 0);
    reconnects.update(counts.reconnects);
    changes.update(counts.primaryChanges);
  });
}

/** What a connection pool reports (DispatcherStats has this shape). */
export interface PoolCounts {
  readonly active: number;
  readonly idle: number;
  readonly locks: number;
  readonly waiting: number;
  readonly streams: number;
  readonly opened: number;
  readonly openFailures: number;
  readonly evicted: number;
  readonly expired: number;
}

/** Copies a pool's state into the pool metrics at each scrape; returns the unregister function. */
export function mirrorPool(metrics: Metrics, read: () => PoolCounts): () => void {
  const opens = new CounterMirror(metrics.poolOpens);
  const failures = new CounterMirror(metrics.poolOpenFailures);
  const evictions = new CounterMirror(metrics.poolEvictions);
  const expirations = new CounterMirror(metrics.poolExpirations);
  return metrics.onCollect(() => {
    const counts = read();
    metrics.poolConnections.set({ state: 'idle' }, counts.idle);
    metrics.poolConnections.set({ state: 'active' }, counts.active);
    metrics.poolConnections.set({ state: 'locking' }, counts.locks);
    metrics.poolWaiters.set(counts.waiting);
    metrics.streams.set(counts.streams);
    opens.update(counts.opened);
    failures.update(counts.openFailures);
    evictions.update(counts.evicted);
    expirations.update(counts.expired);
  });
}
