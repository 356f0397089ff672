/**
 * Which repository uuids the cluster serves, learnt from the proxy workers' adverts in Redis
 * (keys.ts). A worker writes its advert with `advertise` on every heartbeat; a gateway reads all
 * live adverts in one round trip and caches the result briefly. A uuid is
 * - served when a live worker advertises it, through its repository's queue;
 * - known but unavailable (503) when no live worker advertises it now, but one did (in Redis, or
 *   to this gateway since it started: that survives a Redis restart that lost the record);
 * - unknown (404) only once the cluster has settled (below). Until then a lookup of a uuid that
 *   is not served waits for the cluster to settle or for the uuid to be served, at most
 *   `startupWaitMs`, then answers unavailable (503).
 *
 * Settled: the adverts in Redis describe every worker that is up. The `epoch` key holds the time
 * of the first advert written or seen since Redis's state began (it is lost with that state, so a
 * Redis restarted empty starts a new epoch). A worker advertises within one heartbeat of reaching
 * Redis, and says it is `starting` until it has read all its repositories (it serves, and
 * advertises, each one as soon as it has read it). So the cluster is settled
 * when at least one worker serves, none says it is starting, and the epoch is at least `settleMs`
 * old (one advert lifetime, three heartbeats): workers started together with the first one have
 * advertised by then. A gateway that starts into a settled cluster is settled at its first read;
 * one started before the workers, or a cluster whose Redis was reset, settles `settleMs` after
 * the first advert. Times are Redis server time, so clocks of different machines do not matter.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type Redis from 'ioredis';
import { unavailable } from './errors';
import { type ClusterKeys, type WorkerAdvert } from './keys';

/**
 * KEYS[1] workers zset, KEYS[2] the worker's advert, KEYS[3] uuids hash, KEYS[4] epoch.
 * ARGV[1] worker id, ARGV[2] advert JSON, ARGV[3] ttl ms, ARGV[4..] uuid, queue pairs.
 */
const ADVERTISE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('SET', KEYS[4], now, 'NX')
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
 * KEYS[1] workers zset, KEYS[2] uuids hash, KEYS[3] epoch. ARGV[1] advert key prefix.
 * Returns { epoch age in ms ('' when there is no epoch), live adverts as JSON..., '',
 * uuid, queue, uuid, queue ... }. A live advert starts the epoch if none is there (adverts of
 * workers that do not set it themselves).
 */
const DIRECTORY = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local out = {''}
for _, id in ipairs(ids) do
  local advert = redis.call('GET', ARGV[1] .. id)
  if advert then
    table.insert(out, advert)
  end
end
if #out > 1 then
  redis.call('SET', KEYS[3], now, 'NX')
end
local epoch = tonumber(redis.call('GET', KEYS[3]) or '')
if epoch then
  out[1] = tostring(now - epoch)
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
    redis.defineCommand('annexAdvertise', { numberOfKeys: 4, lua: ADVERTISE });
    redis.defineCommand('annexWithdraw', { numberOfKeys: 2, lua: WITHDRAW });
    redis.defineCommand('annexDirectory', { numberOfKeys: 3, lua: DIRECTORY });
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
    keys.epoch,
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
  /** Queue → its repository's location, as live workers advertise it. */
  readonly locations: Map<string, string>;
  /** Location → the queue and the uuids served through it, as live workers advertise them. */
  readonly byLocation: Map<string, { queue: string; uuids: ReadonlySet<string> }>;
  /** uuid → queue, for every uuid ever advertised. */
  readonly known: Map<string, string>;
  /** Live workers serving their repositories. */
  readonly workers: number;
  /** Live workers still reading their repositories (serving those read so far). */
  readonly starting: number;
  /** How long ago the epoch began (ms, Redis time); undefined when there is none yet. */
  readonly epochAgeMs: number | undefined;
}

/** Parses the DIRECTORY script's reply; adverts that do not parse are skipped. */
export function parseDirectoryReply(reply: readonly string[]): Snapshot {
  const live = new Map<string, string>();
  const known = new Map<string, string>();
  const locations = new Map<string, string>();
  const byLocation = new Map<string, { queue: string; uuids: ReadonlySet<string> }>();
  const age = reply[0] === undefined || reply[0] === '' ? Number.NaN : Number(reply[0]);
  const epochAgeMs = Number.isFinite(age) ? age : undefined;
  let index = 1;
  let workers = 0;
  let starting = 0;
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
    // A worker still reading its repositories serves those it has found already.
    if (advert.starting === true) {
      starting += 1;
    } else {
      workers += 1;
    }
    for (const [queue, uuids] of Object.entries(advert.queues)) {
      if (Array.isArray(uuids)) {
        for (const uuid of uuids) {
          live.set(uuid, queue);
        }
        const location = advert.locations?.[queue];
        if (typeof location === 'string' && location !== '') {
          locations.set(queue, location);
          byLocation.set(location, { queue, uuids: new Set(uuids) });
        }
      }
    }
  }
  for (index += 1; index + 1 < reply.length; index += 2) {
    known.set(reply[index] as string, reply[index + 1] as string);
  }
  return { live, known, locations, byLocation, workers, starting, epochAgeMs };
}

