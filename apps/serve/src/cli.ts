/**
 * The `annex-p2phttp` command. `serve` is the embedded server, started like `git annex p2phttp`
 * (or, given `--redis URL` / REDIS_URL, a cluster gateway); `gateway`, `proxy-worker` and
 * `lock-service` are the apps of cluster mode. All read the same options (`annex-p2phttp serve --help`).
 */
import { constants } from 'node:os';
import {
  ConfigError,
  embeddedConfig,
  gatewayConfig,
  lockServiceConfig,
  parseServeArgs,
  serveHelp,
  workerConfig,
  type ServeOptions,
} from '@annex-p2phttp/config';
import { SHUTDOWN_CLEANUP_MS, SHUTDOWN_GRACE_MS } from '@annex-p2phttp/ops';
import { startLockService } from '@annex-p2phttp/lock-service';
import { loggerFor, type Logger } from '@annex-p2phttp/metrics';
import { endShellProcesses, killShellProcesses } from '@annex-p2phttp/p2p';
import { startProxyWorker } from '@annex-p2phttp/proxy-worker';
import { startClusterGateway } from './cluster-gateway';
import { startEmbeddedServer } from './embedded';

const USAGE = `usage: annex-p2phttp serve|gateway|proxy-worker|lock-service [options]

Serves git-annex repositories over git-annex's HTTP P2P API (annex+http:// remotes).
  serve          one process serving the repositories (with --redis: same as gateway)
  gateway        cluster mode: the HTTP API, dispatching to proxy workers through Redis
  proxy-worker   cluster mode: runs the repository operations of the repositories it serves
  lock-service   cluster mode: holds the repository-side retention locks (lockcontent)
Run "annex-p2phttp serve --help" for the options.`;

const COMMANDS = new Set(['serve', 'gateway', 'proxy-worker', 'lock-service']);

/** How long git-annex-shell sessions closed on shutdown get to exit by themselves. */
const SESSION_EXIT_MS = 1000;
/**
 * A shutdown still not done after this (which the bounded steps of every role rule out) ends
 * the process anyway.
 */
const SHUTDOWN_BACKSTOP_MS = SHUTDOWN_GRACE_MS + SHUTDOWN_CLEANUP_MS + SESSION_EXIT_MS + 500;

interface Started {
  readonly banner: string[];
  /** SIGHUP: read the policy file again (apps that have one). */
  reloadPolicy?(): Promise<boolean>;
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
  // The log the options ask for, once they are read (until then: the defaults).
  let log: Logger = loggerFor({}, 'embedded');
  const signals = handleStopSignals(() => log);
  let options: ServeOptions;
  try {
    options = parseServeArgs(rest, process.cwd(), process.env);
  } catch (error) {
    signals.remove();
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`annex-p2phttp: ${message}\n`);
    return error instanceof ConfigError ? 2 : 1;
  }
  log = loggerFor(options, appOf(command, options));
  let started: Started;
  try {
    started = await start(command, options, log);
  } catch (error) {
    signals.remove();
    const message = error instanceof Error ? error.message : String(error);
    log.error(`cannot start: ${message}`);
    return error instanceof ConfigError ? 2 : 1;
  }
  for (const line of started.banner) {
    log.info(line);
  }
  // SIGHUP reads the policy file again; apps without one keep SIGHUP's default.
  const reload = started.reloadPolicy?.bind(started);
  const onHangup = () => void reload?.();
  if (reload !== undefined) {
    process.on('SIGHUP', onHangup);
  }
  const code = await signals.stopped(started);
  process.off('SIGHUP', onHangup);
  // Everything is closed; should some handle still keep the process alive, do not hang.
  process.exit(code);
}

/**
 * SIGTERM and SIGINT, from start-up on. The first one closes what `stopped` was given: what is in
 * flight gets its grace, steps that need Redis are bounded (see each role). A second one ends the
 * process at once, and so does one that arrives before start-up completed (nothing was promised
 * yet) or a shutdown that overran every bound. Whatever the way out, no git-annex-shell session
 * started here is left running. `stopped` resolves with the exit code once everything is closed.
 */
function handleStopSignals(log: () => Logger): {
  stopped(running: Started): Promise<number>;
  remove(): void;
} {
  let running: Started | undefined;
  let stopping = false;
  let done: (code: number) => void = () => {};
  const closed = new Promise<number>((resolve) => {
    done = resolve;
  });
  function exitNow(why: string, code: number): never {
    const killed = killShellProcesses();
    log().warn(`${why}: exiting now${killed > 0 ? ` (killed ${killed} git-annex-shell)` : ''}`);
    process.exit(code);
  }
  const onSignal = (signal: NodeJS.Signals) => {
    const code = 128 + (constants.signals[signal] ?? 0);
    if (stopping) {
      exitNow(`${signal} again`, code);
    }
    if (running === undefined) {
      exitNow(`${signal} while starting`, code);
    }
    stopping = true;
    log().info(
      `${signal}, shutting down (work in flight gets ${SHUTDOWN_GRACE_MS / 1000} s; ` +
        'a second signal stops at once)',
    );
    setTimeout(
      () => exitNow(`shutdown not done after ${SHUTDOWN_BACKSTOP_MS / 1000} s`, 1),
      SHUTDOWN_BACKSTOP_MS,
    ).unref();
    running
      .close()
      .catch((error: unknown) => log().error(`shutdown failed: ${String(error)}`))
      .then(() => endShellProcesses(SESSION_EXIT_MS))
      .then(
        (killed) => {
          if (killed > 0) {
            log().warn(`killed ${killed} git-annex-shell that did not exit by itself`);
          }
          log().info('stopped');
          done(0);
        },
        () => done(1),
      );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return {
    stopped: (started) => {
      running = started;
      return closed;
    },
    remove: () => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
    },
  };
}

/** Starts the role `command` names, with the slice of the options it uses. */
async function start(command: string, options: ServeOptions, log: Logger): Promise<Started> {
  if (command === 'proxy-worker') {
    const worker = await startProxyWorker(workerConfig(options), { logger: log });
    return {
      banner: [
        `proxy-worker ${worker.id}: data port ${worker.listening}, advertised as ${worker.url}`,
      ],
      close: () => worker.close(),
    };
  }
  if (command === 'lock-service') {
    const service = await startLockService(lockServiceConfig(options), { logger: log });
    return {
      banner: [`lock-service ${service.holder}: listening on ${service.healthUrl}`],
      close: () => service.close(),
    };
  }
  if (command === 'gateway' || options.redis !== undefined) {
    const gateway = await startClusterGateway(gatewayConfig(options), process.env, undefined, log);
    return {
      banner: [
        ...gateway.urls.map((url) => `listening on ${url} (cluster gateway)`),
        ...opsBanner(gateway.opsUrl),
      ],
      reloadPolicy: () => gateway.reloadPolicy(),
      close: () => gateway.close(),
    };
  }
  const server = await startEmbeddedServer(embeddedConfig(options), process.env, log);
  return {
    banner: [...server.urls.map((url) => `listening on ${url}`), ...opsBanner(server.opsUrl)],
    reloadPolicy: () => server.reloadPolicy(),
    close: () => server.close(),
  };
}

function opsBanner(url: string | undefined): string[] {
  return url === undefined ? [] : [`/metrics and /stats on ${url}`];
}
