import { createHash } from 'node:crypto';

/**
 * The cluster's Redis keys are part of the one key scheme (libs/redis/src/keys.ts lists every
 * key); here: the names of a worker group's shard queues, and what the directory stores.
 */
export { ClusterKeys } from '@annex-p2phttp/redis';

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
