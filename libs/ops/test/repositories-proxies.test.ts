import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RepositoryRegistry, type ServedRepository } from '../src/index';

/**
 * Real proxy and cluster topologies (PROTOCOL.md §4), made with git-annex in a temporary
 * directory: a gateway proxying a git repository and a directory special remote, and a gateway
 * of a cluster of three nodes.
 */
let base: string;

const env: NodeJS.ProcessEnv = {
  ...process.env,
  GIT_AUTHOR_NAME: 'test',
  GIT_AUTHOR_EMAIL: 'test@example.invalid',
  GIT_COMMITTER_NAME: 'test',
  GIT_COMMITTER_EMAIL: 'test@example.invalid',
};
for (const name of ['GIT_DIR', 'GIT_WORK_TREE', 'GIT_INDEX_FILE', 'GIT_COMMON_DIR']) {
  delete env[name];
}

function run(cwd: string, cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { cwd, env, encoding: 'utf8', stdio: 'pipe' }).trim();
}

const git = (cwd: string, ...args: string[]): string => run(cwd, 'git', args);
const annex = (cwd: string, ...args: string[]): string => run(cwd, 'git', ['annex', ...args]);
const uuidOf = (repo: string, config = 'annex.uuid'): string => git(repo, 'config', config);

/** A new git-annex repository with one commit. */
function initGateway(path: string, description: string): string {
  mkdirSync(path, { recursive: true });
  git(path, 'init', '-q', '-b', 'main');
  annex(path, 'init', '-q', description);
  git(path, 'commit', '-q', '--allow-empty', '-m', 'init');
  return uuidOf(path);
}

/** A clone of `gateway` at `path`, initialised, and added to `gateway` as remote `name`. */
function addRemoteRepo(gateway: string, path: string, name: string): string {
  git(gateway, 'clone', '-q', gateway, path);
  annex(path, 'init', '-q', name);
  git(gateway, 'remote', 'add', name, path);
  return uuidOf(path);
}

function syncNoContent(repo: string): void {
  annex(repo, 'sync', '-q', '--no-content');
}

/** Polls `lookup` until `done` holds for its result, for at most `ms`. */
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

beforeAll(() => {
  base = mkdtempSync(join(tmpdir(), 'config-proxies-'));
});

afterAll(() => {
  rmSync(base, { recursive: true, force: true });
});

