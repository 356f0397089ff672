/**
 * Where cluster mode keeps its state in Redis. Every key starts with the configured prefix
 * (`--redis-prefix`, default `annex-p2phttp:`):
 *
 * - `<prefix>bull:<repository uuid>:*`  the BullMQ queue of one served repository (BullMQ's keys)
 * - `<prefix>workers`                   sorted set: proxy-worker id → advert expiry (ms, Redis time)
 * - `<prefix>worker:<id>`               string: the worker's advert (JSON, WorkerAdvert), with a TTL
 * - `<prefix>uuids`                     hash: every uuid ever advertised → its queue (repository uuid)
 * - `<prefix>epoch`                     string: Redis time (ms) of the first advert since Redis's
 *                                       state began (directory.ts: when the cluster has settled)
 * - `<prefix>cancel`                    pub/sub channel: ids of jobs whose requester went away
 * - `<prefix>query:<repository uuid>`   list: checkpresent / gettimestamp queries (query-lane.ts)
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

/** What a proxy worker advertises: where its data port is and which uuids each queue serves. */
export interface WorkerAdvert {
  readonly id: string;
  /** Base URL of the worker's data port, e.g. http://10.0.0.7:9418 */
  readonly url: string;
  /** Queue (served repository uuid) → the uuids served through it (the repository's own first). */
  readonly queues: Record<string, string[]>;
  /**
   * Queue → the repository's location: its path below the worker's --directory root, or its
   * absolute path (what policies and path-addressed URLs name).
   */
  readonly locations?: Record<string, string>;
  /** Job slots (--jobs). */
  readonly jobs: number;
  readonly startedAt: number;
  /** The worker is still reading its repositories: it serves those in `queues`, more are coming. */
  readonly starting?: true;
}
