/* eslint-disable @typescript-eslint/no-unsafe-member-access -- rendered manifests and parsed YAML are untyped data; the assertions check their shape */
/**
 * The container image, checked without a Docker engine: the Dockerfile parses into the stages
 * and instructions intended (multi-stage, production dependencies only, git-annex from the
 * project's install script, non-root user, entrypoint and healthcheck), .dockerignore keeps the
 * build context small, the healthcheck finds each app's port from its command line, and the demo
 * repository script makes a real git-annex repository once.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { healthTarget } = require('../../deploy/docker/healthcheck.js') as {
  healthTarget: (argv: string[]) => { url: string; socketPath?: string };
};

const ROOT = path.resolve(__dirname, '../..');

interface Instruction {
  op: string;
  args: string;
}

/** Dockerfile → instructions (continuations joined, comments dropped), split into stages. */
function parseDockerfile(text: string): { name: string; from: string; body: Instruction[] }[] {
  const lines = text.replace(/\\\n/g, ' ').split('\n');
  const stages: { name: string; from: string; body: Instruction[] }[] = [];
  for (const raw of lines) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) {
      continue;
    }
    const match = /^([A-Z]+)\s+(.*)$/.exec(line);
    expect(match, `not an instruction: ${line}`).not.toBeNull();
    const [, op, args] = match!;
    expect([
      'FROM',
      'RUN',
      'COPY',
      'WORKDIR',
      'ENV',
      'USER',
      'VOLUME',
      'EXPOSE',
      'HEALTHCHECK',
      'STOPSIGNAL',
      'ENTRYPOINT',
      'CMD',
    ]).toContain(op);
    if (op === 'FROM') {
      const from = /^(\S+)\s+AS\s+(\S+)$/.exec(args!);
      expect(from, line).not.toBeNull();
      stages.push({ from: from![1]!, name: from![2]!, body: [] });
    } else {
      expect(stages.length, `${op} before FROM`).toBeGreaterThan(0);
      stages.at(-1)!.body.push({ op: op!, args: args!.replace(/\s+/g, ' ') });
    }
  }
  return stages;
}

