/**
 * A cluster that is starting must not deny repositories: a gateway that has not yet seen the
 * proxy workers' adverts (started before them, or after Redis came back empty) answers a uuid
 * it does not know with 503 and Retry-After, never 404, which a git-annex client takes for "this
 * API version is not supported" and walks down to v0. Here the gateway starts first and the
 * worker seconds later, with the real client's `git annex get` already running; then Redis is
 * restarted empty under a gateway that never saw the repository.
 */
import { randomUUID } from 'node:crypto';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PrivateRedis } from '../support/redis';
import { httpRequest, P2PApi, type HttpResult } from './api';
import {
  annexStatus,
  annexUrlFor,
  delay,
  fileDigest,
  freePort,
  keyOf,
  killAllTracked,
  makeClientClone,
  makeServedRepo,
  pollUntil,
  reportServerOutputOnFailure,
  RunningServer,
  Sandbox,
  spawnClusterApp,
  stopAndCollectLeftovers,
  untilReady,
  httpStatus,
  type ClientRepo,
  type ClusterAppContext,
  type ServedRepo,
} from './harness';

let sandbox: Sandbox;
let served: ServedRepo;
let redis: PrivateRedis;
let context: ClusterAppContext;
let client: ClientRepo;
const everything: RunningServer[] = [];
let worker: RunningServer | undefined;

reportServerOutputOnFailure(() => everything);

/**
 * A gateway answering HTTP (its /readyz may still say not ready). `queueWaitSeconds` also bounds
 * how long a request waits for the adverts of a starting cluster.
 */
async function startGateway(queueWaitSeconds: number): Promise<RunningServer> {
  const port = await freePort();
  const gateway = spawnClusterApp(
    context,
    'gateway',
    [
      '--bind',
      '127.0.0.1',
      '--port',
      String(port),
      '--wideopen',
      '--queue-wait',
      String(queueWaitSeconds),
    ],
    port,
  );
  everything.push(gateway);
  await pollUntil(
    `gateway on ${port} answering`,
    async () => ((await httpStatus(port, '/healthz')) === 200 ? true : undefined),
    { timeoutMs: 60_000, intervalMs: 100 },
  );
  return gateway;
}

async function startWorker(): Promise<RunningServer> {
  const port = await freePort();
  const app = spawnClusterApp(
    context,
    'proxy-worker',
    ['--repo', served.dir, '--bind', '127.0.0.1', '--data-port', String(port), '--jobs', '2'],
    port,
  );
  everything.push(app);
  return app;
}

function expectRetryLater(result: HttpResult): void {
  expect(result.status, result.body.toString()).toBe(503);
  expect(result.headers['retry-after']).toMatch(/^[1-9]\d*$/);
}

beforeAll(async () => {
  sandbox = await Sandbox.create('cluster-startup');
  served = await makeServedRepo(sandbox, sandbox.path('served'), [
    { path: 'one.bin', size: 40_000 },
    { path: 'two.bin', size: 30_000 },
  ]);
  redis = await PrivateRedis.start();
  context = { sandbox, repo: served, redisUrl: redis.url, prefix: 'e2e-startup:' };
}, 120_000);

afterAll(async () => {
  await Promise.all(everything.map((app) => app.stop()));
  await redis?.stop();
  killAllTracked();
  await sandbox?.remove();
});

describe('a cluster that is starting', () => {
  let impatient: RunningServer;
  let patient: RunningServer;

  it('answers 503 with Retry-After, never 404, while no worker has advertised', async () => {
    impatient = await startGateway(2);
    expect(await httpStatus(impatient.port, '/readyz')).toBe(503);
    const api = new P2PApi(impatient.port, served.uuid);
    expectRetryLater(await api.checkpresent(keyOf(served, 'one.bin')));
    expectRetryLater(await new P2PApi(impatient.port, randomUUID()).gettimestamp());
  });

  it("serves a real client's get that started before the worker", async () => {
    patient = await startGateway(60);
    client = await makeClientClone(
      sandbox,
      served,
      sandbox.path('client'),
      annexUrlFor(patient.port),
    );
    const getting = annexStatus(client, ['get', '--', 'one.bin'], 180_000);
    // Requests in between, through the other gateway: still "try again", never "unknown".
    await delay(1000);
    expectRetryLater(
      await new P2PApi(impatient.port, served.uuid).checkpresent(keyOf(served, 'one.bin')),
    );
    worker = await startWorker();
    const result = await getting;
    expect(result.code, `${result.stdout}${result.stderr}`).toBe(0);
    expect(await fileDigest(path.join(client.dir, 'one.bin'))).toEqual(
      await fileDigest(path.join(served.dir, 'one.bin')),
    );
    await untilReady(worker, 'the proxy worker');
    for (const gateway of [impatient, patient]) {
      expect(await httpStatus(gateway.port, '/readyz')).toBe(200);
      const metrics = (await httpRequest(gateway.port, '/metrics', { method: 'GET' })).body;
      expect(metrics.toString('utf8')).not.toMatch(/http_requests_total\{[^}]*status="404"/);
    }
  });

  it('answers 404 for a uuid nobody serves once the cluster has settled', async () => {
    const unknown = new P2PApi(impatient.port, randomUUID());
    // 503 (the cluster still settling, and the wait ran out) at first, then 404 for good.
    const answer = await pollUntil(
      'a 404 for an unknown uuid',
      async () => {
        const result = await unknown.gettimestamp();
        if (result.status === 503) {
          return undefined;
        }
        return result;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    expect(answer.status).toBe(404);
    expect((await new P2PApi(impatient.port, served.uuid).gettimestamp()).status).toBe(200);
  });

  it('a gateway that never saw the repository answers 503, not 404, after Redis came back empty', async () => {
    // The worker stops (withdrawing its advert) and Redis forgets everything.
    await worker!.stop();
    await redis.stop();
    await redis.restart();
    const fresh = await startGateway(2);
    const key = keyOf(served, 'two.bin');
    expectRetryLater(await new P2PApi(fresh.port, served.uuid).checkpresent(key));
    expectRetryLater(await new P2PApi(fresh.port, randomUUID()).gettimestamp());
    // The gateways that served it remember it: unavailable, not unknown.
    expectRetryLater(await new P2PApi(impatient.port, served.uuid).checkpresent(key));
    const getting = annexStatus(client, ['get', '--', 'two.bin'], 180_000);
    await delay(500);
    worker = await startWorker();
    const result = await getting;
    expect(result.code, `${result.stdout}${result.stderr}`).toBe(0);
    await pollUntil(
      'the fresh gateway serving the repository',
      async () => {
        const answer = await new P2PApi(fresh.port, served.uuid).checkpresent(key);
        return answer.status === 200 ? answer : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
  });

  it('leaves no process behind', async () => {
    const { stops, leftovers } = await stopAndCollectLeftovers(everything, [served.dir]);
    expect(stops.every((stop) => !stop.forced)).toBe(true);
    expect(leftovers).toEqual([]);
  });
});
