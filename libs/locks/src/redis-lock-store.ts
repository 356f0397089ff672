/**
 * The cluster-wide LockStore in Redis (ioredis). Every change is one atomic Lua script (lua/), so
 * gateways and lock-services on many machines can create, extend, claim and delete records at
 * once without losing the `--lockedfiles` bound or a key's cover count. Key layout: redis-keys.ts.
 *
 * Beyond LockStore, the lock-service uses: `claimPending` (a reserved record becomes held by a
 * lock-service), `adoptOrphans` (records whose holder stopped heartbeating move to a live one),
 * `deleteIf` (delete only when still expired, or still reserved), `restore` (re-record after Redis
 * lost its data or another primary took over) and the holder liveness and epoch keys.
 *
 * A key is a byte string (@annex-p2phttp/protocol, byte-text): it is stored as its `wireText`
 * (itself, or `[base64url]` when it is not UTF-8), because ioredis sends strings as UTF-8.
 */
import { randomUUID } from 'node:crypto';
import type Redis from 'ioredis';
import { primaryId } from '@annex-p2phttp/redis';
import { fromWireText, wireText, type SessionParams } from '@annex-p2phttp/protocol';
import { type LockRecord, type LockStore } from './lock-store';
import { LOCK_SCRIPTS, type LuaScript } from './lua-scripts';
import { LockKeys } from './redis-keys';

export interface ClusterLockRecord extends LockRecord {
  /** How the holder opens its session to re-take the lock (the request's session parameters). */
  readonly session?: SessionParams;
}

/** How long the mark of a released lock stays (its gateway waits seconds at most). */
const RELEASED_MARK_MS = 60_000;

/** The holder of a record that a gateway reserved and no lock-service holds yet. */
export const RESERVED = '';

const FIELDS = ['lockid', 'repository', 'key', 'holder', 'lockedAt', 'expiresAt', 'session'];

export class RedisLockStore implements LockStore {
  readonly keys: LockKeys;

  constructor(
    private readonly redis: Redis,
    prefix?: string,
  ) {
    this.keys = new LockKeys(prefix);
  }

  async create(record: ClusterLockRecord, limit: number): Promise<boolean> {
    const created = await this.script(
      LOCK_SCRIPTS.create,
      [this.keys.record(record.lockid), this.keys.expiry, this.keys.cover],
      [String(limit), ...fieldValues(record)],
    );
    return created === 1;
  }

  async get(lockid: string): Promise<ClusterLockRecord | undefined> {
    return parseRecord(await this.redis.hgetall(this.keys.record(lockid)));
  }

  async extend(lockid: string, expiresAt: number): Promise<boolean> {
    const extended = await this.script(
      LOCK_SCRIPTS.extend,
      [this.keys.record(lockid), this.keys.expiry],
      [lockid, String(expiresAt)],
    );
    return extended === 1;
  }

  delete(lockid: string): Promise<ClusterLockRecord | undefined> {
    return this.deleteWhere(lockid, 'any', '');
  }

  /**
   * Deletes a record only while it is still expired at `now` (a heartbeat may just have moved
   * it), or only while `holder` holds it. Returns the deleted record.
   */
  deleteIf(
    lockid: string,
    condition: { expiredAt: number } | { holder: string },
  ): Promise<ClusterLockRecord | undefined> {
    return 'expiredAt' in condition
      ? this.deleteWhere(lockid, 'expired', String(condition.expiredAt))
      : this.deleteWhere(lockid, 'holder', condition.holder);
  }

  async isLocked(repository: string, key: string): Promise<boolean> {
    const count = await this.redis.hget(this.keys.cover, `${repository} ${wireText(key)}`);
    return count !== null && Number(count) > 0;
  }

  count(): Promise<number> {
    return this.redis.zcard(this.keys.expiry);
  }

  async expired(now: number): Promise<ClusterLockRecord[]> {
    const ids = await this.redis.zrangebyscore(this.keys.expiry, '-inf', now);
    const records = await Promise.all(ids.map((id) => this.get(id)));
    return records.filter((r): r is ClusterLockRecord => r !== undefined && r.expiresAt <= now);
  }

