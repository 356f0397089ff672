/**
 * The ops listener (`--ops-listen ADDRESS:PORT`): /metrics and /stats on a port of their own, so
 * that they can stay off the public API (which then answers them 404), plus /healthz and /readyz
 * for probes that use this port: the health helper's server (@annex-p2phttp/metrics) with /stats.
 * Plain HTTP: it is meant for an internal address that Prometheus and operators reach.
 */
import { type ListenAddress } from '@annex-p2phttp/config';
import { startHealthServer, type Health, type Logger } from '@annex-p2phttp/metrics';

export interface OpsServer {
  readonly url: string;
  close(): Promise<void>;
}

export interface OpsServerOptions {
  readonly listen: ListenAddress;
  readonly health: Health;
  readonly stats: () => Promise<unknown>;
  readonly log: Logger;
}

export async function startOpsServer(options: OpsServerOptions): Promise<OpsServer> {
  const server = await startHealthServer({
    health: options.health,
    port: options.listen.port,
    host: options.listen.host,
    log: options.log,
    json: { '/stats': options.stats },
  });
  return { url: server.url, close: () => server.close() };
}
