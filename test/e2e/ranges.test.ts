/**
 * The key routes as plain HTTP: HEAD, Content-Length, one byte range (206/416), entity tags
 * (If-None-Match → 304, If-Range) and caching headers, for every kind of content the server
 * serves: the served repository's own object files, a proxied git-annex repository R, a proxied
 * directory special remote D, and a cluster whose content is on its node n1. Then a 1 GiB key
 * read in random 1 MiB ranges by 16 clients at once, a file modified while it is sent (the body
 * is cut: Content-Length was sent), and the real git-annex client (get, an interrupted get
 * resumed, a get that meets a modified file and is retried). ranges-cluster.test.ts runs the
 * same against cluster mode.
 */
import { spawn } from 'node:child_process';
import { open, readFile, stat, utimes } from 'node:fs/promises';
import * as http from 'node:http';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpRequest, type HttpResult } from './api';
import {
  annex,
  annexStatus,
  annexUrlFor,
  contentLocation,
  fileDigest,
  freePort,
  git,
  keyOf,
  killAllTracked,
  makeClientClone,
  makeServedRepo,
  pollUntil,
  reportServerOutputOnFailure,
  run,
  Sandbox,
  startServer,
  writeRandomFile,
  type ClientRepo,
  type RepoContext,
  type RunningServer,
  type ServedRepo,
} from './harness';

const MiB = 1 << 20;
const GiB = 1 << 30;
const CLUSTER = 'mycluster';

const files = [
  { path: 'local.bin', size: 3 * MiB + 17 },
  { path: 'on-r.bin', size: 2 * MiB + 5 },
  { path: 'on-d.bin', size: 2 * MiB + 7 },
  { path: 'on-n1.bin', size: 2 * MiB + 9 },
  { path: 'changing.bin', size: 64 * MiB },
];

let sandbox: Sandbox;
let served: ServedRepo;
let client: ClientRepo;
let server: RunningServer | undefined;
let port: number;
const uuids: Record<string, string> = {};
/** worktree path → its bytes, read before the content left S */
const bytes = new Map<string, Buffer>();
let wormKey: string;
let bigKey: string;
let bigFile: string;

reportServerOutputOnFailure(() => [server]);

async function uuidOf(repo: RepoContext): Promise<string> {
  return (await git(repo, ['config', 'annex.uuid'])).stdout.trim();
}

async function addRemote(name: string, bare: boolean): Promise<RepoContext> {
  const dir = sandbox.path(bare ? `${name}.git` : name);
  const clone = ['clone', '-q', ...(bare ? ['--bare'] : []), served.dir, dir];
  await run('git', clone, { cwd: sandbox.root, env: served.env });
  const repo: RepoContext = { dir, env: served.env };
  await annex(repo, ['init', '-q', name]);
  await git(served, ['remote', 'add', name, dir]);
  uuids[name] = await uuidOf(repo);
  return repo;
}

