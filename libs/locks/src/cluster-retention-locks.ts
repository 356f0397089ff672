/**
 * The gateway's retention locks in cluster mode. The gateway holds nothing itself: lockcontent
 * reserves a record in the RedisLockStore (so `--lockedfiles` bounds the whole cluster), then asks
 * a lock-service over the BullMQ queue LOCK_REQUEST_QUEUE to take the repository-side lock and
 * claim the record; keeplocked moves the record's expiresAt forward; unlock deletes the record and
 * tells the holder over pub/sub. Any gateway can serve any lockid, since everything is in Redis.
 * While Redis is unreachable every call fails at once with LocksUnavailableError (HTTP 503).
 */
import { randomUUID } from 'node:crypto';
import { Queue, QueueEvents, type Job } from 'bullmq';
import type Redis from 'ioredis';
import { CONTENT_LOCK_MS, type ServedTarget } from '@annex-p2phttp/protocol';
import { PrimaryWatch } from '@annex-p2phttp/redis';
import { LOCK_JOB_NAME, requestKeyOf, type LockReply, type LockRequest } from './lock-requests';
import { LOCK_REQUEST_QUEUE } from './redis-keys';
import { closeRedis, LocksUnavailableError, openRedis, whenReady } from './redis-connection';
import { RedisLockStore, RESERVED } from './redis-lock-store';
import { HeartbeatKeeper, type LockKeeper, type RetentionLocks } from './retention-locks';

export const DEFAULT_LOCK_REQUEST_TIMEOUT_MS = 30_000;
/** How long an unlock waits at most for the holder to say it released the lock. */
const UNLOCK_WAIT_MS = 5000;
/** How soon the record of a failed lock request is tried again when it could not be deleted. */
const RELEASE_RETRY_MS = 500;

export interface ClusterRetentionLocksOptions {
  readonly redisUrl: string;
  /** Prefix of every Redis key (default `annex-p2phttp:`). */
  readonly prefix?: string;
  /** `--lockedfiles`: live locks across the cluster. */
  readonly lockedFiles: number;
  /** A lock expires this long after locking or after its last heartbeat (default 10 minutes). */
  readonly ttlMs?: number;
  /** Heartbeat period of an open keeplocked (default ttl / 4, at least one second). */
  readonly heartbeatMs?: number;
  /** How long to wait for a lock-service to answer a lock request (default 30 s). */
  readonly requestTimeoutMs?: number;
  readonly now?: () => number;
}

export class ClusterRetentionLocks implements RetentionLocks {
  readonly store: RedisLockStore;
  private readonly redis: Redis;
  private readonly eventsRedis: Redis;
  private readonly queue: Queue<LockRequest, LockReply>;
  private readonly queueEvents: QueueEvents;
  private readonly ttlMs: number;
  private readonly heartbeatMs: number;
  private readonly requestTimeoutMs: number;
  private readonly now: () => number;
  private readonly keepers = new Set<HeartbeatKeeper>();
  /** Lock requests waiting for their reply: they fail at once when Redis goes away. */
  private readonly waiting = new Set<(error: Error) => void>();
  /**
   * Records of failed lock requests that could not be deleted then (Redis was away): lockid ->
   * when the record expires anyway. Retried until deleted, so that a reservation made just
   * before a failover does not keep its key from being removed until it expires.
   */
  private readonly unreleased = new Map<string, number>();
  private releaseTimer: NodeJS.Timeout | null = null;
  /** Which Redis primary the command connection has; requests are stamped with it. */
  readonly primary: PrimaryWatch;
  private closed = false;

  constructor(private readonly options: ClusterRetentionLocksOptions) {
    this.ttlMs = options.ttlMs ?? CONTENT_LOCK_MS;
    this.heartbeatMs = options.heartbeatMs ?? Math.max(1000, this.ttlMs / 4);
    this.requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_LOCK_REQUEST_TIMEOUT_MS;
    this.now = options.now ?? Date.now;
    this.redis = openRedis(options.redisUrl, 'command', 'annex-p2phttp-gateway-locks');
    this.eventsRedis = openRedis(options.redisUrl, 'blocking', 'annex-p2phttp-gateway-lock-events');
    this.store = new RedisLockStore(this.redis, options.prefix);
    this.primary = new PrimaryWatch(this.redis);
    this.redis.on('close', () => {
      const error = new LocksUnavailableError('lost the connection to Redis');
      for (const fail of [...this.waiting]) {
        fail(error);
      }
    });
    const prefix = this.store.keys.bullPrefix;
    this.queue = new Queue<LockRequest, LockReply>(LOCK_REQUEST_QUEUE, {
      connection: this.redis,
      prefix,
    });
    this.queue.on('error', () => undefined);
    this.queueEvents = new QueueEvents(LOCK_REQUEST_QUEUE, {
      connection: this.eventsRedis,
      prefix,
    });
    this.queueEvents.on('error', () => undefined);
  }

