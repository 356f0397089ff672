/**
 * The real git-annex client against the server, over annex+http only: the clone's origin url
 * points nowhere, so every transfer below goes through the HTTP API (PROTOCOL.md §5).
 */
import { readFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectJson, jsonBody, P2PApi } from './api';
import {
  addAndCommit,
  annex,
  annexStatus,
  annexUrlFor,
  contentLocation,
  fileDigest,
  freePort,
  keyOf,
  killAllTracked,
  lookupKey,
  makeClientClone,
  makeObserverClone,
  makeServedRepo,
  partialUploadSize,
  pollUntil,
  reportServerOutputOnFailure,
  RunningServer,
  Sandbox,
  startServer,
  stopAndCollectLeftovers,
  uploadInProgress,
  whereisFromBranch,
  type ClientRepo,
  type FileSpec,
  type ServedRepo,
} from './harness';

const MiB = 1 << 20;
const MANY = Array.from({ length: 200 }, (_, i) => `many/f${String(i).padStart(3, '0')}.bin`);
const UNICODE_NAME = 'dir with space/naïve café.bin';

const servedFiles: FileSpec[] = [
  { path: 'one.bin', size: 4096 },
  { path: 'empty.bin', size: 0 },
  { path: 'one-byte.bin', content: Buffer.from([0xa5]) },
  { path: 'mebibyte.bin', size: MiB },
  { path: 'big-100mb.bin', size: 100_000_000 },
  { path: UNICODE_NAME, size: 3000 },
  { path: 'lock-for-local-drop.bin', size: 2048 },
  { path: 'fsck-from-origin.bin', size: 5000 },
  ...MANY.map((p, i) => ({ path: p, size: 100 + i * 7 })),
];

let sandbox: Sandbox;
let served: ServedRepo;
let client: ClientRepo;
let server: RunningServer | undefined;
let api: P2PApi;

reportServerOutputOnFailure(() => [server]);

/** The client's file and the served repo's file have the same bytes. */
async function expectSameBytes(clientFile: string, servedFile = clientFile): Promise<void> {
  const got = await fileDigest(path.join(client.dir, clientFile));
  const want = await fileDigest(path.join(served.dir, servedFile));
  expect(got, `${clientFile} in the client`).toEqual(want);
}

/** The served repo holds `key`, with the bytes of `clientFile`, and fsck of that key passes. */
async function expectServedHas(key: string, clientFile: string): Promise<void> {
  const location = await contentLocation(served, key);
  expect(location, `served repo should have ${key}`).toBeDefined();
  expect(await fileDigest(location ?? '')).toEqual(
    await fileDigest(path.join(client.dir, clientFile)),
  );
  const whereis = await annex(served, ['whereis', '--json', '--key', key]);
  const here = (JSON.parse(whereis.stdout) as { whereis: { uuid: string; here: boolean }[] })
    .whereis;
  expect(here).toContainEqual(expect.objectContaining({ uuid: served.uuid, here: true }));
  await annex(served, ['fsck', '--key', key]);
}

async function clientHasContent(file: string): Promise<boolean> {
  return (await contentLocation(client, await lookupKey(client, file))) !== undefined;
}

beforeAll(async () => {
  sandbox = await Sandbox.create('client-flows');
  served = await makeServedRepo(sandbox, sandbox.path('deep', 'served'), servedFiles);
  const port = await freePort();
  client = await makeClientClone(sandbox, served, sandbox.path('client'), annexUrlFor(port));
  // Nothing listens on the annexUrl yet: if get worked now, the clone would be reaching the
  // served repository some other way than HTTP, and every test below would prove nothing.
  const offline = await annexStatus(client, ['get', 'one.bin']);
  expect(
    offline.code,
    `get without a server must fail:\n${offline.stdout}${offline.stderr}`,
  ).not.toBe(0);
  server = await startServer({ sandbox, repo: served, auth: ['--wideopen'], port });
  api = new P2PApi(server.port, served.uuid, client.uuid);
});

afterAll(async () => {
  try {
    await server?.stop();
  } finally {
    killAllTracked();
    await sandbox?.remove();
  }
});