beforeAll(async () => {
  sandbox = await Sandbox.create('ranges');
  served = await makeServedRepo(sandbox, sandbox.path('S'), files);
  uuids.S = served.uuid;
  for (const spec of files) {
    bytes.set(spec.path, await readFile(path.join(served.dir, spec.path)));
  }
  // A key without a checksum (weak entity tag), and the 1 GiB key.
  await writeRandomFile(path.join(served.dir, 'worm.bin'), 100_000);
  await annex(served, ['add', '-q', '--backend=WORM', '--', 'worm.bin']);
  bigFile = path.join(served.dir, 'big.bin');
  await writeRandomFile(bigFile, GiB);
  await annex(served, ['add', '-q', '--', 'big.bin'], 600_000);
  await git(served, ['commit', '-q', '-m', 'worm and big']);
  wormKey = (await annex(served, ['lookupkey', '--', 'worm.bin'])).stdout.trim();
  bigKey = (await annex(served, ['lookupkey', '--', 'big.bin'])).stdout.trim();
  bytes.set('worm.bin', await readFile(path.join(served.dir, 'worm.bin')));

  await addRemote('R', true);
  for (const node of ['n1', 'n2']) {
    await addRemote(node, false);
    await git(served, ['config', `remote.${node}.annex-cluster-node`, CLUSTER]);
  }
  const dDir = sandbox.path('D-directory');
  await run('mkdir', ['-p', dDir], { cwd: sandbox.root, env: served.env });
  await annex(served, [
    'initremote',
    '-q',
    'D',
    'type=directory',
    `directory=${dDir}`,
    'encryption=none',
  ]);
  uuids.D = (await git(served, ['config', 'remote.D.annex-uuid'])).stdout.trim();
  await git(served, ['config', 'remote.R.annex-proxy', 'true']);
  await git(served, ['config', 'remote.D.annex-proxy', 'true']);
  await annex(served, ['initcluster', '-q', CLUSTER]);
  await annex(served, ['updatecluster', '-q']);
  await annex(served, ['updateproxy', '-q']);
  uuids.cluster = (await git(served, ['config', `annex.cluster.${CLUSTER}`])).stdout.trim();
  await annex(served, ['move', '-q', '--to', 'R', '--', 'on-r.bin']);
  await annex(served, ['move', '-q', '--to', 'D', '--', 'on-d.bin']);
  await annex(served, ['move', '-q', '--to', 'n1', '--', 'on-n1.bin']);

  port = await freePort();
  client = await makeClientClone(sandbox, served, sandbox.path('client'), annexUrlFor(port));
  server = await startServer({ sandbox, repo: served, auth: ['--wideopen'], port });
}, 600_000);

afterAll(async () => {
  try {
    await server?.stop();
  } finally {
    killAllTracked();
    await sandbox?.remove();
  }
});

function keyPath(uuid: string, key: string, versioned = false, query = ''): string {
  const route = versioned ? 'v4/key' : 'key';
  return `/git-annex/${uuid}/${route}/${encodeURIComponent(key)}${query}`;
}

function request(
  rawPath: string,
  method: 'GET' | 'HEAD',
  headers: http.OutgoingHttpHeaders = {},
): Promise<HttpResult> {
  return httpRequest(port, rawPath, { method, headers, timeoutMs: 120_000 });
}

function expectRange(result: HttpResult, content: Buffer, first: number, last: number): void {
  expect(result.status, result.body.toString().slice(0, 200)).toBe(206);
  expect(result.headers['content-range']).toBe(`bytes ${first}-${last}/${content.length}`);
  expect(result.headers['content-length']).toBe(String(last - first + 1));
  expect(result.body.equals(content.subarray(first, last + 1))).toBe(true);
}

