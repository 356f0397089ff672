/**
 * Retention locks (DESIGN.md "Locks"): lockcontent takes the lock in the repository on a dedicated
 * session and records it in the LockStore; it expires `ttlMs` after locking unless a keeplocked
 * request holds it, whose heartbeats push the expiry forward; unlock releases at once. When a
 * keeplocked request goes away without unlocking, the lock expires `ttlMs` after its last
 * heartbeat. Every held lock has a timer owned here, and all are released on shutdown.
 */
import { randomUUID } from 'node:crypto';
import { type Dispatcher, type HeldLock } from '@annex-p2phttp/dispatch';
import {
  HeartbeatKeeper,
  type LockKeeper,
  type LockStore,
  type RetentionLocks,
} from '@annex-p2phttp/locks';
import { type SessionTarget } from '@annex-p2phttp/p2p';

export const LOCK_TTL_MS = 10 * 60_000;

interface Held {
  readonly lock: HeldLock;
  timer: NodeJS.Timeout | null;
}

export interface LockServiceOptions {
  readonly lockedFiles: number;
  readonly ttlMs?: number;
  readonly holder?: string;
  readonly now?: () => number;
}

export class LockService implements RetentionLocks {
  private readonly held = new Map<string, Held>();
  private readonly ttlMs: number;
  private readonly now: () => number;
  private closed = false;
  private expiredCount = 0;

  constructor(
    private readonly store: LockStore,
    private readonly dispatcher: Dispatcher,
    private readonly options: LockServiceOptions,
  ) {
    this.ttlMs = options.ttlMs ?? LOCK_TTL_MS;
    this.now = options.now ?? Date.now;
  }

  /** Takes a retention lock; the lockid, or null when refused (absent, or too many locks). */
  async lock(target: SessionTarget, key: string): Promise<string | null> {
    if (this.closed) {
      return null;
    }
    const lockid = randomUUID();
    const lockedAt = this.now();
    const record = {
      lockid,
      repository: target.serverUuid,
      key,
      holder: this.options.holder ?? `pid:${process.pid}`,
      lockedAt,
      expiresAt: lockedAt + this.ttlMs,
    };
    // Reserve the record first, so `--lockedfiles` holds however many lock at once.
    if (!(await this.store.create(record, this.options.lockedFiles))) {
      return null;
    }
    let lock: HeldLock | null = null;
    try {
      lock = await this.dispatcher.lockContent(target, key);
    } finally {
      if (!lock) {
        await this.store.delete(lockid);
      }
    }
    if (!lock) {
      return null;
    }
    const held: Held = { lock, timer: null };
    this.held.set(lockid, held);
    lock.onLost(() => void this.forget(lockid));
    this.schedule(lockid, held, record.expiresAt);
    return lockid;
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
      if (await this.store.extend(lockid, expiresAt)) {
        this.schedule(lockid, held, expiresAt);
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

  /** Releases every lock (on shutdown). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.held.keys()].map((lockid) => this.unlock(lockid)));
  }

  private schedule(lockid: string, held: Held, expiresAt: number): void {
    if (held.timer) {
      clearTimeout(held.timer);
    }
    held.timer = setTimeout(() => void this.expire(lockid), Math.max(0, expiresAt - this.now()));
    held.timer.unref();
  }

  private async expire(lockid: string): Promise<void> {
    const record = await this.store.get(lockid);
    const held = this.held.get(lockid);
    if (record && held && record.expiresAt > this.now()) {
      this.schedule(lockid, held, record.expiresAt);
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
  }
}
