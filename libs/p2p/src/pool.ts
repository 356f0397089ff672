/**
 * The connection pool. Connections are keyed (see `poolKey`); a request takes an idle connection
 * of its key or opens one, and gives it back when its operation finished cleanly.
 *
 * - `maxActive` (`--jobs`) bounds the connections in use at once, opening ones included. Requests
 *   past it wait in one queue that is fair between clients (FairQueue): a freed slot goes to the
 *   waiting client that holds the fewest, and within a client no request is overtaken by a later
 *   one.
 * - `maxIdle` (`--proxyconnections`) bounds the idle connections across all keys; past it the
 *   least recently used idle connection is closed (O(1), see IdleSet).
 * - An idle connection unused for `idleTimeoutMs` is closed.
 * - Uncounted leases (held retention locks, bounded by `--lockedfiles` elsewhere) neither wait for
 *   nor take a job slot, so locks can never starve requests or the other way round.
 */
import { AbortError, P2PError } from './errors';
import { FairQueue } from './fair-queue';
import { IdleSet } from './idle-set';

export interface Poolable {
  readonly closed: boolean;
  close(reason?: Error): void;
  onClose(listener: (error: Error) => void): void;
}

export interface PoolOptions<C extends Poolable> {
  /** Opens a new connection for a key. */
  readonly open: (key: string) => Promise<C>;
  readonly maxActive: number;
  readonly maxIdle: number;
  /** 0 keeps idle connections until evicted. Default 5 minutes. */
  readonly idleTimeoutMs?: number;
  readonly now?: () => number;
}

export interface Lease<C> {
  readonly connection: C;
  readonly key: string;
  /** Whether the connection had served earlier leases (it may have died while idle). */
  readonly reused: boolean;
  /** Gives the connection back: kept idle when `reusable`, closed otherwise. Idempotent. */
  release(reusable: boolean): void;
}

export interface AcquireOptions {
  readonly signal?: AbortSignal;
  /** False for leases that hold a retention lock: they take no job slot. Default true. */
  readonly counted?: boolean;
  /** Who asks (a user, or an anonymous client's address): slots are shared fairly by it. */
  readonly client?: string;
}

export interface PoolStats {
  readonly active: number;
  readonly idle: number;
  readonly uncounted: number;
  readonly waiting: number;
  readonly opened: number;
  readonly openFailures: number;
  readonly evicted: number;
  readonly expired: number;
  readonly reused: number;
}

interface Waiter {
  readonly grant: () => void;
  readonly reject: (error: Error) => void;
}

const DEFAULT_IDLE_TIMEOUT_MS = 5 * 60_000;

export class ConnectionPool<C extends Poolable> {
  private readonly idle = new IdleSet<string, C>();
  private readonly waiters = new FairQueue<Waiter>();
  /** Counted slots in use per client. */
  private readonly inUse = new Map<string, number>();
  private readonly live = new Set<C>();
  private active = 0;
  private uncounted = 0;
  private closing: Promise<void> | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  private readonly counters = { opened: 0, openFailures: 0, evicted: 0, expired: 0, reused: 0 };
  private readonly idleTimeoutMs: number;
  private readonly now: () => number;

  constructor(private readonly options: PoolOptions<C>) {
    if (!Number.isInteger(options.maxActive) || options.maxActive < 1) {
      throw new RangeError('maxActive must be an integer >= 1');
    }
    if (!Number.isInteger(options.maxIdle) || options.maxIdle < 0) {
      throw new RangeError('maxIdle must be an integer >= 0');
    }
    this.idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.now = options.now ?? Date.now;
  }

  async acquire(key: string, options: AcquireOptions = {}): Promise<Lease<C>> {
    const counted = options.counted ?? true;
    const client = options.client ?? '';
    this.assertOpen();
    options.signal?.throwIfAborted();
    if (counted) {
      await this.takeSlot(client, options.signal);
    } else {
      this.uncounted += 1;
    }
    let connection: C;
    let reused: boolean;
    try {
      this.assertOpen();
      ({ connection, reused } = await this.obtain(key));
    } catch (error) {
      this.freeSlot(counted, client);
      throw error;
    }
    let released = false;
    return {
      connection,
      key,
      reused,
      release: (reusable: boolean) => {
        if (released) {
          return;
        }
        released = true;
        this.giveBack(key, connection, reusable);
        this.freeSlot(counted, client);
      },
    };
  }

  stats(): PoolStats {
    return {
      active: this.active,
      idle: this.idle.size,
      uncounted: this.uncounted,
      waiting: this.waiters.size,
      ...this.counters,
    };
  }