/** A deterministic shuffle (the same order every run). */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let state = seed;
  for (let i = out.length - 1; i > 0; i -= 1) {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    const j = state % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

const KINDS = [
  { kind: 'object files of the served repository', at: 'S', file: 'local.bin', absent: 'on-r.bin' },
  { kind: 'a proxied git-annex repository', at: 'R', file: 'on-r.bin', absent: 'local.bin' },
  { kind: 'a proxied directory special remote', at: 'D', file: 'on-d.bin', absent: 'on-r.bin' },
  { kind: 'a cluster', at: 'cluster', file: 'on-n1.bin', absent: 'on-d.bin' },
] as const;

describe.each(KINDS)('$kind', ({ at, file, absent }) => {
  const uuid = () => uuids[at]!;
  const key = () => keyOf(served, file);
  const content = () => bytes.get(file)!;

  it('HEAD: 200 with the lengths and caching headers and no body; 404 when absent', async () => {
    for (const versioned of [false, true]) {
      const head = await request(keyPath(uuid(), key(), versioned), 'HEAD');
      expect(head.status).toBe(200);
      expect(head.body.length).toBe(0);
      expect(head.headers['content-length']).toBe(String(content().length));
      expect(head.headers['x-git-annex-data-length']).toBe(String(content().length));
      expect(head.headers['accept-ranges']).toBe('bytes');
      expect(head.headers.etag).toMatch(/^"[A-Za-z0-9_-]+"$/);
      expect(head.headers['cache-control']).toBe('max-age=31536000, immutable');
    }
    const offset = await request(keyPath(uuid(), key(), true, '?offset=1000'), 'HEAD');
    expect(offset.headers['content-length']).toBe(String(content().length - 1000));
    const gone = await request(keyPath(uuid(), keyOf(served, absent)), 'HEAD');
    expect(gone.status).toBe(404);
    expect(gone.body.length).toBe(0);
  });

  it('a whole GET announces Content-Length and the entity tag HEAD gave', async () => {
    const head = await request(keyPath(uuid(), key()), 'HEAD');
    for (const versioned of [false, true]) {
      const whole = await request(keyPath(uuid(), key(), versioned), 'GET');
      expect(whole.status).toBe(200);
      expect(whole.headers['content-length']).toBe(String(content().length));
      expect(whole.headers['transfer-encoding']).toBeUndefined();
      expect(whole.headers['accept-ranges']).toBe('bytes');
      expect(whole.headers.etag).toBe(head.headers.etag);
      expect(whole.body.equals(content())).toBe(true);
    }
  });

  it('serves byte ranges at the start, in the middle, at the end and past the end', async () => {
    const c = content();
    const size = c.length;
    const get = (range: string, versioned = false) =>
      request(keyPath(uuid(), key(), versioned), 'GET', { range });
    expectRange(await get('bytes=0-0'), c, 0, 0);
    expectRange(await get('bytes=0-99999'), c, 0, 99_999);
    expectRange(await get('bytes=1000000-1065535', true), c, 1_000_000, 1_065_535);
    expectRange(await get(`bytes=${size - 10}-`), c, size - 10, size - 1);
    expectRange(await get('bytes=-100'), c, size - 100, size - 1);
    expectRange(await get(`bytes=${size - 5}-${size + 1000}`), c, size - 5, size - 1);
    for (const range of [`bytes=${size}-`, `bytes=${size + 10}-${size + 20}`, 'bytes=-0']) {
      const past = await get(range);
      expect(past.status, range).toBe(416);
      expect(past.headers['content-range'], range).toBe(`bytes */${size}`);
    }
    // Several ranges and malformed ones get the whole body.
    for (const range of ['bytes=0-1,5-6', 'bytes=9-3', 'lines=1-2']) {
      const whole = await get(range);
      expect(whole.status, range).toBe(200);
      expect(whole.body.equals(c), range).toBe(true);
    }
    // The versioned route's offset selects the body the range applies to.
    const fromOffset = await request(keyPath(uuid(), key(), true, '?offset=1000'), 'GET', {
      range: 'bytes=0-9',
    });
    expect(fromOffset.status).toBe(206);
    expect(fromOffset.headers['content-range']).toBe(`bytes 0-9/${size - 1000}`);
    expect(fromOffset.body.equals(c.subarray(1000, 1010))).toBe(true);
    // A range of absent content is 404, as a whole GET.
    const gone = await request(keyPath(uuid(), keyOf(served, absent)), 'GET', {
      range: 'bytes=0-9',
    });
    expect(gone.status, gone.body.toString()).toBe(404);
    const goneWhole = await request(keyPath(uuid(), keyOf(served, absent)), 'GET');
    expect(goneWhole.status, goneWhole.body.toString()).toBe(404);
  });

  it('honours If-None-Match (304) and If-Range', async () => {
    const { headers } = await request(keyPath(uuid(), key()), 'HEAD');
    const etag = headers.etag!;
    const cached = await request(keyPath(uuid(), key()), 'GET', { 'if-none-match': etag });
    expect(cached.status).toBe(304);
    expect(cached.body.length).toBe(0);
    expect(cached.headers.etag).toBe(etag);
    const headCached = await request(keyPath(uuid(), key()), 'HEAD', { 'if-none-match': etag });
    expect(headCached.status).toBe(304);
    const other = await request(keyPath(uuid(), key()), 'GET', { 'if-none-match': '"other"' });
    expect(other.status).toBe(200);
    const gone = await request(keyPath(uuid(), keyOf(served, absent)), 'GET', {
      'if-none-match': '*',
    });
    expect(gone.status).toBe(404);
    const same = await request(keyPath(uuid(), key()), 'GET', {
      range: 'bytes=10-19',
      'if-range': etag,
    });
    expectRange(same, content(), 10, 19);
    const changed = await request(keyPath(uuid(), key()), 'GET', {
      range: 'bytes=10-19',
      'if-range': '"other"',
    });
    expect(changed.status).toBe(200);
    expect(changed.body.equals(content())).toBe(true);
  });

  it('gives a reader of 1 MiB ranges in random order exactly the file', async () => {
    const c = content();
    const starts = Array.from({ length: Math.ceil(c.length / MiB) }, (_, i) => i * MiB);
    const assembled = Buffer.alloc(c.length);
    for (const start of shuffled(starts, 7)) {
      const last = Math.min(start + MiB, c.length) - 1;
      const part = await request(keyPath(uuid(), key()), 'GET', {
        range: `bytes=${start}-${last}`,
      });
      expect(part.status).toBe(206);
      part.body.copy(assembled, start);
    }
    expect(assembled.equals(c)).toBe(true);
  });
});

describe('keys without a checksum', () => {
  it('get a weak entity tag, revalidation, and no If-Range', async () => {
    const head = await request(keyPath(served.uuid, wormKey), 'HEAD');
    expect(head.status).toBe(200);
    expect(head.headers.etag).toMatch(/^W\/"[A-Za-z0-9_-]+"$/);
    expect(head.headers['cache-control']).toBe('no-cache');
    const cached = await request(keyPath(served.uuid, wormKey), 'GET', {
      'if-none-match': head.headers.etag!,
    });
    expect(cached.status).toBe(304);
    // If-Range needs a strong tag: the whole body.
    const whole = await request(keyPath(served.uuid, wormKey), 'GET', {
      range: 'bytes=0-9',
      'if-range': head.headers.etag!,
    });
    expect(whole.status).toBe(200);
    expect(whole.body.equals(bytes.get('worm.bin')!)).toBe(true);
    expectRange(
      await request(keyPath(served.uuid, wormKey), 'GET', { range: 'bytes=5-9' }),
      bytes.get('worm.bin')!,
      5,
      9,
    );
  });
});

/**
 * A v4 GET that reads the first chunk, then lets `between` run before reading the rest. Resolves
 * with what arrived and whether the response completed.
 */
function getPausing(
  rawPath: string,
  between: () => Promise<void>,
): Promise<{
  status: number;
  headers: http.IncomingHttpHeaders;
  received: number;
  complete: boolean;
}> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port,
      path: rawPath,
      method: 'GET',
      agent: false,
    });
    req.once('error', reject);
    req.once('response', (res) => {
      let received = 0;
      let paused = false;
      res.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (!paused) {
          paused = true;
          res.pause();
          between().then(
            () => res.resume(),
            (error: unknown) => reject(error instanceof Error ? error : new Error(String(error))),
          );
        }
      });
      const settle = () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          received,
          complete: res.complete,
        });
      res.once('end', settle);
      res.once('error', settle);
      res.once('close', settle);
    });
    req.end();
  });
}

