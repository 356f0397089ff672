/**
 * A job that outlived a Redis failover while its completion did not (the replica had its entry
 * in the queue, not the worker's answer) must not run again. Each job carries the replication id
 * of the primary it was queued on; a proxy worker that finds another primary now fails the job as
 * unavailable and leaves the repository alone. The stale job is put on the queue the way a gateway
 * does (a failover that loses exactly one completion cannot be staged reliably); the same job with
 * the current primary's id then runs, which shows the job itself was a valid one.
 */
import { randomUUID } from 'node:crypto';
import { Queue, QueueEvents } from 'bullmq';
import Redis from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_SHARDS } from '@annex-p2phttp/config';
import { ClusterKeys, encodePayload, queueOf, type JobPayload } from '@annex-p2phttp/dispatch';
import {
  LOCK_JOB_NAME,
  LOCK_REQUEST_QUEUE,
  LockKeys,
  requestKeyOf,
  type LockRequest,
} from '@annex-p2phttp/locks';
import { primaryId } from '@annex-p2phttp/redis';
import { PrivateRedis } from '../support/redis';
import {
  annexStatus,
  contentLocation,
  freePort,
  keyOf,
  killAllTracked,
  makeServedRepo,
  Sandbox,
  spawnClusterApp,
  stopAndCollectLeftovers,
  untilReady,
  type RunningServer,
  type ServedRepo,
} from './harness';

const PREFIX = 'e2e-stale-jobs:';
const FILE = 'content.bin';
const OTHER = 'other.bin';

let sandbox: Sandbox;
let served: ServedRepo;
let redis: PrivateRedis;
let worker: RunningServer | undefined;
let lockService: RunningServer | undefined;
let inspect: Redis;
let queue: Queue | undefined;
let events: QueueEvents | undefined;

beforeAll(async () => {
  sandbox = await Sandbox.create('cluster-stale-jobs');
  served = await makeServedRepo(sandbox, sandbox.path('served'), [
    { path: FILE, size: 3000 },
    { path: OTHER, size: 3000 },
  ]);
  redis = await PrivateRedis.start();
  inspect = new Redis(redis.url);
});

afterAll(async () => {
  try {
    await Promise.allSettled([queue?.close(), events?.close()]);
    inspect?.disconnect();
    const { leftovers } = await stopAndCollectLeftovers([worker, lockService], [sandbox.root]);
    expect(leftovers, 'git-annex-shell processes left running').toEqual([]);
  } finally {
    killAllTracked();
    await redis?.stop();
    await sandbox?.remove();
  }
});

describe('a job queued on an earlier Redis primary', () => {
  it('is failed as unavailable and not run; the same job queued now runs', async () => {
    const port = await freePort();
    const context = { sandbox, repo: served, redisUrl: redis.url, prefix: PREFIX };
    worker = spawnClusterApp(
      context,
      'proxy-worker',
      [
        '--repo',
        served.dir,
        '--bind',
        '127.0.0.1',
        '--data-port',
        String(port),
        '--worker-group',
        'stale',
      ],
      port,
    );
    await untilReady(worker, 'proxy worker');
    const keys = new ClusterKeys(PREFIX);
    const name = queueOf('stale', DEFAULT_SHARDS, served.uuid);
    queue = new Queue(name, { connection: inspect, prefix: keys.bullPrefix });
    events = new QueueEvents(name, {
      connection: { host: '127.0.0.1', port: redis.port },
      prefix: keys.bullPrefix,
    });
    await events.waitUntilReady();
    const key = keyOf(served, FILE);
    const remove = (primary: string): JobPayload =>
      encodePayload({
        op: 'remove',
        target: {
          serverUuid: served.uuid,
          clientUuid: randomUUID(),
          bypass: [],
          version: 4,
          mode: 'full',
        },
        key,
        primary,
      });

    const current = await primaryId(inspect);
    expect(current).toMatch(/^[0-9a-f]{40}$/);
    const earlier = current.replace(/^./, (c) => (c === '0' ? '1' : '0'));
    const stale = await queue.add('remove', remove(earlier), { jobId: randomUUID(), attempts: 1 });
    const failure = await stale.waitUntilFinished(events, 30_000).then(
      () => 'completed',
      (error: Error) => error.message,
    );
    expect(failure).toMatch(/^DISPATCH_UNAVAILABLE: queued on an earlier Redis primary/);
    expect(await contentLocation(served, key), 'the content is still there').toBeDefined();
    const metrics = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text());
    expect(metrics).toMatch(/^annex_p2phttp_queue_jobs_stale_total\{[^}]*\} 1$/m);

    const fresh = await queue.add('remove', remove(current), { jobId: randomUUID(), attempts: 1 });
    expect(await fresh.waitUntilFinished(events, 30_000)).toMatchObject({
      op: 'remove',
      ok: true,
    });
    expect(await contentLocation(served, key), 'the fresh job removed it').toBeUndefined();
  });

  it('a lock request queued on another primary is refused by the lock-service', async () => {
    const port = await freePort();
    const context = { sandbox, repo: served, redisUrl: redis.url, prefix: PREFIX };
    lockService = spawnClusterApp(
      context,
      'lock-service',
      ['--repo', served.dir, '--health-port', String(port)],
      port,
    );
    await untilReady(lockService, 'lock-service');
    const keys = new LockKeys(PREFIX);
    const requests = new Queue(LOCK_REQUEST_QUEUE, {
      connection: inspect,
      prefix: keys.bullPrefix,
    });
    const replies = new QueueEvents(LOCK_REQUEST_QUEUE, {
      connection: { host: '127.0.0.1', port: redis.port },
      prefix: keys.bullPrefix,
    });
    try {
      await replies.waitUntilReady();
      const current = await primaryId(inspect);
      const earlier = current.replace(/^./, (c) => (c === '0' ? '1' : '0'));
      const lockid = randomUUID();
      const request: LockRequest = {
        lockid,
        serverUuid: served.uuid,
        key: requestKeyOf(keyOf(served, OTHER)),
        clientUuid: randomUUID(),
        bypass: [],
        version: 4,
        mode: 'full',
        ttlMs: 60_000,
        primary: earlier,
      };
      const job = await requests.add(LOCK_JOB_NAME, request, { jobId: lockid, attempts: 1 });
      const outcome = await job.waitUntilFinished(replies, 30_000).then(
        (reply: unknown) => `answered ${JSON.stringify(reply)}`,
        (error: Error) => error.message,
      );
      expect(outcome).toMatch(/queued on an earlier Redis primary/);
      const metrics = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text());
      expect(metrics).toMatch(/^annex_p2phttp_queue_jobs_stale_total\{[^}]*\} 1$/m);
      // git-annex holds no lock for it: the content can be dropped.
      const drop = await annexStatus(served, ['drop', '--force', OTHER]);
      expect(drop.code, drop.stderr).toBe(0);
    } finally {
      await Promise.allSettled([requests.close(), replies.close()]);
    }
  });
});
