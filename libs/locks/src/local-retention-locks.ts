/**
 * The embedded server's retention locks (DESIGN.md "Locks"): lockcontent takes the lock in the
 * repository on a dedicated session and records it in the LockStore; it expires `ttlMs` after
 * locking unless a keeplocked request holds it, whose heartbeats push the expiry forward; unlock
 * releases at once. When a keeplocked request goes away without unlocking, the lock expires
 * `ttlMs` after its last heartbeat. Every held lock has a timer owned here.
 *
 * Locks outlive this process: each is a RepositoryLock (repository-lock.ts), whose retention file
 * git-annex keeps when the session ends by a signal; a lock whose session dies is forgotten. With
 * a LockJournal, each lock is also recorded in its repository, and `restore` (at start) takes
 * over the locks a previous process left: it holds them until they expire or are unlocked, and
 * lets go at once of those that expired meanwhile.
 */
import { randomUUID } from 'node:crypto';
import { CONTENT_LOCK_MS, type RepositoryTarget } from '@annex-p2phttp/protocol';
import { type JournaledLock, type LockJournal } from './lock-journal';
import { type LockStore } from './lock-store';
import { RepositoryLock, type ContentLocker } from './repository-lock';
import { HeartbeatKeeper, type LockKeeper, type RetentionLocks } from './retention-locks';

interface Held {
  readonly lock: RepositoryLock;
  readonly lockedAt: number;
  expiresAt: number;
  timer: NodeJS.Timeout | null;
}

export interface LocalRetentionLocksOptions {
  readonly lockedFiles: number;
  readonly ttlMs?: number;
  readonly holder?: string;
  readonly now?: () => number;
  /** Where held locks are remembered for the next process; none: they are not taken over. */
  readonly journal?: LockJournal;
  /** Problems (a journal that cannot be written). */
  readonly log?: (message: string) => void;
}

export class LocalRetentionLocks implements RetentionLocks {
  private readonly held = new Map<string, Held>();
  private readonly ttlMs: number;
  private readonly now: () => number;
  private closed = false;
  private expiredCount = 0;

  constructor(
    private readonly store: LockStore,
    private readonly locker: ContentLocker,
    private readonly options: LocalRetentionLocksOptions,
  ) {
    this.ttlMs = options.ttlMs ?? CONTENT_LOCK_MS;
    this.now = options.now ?? Date.now;
  }

  /** Takes a retention lock; the lockid, or null when refused (absent, or too many locks). */
  async lock(target: RepositoryTarget, key: string): Promise<string | null> {
    if (this.closed) {
      return null;
    }
    const lockedAt = this.now();
    const lockid = randomUUID();
    return (await this.take(lockid, target, key, lockedAt, lockedAt + this.ttlMs)) ? lockid : null;
  }

  /**
   * Takes over the locks a previous process left in the journal of the repositories served from
   * `repoPaths`: live ones are taken again and held until they expire or are unlocked; expired
   * ones are let go at once (taken and unlocked, which ends git-annex's retention file too).
   */
  async restore(repoPaths: readonly string[]): Promise<number> {
    const { journal } = this.options;
    if (!journal) {
      return 0;
    }
    let restored = 0;
    for (const repoPath of new Set(repoPaths)) {
      const locks = await journal.read(repoPath).catch((error: unknown) => {
        this.log(`cannot read the locks recorded in ${repoPath}: ${String(error)}`);
        return [];
      });
      const results = await Promise.all(locks.map((lock) => this.takeOver(lock)));
      restored += results.filter(Boolean).length;
    }
    return restored;
  }

  /** Whether a live lock covers the key: removal must then be refused. */
  isLocked(serverUuid: string, key: string): Promise<boolean> {
    return this.store.isLocked(serverUuid, key);
  }

  /**
   * Starts keeping a lock held (a keeplocked request). Returns null for an unknown or expired
   * lockid; otherwise a handle whose `end` stops keeping (the lock then expires `ttlMs` later).
   */
  async keep(lockid: string): Promise<LockKeeper | null> {
    const held = this.held.get(lockid);
    if (!held || !(await this.store.get(lockid))) {
      return null;
    }
    const heartbeat = async () => {
      const expiresAt = this.now() + this.ttlMs;
      if (this.held.get(lockid) === held && (await this.store.extend(lockid, expiresAt))) {
        held.expiresAt = expiresAt;
        this.schedule(lockid, held);
        await held.lock.cover(
          expiresAt,
          () => this.held.get(lockid) === held,
          (error) => this.log(`cannot renew lock ${lockid}: ${String(error)}`),
        );
        await this.record(lockid, held);
      }
    };
    await heartbeat();
    return new HeartbeatKeeper(heartbeat, Math.max(1000, this.ttlMs / 4));
  }

  /** Releases a lock now. */
  async unlock(lockid: string): Promise<void> {
    const held = this.held.get(lockid);
    await this.forget(lockid);
    await held?.lock.release();
  }

