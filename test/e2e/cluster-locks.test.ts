/**
 * Cluster-mode retention locks with real things: a private redis-server, real git-annex
 * repositories, lock-services holding LOCKCONTENT on real git-annex-shell sessions, and
 * ClusterRetentionLocks instances standing for gateways. Whether a key is locked is always asked
 * of the repository itself: a separate git-annex-shell session tries REMOVE-BEFORE (it dies with
 * "content is locked" while a lock is held, answers FAILURE otherwise), or `git annex drop`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as http from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { lockServiceConfig, parseServeArgs } from '@annex-p2phttp/config';
import {
  closeRedis,
  ClusterRetentionLocks,
  LOCK_REQUEST_QUEUE,
  LocksUnavailableError,
  openRedis,
} from '@annex-p2phttp/locks';
import { type RepositoryTarget } from '@annex-p2phttp/protocol';
import { startLockService, type RunningLockService } from '../../apps/lock-service/src';
import { PrivateRedis } from '../support/redis';
import { lockedInRepository } from '../support/repos';
import {
  annexStatus,
  delay,
  keyOf,
  killPids,
  liveAnnexShells,
  makeServedRepo,
  pollUntil,
  PROJECT_BIN,
  Sandbox,
  type ServedRepo,
} from './harness';

const FILES = [
  'basic',
  'expiry',
  'cap-1',
  'cap-2',
  'cap-3',
  'killed',
  'stopped',
  'restart',
  'after',
  'unanswered',
  'double',
  'gateway-lost',
].concat(Array.from({ length: 6 }, (_, i) => `replica-${i}`));

let sandbox: Sandbox;
let repo: ServedRepo;
let redis: PrivateRedis;
const gateways: ClusterRetentionLocks[] = [];
const services: RunningLockService[] = [];
const children: ChildProcess[] = [];

const key = (name: string): string => keyOf(repo, `${name}.bin`);

function target(): RepositoryTarget {
  return {
    repoPath: '',
    serverUuid: repo.uuid,
    clientUuid: randomUUID(),
    bypass: [],
    version: 4,
    mode: 'full',
  };
}

async function gateway(
  options: Partial<ConstructorParameters<typeof ClusterRetentionLocks>[0]> = {},
): Promise<ClusterRetentionLocks> {
  const locks = new ClusterRetentionLocks({ redisUrl: redis.url, lockedFiles: 100, ...options });
  gateways.push(locks);
  await locks.ready();
  return locks;
}

async function lockService(): Promise<RunningLockService> {
  const config = lockServiceConfig(
    parseServeArgs(
      ['--redis', redis.url, '--repo', repo.dir, '--health-port', '0', '--bind', '127.0.0.1'],
      repo.dir,
    ),
  );
  const service = await startLockService(config, {
    holderTtlMs: 2000,
    sweepIntervalMs: 250,
    log: () => undefined,
  });
  services.push(service);
  return service;
}

async function stopService(service: RunningLockService): Promise<void> {
  await service.close();
  services.splice(services.indexOf(service), 1);
}

/** `annex-p2phttp lock-service` as a process of its own. */
async function lockServiceProcess(): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [PROJECT_BIN, 'lock-service', '--redis', redis.url, '--repo', repo.dir, '--health-port', '0'],
    { cwd: repo.dir, env: repo.env, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  children.push(child);
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  await pollUntil('the lock-service listens', () =>
    stderr.includes('listening on') ? true : undefined,
  );
  return child;
}

const shells = async () => (await liveAnnexShells([repo.dir])).length;

