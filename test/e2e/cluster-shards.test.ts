/**
 * Cluster mode's cost does not grow with the number of repositories: a proxy worker serves its
 * repositories through the fixed --shards queues of its worker group, so the Redis clients of a
 * worker and a gateway (`CLIENT LIST` on the private Redis) are as many with 300 repositories as
 * with 10, even after the gateway sent a job to every one of them. And the real git-annex client
 * gets and copies through a repository whose shard queue it shares with many others.
 *
 * The repositories are copies of one template (`cp -a`), each with its own annex.uuid written
 * into its copied .git/config (as in many-repositories.test.ts).
 */
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import Redis from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_SHARDS } from '@annex-p2phttp/config';
import { ClusterKeys, shardOf } from '@annex-p2phttp/dispatch';
import { PrivateRedis } from '../support/redis';
import { P2PApi } from './api';
import {
  addAndCommit,
  annex,
  annexUrlFor,
  contentLocation,
  fileDigest,
  freePort,
  keyOf,
  killAllTracked,
  lookupKey,
  makeClientClone,
  makeServedRepo,
  pollUntil,
  run,
  Sandbox,
  spawnClusterApp,
  stopAndCollectLeftovers,
  untilReady,
  type RunningServer,
  type ServedRepo,
} from './harness';

const PREFIX = 'e2e-shards:';
const GROUP = 'shards';
const FEW = 10;
const MANY = 300;
const FILE = 'data/one.bin';

let sandbox: Sandbox;
let redis: PrivateRedis;
let inspect: Redis;
let template: ServedRepo;
/** A repository made in place (not a copy), served among the MANY, for the real client. */
let served: ServedRepo;
let key: string;
let gateway: RunningServer;
const everything: RunningServer[] = [];
const few: string[] = [];
const many: string[] = [];

/** Copies the template to `dir` with `uuid` as its annex.uuid. */
async function copyWithUuid(dir: string, uuid: string): Promise<void> {
  await run('cp', ['-a', template.dir, dir], { cwd: '/', env: process.env });
  const file = path.join(dir, '.git', 'config');
  const text = await readFile(file, 'utf8');
  await writeFile(file, text.replace(/^(\s*uuid\s*=\s*).*$/m, `$1${uuid}`));
}

/** `count` uuids of which the first DEFAULT_SHARDS fall on each shard in turn. */
function uuidsOnEveryShard(count: number): string[] {
  const uuids: string[] = [];
  for (let shard = 0; shard < DEFAULT_SHARDS; shard += 1) {
    let uuid = randomUUID();
    while (shardOf(uuid, DEFAULT_SHARDS) !== shard) {
      uuid = randomUUID();
    }
    uuids.push(uuid);
  }
  while (uuids.length < count) {
    uuids.push(randomUUID());
  }
  return uuids;
}

function context() {
  return { sandbox, repo: served, redisUrl: redis.url, prefix: PREFIX };
}

async function startWorker(directory: string, flag = '--directory'): Promise<RunningServer> {
  const port = await freePort();
  const worker = spawnClusterApp(
    context(),
    'proxy-worker',
    [
      flag,
      directory,
      '--bind',
      '127.0.0.1',
      '--data-port',
      String(port),
      '--jobs',
      '2',
      '--worker-group',
      GROUP,
    ],
    port,
  );
  everything.push(worker);
  await untilReady(worker, `proxy worker on ${port}`);
  return worker;
}

/** The Redis clients connected now, but for this test's own. */
async function clients(): Promise<number> {
  const own = await inspect.client('ID');
  const list = (await inspect.client('LIST')) as string;
  return list.split('\n').filter((line) => line.startsWith('id=') && !line.startsWith(`id=${own} `))
    .length;
}

/** The clients once their number held still for a second (connections open as they are used). */
async function steadyClients(): Promise<number> {
  let last = -1;
  return pollUntil(
    'the Redis clients steady',
    async () => {
      const now = await clients();
      const steady = now === last ? now : undefined;
      last = now;
      return steady;
    },
    { timeoutMs: 30_000, intervalMs: 1000 },
  );
}

/** Waits until the gateway serves every uuid, then sends a job (putoffset) to each. */
async function jobToEach(uuids: readonly string[]): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < uuids.length) {
        const uuid = uuids[next++]!;
        const api = new P2PApi(gateway.port, uuid);
        await pollUntil(`${uuid} served`, async () =>
          (await api.checkpresent(key)).status === 200 ? true : undefined,
        );
        const result = await api.putoffset(key);
        expect(result.status).toBe(200);
      }
    }),
  );
}

