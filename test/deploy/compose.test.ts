/* eslint-disable @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-call -- rendered manifests and parsed YAML are untyped data; the assertions check their shape */
/**
 * docker-compose.yml, checked by Debian's docker-compose (`docker-compose config`, which needs no
 * Docker engine; scripts/install-deps.sh installs it). Without it the check is skipped, except
 * under CI, where it must be there. Then the resolved file is checked against the cluster-mode
 * contract: the apps' commands and ports, Redis, the demo volume and the monitoring services.
 */
import { execFile } from 'node:child_process';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { parsePolicy } from '@annex-p2phttp/config';

const ROOT = path.resolve(__dirname, '../..');
const present = spawnSync('docker-compose', ['version'], { stdio: 'ignore' }).status === 0;

function compose(
  args: readonly string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile('docker-compose', args, { cwd: ROOT, timeout: 120_000 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') {
        reject(new Error(`docker-compose: ${error.message}`));
        return;
      }
      resolve({ code: error ? Number(error.code) : 0, stdout, stderr });
    });
  });
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Services = Record<string, any>;

describe('docker-compose.yml', () => {
  it('docker-compose is installed under CI', () => {
    if (process.env.CI) {
      expect(present, 'scripts/install-deps.sh installs docker-compose').toBe(true);
    }
  });

  it.skipIf(!present)('is valid for docker-compose config', { timeout: 180_000 }, async () => {
    const result = await compose(['-f', 'docker-compose.yml', 'config']);
    expect(result.code, result.stderr).toBe(0);
    const resolved = parseYaml(result.stdout) as { services: Services; volumes: object };
    checkServices(resolved.services);
    expect(Object.keys(resolved.volumes).sort()).toEqual(['redis-data', 'repos']);
  });

  it.skipIf(!present)(
    'is refused by docker-compose config when broken',
    { timeout: 180_000 },
    async () => {
      const text = await readFile(path.join(ROOT, 'docker-compose.yml'), 'utf8');
      const broken = text.replace(
        'condition: service_completed_successfully',
        'condition: finished',
      );
      expect(broken).not.toBe(text);
      const result = await new Promise<number>((resolve) => {
        const child = execFile(
          'docker-compose',
          ['-f', '-', 'config', '-q'],
          { cwd: ROOT },
          (error) => resolve(error ? Number(error.code ?? 1) : 0),
        );
        child.stdin!.end(broken);
      });
      expect(result).not.toBe(0);
    },
  );

  it('wires the apps as the cluster-mode contract says', async () => {
    const text = await readFile(path.join(ROOT, 'docker-compose.yml'), 'utf8');
    const file = parseYaml(text, { merge: true }) as { services: Services };
    checkServices(file.services);
  });
});

function checkServices(services: Services): void {
  expect(Object.keys(services).sort()).toEqual(
    [
      'gateway',
      'grafana',
      'init-demo',
      'lock-service',
      'prometheus',
      'proxy-worker',
      'redis',
    ].sort(),
  );
  const app = (name: string) => services[name] as { command: string[]; image: string };
  expect(app('gateway').command.slice(0, 5)).toEqual([
    'gateway',
    '--port',
    '9417',
    '--ops-listen',
    '0.0.0.0:9420',
  ]);
  // Redis keeps jobs and lock records across restarts: an append-only file on a volume.
  const redis = (services.redis as { command: string[] }).command.join(' ');
  expect(redis).toContain('--appendonly yes');
  expect(redis).toContain('--appendfsync everysec');
  expect(redis).toContain('--maxmemory-policy noeviction');
  expect(redis).toContain('--dir /data');
  expect(services.redis.volumes.map(String).join()).toMatch(/redis-data:\/data/);
  expect(app('proxy-worker').command).toEqual([
    'proxy-worker',
    '--directory',
    '/data/repos',
    '--data-port',
    '9418',
    '--advertise-url',
    'http://proxy-worker:9418',
    '--upload-idle',
    '60',
  ]);
  // A silent upload is cut at the gateway that receives it, and at the worker.
  const gatewayCommand = app('gateway').command;
  expect(gatewayCommand[gatewayCommand.indexOf('--upload-idle') + 1]).toBe('60');
  expect(app('lock-service').command).toEqual([
    'lock-service',
    '--directory',
    '/data/repos',
    '--health-port',
    '9419',
  ]);
  for (const name of ['gateway', 'proxy-worker', 'lock-service', 'init-demo']) {
    expect(services[name].image).toBe('annex-p2phttp:dev');
    expect(services[name].environment.REDIS_URL).toBe('redis://redis:6379');
    // Longer than an app takes to stop after SIGTERM at most (14 s), so it is never killed first.
    expect(services[name].stop_grace_period).toBe('15s');
  }
  for (const name of ['proxy-worker', 'lock-service', 'init-demo']) {
    expect(services[name].volumes.map(String).join()).toMatch(/repos:\/data\/repos/);
  }
  // Access per repository from the policy file, mounted as a directory; the demo stays open.
  const gateway = app('gateway').command;
  expect(gateway[gateway.indexOf('--policy') + 1]).toBe('/etc/annex-p2phttp/policy/policy.yaml');
  expect(services.gateway.volumes.map(String).join()).toMatch(
    /deploy\/policy:\/etc\/annex-p2phttp\/policy/,
  );
  expect(gateway.join(' ')).not.toMatch(/--wideopen|--unauth/);
  const policy = parsePolicy(
    readFileSync(path.join(ROOT, 'deploy/policy/policy.yaml'), 'utf8'),
    'policy.yaml',
  );
  expect(policy.ruleFor('demo')?.anonymous).toBe('full');
  const ports = JSON.stringify(services.gateway.ports);
  expect(ports).toMatch(/127\.0\.0\.1:9417:9417/);
  // The ops listener is reached by Prometheus inside the stack, never published.
  expect(ports).not.toMatch(/9420/);
}
