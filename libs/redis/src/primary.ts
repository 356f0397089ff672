/**
 * Which Redis primary a connection talks to. A primary's replication id (`master_replid` of INFO
 * replication) is its history's name: a replica promoted by Sentinel takes a new one, and so does
 * a Redis that restarts. Whatever was written under another id may have been lost in the
 * replication gap (or with the data): writes the new primary lacks are repaired by those who still
 * know them, and a job queued under another id is not run, since the requester's connection broke
 * with the old primary and it has answered 503 already.
 */
import type Redis from 'ioredis';
import { connected } from './connections';

/** The replication id of the primary `redis` is connected to, or '' if it does not say. */
export async function primaryId(redis: Redis): Promise<string> {
  const info = await redis.info('replication');
  const match = /^master_replid:([0-9a-f]+)\s*$/m.exec(info);
  return match?.[1] ?? '';
}

export interface PrimaryWatchStats {
  /** The connection was lost and made again. */
  readonly reconnects: number;
  /** The primary's replication id changed from one connection to the next. */
  readonly primaryChanges: number;
  readonly connected: boolean;
}

/**
 * Follows one connection: the current primary's id (asked once per connection), how often the
 * connection was made again and how often the primary behind it changed.
 */
export class PrimaryWatch {
  private id: string | undefined;
  private asking: Promise<string> | null = null;
  private lastKnown: string | undefined;
  private wasReady = false;
  /** Counts the connections made, so that a late answer is not taken for the current one. */
  private connection = 0;
  private counts = { reconnects: 0, primaryChanges: 0 };

  constructor(private readonly redis: Redis) {
    redis.on('ready', () => {
      if (this.wasReady) {
        this.counts.reconnects += 1;
      }
      this.wasReady = true;
      this.current().catch(() => undefined);
    });
    redis.on('close', () => {
      this.connection += 1;
      this.id = undefined;
      this.asking = null;
    });
    if (redis.status === 'ready') {
      this.wasReady = true;
    }
  }

  /** The id of the primary the connection has now (asked of it if not known yet). */
  current(): Promise<string> {
    if (this.id !== undefined) {
      return Promise.resolve(this.id);
    }
    if (!this.asking) {
      const connection = this.connection;
      const asking = primaryId(this.redis).then(
        (id) => {
          // An answer from a connection since lost says nothing of the one there is now.
          if (connection === this.connection) {
            this.remember(id);
            this.asking = null;
          }
          return id;
        },
        (error: unknown) => {
          if (connection === this.connection) {
            this.asking = null;
          }
          throw error;
        },
      );
      this.asking = asking;
    }
    return this.asking;
  }

  /** The id last learnt, without asking (undefined while disconnected and until asked). */
  get known(): string | undefined {
    return this.id;
  }

  /**
   * Whether work stamped with `stamped` (a primary's id; absent when its sender did not know it)
   * was queued on another primary than this connection's. Waits up to `waitMs` for the connection
   * to come back when it is down; throws if it still cannot tell.
   */
  async isAnotherPrimary(stamped: string | undefined, waitMs = 5000): Promise<boolean> {
    if (stamped === undefined || stamped === '') {
      return false;
    }
    let current: string;
    try {
      current = await this.current();
    } catch {
      if (!(await connected(this.redis, waitMs))) {
        throw new Error('Redis is not reachable: cannot tell which primary queued the job');
      }
      current = await this.current();
    }
    return current !== '' && current !== stamped;
  }

  stats(): PrimaryWatchStats {
    return { ...this.counts, connected: this.redis.status === 'ready' };
  }

  private remember(id: string): void {
    if (this.lastKnown !== undefined && id !== '' && id !== this.lastKnown) {
      this.counts.primaryChanges += 1;
    }
    if (id !== '') {
      this.lastKnown = id;
    }
    this.id = id;
  }
}
