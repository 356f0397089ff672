/**
 * Cluster mode behind Redis Sentinel, failover under real client load, every part its own
 * process: one Redis primary, one replica and three sentinels (test/support/sentinel.ts); two
 * proxy workers, one lock-service and two gateways given the `redis+sentinel://` URL; two
 * git-annex clients (one per gateway) running get / drop / drop --from / copy --to loops, and a
 * retention lock held open with keeplocked.
 *
 * Mid-way through the loops the primary is killed with SIGKILL; Sentinel promotes the replica and
 * every app must find it by itself. The loops must finish (a command that failed during the
 * failover is run again, as a user would; git-annex itself does not retry a drop), every request
 * must be answered (200 or 503, never left hanging), the held lock must still block a remove,
 * the served repository must pass fsck, and the apps' metrics must show the new primary. Then the
 * old primary comes back as a replica and the sentinels fail over to it while the primary is
 * alive (it is demoted), under the same load, with the same checks.
 *
 * The seconds during which a probe got 503 around each failover are printed (the outage).
 */
import Redis from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connected, redisOptions } from '@annex-p2phttp/redis';
import { SentinelSet } from '../support/sentinel';
import { expectJson, expectLocked, httpRequest, P2PApi, type KeepLocked } from './api';
import {
  annex,
  annexStatus,
  annexUrlFor,
  contentLocation,
  delay,
  freePort,
  keyOf,
  killAllTracked,
  makeClientClone,
  makeServedRepo,
  pollUntil,
  reportServerOutputOnFailure,
  Sandbox,
  spawnClusterApp,
  stopAndCollectLeftovers,
  untilReady,
  type ClientRepo,
  type RunningServer,
  type ServedRepo,
} from './harness';

const PREFIX = 'e2e-sentinel:';
const KEPT = 'kept.bin';
const FILES = ['a1.bin', 'a2.bin', 'b1.bin', 'b2.bin'];

let sandbox: Sandbox;
let served: ServedRepo;
let set: SentinelSet;
const apps: RunningServer[] = [];
const gateways: RunningServer[] = [];
let lockService: RunningServer;
let session: KeepLocked | undefined;

reportServerOutputOnFailure(() => apps);

function spawnApp(
  command: 'gateway' | 'proxy-worker' | 'lock-service',
  options: string[],
  port: number,
): RunningServer {
  const context = { sandbox, repo: served, redisUrl: set.url, prefix: PREFIX };
  const app = spawnClusterApp(context, command, options, port);
  apps.push(app);
  return app;
}

beforeAll(async () => {
  sandbox = await Sandbox.create('cluster-sentinel');
  served = await makeServedRepo(sandbox, sandbox.path('served'), [
    { path: KEPT, size: 4000 },
    ...FILES.map((path) => ({ path, size: 300_000 })),
  ]);
  set = await SentinelSet.start();
  for (let i = 0; i < 2; i += 1) {
    const port = await freePort();
    const worker = spawnApp(
      'proxy-worker',
      ['--repo', served.dir, '--bind', '127.0.0.1', '--data-port', String(port)],
      port,
    );
    await untilReady(worker, `proxy worker ${i}`);
  }
  const healthPort = await freePort();
  lockService = spawnApp(
    'lock-service',
    ['--repo', served.dir, '--health-port', String(healthPort)],
    healthPort,
  );
  await untilReady(lockService, 'lock-service');
  for (let i = 0; i < 2; i += 1) {
    const port = await freePort();
    // A short lock ttl: the gateways heartbeat kept locks every 2 s.
    const gateway = spawnApp(
      'gateway',
      ['--bind', '127.0.0.1', '--port', String(port), '--wideopen', '--lock-ttl', '8'],
      port,
    );
    gateways.push(gateway);
    await untilReady(gateway, `gateway ${i}`);
  }
}, 180_000);

afterAll(async () => {
  try {
    session?.disconnect();
    const { leftovers } = await stopAndCollectLeftovers(apps, [sandbox.root]);
    expect(leftovers, 'git-annex-shell processes left running').toEqual([]);
  } finally {
    killAllTracked();
    await set?.close();
    await sandbox?.remove();
  }
});

