/**
 * Sessions are shared fairly between clients (libs/p2p/src/fair-queue.ts): a client that has many
 * requests waiting for a session does not make another client's request wait behind all of them.
 * Anonymous clients are told apart by address, here the X-Forwarded-For of a trusted proxy.
 * Runs against the server that `E2E_SERVER` names (embedded or cluster; --jobs 4).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectJson, P2PApi, type HttpResult } from './api';
import {
  delay,
  makeServedRepo,
  reportServerOutputOnFailure,
  RunningServer,
  Sandbox,
  sha256Key,
  startServer,
  stopAndCollectLeftovers,
  type ServedRepo,
} from './harness';

const GREEDY_REQUESTS = 120;

let sandbox: Sandbox;
let served: ServedRepo;
let server: RunningServer | undefined;

reportServerOutputOnFailure(() => [server]);

beforeAll(async () => {
  sandbox = await Sandbox.create('fairness');
  served = await makeServedRepo(sandbox, sandbox.path('served'), [{ path: 'a.txt', size: 10 }]);
  server = await startServer({
    sandbox,
    repo: served,
    auth: ['--unauth-appendonly'],
    extraArgs: ['--trust-forwarded-for'],
  });
});

afterAll(async () => {
  await stopAndCollectLeftovers([server], [served.dir]);
  await sandbox.remove();
});

function checkpresentFrom(api: P2PApi, address: string): Promise<HttpResult> {
  const key = sha256Key(randomBytes(32));
  return api.post('checkpresent', { key }, { headers: { 'x-forwarded-for': address } });
}

/** A small put: git-annex takes a while to store it, holding its session meanwhile. */
function putFrom(api: P2PApi, address: string): Promise<HttpResult> {
  const content = randomBytes(1024);
  return api.post(
    'put',
    { key: sha256Key(content), associatedfile: '', offset: 0 },
    {
      headers: {
        'content-type': 'application/octet-stream',
        'x-git-annex-data-length': String(content.length),
        'x-forwarded-for': address,
      },
      body: content,
      timeoutMs: 120_000,
    },
  );
}

describe('sessions shared between clients', () => {
  it('a request of one client does not wait behind the queued puts of another', async () => {
    const greedy = new P2PApi(server!.port, served.uuid);
    const other = new P2PApi(server!.port, served.uuid);
    let greedyDone = 0;
    const burst = Array.from({ length: GREEDY_REQUESTS }, () =>
      putFrom(greedy, '10.0.0.1').then((result) => {
        greedyDone += 1;
        return result;
      }),
    );
    // The burst is queued at the server before the other client asks.
    await delay(300);
    const before = greedyDone;
    const answer = await checkpresentFrom(other, '10.0.0.2');
    const overtaken = greedyDone - before;
    expectJson(answer, 200, { present: false });
    for (const result of await Promise.all(burst)) {
      expectJson(result, 200, { stored: true, plusuuids: [] });
    }
    // In one FIFO queue the other request would wait behind every queued request of the first
    // client; shared fairly, it gets one of the next free sessions.
    expect(before, 'the burst was still queued when the other client asked').toBeLessThan(
      GREEDY_REQUESTS / 2,
    );
    expect(overtaken, `overtaken by ${overtaken} puts`).toBeLessThan(GREEDY_REQUESTS / 4);
  });
});
