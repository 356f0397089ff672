/**
 * The HTTP API process, in both modes. Embedded: one process serving repositories over the HTTP
 * P2P API, like `git annex p2phttp` (registry, pool, operation executor behind the local
 * dispatcher, locks). Cluster mode (cluster-gateway.ts) plugs a different backend into the same
 * `startGateway`.
 */
import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { type AddressInfo } from 'node:net';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { join } from 'node:path';
import {
  loadUsers,
  repositoryLocation,
  type ApiConfig,
  type EmbeddedConfig,
} from '@annex-p2phttp/config';
import {
  boundedStep,
  Deadline,
  ObjectFiles,
  OperationExecutor,
  RepositoryRegistry,
  SHUTDOWN_CLEANUP_MS,
  SHUTDOWN_GRACE_MS,
  unwritableAdvice,
  WritableCheck,
} from '@annex-p2phttp/ops';
import { localDispatcher, unavailable, type Dispatcher } from '@annex-p2phttp/dispatch';
import {
  LocalRetentionLocks,
  LockJournal,
  MemoryLockStore,
  type RetentionLocks,
} from '@annex-p2phttp/locks';
import {
  CounterMirror,
  Health,
  logFunction,
  loggerFor,
  Metrics,
  mirrorPool,
  type Checks,
  type Logger,
} from '@annex-p2phttp/metrics';
import { LocalShellConnector, SessionPool } from '@annex-p2phttp/p2p';
import { AccessControl } from './access';
import { GatewayModule } from './app.module';
import { AuthHook } from './auth-hook';
import { BodyTap } from './body-tap';
import { instrumentHttp } from './http-metrics';
import { NestLogger } from './nest-logger';
import { startOpsServer, type OpsServer } from './ops-server';
import { P2pHttpService, type RepositoryDirectory } from './p2phttp.service';
import { PolicySource } from './policy-source';
import { normalizePath, parseQuery, routeUrl } from './raw-url';
import { setRepositoryScope } from './repository-scope';

/** The parts behind the HTTP API that differ between embedded and cluster mode. */
export interface GatewayBackend {
  readonly directory: RepositoryDirectory;
  readonly dispatcher: Dispatcher;
  readonly locks: RetentionLocks;
  /** The registry /metrics serves; the backend mirrors its own state into it. */
  readonly metrics: Metrics;
  /** What it depends on, each checked for GET /readyz. */
  readonly checks: Checks;
  /**
   * Ends what the backend owns, once the API stopped accepting requests: what is in flight gets
   * `graceMs`, and the whole takes at most SHUTDOWN_CLEANUP_MS more, whatever the state of Redis.
   */
  close(graceMs: number): Promise<void>;
}

export interface RunningGateway {
  readonly urls: string[];
  /** The URL of the ops listener (/metrics, /stats), when --ops-listen gave one. */
  readonly opsUrl?: string;
  readonly app: NestFastifyApplication;
  readonly metrics: Metrics;
  /** Reads the policy file again (SIGHUP); true when the new one is in use, or there is none. */
  reloadPolicy(): Promise<boolean>;
  close(): Promise<void>;
}

export interface RunningServer extends RunningGateway {
  readonly pool: SessionPool;
  readonly locks: LocalRetentionLocks;
}

/**
 * Request line and headers beyond this get 431. Node's default of 16 KiB would refuse keys that
 * git-annex takes (up to 32,736 characters, MAX_KEY_LENGTH; in `[base64url]` form a third more).
 */
export const MAX_HEADER_BYTES = 64 * 1024;

