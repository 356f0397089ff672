/**
 * lockcontent / keeplocked through HTTP (PROTOCOL.md §2.5) with the project's rules: a lock
 * blocks removal until `{"unlock":true}`; `--lockedfiles N` caps live locks; a keeplocked whose
 * client vanishes keeps the lock until it expires (git-annex 10.20250416 unlocks at once, and
 * hangs instead of answering a remove of content it has locked itself, §6.1).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectJson, expectLocked, jsonBody, P2PApi } from './api';
import {
  annex,
  contentLocation,
  delay,
  keyOf,
  killAllTracked,
  makeServedRepo,
  reportServerOutputOnFailure,
  RunningServer,
  Sandbox,
  startServer,
  stopAndCollectLeftovers,
  type StopResult,
  type ServedRepo,
} from './harness';

const FILES = ['basic', 'refused', 'held', 'cap-a', 'cap-b', 'vanished'].map((n) => `${n}.bin`);

let sandbox: Sandbox;
let served: ServedRepo;
let server: RunningServer | undefined;
let capped: RunningServer | undefined;
let api: P2PApi;
let cappedStop: StopResult | undefined;

reportServerOutputOnFailure(() => [server, capped]);

beforeAll(async () => {
  sandbox = await Sandbox.create('locks');
  served = await makeServedRepo(
    sandbox,
    sandbox.path('served'),
    FILES.map((p, i) => ({ path: p, size: 2000 + i })),
  );
  server = await startServer({ sandbox, repo: served, auth: ['--wideopen'] });
  api = new P2PApi(server.port, served.uuid);
});

afterAll(async () => {
  try {
    await server?.stop();
    await capped?.stop();
  } finally {
    killAllTracked();
    await sandbox?.remove();
  }
});

const key = (file: string): string => keyOf(served, file);

async function expectContentKept(file: string): Promise<void> {
  expect(await contentLocation(served, key(file)), `${file} must still be there`).toBeDefined();
  expectJson(await api.checkpresent(key(file)), 200, { present: true });
}

/** Puts a removed file's content back so the served repo stays complete. */
async function putBack(file: string): Promise<void> {
  const content = await readFile(sandbox.path('originals', file));
  expectJson(await api.put(key(file), content), 200, { stored: true, plusuuids: [] });
}

describe('lockcontent and keeplocked', () => {
  beforeAll(async () => {
    // keep copies of the contents, to put back what the tests remove
    await mkdir(sandbox.path('originals'));
    for (const file of FILES) {
      await writeFile(sandbox.path('originals', file), await readFile(path.join(served.dir, file)));
    }
  });

  it('lockcontent → {"locked":true,"lockid"}; unlock → {"locked":false}; absent key → {"locked":false}', async () => {
    const lockid = expectLocked(await api.lockcontent(key('basic.bin')));
    expectJson(await api.unlock(lockid), 200, { locked: false });
    const absent = `SHA256E-s3--${'0'.repeat(64)}.bin`;
    expectJson(await api.lockcontent(absent), 200, { locked: false });
  });

  it('while locked, remove and remove-before answer removed:false and the content stays', async () => {
    const lockid = expectLocked(await api.lockcontent(key('refused.bin')));
    try {
      expectJson(await api.remove(key('refused.bin')), 200, { removed: false, plusuuids: [] });
      const now = jsonBody(await api.gettimestamp()).timestamp as number;
      expectJson(await api.removeBefore(key('refused.bin'), now + 300), 200, {
        removed: false,
        plusuuids: [],
      });
      await expectContentKept('refused.bin');
    } finally {
      expectJson(await api.unlock(lockid), 200, { locked: false });
    }
  });

  it('keeplocked held open keeps the lock; {"unlock":true} releases it and then remove works', async () => {
    const file = 'held.bin';
    const lockid = expectLocked(await api.lockcontent(key(file)));
    const session = api.keeplocked(lockid); // sends {"unlock":false}
    let answered = false;
    void session.response.then(() => (answered = true)).catch(() => undefined);
    session.sendKeepGoing();
    expectJson(await api.remove(key(file)), 200, { removed: false, plusuuids: [] });
    await expectContentKept(file);
    expect(answered, 'keeplocked must not answer before the unlock').toBe(false);

    expectJson(await session.unlock(), 200, { locked: false });
    expectJson(await api.remove(key(file)), 200, { removed: true, plusuuids: [] });
    expect(await contentLocation(served, key(file))).toBeUndefined();
    await putBack(file);
  });
});

describe('--lockedfiles 1', () => {
  let cappedApi: P2PApi;
  beforeAll(async () => {
    capped = await startServer({ sandbox, repo: served, auth: ['--wideopen'], lockedfiles: 1 });
    cappedApi = new P2PApi(capped.port, served.uuid);
  });
  afterAll(async () => {
    // its leftovers are looked for at the end, once no server serves the repository
    cappedStop = await capped?.stop();
  });

  it('a second lockcontent of another key answers {"locked":false} until the first is released', async () => {
    const first = expectLocked(await cappedApi.lockcontent(key('cap-a.bin')));
    try {
      expectJson(await cappedApi.lockcontent(key('cap-b.bin')), 200, { locked: false });
    } finally {
      expectJson(await cappedApi.unlock(first), 200, { locked: false });
    }
    const second = expectLocked(await cappedApi.lockcontent(key('cap-b.bin')));
    expectJson(await cappedApi.unlock(second), 200, { locked: false });
  });
});

describe('two clients locking one key', () => {
  it('both get a lock, with distinct lockids, and each releases its own', async () => {
    const first = expectLocked(await api.lockcontent(key('basic.bin')));
    const second = expectLocked(await api.lockcontent(key('basic.bin')));
    expect(second).not.toBe(first);
    expectJson(await api.unlock(first), 200, { locked: false });
    // the other lock still holds
    expectJson(await api.remove(key('basic.bin')), 200, { removed: false, plusuuids: [] });
    expectJson(await api.unlock(second), 200, { locked: false });
  });
});

describe('a keeplocked client that disconnects', () => {
  it('keeps the lock: remove is still refused after the disconnect', async () => {
    const file = 'vanished.bin';
    const lockid = expectLocked(await api.lockcontent(key(file)));
    const session = api.keeplocked(lockid);
    // keeplocked has no acknowledgment: make sure its bytes left, and give the server one more
    // round trip to read them before the client vanishes
    await session.written();
    expectJson(await api.checkpresent(key(file)), 200, { present: true });
    session.disconnect();
    expectJson(await api.remove(key(file)), 200, { removed: false, plusuuids: [] });
    // A negative cannot be polled for: give a server that would wrongly unlock on the disconnect
    // a moment to do so, then check again.
    await delay(1000);
    expectJson(await api.remove(key(file)), 200, { removed: false, plusuuids: [] });
    await expectContentKept(file);
  });
});

describe('after the lock tests', () => {
  it('the servers stop on SIGTERM, leave no git-annex-shell, and the served repo is sound', async () => {
    if (server === undefined) {
      throw new Error('server never started');
    }
    const { stops, leftovers } = await stopAndCollectLeftovers([server, capped], [sandbox.root]);
    expect(leftovers, 'git-annex-shell processes left running').toEqual([]);
    expect(stops[0]?.forced, 'server ignored SIGTERM for 20 s').toBe(false);
    expect(cappedStop?.forced ?? false, '--lockedfiles server ignored SIGTERM').toBe(false);
    await annex(served, ['fsck', '-q']);
    await annex(served, ['fsck', '-q', '--all', '--in', 'here']);
  });
});
