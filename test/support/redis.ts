/**
 * A private redis-server for tests: its own free port on 127.0.0.1, no persistence (a restart
 * comes back empty), started in its own process group and tracked by processes.ts, which ends it
 * when the test process exits. Never the system Redis on 6379.
 */
import { type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import { hasExited, spawnTracked, stopProcess, type SpawnOptions } from './processes';
import { freePort } from './util';

export interface PrivateRedisOptions {
  /** a fixed port (default: a free one) */
  port?: number;
  /** further redis-server options (e.g. `--replicaof 127.0.0.1 6390`) */
  args?: readonly string[];
  /** processes.ts's `group` (default `own`; `parent` for a launcher whose group is ended whole) */
  group?: SpawnOptions['group'];
  /** also write everything it prints to this stream (a launcher's own output) */
  echo?: NodeJS.WritableStream;
}

export class PrivateRedis {
  private child: ChildProcess | null = null;
  private output = '';

  private constructor(
    readonly port: number,
    private args: readonly string[],
    private readonly group: SpawnOptions['group'],
    private readonly echo: NodeJS.WritableStream | undefined,
  ) {}

  /**
   * Starts redis-server on a free port (or `port`) and waits until it answers PING. `args` are
   * further redis-server options (e.g. `--replicaof 127.0.0.1 6390`); the options form also
   * chooses its process group.
   */
  static async start(
    port?: number | PrivateRedisOptions,
    args: readonly string[] = [],
  ): Promise<PrivateRedis> {
    const options: PrivateRedisOptions = typeof port === 'object' ? port : { port, args };
    const redis = new PrivateRedis(
      options.port ?? (await freePort()),
      options.args ?? [],
      options.group,
      options.echo,
    );
    await redis.launch();
    return redis;
  }

  /** Resolves when the redis-server running now exits (at once if none runs). */
  exited(): Promise<void> {
    const child = this.child;
    if (child === null || hasExited(child)) {
      return Promise.resolve();
    }
    return new Promise((resolve) => child.once('exit', () => resolve()));
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== null;
  }

  /**
   * Stops it (SIGTERM, SIGKILL after 5 s; `SIGKILL` at once to die as in a crash): everything it
   * held is gone.
   */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.child;
    if (!child) {
      return;
    }
    await stopProcess(child, { signal, graceMs: 5000 });
    this.child = null;
  }

  /** Kills it and starts an empty one on the same port (with other options if given). */
  async restart(args?: readonly string[]): Promise<void> {
    await this.stop('SIGKILL');
    if (args !== undefined) {
      this.args = args;
    }
    await this.launch();
  }

  /** Sends one command (inline protocol) and returns the raw reply text. */
  command(...args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(this.port, '127.0.0.1');
      let reply = '';
      socket.setTimeout(5000, () => socket.destroy(new Error('redis: no reply')));
      socket.on('data', (chunk: Buffer) => {
        reply += chunk.toString('utf8');
        if (reply.endsWith('\r\n')) {
          socket.end();
          resolve(reply);
        }
      });
      socket.once('error', reject);
      socket.write(`${args.map((a) => JSON.stringify(a)).join(' ')}\r\n`);
    });
  }

  describe(): string {
    return `redis-server on ${this.port}: ${this.output.slice(-2000)}`;
  }

  private async launch(): Promise<void> {
    const child = spawnTracked(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        ...this.args,
      ],
      { cwd: process.cwd(), env: process.env, group: this.group },
    );
    const collect = (chunk: Buffer): void => {
      this.output += chunk.toString('utf8');
      this.echo?.write(chunk);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    this.child = child;
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        if ((await this.command('PING')).startsWith('+PONG')) {
          return;
        }
      } catch {
        // not yet
      }
      if (hasExited(child) || Date.now() > deadline) {
        await this.stop();
        throw new Error(`redis-server did not start: ${this.describe()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/**
 * A TCP relay in front of a PrivateRedis that can go mute: until `mute()` it passes bytes both
 * ways; from then on every connection, open or new, is still accepted and read but never
 * answered, as a Redis that hangs (or a network that drops replies) looks to its clients. Point
 * an app at `url` to be able to do that to it later.
 */
export class RedisRelay {
  private muted = false;
  private readonly sockets = new Set<net.Socket>();
  private readonly server: net.Server;
  private listeningPort = 0;

  private constructor(private readonly targetPort: number) {
    this.server = net.createServer((client) => this.accept(client));
  }

  static async start(target: PrivateRedis): Promise<RedisRelay> {
    const relay = new RedisRelay(target.port);
    await new Promise<void>((resolve, reject) => {
      relay.server.once('error', reject);
      relay.server.listen(0, '127.0.0.1', () => resolve());
    });
    relay.listeningPort = (relay.server.address() as net.AddressInfo).port;
    return relay;
  }

  get port(): number {
    return this.listeningPort;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Stops answering: replies in flight and everything after are swallowed. */
  mute(): void {
    this.muted = true;
  }

  /** Closes the relay and every connection through it. */
  async close(): Promise<void> {
    for (const socket of this.sockets) {
      socket.destroy();
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    this.keep(client);
    client.on('data', () => {}); // read whatever comes, answered or not
    if (this.muted) {
      return;
    }
    const upstream = net.connect(this.targetPort, '127.0.0.1');
    this.keep(upstream);
    client.on('data', (chunk: Buffer) => {
      if (!this.muted) {
        upstream.write(chunk);
      }
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!this.muted) {
        client.write(chunk);
      }
    });
    // Redis gone: its clients see the connection close, as they would without the relay.
    upstream.once('close', () => {
      if (!this.muted) {
        client.destroy();
      }
    });
    client.once('close', () => upstream.destroy());
  }

  private keep(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => this.sockets.delete(socket));
  }
}
