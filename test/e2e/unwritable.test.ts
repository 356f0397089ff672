/**
 * A served repository this process cannot write to (in a container: a volume owned by another
 * uid; here: its annex directory made immutable with `chattr +i`, which even root cannot write
 * to). Reads would work and the first upload would fail deep in git-annex; instead every role
 * that writes there (the embedded server, the proxy worker, the lock-service) says at start which
 * directory and what to do, and /readyz answers 503 naming it. Needs root and a file system with
 * the immutable attribute (CI has both); elsewhere it is skipped with a message.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as http from 'node:http';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PrivateRedis } from '../support/redis';
import { httpRequest } from './api';
import {
  freePort,
  isReference,
  killAllTracked,
  makeServedRepo,
  pollUntil,
  PROJECT_BIN,
  reportServerOutputOnFailure,
  RunningServer,
  Sandbox,
  startServer,
  type ServedRepo,
} from './harness';

function chattr(flag: '+i' | '-i', dir: string): boolean {
  try {
    execFileSync('chattr', [flag, dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function getText(port: number, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: urlPath, agent: false }, (response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

describe.skipIf(isReference())('a served repository that cannot be written to', () => {
  let sandbox: Sandbox;
  let served: ServedRepo;
  let annexDir: string;
  let immutable = false;
  let server: RunningServer | undefined;
  let redis: PrivateRedis | undefined;
  const children: ChildProcess[] = [];

  reportServerOutputOnFailure(() => [server]);

  beforeAll(async () => {
    sandbox = await Sandbox.create('unwritable');
    served = await makeServedRepo(sandbox, sandbox.path('served'), [{ path: 'a.bin', size: 1000 }]);
    annexDir = path.join(served.dir, '.git', 'annex');
    immutable = chattr('+i', annexDir);
    if (!immutable) {
      console.warn(
        'unwritable.test.ts: SKIPPED, chattr +i is not possible here (needs root and ext4 or similar)',
      );
    }
  });

  afterAll(async () => {
    try {
      await server?.stop();
      for (const child of children) {
        child.kill('SIGKILL');
      }
      await redis?.stop('SIGKILL');
    } finally {
      if (immutable) {
        chattr('-i', annexDir);
      }
      killAllTracked();
      await sandbox?.remove();
    }
  });

  it('embedded: the log says which directory and what to do, /readyz answers 503', async (context) => {
    if (!immutable) {
      context.skip();
    }
    server = await startServer({ sandbox, repo: served, auth: ['--wideopen'] });
    const warning = await pollUntil('the warning', () =>
      server!
        .output()
        .split('\n')
        .find((line) => line.includes('cannot write')),
    );
    const line = JSON.parse(warning) as { level: string; msg: string; path: string };
    expect(line.level).toBe('warn');
    expect(line.path).toBe(annexDir);
    expect(line.msg).toContain(`cannot write to ${annexDir}`);
    expect(line.msg).toContain('docker run --user');
    expect(line.msg).toContain('chown -R');

    const ready = await httpRequest(server.port, '/readyz', { method: 'GET' });
    expect(ready.status).toBe(503);
    const checks = (
      JSON.parse(ready.body.toString()) as { checks: { name: string; ok: boolean }[] }
    ).checks;
    expect(checks.find((check) => check.name === 'writable')?.ok).toBe(false);
    // Alive all the same: reads still work, and an orchestrator must not restart it in a loop.
    expect((await httpRequest(server.port, '/healthz', { method: 'GET' })).status).toBe(200);
  });

  it('cluster: the proxy worker and the lock-service say so and are not ready', async (context) => {
    if (!immutable) {
      context.skip();
    }
    redis = await PrivateRedis.start();
    const dataPort = await freePort();
    const healthPort = await freePort();
    const outputs = new Map<string, string>();
    const launch = (name: string, args: string[]) => {
      const child = spawn(process.execPath, [PROJECT_BIN, name, ...args], {
        cwd: served.dir,
        env: sandbox.env(),
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      children.push(child);
      outputs.set(name, '');
      child.stderr.on('data', (chunk: Buffer) =>
        outputs.set(name, outputs.get(name) + chunk.toString('utf8')),
      );
    };
    const common = ['--redis', redis.url, '--repo', served.dir, '--bind', '127.0.0.1'];
    launch('proxy-worker', [...common, '--data-port', String(dataPort)]);
    launch('lock-service', [...common, '--health-port', String(healthPort)]);
    for (const [name, port] of [
      ['proxy-worker', dataPort],
      ['lock-service', healthPort],
    ] as const) {
      const ready = await pollUntil(`${name} answers /readyz`, async () => {
        try {
          return await getText(port, '/readyz');
        } catch {
          return undefined;
        }
      });
      expect(ready.status, name).toBe(503);
      expect(ready.body, name).toContain(`cannot write to ${annexDir}`);
      const log = outputs.get(name) ?? '';
      expect(log, name).toContain(`cannot write to ${annexDir}`);
      expect(log, name).toContain('docker run --user');
    }
  });
});
