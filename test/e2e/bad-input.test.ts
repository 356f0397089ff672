/**
 * Bad and hostile input through HTTP. These follow the project's design where git-annex
 * 10.20250416 differs (PROTOCOL.md §2.6, §6.1: unknown version → 404, absent key on GET → 404,
 * offset=-1 → 400, a longer put body → 400, …), so several fail against the reference server.
 *
 * After every request the server must still answer checkpresent correctly; at the end the served
 * repository must pass fsck and hold no object other than its committed files' content.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import {
  bracketBase64,
  expectJson,
  expectStatus,
  httpRequest,
  P2PApi,
  queryString,
  type HttpResult,
} from './api';
import {
  annex,
  annexedKeys,
  contentLocation,
  keyOf,
  killAllTracked,
  listTree,
  makeServedRepo,
  objectFileNames,
  reportServerOutputOnFailure,
  RunningServer,
  Sandbox,
  sha256File,
  startServer,
  stopAndCollectLeftovers,
  type ServedRepo,
} from './harness';

/** Files committed in the served repo whose content is dropped before the server starts. */
const DROPPED = ['a', 'b', 'c', 'd', 'e', 'f'].map((n) => `dropped/${n}.bin`);
/**
 * Dropped files large enough for the server to receive and verify a put itself before git-annex
 * installs it (libs/p2p/src/verified-put.ts); the small ones go through git-annex-shell.
 */
const DROPPED_LARGE = ['d', 'e', 'f'].map((n) => `dropped/large-${n}.bin`);
const LARGE_SIZE = 33 * 1024 * 1024 + 7;

let sandbox: Sandbox;
let served: ServedRepo;
let server: RunningServer | undefined;
let api: P2PApi;
let presentKey: string;
let presentContent: Buffer;
let stoppedOnPurpose = false;
const droppedContent = new Map<string, Buffer>();
const absentKey = `SHA256E-s5--${createHash('sha256').update(randomBytes(8)).digest('hex')}.bin`;

reportServerOutputOnFailure(() => [server]);

beforeAll(async () => {
  sandbox = await Sandbox.create('bad-input');
  // deep enough that ../../x and ../../../etc/passwd from the repo still land inside the sandbox
  served = await makeServedRepo(sandbox, sandbox.path('deep', 'er', 'served'), [
    { path: 'present.txt', size: 100 },
    ...DROPPED.map((p) => ({ path: p, size: 1000 + p.charCodeAt(8) })),
    ...DROPPED_LARGE.map((p) => ({ path: p, size: LARGE_SIZE })),
  ]);
  presentKey = keyOf(served, 'present.txt');
  presentContent = await readFile(path.join(served.dir, 'present.txt'));
  for (const file of [...DROPPED, ...DROPPED_LARGE]) {
    droppedContent.set(file, await readFile(path.join(served.dir, file)));
  }
  await annex(served, ['drop', '--force', '-q', '--', ...DROPPED, ...DROPPED_LARGE]);
  server = await startServer({ sandbox, repo: served, auth: ['--wideopen'] });
  api = new P2PApi(server.port, served.uuid);
});

afterAll(async () => {
  try {
    await server?.stop();
  } finally {
    killAllTracked();
    await sandbox?.remove();
  }
});

afterEach(async () => {
  if (stoppedOnPurpose) {
    return;
  }
  if (server === undefined || server.exited) {
    throw new Error(`the server is gone: ${server?.describe() ?? 'never started'}`);
  }
  expectJson(await api.checkpresent(presentKey), 200, { present: true });
  expectJson(await api.checkpresent(absentKey), 200, { present: false });
});

function dropped(file: string): { key: string; content: Buffer } {
  const content = droppedContent.get(file);
  if (content === undefined) {
    throw new Error(`unknown dropped file ${file}`);
  }
  return { key: keyOf(served, file), content };
}

/** The object file of a key the served repository now holds. */
async function objectFile(key: string): Promise<string> {
  const file = await contentLocation(served, key);
  if (file === undefined) {
    throw new Error(`the served repository does not hold ${key}`);
  }
  return file;
}

function sha256(content: Buffer): string {
  return createHash('sha256').update(content).digest('hex');
}

/** Puts the right content of a dropped file unless present, and checks it is sound. */
async function restore(file: string): Promise<void> {
  const { key, content } = dropped(file);
  if ((await contentLocation(served, key)) === undefined) {
    expectJson(await api.put(key, content), 200, { stored: true, plusuuids: [] });
  }
  await annex(served, ['fsck', '-q', '--key', key]);
}

