/**
 * The LockStore seam (DESIGN.md "Locks"): the records of live retention locks, shared by every
 * gateway of a deployment. The embedded server keeps them in memory; cluster mode in Redis. A
 * store only keeps records; whoever holds the repository-side lock releases it.
 */
export interface LockRecord {
  readonly lockid: string;
  /** The served UUID the key was locked in. */
  readonly repository: string;
  readonly key: string;
  /** Who holds the repository-side lock (a process identity). */
  readonly holder: string;
  readonly lockedAt: number;
  /** Milliseconds since the epoch. */
  readonly expiresAt: number;
}

export interface LockStore {
  /**
   * Records a new lock unless `limit` live locks exist already (`--lockedfiles`); returns whether
   * it was recorded.
   */
  create(record: LockRecord, limit: number): Promise<boolean>;
  get(lockid: string): Promise<LockRecord | undefined>;
  /** Moves a live lock's expiry; false when the lock no longer exists. */
  extend(lockid: string, expiresAt: number): Promise<boolean>;
  /** Removes a lock; returns the record that was removed. */
  delete(lockid: string): Promise<LockRecord | undefined>;
  /** Whether some live lock covers (repository, key). */
  isLocked(repository: string, key: string): Promise<boolean>;
  /** Number of live locks. */
  count(): Promise<number>;
  /** Live locks whose expiry is at or before `now`. */
  expired(now: number): Promise<LockRecord[]>;
}
