/**
 * The lock-service's own small HTTP server on --health-port: /healthz (the process runs),
 * /readyz (its named checks: Redis answers, the repositories are readable and writable) and
 * /metrics, as every role answers them (@annex-p2phttp/metrics, health.ts).
 */
import {
  Health,
  startHealthServer as startServer,
  type Checks,
  type Logger,
  type Metrics,
} from '@annex-p2phttp/metrics';

export interface HealthServer {
  /** Its base URL (the loopback address when it listens on all of them). */
  readonly url: string;
  close(): Promise<void>;
}

export async function startHealthServer(options: {
  port: number;
  host?: string;
  metrics: Metrics;
  /** Where each request's access-log line goes. */
  log?: Logger;
  /** What /readyz checks. */
  checks: Checks;
}): Promise<HealthServer> {
  const server = await startServer({
    health: new Health(options.metrics, options.checks),
    port: options.port,
    host: options.host ?? '0.0.0.0',
    log: options.log,
  });
  const host = server.host === '0.0.0.0' ? '127.0.0.1' : server.host;
  return { url: `http://${host}:${server.port}`, close: () => server.close() };
}