describe('RepositoryRegistry: proxied remotes and clusters of a --repo', () => {
  let gw: string;
  const u: Record<string, string> = {};

  beforeAll(() => {
    gw = join(base, 'lab', 'gw');
    u.gw = initGateway(gw, 'gw');
    u.prox = addRemoteRepo(gw, join(base, 'lab', 'prox'), 'prox');
    for (const n of ['node1', 'node2', 'node3']) {
      u[n] = addRemoteRepo(gw, join(base, 'lab', n), n);
      git(gw, 'config', `remote.${n}.annex-cluster-node`, 'mycluster');
    }
    syncNoContent(gw);
    const dir = join(base, 'lab', 'dsr');
    mkdirSync(dir);
    annex(gw, 'initremote', 'd', 'type=directory', `directory=${dir}`, 'encryption=none');
    u.d = uuidOf(gw, 'remote.d.annex-uuid');
    git(gw, 'config', 'remote.prox.annex-proxy', 'true');
    git(gw, 'config', 'remote.d.annex-proxy', 'true');
    annex(gw, 'updateproxy');
    annex(gw, 'initcluster', 'mycluster');
    u.cluster = uuidOf(gw, 'annex.cluster.mycluster');
    annex(gw, 'updatecluster');
  }, 120_000);

  it('serves every proxied remote, node and cluster at the gateway, and 404s the rest', async () => {
    const registry = new RepositoryRegistry({ repos: [gw], directories: [] });
    await registry.init();
    const gateway = u.gw as string;
    expect(await registry.lookup(gateway)).toEqual({ uuid: gateway, path: gw, kind: 'repository' });
    for (const name of ['prox', 'd', 'node1', 'node2', 'node3']) {
      const uuid = u[name] as string;
      // d is a special remote (remote.log says type=directory); the rest are repositories.
      expect(await registry.lookup(uuid), name).toEqual({
        uuid,
        path: gw,
        gateway,
        kind: 'proxied',
        ...(name === 'd' ? { specialRemote: true } : {}),
      });
    }
    const cluster = u.cluster as string;
    expect(cluster).toMatch(/^ac.{12}8/);
    expect(await registry.lookup(cluster)).toEqual({
      uuid: cluster,
      path: gw,
      gateway,
      kind: 'cluster',
    });
    expect(await registry.lookup('00000000-1111-2222-3333-444444444444')).toBeUndefined();
    expect(await registry.lookup('-x')).toBeUndefined();
    expect(
      registry
        .list()
        .map((r) => r.uuid)
        .sort(),
    ).toEqual(['gw', 'prox', 'd', 'node1', 'node2', 'node3', 'cluster'].map((n) => u[n]).sort());
  });

  it('checks a known proxied uuid by stat only: no git process unless the branch changed', async () => {
    const registry = new RepositoryRegistry({
      repos: [gw],
      directories: [],
      proxyRefreshIntervalMs: 0,
    });
    await registry.init();
    const reads = registry.proxyLogReads;
    expect(reads).toBe(1);
    for (let i = 0; i < 20; i++) {
      expect((await registry.lookup(u.node1 as string))?.kind).toBe('proxied');
    }
    expect(await registry.lookup('00000000-1111-2222-3333-444444444444')).toBeUndefined();
    expect(registry.proxyLogReads).toBe(reads);
  });

  it('finds a node behind another gateway of the cluster (extendcluster)', async () => {
    // A second gateway gwb with its own node4. Proxying through a remote needs a non-local
    // remote, so gw reaches gwb through an annexUrl (never contacted here).
    const gwb = join(base, 'lab', 'gwb');
    git(gw, 'clone', '-q', gw, gwb);
    annex(gwb, 'init', '-q', 'gwb');
    git(gwb, 'config', 'remote.origin.annexUrl', 'annex+http://127.0.0.1:9/git-annex/');
    syncNoContent(gwb);
    annex(gwb, 'extendcluster', 'origin', 'mycluster');
    const node4 = addRemoteRepo(gwb, join(base, 'lab', 'node4'), 'node4');
    git(gwb, 'config', 'remote.node4.annex-cluster-node', 'mycluster');
    syncNoContent(gwb);
    annex(gwb, 'updatecluster');
    git(gw, 'remote', 'add', 'gwb', gwb);
    git(gw, 'config', 'remote.gwb.annexUrl', 'annex+http://127.0.0.1:9/git-annex/');
    annex(gw, 'sync', '-q', '--no-content', 'gwb');
    annex(gw, 'extendcluster', 'gwb', 'mycluster');
    annex(gw, 'updatecluster');

    const registry = new RepositoryRegistry({ repos: [gw, gwb], directories: [] });
    await registry.init();
    // Both gateways proxy node4 and the cluster: the first --repo serves them.
    expect(await registry.lookup(node4)).toEqual({
      uuid: node4,
      path: gw,
      gateway: u.gw,
      kind: 'proxied',
    });
    expect((await registry.lookup(u.cluster as string))?.path).toBe(gw);
    // gwb proxies gw's nodes as origin-node1..3; gw's own uuid stays gw's own.
    expect(await registry.lookup(u.gw as string)).toEqual({
      uuid: u.gw,
      path: gw,
      kind: 'repository',
    });
    const onlyB = new RepositoryRegistry({ repos: [gwb], directories: [] });
    await onlyB.init();
    for (const name of ['node1', 'node2', 'node3']) {
      expect(await onlyB.lookup(u[name] as string), name).toEqual({
        uuid: u[name],
        path: gwb,
        gateway: uuidOf(gwb),
        kind: 'proxied',
      });
    }
    expect((await onlyB.lookup(node4))?.gateway).toBe(uuidOf(gwb));
    expect((await onlyB.lookup(u.cluster as string))?.kind).toBe('cluster');
    expect(await onlyB.lookup(u.prox as string)).toBeUndefined();
  }, 60_000);
});