/** Do the adverts describe every worker that is up (see the module comment)? */
export function settled(snapshot: Snapshot, settleMs: number): boolean {
  return (
    snapshot.workers > 0 &&
    snapshot.starting === 0 &&
    snapshot.epochAgeMs !== undefined &&
    snapshot.epochAgeMs >= settleMs
  );
}

export interface ClusterDirectoryOptions {
  readonly redis: Redis;
  readonly keys: ClusterKeys;
  /** How long a snapshot answers lookups; default 1000 ms. */
  readonly cacheMs?: number;
  /** An unknown uuid re-reads a snapshot older than this; default 250 ms. */
  readonly missRefreshMs?: number;
  /** How long the epoch must be before the cluster counts as settled; default 6000 ms. */
  readonly settleMs?: number;
  /** How long a lookup of an unknown uuid waits for the cluster to settle; default 0. */
  readonly startupWaitMs?: number;
}

/** One advert lifetime: three heartbeats of 2 s (the proxy worker's defaults). */
export const DEFAULT_SETTLE_MS = 6000;

/** The gateway's view of the cluster (see the module comment). */
export class ClusterDirectory {
  private snapshot: Snapshot | null = null;
  private readAt = -Infinity;
  private reading: Promise<Snapshot> | null = null;
  /** Every uuid seen served, kept for the life of the process. */
  private readonly remembered = new Map<string, string>();
  private readonly cacheMs: number;
  private readonly missRefreshMs: number;
  private readonly settleMs: number;
  private readonly startupWaitMs: number;
  private reads = 0;

  constructor(private readonly options: ClusterDirectoryOptions) {
    this.cacheMs = options.cacheMs ?? 1000;
    this.missRefreshMs = options.missRefreshMs ?? 250;
    this.settleMs = options.settleMs ?? DEFAULT_SETTLE_MS;
    this.startupWaitMs = options.startupWaitMs ?? 0;
  }

  /** Snapshot reads done so far (each one Redis round trip). */
  get snapshotReads(): number {
    return this.reads;
  }

  /**
   * The queue serving `uuid`, or undefined for a uuid the settled cluster does not know. Throws
   * DispatchError DISPATCH_UNAVAILABLE when Redis cannot be read, when no live worker serves a
   * known uuid, or when the cluster did not settle within `startupWaitMs` (module comment).
   * The result has the shape of a served repository: `path` is the queue, `location` the
   * repository's location (policy.ts) when its worker advertises one. With `within` (a location),
   * only that repository and the uuids it serves are found.
   */
  async lookup(
    uuid: string,
    within?: string,
  ): Promise<{ uuid: string; path: string; location?: string } | undefined> {
    if (!UUID.test(uuid)) {
      return undefined;
    }
    if (within !== undefined) {
      const found = await this.lookup(uuid);
      if (found === undefined) {
        return undefined;
      }
      // A --repo's location is its absolute path, named in a URL without the leading '/'.
      const { byLocation } = await this.current(this.cacheMs);
      const location = byLocation.has(within) ? within : `/${within}`;
      const scoped = byLocation.get(location);
      if (scoped === undefined || !scoped.uuids.has(uuid)) {
        return undefined;
      }
      return { uuid, path: scoped.queue, location };
    }
    let snapshot = await this.current(this.cacheMs);
    if (!snapshot.live.has(uuid) && !snapshot.known.has(uuid)) {
      snapshot = await this.current(this.missRefreshMs);
    }
    // While the cluster has not settled, any uuid not served yet may be in a moment.
    const deadline = performance.now() + this.startupWaitMs;
    while (!snapshot.live.has(uuid) && !settled(snapshot, this.settleMs)) {
      const left = deadline - performance.now();
      if (left <= 0) {
        break;
      }
      await delay(Math.min(left, Math.max(this.missRefreshMs, 50)));
      snapshot = await this.current(this.missRefreshMs);
    }
    const queue = snapshot.live.get(uuid);
    if (queue !== undefined) {
      this.remembered.set(uuid, queue);
      const location = snapshot.locations.get(queue);
      return location === undefined ? { uuid, path: queue } : { uuid, path: queue, location };
    }
    if (this.mentions(snapshot, uuid)) {
      throw unavailable('no live proxy worker serves this repository');
    }
    if (!settled(snapshot, this.settleMs)) {
      throw unavailable(
        snapshot.workers + snapshot.starting === 0
          ? 'no proxy worker has advertised yet'
          : 'the cluster is starting: its proxy workers have not all advertised yet',
        Math.max(1, Math.ceil(this.settleMs / 1000)),
      );
    }
    return undefined;
  }

  /** Served now, or once: known to the cluster or to this gateway. */
  private mentions(snapshot: Snapshot, uuid: string): boolean {
    return snapshot.live.has(uuid) || snapshot.known.has(uuid) || this.remembered.has(uuid);
  }

  /** Whether the cluster counts as settled now (a fresh read). */
  async settled(): Promise<boolean> {
    return settled(await this.read(), this.settleMs);
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
        keys.epoch,
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
