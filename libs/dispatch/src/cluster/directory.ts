/**
 * Which repository uuids the cluster serves, learnt from the proxy workers' adverts in Redis
 * (keys.ts). A worker writes its advert with `advertise` on every heartbeat; a gateway reads all
 * live adverts in one round trip and caches the result briefly. A uuid is
 * - unknown (404) when no worker ever advertised it (in Redis, or to this gateway since it
 *   started: that survives a Redis restart that lost the record),
 * - known but unavailable (503) when no live worker advertises it now,
 * - served otherwise, through its repository's queue.
 * Times are Redis server time, so clocks of different machines do not matter.
 */
import type Redis from 'ioredis';
import { unavailable } from './errors';
import { type ClusterKeys, type WorkerAdvert } from './keys';

/**
 * KEYS[1] workers zset, KEYS[2] the worker's advert, KEYS[3] uuids hash.
 * ARGV[1] worker id, ARGV[2] advert JSON, ARGV[3] ttl ms, ARGV[4..] uuid, queue pairs.
 */
const ADVERTISE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
return now
`;

/** KEYS[1] workers zset, KEYS[2] the worker's advert. ARGV[1] worker id. */
const WITHDRAW = `
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('DEL', KEYS[2])
`;

/**
 * KEYS[1] workers zset, KEYS[2] uuids hash. ARGV[1] advert key prefix.
 * Returns { live adverts as JSON..., '', uuid, queue, uuid, queue ... }.
 */
const DIRECTORY = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local out = {}
for _, id in ipairs(ids) do
  local advert = redis.call('GET', ARGV[1] .. id)
  if advert then
    table.insert(out, advert)
  end
end
table.insert(out, '')
local known = redis.call('HGETALL', KEYS[2])
for _, v in ipairs(known) do
  table.insert(out, v)
end
return out
`;

/** A uuid as served (PROTOCOL.md §3): anything else is unknown without asking Redis. */
const UUID = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;

type ScriptRedis = Redis & {
  annexAdvertise(...args: (string | number)[]): Promise<number>;
  annexWithdraw(...args: string[]): Promise<number>;
  annexDirectory(...args: string[]): Promise<string[]>;
};

/** Defines the scripts on a connection (EVALSHA, with EVAL when Redis lost its script cache). */
export function withDirectoryScripts(redis: Redis): ScriptRedis {
  const scripted = redis as ScriptRedis;
  if (typeof scripted.annexDirectory !== 'function') {
    redis.defineCommand('annexAdvertise', { numberOfKeys: 3, lua: ADVERTISE });
    redis.defineCommand('annexWithdraw', { numberOfKeys: 2, lua: WITHDRAW });
    redis.defineCommand('annexDirectory', { numberOfKeys: 2, lua: DIRECTORY });
  }
  return scripted;
}

/** Writes (or refreshes) a worker's advert, live for `ttlMs`. One round trip. */
export async function advertise(
  redis: Redis,
  keys: ClusterKeys,
  advert: WorkerAdvert,
  ttlMs: number,
): Promise<void> {
  const pairs: string[] = [];
  for (const [queue, uuids] of Object.entries(advert.queues)) {
    for (const uuid of uuids) {
      pairs.push(uuid, queue);
    }
  }
  await withDirectoryScripts(redis).annexAdvertise(
    keys.workers,
    keys.worker(advert.id),
    keys.uuids,
    advert.id,
    JSON.stringify(advert),
    ttlMs,
    ...pairs,
  );
}

/** Removes a worker's advert (on shutdown), so gateways stop sending it work at once. */
export async function withdraw(redis: Redis, keys: ClusterKeys, id: string): Promise<void> {
  await withDirectoryScripts(redis).annexWithdraw(keys.workers, keys.worker(id), id);
}

export interface DirectoryEntry {
  /** The uuid asked for. */
  readonly uuid: string;
  /** Its queue: the uuid of the served repository that serves it. */
  readonly queue: string;
}

export interface Snapshot {
  /** uuid → queue, for every uuid a live worker advertises. */
  readonly live: Map<string, string>;
  /** uuid → queue, for every uuid ever advertised. */
  readonly known: Map<string, string>;
  readonly workers: number;
}