function getText(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

beforeAll(async () => {
  sandbox = await Sandbox.create('cluster-locks');
  repo = await makeServedRepo(
    sandbox,
    sandbox.path('served'),
    FILES.map((name, i) => ({ path: `${name}.bin`, size: 1000 + i })),
  );
  redis = await PrivateRedis.start();
});

afterAll(async () => {
  try {
    await Promise.all(gateways.map((g) => g.close()));
    await Promise.all(services.map((s) => s.close()));
    killPids(children.flatMap((c) => (c.exitCode === null && c.pid ? [c.pid] : [])));
    // Every session ended with its owner: nothing is left holding the repository.
    const left = await pollUntil(
      'no git-annex-shell left',
      async () => ((await shells()) === 0 ? true : undefined),
      { timeoutMs: 30_000 },
    ).catch(() => false);
    killPids((await liveAnnexShells([repo.dir])).map((p) => p.pid));
    expect(left).toBe(true);
  } finally {
    await redis?.stop();
    await sandbox?.remove();
  }
});

// A test that failed leaves nothing running for the next one.
afterEach(async () => {
  await Promise.all(services.splice(0).map((service) => service.close()));
  killPids(children.splice(0).flatMap((c) => (c.exitCode === null && c.pid ? [c.pid] : [])));
});

describe('cluster retention locks', () => {
  it('locks in the repository through one gateway and unlocks through another', async () => {
    const service = await lockService();
    const [a, b] = [await gateway(), await gateway()];
    const lockid = await a.lock(target(), key('basic'));
    expect(lockid).toMatch(/^[0-9a-f-]{36}$/);
    expect(await lockedInRepository(repo, key('basic'))).toBe(true);
    const drop = await annexStatus(repo, ['drop', '--force', 'basic.bin']);
    expect(drop.code).not.toBe(0);
    expect(drop.stderr).toContain('content is locked');
    expect(await b.isLocked(repo.uuid, key('basic'))).toBe(true);
    expect(await b.count()).toBe(1);
    expect((await a.store.get(lockid!))?.holder).toBe(service.holder);
    expect(await shells()).toBe(1);

    await b.unlock(lockid!);
    expect(await b.isLocked(repo.uuid, key('basic'))).toBe(false);
    await pollUntil('unlocked in the repository', async () =>
      (await lockedInRepository(repo, key('basic'))) ? undefined : true,
    );
    await pollUntil('the locking session ended', async () =>
      (await shells()) === 0 ? true : undefined,
    );
    expect((await annexStatus(repo, ['drop', '--force', 'basic.bin'])).code).toBe(0);
    // Absent content cannot be locked: the reservation is given back.
    expect(await a.lock(target(), key('basic'))).toBeNull();
    expect(await a.count()).toBe(0);
    await stopService(service);
  });

  it('keeps a lock while heartbeats run, and lets it expire on time after they stop', async () => {
    const service = await lockService();
    const ttlMs = 3000;
    const a = await gateway({ ttlMs, heartbeatMs: 500 });
    const b = await gateway({ ttlMs });
    const lockid = (await a.lock(target(), key('expiry')))!;
    expect(lockid).not.toBeNull();
    const keeper = (await b.keep(lockid))!;
    expect(keeper).not.toBeNull();
    // Held for well over its ttl while a keeplocked is open...
    await delay(3 * ttlMs);
    expect(await lockedInRepository(repo, key('expiry'))).toBe(true);
    expect(await a.isLocked(repo.uuid, key('expiry'))).toBe(true);
    // ...and for the ttl after the last heartbeat, not less.
    await keeper.end();
    const ended = Date.now();
    const expiresAt = (await a.store.get(lockid))!.expiresAt;
    expect(expiresAt).toBeGreaterThanOrEqual(ended + ttlMs - 1000);
    await delay(ttlMs / 3);
    expect(await lockedInRepository(repo, key('expiry'))).toBe(true);
    await pollUntil(
      'the lock expired in the repository',
      async () => ((await lockedInRepository(repo, key('expiry'))) ? undefined : true),
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    expect(Date.now()).toBeGreaterThanOrEqual(expiresAt);
    expect(await a.isLocked(repo.uuid, key('expiry'))).toBe(false);
    expect(await a.keep(lockid)).toBeNull();
    const metrics = await getText(`${service.healthUrl}/metrics`);
    expect(metrics.body).toMatch(/annex_p2phttp_lock_expirations_total\{app="lock-service"\} 1/);
    await stopService(service);
  });

  it('answers 503 when no lock-service takes the request, and leaves nothing behind', async () => {
    const a = await gateway({ requestTimeoutMs: 1500 });
    await expect(a.lock(target(), key('unanswered'))).rejects.toBeInstanceOf(LocksUnavailableError);
    expect(await a.count()).toBe(0);
    expect(await a.isLocked(repo.uuid, key('unanswered'))).toBe(false);
    // The request was taken back: no job waits for a lock-service to start.
    const connection = openRedis(redis.url, 'command');
    const queue = new Queue(LOCK_REQUEST_QUEUE, { connection, prefix: a.store.keys.bullPrefix });
    try {
      expect(await queue.getJobCounts('wait', 'active', 'delayed')).toEqual({
        wait: 0,
        active: 0,
        delayed: 0,
      });
    } finally {
      await queue.close();
      await closeRedis(connection);
    }
    const service = await lockService();
    await delay(1000);
    expect(service.locks.size).toBe(0);
    expect(await lockedInRepository(repo, key('unanswered'))).toBe(false);
    await stopService(service);
  });

  it('bounds live locks across gateways with --lockedfiles', async () => {
    const service = await lockService();
    const a = await gateway({ lockedFiles: 2 });
    const b = await gateway({ lockedFiles: 2 });
    const first = await a.lock(target(), key('cap-1'));
    const second = await b.lock(target(), key('cap-2'));
    expect(first).not.toBeNull();
    expect(second).not.toBeNull();
    expect(await a.lock(target(), key('cap-3'))).toBeNull();
    expect(await b.lock(target(), key('cap-3'))).toBeNull();
    expect(await lockedInRepository(repo, key('cap-3'))).toBe(false);
    await b.unlock(first!);
    const third = await a.lock(target(), key('cap-3'));
    expect(third).not.toBeNull();
    expect(await lockedInRepository(repo, key('cap-3'))).toBe(true);
    await a.unlock(second!);
    await a.unlock(third!);
    await stopService(service);
  });

  it('re-takes the locks of a lock-service killed by SIGKILL', async () => {
    const child = await lockServiceProcess();
    const a = await gateway();
    const lockid = (await a.lock(target(), key('killed')))!;
    expect(lockid).not.toBeNull();
    const holder = (await a.store.get(lockid))!.holder;
    expect(holder).toContain(`:${child.pid}:`);
    expect(await lockedInRepository(repo, key('killed'))).toBe(true);

    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    // Its git-annex-shell dies by a signal with it, and git-annex keeps the lock's retention
    // file: the repository still refuses removal, and the record tells every gateway.
    await pollUntil('the dead service’s session ended', async () =>
      (await shells()) === 0 ? true : undefined,
    );
    expect(await lockedInRepository(repo, key('killed'))).toBe(true);
    expect(await a.isLocked(repo.uuid, key('killed'))).toBe(true);

    const successor = await lockService();
    await pollUntil(
      'the new lock-service re-took the lock',
      async () => ((await a.store.get(lockid))?.holder === successor.holder ? true : undefined),
      { timeoutMs: 60_000 },
    );
    // The record names its new holder before that holder's session has the lock; meanwhile the
    // dead session's retention file keeps the content.
    await pollUntil('the new lock-service holds the lock in the repository', () =>
      successor.locks.lockids().includes(lockid) ? true : undefined,
    );
    expect(await lockedInRepository(repo, key('killed'))).toBe(true);
    expect(successor.locks.lockids()).toEqual([lockid]);
    await a.unlock(lockid);
    await pollUntil('unlocked', async () =>
      (await lockedInRepository(repo, key('killed'))) ? undefined : true,
    );
    await stopService(successor);
  });

  it('keeps its locks through SIGTERM and hands their records over at once', async () => {
    const child = await lockServiceProcess();
    const a = await gateway();
    const lockid = (await a.lock(target(), key('stopped')))!;
    expect(lockid).not.toBeNull();
    expect(await lockedInRepository(repo, key('stopped'))).toBe(true);
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    // Its session ended by a signal: the retention file stays, and the record lives on with
    // its holder marked dead.
    await pollUntil('its session ended', async () => ((await shells()) === 0 ? true : undefined));
    expect(await lockedInRepository(repo, key('stopped'))).toBe(true);
    expect(await a.isLocked(repo.uuid, key('stopped'))).toBe(true);
    const holder = (await a.store.get(lockid))!.holder;
    expect(await a.store.isHolderAlive(holder)).toBe(false);
    // A live instance adopts it at its first tick, without waiting for a holder TTL.
    const successor = await lockService();
    expect(successor.locks.lockids()).toEqual([lockid]);
    expect(await lockedInRepository(repo, key('stopped'))).toBe(true);
    await a.unlock(lockid);
    await pollUntil('unlocked', async () =>
      (await lockedInRepository(repo, key('stopped'))) ? undefined : true,
    );
    await stopService(successor);
  });

  it('records again what it holds when Redis restarts empty; requests fail fast meanwhile', async () => {
    const service = await lockService();
    const a = await gateway();
    const lockid = (await a.lock(target(), key('restart')))!;
    expect(lockid).not.toBeNull();
    const before = (await a.store.get(lockid))!;

    await redis.stop('SIGKILL');
    const started = Date.now();
    await expect(a.isLocked(repo.uuid, key('restart'))).rejects.toBeInstanceOf(
      LocksUnavailableError,
    );
    await expect(a.lock(target(), key('after'))).rejects.toBeInstanceOf(LocksUnavailableError);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(await lockedInRepository(repo, key('restart'))).toBe(true);
    const unready = await getText(`${service.healthUrl}/readyz`);
    expect(unready.status).toBe(503);
    expect(unready.body).toContain('Redis unreachable');
    expect((await getText(`${service.healthUrl}/healthz`)).status).toBe(200);

    await redis.restart();
    await pollUntil(
      'the record is back',
      async () => (await a.store.get(lockid).catch(() => undefined)) ?? undefined,
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    const after = (await a.store.get(lockid))!;
    expect(after).toMatchObject({
      holder: service.holder,
      key: before.key,
      repository: before.repository,
      expiresAt: before.expiresAt,
    });
    expect(await a.isLocked(repo.uuid, key('restart'))).toBe(true);
    expect(await lockedInRepository(repo, key('restart'))).toBe(true);
    expect((await getText(`${service.healthUrl}/readyz`)).status).toBe(200);

    // Recovered without restarting anything: new locks work, and unlock releases.
    const next = await pollUntil(
      'a lock after the restart',
      async () => (await a.lock(target(), key('after')).catch(() => undefined)) ?? undefined,
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    expect(await lockedInRepository(repo, key('after'))).toBe(true);
    await a.unlock(lockid);
    await a.unlock(next);
    await pollUntil('both unlocked', async () =>
      !(await lockedInRepository(repo, key('restart'))) &&
      !(await lockedInRepository(repo, key('after')))
        ? true
        : undefined,
    );
    await stopService(service);
  });

  it('re-establishes a kept lock after its lock-service was killed and Redis restarted empty', async () => {
    const child = await lockServiceProcess();
    const a = await gateway({ heartbeatMs: 300 });
    const lockid = (await a.lock(target(), key('double')))!;
    expect(lockid).not.toBeNull();
    const keeper = await a.keep(lockid);
    expect(keeper).not.toBeNull();

    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    await pollUntil('the dead service’s session ended', async () =>
      (await shells()) === 0 ? true : undefined,
    );
    expect(await lockedInRepository(repo, key('double'))).toBe(true);
    await redis.stop('SIGKILL');
    await redis.restart();
    // Only the gateway serving the keeplocked request knows of the lock now.
    const successor = await lockService();
    await pollUntil(
      'the gateway recorded the lock again, and a lock-service took it',
      async () =>
        (await a.store.get(lockid).catch(() => undefined))?.holder === successor.holder
          ? true
          : undefined,
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    expect(await a.isLocked(repo.uuid, key('double'))).toBe(true);
    expect(successor.locks.lockids()).toEqual([lockid]);
    expect(await lockedInRepository(repo, key('double'))).toBe(true);

    await keeper!.end();
    await a.unlock(lockid);
    await pollUntil('unlocked', async () =>
      (await lockedInRepository(repo, key('double'))) ? undefined : true,
    );
    await stopService(successor);
  });

  it('keeps a lock whose gateway is gone through a lock-service crash, until another takes it', async () => {
    const child = await lockServiceProcess();
    const a = await gateway({ heartbeatMs: 300 });
    const lockid = (await a.lock(target(), key('gateway-lost')))!;
    const keeper = await a.keep(lockid);
    expect(keeper).not.toBeNull();
    // The gateway goes away with its keeplocked request; then the lock-service crashes.
    await a.close();
    gateways.splice(gateways.indexOf(a), 1);
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    await pollUntil('the dead service’s session ended', async () =>
      (await shells()) === 0 ? true : undefined,
    );
    expect(await lockedInRepository(repo, key('gateway-lost'))).toBe(true);
    const b = await gateway();
    expect(await b.isLocked(repo.uuid, key('gateway-lost'))).toBe(true);
    const successor = await lockService();
    await pollUntil(
      'a live lock-service took the lock over',
      () => (successor.locks.lockids().includes(lockid) ? true : undefined),
      { timeoutMs: 60_000 },
    );
    expect(await lockedInRepository(repo, key('gateway-lost'))).toBe(true);
    await b.unlock(lockid);
    await pollUntil('unlocked', async () =>
      (await lockedInRepository(repo, key('gateway-lost'))) ? undefined : true,
    );
    await stopService(successor);
  });

  it('shares locks between two lock-service replicas, each held exactly once', async () => {
    const [one, two] = [await lockService(), await lockService()];
    const a = await gateway();
    const names = Array.from({ length: 6 }, (_, i) => `replica-${i}`);
    const lockids = await Promise.all(names.map((n) => a.lock(target(), key(n))));
    expect(lockids.every((id) => id !== null)).toBe(true);
    const held = [...one.locks.lockids(), ...two.locks.lockids()].sort();
    expect(held).toEqual([...(lockids as string[])].sort());
    for (const lockid of lockids) {
      const holder = (await a.store.get(lockid!))!.holder;
      expect([one.holder, two.holder]).toContain(holder);
      const owner = holder === one.holder ? one : two;
      expect(owner.locks.lockids()).toContain(lockid);
    }
    expect(await shells()).toBe(6);

    // One replica stops (SIGTERM): the other takes over every lock, each once.
    await stopService(one);
    await pollUntil('the survivor holds all', () => (two.locks.size === 6 ? true : undefined));
    await pollUntil('one session per lock', async () =>
      (await shells()) === 6 ? true : undefined,
    );
    for (const name of names) {
      expect(await lockedInRepository(repo, key(name))).toBe(true);
    }
    for (const lockid of lockids) {
      expect((await a.store.get(lockid!))!.holder).toBe(two.holder);
      await a.unlock(lockid!);
    }
    await pollUntil('all released', async () => ((await shells()) === 0 ? true : undefined));
    await stopService(two);
  });
});
