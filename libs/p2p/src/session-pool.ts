/**
 * The pool of P2P sessions to repositories: a ConnectionPool of P2PConnections opened through a
 * Connector, keyed by RepositoryTarget. `run` lends a connection to one operation and gives it back
 * clean or closes it, whatever the operation did.
 */
import { type RepositoryTarget } from '@annex-p2phttp/protocol';
import { P2PConnection } from './connection';
import { ConnectionClosedError } from './errors';
import { type Connector } from './local-connector';
import { ConnectionPool, type Lease, type PoolStats } from './pool';
import { poolKey, targetOfKey } from './pool-key';
import { type Transport } from './transport';

export interface SessionPoolOptions {
  readonly connector: Connector;
  readonly maxActive: number;
  readonly maxIdle: number;
  readonly idleTimeoutMs?: number;
  readonly handshakeTimeoutMs?: number;
}

export class SessionPool {
  private readonly pool: ConnectionPool<P2PConnection>;

  constructor(private readonly options: SessionPoolOptions) {
    this.pool = new ConnectionPool<P2PConnection>({
      maxActive: options.maxActive,
      maxIdle: options.maxIdle,
      idleTimeoutMs: options.idleTimeoutMs,
      open: (key) => this.open(key),
    });
  }

  /** Takes a connection for `target`; the caller must call `release` exactly once. */
  async lease(
    target: RepositoryTarget,
    options: { signal?: AbortSignal; counted?: boolean } = {},
  ): Promise<Lease<P2PConnection>> {
    const lease = await this.pool.acquire(poolKey(target), {
      ...options,
      ...(target.requester === undefined ? {} : { client: target.requester }),
    });
    lease.connection.begin();
    return lease;
  }

  /**
   * Runs one operation on a pooled connection. An idle session can die unnoticed (its process
   * exited a moment before it was reused): when a reused session turns out to be closed before the
   * operation got any answer, the operation runs once more on a fresh session. Only operations
   * that are safe to repeat may pass `retryOnStale` (not an upload, whose body is consumed).
   */
  async run<T>(
    target: RepositoryTarget,
    operation: (connection: P2PConnection) => Promise<T>,
    signal?: AbortSignal,
    options: { retryOnStale?: boolean } = {},
  ): Promise<T> {
    for (let attempt = 0; ; attempt += 1) {
      const lease = await this.lease(target, { signal });
      let reusable = false;
      try {
        const result = await operation(lease.connection);
        reusable = lease.connection.finish();
        return result;
      } catch (error) {
        if (!(isStaleFailure(lease, error) && options.retryOnStale && attempt === 0)) {
          throw error;
        }
      } finally {
        lease.release(reusable);
      }
    }
  }

  /**
   * Opens a session of its own, outside the pool, to hold a retention lock (Connector
   * `connectHolder`); the caller owns it and closes it.
   */
  async openHolder(target: RepositoryTarget): Promise<P2PConnection> {
    const { connector } = this.options;
    const transport = connector.connectHolder
      ? await connector.connectHolder(target)
      : connector.connect(target);
    const connection = await this.handshake(transport, target);
    connection.begin();
    return connection;
  }

  stats(): PoolStats & { connections: number } {
    return { ...this.pool.stats(), connections: this.pool.size };
  }

  close(force = false): Promise<void> {
    return this.pool.close(force);
  }

  private async open(key: string): Promise<P2PConnection> {
    const target = targetOfKey(key);
    return this.handshake(this.options.connector.connect(target), target);
  }

  private handshake(transport: Transport, target: RepositoryTarget): Promise<P2PConnection> {
    return P2PConnection.open(transport, {
      serverUuid: target.serverUuid,
      version: target.version,
      bypass: target.bypass,
      timeoutMs: this.options.handshakeTimeoutMs,
    });
  }
}

/** The lease's session was reused, and died before answering anything: the peer saw nothing. */
export function isStaleFailure(lease: Lease<P2PConnection>, error: unknown): boolean {
  return lease.reused && error instanceof ConnectionClosedError && !lease.connection.answered;
}
