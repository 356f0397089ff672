/**
 * Health and readiness, answered alike by every role: `/healthz` (the process answers: always
 * 200), `/readyz` (what it depends on works: 200, else 503) and `/metrics` (Prometheus text).
 * Bodies are JSON: `{"status":"ok"}` for /healthz; for /readyz
 * `{"status":"ready"|"not ready","checks":[{"name":…,"ok":…,"detail":…},…]}`, one entry per
 * named check in the order given. They need no credentials.
 *
 * Roles with their own HTTP stack answer these paths through `Health` (the gateway's Nest
 * controllers); the others use `handleHealthRequest` in a node:http server of theirs (the
 * proxy worker's data port) or `startHealthServer` (the lock-service, the ops listener).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo } from 'node:net';
import { logNodeRequest, type Logger } from './log';
import { type Metrics } from './metrics';

/**
 * What a check found: null when all is well, else the problem. `{ note }` is well, with a word
 * on the state (as "3 served").
 */
export type CheckResult = string | null | { readonly note: string };

/** One thing a role needs; a check that throws counts as the problem its error says. */
export type Check = () => Promise<CheckResult>;

/** The named checks of /readyz, in the order they are reported. */
export type Checks = Readonly<Record<string, Check>>;

/** One entry of /readyz's `checks`. */
export interface ReadinessCheck {
  readonly name: string;
  readonly ok: boolean;
  readonly detail?: string;
}

/** An answer to one of the health paths. */
export interface HealthAnswer {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
}

/** The paths Health answers. */
export const HEALTH_PATHS: readonly string[] = ['/healthz', '/readyz', '/metrics'];

const JSON_TYPE = 'application/json';
const TEXT_TYPE = 'text/plain;charset=utf-8';

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Runs every check at once; each gives its entry, whatever the others do. */
export async function runChecks(checks: Checks): Promise<ReadinessCheck[]> {
  return Promise.all(
    Object.entries(checks).map(async ([name, check]): Promise<ReadinessCheck> => {
      let result: CheckResult;
      try {
        result = await check();
      } catch (error) {
        result = message(error);
      }
      if (result === null) {
        return { name, ok: true };
      }
      return typeof result === 'string'
        ? { name, ok: false, detail: result }
        : { name, ok: true, detail: result.note };
    }),
  );
}

export class Health {
  constructor(
    readonly metrics: Metrics,
    private readonly checks: Checks,
  ) {}

  /** `/healthz`: the process answers. */
  live(): HealthAnswer {
    return { status: 200, contentType: JSON_TYPE, body: '{"status":"ok"}' };
  }

  /** `/readyz`: 200 when every check passes, else 503; the body names each check. */
  async ready(): Promise<HealthAnswer> {
    const checks = await runChecks(this.checks);
    const ok = checks.every((check) => check.ok);
    return {
      status: ok ? 200 : 503,
      contentType: JSON_TYPE,
      body: JSON.stringify({ status: ok ? 'ready' : 'not ready', checks }),
    };
  }

  /** `/metrics`: the Prometheus text (500 should collecting fail). */
  async scrape(): Promise<HealthAnswer> {
    try {
      const { contentType, body } = await this.metrics.render();
      return { status: 200, contentType, body };
    } catch (error) {
      return { status: 500, contentType: TEXT_TYPE, body: `${message(error)}\n` };
    }
  }

  /** The answer for `path` when it is one of HEALTH_PATHS, else undefined. */
  answer(path: string): Promise<HealthAnswer> | undefined {
    switch (path) {
      case '/healthz':
        return Promise.resolve(this.live());
      case '/readyz':
        return this.ready();
      case '/metrics':
        return this.scrape();
      default:
        return undefined;
    }
  }
}

/** Writes `answer` (no body for HEAD). */
export function sendAnswer(response: ServerResponse, answer: HealthAnswer): void {
  response.writeHead(answer.status, { 'content-type': answer.contentType }).end(answer.body);
}

function sendText(response: ServerResponse, status: number, body: string): void {
  sendAnswer(response, { status, contentType: TEXT_TYPE, body });
}

/**
 * Answers a node:http request for one of the health paths (405 for a method other than GET or
 * HEAD) and returns true; false, without touching it, for any other path.
 */
export function handleHealthRequest(
  health: Health,
  request: IncomingMessage,
  response: ServerResponse,
): boolean {
  const answer = health.answer(pathOf(request));
  if (answer === undefined) {
    return false;
  }
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    sendText(response, 405, 'method not allowed\n');
    return true;
  }
  answer.then(
    (found) => sendAnswer(response, found),
    (error: unknown) => sendText(response, 500, `${message(error)}\n`),
  );
  return true;
}

/** The path of a request, without its query. */
export function pathOf(request: IncomingMessage): string {
  return (request.url ?? '/').split('?')[0] ?? '/';
}

export interface HealthServerOptions {
  readonly health: Health;
  readonly port: number;
  /** The address to listen on (default all IPv4 addresses). */
  readonly host?: string;
  /** Where each request's access-log line goes. */
  readonly log?: Logger;
  /** More GET paths answered with JSON (the ops listener's /stats). */
  readonly json?: Readonly<Record<string, () => Promise<unknown>>>;
}

export interface HealthServer {
  /** The address it listens on (an IPv6 host in brackets). */
  readonly host: string;
  readonly port: number;
  /** http://HOST:PORT */
  readonly url: string;
  close(): Promise<void>;
}

/** A small node:http server of the health paths (and `json`'s), for roles without Nest. */
export async function startHealthServer(options: HealthServerOptions): Promise<HealthServer> {
  const { health, log } = options;
  const json = options.json ?? {};
  const server: Server = createServer((request, response) => {
    const path = pathOf(request);
    if (log) {
      const known = HEALTH_PATHS.includes(path) || Object.hasOwn(json, path);
      logNodeRequest(log, request, response, known ? path.slice(1) : 'unmatched');
    }
    if (handleHealthRequest(health, request, response)) {
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      sendText(response, 405, 'method not allowed\n');
      return;
    }
    const extra = Object.hasOwn(json, path) ? json[path] : undefined;
    if (extra === undefined) {
      sendText(response, 404, 'not found\n');
      return;
    }
    extra().then(
      (value) =>
        sendAnswer(response, { status: 200, contentType: JSON_TYPE, body: JSON.stringify(value) }),
      (error: unknown) => sendText(response, 500, `${message(error)}\n`),
    );
  });
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '0.0.0.0', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    host,
    port: address.port,
    url: `http://${host}:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