describe('Dockerfile', () => {
  it('builds in one stage, installs production dependencies in another, runs as non-root', async () => {
    const text = await readFile(path.join(ROOT, 'Dockerfile'), 'utf8');
    // No `# syntax=` directive: it makes BuildKit fetch a frontend image from a registry, which
    // offline and air-gapped builds cannot do.
    expect(text).not.toMatch(/^#\s*syntax\s*=/im);
    const stages = parseDockerfile(text);
    expect(stages.map((s) => s.name)).toEqual(['build', 'deps', 'runtime']);
    for (const stage of stages) {
      // The current Node.js LTS (Node 20 reached its end of life in April 2026).
      expect(stage.from).toMatch(/^node:24-bookworm-slim$/);
    }
    const [build, deps, runtime] = stages as [
      (typeof stages)[0],
      (typeof stages)[0],
      (typeof stages)[0],
    ];
    const runs = (s: typeof build) => s.body.filter((i) => i.op === 'RUN').map((i) => i.args);
    expect(runs(build)[0]).toBe('npm ci && npm run build');
    expect(runs(deps).join(' ')).toMatch(/npm ci --omit=dev/);
    expect(runs(runtime)[0]).toMatch(/^bash \/tmp\/install-deps.sh --runtime/);
    expect(runtime.body.some((i) => i.op === 'COPY' && i.args.startsWith('--from=deps'))).toBe(
      true,
    );
    expect(runtime.body.some((i) => i.op === 'COPY' && i.args.startsWith('--from=build'))).toBe(
      false,
    );
    // No mirror host named anywhere: apt sources come from the base image.
    expect(runs(runtime).join(' ')).not.toMatch(/https?:\/\//);

    const last = (op: string) => runtime.body.filter((i) => i.op === op).at(-1)?.args;
    expect(last('USER')).toBe('10001:10001');
    const userAt = runtime.body.findIndex((i) => i.op === 'USER');
    expect(runtime.body.slice(userAt).some((i) => i.op === 'RUN')).toBe(false);
    expect(JSON.parse(last('ENTRYPOINT')!)).toEqual(['/usr/bin/tini', '--', 'annex-p2phttp']);
    expect(JSON.parse(last('CMD')!)).toEqual(['serve', '--directory', '/data/repos']);
    expect(last('HEALTHCHECK')).toMatch(/CMD \["node", "\/app\/deploy\/docker\/healthcheck.js"\]$/);
    expect(last('EXPOSE')).toBe('9417 9418 9419');
  });

  it('copies into the runtime every folder a workspace ships (package.json "files")', async () => {
    const text = await readFile(path.join(ROOT, 'Dockerfile'), 'utf8');
    const [build] = parseDockerfile(text);
    const copy = build!.body.find((i) => i.op === 'RUN' && i.args.includes('/out'))!.args;
    const copied = /for f in ([^;]+); do/.exec(copy)?.[1]?.split(' ') ?? [];
    const shipped = new Set<string>();
    for (const group of ['libs', 'apps']) {
      for (const name of await readdir(path.join(ROOT, group))) {
        const manifest = JSON.parse(
          await readFile(path.join(ROOT, group, name, 'package.json'), 'utf8'),
        ) as { files?: string[] };
        for (const entry of manifest.files ?? ['dist']) {
          shipped.add(entry);
        }
      }
    }
    // libs/locks reads its Redis scripts from lua/ beside dist/.
    expect(shipped).toContain('lua');
    expect(copied.sort()).toEqual([...shipped].sort());
  });

  it('.dockerignore leaves out what the build does not need, but not what it does', async () => {
    const ignore = (await readFile(path.join(ROOT, '.dockerignore'), 'utf8'))
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('#'));
    for (const pattern of ['**/node_modules', '**/dist', '.git', 'test']) {
      expect(ignore).toContain(pattern);
    }
    // `npm run build` compiles scripts/bench, which uses test/support.
    expect(ignore.indexOf('!test/support')).toBeGreaterThan(ignore.indexOf('test'));
    for (const needed of [
      'package.json',
      'package-lock.json',
      'libs',
      'apps',
      'bin',
      'scripts',
      'deploy',
    ]) {
      expect(ignore).not.toContain(needed);
    }
  });

  it('install-deps.sh --runtime is valid shell and refuses unknown options', async () => {
    const script = path.join(ROOT, 'scripts/install-deps.sh');
    expect((await run('bash', ['-n', script])).code).toBe(0);
    const bad = await run('bash', [script, '--bogus']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/usage/);
  });
});

describe('healthcheck.js', () => {
  it('asks each app on its own port', () => {
    const tini = ['/usr/bin/tini', '--', 'annex-p2phttp'];
    expect(healthTarget([...tini, 'serve', '--directory', '/data/repos']).url).toBe(
      'http://127.0.0.1:9417/healthz',
    );
    expect(healthTarget([...tini, 'gateway', '--port', '8080', '--wideopen']).url).toBe(
      'http://127.0.0.1:8080/healthz',
    );
    expect(healthTarget([...tini, 'proxy-worker', '--data-port=9500', '--port', '1']).url).toBe(
      'http://127.0.0.1:9500/healthz',
    );
    expect(healthTarget([...tini, 'lock-service', '--directory', '/d']).url).toBe(
      'http://127.0.0.1:9419/healthz',
    );
    expect(
      healthTarget(['node', '/app/bin/annex-p2phttp.js', 'gateway', '--certfile', 'c']).url,
    ).toBe('https://127.0.0.1:9417/healthz');
    expect(healthTarget(['annex-p2phttp', 'serve', '--bind', '::1']).url).toBe(
      'http://[::1]:9417/healthz',
    );
    expect(healthTarget(['annex-p2phttp', 'serve', '--socket', '/run/a.sock'])).toEqual({
      url: 'http://localhost/healthz',
      socketPath: '/run/a.sock',
    });
    expect(() => healthTarget(['sh', '-c', 'true'])).toThrow(/not an annex-p2phttp app/);
  });

  it('fails with a message when PID 1 is not an annex-p2phttp app', async () => {
    const result = await run(process.execPath, [path.join(ROOT, 'deploy/docker/healthcheck.js')]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^healthcheck: /);
  });
});

describe('init-demo.sh', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  it('creates the demo repository and its bundle once', { timeout: 180_000 }, async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'annex-p2phttp-init-demo-'));
    dirs.push(root);
    const env = { PATH: process.env.PATH, HOME: root, GIT_CONFIG_NOSYSTEM: '1', LC_ALL: 'C.UTF-8' };
    const script = path.join(ROOT, 'deploy/docker/init-demo.sh');
    const repos = path.join(root, 'repos');
    const first = await run('sh', [script, repos], { env });
    expect(first.code, first.stderr).toBe(0);
    const demo = path.join(repos, 'demo');
    expect((await run('git', ['-C', demo, 'config', 'annex.uuid'], { env })).stdout.trim()).toBe(
      '2c3b4d5e-6f70-4182-93a4-b5c6d7e8f901',
    );
    const whereis = await run('git', ['annex', 'whereis', '--json', 'hello.txt'], {
      cwd: demo,
      env,
    });
    expect(JSON.parse(whereis.stdout).whereis[0].here).toBe(true);
    const heads = await run('git', ['bundle', 'list-heads', path.join(repos, 'demo.bundle')], {
      env,
    });
    expect(heads.stdout).toMatch(/refs\/heads\/git-annex/);
    expect(heads.stdout).toMatch(/refs\/heads\/main/);

    const head = (await run('git', ['-C', demo, 'rev-parse', 'HEAD'], { env })).stdout;
    const second = await run('sh', [script, repos], { env });
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/exists, leaving it as it is/);
    expect((await run('git', ['-C', demo, 'rev-parse', 'HEAD'], { env })).stdout).toBe(head);
  });
});

function run(
  file: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { ...options, timeout: 120_000 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') {
        reject(new Error(`${file}: ${error.message}`));
        return;
      }
      resolve({ code: error ? Number(error.code) : 0, stdout, stderr });
    });
  });
}
