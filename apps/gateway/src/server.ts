/**
 * The HTTP API, in both modes: `startGateway` over a backend that apps/serve composes. Embedded
 * (apps/serve embedded.ts): registry, pool and operation executor behind the local dispatcher,
 * local locks. Cluster (apps/serve cluster-gateway.ts): the BullMQ dispatcher, the cluster
 * directory and cluster-wide locks. The gateway reaches repositories only through the Dispatcher
 * and RetentionLocks it is given.
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
import { loadUsers, type ApiConfig } from '@annex-p2phttp/config';
import { type Dispatcher } from '@annex-p2phttp/dispatch';
import { type RetentionLocks } from '@annex-p2phttp/locks';
import {
  Health,
  logFunction,
  loggerFor,
  type Checks,
  type Logger,
  type Metrics,
} from '@annex-p2phttp/metrics';
import { AccessControl } from './access';
import { GatewayModule } from './app.module';
import { AuthHook } from './auth-hook';
import { BodyTap } from './body-tap';
import { instrumentHttp } from './http-metrics';
import { NestLogger } from './nest-logger';
import { startOpsServer, type OpsServer } from './ops-server';
import { P2pHttpService, type RepositoryDirectory } from './p2phttp.service';

export type { RepositoryDirectory } from './p2phttp.service';
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
   * `graceMs`, and the whole takes at most `shutdown.cleanupMs` more, whatever the state of Redis.
   */
  close(graceMs: number): Promise<void>;
  /** The shutdown bounds of every role (libs/ops shutdown-steps.ts), as the API keeps them. */
  readonly shutdown: GatewayShutdown;
}

/** How the API stops within the bounds every role keeps. */
export interface GatewayShutdown {
  /** What requests in flight get after SIGTERM before their connections are cut. */
  readonly graceMs: number;
  /** What ending what was cut takes at most after the grace. */
  readonly cleanupMs: number;
  /**
   * Waits for `work` at most `withinMs`; when it fails or runs out of time, says so in one log
   * line and calls `cut`. Never throws.
   */
  bounded(
    what: string,
    work: () => Promise<unknown>,
    withinMs: number,
    cut: () => void,
  ): Promise<unknown>;
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

/**
 * Request line and headers beyond this get 431. Node's default of 16 KiB would refuse keys that
 * git-annex takes (up to 32,736 characters, MAX_KEY_LENGTH; in `[base64url]` form a third more).
 */
export const MAX_HEADER_BYTES = 64 * 1024;

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
      const { graceMs, cleanupMs } = backend.shutdown;
      const doneAt = performance.now() + graceMs + cleanupMs;
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
      const cut = setTimeout(cutConnections, graceMs);
      policy?.close();
      try {
        await backend.close(graceMs);
        await backend.shutdown.bounded(
          'finish the requests in flight',
          () => stopListening,
          Math.max(0, doneAt - performance.now()),
          cutConnections,
        );
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
