import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, RepositoryRegistry, type ServedRepository } from '../src/index';

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
    // A repository nested in another one's work tree is found too.
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
        {
          uuid: uuids.nested as string,
          path: join(root, 'top', 'vendor', 'nested'),
          kind: 'repository',
        },
        { uuid: uuids.bare as string, path: join(root, 'group', 'bare.git'), kind: 'repository' },
      ]),
    );
    expect(await registry.lookup(uuids.outside as string)).toBeUndefined();
    expect(registry.list().some((r) => r.path.startsWith(outside))).toBe(false);
  });

  it('respects maxDepth', async () => {
    const registry = new RepositoryRegistry({ repos: [], directories: [root], maxDepth: 2 });
    await registry.init();
    expect(registry.list().map((r) => r.uuid)).not.toContain(uuids.deep);
    expect(registry.list().map((r) => r.uuid)).toContain(uuids.bare);
  });

  it('finds a repository added after init on lookup, and forgets a removed one', async () => {
    const dir = join(base, 'later');
    mkdirSync(dir);
    const first = annexRepo(join(dir, 'first'));
    const registry = new RepositoryRegistry({ repos: [], directories: [dir], rescanIntervalMs: 0 });
    await registry.init();
    expect(registry.list().map((r) => r.uuid)).toEqual([first]);

    const second = annexRepo(join(dir, 'sub', 'second'));
    expect(await registry.lookup(second)).toEqual({
      uuid: second,
      path: join(dir, 'sub', 'second'),
      kind: 'repository',
    });
    expect(registry.list().map((r) => r.uuid)).toEqual([first, second]);

    // A plain git repository that becomes a git-annex one later is noticed too.
    const third = join(dir, 'third');
    gitRepo(third);
    expect(await registry.lookup('11111111-2222-3333-4444-555555555555')).toBeUndefined();
    run('git', ['annex', 'init', '-q', 'third'], third);
    const thirdUuid = run('git', ['config', '--get', 'annex.uuid'], third);
    expect(await registry.lookup(thirdUuid)).toEqual({
      uuid: thirdUuid,
      path: third,
      kind: 'repository',
    });

    rmSync(join(dir, 'first'), { recursive: true, force: true });
    expect(await registry.lookup(first)).toBeUndefined();
    expect(registry.list().map((r) => r.uuid)).not.toContain(first);
  });

  it('rescans at most once per interval, one scan shared by concurrent lookups', async () => {
    const dir = join(base, 'ratelimit');
    mkdirSync(dir);
    annexRepo(join(dir, 'one'));
    const registry = new RepositoryRegistry({
      repos: [],
      directories: [dir],
      rescanIntervalMs: 60_000,
    });
    await registry.init();
    expect(registry.scans).toBe(1);
    // Within the interval: no rescan, even for a repository that now exists.
    const two = annexRepo(join(dir, 'two'));
    expect(await registry.lookup(two)).toBeUndefined();
    expect(registry.scans).toBe(1);

    const shared = new RepositoryRegistry({ repos: [], directories: [dir], rescanIntervalMs: 0 });
    await shared.init();
    const three = annexRepo(join(dir, 'three'));
    const results = await Promise.all(Array.from({ length: 5 }, () => shared.lookup(three)));
    expect(results.every((r) => r?.uuid === three)).toBe(true);
    expect(shared.scans).toBe(2);
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