/** Runs a git-annex command until it succeeds (at most `tries` times, a second apart). */
async function annexUntilDone(
  repo: ClientRepo,
  args: string[],
  retries: { count: number },
  tries = 20,
): Promise<void> {
  for (let attempt = 1; ; attempt += 1) {
    const result = await annexStatus(repo, args, 60_000);
    if (result.code === 0) {
      return;
    }
    if (attempt >= tries) {
      throw new Error(
        `git annex ${args.join(' ')}: failed ${tries} times\n${result.stderr}\n${await lockState()}`,
      );
    }
    retries.count += 1;
    await delay(1000);
  }
}

/** The lock records in Redis now, for a failure's message. */
async function lockState(): Promise<string> {
  const redis = new Redis(redisOptions(set.url, 'command'));
  try {
    await connected(redis, 5000);
    const cover = await redis.hgetall(`${PREFIX}locks:cover`);
    const ids = await redis.zrange(`${PREFIX}locks:expiry`, 0, -1, 'WITHSCORES');
    const records = await Promise.all(
      ids
        .filter((_id, i) => i % 2 === 0)
        .map(async (id) => JSON.stringify(await redis.hgetall(`${PREFIX}lock:${id}`))),
    );
    return `now ${Date.now()}\ncover ${JSON.stringify(cover)}\nexpiry ${JSON.stringify(ids)}\n${records.join('\n')}`;
  } catch (error) {
    return `lock state unknown: ${String(error)}`;
  } finally {
    redis.disconnect();
  }
}

/**
 * One client's loop over its files: get, drop (local), get, drop --from origin, copy --to
 * origin; `rounds` times. Calls `onRound` after each round.
 */
async function clientLoop(
  client: ClientRepo,
  files: string[],
  rounds: number,
  retries: { count: number },
  onRound: (round: number) => void,
): Promise<void> {
  for (let round = 1; round <= rounds; round += 1) {
    for (const file of files) {
      await annexUntilDone(client, ['get', '--', file], retries);
      await annexUntilDone(client, ['drop', '--', file], retries);
      await annexUntilDone(client, ['get', '--', file], retries);
      await annexUntilDone(client, ['drop', '--from', 'origin', '--', file], retries);
      await annexUntilDone(client, ['copy', '--to', 'origin', '--', file], retries);
    }
    onRound(round);
  }
}

/**
 * Checkpresent through a gateway every 50 ms until stopped: counts answers by status, and the
 * span from the first to the last 503 (the outage). A request that got no answer at all within
 * 20 s fails the test (never a hang).
 */
class Probe {
  readonly statuses = new Map<number, number>();
  firstFailure: number | undefined;
  lastFailure: number | undefined;
  private stopped = false;
  private readonly done: Promise<void>;
  private hung: Error | undefined;

  constructor(api: P2PApi, key: string) {
    this.done = (async () => {
      while (!this.stopped) {
        const started = Date.now();
        try {
          const result = await api.post('checkpresent', { key }, { timeoutMs: 20_000 });
          this.statuses.set(result.status, (this.statuses.get(result.status) ?? 0) + 1);
          if (result.status !== 200) {
            this.firstFailure ??= started;
            this.lastFailure = Date.now();
          }
        } catch (error) {
          this.hung = error as Error;
          return;
        }
        await delay(50);
      }
    })();
  }

  /** Seconds between the first and the last failed answer (0 when none failed). */
  get outageSeconds(): number {
    return this.firstFailure === undefined || this.lastFailure === undefined
      ? 0
      : (this.lastFailure - this.firstFailure) / 1000;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
    if (this.hung) {
      throw this.hung;
    }
  }
}

