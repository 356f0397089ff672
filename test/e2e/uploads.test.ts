/**
 * Uploads whose client goes away or goes silent mid-body: every byte that arrived before the body
 * ended counts for `putoffset`, and the resumed put sends only the rest; silent uploads hold no
 * session that other clients need, and are cut after --upload-idle. Runs against the server that
 * `E2E_SERVER` names (embedded or cluster; each with --jobs 4).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import * as http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectJson, P2PApi, type OpenPut } from './api';
import {
  contentLocation,
  delay,
  keyOf,
  makeServedRepo,
  pollUntil,
  reportServerOutputOnFailure,
  RunningServer,
  Sandbox,
  sha256Key,
  startServer,
  stopAndCollectLeftovers,
  type ServedRepo,
} from './harness';

const MIB = 1024 * 1024;
/** The server's --jobs (see startServer). */
const JOBS = 4;
const IDLE_SECONDS = 2;

let sandbox: Sandbox;
let served: ServedRepo;
let server: RunningServer | undefined;
let api: P2PApi;
/** The same repository through a server with a short --upload-idle. */
let quickServer: RunningServer | undefined;

reportServerOutputOnFailure(() => [server, quickServer]);

beforeAll(async () => {
  sandbox = await Sandbox.create('uploads');
  served = await makeServedRepo(sandbox, sandbox.path('served'), [{ path: 'a.txt', size: 10 }]);
  server = await startServer({ sandbox, repo: served, auth: ['--unauth-appendonly'] });
  api = new P2PApi(server.port, served.uuid);
});

afterAll(async () => {
  await stopAndCollectLeftovers([server, quickServer], [served.dir]);
  await sandbox.remove();
});

/** Starts `count` uploads of 1 MiB each that send 10 bytes and then nothing. */
async function silentUploads(port: number, count: number): Promise<OpenPut[]> {
  const uploads: OpenPut[] = [];
  for (let i = 0; i < count; i += 1) {
    const content = randomBytes(MIB);
    uploads.push(new P2PApi(port, served.uuid).openPut(sha256Key(content), content, 10));
  }
  await Promise.all(uploads.map((upload) => upload.written()));
  // Let the server take them all in before the others come.
  await delay(500);
  return uploads;
}

describe('silent uploads', () => {
  it(`${2 * JOBS} uploads that went silent hold no session: other clients are answered`, async () => {
    const silent = await silentUploads(server?.port ?? 0, 2 * JOBS);
    try {
      const other = new P2PApi(api.port, served.uuid);
      const absent = sha256Key(randomBytes(64));
      const bound = { timeoutMs: 20_000 };
      expectJson(await other.post('checkpresent', { key: absent }, bound), 200, {
        present: false,
      });
      const got = await other.request(
        `/git-annex/${served.uuid}/v4/key/${encodeURIComponent(keyOf(served, 'a.txt'))}` +
          `?clientuuid=${other.clientUuid}&associatedfile=`,
        { method: 'GET', ...bound },
      );
      expect(got.status).toBe(200);
      expect(got.body.length).toBe(10);
      const small = randomBytes(1000);
      expectJson(await other.put(sha256Key(small), small, bound), 200, {
        stored: true,
        plusuuids: [],
      });
    } finally {
      for (const upload of silent) {
        upload.destroy();
      }
    }
  });

  it('an upload silent for --upload-idle is cut, and its bytes are kept for a resume', async () => {
    quickServer = await startServer({
      sandbox,
      repo: served,
      auth: ['--unauth-appendonly'],
      extraArgs: ['--upload-idle', String(IDLE_SECONDS)],
    });
    const content = randomBytes(MIB);
    const key = sha256Key(content);
    const quick = new P2PApi(quickServer.port, served.uuid);
    const upload = quick.openPut(key, content, 10);
    await upload.written();
    // Cut by the server: an answer with the connection closed, or the connection reset.
    const ended = await Promise.race([upload.response, delay(20_000).then(() => 'still open')]);
    expect(ended).not.toBe('still open');
    expectJson(await quick.putoffset(key), 200, { offset: 10 });
    expectJson(await quick.put(key, content.subarray(10), { offset: 10 }), 200, {
      stored: true,
      plusuuids: [],
    });
  });
});

/** One request through `agent`; resolves with the status, or 0 when no answer came in 20 s. */
function viaAgent(
  agent: http.Agent,
  rawPath: string,
  headers: http.OutgoingHttpHeaders,
  body: Buffer,
): Promise<number> {
  return new Promise((resolve) => {
    const req = http.request({
      host: '127.0.0.1',
      port: api.port,
      method: 'POST',
      path: rawPath,
      headers,
      agent,
    });
    const timer = setTimeout(() => {
      req.destroy();
      resolve(0);
    }, 20_000);
    req.once('response', (res) => {
      res.resume();
      res.once('end', () => {
        clearTimeout(timer);
        resolve(res.statusCode ?? 0);
      });
    });
    req.once('error', () => {
      clearTimeout(timer);
      resolve(0);
    });
    req.end(body);
  });
}

describe('a put refused before its body is read', () => {
  it('has its body read and dropped: the connection serves the next request', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const body = randomBytes(4 * MIB);
      const refused = await viaAgent(
        agent,
        api.path(4, 'put', {
          key: sha256Key(body),
          associatedfile: '',
          offset: 0,
          clientuuid: randomUUID(),
        }),
        {
          'content-type': 'application/octet-stream',
          'content-length': String(body.length),
          'x-git-annex-data-length': 'not a number',
        },
        body,
      );
      expect(refused).toBe(400);
      const next = await viaAgent(
        agent,
        api.path(4, 'checkpresent', { key: sha256Key(randomBytes(8)), clientuuid: randomUUID() }),
        { 'content-length': '0' },
        Buffer.alloc(0),
      );
      expect(next).toBe(200);
    } finally {
      agent.destroy();
    }
  });
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
    // The server may still be handing the bytes over; it settles on exactly what arrived.
    const offsets: unknown[] = [];
    await pollUntil(
      `putoffset ${cut}`,
      async () => {
        const result = await api.putoffset(key);
        expect(result.status).toBe(200);
        const { offset } = JSON.parse(result.body.toString('utf8')) as { offset: unknown };
        offsets.push(offset);
        return offset === cut ? true : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 200 },
    ).catch((error: unknown) => {
      throw new Error(`putoffset answered ${offsets.slice(-3).join(', ')}: ${String(error)}`);
    });
    expect(await contentLocation(served, key)).toBeUndefined();
    const rest = await api.put(key, content.subarray(cut), { offset: cut });
    expectJson(rest, 200, { stored: true, plusuuids: [] });
    const file = await contentLocation(served, key);
    expect(file).toBeDefined();
    expect((await readFile(file ?? '')).equals(content)).toBe(true);
  });
});
