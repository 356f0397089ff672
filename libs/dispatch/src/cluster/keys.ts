import { createHash } from 'node:crypto';

/**
 * Where cluster mode keeps its state in Redis. Every key starts with the configured prefix
 * (`--redis-prefix`, default `annex-p2phttp:`). Nothing here grows in number with the
 * repositories served: a worker group's repositories share its `--shards` queues.
 *
 * - `<prefix>bull:<group>.<S>.<shard>:*` the BullMQ queue of one of the S shards of a worker
 *                                       group (BullMQ's keys); a repository's shard is
 *                                       `shardOf(its uuid, S)`
 * - `<prefix>workers`                   sorted set: proxy-worker id → advert expiry (ms, Redis time)
 * - `<prefix>worker:<id>`               string: the worker's advert (JSON, WorkerAdvert), with a
 *                                       TTL; small, whatever the number of repositories
 * - `<prefix>routes:<id>`               hash: uuid → its route (JSON, Route) for every uuid the
 *                                       worker serves, plus `~v` → the version of that content;
 *                                       written only as it changes, same TTL as the advert
 * - `<prefix>uuids`                     hash: every uuid ever advertised → its queue
 * - `<prefix>epoch`                     string: Redis time (ms) of the first advert since Redis's
 *                                       state began (directory.ts: when the cluster has settled)
 * - `<prefix>cancel`                    pub/sub channel: ids of jobs whose requester went away
 * - `<prefix>query:<group>.<S>.<shard>` list: checkpresent / gettimestamp queries (query-lane.ts)
 * - `<prefix>reply:<gateway id>`        pub/sub channel: answers to one gateway's queries
 */
export class ClusterKeys {
  constructor(readonly prefix: string) {}

  /** The `prefix` option of every BullMQ Queue, Worker and QueueEvents. */
  get bullPrefix(): string {
    return `${this.prefix}bull`;
  }

  get workers(): string {
    return `${this.prefix}workers`;
  }

  /** The prefix of the advert keys (`worker(id)` is this plus the id). */
  get workerPrefix(): string {
    return `${this.prefix}worker:`;
  }

  worker(id: string): string {
    return `${this.workerPrefix}${id}`;
  }

  /** The prefix of the route hashes (`routes(id)` is this plus the id). */
  get routesPrefix(): string {
    return `${this.prefix}routes:`;
  }

  routes(id: string): string {
    return `${this.routesPrefix}${id}`;
  }

  get uuids(): string {
    return `${this.prefix}uuids`;
  }

  get epoch(): string {
    return `${this.prefix}epoch`;
  }

  get cancel(): string {
    return `${this.prefix}cancel`;
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

/** A worker group's name (--worker-group): what may stand in a BullMQ queue name and a key. */
export const WORKER_GROUP = /^[A-Za-z0-9_-]{1,64}$/;

/** The shard of a repository: a stable hash of its uuid, mod `shards`. */
export function shardOf(uuid: string, shards: number): number {
  return createHash('sha256').update(uuid).digest().readUInt32BE(0) % shards;
}

/**
 * The queue (BullMQ queue and query list) of one of the `shards` shards of a worker group. The
 * number of shards is in the name, so that workers of a group that do not (yet) agree on it, as
 * while --shards changes in a rolling update, use queues apart instead of taking jobs they would
 * have to refuse.
 */
export function shardQueue(group: string, shards: number, shard: number): string {
  return `${group}.${shards}.${shard}`;
}

/** The queue through which a worker group serves the repository with uuid `repository`. */
export function queueOf(group: string, shards: number, repository: string): string {
  return shardQueue(group, shards, shardOf(repository, shards));
}

/** How a gateway reaches a uuid: the queue that serves it and its repository's location. */
export interface Route {
  readonly queue: string;
  /**
   * The repository's location (policy.ts): its path below the worker's --directory root, or its
   * absolute path (what policies and path-addressed URLs name).
   */
  readonly location?: string;
}

/**
 * What a proxy worker advertises: where its data port is and which group it belongs to. The
 * uuids it serves are in its routes hash (keys above), written apart as they change.
 */
export interface WorkerAdvert {
  readonly id: string;
  /** Base URL of the worker's data port, e.g. http://10.0.0.7:9418 */
  readonly url: string;
  /** Its worker group (--worker-group) and the number of shard queues (--shards). */
  readonly group?: string;
  readonly shards?: number;
  /** Job slots (--jobs). */
  readonly jobs: number;
  readonly startedAt: number;
  /** The worker is still reading its repositories: it serves those routed, more are coming. */
  readonly starting?: true;
}