beforeAll(async () => {
  sandbox = await Sandbox.create('cluster-shards');
  redis = await PrivateRedis.start();
  inspect = new Redis(redis.url);
  template = await makeServedRepo(sandbox, sandbox.path('template'), [
    { path: FILE, content: 'one small annexed file\n' },
  ]);
  await rm(path.join(template.dir, '.git', 'hooks'), { recursive: true, force: true });
  key = keyOf(template, FILE);
  const fewRoot = sandbox.path('few');
  const manyRoot = sandbox.path('many');
  await mkdir(fewRoot);
  await mkdir(manyRoot);
  for (const [root, uuids, count] of [
    [fewRoot, few, FEW],
    [manyRoot, many, MANY],
  ] as const) {
    for (const [i, uuid] of uuidsOnEveryShard(count).entries()) {
      await copyWithUuid(path.join(root, `r${String(i).padStart(3, '0')}`), uuid);
      uuids.push(uuid);
    }
  }
  const staged = sandbox.path('staged');
  served = await makeServedRepo(sandbox, staged, [
    { path: 'one.bin', size: 100_000 },
    { path: 'mebibyte.bin', size: 1 << 20 },
  ]);
  served = { ...served, dir: path.join(manyRoot, 'served') };
  await rename(staged, served.dir);
  const port = await freePort();
  gateway = spawnClusterApp(
    context(),
    'gateway',
    ['--bind', '127.0.0.1', '--port', String(port), '--wideopen', '--queue-wait', '10'],
    port,
  );
  everything.push(gateway);
}, 300_000);

afterAll(async () => {
  try {
    inspect?.disconnect();
    const { leftovers } = await stopAndCollectLeftovers(everything, [sandbox.root]);
    expect(leftovers, 'git-annex-shell processes left running').toEqual([]);
  } finally {
    killAllTracked();
    await redis?.stop();
    await sandbox?.remove();
  }
});

describe('cluster mode with shard queues', () => {
  it('has as many Redis clients with 300 repositories as with 10', async () => {
    const first = await startWorker(sandbox.path('few'));
    await untilReady(gateway, 'gateway'); // ready once a worker serves
    await jobToEach(few);
    const withFew = await steadyClients();
    await first.stop();
    await pollUntil('the first worker gone from Redis', async () =>
      (await clients()) < withFew ? true : undefined,
    );
    const second = await startWorker(sandbox.path('many'));
    await jobToEach(many);
    const withMany = await steadyClients();
    console.log(`Redis clients: ${withFew} with ${FEW} repositories, ${withMany} with ${MANY}`);
    expect(withMany).toBe(withFew);
    // The worker's routes: one hash entry per uuid served, and its version.
    const keys = new ClusterKeys(PREFIX);
    const ids = await inspect.zrange(keys.workers, 0, -1);
    expect(ids).toHaveLength(1);
    expect(await inspect.hlen(keys.routes(ids[0]!))).toBe(MANY + 1 + 1);
    expect(second.exited).toBe(false);
  });

  it('serves get and copy --to of the real client through a shard shared with others', async () => {
    const shard = shardOf(served.uuid, DEFAULT_SHARDS);
    expect(many.filter((uuid) => shardOf(uuid, DEFAULT_SHARDS) === shard).length).toBeGreaterThan(
      0,
    );
    const client = await makeClientClone(
      sandbox,
      served,
      sandbox.path('client'),
      annexUrlFor(gateway.port),
    );
    await annex(client, ['get', 'one.bin', 'mebibyte.bin']);
    expect(await fileDigest(`${client.dir}/mebibyte.bin`)).toEqual(
      await fileDigest(`${served.dir}/mebibyte.bin`),
    );
    await addAndCommit(client, [{ path: 'new.bin', size: 300_000 }]);
    await annex(client, ['copy', '--to', 'origin', 'new.bin']);
    const location = await contentLocation(served, await lookupKey(client, 'new.bin'));
    expect(location).toBeDefined();
    expect((await fileDigest(location as string)).sha256).toBe(
      (await fileDigest(`${client.dir}/new.bin`)).sha256,
    );
  });

  it('answers for a repository that another worker of its group does not serve', async () => {
    // A second worker in the group serves one repository of its own only: it takes jobs and
    // queries of the shared queues for repositories it does not serve, and refuses them
    // unrun; the gateway sends them again until the worker that serves them takes them.
    const alone = sandbox.path('alone');
    const uuid = randomUUID();
    await copyWithUuid(alone, uuid);
    const other = await startWorker(alone, '--repo');
    const api = new P2PApi(gateway.port, uuid);
    await pollUntil("the other worker's repository served", async () =>
      (await api.checkpresent(key)).status === 200 ? true : undefined,
    );
    const statuses = new Map<number, number>();
    for (let round = 0; round < 10; round += 1) {
      for (const target of [served.uuid, many[round]!]) {
        const asked = new P2PApi(gateway.port, target);
        for (const result of await Promise.all([
          asked.checkpresent(keyOf(served, 'one.bin')),
          asked.putoffset(key),
          asked.gettimestamp(),
        ])) {
          statuses.set(result.status, (statuses.get(result.status) ?? 0) + 1);
        }
      }
    }
    expect(Object.fromEntries(statuses)).toEqual({ 200: 60 });
    expect((await api.putoffset(key)).status).toBe(200);
    await other.stop();
  });
});
