/**
 * Stopping every role as an operator does, whatever the state of Redis: each app is started as
 * the CLI (`node bin/annex-p2phttp.js <role> …`) against a private redis-server and gets SIGTERM
 * (a) after Redis was killed, (b) while Redis accepts connections but never answers (a mute relay
 * in front of it), and (c) with a request or job in flight. Each must exit within its grace
 * period (10 s for what is in flight) plus a margin for a loaded machine, and leave none of its
 * git-annex-shell sessions running; a second signal must end it at once.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PrivateRedis, RedisRelay } from '../support/redis';
import { expectLocked, httpRequest, P2PApi, type HttpResult, type OpenPut } from './api';
import {
  annexShellsOf,
  contentLocation,
  delay,
  freePort,
  keyOf,
  killAllTracked,
  liveAnnexShells,
  makeServedRepo,
  pollUntil,
  reportServerOutputOnFailure,
  RunningServer,
  Sandbox,
  sha256Key,
  spawnClusterApp,
  startServer,
  stillRunningShells,
  stopAndCollectLeftovers,
  untilReady,
  uploadInProgress,
  type ProcessInfo,
  type ServedRepo,
} from './harness';

/** What the README promises requests and jobs in flight on SIGTERM. */
const GRACE_MS = 10_000;
/** Room for a loaded two-core machine on top of it. */
const MARGIN_MS = 5_000;
/** A second signal: "at once", with the same kind of room. */
const AT_ONCE_MS = 3_000;
const MiB = 1 << 20;
const PREFIX = 'e2e-shutdown:';

let sandbox: Sandbox;
let served: ServedRepo;
/** Everything the current test started; ended after it whatever happened. */
let apps: RunningServer[] = [];
let redises: PrivateRedis[] = [];
let relays: RedisRelay[] = [];

reportServerOutputOnFailure(() => apps);

beforeAll(async () => {
  sandbox = await Sandbox.create('shutdown');
  served = await makeServedRepo(sandbox, sandbox.path('served'), [
    { path: 'one.bin', size: 5000 },
    { path: 'locked.bin', size: 3000 },
  ]);
}, 120_000);

afterEach(async () => {
  for (const app of apps) {
    app.killGroup();
  }
  await Promise.all(redises.map((redis) => redis.stop('SIGKILL')));
  await Promise.all(relays.map((relay) => relay.close()));
  // Whatever a failed test left behind must not disturb the next one.
  await stopAndCollectLeftovers(apps, [sandbox.root]);
  apps = [];
  redises = [];
  relays = [];
});

afterAll(async () => {
  killAllTracked();
  await sandbox?.remove();
});

// ---------------------------------------------------------------------------------------------
// Starting the roles
// ---------------------------------------------------------------------------------------------

async function startRedis(): Promise<PrivateRedis> {
  const redis = await PrivateRedis.start();
  redises.push(redis);
  return redis;
}

async function startRelay(redis: PrivateRedis): Promise<RedisRelay> {
  const relay = await RedisRelay.start(redis);
  relays.push(relay);
  return relay;
}

/** `annex-p2phttp <command> --redis <redisUrl> … <args>`, as an operator starts it. */
function spawnRole(
  command: 'gateway' | 'serve' | 'proxy-worker' | 'lock-service',
  redisUrl: string,
  args: string[],
  port: number,
): RunningServer {
  const context = { sandbox, repo: served, redisUrl, prefix: PREFIX };
  const app = spawnClusterApp(context, command, args, port);
  apps.push(app);
  return app;
}

function get(port: number, path: string): Promise<HttpResult> {
  return httpRequest(port, path, { method: 'GET', timeoutMs: 10_000 });
}

/** Waits for the line an app prints once it started (and handles signals as documented). */
async function untilStarted(app: RunningServer): Promise<RunningServer> {
  await pollUntil(`${app.commandLine} started`, () => {
    if (app.exited) {
      throw new Error(app.describe());
    }
    return /listening on|advertised as/.test(app.output()) ? true : undefined;
  });
  return app;
}

async function ready(app: RunningServer): Promise<RunningServer> {
  await untilStarted(app);
  await untilReady(app, app.commandLine);
  return app;
}

async function startWorker(redisUrl: string): Promise<RunningServer> {
  const port = await freePort();
  const args = ['--repo', served.dir, '--bind', '127.0.0.1', '--data-port', String(port)];
  return ready(spawnRole('proxy-worker', redisUrl, [...args, '--jobs', '2'], port));
}

