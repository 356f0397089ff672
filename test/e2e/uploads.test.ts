/**
 * Uploads whose client goes away mid-body: every byte that arrived before the body ended counts
 * for `putoffset`, and the resumed put sends only the rest. Runs against the server that
 * `E2E_SERVER` names (embedded or cluster).
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectJson, P2PApi } from './api';
import {
  contentLocation,
  makeServedRepo,
  reportServerOutputOnFailure,
  RunningServer,
  Sandbox,
  sha256Key,
  startServer,
  stopAndCollectLeftovers,
  type ServedRepo,
} from './harness';

const MIB = 1024 * 1024;

let sandbox: Sandbox;
let served: ServedRepo;
let server: RunningServer | undefined;
let api: P2PApi;

reportServerOutputOnFailure(() => [server]);

beforeAll(async () => {
  sandbox = await Sandbox.create('uploads');
  served = await makeServedRepo(sandbox, sandbox.path('served'), [{ path: 'a.txt', size: 10 }]);
  server = await startServer({ sandbox, repo: served, auth: ['--wideopen'] });
  api = new P2PApi(server.port, served.uuid);
});

afterAll(async () => {
  await stopAndCollectLeftovers([server], [served.dir]);
  await sandbox.remove();
});

describe('a body cut by the client', () => {
  it.each([
    [MIB, 0],
    [MIB, 1],
    [MIB, 100],
    [MIB, 65536],
    [MIB, 524288],
    [3 * MIB + 5, 2 * MIB + 3],
  ])('a put of %i bytes cut after %i bytes: putoffset reports exactly those', async (size, cut) => {
    const content = randomBytes(size);
    const key = sha256Key(content);
    const open = api.openPut(key, content, cut);
    await open.written();
    // Gone at once: the bytes may still be on their way through the server.
    open.destroy();
    await open.response;
    // putoffset waits for the cut upload to be done with (one upload of a key at a time).
    expectJson(await api.putoffset(key), 200, { offset: cut });
    expect(await contentLocation(served, key)).toBeUndefined();
    const rest = await api.put(key, content.subarray(cut), { offset: cut });
    expectJson(rest, 200, { stored: true, plusuuids: [] });
    const file = await contentLocation(served, key);
    expect(file).toBeDefined();
    expect((await readFile(file ?? '')).equals(content)).toBe(true);
  });
});