function expectBodyHasNoPasswd(result: HttpResult): void {
  expect(result.body.toString('latin1')).not.toMatch(/root:.*:0:0:/);
}

describe('routing', () => {
  it('unknown server uuid → 404', async () => {
    const stranger = new P2PApi(api.port, randomUUID(), api.clientUuid);
    expectStatus(await stranger.checkpresent(presentKey), 404);
    expectStatus(await stranger.get(presentKey), 404);
  });

  it('unknown version → 404', async () => {
    for (const version of ['v5', 'vx', 'v', 'v04']) {
      expectStatus(await api.post('checkpresent', { key: presentKey }, { version }), 404);
    }
  });

  it('an endpoint absent in a version → 404', async () => {
    expectStatus(await api.post('putoffset', { key: presentKey }, { version: 0 }), 404);
    expectStatus(await api.post('gettimestamp', {}, { version: 2 }), 404);
    expectStatus(
      await api.post('remove-before', { key: absentKey, timestamp: '1' }, { version: 2 }),
      404,
    );
  });

  it('unknown path → 404', async () => {
    expectStatus(await api.post('nosuch', { key: presentKey }), 404);
    const query = queryString({ clientuuid: api.clientUuid });
    const base = `/git-annex/${served.uuid}/v4/key/${presentKey}`;
    expectStatus(await api.request(`${base}/extra?${query}`, { method: 'GET' }), 404);
    expectStatus(await api.request(`/nosuch?${query}`, { method: 'GET' }), 404);
    expectStatus(await api.request(`/git-annex/${served.uuid}/nosuch`, { method: 'POST' }), 404);
  });
});

describe('parameters', () => {
  it('missing key or clientuuid → 400', async () => {
    expectStatus(await api.post('checkpresent', {}), 400);
    expectStatus(await api.post('checkpresent', { key: presentKey, clientuuid: undefined }), 400);
    expectStatus(await api.post('remove', {}), 400);
    expectStatus(await api.post('lockcontent', {}), 400);
    const put = await api.post('put', {}, { headers: { 'x-git-annex-data-length': '0' } });
    expectStatus(put, 400);
  });

  it('malformed keys → 400', async () => {
    const bad = [
      'SHA256E-m2-s1--x',
      'SHA256E-s1-x--y',
      '-s1--x',
      'SHA256E-s1',
      'SHA256E-s1--a b',
      'SHA256E-s1--a\nb',
      'SHA256E-s1--a\0b',
      '',
    ];
    const got: Record<string, number> = {};
    const want: Record<string, number> = {};
    for (const key of bad) {
      const label = JSON.stringify(key);
      got[`checkpresent ${label}`] = (await api.checkpresent(key)).status;
      got[`remove ${label}`] = (await api.remove(key)).status;
      if (key !== '') {
        got[`GET ${label}`] = (await api.get(key)).status;
      }
    }
    for (const name of Object.keys(got)) {
      want[name] = 400;
    }
    expect(got).toEqual(want);
  });

  it('[base64url] key with padding is accepted; without padding → 400', async () => {
    const padded = bracketBase64(presentKey);
    expect(padded, 'the key must need padding for this test').toMatch(/=\]$/);
    expectJson(await api.checkpresent(padded), 200, { present: true });
    expectStatus(await api.checkpresent(bracketBase64(presentKey, { pad: false })), 400);
  });

  it('remove-before with timestamp=1.5 → 400', async () => {
    expectStatus(await api.removeBefore(absentKey, '1.5'), 400);
    expectStatus(await api.removeBefore(absentKey, 'soon'), 400);
  });

  it('keeplocked without lockid → 400; with an unknown lockid → 200 {"locked":false}', async () => {
    const missing = api.keeplocked(undefined);
    expectStatus(await missing.unlock(), 400);
    const unknown = api.keeplocked(randomUUID());
    expectJson(await unknown.unlock(), 200, { locked: false });
  });
});