async function startLockService(redisUrl: string): Promise<RunningServer> {
  const port = await freePort();
  const args = ['--repo', served.dir, '--bind', '127.0.0.1', '--health-port', String(port)];
  return ready(spawnRole('lock-service', redisUrl, args, port));
}

/** A cluster gateway (`gateway`, or `serve` with --redis), once it serves the repository. */
async function startGateway(
  redisUrl: string,
  command: 'gateway' | 'serve' = 'gateway',
): Promise<RunningServer> {
  const port = await freePort();
  const args = ['--bind', '127.0.0.1', '--port', String(port), '--wideopen'];
  const gateway = spawnRole(command, redisUrl, args, port);
  await pollUntil(
    `gateway on ${port} serving`,
    async () => {
      if (gateway.exited) {
        throw new Error(gateway.describe());
      }
      return (await new P2PApi(port, served.uuid).gettimestamp()).status === 200 ? true : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200 },
  );
  return untilStarted(gateway);
}

async function startEmbedded(): Promise<RunningServer> {
  const server = await startServer({
    repo: served,
    sandbox,
    auth: ['--wideopen'],
    kind: 'project',
  });
  apps.push(server);
  return untilStarted(server);
}

// ---------------------------------------------------------------------------------------------
// What is in flight, and stopping
// ---------------------------------------------------------------------------------------------

/** A 4 MiB upload through `port` of which 1 MiB was sent; resolves once it reached a session. */
async function uploadArriving(port: number): Promise<{ upload: OpenPut; key: string }> {
  const body = randomBytes(4 * MiB);
  const key = sha256Key(body);
  const upload = new P2PApi(port, served.uuid).openPut(key, body, MiB);
  await upload.written();
  await pollUntil('the upload reaching git-annex', () =>
    uploadInProgress(served, key).then((yes) => (yes ? true : undefined)),
  );
  return { upload, key };
}

/** A lock on locked.bin taken through `port`, kept by an open keeplocked. */
async function lockHeld(port: number): Promise<void> {
  const api = new P2PApi(port, served.uuid);
  const lockid = expectLocked(await api.lockcontent(keyOf(served, 'locked.bin')));
  await api.keeplocked(lockid).written();
}

/** The app's own git-annex-shell sessions now (its children serving the test's repository). */
function sessionsOf(app: RunningServer): Promise<ProcessInfo[]> {
  return annexShellsOf(app.pid, [sandbox.root]);
}

/**
 * Sends `signal` and waits for the app to exit, at most `withinMs` (then it is killed);
 * returns how long it took (Infinity if it had to be killed) and its exit.
 */
async function signalAndTime(
  app: RunningServer,
  signal: NodeJS.Signals,
  withinMs = GRACE_MS + MARGIN_MS,
): Promise<{ ms: number; code: number | null; signal: NodeJS.Signals | null }> {
  const started = performance.now();
  process.kill(app.pid, signal);
  const exit = await Promise.race([app.waitExit(), delay(withinMs).then(() => undefined)]);
  if (exit === undefined) {
    app.killGroup();
    return { ms: Infinity, ...(await app.waitExit()) };
  }
  return { ms: performance.now() - started, ...exit };
}

/** SIGTERM: the app must be gone within its grace plus the margin. */
async function expectStopsInTime(app: RunningServer): Promise<number> {
  const { ms } = await signalAndTime(app, 'SIGTERM');
  expect(
    ms,
    `${app.commandLine}: still running ${GRACE_MS + MARGIN_MS} ms after SIGTERM`,
  ).toBeLessThan(GRACE_MS + MARGIN_MS);
  return ms;
}

/** Stops what is left of the test's apps the same way and checks that no session is left. */
async function expectAllStopAndNothingLeft(): Promise<void> {
  for (const app of apps) {
    if (!app.exited) {
      await expectStopsInTime(app);
    }
  }
  expect(await liveAnnexShells([sandbox.root])).toEqual([]);
}

