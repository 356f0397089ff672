/**
 * What the gateway asks of retention locks (DESIGN.md "Locks"), whoever holds them: the embedded
 * server holds the repository-side locks in its own process; in cluster mode the lock-service
 * does, and the gateway only talks to it and to the LockStore.
 */
import { type RepositoryTarget } from '@annex-p2phttp/protocol';

/**
 * Keeps a lock held while a keeplocked request is open; `end` when the request goes away, `stop`
 * before unlocking (a keeper left running would keep the lock, or write it again after Redis
 * lost it, once it was unlocked).
 */
export interface LockKeeper {
  end(): Promise<void>;
  stop(): void;
}

/**
 * A LockKeeper that runs `heartbeat` (which moves the lock's expiry forward) every `periodMs`, and
 * once more on `end`, so that the lock expires a full ttl after the keeplocked request went away.
 * A heartbeat that fails is retried at the next period.
 */
export class HeartbeatKeeper implements LockKeeper {
  private readonly interval: NodeJS.Timeout;
  private ended = false;

  constructor(
    private readonly heartbeat: () => Promise<unknown>,
    periodMs: number,
    private readonly onStop?: (keeper: HeartbeatKeeper) => void,
  ) {
    this.interval = setInterval(() => void heartbeat().catch(() => undefined), periodMs);
    this.interval.unref();
  }

  async end(): Promise<void> {
    if (this.stop()) {
      await this.heartbeat().catch(() => undefined);
    }
  }

  /** Stops heartbeating without a last heartbeat (shutdown); false if already stopped. */
  stop(): boolean {
    if (this.ended) {
      return false;
    }
    this.ended = true;
    clearInterval(this.interval);
    this.onStop?.(this);
    return true;
  }
}

export interface RetentionLocks {
  /** Takes a retention lock; the lockid, or null when refused (absent, or too many locks). */
  lock(target: RepositoryTarget, key: string): Promise<string | null>;
  /** Whether a live lock covers the key: removal must then be refused. */
  isLocked(serverUuid: string, key: string): Promise<boolean>;
  /** Starts keeping a lock held; null for an unknown or expired lockid. */
  keep(lockid: string): Promise<LockKeeper | null>;
  /** Releases a lock now; a no-op for an unknown lockid. */
  unlock(lockid: string): Promise<void>;
  /** Number of live locks (this process's, or the deployment's). */
  count(): Promise<number>;
  /** Stops: releases what this process holds. */
  close(): Promise<void>;
}
