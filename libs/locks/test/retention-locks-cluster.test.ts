/**
 * The RetentionLocks contract for cluster mode: a gateway's ClusterRetentionLocks asking a
 * ClusterLockHolder (wired as the lock-service wires it: lock requests from the BullMQ queue,
 * unlocks over pub/sub) through a private redis-server.
 */
import { randomUUID } from 'node:crypto';
import { Worker } from 'bullmq';
import { afterAll, beforeAll } from 'vitest';
import { RepositoryRegistry } from '@annex-p2phttp/ops';
import { OperationExecutor } from '@annex-p2phttp/ops';
import { subscription } from '@annex-p2phttp/redis';
import {
  closeRedis,
  ClusterLockHolder,
  ClusterRetentionLocks,
  LOCK_REQUEST_QUEUE,
  openRedis,
  RedisLockStore,
  whenReady,
  type LockReply,
  type LockRequest,
} from '@annex-p2phttp/locks';
import { LocalShellConnector, SessionPool } from '@annex-p2phttp/p2p';
import { PrivateRedis } from '../../../test/support/redis';
import { makeServedRepo, manyFiles, Sandbox, type ServedRepo } from '../../../test/support/repos';
import { CONTRACT_FILES, retentionLocksContract, slowToRelease } from './retention-locks.contract';

let sandbox: Sandbox | undefined;
let repo: ServedRepo;
let redis: PrivateRedis | undefined;

beforeAll(async () => {
  redis = await PrivateRedis.start();
  sandbox = await Sandbox.create('locks-cluster');
  repo = await makeServedRepo(sandbox, sandbox.path('repo'), manyFiles('f', CONTRACT_FILES, 64));
}, 120_000);

afterAll(async () => {
  await redis?.stop();
  await sandbox?.remove();
});

retentionLocksContract('ClusterRetentionLocks with a ClusterLockHolder', {
  repo: () => repo,
  open: async ({ lockedFiles, ttlMs }) => {
    const url = redis!.url;
    // Each fixture its own key prefix: records and queues of earlier cases stay apart.
    const prefix = `contract-${randomUUID().slice(0, 8)}:`;
    const gateway = new ClusterRetentionLocks({ redisUrl: url, prefix, lockedFiles, ttlMs });
    await gateway.ready();

    const command = openRedis(url, 'command');
    const blocking = openRedis(url, 'blocking');
    await whenReady(command);
    const store = new RedisLockStore(command, prefix);
    const dispatcher = new OperationExecutor(
      new SessionPool({ connector: new LocalShellConnector({}), maxActive: 1, maxIdle: 0 }),
    );
    const registry = new RepositoryRegistry({
      repos: [repo.dir],
      directories: [],
      log: () => undefined,
    });
    await registry.init();
    const holder = new ClusterLockHolder({
      store,
      locker: slowToRelease(dispatcher),
      registry,
      holder: `contract-holder-${randomUUID().slice(0, 8)}`,
      sweepIntervalMs: 100,
      log: () => undefined,
    });
    const unlocks = await subscription(
      url,
      store.keys.unlockChannel,
      (lockid) => void holder.unlocked(lockid),
    );
    await holder.start();
    const worker = new Worker<LockRequest, LockReply>(
      LOCK_REQUEST_QUEUE,
      (job) => holder.handle(job.data),
      { connection: blocking, prefix: store.keys.bullPrefix, drainDelay: 1 },
    );
    worker.on('error', () => undefined);
    return {
      locks: gateway,
      close: async () => {
        await gateway.close();
        await worker.close();
        await holder.close();
        await dispatcher.close(0);
        registry.close();
        await Promise.all([command, blocking, unlocks].map((connection) => closeRedis(connection)));
      },
    };
  },
});