function log(message: string): void {
  console.log(`shutdown: ${message}`);
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

describe('serve (embedded)', () => {
  it('stops within its grace with an upload arriving and a lock kept, ending its sessions', async () => {
    const server = await startEmbedded();
    await lockHeld(server.port);
    const { upload, key } = await uploadArriving(server.port);
    // The lock's session; the upload arriving is staged and holds none.
    const sessions = await sessionsOf(server);
    expect(sessions.length).toBeGreaterThanOrEqual(1);
    const ms = await expectStopsInTime(server);
    log(`serve with an upload arriving and a lock kept: exited ${Math.round(ms)} ms after SIGTERM`);
    expect(await stillRunningShells(sessions)).toEqual([]);
    upload.destroy();
    expect(await contentLocation(served, key)).toBeUndefined();
    await expectAllStopAndNothingLeft();
  });

  it('exits at once on a second signal, ending its sessions', async () => {
    const server = await startEmbedded();
    await lockHeld(server.port);
    const { upload } = await uploadArriving(server.port);
    const sessions = await sessionsOf(server);
    expect(sessions.length).toBeGreaterThanOrEqual(2);
    process.kill(server.pid, 'SIGTERM');
    await delay(1000);
    expect(server.exited).toBe(false); // the upload still has its grace
    const { ms } = await signalAndTime(server, 'SIGINT', AT_ONCE_MS);
    log(`serve: exited ${Math.round(ms)} ms after a second signal`);
    expect(ms).toBeLessThan(AT_ONCE_MS);
    expect(await stillRunningShells(sessions)).toEqual([]);
    upload.destroy();
    await expectAllStopAndNothingLeft();
  });
});

describe('gateway', () => {
  it.each(['gateway', 'serve'] as const)(
    '%s stops within its grace after Redis was killed',
    async (command) => {
      const redis = await startRedis();
      await startWorker(redis.url);
      const gateway = await startGateway(redis.url, command);
      // Use both lanes, so that the gateway has a queue, its events reader and a reply channel.
      const api = new P2PApi(gateway.port, served.uuid);
      expect((await api.checkpresent(keyOf(served, 'one.bin'))).status).toBe(200);
      expect((await api.putoffset(keyOf(served, 'one.bin'))).status).toBe(200);
      await redis.stop('SIGKILL');
      await pollUntil('the gateway noticing', async () =>
        (await get(gateway.port, '/readyz')).status === 503 ? true : undefined,
      );
      const ms = await expectStopsInTime(gateway);
      log(`${command} with Redis killed: exited ${Math.round(ms)} ms after SIGTERM`);
      expect(gateway.output()).toMatch(/could not .*: Redis unreachable/);
      await expectAllStopAndNothingLeft();
    },
  );

  it('stops within its grace while Redis accepts connections but never answers', async () => {
    const redis = await startRedis();
    const relay = await startRelay(redis);
    await startWorker(redis.url);
    const gateway = await startGateway(relay.url);
    const api = new P2PApi(gateway.port, served.uuid);
    expect((await api.checkpresent(keyOf(served, 'one.bin'))).status).toBe(200);
    expect((await api.putoffset(keyOf(served, 'one.bin'))).status).toBe(200);
    relay.mute();
    const ms = await expectStopsInTime(gateway);
    log(`gateway with a mute Redis: exited ${Math.round(ms)} ms after SIGTERM`);
    await expectAllStopAndNothingLeft();
  });

  it('stops within its grace with an upload that never finishes', async () => {
    const redis = await startRedis();
    const worker = await startWorker(redis.url);
    const gateway = await startGateway(redis.url);
    const { upload, key } = await uploadArriving(gateway.port);
    const ms = await expectStopsInTime(gateway);
    log(`gateway with an upload arriving: exited ${Math.round(ms)} ms after SIGTERM`);
    expect(ms).toBeGreaterThanOrEqual(GRACE_MS - 1000); // the upload had its grace
    upload.destroy();
    // The worker ends the session of the upload the gateway cut.
    await pollUntil('the upload ended on the worker', async () => {
      const metrics = (await get(worker.port, '/metrics')).body.toString('utf8');
      return /^annex_p2phttp_pool_connections\{state="active"[^}]*\} 0$/m.test(metrics)
        ? true
        : undefined;
    });
    expect(await contentLocation(served, key)).toBeUndefined();
    await expectAllStopAndNothingLeft();
  });
});

