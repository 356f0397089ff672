/** The RetentionLocks contract for the embedded server's LocalRetentionLocks. */
import { afterAll, beforeAll } from 'vitest';
import { OperationExecutor } from '@annex-p2phttp/ops';
import { LocalRetentionLocks, MemoryLockStore } from '@annex-p2phttp/locks';
import { LocalShellConnector, SessionPool } from '@annex-p2phttp/p2p';
import { makeServedRepo, manyFiles, Sandbox, type ServedRepo } from '../../../test/support/repos';
import { CONTRACT_FILES, retentionLocksContract, slowToRelease } from './retention-locks.contract';

let sandbox: Sandbox | undefined;
let repo: ServedRepo;

beforeAll(async () => {
  sandbox = await Sandbox.create('locks-local');
  repo = await makeServedRepo(sandbox, sandbox.path('repo'), manyFiles('f', CONTRACT_FILES, 64));
}, 120_000);

afterAll(async () => {
  await sandbox?.remove();
});

retentionLocksContract('LocalRetentionLocks', {
  repo: () => repo,
  open: ({ lockedFiles, ttlMs }) => {
    // What the embedded server does: the operation executor takes the repository-side locks.
    const dispatcher = new OperationExecutor(
      new SessionPool({ connector: new LocalShellConnector({}), maxActive: 4, maxIdle: 0 }),
    );
    const locks = new LocalRetentionLocks(new MemoryLockStore(), slowToRelease(dispatcher), {
      lockedFiles,
      ttlMs,
    });
    return Promise.resolve({
      locks,
      close: async () => {
        await locks.close();
        await dispatcher.close(0);
      },
    });
  },
});
