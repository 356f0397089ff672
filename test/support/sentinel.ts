/**
 * A private Redis Sentinel set for tests: one primary, one replica and three sentinels, each a
 * real redis-server process (sentinels as `redis-server <conf> --sentinel`) on its own free port
 * of 127.0.0.1, with a short down-after time so that a failover takes a few seconds. Nothing is
 * persisted; the sentinels' config files live in a temporary directory removed by `close`.
 */
import { type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import Redis from 'ioredis';
import { hasExited, spawnTracked, stopProcess, type SpawnOptions } from './processes';
import { freePort } from './util';
import { PrivateRedis } from './redis';

export interface SentinelSetOptions {
  readonly masterName?: string;
  /** `sentinel down-after-milliseconds` (default 1000). */
  readonly downAfterMs?: number;
  /** `sentinel failover-timeout` (default 2000). */
  readonly failoverTimeoutMs?: number;
  /** processes.ts's `group` of every process of the set (default `own`) */
  readonly group?: SpawnOptions['group'];
  /** also write everything the processes print to this stream (a launcher's own output) */
  readonly echo?: NodeJS.WritableStream;
}

/** A replica that starts syncing at once, without waiting to batch several replicas. */
const QUICK_SYNC = [
  '--repl-diskless-sync',
  'yes',
  '--repl-diskless-sync-delay',
  '0',
  // A replica loads what it receives straight into memory: no dump.rdb in the working directory.
  '--repl-diskless-load',
  'swapdb',
];

class SentinelProcess {
  private child: ChildProcess | null = null;
  private output = '';

  constructor(
    readonly port: number,
    private readonly config: string,
    private readonly group: SpawnOptions['group'],
    private readonly echo: NodeJS.WritableStream | undefined,
  ) {}

  async start(): Promise<void> {
    const child = spawnTracked('redis-server', [this.config, '--sentinel'], {
      cwd: process.cwd(),
      env: process.env,
      group: this.group,
    });
    const collect = (chunk: Buffer): void => {
      this.output += chunk.toString('utf8');
      this.echo?.write(chunk);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    this.child = child;
    const client = new Redis({ host: '127.0.0.1', port: this.port, lazyConnect: true });
    client.on('error', () => {});
    try {
      const deadline = Date.now() + 20_000;
      for (;;) {
        try {
          await client.connect();
          await client.ping();
          return;
        } catch {
          client.disconnect();
        }
        if (hasExited(child) || Date.now() > deadline) {
          throw new Error(`redis-sentinel did not start: ${this.describe()}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    } finally {
      client.disconnect();
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (child) {
      await stopProcess(child, { signal: 'SIGKILL' });
    }
  }

  describe(): string {
    return `redis-sentinel on ${this.port}: ${this.output.slice(-3000)}`;
  }
}

export class SentinelSet {
  readonly masterName: string;
  /** The two data servers; which one is the primary changes with each failover. */
  readonly servers: PrivateRedis[] = [];
  private readonly sentinels: SentinelProcess[] = [];
  private dir = '';

  private constructor(private readonly options: SentinelSetOptions) {
    this.masterName = options.masterName ?? 'annexmaster';
  }

  static async start(options: SentinelSetOptions = {}): Promise<SentinelSet> {
    const set = new SentinelSet(options);
    try {
      await set.launch();
    } catch (error) {
      await set.close();
      throw error;
    }
    return set;
  }

  /** The `redis+sentinel://` URL the apps are given. */
  get url(): string {
    const hosts = this.sentinels.map((s) => `127.0.0.1:${s.port}`).join(',');
    return `redis+sentinel://${hosts}/${this.masterName}`;
  }

  /** The server the sentinels name as primary now. */
  async primary(): Promise<PrivateRedis> {
    const port = await this.primaryPort();
    const server = this.servers.find((s) => s.port === port);
    if (!server) {
      throw new Error(`the sentinels name an unknown primary on port ${port}`);
    }
    return server;
  }

  /** The primary's port as the first sentinel that answers says. */
  async primaryPort(): Promise<number> {
    let lastError: unknown;
    for (const sentinel of this.sentinels) {
      try {
        const port = await this.askSentinel(sentinel.port);
        if (port > 0) {
          return port;
        }
      } catch (error) {
        lastError = error;
      }
    }
    throw new Error(`no sentinel named the primary: ${String(lastError)}`);
  }

  /**
   * Waits until every sentinel names a primary other than `oldPort` and that server says it is
   * a master; resolves its port.
   */
  async failedOverFrom(oldPort: number, timeoutMs = 30_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const ports = await Promise.all(
        this.sentinels.map((s) => this.askSentinel(s.port).catch(() => -1)),
      );
      const port = ports[0];
      if (port !== undefined && port !== oldPort && port > 0 && ports.every((p) => p === port)) {
        const server = this.servers.find((s) => s.port === port);
        if (server && (await server.command('ROLE').catch(() => '')).includes('master')) {
          return port;
        }
      }
      if (Date.now() > deadline) {
        throw new Error(`no failover from ${oldPort} within ${timeoutMs} ms: ${this.describe()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /**
   * Asks a sentinel to fail over now (the primary is alive and gets demoted), again until it
   * agrees: it refuses while it has not seen a replica fit to promote yet.
   */
  async forceFailover(timeoutMs = 30_000): Promise<void> {
    const client = new Redis({ host: '127.0.0.1', port: this.sentinels[0]!.port });
    client.on('error', () => {});
    const deadline = Date.now() + timeoutMs;
    try {
      for (;;) {
        try {
          await client.call('SENTINEL', 'FAILOVER', this.masterName);
          return;
        } catch (error) {
          if (Date.now() > deadline) {
            throw error;
          }
        }
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    } finally {
      client.disconnect();
    }
  }

  /** Starts `server` again, empty, as a replica of the current primary. */
  async rejoinAsReplica(server: PrivateRedis): Promise<void> {
    const primary = await this.primaryPort();
    await server.restart([...QUICK_SYNC, '--replicaof', '127.0.0.1', String(primary)]);
  }

  /** Waits until the primary (or `server`) reports `count` replicas in sync (online). */
  async replicasInSync(count: number, server?: PrivateRedis, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const primary = server ?? (await this.primary().catch(() => undefined));
      if (primary) {
        const client = new Redis({ host: '127.0.0.1', port: primary.port, lazyConnect: true });
        client.on('error', () => {});
        try {
          await client.connect();
          const info = await client.info('replication');
          const online = info.split('\n').filter((l) => /^slave\d+:.*state=online/.test(l));
          if (online.length >= count) {
            return;
          }
        } catch {
          // not yet
        } finally {
          client.disconnect();
        }
      }
      if (Date.now() > deadline) {
        throw new Error(`replicas not in sync within ${timeoutMs} ms: ${this.describe()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /**
   * Polls `probe` (a failing probe counts as not yet) until it gives a value; past `ms`, fails
   * with `what` and the state of every process of the set.
   */
  async until<T>(what: string, probe: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const value = await probe().catch(() => undefined);
      if (value !== undefined) {
        return value;
      }
      if (Date.now() > deadline) {
        throw new Error(`${what}: not within ${ms} ms\n${this.describe()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  describe(): string {
    return [...this.servers.map((s) => s.describe()), ...this.sentinels.map((s) => s.describe())]
      .map((text) => text.slice(-1500))
      .join('\n');
  }

  async close(): Promise<void> {
    await Promise.all(this.sentinels.map((s) => s.stop()));
    await Promise.all(this.servers.map((s) => s.stop('SIGKILL')));
    if (this.dir !== '') {
      await rm(this.dir, { recursive: true, force: true });
    }
  }

  private async askSentinel(port: number): Promise<number> {
    const client = new Redis({
      host: '127.0.0.1',
      port,
      lazyConnect: true,
      retryStrategy: () => null,
      connectTimeout: 1000,
      commandTimeout: 1000,
    });
    client.on('error', () => {});
    try {
      await client.connect();
      const reply = (await client.call('SENTINEL', 'get-master-addr-by-name', this.masterName)) as
        [string, string] | null;
      return reply ? Number(reply[1]) : -1;
    } finally {
      client.disconnect();
    }
  }

  private async launch(): Promise<void> {
    this.dir = await mkdtemp(path.join(tmpdir(), 'annex-p2phttp-sentinel-'));
    const { group, echo } = this.options;
    const primary = await PrivateRedis.start({ args: QUICK_SYNC, group, echo });
    this.servers.push(primary);
    const replica = await PrivateRedis.start({
      args: [...QUICK_SYNC, '--replicaof', '127.0.0.1', String(primary.port)],
      group,
      echo,
    });
    this.servers.push(replica);
    await this.replicasInSync(1, primary);
    for (let i = 0; i < 3; i += 1) {
      const port = await freePort();
      const config = path.join(this.dir, `sentinel-${port}.conf`);
      await writeFile(
        config,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${this.dir}`,
          `sentinel monitor ${this.masterName} 127.0.0.1 ${primary.port} 2`,
          `sentinel down-after-milliseconds ${this.masterName} ${this.options.downAfterMs ?? 1000}`,
          `sentinel failover-timeout ${this.masterName} ${this.options.failoverTimeoutMs ?? 2000}`,
          `sentinel parallel-syncs ${this.masterName} 1`,
          '',
        ].join('\n'),
      );
      const sentinel = new SentinelProcess(port, config, group, echo);
      this.sentinels.push(sentinel);
      await sentinel.start();
    }
    // The sentinels must know each other and the replica before a failover can be agreed on.
    await this.untilSentinelsKnowEachOther();
  }

  private async untilSentinelsKnowEachOther(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let ready = true;
      for (const sentinel of this.sentinels) {
        const client = new Redis({ host: '127.0.0.1', port: sentinel.port, lazyConnect: true });
        client.on('error', () => {});
        try {
          await client.connect();
          const info = (await client.call('SENTINEL', 'MASTER', this.masterName)) as string[];
          const field = (name: string) => Number(info[info.indexOf(name) + 1]);
          if (field('num-other-sentinels') < this.sentinels.length - 1 || field('num-slaves') < 1) {
            ready = false;
          }
        } catch {
          ready = false;
        } finally {
          client.disconnect();
        }
      }
      if (ready) {
        return;
      }
      if (Date.now() > deadline) {
        throw new Error(`the sentinels did not find each other: ${this.describe()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