  /** Locks released because they expired, since start. */
  get expirations(): number {
    return this.expiredCount;
  }

  get size(): number {
    return this.held.size;
  }

  count(): Promise<number> {
    return Promise.resolve(this.held.size);
  }

  /**
   * Stops (on shutdown). The locks are not released: their sessions end by a signal, git-annex
   * keeps their retention files, and the journal keeps them for the next process.
   */
  close(): Promise<void> {
    this.closed = true;
    for (const held of this.held.values()) {
      if (held.timer) {
        clearTimeout(held.timer);
      }
      held.lock.abandon();
    }
    this.held.clear();
    return Promise.resolve();
  }

  /** Records the lock, takes it in the repository and holds it; false when refused. */
  private async take(
    lockid: string,
    target: RepositoryTarget,
    key: string,
    lockedAt: number,
    expiresAt: number,
  ): Promise<boolean> {
    const record = {
      lockid,
      repository: target.serverUuid,
      key,
      holder: this.options.holder ?? `pid:${process.pid}`,
      lockedAt,
      expiresAt,
    };
    // Reserve the record first, so `--lockedfiles` holds however many lock at once.
    if (!(await this.store.create(record, this.options.lockedFiles))) {
      return false;
    }
    let lock: RepositoryLock | null = null;
    try {
      lock = await RepositoryLock.take(this.locker, target, key, this.now);
    } finally {
      if (!lock) {
        await this.store.delete(lockid);
      }
    }
    if (!lock) {
      return false;
    }
    if (this.closed) {
      await this.store.delete(lockid);
      lock.abandon();
      return false;
    }
    const held: Held = { lock, lockedAt, expiresAt, timer: null };
    this.held.set(lockid, held);
    // A lock whose session dies is forgotten.
    lock.onLost(() => {
      if (this.held.get(lockid) === held) {
        void this.forget(lockid);
      }
    });
    this.schedule(lockid, held);
    await this.record(lockid, held);
    return true;
  }

  /** A lock of the journal: held again if it is still live, else let go. */
  private async takeOver(lock: JournaledLock): Promise<boolean> {
    const target: RepositoryTarget = {
      repoPath: lock.repoPath,
      serverUuid: lock.serverUuid,
      clientUuid: lock.clientUuid,
      bypass: lock.bypass,
      version: lock.version,
      mode: lock.mode,
    };
    try {
      if (
        lock.expiresAt > this.now() &&
        !this.held.has(lock.lockid) &&
        (await this.take(lock.lockid, target, lock.key, lock.lockedAt, lock.expiresAt))
      ) {
        return true;
      }
      if (!this.held.has(lock.lockid)) {
        // Expired or no longer takeable: a lock taken now and unlocked at once ends the retention
        // file the previous process left (git-annex deletes it when its own lock wrote it last).
        await this.options.journal?.remove(lock.repoPath, lock.lockid);
        const held = await this.locker.lockContent(target, lock.key);
        await held?.release();
      }
    } catch (error) {
      this.log(`cannot take over lock ${lock.lockid}: ${String(error)}`);
    }
    return false;
  }

  private async record(lockid: string, held: Held): Promise<void> {
    const { journal } = this.options;
    if (!journal) {
      return;
    }
    const { target, key } = held.lock;
    try {
      await journal.write({
        lockid,
        repoPath: target.repoPath,
        serverUuid: target.serverUuid,
        key,
        clientUuid: target.clientUuid,
        bypass: target.bypass,
        version: target.version,
        mode: target.mode,
        lockedAt: held.lockedAt,
        expiresAt: held.expiresAt,
      });
    } catch (error) {
      this.log(`cannot record lock ${lockid} for a restart: ${String(error)}`);
    }
  }

  private schedule(lockid: string, held: Held): void {
    if (held.timer) {
      clearTimeout(held.timer);
    }
    held.timer = setTimeout(
      () => void this.expire(lockid),
      Math.max(0, held.expiresAt - this.now()),
    );
    held.timer.unref();
  }

  private async expire(lockid: string): Promise<void> {
    const record = await this.store.get(lockid);
    const held = this.held.get(lockid);
    if (record && held && record.expiresAt > this.now()) {
      held.expiresAt = record.expiresAt;
      this.schedule(lockid, held);
      return;
    }
    if (held) {
      this.expiredCount += 1;
    }
    await this.unlock(lockid);
  }

  private async forget(lockid: string): Promise<void> {
    const held = this.held.get(lockid);
    if (held?.timer) {
      clearTimeout(held.timer);
    }
    this.held.delete(lockid);
    await this.store.delete(lockid);
    if (held) {
      await this.options.journal
        ?.remove(held.lock.target.repoPath, lockid)
        .catch((error: unknown) => this.log(`cannot forget lock ${lockid}: ${String(error)}`));
    }
  }

  private log(message: string): void {
    this.options.log?.(message);
  }
}