/** A counter's value in an app's /metrics (summed over its labels). */
async function metric(app: RunningServer, name: string): Promise<number> {
  const result = await httpRequest(app.port, '/metrics', { method: 'GET' });
  let total = 0;
  for (const line of result.body.toString('utf8').split('\n')) {
    const match = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`).exec(line);
    if (match) {
      total += Number(match[1]);
    }
  }
  return total;
}

describe('cluster mode behind Redis Sentinel', () => {
  it('rides out a crash of the primary and a forced failover under client load', async () => {
    const clients = [
      await makeClientClone(
        sandbox,
        served,
        sandbox.path('client-a'),
        annexUrlFor(gateways[0]!.port),
      ),
      await makeClientClone(
        sandbox,
        served,
        sandbox.path('client-b'),
        annexUrlFor(gateways[1]!.port),
      ),
    ];
    const apiA = new P2PApi(gateways[0]!.port, served.uuid);
    const apiB = new P2PApi(gateways[1]!.port, served.uuid);
    const kept = keyOf(served, KEPT);

    // A retention lock held open through gateway A for the whole test.
    const lockid = await pollUntil('a lock', async () => {
      const result = await apiA.lockcontent(kept);
      return result.status === 200 ? expectLocked(result) : undefined;
    });
    session = apiA.keeplocked(lockid);
    await session.written();
    expectJson(await apiB.remove(kept), 200, { removed: false, plusuuids: [] });

    const outages: number[] = [];
    const retries = { count: 0 };
    const phase = async (failover: () => Promise<void>) => {
      const probe = new Probe(apiB, kept);
      let triggered: Promise<void> | undefined;
      const trigger = (round: number) => {
        if (round === 1) {
          triggered ??= failover();
        }
      };
      await Promise.all([
        clientLoop(clients[0]!, ['a1.bin', 'a2.bin'], 3, retries, trigger),
        clientLoop(clients[1]!, ['b1.bin', 'b2.bin'], 3, retries, () => {}),
      ]);
      await triggered;
      await probe.stop();
      outages.push(probe.outageSeconds);
      // Every probe got an answer; those that were not 200 were 503.
      expect([...probe.statuses.keys()].filter((s) => s !== 200 && s !== 503)).toEqual([]);
      // The lock held throughout: a remove is refused, git-annex itself refuses to drop.
      const removed = await pollUntil('a remove answered', async () => {
        const result = await apiB.remove(kept);
        return result.status === 200 ? result : undefined;
      });
      expectJson(removed, 200, { removed: false, plusuuids: [] });
      const drop = await annexStatus(served, ['drop', '--force', KEPT]);
      expect(drop.code, 'git annex drop --force must be refused').not.toBe(0);
      expect(await contentLocation(served, kept)).toBeDefined();
      await annex(served, ['fsck', '--quiet'], 120_000);
      for (const file of FILES) {
        expect(await contentLocation(served, keyOf(served, file)), file).toBeDefined();
      }
    };

    // 1. The primary dies.
    const first = await set.primary();
    await phase(async () => {
      await first.stop('SIGKILL');
      await set.failedOverFrom(first.port);
    });
    for (const app of apps) {
      await pollUntil(`${app.describe().slice(0, 60)}: a new primary in its metrics`, async () =>
        (await metric(app, 'annex_p2phttp_redis_primary_changes_total')) >= 1 ? true : undefined,
      );
    }
    expect(await metric(gateways[0]!, 'annex_p2phttp_redis_reconnects_total')).toBeGreaterThan(0);

    // 2. It comes back as a replica, and the sentinels hand the primary role back to it.
    await set.rejoinAsReplica(first);
    await set.replicasInSync(1);
    const second = await set.primaryPort();
    await phase(async () => {
      await set.forceFailover();
      await set.failedOverFrom(second);
    });
    for (const app of apps) {
      await pollUntil(
        `${app.describe().slice(0, 60)}: the second primary in its metrics`,
        async () =>
          (await metric(app, 'annex_p2phttp_redis_primary_changes_total')) >= 2 ? true : undefined,
      );
    }
    console.log(
      `sentinel failover: 503 seen for ${outages.map((s) => s.toFixed(1)).join(' s, ')} s; ` +
        `${retries.count} client commands run again`,
    );

    // The lock is released at the end as usual.
    expectJson(await session.unlock(), 200, { locked: false });
    session = undefined;
    await pollUntil('the lock released', async () => {
      const result = await apiB.remove(kept);
      return result.status === 200 && result.body.toString().includes('true') ? true : undefined;
    });
  });
});