describe('path traversal', () => {
  let before: string[];
  let passwdBefore: { sha256: string; mtimeMs: number };

  beforeAll(async () => {
    before = await listTree(sandbox.root);
    passwdBefore = { sha256: await sha256File('/etc/passwd'), ...(await stat('/etc/passwd')) };
  });

  /** New paths since `before`: none outside the served repo's .git, none named x or passwd. */
  async function expectNoStrayFiles(allowedKeys: readonly string[]): Promise<void> {
    const after = await listTree(sandbox.root);
    const seen = new Set(before);
    const gitDir = path.relative(sandbox.root, path.join(served.dir, '.git'));
    const objects = path.join(gitDir, 'annex', 'objects');
    const stray = after.filter((p) => {
      if (seen.has(p)) {
        return false;
      }
      const base = path.basename(p);
      if (base === 'x' || base.includes('passwd')) {
        return true;
      }
      if (p.startsWith(`${objects}${path.sep}`)) {
        // an object of an allowed key, or a hash directory on the way to one
        const allowed = (q: string) => allowedKeys.some((k) => q.includes(k));
        return !(allowed(p) || after.some((q) => q.startsWith(`${p}${path.sep}`) && allowed(q)));
      }
      return !p.startsWith(`${gitDir}${path.sep}`);
    });
    expect(stray).toEqual([]);
    const passwdAfter = await stat('/etc/passwd');
    expect(await sha256File('/etc/passwd')).toBe(passwdBefore.sha256);
    expect(passwdAfter.mtimeMs).toBe(passwdBefore.mtimeMs);
  }

  it('an illegal key ../../../etc/passwd → 400 everywhere', async () => {
    const key = '../../../etc/passwd';
    expectStatus(await api.checkpresent(key), 400);
    expectStatus(await api.remove(key), 400);
    expectStatus(await api.lockcontent(key), 400);
    expectStatus(await api.putoffset(key), 400);
    expectStatus(await api.put(key, Buffer.from('pwned\n')), 400);
    const get = await api.get(key);
    expectStatus(get, 400);
    expectBodyHasNoPasswd(get);
    // unencoded in the path: not a key route at all, or a bad key
    const query = queryString({ clientuuid: api.clientUuid });
    const raw = await api.request(`/git-annex/${served.uuid}/v4/key/${key}?${query}`, {
      method: 'GET',
    });
    expect([400, 404]).toContain(raw.status);
    expectBodyHasNoPasswd(raw);
    await expectNoStrayFiles([]);
  });

  it('a legal key whose name holds ../ is just an absent key', async () => {
    const key = 'SHA256E-s1--../../x';
    expectJson(await api.checkpresent(key), 200, { present: false });
    expectStatus(await api.get(key), 404);
    expectJson(await api.put(key, Buffer.from('x')), 200, { stored: false, plusuuids: [] });
    expectJson(await api.checkpresent(key), 200, { present: false });
    expectJson(await api.remove(key), 200, { removed: true, plusuuids: [] });
    expectJson(await api.lockcontent(key), 200, { locked: false });
    await expectNoStrayFiles([]);
  });

  it('associatedfile /etc/passwd or ../../x is accepted and ignored', async () => {
    const a = dropped('dropped/a.bin');
    const b = dropped('dropped/b.bin');
    onTestFinished(async () => {
      await restore('dropped/a.bin');
      await restore('dropped/b.bin');
    });
    expectJson(await api.put(a.key, a.content, { associatedfile: '/etc/passwd' }), 200, {
      stored: true,
      plusuuids: [],
    });
    expectJson(await api.put(b.key, b.content, { associatedfile: '../../x' }), 200, {
      stored: true,
      plusuuids: [],
    });
    await annex(served, ['fsck', '-q', '--key', a.key]);
    await annex(served, ['fsck', '-q', '--key', b.key]);
    await expectNoStrayFiles([a.key, b.key]);
  });
});