// 64 MiB: more than every buffer between the file and a client that stopped reading holds
// (the proxy worker's data port and the gateway in cluster mode), so that the change is seen.
describe('content that changes while it is sent', () => {
  it('cuts the connection instead of ending a body shorter than its Content-Length', async () => {
    const key = keyOf(served, 'changing.bin');
    const object = (await contentLocation(served, key))!;
    const size = bytes.get('changing.bin')!.length;
    const result = await getPausing(
      keyPath(served.uuid, key, true, '?clientuuid=' + client.uuid),
      async () => {
        const later = new Date(Date.now() + 60_000);
        await utimes(object, later, later);
      },
    );
    expect(result.status).toBe(200);
    expect(result.headers['content-length']).toBe(String(size));
    expect(result.complete).toBe(false);
    expect(result.received).toBeLessThan(size);
  });
});

describe('a 1 GiB key', () => {
  it('is read in random 1 MiB ranges by 16 clients at once, every byte right', async () => {
    const handle = await open(bigFile, 'r');
    try {
      const clients = 16;
      const perClient = 6;
      let state = 12_345;
      const offsets = Array.from({ length: clients * perClient }, () => {
        state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
        return state % (GiB - MiB);
      });
      await Promise.all(
        Array.from({ length: clients }, async (_, c) => {
          for (let i = 0; i < perClient; i += 1) {
            const first = offsets[c * perClient + i]!;
            const part = await request(keyPath(served.uuid, bigKey), 'GET', {
              range: `bytes=${first}-${first + MiB - 1}`,
            });
            expect(part.status).toBe(206);
            expect(part.headers['content-range']).toBe(`bytes ${first}-${first + MiB - 1}/${GiB}`);
            const expected = Buffer.alloc(MiB);
            await handle.read(expected, 0, MiB, first);
            expect(part.body.equals(expected)).toBe(true);
          }
        }),
      );
    } finally {
      await handle.close();
    }
  });
});

