/**
 * What both holders of repository-side retention locks share (the embedded server's
 * LocalRetentionLocks and the lock-service's ClusterLockHolder): a lock taken in the repository
 * itself, LOCKCONTENT on a dedicated session (DESIGN.md "Locks"), and kept covered by git-annex's
 * retention file for as long as its holder wants it.
 *
 * The session holding a lock ends by a signal when its process goes (SIGTERM or a crash), and
 * git-annex then keeps the lock's retention file, which protects the content for
 * GIT_ANNEX_RETENTION_MS after the lock was taken. A lock kept longer than that is taken once more
 * on a fresh session (`cover`), once its expiry is RENEW_SLACK_MS past its retention file; the old
 * session is then unlocked, which leaves the newer retention file. When the session holding it
 * dies, `onLost` tells the holder, which forgets the lock (embedded) or takes it again (cluster).
 */
import { type HeldLock } from '@annex-p2phttp/ops';
import { type RepositoryTarget } from '@annex-p2phttp/protocol';

/** How long git-annex keeps a retention file after LOCKCONTENT (PROTOCOL.md §1.5). */
export const GIT_ANNEX_RETENTION_MS = 10 * 60_000;
/**
 * A lock is taken again once its expiry is this far past its retention file, not at once: every
 * keeplocked begins with a heartbeat that moves the expiry a little past it.
 */
export const RENEW_SLACK_MS = 60_000;

/** Takes a repository-side retention lock on a dedicated session; null when refused. */
export interface ContentLocker {
  lockContent(target: RepositoryTarget, key: string): Promise<HeldLock | null>;
}

export class RepositoryLock {
  /** Until when git-annex's retention file protects the content without the session. */
  private coveredUntil: number;
  private ended = false;
  private readonly lost: Array<() => void> = [];

  private constructor(
    private readonly locker: ContentLocker,
    readonly target: RepositoryTarget,
    readonly key: string,
    private lock: HeldLock,
    private readonly now: () => number,
  ) {
    this.coveredUntil = now() + GIT_ANNEX_RETENTION_MS;
    this.watch(lock);
  }

  /** LOCKCONTENT on a dedicated session; null when the repository refuses (content absent). */
  static async take(
    locker: ContentLocker,
    target: RepositoryTarget,
    key: string,
    now: () => number = Date.now,
  ): Promise<RepositoryLock | null> {
    const lock = await locker.lockContent(target, key);
    return lock ? new RepositoryLock(locker, target, key, lock, now) : null;
  }

  /**
   * Makes git-annex's retention file cover a lock that lasts until `expiresAt`: once that is
   * RENEW_SLACK_MS past the current retention file, takes the lock once more on a fresh session,
   * then unlocks the old one. `wanted` is asked again once the fresh lock is taken: when the holder
   * no longer wants the lock, the fresh one is released. Never throws: a failure to take it goes
   * to `failed`, and the next call tries again.
   */
  async cover(
    expiresAt: number,
    wanted: () => boolean,
    failed: (error: unknown) => void,
  ): Promise<void> {
    if (this.ended || expiresAt <= this.coveredUntil + RENEW_SLACK_MS) {
      return;
    }
    let fresh: HeldLock | null;
    try {
      fresh = await this.locker.lockContent(this.target, this.key);
    } catch (error) {
      failed(error);
      return;
    }
    if (!fresh) {
      return;
    }
    if (this.ended || !wanted()) {
      await fresh.release();
      return;
    }
    const old = this.lock;
    this.lock = fresh;
    this.coveredUntil = this.now() + GIT_ANNEX_RETENTION_MS;
    this.watch(fresh);
    await old.release();
  }

  /** Called if the session holding the lock now dies (not after `release` or `abandon`). */
  onLost(listener: () => void): void {
    this.lost.push(listener);
  }

  /** Unlocks in the repository. Idempotent. */
  async release(): Promise<void> {
    this.ended = true;
    await this.lock.release();
  }

  /**
   * Ends the session by a signal without unlocking: the retention file outlives this process
   * (shutdown). Idempotent.
   */
  abandon(): void {
    this.ended = true;
    this.lock.abandon();
  }

  private watch(lock: HeldLock): void {
    lock.onLost(() => {
      if (!this.ended && this.lock === lock) {
        for (const listener of this.lost) {
          listener();
        }
      }
    });
  }
}
