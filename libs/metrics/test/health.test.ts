import { createServer, request as httpRequest, type Server } from 'node:http';
import { type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  handleHealthRequest,
  Health,
  Metrics,
  startHealthServer,
  type HealthServer,
} from '@annex-p2phttp/metrics';

interface Reply {
  status: number;
  type: string | undefined;
  body: string;
}

function get(url: string, method = 'GET'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], body }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

const servers: HealthServer[] = [];
const plain: Server[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
  await Promise.all(
    plain.splice(0).map((server) => new Promise<void>((resolve) => server.close(() => resolve()))),
  );
});

async function serve(health: Health, json?: Record<string, () => Promise<unknown>>) {
  const server = await startHealthServer({ health, port: 0, host: '127.0.0.1', json });
  servers.push(server);
  return server;
}

describe('Health over a real HTTP server', () => {
  it('answers /healthz 200 and /readyz 200 with every check named, in order', async () => {
    const metrics = new Metrics('lock-service');
    const server = await serve(
      new Health(metrics, {
        redis: () => Promise.resolve(null),
        repositories: () => Promise.resolve({ note: '2 served' }),
      }),
    );
    const live = await get(`${server.url}/healthz`);
    expect(live).toEqual({ status: 200, type: 'application/json', body: '{"status":"ok"}' });
    const ready = await get(`${server.url}/readyz?verbose=1`);
    expect(ready.status).toBe(200);
    expect(ready.type).toBe('application/json');
    expect(JSON.parse(ready.body)).toEqual({
      status: 'ready',
      checks: [
        { name: 'redis', ok: true },
        { name: 'repositories', ok: true, detail: '2 served' },
      ],
    });
  });

  it('answers /readyz 503 naming each problem, a check that throws included', async () => {
    let redisDown = true;
    const server = await serve(
      new Health(new Metrics('proxy-worker'), {
        redis: () => Promise.resolve(redisDown ? 'Redis unreachable: connection refused' : null),
        writable: () => Promise.reject(new Error('cannot write to /srv/a')),
        accepting: () => Promise.resolve(null),
      }),
    );
    const ready = await get(`${server.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(JSON.parse(ready.body)).toEqual({
      status: 'not ready',
      checks: [
        { name: 'redis', ok: false, detail: 'Redis unreachable: connection refused' },
        { name: 'writable', ok: false, detail: 'cannot write to /srv/a' },
        { name: 'accepting', ok: true },
      ],
    });
    redisDown = false;
    const still = JSON.parse((await get(`${server.url}/readyz`)).body) as { status: string };
    expect(still.status).toBe('not ready');
    expect((await get(`${server.url}/healthz`)).status).toBe(200);
  });

  it('serves /metrics, extra JSON paths, 404 and 405', async () => {
    const metrics = new Metrics('lock-service');
    metrics.locksLive.set(3);
    const server = await serve(new Health(metrics, {}), {
      '/stats': () => Promise.resolve({ locks: 3 }),
    });
    const scraped = await get(`${server.url}/metrics`);
    expect(scraped.status).toBe(200);
    expect(scraped.type).toMatch(/^text\/plain/);
    expect(scraped.body).toMatch(/^annex_p2phttp_locks\{app="lock-service"\} 3$/m);
    expect(await get(`${server.url}/stats`)).toEqual({
      status: 200,
      type: 'application/json',
      body: '{"locks":3}',
    });
    expect((await get(`${server.url}/other`)).status).toBe(404);
    expect((await get(`${server.url}/readyz`, 'POST')).status).toBe(405);
    expect((await get(`${server.url}/stats`, 'DELETE')).status).toBe(405);
    const empty = JSON.parse((await get(`${server.url}/readyz`)).body) as unknown;
    expect(empty).toEqual({ status: 'ready', checks: [] });
  });

  it('answers the health paths inside a server of its own and leaves the others', async () => {
    const health = new Health(new Metrics('proxy-worker'), {
      queues: () => Promise.resolve('queue g.8.0: worker not running'),
    });
    const server = createServer((request, response) => {
      if (!handleHealthRequest(health, request, response)) {
        response.writeHead(418).end('mine');
      }
    });
    plain.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    expect((await get(`${url}/readyz`)).status).toBe(503);
    expect((await get(`${url}/healthz`)).status).toBe(200);
    expect(await get(`${url}/stream/x`)).toMatchObject({ status: 418, body: 'mine' });
  });
});
