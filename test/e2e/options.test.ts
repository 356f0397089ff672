/**
 * Options of `git annex p2phttp` whose effect is not an answer over HTTP (README options table).
 * `--cpus N` bounds the threads that run at once: this server's JavaScript runs on one, its file
 * I/O on a pool of N (libuv's UV_THREADPOOL_SIZE, 4 without the option).
 */
import { readdir } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectStatus, P2PApi } from './api';
import {
  keyOf,
  killAllTracked,
  makeServedRepo,
  reportServerOutputOnFailure,
  RunningServer,
  Sandbox,
  serverKind,
  startServer,
  type ServedRepo,
} from './harness';

let sandbox: Sandbox;
let served: ServedRepo;
const servers: RunningServer[] = [];

reportServerOutputOnFailure(() => servers);

beforeAll(async () => {
  sandbox = await Sandbox.create('options');
  served = await makeServedRepo(sandbox, sandbox.path('served'), [{ path: 'a.bin', size: 1000 }]);
});

afterAll(async () => {
  try {
    await Promise.all(servers.map((server) => server.stop()));
  } finally {
    killAllTracked();
    await sandbox?.remove();
  }
});

/** Threads of the server process once it has read an object file (the pool starts then at the latest). */
async function threadsAfterAGet(extraArgs: string[]): Promise<number> {
  const server = await startServer({ sandbox, repo: served, auth: ['--wideopen'], extraArgs });
  servers.push(server);
  const api = new P2PApi(server.port, served.uuid);
  expectStatus(await api.get(keyOf(served, 'a.bin')), 200);
  const threads = (await readdir(`/proc/${server.pid}/task`)).length;
  await server.stop();
  return threads;
}

describe.skipIf(serverKind() !== 'project')('--cpus', () => {
  it('--cpus N runs file I/O on N threads: --cpus=12 has 10 threads more than --cpus 2', async () => {
    const two = await threadsAfterAGet(['--cpus', '2']);
    const twelve = await threadsAfterAGet(['--cpus=12']);
    const unset = await threadsAfterAGet([]);
    expect(twelve - two).toBe(10);
    expect(unset - two).toBe(2);
  });
});