  /**
   * Deletes the records whose expiry passed at `now` (whoever holds them; one a heartbeat moves
   * meanwhile stays), and tells their holders over pub/sub. Returns the deleted records. What
   * both the gateway (before it locks, so dead records never hold the bound) and the
   * lock-service (every tick) do about expiry.
   */
  async sweepExpired(now: number): Promise<ClusterLockRecord[]> {
    const deleted: ClusterLockRecord[] = [];
    for (const record of await this.expired(now)) {
      if (await this.deleteIf(record.lockid, { expiredAt: now })) {
        await this.publishUnlock(record.lockid);
        deleted.push(record);
      }
    }
    return deleted;
  }

  /** The lockids of every record, soonest expiry first. */
  lockids(): Promise<string[]> {
    return this.redis.zrange(this.keys.expiry, 0, -1);
  }

  /** A reserved record becomes held by `holder`; false when it is gone or held already. */
  async claimPending(
    lockid: string,
    holder: string,
    lockedAt: number,
    expiresAt: number,
    session: SessionParams,
  ): Promise<boolean> {
    const claimed = await this.script(
      LOCK_SCRIPTS.claimPending,
      [this.keys.record(lockid), this.keys.expiry],
      [lockid, holder, String(lockedAt), String(expiresAt), JSON.stringify(session)],
    );
    return claimed === 1;
  }

  /**
   * Moves up to `max` records whose holder is not alive (no liveness key) to `holder`, optionally
   * only records of the `served` repositories; returns their lockids.
   */
  async adoptOrphans(holder: string, max: number, served?: readonly string[]): Promise<string[]> {
    const adopted = await this.script(
      LOCK_SCRIPTS.adopt,
      [this.keys.expiry],
      [this.keys.recordPrefix, this.keys.holderPrefix, holder, String(max), ...(served ?? [])],
    );
    return adopted as string[];
  }

  /**
   * The repositories that have records whose holder is dead (what `adoptOrphans` would move), so
   * that a holder names only those it serves, not every repository, when it adopts.
   */
  async orphanedRepositories(holder: string): Promise<string[]> {
    return (await this.script(
      LOCK_SCRIPTS.orphaned,
      [this.keys.expiry],
      [this.keys.recordPrefix, this.keys.holderPrefix, holder],
    )) as string[];
  }

  /** The lockids of the records `holder` holds. */
  async heldBy(holder: string): Promise<string[]> {
    return (await this.script(
      LOCK_SCRIPTS.heldBy,
      [this.keys.expiry],
      [this.keys.recordPrefix, holder],
    )) as string[];
  }

  /**
   * Records again a lock its holder still holds, whatever the bound (after Redis lost data or
   * another primary took over): creates the record when it is gone, and when the same holder's
   * record is there with an earlier expiry (the new primary missed the extends that the old one
   * took after the switch) moves it to `record.expiresAt`. True when the record was created or
   * its expiry moved.
   */
  async restore(record: ClusterLockRecord): Promise<boolean> {
    const restored = await this.script(
      LOCK_SCRIPTS.restore,
      [this.keys.record(record.lockid), this.keys.expiry, this.keys.cover],
      fieldValues(record),
    );
    return restored === 1 || restored === 2;
  }

  /** The holder and expiry of each record, or null for records that do not exist. */
  async holders(
    lockids: readonly string[],
  ): Promise<Array<{ holder: string; expiresAt: number } | null>> {
    if (lockids.length === 0) {
      return [];
    }
    const pipeline = this.redis.pipeline();
    for (const lockid of lockids) {
      pipeline.hmget(this.keys.record(lockid), 'holder', 'expiresAt');
    }
    const results = (await pipeline.exec()) ?? [];
    return results.map(([error, value]) => {
      if (error) {
        throw error;
      }
      const [holder, expiresAt] = value as [string | null, string | null];
      return holder === null || expiresAt === null
        ? null
        : { holder, expiresAt: Number(expiresAt) };
    });
  }

