/**
 * Which repository uuids the cluster serves, learnt from the proxy workers' adverts in Redis
 * (keys.ts). A worker's advert is small (its data port, group, job slots) and refreshed on every
 * heartbeat; the uuids it serves and their routes (queue, location) live in its routes hash,
 * which the worker writes only as it changes (what appeared or vanished, `RouteAdvertiser`) with
 * a version. A gateway reads every live advert and each routes hash's version in one round trip,
 * and the whole hash of a worker only when its version differs from the one it holds: so neither
 * side sends all the uuids again while nothing changes. A uuid is
 * - served when a live worker routes it, through its shard's queue;
 * - known but unavailable (503) when no live worker serves it now, but one did (in Redis, or
 *   to this gateway since it started: that survives a Redis restart that lost the record);
 * - unknown (404) only once the cluster has settled (below). Until then a lookup of a uuid that
 *   is not served waits for the cluster to settle or for the uuid to be served, at most
 *   `startupWaitMs`, then answers unavailable (503).
 *
 * Settled: the adverts in Redis describe every worker that is up. The `epoch` key holds the time
 * of the first advert written or seen since Redis's state began (it is lost with that state, so a
 * Redis restarted empty starts a new epoch). A worker advertises within one heartbeat of reaching
 * Redis, and says it is `starting` until it has read all its repositories (it serves, and
 * routes, each one as soon as it has read it). So the cluster is settled
 * when at least one worker serves, none says it is starting, and the epoch is at least `settleMs`
 * old (one advert lifetime, three heartbeats): workers started together with the first one have
 * advertised by then. A gateway that starts into a settled cluster is settled at its first read;
 * one started before the workers, or a cluster whose Redis was reset, settles `settleMs` after
 * the first advert. Times are Redis server time, so clocks of different machines do not matter.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type Redis from 'ioredis';
import { unavailable } from './errors';
import { type ClusterKeys } from '@annex-p2phttp/redis';
import { type Route, type WorkerAdvert } from './keys';

/** The routes hash's field that holds its version (not a uuid: those start with [A-Za-z0-9]). */
const VERSION_FIELD = '~v';

/**
 * KEYS[1] workers zset, KEYS[2] the worker's advert, KEYS[3] its routes hash, KEYS[4] uuids hash,
 * KEYS[5] epoch. ARGV[1] worker id, ARGV[2] advert JSON, ARGV[3] ttl ms, ARGV[4] mode: 'full'
 * (the routes replace the hash) or 'diff' (they change it, and only if its version is ARGV[5]),
 * ARGV[5] that version, ARGV[6] the new version, ARGV[7..] triples uuid, route JSON ('' when
 * the uuid is no longer served), queue. Returns -1 (writing nothing) when a diff does not apply:
 * the hash is not the one the worker wrote last (Redis lost it, say).
 */
const ADVERTISE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
if ARGV[4] == 'full' then
  redis.call('DEL', KEYS[3])
elseif redis.call('HGET', KEYS[3], '${VERSION_FIELD}') ~= ARGV[5] then
  return -1
end
for i = 7, #ARGV, 3 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[3], ARGV[i])
  else
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
    redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 2])
  end
end
redis.call('HSET', KEYS[3], '${VERSION_FIELD}', ARGV[6])
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('SET', KEYS[5], now, 'NX')
return now
`;

/** KEYS[1] workers zset, KEYS[2] the worker's advert, KEYS[3] its routes. ARGV[1] worker id. */
const WITHDRAW = `
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[3])
return redis.call('DEL', KEYS[2])
`;

/**
 * KEYS[1] workers zset, KEYS[2] epoch. ARGV[1] advert key prefix, ARGV[2] routes key prefix,
 * ARGV[3..] pairs worker id, routes version the caller holds. Returns { epoch age in ms ('' when
 * there is no epoch), then per live advert { id, advert JSON, routes version ('' when none),
 * and the routes hash (HGETALL) unless the caller holds that version } }. A live advert starts
 * the epoch if none is there.
 */
const DIRECTORY = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = {}
for i = 3, #ARGV, 2 do
  held[ARGV[i]] = ARGV[i + 1]
end
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local out = {''}
for _, id in ipairs(ids) do
  local advert = redis.call('GET', ARGV[1] .. id)
  if advert then
    local version = redis.call('HGET', ARGV[2] .. id, '${VERSION_FIELD}') or ''
    if version ~= '' and held[id] == version then
      table.insert(out, {id, advert, version})
    else
      table.insert(out, {id, advert, version, redis.call('HGETALL', ARGV[2] .. id)})
    end
  end
end
if #out > 1 then
  redis.call('SET', KEYS[2], now, 'NX')
end
local epoch = tonumber(redis.call('GET', KEYS[2]) or '')
if epoch then
  out[1] = tostring(now - epoch)
end
return out
`;

