/**
 * The RetentionLocks of a cluster gateway deployed without the lock service: lockcontent answers
 * 503, and since no lock can then exist, nothing is locked.
 */
import { unavailable } from '@annex-p2phttp/dispatch';
import { type LockKeeper, type RetentionLocks } from '@annex-p2phttp/locks';

export class UnavailableRetentionLocks implements RetentionLocks {
  lock(): Promise<string | null> {
    return Promise.reject(unavailable('retention locks need the lock service', 30));
  }

  isLocked(): Promise<boolean> {
    return Promise.resolve(false);
  }

  keep(): Promise<LockKeeper | null> {
    return Promise.resolve(null);
  }

  unlock(): Promise<void> {
    return Promise.resolve();
  }

  count(): Promise<number> {
    return Promise.resolve(0);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
