/**
 * The lock-service's own small HTTP server on --health-port: /healthz (the process runs),
 * /readyz (Redis answers and the repositories are readable) and /metrics (Prometheus).
 */
import { createServer, type Server } from 'node:http';
import { type AddressInfo } from 'node:net';
import { logNodeRequest, type Logger, type Metrics } from '@annex-p2phttp/metrics';

export interface HealthServer {
  readonly url: string;
  close(): Promise<void>;
}

export async function startHealthServer(options: {
  port: number;
  host?: string;
  metrics: Metrics;
  /** Where each request's access-log line goes. */
  log?: Logger;
  /** Why the service is not ready, or null when it is. */
  notReady: () => Promise<string | null>;
}): Promise<HealthServer> {
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0] ?? '/';
    if (options.log) {
      const known = ['/healthz', '/readyz', '/metrics'].includes(path);
      logNodeRequest(options.log, request, response, known ? path.slice(1) : 'unmatched');
    }
    const send = (status: number, body: string, type = 'text/plain;charset=utf-8') => {
      response.writeHead(status, { 'content-type': type }).end(body);
    };
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      send(405, 'method not allowed\n');
      return;
    }
    if (path === '/healthz') {
      send(200, 'ok\n');
    } else if (path === '/readyz') {
      options.notReady().then(
        (problem) => (problem === null ? send(200, 'ready\n') : send(503, `${problem}\n`)),
        (error: unknown) => send(503, `${String(error)}\n`),
      );
    } else if (path === '/metrics') {
      options.metrics.render().then(
        ({ contentType, body }) => send(200, body, contentType),
        (error: unknown) => send(500, `${String(error)}\n`),
      );
    } else {
      send(404, 'not found\n');
    }
  });
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '0.0.0.0', () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