/** A uuid as served (PROTOCOL.md §3): anything else is unknown without asking Redis. */
const UUID = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;

type ScriptRedis = Redis & {
  annexAdvertise(...args: (string | number)[]): Promise<number>;
  annexWithdraw(...args: string[]): Promise<number>;
  annexDirectory(...args: string[]): Promise<DirectoryReply>;
};

/** The DIRECTORY script's reply. */
export type DirectoryReply = [string, ...AdvertReply[]];
/** One live worker: id, advert, routes version, and its routes (field, value…) when sent. */
export type AdvertReply = [string, string, string] | [string, string, string, string[]];

/** Defines the scripts on a connection (EVALSHA, with EVAL when Redis lost its script cache). */
export function withDirectoryScripts(redis: Redis): ScriptRedis {
  const scripted = redis as ScriptRedis;
  if (typeof scripted.annexDirectory !== 'function') {
    redis.defineCommand('annexAdvertise', { numberOfKeys: 5, lua: ADVERTISE });
    redis.defineCommand('annexWithdraw', { numberOfKeys: 3, lua: WITHDRAW });
    redis.defineCommand('annexDirectory', { numberOfKeys: 2, lua: DIRECTORY });
  }
  return scripted;
}

/**
 * A worker's advert and routes in Redis (module comment): `publish` refreshes the advert and
 * writes only the routes that changed since the last write that reached Redis, all of them when
 * Redis does not hold that write (first time, lost state, an error in between). Calls run one at
 * a time, in order.
 */
export class RouteAdvertiser {
  /** uuid → route JSON and queue, as the last write that reached Redis left them. */
  private written = new Map<string, { json: string; queue: string }>();
  private wanted = new Map<string, { json: string; queue: string }>();
  /** The version Redis holds (null: not known, send everything). */
  private held: number | null = null;
  private version = 0;
  /** Makes this advertiser's versions differ from any other's (versions are only compared). */
  private readonly nonce = randomBytes(4).toString('hex');
  private chain: Promise<unknown> = Promise.resolve();
  private withdrawn = false;
  private sent = 0;

  constructor(
    private readonly redis: Redis,
    private readonly keys: ClusterKeys,
    private readonly ttlMs: number,
  ) {}

  /** Routes written in Redis as far as this advertiser knows. */
  get size(): number {
    return this.written.size;
  }

  /** Routes sent (set or removed) by the last write: what changed, or all of them. */
  get lastSent(): number {
    return this.sent;
  }

  /**
   * Refreshes the advert (with the TTL) and, given `routes` (uuid → route), makes them the
   * worker's routes; without, the routes stay what they were.
   */
  publish(advert: WorkerAdvert, routes?: ReadonlyMap<string, Route>): Promise<void> {
    if (routes !== undefined) {
      const wanted = new Map<string, { json: string; queue: string }>();
      for (const [uuid, route] of routes) {
        wanted.set(uuid, { json: JSON.stringify(route), queue: route.queue });
      }
      this.wanted = wanted;
    }
    const run = this.chain.then(() => this.write(advert));
    this.chain = run.catch(() => {});
    return run;
  }

  /** Removes the advert and the routes (shutdown): nothing is published after this. */
  withdraw(id: string): Promise<void> {
    this.withdrawn = true;
    const run = this.chain.then(() => withdraw(this.redis, this.keys, id));
    this.chain = run.catch(() => {});
    this.held = null;
    return run;
  }