describe('RepositoryRegistry: proxies added and removed while serving', () => {
  it('finds a proxy added by updateproxy, and stops serving a removed one', async () => {
    const gw = join(base, 'live', 'gw');
    initGateway(gw, 'gw');
    const first = addRemoteRepo(gw, join(base, 'live', 'first'), 'first');
    git(gw, 'config', 'remote.first.annex-proxy', 'true');
    annex(gw, 'updateproxy');

    // Default intervals, as the server runs.
    const registry = new RepositoryRegistry({ repos: [gw], directories: [] });
    await registry.init();
    expect((await registry.lookup(first))?.kind).toBe('proxied');

    const later = addRemoteRepo(gw, join(base, 'live', 'later'), 'later');
    syncNoContent(gw);
    git(gw, 'config', 'remote.later.annex-proxy', 'true');
    annex(gw, 'updateproxy');
    const added = await lookupUntil(registry, later, (r) => r !== undefined);
    expect(added.result).toEqual({ uuid: later, path: gw, gateway: uuidOf(gw), kind: 'proxied' });
    expect(added.elapsed).toBeLessThan(2500);

    git(gw, 'config', 'remote.first.annex-proxy', 'false');
    annex(gw, 'updateproxy');
    const removed = await lookupUntil(registry, first, (r) => r === undefined);
    expect(removed.result).toBeUndefined();
    expect(removed.elapsed).toBeLessThan(2500);
    expect((await registry.lookup(later))?.kind).toBe('proxied');
    expect(registry.list().map((r) => r.uuid)).toEqual([uuidOf(gw), later]);
    // A handful of reads, not one per lookup.
    expect(registry.proxyLogReads).toBeLessThan(10);
  }, 60_000);

  it('reads a proxy.log still in the git-annex journal (annex.alwayscommit=false)', async () => {
    const gw = join(base, 'journal', 'gw');
    initGateway(gw, 'gw');
    const p = addRemoteRepo(gw, join(base, 'journal', 'p'), 'p');
    syncNoContent(gw);
    git(gw, 'config', 'remote.p.annex-proxy', 'true');
    git(gw, '-c', 'annex.alwayscommit=false', 'annex', 'updateproxy');
    expect(() => git(gw, 'show', 'git-annex:proxy.log')).toThrow();
    expect(readFileSync(join(gw, '.git', 'annex', 'journal', 'proxy.log'), 'utf8')).toContain(p);

    const registry = new RepositoryRegistry({
      repos: [gw],
      directories: [],
      proxyRefreshIntervalMs: 0,
    });
    await registry.init();
    expect((await registry.lookup(p))?.kind).toBe('proxied');

    // Removal, also only journalled: the journal wins over the branch.
    annex(gw, 'merge'); // commits the journal
    expect(git(gw, 'show', 'git-annex:proxy.log')).toContain(p);
    git(gw, 'config', 'remote.p.annex-proxy', 'false');
    git(gw, '-c', 'annex.alwayscommit=false', 'annex', 'updateproxy');
    expect(git(gw, 'show', 'git-annex:proxy.log')).toContain(p);
    expect(readFileSync(join(gw, '.git', 'annex', 'journal', 'proxy.log'), 'utf8')).not.toContain(
      p,
    );
    expect(await registry.lookup(p)).toBeUndefined();
  }, 60_000);
});

