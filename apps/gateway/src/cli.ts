/**
 * `annex-p2phttp serve [options]`: the embedded server, started like `git annex p2phttp`.
 * `annex-p2phttp lock-service --redis URL [options]`: cluster mode's holder of retention locks.
 */
import { ConfigError, parseServeArgs, serveHelp, type ServeOptions } from '@annex-p2phttp/config';
import { startLockService } from '@annex-p2phttp/lock-service';
import { startEmbeddedServer } from './server';

const USAGE = `usage: annex-p2phttp serve [options]
       annex-p2phttp lock-service --redis URL [options]

Serves git-annex repositories over git-annex's HTTP P2P API (annex+http:// remotes).
Run "annex-p2phttp serve --help" for the options.`;

const COMMANDS: Record<string, (options: ServeOptions) => Promise<Running>> = {
  serve: startEmbeddedServer,
  'lock-service': startLockServiceApp,
};

interface Running {
  readonly urls: string[];
  close(): Promise<void>;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  const start = COMMANDS[command];
  if (start === undefined) {
    process.stderr.write(`annex-p2phttp: unknown command "${command}"\n${USAGE}\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(serveHelp());
    return 0;
  }
  let server;
  try {
    const options = parseServeArgs(rest, process.cwd());
    server = await start(options);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`annex-p2phttp: ${message}\n`);
    return error instanceof ConfigError ? 2 : 1;
  }
  for (const url of server.urls) {
    process.stderr.write(`annex-p2phttp: listening on ${url}\n`);
  }
  const running = server;
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

async function startLockServiceApp(options: ServeOptions): Promise<Running> {
  if (options.redisUrl === undefined) {
    throw new ConfigError('lock-service needs --redis URL (or REDIS_URL)');
  }
  const service = await startLockService({
    redisUrl: options.redisUrl,
    redisPrefix: options.redisPrefix,
    repos: options.repos,
    directories: options.directories,
    healthPort: options.healthPort,
    clusterJobs: options.clusterJobs,
    debug: options.debug,
  });
  return { urls: [service.healthUrl], close: () => service.close() };
}
