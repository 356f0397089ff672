/**
 * Retention locks across a restart of the embedded server (DESIGN.md "Locks"): a lock a client
 * holds (keeplocked open, or ended without `{"unlock":true}` less than its ttl ago) survives the
 * server's SIGTERM and SIGKILL. After the restart a remove through the server answers
 * `{"removed":false}`, and git-annex itself refuses a `git annex drop --force` in the served
 * repository; `{"unlock":true}` through the restarted server still unlocks at once, and a lock
 * whose ttl (`--lock-ttl`) passed is gone.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectJson, expectLocked, P2PApi } from './api';
import {
  annexStatus,
  contentLocation,
  keyOf,
  killAllTracked,
  liveAnnexShells,
  makeServedRepo,
  pollUntil,
  reportServerOutputOnFailure,
  Sandbox,
  startServer,
  type RunningServer,
  type ServedRepo,
} from './harness';

const FILES = ['held-term', 'held-kill', 'ended-kill', 'expiring'].map((n) => `${n}.bin`);
/** A ttl short enough to see a lock expire, long enough for every step before it. */
const SHORT_TTL_S = 8;

let sandbox: Sandbox;
let served: ServedRepo;
let server: RunningServer | undefined;
let api: P2PApi;

reportServerOutputOnFailure(() => [server]);

beforeAll(async () => {
  sandbox = await Sandbox.create('lock-restart');
  served = await makeServedRepo(
    sandbox,
    sandbox.path('served'),
    FILES.map((p, i) => ({ path: p, size: 3000 + i })),
  );
  await mkdir(sandbox.path('originals'));
  for (const file of FILES) {
    await writeFile(sandbox.path('originals', file), await readFile(path.join(served.dir, file)));
  }
});

afterAll(async () => {
  try {
    await server?.stop();
  } finally {
    killAllTracked();
    await sandbox?.remove();
  }
});

const key = (file: string): string => keyOf(served, file);

async function start(extraArgs: readonly string[] = []): Promise<void> {
  server = await startServer({ sandbox, repo: served, auth: ['--wideopen'], extraArgs });
  api = new P2PApi(server.port, served.uuid);
}

/** Ends the server by `signal` and waits until it and every session it started are gone. */
async function end(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
  const running = server;
  if (!running) {
    throw new Error('no server running');
  }
  if (signal === 'SIGTERM') {
    expect((await running.stop()).forced, 'server ignored SIGTERM').toBe(false);
  } else {
    process.kill(running.pid, 'SIGKILL');
    await running.waitExit();
  }
  server = undefined;
  await pollUntil('the sessions of the ended server to be gone', async () =>
    (await liveAnnexShells([sandbox.root])).length === 0 ? true : undefined,
  );
}

/** Both the server and git-annex itself refuse to remove the content. */
async function expectProtected(file: string): Promise<void> {
  expectJson(await api.remove(key(file)), 200, { removed: false, plusuuids: [] });
  const drop = await annexStatus(served, ['drop', '--force', file]);
  expect(drop.code, `git annex drop --force ${file} must be refused`).not.toBe(0);
  expect(await contentLocation(served, key(file)), `${file} must still be there`).toBeDefined();
}

async function expectRemovable(file: string): Promise<void> {
  expectJson(await api.remove(key(file)), 200, { removed: true, plusuuids: [] });
  const content = await readFile(sandbox.path('originals', file));
  expectJson(await api.put(key(file), content), 200, { stored: true, plusuuids: [] });
}

describe('a lock held with keeplocked open', () => {
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    it(`survives ${signal} of the server; unlock through the restarted server ends it`, async () => {
      const file = signal === 'SIGTERM' ? 'held-term.bin' : 'held-kill.bin';
      await start();
      const lockid = expectLocked(await api.lockcontent(key(file)));
      const session = api.keeplocked(lockid);
      await session.written();
      expectJson(await api.checkpresent(key(file)), 200, { present: true });
      await end(signal);
      session.disconnect();
      await start();
      await expectProtected(file);
      expectJson(await api.unlock(lockid), 200, { locked: false });
      await expectRemovable(file);
      await end('SIGTERM');
    });
  }
});

describe('a lock whose keeplocked ended without unlocking', () => {
  it('survives SIGKILL of the server', async () => {
    const file = 'ended-kill.bin';
    await start();
    const lockid = expectLocked(await api.lockcontent(key(file)));
    const session = api.keeplocked(lockid);
    await session.written();
    expectJson(await api.checkpresent(key(file)), 200, { present: true });
    session.disconnect();
    expectJson(await api.remove(key(file)), 200, { removed: false, plusuuids: [] });
    await end('SIGKILL');
    await start();
    await expectProtected(file);
    expectJson(await api.unlock(lockid), 200, { locked: false });
    await expectRemovable(file);
    await end('SIGTERM');
  });
});

describe('a lock that expires', () => {
  it(`is gone once its --lock-ttl passed, across a SIGKILL`, async () => {
    const file = 'expiring.bin';
    const ttl = ['--lock-ttl', String(SHORT_TTL_S)];
    await start(ttl);
    expectLocked(await api.lockcontent(key(file)));
    await end('SIGKILL');
    await start(ttl);
    await expectProtected(file);
    // The lock was taken less than a ttl ago; it ends within the ttl, and git-annex lets go too.
    await pollUntil(
      'the expired lock to let the content go',
      async () => {
        const drop = await annexStatus(served, ['drop', '--force', file]);
        return drop.code === 0 ? true : undefined;
      },
      { timeoutMs: 4 * SHORT_TTL_S * 1000, intervalMs: 500 },
    );
    expect(await contentLocation(served, key(file))).toBeUndefined();
    const content = await readFile(sandbox.path('originals', file));
    expectJson(await api.put(key(file), content), 200, { stored: true, plusuuids: [] });
    await end('SIGTERM');
  });
});

describe('after the restarts', () => {
  it('leaves no git-annex-shell and a sound repository', async () => {
    await start();
    await end('SIGTERM');
    expect(await liveAnnexShells([sandbox.root])).toEqual([]);
    const fsck = await annexStatus(served, ['fsck', '-q']);
    expect(fsck.code, fsck.stderr).toBe(0);
  });
});