describe('git-annex client over annex+http', () => {
  it('get of one file', async () => {
    await annex(client, ['get', 'one.bin']);
    await expectSameBytes('one.bin');
    // the served repo is untouched by a download
    await annex(served, ['fsck', '--key', keyOf(served, 'one.bin')]);
  });

  it('get -J8 of 200 small files', async () => {
    const started = Date.now();
    await annex(client, ['get', '-J8', '--', 'many']);
    const elapsed = Date.now() - started;
    console.log(`[e2e ${server?.kind}] git annex get -J8 of ${MANY.length} files: ${elapsed} ms`);
    for (const file of MANY) {
      const got = await readFile(path.join(client.dir, file));
      const want = await readFile(path.join(served.dir, file));
      expect(got.equals(want), `${file} differs`).toBe(true);
    }
  });

  it('get of 0-byte, 1-byte and 1 MiB files', async () => {
    const files = ['empty.bin', 'one-byte.bin', 'mebibyte.bin'];
    await annex(client, ['get', '--', ...files]);
    for (const file of files) {
      await expectSameBytes(file);
    }
    expect((await fileDigest(path.join(client.dir, 'empty.bin'))).size).toBe(0);
    expect((await fileDigest(path.join(client.dir, 'one-byte.bin'))).size).toBe(1);
  });

  it('get of a name with spaces and non-ASCII characters', async () => {
    await annex(client, ['get', '--', UNICODE_NAME]);
    await expectSameBytes(UNICODE_NAME);
  });

  it('copy --to origin', async () => {
    await addAndCommit(client, [{ path: 'up/copied.bin', size: 65_536 }]);
    await annex(client, ['copy', '--to', 'origin', 'up/copied.bin']);
    await expectServedHas(await lookupKey(client, 'up/copied.bin'), 'up/copied.bin');
    expect(await clientHasContent('up/copied.bin')).toBe(true);
  });

  it('copy --to origin of 0-byte and 1-byte files and a non-ASCII name', async () => {
    const files = ['up/empty-up.bin', 'up/one-up.bin', 'up/dir with space/ünï ☃.bin'];
    await addAndCommit(client, [
      { path: files[0] ?? '', content: Buffer.alloc(0) },
      { path: files[1] ?? '', content: Buffer.from('z') },
      { path: files[2] ?? '', size: 777 },
    ]);
    await annex(client, ['copy', '--to', 'origin', '--', ...files]);
    for (const file of files) {
      await expectServedHas(await lookupKey(client, file), file);
    }
  });

  it('move --to origin', async () => {
    await addAndCommit(client, [{ path: 'up/moved.bin', size: 12_345 }]);
    const key = await lookupKey(client, 'up/moved.bin');
    const before = await fileDigest(path.join(client.dir, 'up/moved.bin'));
    await annex(client, ['move', '--to', 'origin', 'up/moved.bin']);
    expect(await contentLocation(client, key)).toBeUndefined();
    const location = await contentLocation(served, key);
    expect(location).toBeDefined();
    expect(await fileDigest(location ?? '')).toEqual(before);
    await annex(served, ['fsck', '--key', key]);
  });

  it('drop --from origin while the client has a copy', async () => {
    await addAndCommit(client, [{ path: 'up/dropped.bin', size: 4321 }]);
    const key = await lookupKey(client, 'up/dropped.bin');
    await annex(client, ['copy', '--to', 'origin', 'up/dropped.bin']);
    expect(await contentLocation(served, key)).toBeDefined();
    await annex(client, ['drop', '--from', 'origin', 'up/dropped.bin']);
    expect(await contentLocation(served, key)).toBeUndefined();
    expect(await clientHasContent('up/dropped.bin')).toBe(true);
    expectJson(await api.checkpresent(key), 200, { present: false });
  });

  it('local drop that relies on the server copy (lockcontent + keeplocked)', async () => {
    const file = 'lock-for-local-drop.bin';
    const key = keyOf(served, file);
    await annex(client, ['get', file]);
    await expectSameBytes(file);
    const drop = await annex(client, ['drop', file]);
    expect(drop.stdout).toMatch(/locking origin/);
    expect(await clientHasContent(file)).toBe(false);
    expect(await contentLocation(served, key)).toBeDefined();
    // The client sent {"unlock":true} before exiting but does not wait for the answer, so the
    // server may release a moment later: poll until the API may remove the content (then put it
    // back, so the served repo stays complete).
    const content = await readFile(path.join(served.dir, file));
    const removed = await pollUntil('the drop lock to be released', async () => {
      const result = await api.remove(key);
      return jsonBody(result).removed === true ? result : undefined;
    });
    expectJson(removed, 200, { removed: true, plusuuids: [] });
    expectJson(await api.put(key, content), 200, { stored: true, plusuuids: [] });
    await annex(served, ['fsck', '--key', key]);
  });

  it('fsck --from origin: passes, then notices content gone behind its back', async () => {
    const file = 'fsck-from-origin.bin';
    await annex(client, ['fsck', '--from', 'origin', '--', 'one.bin', 'mebibyte.bin', file]);
    // an uploaded file, removed from the served repo directly
    await addAndCommit(client, [{ path: 'up/fsck-gone.bin', size: 999 }]);
    const key = await lookupKey(client, 'up/fsck-gone.bin');
    await annex(client, ['copy', '--to', 'origin', 'up/fsck-gone.bin']);
    await annex(client, ['fsck', '--from', 'origin', 'up/fsck-gone.bin']);
    await annex(served, ['drop', '--force', '--key', key]);
    const after = await annexStatus(client, ['fsck', '--from', 'origin', 'up/fsck-gone.bin']);
    expect(after.code, `${after.stdout}${after.stderr}`).not.toBe(0);
  });

  it('100 MB: get and copy --to origin', async () => {
    await annex(client, ['get', 'big-100mb.bin'], 240_000);
    await expectSameBytes('big-100mb.bin');
    await addAndCommit(client, [{ path: 'up/big-100mb-up.bin', size: 100_000_000 }]);
    await annex(client, ['copy', '--to', 'origin', 'up/big-100mb-up.bin'], 240_000);
    await expectServedHas(await lookupKey(client, 'up/big-100mb-up.bin'), 'up/big-100mb-up.bin');
  });

  it('an upload killed mid-transfer resumes from the partial offset', async () => {
    const file = 'up/interrupted-200mb.bin';
    const size = 200_000_000;
    await addAndCommit(client, [{ path: file, size }]);
    const key = await lookupKey(client, file);
    const copy = spawn('git-annex', ['copy', '--to', 'origin', file], {
      cwd: client.dir,
      env: client.env,
      detached: true,
      stdio: 'ignore',
    });
    let exited = false;
    const exit = new Promise<void>((resolve) =>
      copy.once('exit', () => {
        exited = true;
        resolve();
      }),
    );
    try {
      // Kill as soon as the served repo's partial file passes 4 MiB.
      await pollUntil(
        'the upload to reach 4 MiB',
        async () => {
          if (exited) {
            throw new Error('git annex copy ended before it could be interrupted');
          }
          const partial = await partialUploadSize(served, key);
          return partial !== undefined && partial > 4 * MiB ? true : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 5 },
      );
    } finally {
      if (copy.pid !== undefined && !exited) {
        process.kill(-copy.pid, 'SIGKILL');
      }
      await exit;
    }
    // Wait until the server side has given up on the broken upload (git-annex's transfer info
    // file for it disappears); a putoffset racing an in-flight put is not what is tested here.
    await pollUntil('the server to finish the aborted put', async () =>
      (await uploadInProgress(served, key)) ? undefined : true,
    );
    expect(await contentLocation(served, key)).toBeUndefined();
    const partial = await partialUploadSize(served, key);
    const offset = await api.putoffset(key);
    expectJson(offset, 200, { offset: expect.any(Number) as unknown });
    const reported = JSON.parse(offset.body.toString('utf8')) as { offset: number };
    expect(reported.offset).toBeGreaterThan(0);
    expect(reported.offset).toBeLessThan(size);
    expect(reported.offset).toBe(partial);

    await annex(client, ['copy', '--to', 'origin', file], 240_000);
    await expectServedHas(key, file);
    expect(await partialUploadSize(served, key)).toBeUndefined();
  });
});

