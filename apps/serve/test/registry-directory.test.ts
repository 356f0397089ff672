import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RepositoryRegistry } from '@annex-p2phttp/ops';
import { DispatchError } from '@annex-p2phttp/dispatch';
import { registryDirectory } from '../src/embedded';

const base = mkdtempSync(join(tmpdir(), 'registry-directory-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));

const env = {
  ...process.env,
  GIT_AUTHOR_NAME: 'test',
  GIT_AUTHOR_EMAIL: 'test@example.invalid',
  GIT_COMMITTER_NAME: 'test',
  GIT_COMMITTER_EMAIL: 'test@example.invalid',
};

function annexRepo(path: string): string {
  mkdirSync(path, { recursive: true });
  execFileSync('git', ['init', '-q', '-b', 'main', path], { env, stdio: 'pipe' });
  execFileSync('git', ['annex', 'init', '-q', 'test'], { cwd: path, env, stdio: 'pipe' });
  return execFileSync('git', ['config', '--get', 'annex.uuid'], { cwd: path, env })
    .toString()
    .trim();
}

describe('registryDirectory', () => {
  it('answers 503, never "unknown", until the first walk of --directory is done', async () => {
    const root = join(base, 'root');
    const uuid = annexRepo(join(root, 'a'));
    const registry = new RepositoryRegistry({ repos: [], directories: [root] });
    await registry.start();
    try {
      const directory = registryDirectory(registry, [root]);
      const early = await directory.lookup(randomUUID(), undefined).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(registry.firstScanFinished).toBe(false);
      expect(early).toBeInstanceOf(DispatchError);
      expect((early as DispatchError).code).toBe('DISPATCH_UNAVAILABLE');
      expect((early as DispatchError).retryAfterSeconds).toBeGreaterThan(0);

      await registry.whenScanned();
      expect(await directory.lookup(randomUUID(), undefined)).toBeUndefined();
      expect(await directory.lookup(uuid, undefined)).toMatchObject({ uuid, location: 'a' });
    } finally {
      registry.close();
    }
  });
});
