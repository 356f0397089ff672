/**
 * What a gateway asks a lock-service (through the BullMQ queue LOCK_REQUEST_QUEUE): take the
 * repository-side lock for a record the gateway reserved, and claim the record. The reply says
 * whether the lock is held.
 */
import { fromWireText, wireText, type SessionParams } from '@annex-p2phttp/protocol';

export interface LockRequest extends SessionParams {
  /** The reserved record's lockid (also the job id). */
  readonly lockid: string;
  /** The served UUID to lock in. */
  readonly serverUuid: string;
  /** The key as `wireText` (@annex-p2phttp/protocol): UTF-8 safe, whatever its bytes. */
  readonly key: string;
  /** expiresAt = time of locking + ttlMs. */
  readonly ttlMs: number;
  /**
   * The replication id of the Redis primary the request was queued on, when the gateway knew
   * it: a lock-service does not take a lock for a request queued on an earlier primary (one that
   * outlived a failover, whose gateway answered 503 when it lost that primary).
   */
  readonly primary?: string;
}

export interface LockReply {
  readonly locked: boolean;
}

export const LOCK_JOB_NAME = 'lockcontent';

/** The `key` of a LockRequest for a key (a byte string). */
export function requestKeyOf(key: string): string {
  return wireText(key);
}

/** The key (a byte string) a LockRequest names. */
export function keyOfRequest(request: LockRequest): string {
  return fromWireText(request.key);
}