describe("location logs on the served repository's git-annex branch", () => {
  it('show a copy --to origin, then a drop --from origin, about a second later', async () => {
    const observer = await makeObserverClone(sandbox, served, sandbox.path('observer'));
    const file = 'up/logged.bin';
    await addAndCommit(client, [{ path: file, size: 20_000 }]);
    const key = await lookupKey(client, file);
    const seen = (want: boolean) =>
      pollUntil(
        want ? 'the copy on the branch' : 'the drop on the branch',
        async () =>
          (await whereisFromBranch(observer, served, key)).includes(served.uuid) === want
            ? true
            : undefined,
        { timeoutMs: 20_000, intervalMs: 250 },
      );
    await annex(client, ['copy', '--to', 'origin', '--', file]);
    await seen(true);
    await annex(client, ['drop', '--from', 'origin', '--', file]);
    await seen(false);
  });
});

describe('after the client flows', () => {
  it('the server stops on SIGTERM, leaves no git-annex-shell, and the served repo is sound', async () => {
    if (server === undefined) {
      throw new Error('server never started');
    }
    const { stops, leftovers } = await stopAndCollectLeftovers([server], [sandbox.root]);
    expect(leftovers, 'git-annex-shell processes left running').toEqual([]);
    expect(stops[0]?.forced, 'server ignored SIGTERM for 20 s').toBe(false);
    await annex(served, ['fsck', '-q'], 240_000);
    await annex(served, ['fsck', '-q', '--all', '--in', 'here'], 240_000);
  });
});
