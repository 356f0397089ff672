/**
 * The `annex-p2phttp` command. `serve` is the embedded server, started like `git annex p2phttp`
 * (or, given `--redis URL` / REDIS_URL, a cluster gateway); `gateway`, `proxy-worker` and
 * `lock-service` are the apps of cluster mode. All read the same options (`annex-p2phttp serve --help`).
 */
import { ConfigError, parseServeArgs, serveHelp, type ServeOptions } from '@annex-p2phttp/config';
import { startLockService } from '@annex-p2phttp/lock-service';
import { startProxyWorker } from '@annex-p2phttp/proxy-worker';
import { startClusterGateway } from './cluster-gateway';
import { startEmbeddedServer } from './server';

const USAGE = `usage: annex-p2phttp serve|gateway|proxy-worker|lock-service [options]

Serves git-annex repositories over git-annex's HTTP P2P API (annex+http:// remotes).
  serve          one process serving the repositories (with --redis: same as gateway)
  gateway        cluster mode: the HTTP API, dispatching to proxy workers through Redis
  proxy-worker   cluster mode: runs the repository operations of the repositories it serves
  lock-service   cluster mode: holds the repository-side retention locks (lockcontent)
Run "annex-p2phttp serve --help" for the options.`;

const COMMANDS = new Set(['serve', 'gateway', 'proxy-worker', 'lock-service']);

interface Started {
  readonly banner: string[];
  close(): Promise<void>;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  if (!COMMANDS.has(command)) {
    process.stderr.write(`annex-p2phttp: unknown command "${command}"\n${USAGE}\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(serveHelp());
    return 0;
  }
  let started: Started;
  try {
    const options = parseServeArgs(rest, process.cwd(), process.env);
    started = await start(command, options);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`annex-p2phttp: ${message}\n`);
    return error instanceof ConfigError ? 2 : 1;
  }
  for (const line of started.banner) {
    process.stderr.write(`annex-p2phttp: ${line}\n`);
  }
  const running = started;
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.stderr.write(`annex-p2phttp: ${signal}, shutting down\n`);
      running.close().then(resolve, (error: unknown) => {
        process.stderr.write(`annex-p2phttp: shutdown failed: ${String(error)}\n`);
        resolve();
      });
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  // Everything is closed; should some handle still keep the process alive, do not hang.
  setTimeout(() => process.exit(0), 2000).unref();
  return 0;
}

async function start(command: string, options: ServeOptions): Promise<Started> {
  const redis = options.redis;
  if (command === 'proxy-worker') {
    if (redis === undefined) {
      throw new ConfigError('proxy-worker needs --redis URL (or REDIS_URL)');
    }
    const worker = await startProxyWorker({ ...options, redis });
    return {
      banner: [
        `proxy-worker ${worker.id}: data port ${worker.listening}, advertised as ${worker.url}`,
      ],
      close: () => worker.close(),
    };
  }
  if (command === 'lock-service') {
    if (redis === undefined) {
      throw new ConfigError('lock-service needs --redis URL (or REDIS_URL)');
    }
    const service = await startLockService({
      redisUrl: redis,
      redisPrefix: options.redisPrefix,
      repos: options.repos,
      directories: options.directories,
      healthPort: options.healthPort,
      healthHost: options.bind[0],
      clusterJobs: options.clusterJobs,
      debug: options.debug,
    });
    return {
      banner: [`lock-service ${service.holder}: listening on ${service.healthUrl}`],
      close: () => service.close(),
    };
  }
  if (command === 'gateway' || redis !== undefined) {
    if (redis === undefined) {
      throw new ConfigError('gateway needs --redis URL (or REDIS_URL)');
    }
    const gateway = await startClusterGateway({ ...options, redis });
    return {
      banner: gateway.urls.map((url) => `listening on ${url} (cluster gateway)`),
      close: () => gateway.close(),
    };
  }
  const server = await startEmbeddedServer(options);
  return { banner: server.urls.map((url) => `listening on ${url}`), close: () => server.close() };
}
