/**
 * The ops listener (`--ops-listen ADDRESS:PORT`): /metrics and /stats on a port of their own, so
 * that they can stay off the public API (which then answers them 404), plus /healthz and /readyz
 * for probes that use this port. Plain HTTP: it is meant for an internal address that Prometheus
 * and operators reach.
 */
import { createServer, type Server } from 'node:http';
import { type AddressInfo } from 'node:net';
import { type ListenAddress } from '@annex-p2phttp/config';
import { logNodeRequest, type Logger, type Metrics } from '@annex-p2phttp/metrics';
import { type ReadinessCheck } from './health.controller';

export interface OpsServer {
  readonly url: string;
  close(): Promise<void>;
}

export interface OpsServerOptions {
  readonly listen: ListenAddress;
  readonly metrics: Metrics;
  readonly stats: () => Promise<unknown>;
  readonly readiness: () => Promise<ReadinessCheck[]>;
  readonly log: Logger;
}

const ROUTES = new Set(['/metrics', '/stats', '/healthz', '/readyz']);

export async function startOpsServer(options: OpsServerOptions): Promise<OpsServer> {
  const { metrics, log } = options;
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0] ?? '/';
    const route = ROUTES.has(path) ? path.slice(1) : 'unmatched';
    logNodeRequest(log, request, response, route);
    const send = (status: number, body: string, type: string) => {
      response.writeHead(status, { 'content-type': type }).end(body);
    };
    const json = (status: number, value: unknown) =>
      send(status, JSON.stringify(value), 'application/json');
    const failed = (error: unknown) => send(500, `${String(error)}\n`, 'text/plain;charset=utf-8');
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      send(405, 'method not allowed\n', 'text/plain;charset=utf-8');
      return;
    }
    switch (path) {
      case '/metrics':
        metrics.render().then(({ contentType, body }) => send(200, body, contentType), failed);
        return;
      case '/stats':
        options.stats().then((stats) => json(200, stats), failed);
        return;
      case '/healthz':
        json(200, { status: 'ok' });
        return;
      case '/readyz':
        options.readiness().then((checks) => {
          const ok = checks.every((check) => check.ok);
          json(ok ? 200 : 503, { status: ok ? 'ready' : 'not ready', checks });
        }, failed);
        return;
      default:
        send(404, 'not found\n', 'text/plain;charset=utf-8');
    }
  });
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listen.port, options.listen.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
