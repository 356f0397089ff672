/**
 * HTTP metrics for every request the gateway answers: count and duration by route, API version,
 * method and status, and bytes moved on the connection. Labels come from a fixed vocabulary (the
 * API's operation names and versions), never from keys, uuids or whatever a client puts in a path,
 * so that a scan of random URLs cannot blow up the number of series. The same measurements make
 * the access log: one line per request with its repository uuid, user and client address (never
 * the path's key, nor a credential).
 */
import { type Socket } from 'node:net';
import { type Logger, type Metrics } from '@annex-p2phttp/metrics';
import { type FastifyInstance, type FastifyRequest } from 'fastify';
import { POST_OPERATIONS } from './p2phttp.service';
import { requestUser } from './request-user';

const VERSIONS = new Set(['v0', 'v1', 'v2', 'v3', 'v4']);
const OWN_ROUTES = new Set(['/metrics', '/healthz', '/readyz', '/stats']);
const UUID = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;

interface Started {
  readonly at: bigint;
  readonly written: number;
}

const started = new WeakMap<FastifyRequest, Started>();
/** Per connection: its bytesRead already counted for an earlier request. */
const accountedRead = new WeakMap<Socket, number>();

/** The route and version labels of a request. */
export function routeLabels(request: FastifyRequest): { route: string; version: string } {
  const params = (request.params ?? {}) as Record<string, string | undefined>;
  const pattern = request.routeOptions.url;
  if (pattern === undefined) {
    return { route: 'unmatched', version: 'none' };
  }
  if (OWN_ROUTES.has(pattern)) {
    return { route: pattern.slice(1), version: 'none' };
  }
  const version =
    params.version === undefined
      ? 'none'
      : VERSIONS.has(params.version)
        ? params.version
        : 'unknown';
  if (pattern.endsWith('/key/:key')) {
    return { route: 'get', version };
  }
  const op = params.op;
  return { route: op !== undefined && POST_OPERATIONS.has(op) ? op : 'unknown', version };
}

/** The repository uuid a request named, when it is a well-formed one. */
function repositoryOf(request: FastifyRequest): string | undefined {
  const uuid = ((request.params ?? {}) as Record<string, string | undefined>).uuid;
  return uuid !== undefined && UUID.test(uuid) ? uuid : undefined;
}

/**
 * Counts every request answered by `fastify` into `metrics` and, when `log` is given, writes its
 * access-log line.
 */
export function instrumentHttp(fastify: FastifyInstance, metrics: Metrics, log?: Logger): void {
  fastify.addHook('onRequest', (request, _reply, done) => {
    const socket = request.raw.socket as Socket | null;
    started.set(request, {
      at: process.hrtime.bigint(),
      written: socket?.bytesWritten ?? 0,
    });
    done();
  });
  fastify.addHook('onResponse', (request, reply, done) => {
    const start = started.get(request);
    if (start) {
      const { route, version } = routeLabels(request);
      const method = request.method;
      const seconds = Number(process.hrtime.bigint() - start.at) / 1e9;
      const status = reply.statusCode;
      metrics.httpRequests.inc({ route, version, method, status: String(status) });
      metrics.httpDuration.observe({ route, version, method }, seconds);
      let bytesIn = 0;
      let bytesOut = 0;
      const socket = request.raw.socket as Socket | null;
      if (socket) {
        bytesOut = Math.max(0, socket.bytesWritten - start.written);
        // Everything read on the connection since the previous request's answer: a request's
        // headers and a small body are often read before onRequest runs.
        const read = socket.bytesRead;
        bytesIn = Math.max(0, read - (accountedRead.get(socket) ?? 0));
        accountedRead.set(socket, read);
        metrics.httpSentBytes.inc({ route }, bytesOut);
        metrics.httpReceivedBytes.inc({ route }, bytesIn);
      }
      log?.access({
        method,
        route,
        version,
        repository: repositoryOf(request),
        status,
        bytesIn,
        bytesOut,
        durationMs: seconds * 1000,
        user: requestUser(request),
        client: request.ip ?? socket?.remoteAddress ?? 'unknown',
      });
    }
    done();
  });
}