  /** Resolves once Redis answers and lock replies can be received. */
  async ready(timeoutMs = 10_000): Promise<void> {
    await whenReady(this.redis, timeoutMs);
    await this.queueEvents.waitUntilReady();
  }

  /** The gateway names only the served uuid: the lock-service knows where it is served. */
  async lock(target: ServedTarget, key: string): Promise<string | null> {
    if (this.closed) {
      return null;
    }
    // Deletes records whose expiry passed, so dead ones never hold the bound.
    const now = this.now();
    await guard(() => this.store.sweepExpired(now));
    const lockid = randomUUID();
    // Reserve first, so the bound holds however many gateways lock at once. A reservation
    // nobody claims (its gateway died) expires soon after the request would have timed out.
    const reserved = await guard(() =>
      this.store.create(
        {
          lockid,
          repository: target.serverUuid,
          key,
          holder: RESERVED,
          lockedAt: now,
          expiresAt: now + this.requestTimeoutMs + 5000,
        },
        this.options.lockedFiles,
      ),
    );
    if (!reserved) {
      return null;
    }
    let reply: LockReply;
    try {
      reply = await this.request({
        lockid,
        serverUuid: target.serverUuid,
        key: requestKeyOf(key),
        clientUuid: target.clientUuid,
        bypass: [...target.bypass],
        version: target.version,
        mode: target.mode,
        ttlMs: this.ttlMs,
        ...(await this.stamp()),
      });
    } catch (error) {
      // Whatever the lock-service did or will do, the lock must not outlive this failure.
      this.unreleased.set(lockid, now + this.requestTimeoutMs + 5000);
      await this.releaseFailed();
      throw error instanceof LocksUnavailableError
        ? error
        : new LocksUnavailableError(`no lock-service answered: ${message(error)}`, {
            cause: error,
          });
    }
    if (!reply.locked) {
      // The reservation is this gateway's to clean up (the lock-service leaves it).
      await this.store.deleteIf(lockid, { holder: RESERVED }).catch(() => undefined);
      return null;
    }
    return lockid;
  }

  isLocked(serverUuid: string, key: string): Promise<boolean> {
    return guard(() => this.store.isLocked(serverUuid, key));
  }

  /**
   * Keeps a lock: heartbeats move its record's expiry. This keeplocked request may be the only
   * party left that knows of the lock (its lock-service crashed and Redis lost its data): when a
   * heartbeat finds the record gone and the epoch changed, the record is written again, with the
   * holder it had. A live holder then finds its own record again; a dead one's record is adopted
   * by a live lock-service, which takes the lock in the repository again (a live holder that let
   * it go takes it again as well). A record deleted while the epoch stayed what it was at the
   * last heartbeat that found it was unlocked or expired, and stays deleted.
   */
  async keep(lockid: string): Promise<LockKeeper | null> {
    const record = await guard(() => this.store.get(lockid));
    if (!record || record.holder === RESERVED) {
      return null;
    }
    /** The epoch under which the record was last found (read before the extend that found it). */
    let epoch = await guard(() => this.store.epoch());
    const heartbeat = async () => {
      const expiresAt = this.now() + this.ttlMs;
      const now = await this.store.epoch();
      if (await this.store.extend(lockid, expiresAt)) {
        epoch = now;
        return;
      }
      if (now !== epoch) {
        await this.store.restore({ ...record, expiresAt });
        epoch = now;
      }
    };
    await guard(heartbeat);
    // A heartbeat that fails (Redis down a moment) is retried at the next period; the lock
    // expires only if heartbeats fail for a whole ttl.
    const keeper = new HeartbeatKeeper(heartbeat, this.heartbeatMs, (k) => this.keepers.delete(k));
    this.keepers.add(keeper);
    return keeper;
  }

