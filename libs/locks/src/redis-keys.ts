/**
 * Where cluster mode keeps retention locks in Redis. Every name starts with one configurable prefix
 * (`--redis-prefix`, default `annex-p2phttp:`), so several deployments can share a Redis:
 *
 *   <prefix>lock:<lockid>          hash: lockid repository key holder lockedAt expiresAt session
 *   <prefix>locks:expiry           sorted set: lockid scored by expiresAt (every record, live or
 *                                  reserved; its size is the cluster-wide count for --lockedfiles)
 *   <prefix>locks:cover            hash: "<repository> <key>" -> number of records covering it
 *   <prefix>locks:holder:<holder>  a lock-service's liveness, with a TTL it keeps refreshing
 *   <prefix>locks:epoch            random value set once; its loss means Redis lost its data
 *                                  (with the primary's replication id, the lock epoch)
 *   <prefix>locks:unlock           pub/sub channel: a lockid whose record was deleted
 *   <prefix>bull:lock-requests:…   the BullMQ queue of lock requests to the lock-services
 */
export const DEFAULT_REDIS_PREFIX = 'annex-p2phttp:';

/** The BullMQ queue gateways send lock requests to. */
export const LOCK_REQUEST_QUEUE = 'lock-requests';

export class LockKeys {
  readonly recordPrefix: string;
  readonly expiry: string;
  readonly cover: string;
  readonly holderPrefix: string;
  readonly epoch: string;
  readonly unlockChannel: string;
  /** BullMQ's `prefix` option (BullMQ adds its own `:` after it). */
  readonly bullPrefix: string;

  constructor(readonly prefix: string = DEFAULT_REDIS_PREFIX) {
    this.recordPrefix = `${prefix}lock:`;
    this.expiry = `${prefix}locks:expiry`;
    this.cover = `${prefix}locks:cover`;
    this.holderPrefix = `${prefix}locks:holder:`;
    this.epoch = `${prefix}locks:epoch`;
    this.unlockChannel = `${prefix}locks:unlock`;
    this.bullPrefix = `${prefix}bull`;
  }

  record(lockid: string): string {
    return `${this.recordPrefix}${lockid}`;
  }

  holder(holder: string): string {
    return `${this.holderPrefix}${holder}`;
  }
}
