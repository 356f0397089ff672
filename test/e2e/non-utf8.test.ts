/**
 * Values are bytes, not text (PROTOCOL.md §1.2, §2.1): file names and keys that are not valid
 * UTF-8, in the `[base64url]` form the git-annex client sends them in and as plain percent-encoded
 * values; the served uuid in that form; keys up to git-annex's line limit; numbers with leading
 * zeros. First the real git-annex client with files whose names (and, through a file extension,
 * keys) are not UTF-8, then the HTTP API directly.
 *
 * Names with such bytes cannot be passed as arguments from Node (argv strings are UTF-8), so the
 * client commands name the directory that holds them.
 */
import { execFileSync } from 'node:child_process';
import { isUtf8 } from 'node:buffer';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bracketBytes,
  expectJson,
  expectLocked,
  expectStatus,
  jsonBody,
  P2PApi,
  percentEncodeBytes,
} from './api';
import {
  annex,
  annexUrlFor,
  freePort,
  git,
  killAllTracked,
  makeClientClone,
  makeServedRepo,
  reportServerOutputOnFailure,
  RunningServer,
  Sandbox,
  startServer,
  stopAndCollectLeftovers,
  type ClientRepo,
  type RepoContext,
  type ServedRepo,
} from './harness';

const DIR = 'nonutf8';
/** Where the copy --to and drop --from tests add files of their own. */
const UP = 'nonutf8-up';
const DROP = 'nonutf8-drop';
/** `bad\xff\xfename.bin`: the name is not UTF-8, its SHA256E key (extension `.bin`) is. */
const BAD_NAME = Buffer.concat([
  Buffer.from('bad'),
  Buffer.from([0xff, 0xfe]),
  Buffer.from('name.bin'),
]);
/**
 * `café.déjà` in Latin-1, as old archives have it: git-annex keeps bytes above 127 in a key's
 * extension, so the SHA256E key of this file is not UTF-8 either.
 */
const LATIN1_NAME = Buffer.from('caf\xe9.d\xe9j\xe0', 'latin1');
const FILES = [BAD_NAME, LATIN1_NAME];

/** A WORM key whose name is the bytes ff fe 80. */
const WORM_KEY = Buffer.concat([Buffer.from('WORM--'), Buffer.from([0xff, 0xfe, 0x80])]);

let sandbox: Sandbox;
let served: ServedRepo;
let client: ClientRepo;
let server: RunningServer | undefined;
let api: P2PApi;
/** file path (hex of its bytes) → content */
const contents = new Map<string, Buffer>();

reportServerOutputOnFailure(() => [server]);

function filePath(repo: RepoContext, name: Buffer, dir = DIR): Buffer {
  return Buffer.concat([Buffer.from(`${repo.dir}/${dir}/`), name]);
}

async function writeNamed(repo: RepoContext, dir: string, size: number): Promise<void> {
  await mkdir(path.join(repo.dir, dir));
  for (const name of FILES) {
    const file = filePath(repo, name, dir);
    const content = randomBytes(size + name.length);
    contents.set(file.subarray(repo.dir.length).toString('hex'), content);
    await writeFile(file, content);
  }
}

async function expectSameBytes(repo: RepoContext, dir: string): Promise<void> {
  for (const name of FILES) {
    const file = filePath(repo, name, dir);
    const want = contents.get(file.subarray(repo.dir.length).toString('hex'));
    expect((await readFile(file)).equals(want ?? Buffer.alloc(0))).toBe(true);
  }
}

/** The keys of the annexed files below `dir`, as bytes (git-annex prints them unescaped). */
function keysBelow(repo: RepoContext, dir: string, ...filters: string[]): Buffer[] {
  const out = execFileSync('git-annex', ['find', ...filters, '--format=${key}\\n', dir], {
    cwd: repo.dir,
    env: repo.env,
    encoding: 'buffer',
    timeout: 60_000,
  });
  const keys: Buffer[] = [];
  for (let start = 0, end = out.indexOf(0x0a); end >= 0; end = out.indexOf(0x0a, start)) {
    keys.push(out.subarray(start, end));
    start = end + 1;
  }
  return keys;
}

/** The object file names under `.git/annex/objects`, as bytes. */
async function objectNames(repo: RepoContext): Promise<Buffer[]> {
  const names: Buffer[] = [];
  const walk = async (dir: Buffer, parent: Buffer): Promise<void> => {
    let entries: Buffer[];
    try {
      entries = await readdir(dir, { encoding: 'buffer' });
    } catch {
      return;
    }
    for (const entry of entries) {
      if (entry.equals(parent)) {
        names.push(entry);
      } else {
        await walk(Buffer.concat([dir, Buffer.from('/'), entry]), entry);
      }
    }
  };
  await walk(Buffer.from(path.join(repo.dir, '.git', 'annex', 'objects')), Buffer.alloc(0));
  return names;
}