export async function startEmbeddedServer(
  options: EmbeddedConfig,
  env: NodeJS.ProcessEnv = process.env,
  log: Logger = loggerFor(options, 'embedded'),
): Promise<RunningServer> {
  const pool = new SessionPool({
    connector: new LocalShellConnector({ debug: options.debug, clusterJobs: options.clusterJobs }),
    maxActive: options.jobs,
    maxIdle: options.proxyConnections,
  });
  const executor = new OperationExecutor(pool, undefined, {
    log: logFunction(log, 'warn'),
    uploadIdleMs: options.uploadIdleMs,
  });
  const dispatcher = localDispatcher(executor);
  const objects = new ObjectFiles();
  // The executor takes the repository-side locks.
  const locks = new LocalRetentionLocks(new MemoryLockStore(), executor, {
    lockedFiles: options.lockedFiles,
    ttlMs: options.lockTtlMs,
    journal: new LockJournal((repoPath) => objects.gitDir(repoPath)),
    log: logFunction(log, 'warn'),
  });
  let restored = 0;
  const registry = new RepositoryRegistry({
    repos: [...options.repos],
    directories: [...options.directories],
    log: logFunction(log, 'warn'),
    // The locks a previous server left (stopped or crashed) are taken over before a repository
    // is served.
    prepare: async (repo) => {
      restored += await locks.restore([repo.path]);
    },
  });
  try {
    // Reads the --repo repositories; those below --directory are served as they are found.
    await registry.start();
  } catch (error) {
    registry.close();
    await executor.close(0, logFunction(log, 'warn'));
    throw error;
  }
  let writable: WritableCheck | undefined;
  let stopped = false;
  const scanned = registry.whenScanned().then(async () => {
    if (stopped) {
      return;
    }
    writable = await checkWritable(registry, log);
    const served = registry.list().filter((repo) => repo.kind === 'repository').length;
    log.info(`serving ${served} repositories`);
    if (restored > 0) {
      log.info(`took over ${restored} content lock(s) held before the restart`);
    }
  });
  scanned.catch((error: unknown) => log.error(`reading the repositories failed: ${String(error)}`));
  const metrics = new Metrics('embedded');
  mirrorPool(metrics, () => dispatcher.stats());
  const expirations = new CounterMirror(metrics.lockExpirations);
  metrics.onCollect(() => expirations.update(locks.expirations));
  const started = startGateway(
    options,
    {
      directory: registryDirectory(registry, options.directories),
      dispatcher,
      locks,
      metrics,
      checks: {
        repositories: () => {
          if (!registry.firstScanFinished || writable === undefined) {
            return Promise.resolve('still reading the repositories');
          }
          const served = registry.list().filter((repo) => repo.kind === 'repository').length;
          return Promise.resolve(served > 0 ? { note: `${served} served` } : '0 served');
        },
        writable: () =>
          writable === undefined
            ? Promise.resolve('not checked yet: still reading the repositories')
            : writable.problem(),
      },
      close: async (graceMs) => {
        stopped = true;
        registry.close();
        const grace = new Deadline(graceMs);
        await boundedStep('leave the locks to their retention files', () => locks.close(), {
          withinMs: grace.remaining,
          log: logFunction(log, 'warn'),
        });
        // Sessions still in use when the grace is over are closed; then the journals are
        // committed, within SHUTDOWN_CLEANUP_MS after the grace at the latest.
        await executor.close(grace.remaining, logFunction(log, 'warn'));
      },
    },
    env,
    log,
  );
  let gateway: Awaited<typeof started>;
  try {
    gateway = await started;
  } catch (error) {
    stopped = true;
    registry.close();
    throw error;
  }
  return { ...gateway, pool, locks };
}

/**
 * The registry as the API looks repositories up: each with its location, and within the one a
 * path-addressed URL names (a location below a --directory root, or a --repo's absolute path
 * written without its leading '/').
 */
