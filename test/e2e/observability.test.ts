/**
 * /metrics, /healthz and /readyz of the embedded server, after real traffic from the git-annex
 * client and the HTTP API: the counters move by what was done, the pool and lock gauges follow
 * what is open, and labels stay within the fixed vocabulary whatever path a client sends.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectLocked, httpRequest, P2PApi } from './api';
import {
  addAndCommit,
  annex,
  annexUrlFor,
  isReference,
  keyOf,
  killAllTracked,
  makeClientClone,
  makeServedRepo,
  pollUntil,
  reportServerOutputOnFailure,
  RunningServer,
  Sandbox,
  startServer,
  type ServedRepo,
} from './harness';

const FILES = [
  { path: 'a.bin', size: 70_000 },
  { path: 'b.bin', size: 5_000 },
];

let sandbox: Sandbox;
let served: ServedRepo;
let server: RunningServer | undefined;
let api: P2PApi;

reportServerOutputOnFailure(() => [server]);

/** Parses the Prometheus text format into `name{labels}` → value. */
function parseMetrics(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) {
      continue;
    }
    const space = line.lastIndexOf(' ');
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

/** Sum of the samples of `name` whose labels include every `name="value"` pair given. */
function sum(samples: Map<string, number>, name: string, labels: Record<string, string> = {}) {
  let total = 0;
  for (const [series, value] of samples) {
    const brace = series.indexOf('{');
    const seriesName = brace < 0 ? series : series.slice(0, brace);
    if (seriesName !== name) {
      continue;
    }
    if (Object.entries(labels).every(([k, v]) => series.includes(`${k}="${v}"`))) {
      total += value;
    }
  }
  return total;
}

async function scrape(): Promise<Map<string, number>> {
  const result = await httpRequest(server!.port, '/metrics', { method: 'GET' });
  expect(result.status).toBe(200);
  expect(result.headers['content-type']).toMatch(/^text\/plain/);
  return parseMetrics(result.body.toString('utf8'));
}

describe.skipIf(isReference())('observability', () => {
  beforeAll(async () => {
    sandbox = await Sandbox.create('observability');
    served = await makeServedRepo(sandbox, sandbox.path('served'), FILES);
    server = await startServer({ sandbox, repo: served, auth: ['--wideopen'] });
    api = new P2PApi(server.port, served.uuid);
  });

  afterAll(async () => {
    try {
      await server?.stop();
    } finally {
      killAllTracked();
      await sandbox?.remove();
    }
  });

  it('answers /healthz and /readyz', async () => {
    const health = await httpRequest(server!.port, '/healthz', { method: 'GET' });
    expect(health.status).toBe(200);
    expect(JSON.parse(health.body.toString('utf8'))).toEqual({ status: 'ok' });
    const ready = await httpRequest(server!.port, '/readyz', { method: 'GET' });
    expect(ready.status).toBe(200);
    const body = JSON.parse(ready.body.toString('utf8')) as {
      status: string;
      checks: { name: string; ok: boolean }[];
    };
    expect(body.status).toBe('ready');
    expect(body.checks.map((check) => check.name)).toContain('repositories');
  });

  it('counts the requests, bytes and sessions of a real client get and copy', async () => {
    const before = await scrape();
    const client = await makeClientClone(
      sandbox,
      served,
      sandbox.path('client'),
      annexUrlFor(server!.port),
    );
    await annex(client, ['get', 'a.bin', 'b.bin']);
    const after = await scrape();

    const gets = (s: Map<string, number>) =>
      sum(s, 'annex_p2phttp_http_requests_total', { route: 'get', status: '200' });
    expect(gets(after) - gets(before)).toBe(2);
    const histogramCount = (s: Map<string, number>) =>
      sum(s, 'annex_p2phttp_http_request_duration_seconds_count', { route: 'get' });
    expect(histogramCount(after) - histogramCount(before)).toBe(2);
    const sent = (s: Map<string, number>) =>
      sum(s, 'annex_p2phttp_http_sent_bytes_total', { route: 'get' });
    expect(sent(after) - sent(before)).toBeGreaterThanOrEqual(75_000);
    expect(sum(after, 'process_resident_memory_bytes', { app: 'embedded' })).toBeGreaterThan(0);

    // Uploads go through git-annex-shell sessions, which the pool metrics follow.
    await addAndCommit(client, [{ path: 'up.bin', size: 40_000 }]);
    await annex(client, ['copy', '--to', 'origin', 'up.bin']);
    const copied = await scrape();
    const puts = (s: Map<string, number>) =>
      sum(s, 'annex_p2phttp_http_requests_total', { route: 'put', status: '200' });
    expect(puts(copied) - puts(after)).toBe(1);
    const received = (s: Map<string, number>) =>
      sum(s, 'annex_p2phttp_http_received_bytes_total', { route: 'put' });
    expect(received(copied) - received(after)).toBeGreaterThanOrEqual(40_000);
    expect(sum(copied, 'annex_p2phttp_pool_opens_total')).toBeGreaterThan(
      sum(after, 'annex_p2phttp_pool_opens_total'),
    );
    expect(sum(copied, 'annex_p2phttp_pool_connections', { state: 'active' })).toBe(0);
    expect(sum(copied, 'annex_p2phttp_pool_connections', { state: 'idle' })).toBeGreaterThan(0);
  });

  it('follows locks and open keeplocked requests, and counts statuses', async () => {
    const key = keyOf(served, 'b.bin');
    const lockid = expectLocked(await api.post('lockcontent', { key }));
    const keeper = api.keeplocked(lockid);
    await keeper.written();
    let samples = await pollUntil(
      'keeplocked counted',
      async () => {
        const s = await scrape();
        return sum(s, 'annex_p2phttp_keeplocked_requests') === 1 ? s : undefined;
      },
      { timeoutMs: 10_000 },
    );
    expect(sum(samples, 'annex_p2phttp_locks')).toBe(1);
    expect(sum(samples, 'annex_p2phttp_pool_connections', { state: 'locking' })).toBe(1);
    await keeper.unlock();
    samples = await scrape();
    expect(sum(samples, 'annex_p2phttp_locks')).toBe(0);
    expect(sum(samples, 'annex_p2phttp_keeplocked_requests')).toBe(0);

    const notFound = (s: Map<string, number>) =>
      sum(s, 'annex_p2phttp_http_requests_total', { route: 'checkpresent', status: '404' });
    const before = notFound(samples);
    const missing = await new P2PApi(server!.port, '11111111-2222-3333-4444-555555555555').post(
      'checkpresent',
      { key },
    );
    expect(missing.status).toBe(404);
    expect(notFound(await scrape()) - before).toBe(1);
  });

  it('keeps labels to a fixed vocabulary whatever the path', async () => {
    await api.post('no-such-operation', { key: 'x' }, { version: 'v99' });
    await httpRequest(server!.port, `/git-annex/${served.uuid}/v77/key/k`, { method: 'GET' });
    await httpRequest(server!.port, '/some/random/path', { method: 'GET' });
    const text = (await httpRequest(server!.port, '/metrics', { method: 'GET' })).body.toString(
      'utf8',
    );
    expect(text).not.toContain('no-such-operation');
    expect(text).not.toContain('v99');
    expect(text).not.toContain('v77');
    expect(text).not.toContain('random');
    expect(text).not.toContain(served.uuid);
    expect(text).toContain('route="unknown",version="unknown"');
    expect(text).toContain('route="unmatched"');
  });
});
