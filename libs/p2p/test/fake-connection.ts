/**
 * In-memory stand-ins for pool tests: a Poolable connection with no process behind it, and a
 * pool whose `open` makes them. Only the pool's own logic is under test with these; sessions over
 * real git-annex-shell are tested elsewhere.
 */
import { ConnectionPool, type Poolable } from '@annex-p2phttp/p2p';

export class FakeConnection implements Poolable {
  closed = false;
  private readonly listeners: Array<(error: Error) => void> = [];

  constructor(
    readonly key: string,
    readonly id: number,
  ) {}

  close(): void {
    if (this.closed) {
      return;
    }
    this.closed = true;
    for (const listener of this.listeners.splice(0)) {
      listener(new Error('closed'));
    }
  }

  onClose(listener: (error: Error) => void): void {
    if (this.closed) {
      listener(new Error('closed'));
    } else {
      this.listeners.push(listener);
    }
  }
}

export function makeFakePool(options: {
  maxActive: number;
  maxIdle: number;
  failOpen?: (key: string) => boolean;
}): { pool: ConnectionPool<FakeConnection>; opened: FakeConnection[] } {
  const opened: FakeConnection[] = [];
  const pool = new ConnectionPool<FakeConnection>({
    maxActive: options.maxActive,
    maxIdle: options.maxIdle,
    idleTimeoutMs: 0,
    open: (key) => {
      if (options.failOpen?.(key)) {
        return Promise.reject(new Error(`cannot open ${key}`));
      }
      const connection = new FakeConnection(key, opened.length);
      opened.push(connection);
      return Promise.resolve(connection);
    },
  });
  return { pool, opened };
}