describe('proxy-worker', () => {
  it('stops within its grace after Redis was killed', async () => {
    const redis = await startRedis();
    const worker = await startWorker(redis.url);
    await redis.stop('SIGKILL');
    await pollUntil('the worker noticing', async () =>
      (await get(worker.port, '/readyz')).status === 503 ? true : undefined,
    );
    const ms = await expectStopsInTime(worker);
    log(`proxy-worker with Redis killed: exited ${Math.round(ms)} ms after SIGTERM`);
    expect(worker.output()).toMatch(/could not withdraw the advert: Redis unreachable/);
    await expectAllStopAndNothingLeft();
  });

  it('stops within its grace while Redis accepts connections but never answers', async () => {
    const redis = await startRedis();
    const relay = await startRelay(redis);
    const worker = await startWorker(relay.url);
    relay.mute();
    const ms = await expectStopsInTime(worker);
    log(`proxy-worker with a mute Redis: exited ${Math.round(ms)} ms after SIGTERM`);
    await expectAllStopAndNothingLeft();
  });

  it('holds no session for an upload still arriving at a gateway: it stops, Redis killed', async () => {
    const redis = await startRedis();
    const worker = await startWorker(redis.url);
    const gateway = await startGateway(redis.url);
    // The gateway stages the body and sends the job only once the body is complete.
    const body = randomBytes(4 * MiB);
    const upload = new P2PApi(gateway.port, served.uuid).openPut(sha256Key(body), body, MiB);
    await upload.written();
    await delay(500);
    expect(await sessionsOf(worker)).toEqual([]);
    await redis.stop('SIGKILL');
    const ms = await expectStopsInTime(worker);
    log(
      `proxy-worker with an upload arriving at a gateway, Redis killed: exited ${Math.round(ms)} ms`,
    );
    upload.destroy();
    await expectAllStopAndNothingLeft();
  });

  it('exits at once on a signal while it is still starting (waiting for Redis)', async () => {
    const port = await freePort();
    const nowhere = `redis://127.0.0.1:${await freePort()}`;
    const args = ['--repo', served.dir, '--bind', '127.0.0.1', '--data-port', String(port)];
    const worker = spawnRole('proxy-worker', nowhere, args, port);
    // With no Redis it waits 10 s for one before it goes on starting.
    await delay(2000);
    expect(worker.output()).not.toMatch(/advertised as/);
    const { ms } = await signalAndTime(worker, 'SIGTERM', AT_ONCE_MS);
    log(`proxy-worker still starting: exited ${Math.round(ms)} ms after SIGTERM`);
    expect(ms).toBeLessThan(AT_ONCE_MS);
    await expectAllStopAndNothingLeft();
  });
});

describe('lock-service', () => {
  /** A worker and a gateway on `redisUrl`, a lock-service on `serviceRedisUrl`, a lock held. */
  async function lockServiceHolding(
    redisUrl: string,
    serviceRedisUrl = redisUrl,
  ): Promise<{ service: RunningServer; sessions: ProcessInfo[] }> {
    await startWorker(redisUrl);
    const service = await startLockService(serviceRedisUrl);
    const gateway = await startGateway(redisUrl);
    await lockHeld(gateway.port);
    const sessions = await sessionsOf(service);
    expect(sessions.length).toBe(1);
    return { service, sessions };
  }

  it('stops within its grace after Redis was killed, ending the session of its lock', async () => {
    const redis = await startRedis();
    const { service, sessions } = await lockServiceHolding(redis.url);
    await redis.stop('SIGKILL');
    await pollUntil('the lock-service noticing', async () =>
      (await get(service.port, '/readyz')).status === 503 ? true : undefined,
    );
    const ms = await expectStopsInTime(service);
    log(`lock-service with Redis killed: exited ${Math.round(ms)} ms after SIGTERM`);
    expect(await stillRunningShells(sessions)).toEqual([]);
    await expectAllStopAndNothingLeft();
  });

  it('stops within its grace while Redis accepts connections but never answers', async () => {
    const redis = await startRedis();
    const relay = await startRelay(redis);
    const { service, sessions } = await lockServiceHolding(redis.url, relay.url);
    relay.mute();
    const ms = await expectStopsInTime(service);
    log(`lock-service with a mute Redis: exited ${Math.round(ms)} ms after SIGTERM`);
    expect(await stillRunningShells(sessions)).toEqual([]);
    await expectAllStopAndNothingLeft();
  });

  it('stops within its grace with a lock held and kept, ending its session', async () => {
    const redis = await startRedis();
    const { service, sessions } = await lockServiceHolding(redis.url);
    const ms = await expectStopsInTime(service);
    log(`lock-service with a lock kept: exited ${Math.round(ms)} ms after SIGTERM`);
    expect(await stillRunningShells(sessions)).toEqual([]);
    await expectAllStopAndNothingLeft();
  });
});