  private async write(advert: WorkerAdvert): Promise<void> {
    if (this.withdrawn) {
      return;
    }
    const wanted = this.wanted;
    if (this.held !== null) {
      const changes: string[] = [];
      for (const [uuid, entry] of wanted) {
        const was = this.written.get(uuid);
        if (was === undefined || was.json !== entry.json) {
          changes.push(uuid, entry.json, entry.queue);
        }
      }
      for (const uuid of this.written.keys()) {
        if (!wanted.has(uuid)) {
          changes.push(uuid, '', '');
        }
      }
      const next = changes.length === 0 ? this.held : this.version + 1;
      if ((await this.send(advert, 'diff', this.held, next, changes)) !== -1) {
        this.version = Math.max(this.version, next);
        this.held = next;
        this.written = wanted;
        return;
      }
    }
    const all: string[] = [];
    for (const [uuid, entry] of wanted) {
      all.push(uuid, entry.json, entry.queue);
    }
    const next = this.version + 1;
    this.held = null;
    await this.send(advert, 'full', 0, next, all);
    this.version = next;
    this.held = next;
    this.written = wanted;
  }

  private async send(
    advert: WorkerAdvert,
    mode: 'full' | 'diff',
    base: number,
    next: number,
    changes: readonly string[],
  ): Promise<number> {
    const { keys } = this;
    this.sent = changes.length / 3;
    try {
      return await withDirectoryScripts(this.redis).annexAdvertise(
        keys.workers,
        keys.worker(advert.id),
        keys.routes(advert.id),
        keys.uuids,
        keys.epoch,
        advert.id,
        JSON.stringify(advert),
        this.ttlMs,
        mode,
        `${this.nonce}.${base}`,
        `${this.nonce}.${next}`,
        ...changes,
      );
    } catch (error) {
      this.held = null; // whether it applied is not known
      throw error;
    }
  }
}

/**
 * Writes a worker's advert and all its routes (uuid → route), live for `ttlMs`. One round trip;
 * a running worker uses a RouteAdvertiser, which sends only what changed.
 */
export async function advertise(
  redis: Redis,
  keys: ClusterKeys,
  advert: WorkerAdvert,
  ttlMs: number,
  routes: Readonly<Record<string, Route>> = {},
): Promise<void> {
  await new RouteAdvertiser(redis, keys, ttlMs).publish(advert, new Map(Object.entries(routes)));
}

/** Removes a worker's advert and routes (on shutdown), so gateways stop sending it work at once. */
export async function withdraw(redis: Redis, keys: ClusterKeys, id: string): Promise<void> {
  await withDirectoryScripts(redis).annexWithdraw(
    keys.workers,
    keys.worker(id),
    keys.routes(id),
    id,
  );
}

export interface Snapshot {
  /** uuid → its route, for every uuid a live worker serves. */
  readonly live: ReadonlyMap<string, Route>;
  /** Location → the queue and the uuids served through it, as live workers route them. */
  readonly byLocation: ReadonlyMap<string, { queue: string; uuids: ReadonlySet<string> }>;
  /** Live workers serving their repositories. */
  readonly workers: number;
  /** Live workers still reading their repositories (serving those read so far). */
  readonly starting: number;
  /** How long ago the epoch began (ms, Redis time); undefined when there is none yet. */
  readonly epochAgeMs: number | undefined;
}

/** One worker's routes as a gateway holds them. */
export interface HeldRoutes {
  readonly version: string;
  readonly routes: ReadonlyMap<string, Route>;
}

/** Parses a routes hash (HGETALL: field, value…); entries that do not parse are skipped. */
export function parseRoutes(flat: readonly string[]): Map<string, Route> {
  const routes = new Map<string, Route>();
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const uuid = flat[i] as string;
    if (uuid === VERSION_FIELD) {
      continue;
    }
    try {
      const route = JSON.parse(flat[i + 1] as string) as Route;
      if (typeof route === 'object' && route !== null && typeof route.queue === 'string') {
        routes.set(
          uuid,
          typeof route.location === 'string' && route.location !== ''
            ? { queue: route.queue, location: route.location }
            : { queue: route.queue },
        );
      }
    } catch {
      // skipped
    }
  }
  return routes;
}

/**
 * Parses the DIRECTORY script's reply: the snapshot, and the routes of each live worker (those
 * not sent again are taken from `held`, what the caller held). Adverts that do not parse are
 * skipped. `changed` says whether the routes differ from `held` (a worker came, went or wrote).
 */
