import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '@annex-p2phttp/config';
import { RepositoryRegistry, type ServedRepository } from '../src/index';

/** Real repositories, made with git and git-annex in a fresh temporary directory. */
let base: string;

const env = {
  ...process.env,
  GIT_AUTHOR_NAME: 'test',
  GIT_AUTHOR_EMAIL: 'test@example.invalid',
  GIT_COMMITTER_NAME: 'test',
  GIT_COMMITTER_EMAIL: 'test@example.invalid',
};

function run(cmd: string, args: string[], cwd?: string): string {
  return execFileSync(cmd, args, { cwd, env, encoding: 'utf8', stdio: 'pipe' }).trim();
}

function gitRepo(path: string, options: { bare?: boolean } = {}): void {
  mkdirSync(path, { recursive: true });
  run('git', ['init', '-q', ...(options.bare ? ['--bare'] : []), '-b', 'main', path]);
}

/** A git-annex repository at `path`; returns its uuid. */
function annexRepo(path: string, options: { bare?: boolean } = {}): string {
  gitRepo(path, options);
  run('git', ['annex', 'init', '-q', 'test'], path);
  return run('git', ['config', '--get', 'annex.uuid'], path);
}

async function lookupUntil(
  registry: RepositoryRegistry,
  uuid: string,
  done: (r: ServedRepository | undefined) => boolean,
  ms = 4000,
): Promise<{ result: ServedRepository | undefined; elapsed: number }> {
  const start = Date.now();
  for (;;) {
    const result = await registry.lookup(uuid);
    const elapsed = Date.now() - start;
    if (done(result) || elapsed > ms) {
      return { result, elapsed };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

const byPath = (repos: ServedRepository[]): ServedRepository[] =>
  [...repos].sort((a, b) => a.path.localeCompare(b.path));

beforeAll(() => {
  base = mkdtempSync(join(tmpdir(), 'config-repos-'));
});

afterAll(() => {
  rmSync(base, { recursive: true, force: true });
});

describe('RepositoryRegistry with --repo', () => {
  it('serves each --repo by its annex.uuid, at its top directory', async () => {
    const a = join(base, 'repo-a');
    const b = join(base, 'repo-b.git');
    const ua = annexRepo(a);
    const ub = annexRepo(b, { bare: true });
    mkdirSync(join(a, 'sub', 'dir'), { recursive: true });

    const registry = new RepositoryRegistry({ repos: [join(a, 'sub', 'dir'), b], directories: [] });
    await registry.init();
    expect(registry.list()).toEqual([
      { uuid: ua, path: a, kind: 'repository' },
      { uuid: ub, path: b, kind: 'repository' },
    ]);
    expect(await registry.lookup(ua)).toEqual({ uuid: ua, path: a, kind: 'repository' });
    expect(await registry.lookup(ub)).toEqual({ uuid: ub, path: b, kind: 'repository' });
    expect(await registry.lookup('00000000-0000-0000-0000-000000000000')).toBeUndefined();
    expect(await registry.lookup('not a uuid/..')).toBeUndefined();
  });

  it('rejects a --repo that is not an initialised git-annex repository, naming each', async () => {
    const plain = join(base, 'plain-git');
    gitRepo(plain);
    const notGit = join(base, 'not-git');
    mkdirSync(notGit);
    const missing = join(base, 'missing');
    const registry = new RepositoryRegistry({
      repos: [plain, notGit, missing],
      directories: [join(base, 'no-such-dir')],
    });
    const err = await registry.init().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    const lines = (err as ConfigError).message.split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toBe(
      `--repo ${plain}: not a git-annex repository (annex.uuid is not set; run git annex init)`,
    );
    expect(lines[1]).toMatch(new RegExp(`^--repo ${notGit}: not a git repository`));
    expect(lines[2]).toBe(`--repo ${missing}: not a directory`);
    expect(lines[3]).toBe(`--directory ${join(base, 'no-such-dir')}: not a directory`);
  });

  it('a --repo inside a work tree means that repository', async () => {
    const outer = join(base, 'outer');
    annexRepo(outer);
    const inner = join(outer, 'inner');
    mkdirSync(inner);
    // Inside a repository's work tree, --repo means that repository (like running there).
    const registry = new RepositoryRegistry({ repos: [inner], directories: [] });
    await registry.init();
    expect(registry.list().map((r) => r.path)).toEqual([outer]);
  });

  it('lookup before init is a programming error', async () => {
    const registry = new RepositoryRegistry({ repos: [], directories: [] });
    await expect(registry.lookup('x')).rejects.toThrow(/before init/);
  });
});

describe('RepositoryRegistry with --directory', () => {
  let root: string;
  let outside: string;
  const uuids: Record<string, string> = {};

  beforeAll(() => {
    root = join(base, 'root');
    outside = join(base, 'outside');
    mkdirSync(root);
    uuids.top = annexRepo(join(root, 'top'));
    uuids.deep = annexRepo(join(root, 'group', 'team', 'deep'));
    // A repository nested in another one's work tree is not: work trees are never walked.
    uuids.nested = annexRepo(join(root, 'top', 'vendor', 'nested'));
    uuids.bare = annexRepo(join(root, 'group', 'bare.git'), { bare: true });
    gitRepo(join(root, 'plain')); // git, not git-annex: not served
    mkdirSync(join(root, 'empty-dir'));
    // Symlinks are not followed: neither a link to a repository nor a link to a directory of them.
    uuids.outside = annexRepo(join(outside, 'linked'));
    symlinkSync(join(outside, 'linked'), join(root, 'link-to-repo'));
    symlinkSync(outside, join(root, 'link-to-dir'));
  });

  it('finds every git-annex repository below the root, and only those', async () => {
    const registry = new RepositoryRegistry({ repos: [], directories: [root] });
    await registry.init();
    expect(byPath(registry.list())).toEqual(
      byPath([
        { uuid: uuids.top as string, path: join(root, 'top'), kind: 'repository' },
        {
          uuid: uuids.deep as string,
          path: join(root, 'group', 'team', 'deep'),
          kind: 'repository',
        },
        { uuid: uuids.bare as string, path: join(root, 'group', 'bare.git'), kind: 'repository' },
      ]),
    );
    expect(await registry.lookup(uuids.outside as string)).toBeUndefined();
    expect(await registry.lookup(uuids.nested as string)).toBeUndefined();
    expect(registry.list().some((r) => r.path.startsWith(outside))).toBe(false);
    registry.close();
  });

  it('respects maxDepth', async () => {
    const registry = new RepositoryRegistry({ repos: [], directories: [root], maxDepth: 2 });
    await registry.init();
    expect(registry.list().map((r) => r.uuid)).not.toContain(uuids.deep);
    expect(registry.list().map((r) => r.uuid)).toContain(uuids.bare);
  });

  it('notices a repository added after init within about a second, and forgets a removed one', async () => {
    const dir = join(base, 'later');
    mkdirSync(dir);
    const first = annexRepo(join(dir, 'first'));
    const registry = new RepositoryRegistry({ repos: [], directories: [dir] });
    await registry.init();
    try {
      expect(registry.list().map((r) => r.uuid)).toEqual([first]);

      // Deeper than any directory watched so far: the new directories are watched as they appear.
      const second = annexRepo(join(dir, 'sub', 'deeper', 'second'));
      const added = await lookupUntil(registry, second, (r) => r !== undefined);
      expect(added.result).toEqual({
        uuid: second,
        path: join(dir, 'sub', 'deeper', 'second'),
        kind: 'repository',
      });
      expect(added.elapsed).toBeLessThan(2500);

      // A plain git repository that becomes a git-annex one later is noticed too.
      const third = join(dir, 'third');
      gitRepo(third);
      await new Promise((r) => setTimeout(r, 300));
      run('git', ['annex', 'init', '-q', 'third'], third);
      const thirdUuid = run('git', ['config', '--get', 'annex.uuid'], third);
      const late = await lookupUntil(registry, thirdUuid, (r) => r !== undefined);
      expect(late.result).toEqual({ uuid: thirdUuid, path: third, kind: 'repository' });

      // A bare repository made in place.
      const bare = annexRepo(join(dir, 'sub', 'bare.git'), { bare: true });
      expect((await lookupUntil(registry, bare, (r) => r !== undefined)).result?.path).toBe(
        join(dir, 'sub', 'bare.git'),
      );

      rmSync(join(dir, 'first'), { recursive: true, force: true });
      expect(await registry.lookup(first)).toBeUndefined();
      expect(registry.list().map((r) => r.uuid)).not.toContain(first);
      // A whole directory of repositories removed: its repositories go, without a lookup.
      rmSync(join(dir, 'sub'), { recursive: true, force: true });
      const gone = Date.now();
      while (registry.list().some((r) => r.uuid === second) && Date.now() - gone < 2500) {
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(registry.list().map((r) => r.uuid)).toEqual([thirdUuid]);
      // All of it by watching: the first walk was the only one.
      expect(registry.scans).toBe(1);
    } finally {
      registry.close();
    }
  }, 60_000);

  it('an unknown uuid never makes it scan or read anything', async () => {
    const dir = join(base, 'unknown');
    mkdirSync(dir);
    annexRepo(join(dir, 'one'));
    const registry = new RepositoryRegistry({ repos: [], directories: [dir] });
    await registry.init();
    try {
      expect(registry.scans).toBe(1);
      const reads = registry.proxyLogReads;
      const unknown = async () => {
        for (let i = 0; i < 100; i += 1) {
          const uuid = `00000000-0000-0000-0000-${String(i).padStart(12, '0')}`;
          expect(await registry.lookup(uuid)).toBeUndefined();
        }
      };
      await unknown();
      // Also long after the first walk (a scan on demand was rate-limited to one per 2 s).
      await new Promise((r) => setTimeout(r, 2100));
      await unknown();
      expect(registry.scans).toBe(1);
      expect(registry.proxyLogReads).toBe(reads);
    } finally {
      registry.close();
    }
  });

  it('without watching, the periodic reconciliation finds new repositories', async () => {
    const dir = join(base, 'reconcile');
    mkdirSync(dir);
    annexRepo(join(dir, 'one'));
    const registry = new RepositoryRegistry({
      repos: [],
      directories: [dir],
      watch: false,
      reconcileIntervalMs: 200,
    });
    await registry.init();
    try {
      const two = annexRepo(join(dir, 'two'));
      // Lookups alone never find it; the reconciliation does.
      const found = await lookupUntil(registry, two, (r) => r !== undefined, 10_000);
      expect(found.result?.path).toBe(join(dir, 'two'));
      expect(registry.scans).toBeGreaterThan(1);
    } finally {
      registry.close();
    }
  }, 30_000);

  it('start() serves repositories as they are found, before the first walk is done', async () => {
    const dir = join(base, 'start');
    mkdirSync(dir);
    const one = annexRepo(join(dir, 'one'));
    const prepared: string[] = [];
    const registry = new RepositoryRegistry({
      repos: [],
      directories: [dir],
      prepare: (repo) => {
        prepared.push(repo.uuid);
        return Promise.resolve();
      },
    });
    await registry.start();
    try {
      // The walk has begun, not ended: what it has not reached is not known yet.
      expect(registry.firstScanFinished).toBe(false);
      await registry.whenScanned();
      expect(registry.firstScanFinished).toBe(true);
      expect(await registry.lookup(one)).toEqual({
        uuid: one,
        path: join(dir, 'one'),
        kind: 'repository',
      });
      // Each repository is prepared (its locks taken over) once, before it is served.
      expect(prepared).toEqual([one]);
    } finally {
      registry.close();
    }
  });

  it('serves a duplicate uuid once, warning about the second repository', async () => {
    const dir = join(base, 'dups');
    mkdirSync(dir);
    const uuid = annexRepo(join(dir, 'a'));
    run('git', ['clone', '-q', join(dir, 'a'), join(dir, 'b')]);
    run('git', ['config', 'annex.uuid', uuid], join(dir, 'b'));
    const warnings: string[] = [];
    const registry = new RepositoryRegistry({
      repos: [join(dir, 'a')],
      directories: [dir],
      log: (msg) => warnings.push(msg),
    });
    await registry.init();
    expect(registry.list()).toEqual([{ uuid, path: join(dir, 'a'), kind: 'repository' }]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(join(dir, 'b'));
    expect(warnings[0]).toContain(uuid);
  });

  it('skips an invalid annex.uuid with a warning', async () => {
    const dir = join(base, 'invalid');
    mkdirSync(dir);
    gitRepo(join(dir, 'bad'));
    run('git', ['config', 'annex.uuid', '-leading-dash'], join(dir, 'bad'));
    const warnings: string[] = [];
    const registry = new RepositoryRegistry({
      repos: [],
      directories: [dir],
      log: (msg) => warnings.push(msg),
    });
    await registry.init();
    expect(registry.list()).toEqual([]);
    expect(warnings.join('\n')).toContain('-leading-dash');
  });
});