export function registryDirectory(
  registry: RepositoryRegistry,
  directories: readonly string[],
): RepositoryDirectory {
  const withLocation = <T extends { path: string }>(found: T | undefined) =>
    found === undefined
      ? undefined
      : { ...found, location: repositoryLocation(found.path, directories) };
  const lookup = async (uuid: string, within: string | undefined) => {
    if (within === undefined) {
      return withLocation(await registry.lookup(uuid));
    }
    const candidates = [...directories.map((root) => join(root, within)), `/${within}`];
    for (const candidate of candidates) {
      if (repositoryLocation(candidate, directories).replace(/^\//, '') !== within) {
        continue;
      }
      const found = await registry.lookupAt(candidate, uuid);
      if (found !== undefined) {
        return withLocation(found);
      }
    }
    return undefined;
  };
  return {
    lookup: async (uuid, within) => {
      const found = await lookup(uuid, within);
      if (found === undefined && !registry.firstScanFinished) {
        // Perhaps a repository not reached yet: never 404 before the first scan is done.
        throw unavailable('the server is still reading its repositories', 2);
      }
      return found;
    },
  };
}

/**
 * Checks that the served repositories are writable, warns at start about each one that is not
 * (with what to do), and returns the check for /readyz.
 */
export async function checkWritable(
  registry: { list(): { path: string; kind: string }[] },
  log: Logger,
): Promise<WritableCheck> {
  const check = new WritableCheck(() =>
    registry
      .list()
      .filter((repo) => repo.kind === 'repository')
      .map((repo) => repo.path),
  );
  for (const dir of await check.unwritable()) {
    log.warn(unwritableAdvice(dir), { path: dir.path });
  }
  return check;
}

/**
 * The HTTP API over a backend: builds the Nest app on Fastify, listens, and owns the shutdown
 * order: stop listening, end the backend (locks, sessions or queues), wait for the requests.
 */
/** A put request (any API version), whose body is tapped as soon as it arrives. */
const PUT_PATH = /\/put(?:\?|$)/;

export async function startGateway(
  options: ApiConfig,
  backend: GatewayBackend,
  env: NodeJS.ProcessEnv = process.env,
  log: Logger = loggerFor(options, 'gateway'),
): Promise<RunningGateway> {
  // A policy file that cannot be used stops start-up (PolicyError, with the line at fault).
  const policy =
    options.policyFile === undefined
      ? undefined
      : await PolicySource.load(options.policyFile, log.child({ component: 'policy' }));
  if (policy?.namesUsers === true && !options.authEnv && !options.authEnvHttp) {
    log.warn(
      'the policy names users, but nobody can log in: give --authenv-http (or --authenv, over HTTPS)',
    );
  }
  const hook =
    options.authHook === undefined
      ? undefined
      : new AuthHook({
          url: options.authHook,
          cacheMs: options.authHookCacheMs,
          log: logFunction(log, 'warn'),
        });
  const service = new P2pHttpService({
    registry: backend.directory,
    dispatcher: backend.dispatcher,
    locks: backend.locks,
    access: new AccessControl({
      flags: options,
      users: loadUsers(env),
      policy: policy && (() => policy.current),
      hook,
    }),
    trustForwardedFor: options.trustForwardedFor,
  });

  const { metrics } = backend;
  metrics.onCollect(async () => {
    const stats = await service.stats();
    metrics.locksLive.set(stats.locks);
    metrics.keepLockedOpen.set(stats.keeplocked);
  });
  let closing: Promise<void> | null = null;
  const health = new Health(metrics, {
    accepting: () => Promise.resolve(closing === null ? null : 'shutting down'),
    ...backend.checks,
  });

  const adapter = new FastifyAdapter({
    https: httpsOptions(options),
    http: { maxHeaderSize: MAX_HEADER_BYTES },
    // Values in the URL are bytes: a path segment that is not UTF-8 gets its [base64url]
    // spelling before routing, and the query parser keeps every byte (raw-url.ts).
    // `--path-prefix` and a repository's location before /git-annex/ come off before routing
    // (the location is kept for the lookup, repository-scope.ts).
    rewriteUrl: (request: IncomingMessage) => {
      const routed = routeUrl(normalizePath(request.url ?? '/'), options.pathPrefix);
      if (routed.location !== undefined) {
        setRepositoryScope(request, routed.location);
      }
      return routed.url;
    },
    // keeplocked is a long poll and uploads can be long: no request timeout, as the client
    // sets none either. Idle keep-alive connections still close.
    requestTimeout: 0,
    connectionTimeout: 0,
    keepAliveTimeout: 72_000,
    bodyLimit: Number.MAX_SAFE_INTEGER,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    routerOptions: {
      ignoreTrailingSlash: false,
      maxParamLength: MAX_HEADER_BYTES,
      querystringParser: parseQuery,
    },
  });
  const opsListen = options.opsListen;
  const app = await NestFactory.create<NestFastifyApplication>(
    GatewayModule.forRoot(service, health, { opsRoutes: opsListen === undefined }),
    adapter,
    { bodyParser: false, logger: new NestLogger(log.child({ component: 'nest' })) },
  );
  const fastify = app.getHttpAdapter().getInstance();
  // Request bodies are octet streams read by the handlers themselves (put, keeplocked). A put's
  // body is tapped at once, so that bytes of a client that goes away are not lost (BodyTap).
  fastify.removeAllContentTypeParsers();
  fastify.addContentTypeParser('*', (request, payload, done) =>
    done(null, PUT_PATH.test(request.url) ? new BodyTap(payload) : undefined),
  );
  // A put answered before its body was read (refused, or the content already there): the rest
  // is read and dropped, as Node does for a body nobody reads, so the connection goes on.
  fastify.addHook('onResponse', (request, _reply, done) => {
    if (request.body instanceof BodyTap) {
      request.body.discard();
    }
    done();
  });
  instrumentHttp(fastify, metrics, log);
  await app.init();

  const { urls, extra } = await listen(app, options);
  configureTimeouts(app.getHttpServer());
  let ops: OpsServer | undefined;
  if (opsListen !== undefined) {
    try {
      ops = await startOpsServer({
        listen: opsListen,
        health,
        stats: () => service.stats(),
        log,
      });
    } catch (error) {
      policy?.close();
      hook?.close();
      await Promise.all([app.close(), ...extra.map(closeServer)]);
      throw error;
    }
  }

  policy?.watch();
  const close = () => {
    closing ??= (async () => {
      // Stop accepting; requests in flight (a keeplocked long poll among them) get a grace
      // period, then their connections are cut.
      const done = new Deadline(SHUTDOWN_GRACE_MS + SHUTDOWN_CLEANUP_MS);
      const servers = [app.getHttpServer(), ...extra];
      const cutConnections = () => {
        for (const server of servers) {
          server.closeAllConnections();
        }
      };
      const stopListening = Promise.all([
        app.close(),
        ...extra.map(closeServer),
        ops?.close() ?? Promise.resolve(),
      ]);
      const cut = setTimeout(cutConnections, SHUTDOWN_GRACE_MS);
      policy?.close();
      try {
        await backend.close(SHUTDOWN_GRACE_MS);
        await boundedStep('finish the requests in flight', () => stopListening, {
          withinMs: done.remaining,
          cut: cutConnections,
          log: logFunction(log, 'warn'),
        });
      } finally {
        clearTimeout(cut);
        hook?.close();
      }
    })();
    return closing;
  };
  const reloadPolicy = () => policy?.reload('SIGHUP') ?? Promise.resolve(true);
  return { urls, opsUrl: ops?.url, app, metrics, reloadPolicy, close };
}

function httpsOptions(options: ApiConfig) {
  if (!options.certFile || !options.privateKeyFile) {
    return undefined;
  }
  return {
    cert: readFileSync(options.certFile),
    key: readFileSync(options.privateKeyFile),
    ca: options.chainFiles.map((file) => readFileSync(file)),
    maxHeaderSize: MAX_HEADER_BYTES,
  };
}

/**
 * Listens where the options say: a unix socket, or each --bind address (all addresses by default).
 * The first address belongs to the Nest app; further ones get servers of their own that route
 * into the same Fastify instance. Returns the URLs and those extra servers.
 */
async function listen(
  app: NestFastifyApplication,
  options: ApiConfig,
): Promise<{ urls: string[]; extra: HttpServer[] }> {
  const scheme = options.certFile ? 'https' : 'http';
  if (options.socket) {
    await app.listen({ path: options.socket });
    return { urls: [`${scheme}+unix://${options.socket}`], extra: [] };
  }
  const [firstHost, ...otherHosts] = options.bind;
  try {
    await app.listen({ port: options.port, host: firstHost ?? '::' });
  } catch (error) {
    if (firstHost !== undefined || (error as NodeJS.ErrnoException).code !== 'EAFNOSUPPORT') {
      throw error;
    }
    await app.listen({ port: options.port, host: '0.0.0.0' });
  }
  const main = app.getHttpServer();
  const port = addressPort(main);
  const fastify = app.getHttpAdapter().getInstance();
  const extra: HttpServer[] = [];
  for (const host of otherHosts) {
    const handler = (request: IncomingMessage, response: ServerResponse) =>
      fastify.routing(request, response);
    const server = options.certFile
      ? createHttpsServer(httpsOptions(options) ?? {}, handler)
      : createHttpServer({ maxHeaderSize: MAX_HEADER_BYTES }, handler);
    configureTimeouts(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    extra.push(server);
  }
  const urls = [main, ...extra].map((server) => {
    const address = server.address() as AddressInfo;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    return `${scheme}://${host}:${address.port}`;
  });
  return { urls, extra };
}

function closeServer(server: HttpServer): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}

function addressPort(server: HttpServer): number {
  return (server.address() as AddressInfo).port;
}

/** No request timeout (keeplocked long polls, long uploads); a bound on slow headers only. */
function configureTimeouts(server: HttpServer): void {
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  server.keepAliveTimeout = 72_000;
}