/** Parses the DIRECTORY script's reply; adverts that do not parse are skipped. */
export function parseDirectoryReply(reply: readonly string[]): Snapshot {
  const live = new Map<string, string>();
  const known = new Map<string, string>();
  let index = 0;
  let workers = 0;
  for (; index < reply.length && reply[index] !== ''; index += 1) {
    let advert: WorkerAdvert;
    try {
      advert = JSON.parse(reply[index] as string) as WorkerAdvert;
    } catch {
      continue;
    }
    if (typeof advert !== 'object' || advert === null || typeof advert.queues !== 'object') {
      continue;
    }
    workers += 1;
    for (const [queue, uuids] of Object.entries(advert.queues)) {
      if (Array.isArray(uuids)) {
        for (const uuid of uuids) {
          live.set(uuid, queue);
        }
      }
    }
  }
  for (index += 1; index + 1 < reply.length; index += 2) {
    known.set(reply[index] as string, reply[index + 1] as string);
  }
  return { live, known, workers };
}

export interface ClusterDirectoryOptions {
  readonly redis: Redis;
  readonly keys: ClusterKeys;
  /** How long a snapshot answers lookups; default 1000 ms. */
  readonly cacheMs?: number;
  /** An unknown uuid re-reads a snapshot older than this; default 250 ms. */
  readonly missRefreshMs?: number;
}

/** The gateway's view of the cluster (see the module comment). */
export class ClusterDirectory {
  private snapshot: Snapshot | null = null;
  private readAt = -Infinity;
  private reading: Promise<Snapshot> | null = null;
  /** Every uuid seen served, kept for the life of the process. */
  private readonly remembered = new Map<string, string>();
  private readonly cacheMs: number;
  private readonly missRefreshMs: number;
  private reads = 0;

  constructor(private readonly options: ClusterDirectoryOptions) {
    this.cacheMs = options.cacheMs ?? 1000;
    this.missRefreshMs = options.missRefreshMs ?? 250;
  }

  /** Snapshot reads done so far (each one Redis round trip). */
  get snapshotReads(): number {
    return this.reads;
  }

  /**
   * The queue serving `uuid`, or undefined for a uuid the cluster does not know. Throws
   * DispatchError DISPATCH_UNAVAILABLE when Redis cannot be read or no live worker serves it.
   * The result has the shape of a served repository: `path` is the queue.
   */
  async lookup(uuid: string): Promise<{ uuid: string; path: string } | undefined> {
    if (!UUID.test(uuid)) {
      return undefined;
    }
    let snapshot = await this.current(this.cacheMs);
    if (!snapshot.live.has(uuid) && !snapshot.known.has(uuid)) {
      snapshot = await this.current(this.missRefreshMs);
    }
    const queue = snapshot.live.get(uuid);
    if (queue !== undefined) {
      this.remembered.set(uuid, queue);
      return { uuid, path: queue };
    }
    if (snapshot.known.has(uuid) || this.remembered.has(uuid)) {
      throw unavailable('no live proxy worker serves this repository');
    }
    return undefined;
  }

  /** Reads a fresh snapshot (readiness checks). */
  async read(): Promise<Snapshot> {
    return this.current(0);
  }

  private async current(maxAgeMs: number): Promise<Snapshot> {
    if (this.snapshot !== null && performance.now() - this.readAt <= maxAgeMs) {
      return this.snapshot;
    }
    this.reading ??= this.fetch().finally(() => {
      this.reading = null;
    });
    return this.reading;
  }

  private async fetch(): Promise<Snapshot> {
    const { redis, keys } = this.options;
    const started = performance.now();
    let reply: string[];
    try {
      this.reads += 1;
      reply = await withDirectoryScripts(redis).annexDirectory(
        keys.workers,
        keys.uuids,
        keys.workerPrefix,
      );
    } catch (error) {
      this.snapshot = null;
      throw unavailable(
        `cluster state unavailable: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    this.snapshot = parseDirectoryReply(reply);
    this.readAt = started;
    return this.snapshot;
  }
}