  /** Number of connections that exist (idle, in use, or held by locks). */
  get size(): number {
    return this.live.size;
  }

  /**
   * Closes the pool: waiting requests fail, idle connections close now, and connections still in
   * use close when given back (or at once with `force`). Resolves when every connection is closed.
   */
  close(force = false): Promise<void> {
    if (!this.closing) {
      const error = new P2PError('P2P_POOL_CLOSED', 'server is shutting down');
      for (const waiter of this.waiters.drain()) {
        waiter.reject(error);
      }
      this.clearIdleTimer();
      for (const connection of this.idle.drain()) {
        connection.close(error);
      }
      this.closing = this.waitUntilEmpty();
    }
    if (force) {
      const error = new P2PError('P2P_POOL_CLOSED', 'server is shutting down');
      for (const connection of this.live) {
        connection.close(error);
      }
    }
    return this.closing;
  }

  private async waitUntilEmpty(): Promise<void> {
    while (this.live.size > 0) {
      const [connection] = this.live;
      if (!connection) {
        break;
      }
      await new Promise<void>((resolve) => connection.onClose(() => resolve()));
      this.live.delete(connection);
    }
  }

  private assertOpen(): void {
    if (this.closing) {
      throw new P2PError('P2P_POOL_CLOSED', 'server is shutting down');
    }
  }

  private takeSlot(client: string, signal: AbortSignal | undefined): Promise<void> {
    if (this.active < this.options.maxActive && this.waiters.size === 0) {
      this.use(client);
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.waiters.remove(client, waiter);
        reject(new AbortError('request aborted while waiting for a connection'));
      };
      const waiter: Waiter = {
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      this.waiters.push(client, waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private use(client: string): void {
    this.active += 1;
    this.inUse.set(client, (this.inUse.get(client) ?? 0) + 1);
  }

  private freeSlot(counted: boolean, client: string): void {
    if (!counted) {
      this.uncounted -= 1;
      return;
    }
    this.active -= 1;
    const left = (this.inUse.get(client) ?? 1) - 1;
    if (left > 0) {
      this.inUse.set(client, left);
    } else {
      this.inUse.delete(client);
    }
    while (this.active < this.options.maxActive && this.waiters.size > 0) {
      const next = this.waiters.shift((c) => this.inUse.get(c) ?? 0);
      if (!next) {
        break;
      }
      this.use(next.client);
      next.item.grant();
    }
  }

  private async obtain(key: string): Promise<{ connection: C; reused: boolean }> {
    for (;;) {
      const idle = this.idle.take(key);
      if (!idle) {
        break;
      }
      if (!idle.closed) {
        this.counters.reused += 1;
        this.scheduleIdleTimer();
        return { connection: idle, reused: true };
      }
    }
    let connection: C;
    try {
      connection = await this.options.open(key);
    } catch (error) {
      this.counters.openFailures += 1;
      throw error;
    }
    this.counters.opened += 1;
    this.live.add(connection);
    connection.onClose(() => {
      this.idle.delete(connection);
      this.live.delete(connection);
    });
    if (this.closing) {
      connection.close(new P2PError('P2P_POOL_CLOSED', 'server is shutting down'));
      throw new P2PError('P2P_POOL_CLOSED', 'server is shutting down');
    }
    return { connection, reused: false };
  }

  private giveBack(key: string, connection: C, reusable: boolean): void {
    if (!reusable || connection.closed || this.closing || this.options.maxIdle === 0) {
      connection.close();
      return;
    }
    this.idle.put(key, connection, this.now());
    while (this.idle.size > this.options.maxIdle) {
      const oldest = this.idle.evictOldest();
      if (!oldest) {
        break;
      }
      this.counters.evicted += 1;
      oldest.close();
    }
    this.scheduleIdleTimer();
  }

  private scheduleIdleTimer(): void {
    this.clearIdleTimer();
    const since = this.idle.oldestSince();
    if (since === undefined || this.idleTimeoutMs <= 0 || this.closing) {
      return;
    }
    const delay = Math.max(0, since + this.idleTimeoutMs - this.now());
    this.idleTimer = setTimeout(() => this.expireIdle(), delay);
    this.idleTimer.unref();
  }

  private clearIdleTimer(): void {
    if (this.idleTimer) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
  }

  private expireIdle(): void {
    this.idleTimer = null;
    const limit = this.now() - this.idleTimeoutMs;
    for (;;) {
      const since = this.idle.oldestSince();
      if (since === undefined || since > limit) {
        break;
      }
      const oldest = this.idle.evictOldest();
      if (!oldest) {
        break;
      }
      this.counters.expired += 1;
      oldest.close();
    }
    this.scheduleIdleTimer();
  }
}
