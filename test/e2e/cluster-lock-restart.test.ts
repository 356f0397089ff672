/**
 * A retention lock through a cluster-mode gateway under a double fault, each part a separate
 * `annex-p2phttp` process: with keeplocked open at the gateway, the lock-service is SIGKILLed,
 * Redis restarts empty, and a new lock-service starts. The lock must hold throughout: a remove
 * through the gateway answers `{"removed":false}`, git-annex itself refuses `git annex drop
 * --force` in the repository, the new lock-service ends up holding the lock (the gateway recorded
 * it again), and `{"unlock":true}` then releases it.
 *
 * And a lock released with `{"unlock":true}` stays released through the next Redis restart: the
 * keeplocked request that unlocked it must not write its record again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PrivateRedis } from '../support/redis';
import { expectJson, expectLocked, httpRequest, P2PApi } from './api';
import {
  annexStatus,
  contentLocation,
  freePort,
  keyOf,
  killAllTracked,
  makeServedRepo,
  pollUntil,
  Sandbox,
  spawnClusterApp,
  stopAndCollectLeftovers,
  untilReady,
  type RunningServer,
  type ServedRepo,
} from './harness';

const PREFIX = 'e2e-cluster-lock-restart:';
const FILE = 'kept.bin';
const OTHER = 'released.bin';

let sandbox: Sandbox;
let served: ServedRepo;
let redis: PrivateRedis;
const everything: RunningServer[] = [];

function spawnApp(
  command: 'gateway' | 'proxy-worker' | 'lock-service',
  options: string[],
  port: number,
): RunningServer {
  const context = { sandbox, repo: served, redisUrl: redis.url, prefix: PREFIX };
  const app = spawnClusterApp(context, command, options, port);
  everything.push(app);
  return app;
}

async function startLockService(): Promise<RunningServer> {
  const port = await freePort();
  const service = spawnApp(
    'lock-service',
    ['--repo', served.dir, '--health-port', String(port)],
    port,
  );
  await untilReady(service, `lock-service on ${port}`);
  return service;
}

/** Live locks a lock-service reports in its metrics. */
async function heldLocks(service: RunningServer): Promise<number> {
  const result = await httpRequest(service.port, '/metrics', { method: 'GET' });
  const match = /^annex_p2phttp_locks\{[^}]*\} (\d+)/m.exec(result.body.toString('utf8'));
  return Number(match?.[1] ?? -1);
}

beforeAll(async () => {
  sandbox = await Sandbox.create('cluster-lock-restart');
  served = await makeServedRepo(sandbox, sandbox.path('served'), [
    { path: FILE, size: 5000 },
    { path: OTHER, size: 5000 },
  ]);
  redis = await PrivateRedis.start();
});

afterAll(async () => {
  try {
    const { leftovers } = await stopAndCollectLeftovers(everything, [sandbox.root]);
    expect(leftovers, 'git-annex-shell processes left running').toEqual([]);
  } finally {
    killAllTracked();
    await redis?.stop();
    await sandbox?.remove();
  }
});

describe('a lock kept through a cluster gateway', () => {
  it('holds through a lock-service SIGKILL and an empty Redis restart; unlock then releases it', async () => {
    const workerPort = await freePort();
    const worker = spawnApp(
      'proxy-worker',
      ['--repo', served.dir, '--bind', '127.0.0.1', '--data-port', String(workerPort)],
      workerPort,
    );
    await untilReady(worker, 'proxy worker');
    const first = await startLockService();
    const gatewayPort = await freePort();
    // A short lock ttl, so that the gateway heartbeats every 2 s.
    const gateway = spawnApp(
      'gateway',
      ['--bind', '127.0.0.1', '--port', String(gatewayPort), '--wideopen', '--lock-ttl', '8'],
      gatewayPort,
    );
    await untilReady(gateway, 'gateway');
    const api = new P2PApi(gatewayPort, served.uuid);
    const key = keyOf(served, FILE);

    const lockid = await pollUntil('a lock', async () => {
      const result = await api.lockcontent(key);
      return result.status === 200 ? expectLocked(result) : undefined;
    });
    const session = api.keeplocked(lockid);
    await session.written();
    expectJson(await api.checkpresent(key), 200, { present: true });
    expectJson(await api.remove(key), 200, { removed: false, plusuuids: [] });

    process.kill(first.pid, 'SIGKILL');
    await first.waitExit();
    await redis.stop('SIGKILL');
    await redis.restart();
    const second = await startLockService();

    // Once the worker advertised again, the gateway answers; the lock must hold from the start.
    const removed = await pollUntil(
      'a remove answered after the restarts',
      async () => {
        const result = await api.remove(key);
        return result.status === 200 ? result : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    expectJson(removed, 200, { removed: false, plusuuids: [] });
    await pollUntil('the new lock-service holds the lock', async () =>
      (await heldLocks(second)) === 1 ? true : undefined,
    );
    expectJson(await api.remove(key), 200, { removed: false, plusuuids: [] });
    const drop = await annexStatus(served, ['drop', '--force', FILE]);
    expect(drop.code, 'git annex drop --force must be refused').not.toBe(0);
    expect(await contentLocation(served, key)).toBeDefined();

    expectJson(await session.unlock(), 200, { locked: false });
    await pollUntil('the lock-service released the lock', async () =>
      (await heldLocks(second)) === 0 ? true : undefined,
    );
    expectJson(await api.remove(key), 200, { removed: true, plusuuids: [] });
    expect(await contentLocation(served, key)).toBeUndefined();
  }, 180_000);

  it('a lock unlocked through keeplocked stays unlocked after an empty Redis restart', async () => {
    const gatewayPort = await freePort();
    const gateway = spawnApp(
      'gateway',
      ['--bind', '127.0.0.1', '--port', String(gatewayPort), '--wideopen', '--lock-ttl', '8'],
      gatewayPort,
    );
    await untilReady(gateway, 'gateway');
    const api = new P2PApi(gatewayPort, served.uuid);
    const key = keyOf(served, OTHER);
    const lockid = await pollUntil('a lock', async () => {
      const result = await api.lockcontent(key);
      return result.status === 200 ? expectLocked(result) : undefined;
    });
    const session = api.keeplocked(lockid);
    await session.written();
    expectJson(await session.unlock(), 200, { locked: false });

    await redis.restart();
    // The gateway heartbeats kept locks every 2 s; give a leftover keeper time to act.
    await new Promise((resolve) => setTimeout(resolve, 5000));
    const removed = await pollUntil(
      'a remove answered after the restart',
      async () => {
        const result = await api.remove(key);
        return result.status === 200 ? result : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    expectJson(removed, 200, { removed: true, plusuuids: [] });
  }, 120_000);
});