  /**
   * Releases a lock: deletes its record and tells its holder, then waits (UNLOCK_WAIT_MS at most)
   * until the holder says the repository released it, so that a remove right after the unlock
   * is not refused by a lock the client already let go (as in embedded mode, where unlock
   * releases before it answers). A holder that is gone never says so; its lock ends with its
   * retention file.
   */
  async unlock(lockid: string): Promise<void> {
    const record = await guard(() => this.store.get(lockid));
    await guard(() => this.store.delete(lockid));
    // Tell the holder even when the record is gone: after Redis lost its data the holder may
    // still hold a lock whose record it has not recorded again yet.
    await guard(() => this.store.publishUnlock(lockid));
    if (record === undefined || record.holder === RESERVED) {
      return;
    }
    const deadline = performance.now() + UNLOCK_WAIT_MS;
    while (
      !(await this.store.isReleased(lockid).catch(() => true)) &&
      performance.now() < deadline
    ) {
      if (!(await this.store.isHolderAlive(record.holder).catch(() => false))) {
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  count(): Promise<number> {
    return guard(() => this.store.count());
  }

  /** Stops heartbeating and closes the connections; the locks stay with the lock-services. */
  async close(): Promise<void> {
    if (this.closed) {
      return;
    }
    this.stop();
    await Promise.allSettled([this.queueEvents.close(), this.queue.close()]);
    await Promise.all([closeRedis(this.redis), closeRedis(this.eventsRedis)]);
  }

  /**
   * Like close, without waiting for Redis: drops the connections at once (shutdown while Redis is
   * unreachable or does not answer, when close would wait for it).
   */
  disconnect(): void {
    this.stop();
    this.queueEvents.disconnect().catch(() => undefined);
    this.queue.disconnect().catch(() => undefined);
    this.redis.disconnect();
    this.eventsRedis.disconnect();
  }

  /**
   * Deletes the records of failed requests and tells their holders (a lock-service may have taken
   * the lock before the reply was lost); what fails is tried again in a moment, until its record
   * would have expired anyway or this closes.
   */
  private async releaseFailed(): Promise<void> {
    for (const [lockid, expiresAt] of [...this.unreleased]) {
      try {
        await this.store.delete(lockid);
        await this.store.publishUnlock(lockid);
        this.unreleased.delete(lockid);
      } catch {
        if (this.now() >= expiresAt) {
          this.unreleased.delete(lockid);
        }
      }
    }
    if (this.unreleased.size > 0 && this.releaseTimer === null && !this.closed) {
      this.releaseTimer = setTimeout(() => {
        this.releaseTimer = null;
        void this.releaseFailed();
      }, RELEASE_RETRY_MS);
    }
  }

  private stop(): void {
    this.closed = true;
    if (this.releaseTimer !== null) {
      clearTimeout(this.releaseTimer);
      this.releaseTimer = null;
    }
    for (const keeper of [...this.keepers]) {
      keeper.stop();
    }
  }

  /** The primary to stamp a request with, when known (one INFO per connection). */
  private async stamp(): Promise<{ primary?: string }> {
    const primary = this.primary.known ?? (await this.primary.current().catch(() => ''));
    return primary === '' ? {} : { primary };
  }

  /**
   * Sends a lock request and waits for its reply, within requestTimeoutMs in all; fails at once
   * when the connection to Redis is lost meanwhile (a failover): no reply could reach us then.
   */
  private async request(data: LockRequest): Promise<LockReply> {
    let fail: (error: Error) => void = () => undefined;
    const lost = new Promise<never>((_resolve, reject) => {
      fail = reject;
    });
    lost.catch(() => undefined);
    this.waiting.add(fail);
    try {
      return await Promise.race([this.send(data), lost]);
    } finally {
      this.waiting.delete(fail);
    }
  }

  private async send(data: LockRequest): Promise<LockReply> {
    const deadline = this.now() + this.requestTimeoutMs;
    let job: Job<LockRequest, LockReply> | undefined;
    try {
      job = await withTimeout(
        this.queue.add(LOCK_JOB_NAME, data, {
          jobId: data.lockid,
          attempts: 1,
          removeOnComplete: { age: 60 },
          removeOnFail: { age: 60 },
        }),
        this.requestTimeoutMs,
        'queueing the lock request',
      );
      const result: unknown = await job.waitUntilFinished(
        this.queueEvents,
        Math.max(1, deadline - this.now()),
      );
      return parseReply(result);
    } catch (error) {
      // Not taken yet: take it back, so no lock-service locks for a request that failed.
      await job?.remove().catch(() => undefined);
      throw error;
    }
  }
}

/** Runs a Redis call; any failure becomes LocksUnavailableError (HTTP 503). */
async function guard<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof LocksUnavailableError) {
      throw error;
    }
    throw new LocksUnavailableError(`lock store unavailable: ${message(error)}`, { cause: error });
  }
}

function parseReply(value: unknown): LockReply {
  const parsed: unknown = typeof value === 'string' ? JSON.parse(value) : value;
  if (typeof parsed === 'object' && parsed !== null && 'locked' in parsed) {
    return { locked: parsed.locked === true };
  }
  throw new Error(`unexpected lock reply ${JSON.stringify(value)}`);
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