  /** Marks `holder` alive for `ttlMs`. */
  async heartbeatHolder(holder: string, ttlMs: number): Promise<void> {
    await this.redis.set(this.keys.holder(holder), String(Date.now()), 'PX', ttlMs);
  }

  /** Marks `holder` dead at once, so that live lock-services adopt its records. */
  async dropHolder(holder: string): Promise<void> {
    await this.redis.del(this.keys.holder(holder));
  }

  async isHolderAlive(holder: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.holder(holder))) === 1;
  }

  /**
   * The epoch of the data in Redis, which tells lost records from deleted ones: a random value
   * created when absent, and the replication id of the primary (primary.ts of
   * @annex-p2phttp/redis). It changes when Redis lost the key (a restart without persistence, a
   * flush) and when another primary took over (a Sentinel failover: what the old primary had not
   * passed on to its replica yet is lost although the key is not), or Redis restarted.
   */
  async epoch(): Promise<string> {
    const [, primary] = await Promise.all([
      this.redis.set(this.keys.epoch, randomUUID(), 'NX'),
      primaryId(this.redis),
    ]);
    const epoch = await this.redis.get(this.keys.epoch);
    if (epoch === null) {
      throw new Error('the lock epoch vanished as it was read');
    }
    return primary === '' ? epoch : `${epoch} ${primary}`;
  }

  /** Tells the lock-services that a lock was released (its record deleted). */
  async publishUnlock(lockid: string): Promise<void> {
    await this.redis.publish(this.keys.unlockChannel, lockid);
  }

  /** Says that the repository-side lock of an unlocked lockid is released (kept a minute). */
  async markReleased(lockid: string): Promise<void> {
    await this.redis.set(this.keys.released(lockid), '1', 'PX', RELEASED_MARK_MS);
  }

  /** Whether the holder of an unlocked lockid has said it released the lock. */
  async isReleased(lockid: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.released(lockid))) === 1;
  }

  private async deleteWhere(
    lockid: string,
    mode: 'any' | 'expired' | 'holder',
    value: string,
  ): Promise<ClusterLockRecord | undefined> {
    const fields = (await this.script(
      LOCK_SCRIPTS.delete,
      [this.keys.record(lockid), this.keys.expiry, this.keys.cover],
      [lockid, mode, value],
    )) as string[] | null;
    if (!fields) {
      return undefined;
    }
    const map: Record<string, string> = {};
    for (let i = 0; i + 1 < fields.length; i += 2) {
      map[fields[i]!] = fields[i + 1]!;
    }
    return parseRecord(map);
  }

  /** EVALSHA, falling back to EVAL when Redis does not know the script (e.g. after a restart). */
  private async script(script: LuaScript, keys: string[], args: string[]): Promise<unknown> {
    try {
      return await this.redis.evalsha(script.sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (error instanceof Error && error.message.startsWith('NOSCRIPT')) {
        return this.redis.eval(script.source, keys.length, ...keys, ...args);
      }
      throw error;
    }
  }
}

function fieldValues(record: ClusterLockRecord): string[] {
  return [
    record.lockid,
    record.repository,
    wireText(record.key),
    record.holder,
    String(record.lockedAt),
    String(record.expiresAt),
    record.session ? JSON.stringify(record.session) : '',
  ];
}

function parseRecord(map: Record<string, string>): ClusterLockRecord | undefined {
  if (!FIELDS.slice(0, 6).every((field) => typeof map[field] === 'string')) {
    return undefined;
  }
  const record: ClusterLockRecord = {
    lockid: map.lockid!,
    repository: map.repository!,
    key: fromWireText(map.key!),
    holder: map.holder!,
    lockedAt: Number(map.lockedAt),
    expiresAt: Number(map.expiresAt),
  };
  return map.session ? { ...record, session: JSON.parse(map.session) as SessionParams } : record;
}
