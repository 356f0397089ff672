/**
 * Every Redis key of cluster mode, in one scheme. Each name starts with one configurable prefix
 * (`--redis-prefix`, default `annex-p2phttp:`), so that several deployments can share a Redis.
 * The names are what existing deployments have in their Redis: they never change (a test pins
 * them). Nothing here grows in number with the repositories served: a worker group's
 * repositories share its `--shards` queues.
 *
 * BullMQ (its own keys below `<prefix>bull:`; BullMQ adds the `:` after the `prefix` option):
 * - `<prefix>bull:<group>.<S>.<shard>:*` the job queue of one of the S shards of a worker group;
 *                                       a repository's shard is a hash of its uuid (dispatch's
 *                                       `shardOf`)
 * - `<prefix>bull:<queue>:events`       BullMQ's events stream of a queue
 * - `<prefix>bull:lock-requests:*`      the queue of lock requests to the lock-services
 *
 * Cluster (ClusterKeys: the workers' directory and the query lane):
 * - `<prefix>workers`                   sorted set: proxy-worker id → advert expiry (ms, Redis time)
 * - `<prefix>worker:<id>`               string: the worker's advert (JSON, WorkerAdvert), with a
 *                                       TTL; small, whatever the number of repositories
 * - `<prefix>routes:<id>`               hash: uuid → its route (JSON, Route) for every uuid the
 *                                       worker serves, plus `~v` → the version of that content;
 *                                       written only as it changes, same TTL as the advert
 * - `<prefix>uuids`                     hash: every uuid ever advertised → its queue
 * - `<prefix>epoch`                     string: Redis time (ms) of the first advert since Redis's
 *                                       state began (when the cluster has settled)
 * - `<prefix>cancel`                    pub/sub channel: ids of jobs whose requester went away
 * - `<prefix>query:<group>.<S>.<shard>` list: checkpresent / gettimestamp queries (query lane)
 * - `<prefix>reply:<gateway id>`        pub/sub channel: answers to one gateway's queries
 *
 * Retention locks (LockKeys):
 * - `<prefix>lock:<lockid>`             hash: lockid repository key holder lockedAt expiresAt session
 * - `<prefix>locks:expiry`              sorted set: lockid scored by expiresAt (every record, live
 *                                       or reserved; its size is the cluster-wide count for
 *                                       --lockedfiles)
 * - `<prefix>locks:cover`               hash: "<repository> <key>" → number of records covering it
 * - `<prefix>locks:holder:<holder>`     a lock-service's liveness, with a TTL it keeps refreshing
 * - `<prefix>locks:epoch`               random value set once; its loss means Redis lost its data
 *                                       (with the primary's replication id, the lock epoch)
 * - `<prefix>locks:unlock`              pub/sub channel: a lockid whose record was deleted
 * - `<prefix>locks:released:<lockid>`   set for a minute by the lock-service that released the
 *                                       lock in its repository after an unlock message, which the
 *                                       unlocking gateway waits for
 */

/** The prefix of every key unless `--redis-prefix` (or ANNEX_P2PHTTP_REDIS_PREFIX) says. */
export const DEFAULT_REDIS_PREFIX = 'annex-p2phttp:';

/** The BullMQ queue gateways send lock requests to. */
export const LOCK_REQUEST_QUEUE = 'lock-requests';

/** BullMQ's `prefix` option of every Queue, Worker and QueueEvents (BullMQ adds its own `:`). */
export function bullPrefix(prefix: string): string {
  return `${prefix}bull`;
}

/** The workers' directory and the query lane. */
export class ClusterKeys {
  /** The `prefix` option of every BullMQ Queue, Worker and QueueEvents of the job queues. */
  readonly bullPrefix: string;
  readonly workers: string;
  /** The prefix of the advert keys (`worker(id)` is this plus the id). */
  readonly workerPrefix: string;
  /** The prefix of the route hashes (`routes(id)` is this plus the id). */
  readonly routesPrefix: string;
  readonly uuids: string;
  readonly epoch: string;
  readonly cancel: string;

  constructor(readonly prefix: string = DEFAULT_REDIS_PREFIX) {
    this.bullPrefix = bullPrefix(prefix);
    this.workers = `${prefix}workers`;
    this.workerPrefix = `${prefix}worker:`;
    this.routesPrefix = `${prefix}routes:`;
    this.uuids = `${prefix}uuids`;
    this.epoch = `${prefix}epoch`;
    this.cancel = `${prefix}cancel`;
  }

  worker(id: string): string {
    return `${this.workerPrefix}${id}`;
  }

  routes(id: string): string {
    return `${this.routesPrefix}${id}`;
  }

  /** The query lane's list of a queue. */
  query(queue: string): string {
    return `${this.prefix}query:${queue}`;
  }

  /** The channel of a gateway's query answers. */
  reply(gateway: string): string {
    return `${this.prefix}reply:${gateway}`;
  }

  /** BullMQ's events stream of a queue. */
  events(queue: string): string {
    return `${this.bullPrefix}:${queue}:events`;
  }
}

/** Where the retention locks are. */
export class LockKeys {
  readonly recordPrefix: string;
  readonly expiry: string;
  readonly cover: string;
  readonly holderPrefix: string;
  readonly epoch: string;
  readonly unlockChannel: string;
  /** The `prefix` option of the lock request queue's BullMQ Queue, Worker and QueueEvents. */
  readonly bullPrefix: string;

  constructor(readonly prefix: string = DEFAULT_REDIS_PREFIX) {
    this.recordPrefix = `${prefix}lock:`;
    this.expiry = `${prefix}locks:expiry`;
    this.cover = `${prefix}locks:cover`;
    this.holderPrefix = `${prefix}locks:holder:`;
    this.epoch = `${prefix}locks:epoch`;
    this.unlockChannel = `${prefix}locks:unlock`;
    this.bullPrefix = bullPrefix(prefix);
  }

  record(lockid: string): string {
    return `${this.recordPrefix}${lockid}`;
  }

  holder(holder: string): string {
    return `${this.holderPrefix}${holder}`;
  }

  /** Set once the repository-side lock of an unlocked lockid is released. */
  released(lockid: string): string {
    return `${this.prefix}locks:released:${lockid}`;
  }
}

/** The whole scheme under one prefix: both groups, which share the prefix and BullMQ's. */
export class RedisKeys {
  readonly bullPrefix: string;
  readonly cluster: ClusterKeys;
  readonly locks: LockKeys;

  constructor(readonly prefix: string = DEFAULT_REDIS_PREFIX) {
    this.bullPrefix = bullPrefix(prefix);
    this.cluster = new ClusterKeys(prefix);
    this.locks = new LockKeys(prefix);
  }
}