describe('put framing', () => {
  it('without X-git-annex-data-length, or with a bad one → 400, nothing stored', async () => {
    const { key, content } = dropped('dropped/c.bin');
    try {
      expectStatus(await api.put(key, content, { length: null }), 400);
      expectStatus(await api.put(key, content, { length: 'abc' }), 400);
      expectStatus(await api.put(key, content, { length: '-1' }), 400);
      expect(await contentLocation(served, key)).toBeUndefined();
    } finally {
      await restore('dropped/c.bin');
    }
  });

  it.each(['dropped/d.bin', 'dropped/large-d.bin'])(
    '%s: a body shorter than announced → stored:false, then putoffset reports the partial',
    async (file) => {
      const { key, content } = dropped(file);
      const short = content.subarray(0, content.length - 1);
      try {
        const put = await api.put(key, short, { length: content.length });
        expectJson(put, 200, { stored: false, plusuuids: [] });
        expect(await contentLocation(served, key)).toBeUndefined();
        expectJson(await api.putoffset(key), 200, { offset: short.length });
        // and the upload can be finished from there
        const rest = content.subarray(short.length);
        expectJson(await api.put(key, rest, { offset: short.length }), 200, {
          stored: true,
          plusuuids: [],
        });
        expect(await sha256File(await objectFile(key))).toBe(sha256(content));
      } finally {
        await restore(file);
      }
    },
  );

  it.each(['dropped/e.bin', 'dropped/large-e.bin'])(
    '%s: a body longer than announced → 400, nothing stored',
    async (file) => {
      const { key, content } = dropped(file);
      const longer = Buffer.concat([content, Buffer.from('surplus')]);
      try {
        expectStatus(await api.put(key, longer, { length: content.length }), 400);
        expect(await contentLocation(served, key)).toBeUndefined();
      } finally {
        await restore(file);
      }
    },
  );

  it.each(['dropped/f.bin', 'dropped/large-f.bin'])(
    '%s: wrong content for a SHA256E key → stored:false, object absent; right content stored',
    async (file) => {
      const { key, content } = dropped(file);
      const wrong = Buffer.from(content);
      const middle = wrong.length >> 1;
      wrong.writeUInt8(wrong.readUInt8(middle) ^ 1, middle);
      try {
        expectJson(await api.put(key, wrong), 200, { stored: false, plusuuids: [] });
        expect(await contentLocation(served, key)).toBeUndefined();
        expectJson(await api.put(key, content), 200, { stored: true, plusuuids: [] });
        expect(await sha256File(await objectFile(key))).toBe(sha256(content));
        // A second upload of present content is answered without storing it (the body is
        // discarded), also to a client that sends it on a connection it closes afterwards.
        expectJson(await api.put(key, content), 200, { stored: true, plusuuids: [] });
      } finally {
        await restore(file);
      }
    },
  );
});

describe('headers', () => {
  it('64 KiB of request headers → 431', async () => {
    const headers = { 'x-padding': 'a'.repeat(64 * 1024) };
    const path_ = api.path(4, 'checkpresent', { key: presentKey, clientuuid: api.clientUuid });
    expectStatus(await httpRequest(api.port, path_, { method: 'POST', headers }), 431);
  });

  it('Authorization: Bearer → 400 (even with --wideopen)', async () => {
    const result = await api.post(
      'checkpresent',
      { key: presentKey },
      {
        headers: { authorization: 'Bearer x' },
      },
    );
    expectStatus(result, 400);
  });

  it('JSON answers carry Content-Type application/json with charset, on every version', async () => {
    for (const version of [0, 1, 2, 3, 4] as const) {
      expectJson(await api.checkpresent(presentKey, version), 200, { present: true });
    }
    expectJson(await api.gettimestamp(3), 200, { timestamp: expect.any(Number) as unknown });
  });
});

describe('GET', () => {
  it('offset=-1 and offset=abc → 400', async () => {
    expectStatus(await api.get(presentKey, { offset: -1 }), 400);
    expectStatus(await api.get(presentKey, { offset: 'abc' }), 400);
  });

  it('an absent key → 404 (v4 and v0)', async () => {
    expectStatus(await api.get(absentKey, { version: 4 }), 404);
    expectStatus(await api.get(absentKey, { version: 0 }), 404);
  });

  it('a present key → 200, octet-stream, X-git-annex-data-length = body length, on v0-v4', async () => {
    for (const version of [0, 1, 2, 3, 4] as const) {
      const result = await api.get(presentKey, { version });
      expectStatus(result, 200);
      expect(result.headers['content-type']).toBe('application/octet-stream');
      expect(result.headers['x-git-annex-data-length']).toBe(String(presentContent.length));
      expect(result.body.equals(presentContent), `v${version} body`).toBe(true);
    }
    const tail = await api.get(presentKey, { offset: 10 });
    expectStatus(tail, 200);
    expect(tail.headers['x-git-annex-data-length']).toBe(String(presentContent.length - 10));
    expect(tail.body.equals(presentContent.subarray(10))).toBe(true);
  });
});

describe('after the bad input', () => {
  it('no git-annex-shell is left; fsck passes; objects are exactly the committed files', async () => {
    if (server === undefined) {
      throw new Error('server never started');
    }
    stoppedOnPurpose = true;
    const { stops, leftovers } = await stopAndCollectLeftovers([server], [sandbox.root]);
    expect(leftovers, 'git-annex-shell processes left running').toEqual([]);
    expect(stops[0]?.forced, 'server ignored SIGTERM for 20 s').toBe(false);
    await annex(served, ['fsck', '-q']);
    await annex(served, ['fsck', '-q', '--all', '--in', 'here']);
    const committed = [...(await annexedKeys(served)).values()].sort();
    expect(await objectFileNames(served)).toEqual(committed);
  });
});