async function holds(repo: RepoContext, key: Buffer): Promise<boolean> {
  // These keys hold none of the characters an object file name escapes.
  return (await objectNames(repo)).some((name) => name.equals(key));
}

beforeAll(async () => {
  sandbox = await Sandbox.create('non-utf8');
  served = await makeServedRepo(sandbox, sandbox.path('served'), [{ path: 'plain.bin', size: 10 }]);
  await writeNamed(served, DIR, 3000);
  await annex(served, ['add', '-q', DIR]);
  await git(served, ['commit', '-q', '-m', 'names that are not UTF-8']);
  const port = await freePort();
  client = await makeClientClone(sandbox, served, sandbox.path('client'), annexUrlFor(port));
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

describe('the git-annex client with names that are not UTF-8', () => {
  it('the keys are what this test is about', () => {
    const keys = keysBelow(served, DIR);
    expect(keys).toHaveLength(2);
    // One key is ASCII (only its file name is not UTF-8), the other is not UTF-8 at all.
    expect(keys.filter((key) => isUtf8(key))).toHaveLength(1);
  });

  it('get', async () => {
    await annex(client, ['get', DIR]);
    await expectSameBytes(client, DIR);
  });

  it('drop --from origin while the client has a copy', async () => {
    // Files of its own, put into the served repository behind the server's back (a remote by
    // path), so that this does not depend on the other tests.
    await writeNamed(client, DROP, 1000);
    await annex(client, ['add', '-q', DROP]);
    await git(client, ['commit', '-q', '-m', 'names to drop']);
    await git(client, ['remote', 'add', 'direct', served.dir]);
    await annex(client, ['copy', '-q', '--to', 'direct', DROP]);
    await git(client, ['remote', 'remove', 'direct']);
    const keys = keysBelow(client, DROP);
    expect(keys).toHaveLength(2);
    for (const key of keys) {
      expect(await holds(served, key)).toBe(true);
    }
    await annex(client, ['drop', '--from', 'origin', DROP]);
    for (const key of keys) {
      expect(await holds(served, key), key.toString('latin1')).toBe(false);
    }
    await expectSameBytes(client, DROP);
  });

  it('copy --to origin', async () => {
    // Files of its own, so that this does not depend on the tests before it.
    await writeNamed(client, UP, 2000);
    await annex(client, ['add', '-q', UP]);
    await git(client, ['commit', '-q', '-m', 'more names that are not UTF-8']);
    const keys = keysBelow(client, UP);
    expect(keys).toHaveLength(2);
    await annex(client, ['copy', '--to', 'origin', UP]);
    for (const key of keys) {
      expect(await holds(served, key), key.toString('latin1')).toBe(true);
    }
    // fsck checks the content of every key the served repository holds against its hash
    await annex(served, ['fsck', '-q', '--all', '--in', 'here']);
  });
});

describe('the HTTP API with values that are not UTF-8', () => {
  const content = Buffer.from('worm content\n');

  it('a key whose name is not UTF-8: put, checkpresent, GET, remove', async () => {
    const key = bracketBytes(WORM_KEY);
    expectJson(await api.checkpresent(key), 200, { present: false });
    expectJson(await api.put(key, content), 200, { stored: true, plusuuids: [] });
    expect(await holds(served, WORM_KEY)).toBe(true);
    expectJson(await api.checkpresent(key), 200, { present: true });
    const got = await api.get(key);
    expectStatus(got, 200);
    expect(got.body.equals(content)).toBe(true);
    // The same bytes as a plain, percent-encoded value name the same key.
    const plain = percentEncodeBytes(WORM_KEY);
    const viaPlain = await api.request(
      api.path(4, 'checkpresent') + `?key=${plain}&clientuuid=${api.clientUuid}`,
    );
    expectJson(viaPlain, 200, { present: true });
    const plainGet = await api.request(
      `/git-annex/${api.serverUuid}/v4/key/${plain}?clientuuid=${api.clientUuid}`,
      { method: 'GET' },
    );
    expectStatus(plainGet, 200);
    expect(plainGet.body.equals(content)).toBe(true);
    expectJson(await api.putoffset(key), 200, { alreadyhave: true, plusuuids: [] });
    // a lock on these bytes holds off a remove (in cluster mode, through the lock-service)
    const lockid = expectLocked(await api.lockcontent(key));
    expectJson(await api.remove(key), 200, { removed: false, plusuuids: [] });
    expectJson(await api.unlock(lockid), 200, { locked: false });
    expectJson(await api.remove(key), 200, { removed: true, plusuuids: [] });
    expectJson(await api.checkpresent(key), 200, { present: false });
    expect(await holds(served, WORM_KEY)).toBe(false);
  });

  it('an associated file that is not UTF-8, on put and GET', async () => {
    const body = Buffer.from('associated\n');
    const key = `SHA256E-s${body.length}--${createHash('sha256').update(body).digest('hex')}.bin`;
    const af = bracketBytes(Buffer.concat([Buffer.from(`${DIR}/`), BAD_NAME]));
    expectJson(await api.put(key, body, { associatedfile: af }), 200, {
      stored: true,
      plusuuids: [],
    });
    const got = await api.request(
      `/git-annex/${api.serverUuid}/v4/key/${key}?clientuuid=${api.clientUuid}&associatedfile=${encodeURIComponent(af)}`,
      { method: 'GET' },
    );
    expectStatus(got, 200);
    expect(got.body.equals(body)).toBe(true);
    expectJson(await api.remove(key), 200, { removed: true, plusuuids: [] });
  });

  it('the served uuid in [base64url] form in the path', async () => {
    const key = served.keys.get('plain.bin') ?? '';
    const bracketed = new P2PApi(
      api.port,
      encodeURIComponent(bracketBytes(Buffer.from(served.uuid))),
      api.clientUuid,
    );
    expectJson(await bracketed.checkpresent(key), 200, { present: true });
    const got = await bracketed.get(key);
    expectStatus(got, 200);
    expect(got.body.length).toBe(10);
  });

  it('clientuuid, bypass and lockid in [base64url] form', async () => {
    const key = served.keys.get('plain.bin') ?? '';
    const clientuuid = bracketBytes(Buffer.from(api.clientUuid));
    const bypass = bracketBytes(Buffer.from('cafe0000-0000-4000-8000-000000000000'));
    expectJson(await api.post('checkpresent', { key, clientuuid, bypass }), 200, {
      present: true,
    });
    const lockid = expectLocked(await api.post('lockcontent', { key, clientuuid }));
    expectJson(await api.remove(key), 200, { removed: false, plusuuids: [] });
    expectJson(await api.unlock(bracketBytes(Buffer.from(lockid))), 200, { locked: false });
    // Unlocked through the bracketed lockid: the content may be removed now, then put back.
    const content = await readFile(path.join(served.dir, 'plain.bin'));
    expectJson(await api.remove(key), 200, { removed: true, plusuuids: [] });
    expectJson(await api.put(key, content), 200, { stored: true, plusuuids: [] });
  });

  it('keys longer than 8192 bytes, up to what fits a P2P line', async () => {
    // git-annex-shell reads lines of up to 32767 characters; REMOVE-BEFORE, the longest line a
    // key travels in, spends 31 of them on the verb and a 16-digit timestamp.
    const longest = `WORM--${'x'.repeat(32_736 - 6)}`;
    for (const key of [`WORM--${'y'.repeat(10_000)}`, longest]) {
      expectJson(await api.checkpresent(key), 200, { present: false });
      expectJson(await api.remove(key), 200, { removed: true, plusuuids: [] });
      const future = String(Number.MAX_SAFE_INTEGER);
      expectJson(await api.removeBefore(bracketBytes(Buffer.from(key)), future), 200, {
        removed: true,
        plusuuids: [],
      });
    }
    expectStatus(await api.checkpresent(`${longest}z`), 400);
  });

  it('numbers with leading zeros', async () => {
    const key = served.keys.get('plain.bin') ?? '';
    const content = await readFile(path.join(served.dir, 'plain.bin'));
    const got = await api.get(key, { offset: '00000000000000003' });
    expectStatus(got, 200);
    expect(got.headers['x-git-annex-data-length']).toBe('7');
    expect(got.body.equals(content.subarray(3))).toBe(true);
    const timestamp = jsonBody(await api.gettimestamp()).timestamp as number;
    const zeros = `000000000000${timestamp + 600}`;
    expectJson(await api.removeBefore(`WORM--absent`, zeros), 200, {
      removed: true,
      plusuuids: [],
    });
    const body = Buffer.from('leading zeros\n');
    const putKey = `SHA256E-s${body.length}--${createHash('sha256').update(body).digest('hex')}`;
    const put = await api.post(
      'put',
      { key: putKey, offset: '00000000000000000', associatedfile: '' },
      { headers: { 'x-git-annex-data-length': `0000000000000000${body.length}` }, body },
    );
    expectJson(put, 200, { stored: true, plusuuids: [] });
    expectJson(await api.remove(putKey), 200, { removed: true, plusuuids: [] });
  });
});

describe('after the requests', () => {
  it('the server stops on SIGTERM, leaves no git-annex-shell, and the served repo is sound', async () => {
    const { stops, leftovers } = await stopAndCollectLeftovers([server], [sandbox.root]);
    expect(leftovers).toEqual([]);
    expect(stops[0]?.forced).toBe(false);
    await annex(served, ['fsck', '-q'], 120_000);
  });
});