describe('RepositoryRegistry: a bare gateway', () => {
  it('reads the git-annex branch of a bare --repo', async () => {
    const gw = join(base, 'bare', 'gw.git');
    mkdirSync(gw, { recursive: true });
    git(gw, 'init', '-q', '--bare', '-b', 'main');
    annex(gw, 'init', '-q', 'bare gw');
    const p = join(base, 'bare', 'p');
    git(base, 'clone', '-q', gw, p);
    annex(p, 'init', '-q', 'p');
    git(gw, 'remote', 'add', 'p', p);
    git(gw, 'config', 'remote.p.annex-proxy', 'true');
    annex(gw, 'sync', '-q', '--no-content', 'p');
    annex(gw, 'updateproxy');
    const registry = new RepositoryRegistry({ repos: [gw], directories: [] });
    await registry.init();
    expect(await registry.lookup(uuidOf(p))).toEqual({
      uuid: uuidOf(p),
      path: gw,
      gateway: uuidOf(gw),
      kind: 'proxied',
    });
  }, 60_000);
});

describe('RepositoryRegistry: gateways found by --directory', () => {
  it('serves what a scanned gateway proxies; a repository served itself keeps its own uuid', async () => {
    const root = join(base, 'dirs');
    const gw = join(root, 'gw');
    initGateway(gw, 'gw');
    const n1 = addRemoteRepo(gw, join(root, 'n1'), 'n1');
    const outside = addRemoteRepo(gw, join(base, 'dirs-outside', 'n2'), 'n2');
    for (const n of ['n1', 'n2']) {
      git(gw, 'config', `remote.${n}.annex-cluster-node`, 'c');
    }
    annex(gw, 'initcluster', 'c');
    syncNoContent(gw);
    annex(gw, 'updatecluster');
    const cluster = uuidOf(gw, 'annex.cluster.c');

    const registry = new RepositoryRegistry({ repos: [], directories: [root] });
    await registry.init();
    expect(await registry.lookup(outside)).toEqual({
      uuid: outside,
      path: gw,
      gateway: uuidOf(gw),
      kind: 'proxied',
    });
    expect((await registry.lookup(cluster))?.kind).toBe('cluster');
    // n1 is below the root too: its own repository serves it.
    expect(await registry.lookup(n1)).toEqual({
      uuid: n1,
      path: join(root, 'n1'),
      kind: 'repository',
    });

    // The gateway disappears: neither it nor what it proxied is served.
    rmSync(gw, { recursive: true, force: true });
    expect(await registry.lookup(outside)).toBeUndefined();
    expect(await registry.lookup(cluster)).toBeUndefined();
  }, 60_000);
});

describe('RepositoryRegistry.lookupAt: a uuid proxied by two served repositories', () => {
  it('finds it through either repository, and nothing through one that does not proxy it', async () => {
    const root = join(base, 'two');
    const gwA = join(root, 'a');
    const gwB = join(root, 'b');
    const other = join(root, 'c');
    initGateway(gwA, 'a');
    initGateway(gwB, 'b');
    initGateway(other, 'c');
    const shared = initGateway(join(base, 'two-shared'), 'shared');
    for (const gw of [gwA, gwB]) {
      git(gw, 'remote', 'add', 'shared', join(base, 'two-shared'));
      git(gw, 'config', 'remote.shared.annex-uuid', shared);
      git(gw, 'config', 'remote.shared.annex-proxy', 'true');
      annex(gw, 'updateproxy');
    }
    const registry = new RepositoryRegistry({ repos: [], directories: [root] });
    await registry.init();
    // By uuid alone, the first gateway serves it.
    const first = await registry.lookup(shared);
    expect(first?.kind).toBe('proxied');
    const expected = (gw: string): ServedRepository => ({
      uuid: shared,
      path: gw,
      kind: 'proxied',
      gateway: uuidOf(gw),
    });
    expect(await registry.lookupAt(gwA, shared)).toEqual(expected(gwA));
    expect(await registry.lookupAt(gwB, shared)).toEqual(expected(gwB));
    expect(await registry.lookupAt(other, shared)).toBeUndefined();
    // A repository's own uuid, only at its own path.
    expect((await registry.lookupAt(gwB, uuidOf(gwB)))?.kind).toBe('repository');
    expect(await registry.lookupAt(gwA, uuidOf(gwB))).toBeUndefined();
    expect(await registry.lookupAt(join(root, 'none'), shared)).toBeUndefined();
  }, 60_000);
});