describe('the real git-annex client', () => {
  const partialOf = (key: string) => path.join(client.dir, '.git', 'annex', 'tmp', key);
  const partialSize = async (key: string) =>
    (await stat(partialOf(key)).catch(() => undefined))?.size ?? 0;

  /** `git annex get` of the file; `during` runs while it does and may end it. */
  async function clientGet(
    file: string,
    during: (child: { kill(): void }) => Promise<void> = async () => {},
  ): Promise<{ code: number | null; stderr: string }> {
    const child = spawn('git', ['annex', 'get', '--', file], {
      cwd: client.dir,
      env: client.env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) =>
      child.once('exit', (code) => resolve(code)),
    );
    await during({ kill: () => process.kill(-child.pid!, 'SIGKILL') });
    return { code: await exited, stderr };
  }

  it('gets a file, resumes an interrupted get, and retries one that met a modified file', async () => {
    expect((await annexStatus(client, ['get', '--', 'local.bin'])).code).toBe(0);
    expect((await fileDigest(path.join(client.dir, 'local.bin'))).size).toBe(3 * MiB + 17);

    // Interrupted: killed once 64 MiB arrived; the partial download stays.
    const killed = await clientGet('big.bin', async (child) => {
      await pollUntil(
        '64 MiB downloaded',
        async () => ((await partialSize(bigKey)) >= 64 * MiB ? true : undefined),
        { timeoutMs: 120_000, intervalMs: 5 },
      );
      child.kill();
    });
    expect(killed.code).not.toBe(0);
    const kept = await partialSize(bigKey);
    expect(kept).toBeGreaterThanOrEqual(64 * MiB);

    // Resumed, and the served file changes while it is sent: the client must fail the transfer.
    const object = (await contentLocation(served, bigKey))!;
    const met = await clientGet('big.bin', async () => {
      await pollUntil(
        'the resumed download under way',
        async () => ((await partialSize(bigKey)) >= kept + 16 * MiB ? true : undefined),
        { timeoutMs: 120_000, intervalMs: 5 },
      );
      const later = new Date(Date.now() + 60_000);
      await utimes(object, later, later);
    });
    // git-annex takes the cut for a failed transfer (http-client's ResponseBodyTooShort) and,
    // as the transfer made progress, retries it at once from what it has: exactly the file.
    expect(met.stderr).toMatch(/ResponseBodyTooShort/);
    // The request it failed on resumed the interrupted download, from a non-zero offset.
    expect(met.stderr).toMatch(/offset=[1-9][0-9]*/);
    expect(met.code, met.stderr).toBe(0);
    expect(await fileDigest(path.join(client.dir, 'big.bin'))).toEqual(await fileDigest(bigFile));
  });
});