export function parseDirectoryReply(
  reply: readonly unknown[],
  held: ReadonlyMap<string, HeldRoutes> = new Map(),
  previous?: Snapshot,
): { snapshot: Snapshot; held: Map<string, HeldRoutes>; changed: boolean } {
  const first = reply[0];
  const age = typeof first === 'string' && first !== '' ? Number(first) : Number.NaN;
  const epochAgeMs = Number.isFinite(age) ? age : undefined;
  const now = new Map<string, HeldRoutes>();
  let workers = 0;
  let starting = 0;
  let changed = false;
  for (const item of reply.slice(1)) {
    if (!Array.isArray(item) || item.length < 3) {
      continue;
    }
    const [id, text, version, flat] = item as [string, string, string, string[] | undefined];
    let advert: WorkerAdvert;
    try {
      advert = JSON.parse(text) as WorkerAdvert;
    } catch {
      continue;
    }
    if (typeof advert !== 'object' || advert === null) {
      continue;
    }
    // A worker still reading its repositories serves those it has found already.
    if (advert.starting === true) {
      starting += 1;
    } else {
      workers += 1;
    }
    const before = held.get(id);
    if (Array.isArray(flat)) {
      now.set(id, { version, routes: parseRoutes(flat) });
      changed ||= before === undefined || before.version !== version;
    } else if (before !== undefined && before.version === version) {
      now.set(id, before);
    } else {
      changed = true; // not sent, and not held: read again next time
    }
  }
  for (const id of held.keys()) {
    if (!now.has(id)) {
      changed = true;
    }
  }
  if (previous !== undefined && !changed) {
    return {
      snapshot: { ...previous, workers, starting, epochAgeMs },
      held: now,
      changed,
    };
  }
  const live = new Map<string, Route>();
  const byLocation = new Map<string, { queue: string; uuids: Set<string> }>();
  for (const { routes } of now.values()) {
    for (const [uuid, route] of routes) {
      live.set(uuid, route);
      if (route.location !== undefined) {
        let entry = byLocation.get(route.location);
        if (entry === undefined) {
          entry = { queue: route.queue, uuids: new Set() };
          byLocation.set(route.location, entry);
        }
        entry.uuids.add(uuid);
      }
    }
  }
  return { snapshot: { live, byLocation, workers, starting, epochAgeMs }, held: now, changed };
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
  /** Each live worker's routes, as last read (re-read only when their version changes). */
  private held = new Map<string, HeldRoutes>();
  private readAt = -Infinity;
  private reading: Promise<Snapshot> | null = null;
  /** Every uuid seen served, kept for the life of the process. */
  private readonly remembered = new Set<string>();
  private readonly cacheMs: number;
  private readonly missRefreshMs: number;
  private readonly settleMs: number;
  private readonly startupWaitMs: number;
  private reads = 0;
  private routeReads = 0;

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

  /** Snapshot reads that brought changed routes (a worker came, went, or its routes changed). */
  get routeChanges(): number {
    return this.routeReads;
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
    if (!snapshot.live.has(uuid)) {
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
    const route = snapshot.live.get(uuid);
    if (route !== undefined) {
      this.remembered.add(uuid);
      return route.location === undefined
        ? { uuid, path: route.queue }
        : { uuid, path: route.queue, location: route.location };
    }
    if (await this.mentioned(uuid)) {
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

  /** Served once: known to the cluster (one HEXISTS) or to this gateway. */
  private async mentioned(uuid: string): Promise<boolean> {
    if (this.remembered.has(uuid)) {
      return true;
    }
    const { redis, keys } = this.options;
    try {
      return (await redis.hexists(keys.uuids, uuid)) === 1;
    } catch (error) {
      throw unavailable(
        `cluster state unavailable: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
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
    let reply: DirectoryReply;
    const versions: string[] = [];
    for (const [id, { version }] of this.held) {
      versions.push(id, version);
    }
    try {
      this.reads += 1;
      reply = await withDirectoryScripts(redis).annexDirectory(
        keys.workers,
        keys.epoch,
        keys.workerPrefix,
        keys.routesPrefix,
        ...versions,
      );
    } catch (error) {
      this.snapshot = null;
      this.held = new Map();
      throw unavailable(
        `cluster state unavailable: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    const parsed = parseDirectoryReply(reply, this.held, this.snapshot ?? undefined);
    if (parsed.changed) {
      this.routeReads += 1;
    }
    this.held = parsed.held;
    this.snapshot = parsed.snapshot;
    this.readAt = started;
    return this.snapshot;
  }
}
