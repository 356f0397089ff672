/**
 * The `annex-p2phttp` command. `serve` is the embedded server, started like `git annex p2phttp`
 * (or, given `--redis URL` / REDIS_URL, a cluster gateway); `gateway`, `proxy-worker` and
 * `lock-service` are the apps of cluster mode. All read the same options (`annex-p2phttp serve --help`).
 */
import { ConfigError, parseServeArgs, serveHelp, type ServeOptions } from '@annex-p2phttp/config';
import { startLockService } from '@annex-p2phttp/lock-service';
import { loggerFor, type Logger } from '@annex-p2phttp/metrics';
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

/** The app name each command logs as. */
function appOf(command: string, options: ServeOptions): string {
  if (command === 'serve') {
    return options.redis === undefined ? 'embedded' : 'gateway';
  }
  return command;
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
  let options: ServeOptions;
  try {
    options = parseServeArgs(rest, process.cwd(), process.env);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`annex-p2phttp: ${message}\n`);
    return error instanceof ConfigError ? 2 : 1;
  }
  const log = loggerFor(options, appOf(command, options));
  let started: Started;
  try {
    started = await start(command, options, log);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    log.error(`cannot start: ${message}`);
    return error instanceof ConfigError ? 2 : 1;
  }
  for (const line of started.banner) {
    log.info(line);
  }
  const running = started;
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      log.info(`${signal}, shutting down`);
      running.close().then(
        () => {
          log.info('stopped');
          resolve();
        },
        (error: unknown) => {
          log.error(`shutdown failed: ${String(error)}`);
          resolve();
        },
      );
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  // Everything is closed; should some handle still keep the process alive, do not hang.
  setTimeout(() => process.exit(0), 2000).unref();
  return 0;
}

async function start(command: string, options: ServeOptions, log: Logger): Promise<Started> {
  const redis = options.redis;
  if (command === 'proxy-worker') {
    if (redis === undefined) {
      throw new ConfigError('proxy-worker needs --redis URL (or REDIS_URL)');
    }
    const worker = await startProxyWorker({ ...options, redis }, { logger: log });
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
      logger: log,
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
    const gateway = await startClusterGateway({ ...options, redis }, process.env, undefined, log);
    return {
      banner: [
        ...gateway.urls.map((url) => `listening on ${url} (cluster gateway)`),
        ...opsBanner(gateway.opsUrl),
      ],
      close: () => gateway.close(),
    };
  }
  const server = await startEmbeddedServer(options, process.env, log);
  return {
    banner: [...server.urls.map((url) => `listening on ${url}`), ...opsBanner(server.opsUrl)],
    close: () => server.close(),
  };
}

function opsBanner(url: string | undefined): string[] {
  return url === undefined ? [] : [`/metrics and /stats on ${url}`];
}
