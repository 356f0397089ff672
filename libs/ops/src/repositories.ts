/**
 * Which repositories are served, by uuid (PROTOCOL.md §4, DESIGN.md "Serving repositories").
 *
 * - `--repo PATH`: the repository containing PATH (its top directory, or the bare repository),
 *   read once by init(). Not an initialised git-annex repository → ConfigError.
 * - `--directory DIR`: every git-annex repository below DIR, at any depth up to `maxDepth`,
 *   without following symlinks. A repository's work tree and git directory are never entered, so
 *   a repository nested in another one's work tree is not served. Changes are noticed by
 *   watching (inotify through fs.watch, one non-recursive watch per directory that can hold
 *   repositories), each changed entry re-read on its own; a periodic reconciliation (a walk that
 *   stats each repository's config, every `reconcileIntervalMs`) is the safety net for what a
 *   watch cannot see (a config edited in place, a file system without inotify, watch limits).
 *   A new repository is served within about a second; one whose directory disappeared stops being
 *   served. A lookup never scans: an unknown uuid costs a map lookup, however many repositories
 *   are served and however often it is asked.
 * - Registration reads `annex.uuid` from the repository's config file in-process
 *   (config-file.ts), and runs `git config` only for files that reader does not handle.
 * - Proxies and clusters: besides its own uuid, each served repository whose config names a
 *   proxied remote, a cluster node or gateway, or a cluster (the gateway) serves every uuid on
 *   its line of proxy.log (proxied remotes, its clusters, cluster nodes, nodes behind other
 *   gateways), read from its git-annex branch and journal (see proxies.ts). Requests for those
 *   go to the gateway's directory with the requested uuid, and git-annex-shell relays them.
 *   What a gateway proxies is re-read when its git-annex branch or journalled proxy.log /
 *   cluster.log changed: gateways are watched (their refs and journal directories), and checked
 *   by stat (no git process) at most once per `proxyRefreshIntervalMs` on lookups of their
 *   proxied uuids and at each reconciliation. A repository's own uuid is never looked up
 *   anywhere else, and never shadowed by a proxied uuid.
 *
 * git runs through execFile/spawn (no shell) with the repository given explicitly, so neither the
 * caller's GIT_DIR nor a repository above a scanned directory can leak in. Every uuid is checked
 * against `^[A-Za-z0-9][A-Za-z0-9-]*$` before it is registered, so only such uuids reach an argv.
 */
import type { Dirent, FSWatcher } from 'node:fs';
import { watch } from 'node:fs';
import { lstat, readdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseConfigFacts, type ConfigFacts } from './config-file';
import { ConfigError } from '@annex-p2phttp/config';
import { firstLine, runGit } from './git';
import { branchStamp, gitCommonDir, readProxiedUuids } from './proxies';
import { isValidUuid, type ProxiedUuid } from './proxy-log';

export type ServedKind = 'repository' | 'proxied' | 'cluster';

export interface ServedRepository {
  /** The uuid to serve (given to git-annex-shell as `--uuid`). */
  uuid: string;
  /**
   * The repository's top directory (the repository directory itself when bare); for a proxied
   * or cluster uuid, the gateway's.
   */
  path: string;
  /** 'repository': the repository's own uuid; 'proxied': a remote it proxies (cluster nodes
   * included); 'cluster': a cluster it is a gateway of. */
  kind: ServedKind;
  /** For proxied and cluster uuids: the uuid of the served repository that proxies it. */
  gateway?: string;
  /**
   * A proxied special remote (its type in remote.log): git-annex-shell runs it in process and
   * answers neither GETTIMESTAMP nor REMOVE-BEFORE for it, so the server judges those itself.
   */
  specialRemote?: true;
}

export interface RepositoryRegistryOptions {
  repos: string[];
  directories: string[];
  /** Time between two reconciliations of the --directory trees (module comment); default 60000. */
  reconcileIntervalMs?: number;
  /** Watch the --directory trees (module comment); default true. */
  watch?: boolean;
  /** Minimum time between two checks of one gateway's proxy.log / cluster.log; default 1000. */
  proxyRefreshIntervalMs?: number;
  /** How many directory levels below a --directory root are searched; default 8. */
  maxDepth?: number;
  /** Warnings (duplicate uuids, unreadable repositories). */
  log?: (msg: string) => void;
  /** The git executable; default 'git'. */
  git?: string;
  /**
   * Runs before a repository is first served (e.g. to take over the locks a previous server
   * left); a failure is logged and the repository served anyway.
   */
  prepare?: (repo: ServedRepository) => Promise<void>;
}

export const DEFAULT_RECONCILE_INTERVAL_MS = 60_000;
export const DEFAULT_PROXY_REFRESH_INTERVAL_MS = 1000;
export const DEFAULT_MAX_DEPTH = 8;
const GIT_CONCURRENCY = 8;
/** Directory entries visited at once during a walk. */
const WALK_CONCURRENCY = 16;
/** Watch events are gathered this long before the entries they name are re-read. */
const SETTLE_MS = 50;

const UUID = /^[A-Za-z0-9][A-Za-z0-9-]*$/;

/** A uuid as git-annex accepts one in a URL: letters, digits and '-', not starting with '-'. */
export function isServableUuid(uuid: string): boolean {
  return isValidUuid(uuid);
}

/** Runs `fn` over `items` with at most `limit` in flight; results in input order. */
async function mapLimit<T, R>(
  items: T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** A served repository's own uuid, and where git finds it. */
interface Found {
  repo: ServedRepository;
  gitDir: string;
  /** The git common directory (refs, annex/), when known without asking git. */
  commonDir?: string;
}

/** What one served repository proxies, as last read. */
interface GatewayState {
  readonly uuid: string;
  readonly path: string;
  readonly gitDir: string;
  commonDir?: string;
  /** branchStamp() of the last successful read; undefined before it. */
  stamp?: string;
  /** performance.now() at the end of the last check. */
  checkedAt: number;
  proxied: ProxiedUuid[];
  checking?: Promise<void>;
  /** Watches of its refs and journal directories. */
  watchers: FSWatcher[];
}

/** A directory below a --directory root that can hold repositories (watched). */
interface DirNode {
  readonly kind: 'dir';
  readonly path: string;
  readonly depth: number;
  readonly children: Map<string, TreeNode>;
  watcher?: FSWatcher;
}

/** A repository found below a --directory root (served when it has a valid annex.uuid). */
interface RepoNode {
  readonly kind: 'repo';
  readonly path: string;
  readonly depth: number;
  /** What git is pointed at: `.git` (directory or file), or the bare repository. */
  readonly gitDir: string;
  /** The config file whose stat identifies an unchanged config; none for a `.git` file. */
  readonly configFile?: string;
  /** The common directory when known without git (a `.git` directory, a bare repository). */
  readonly commonDir?: string;
  /** Config stat of the last read; undefined before it. */
  stamp?: string;
  /** annex.uuid as last read; '' when none. */
  uuid: string;
  mayProxy: boolean;
  /** Watches its git directory while it is a plain git repository (to see `git annex init`). */
  watcher?: FSWatcher;
  forgotten?: true;
}

type TreeNode = DirNode | RepoNode;

/** What a directory listing says `path` is. */
type Classified =
  { kind: 'repo'; gitDir: string; configFile?: string; commonDir?: string } | { kind: 'dir' };

function classify(path: string, entries: Dirent[], depth: number): Classified {
  if (depth === 0) {
    return { kind: 'dir' };
  }
  const byName = new Map(entries.map((e) => [e.name, e]));
  const dotGit = byName.get('.git');
  if (dotGit?.isDirectory()) {
    const gitDir = join(path, '.git');
    return { kind: 'repo', gitDir, configFile: join(gitDir, 'config'), commonDir: gitDir };
  }
  if (dotGit?.isFile()) {
    return { kind: 'repo', gitDir: join(path, '.git') };
  }
  if (
    byName.get('HEAD')?.isFile() &&
    byName.get('config')?.isFile() &&
    byName.get('objects')?.isDirectory()
  ) {
    return { kind: 'repo', gitDir: path, configFile: join(path, 'config'), commonDir: path };
  }
  return { kind: 'dir' };
}

/** Entry names whose appearance or change can turn a directory into a repository. */
const REPOSITORY_MARKERS = new Set(['.git', 'HEAD', 'config', 'objects']);

export class RepositoryRegistry {
  private readonly repoPaths: string[];
  private readonly directories: string[];
  private readonly reconcileIntervalMs: number;
  private readonly watching: boolean;
  private readonly proxyRefreshIntervalMs: number;
  private readonly maxDepth: number;
  private readonly log: (msg: string) => void;
  private readonly git: string;
  private readonly prepare: (repo: ServedRepository) => Promise<void>;

  /** From --repo, fixed after init(). */
  private readonly fixed = new Map<string, ServedRepository>();
  /** From --directory: the served uuid of each repository found. */
  private readonly scanned = new Map<string, ServedRepository>();
  /** Every repository found below the roots with that uuid, first registered first. */
  private readonly claims = new Map<string, RepoNode[]>();
  /** The repositories found below the roots, by path. */
  private readonly repoNodes = new Map<string, RepoNode>();
  /** The --directory roots, as walked. */
  private readonly roots = new Map<string, DirNode>();
  /** Where git finds each --repo repository, by path. */
  private readonly fixedDirs = new Map<string, { gitDir: string; commonDir?: string }>();
  /** Per served repository path that may proxy: what it proxies. */
  private readonly gateways = new Map<string, GatewayState>();
  /** Every proxied and cluster uuid served, built from `gateways` by reindex(). */
  private proxied = new Map<string, ServedRepository>();
  private readonly warned = new Set<string>();
  private initialised = false;
  private closed = false;
  /** Tree changes, one at a time: walks, reconciliations, watch events. */
  private chain: Promise<void> = Promise.resolve();
  /** Directories with watch events not handled yet, and the entry names they named. */
  private readonly pending = new Map<DirNode, Set<string> | 'all'>();
  private readonly pendingRepos = new Set<RepoNode>();
  private pendingTimer: NodeJS.Timeout | undefined;
  private reconcileTimer: NodeJS.Timeout | undefined;
  private lastReconcileEnd = -Infinity;
  private reconciling: Promise<void> | undefined;
  private firstScan: Promise<void> | undefined;
  private firstScanDone = false;
  private scanCount = 0;
  private proxyReads = 0;
  private watchFailed = false;
  private changes = 0;

  constructor(options: RepositoryRegistryOptions) {
    this.repoPaths = options.repos.map((p) => resolve(p));
    this.directories = options.directories.map((p) => resolve(p));
    this.reconcileIntervalMs = options.reconcileIntervalMs ?? DEFAULT_RECONCILE_INTERVAL_MS;
    this.watching = options.watch ?? true;
    this.proxyRefreshIntervalMs =
      options.proxyRefreshIntervalMs ?? DEFAULT_PROXY_REFRESH_INTERVAL_MS;
    this.maxDepth = options.maxDepth ?? DEFAULT_MAX_DEPTH;
    this.log = options.log ?? (() => {});
    this.git = options.git ?? 'git';
    const prepare = options.prepare ?? (() => Promise.resolve());
    this.prepare = (repo) =>
      prepare(repo).catch((err: unknown) => {
        this.log(`repository ${repo.path}: preparing to serve it failed: ${String(err)}`);
      });
    if (!(this.reconcileIntervalMs > 0)) {
      throw new ConfigError(`reconcileIntervalMs must be > 0, not ${options.reconcileIntervalMs}`);
    }
    if (!(this.proxyRefreshIntervalMs >= 0)) {
      throw new ConfigError(
        `proxyRefreshIntervalMs must be >= 0, not ${options.proxyRefreshIntervalMs}`,
      );
    }
    if (!Number.isInteger(this.maxDepth) || this.maxDepth < 1) {
      throw new ConfigError(`maxDepth must be an integer >= 1, not ${options.maxDepth}`);
    }
  }

  /**
   * A counter that moves whenever what `list()` returns may have changed (a repository served,
   * no longer served, or what a gateway proxies): compare it to know whether to look again.
   */
  get generation(): number {
    return this.changes;
  }

  /** Full walks of the --directory roots done so far (the first one and reconciliations). */
  get scans(): number {
    return this.scanCount;
  }

  /** Reads of a gateway's proxy.log and cluster.log (git processes) done so far. */
  get proxyLogReads(): number {
    return this.proxyReads;
  }

  /** Whether the first walk of the --directory roots has finished (true without roots). */
  get firstScanFinished(): boolean {
    return this.firstScanDone;
  }

  /**
   * Reads every --repo's uuid, checks the --directory roots, then walks them (registering each
   * repository as it is found) and starts watching. Every bad --repo or --directory is reported
   * in one ConfigError. Resolves when the first walk is done; see start() for not waiting.
   */
  async init(): Promise<void> {
    await this.start();
    await this.whenScanned();
  }

  /**
   * As init(), but resolves once the --repo repositories are read and the first walk of the
   * --directory roots has begun: repositories are served as they are found (see firstScanFinished and
   * whenScanned()).
   */
  async start(): Promise<void> {
    const problems: string[] = [];
    const found = await mapLimit(this.repoPaths, GIT_CONCURRENCY, (p) => this.readRepo(p));
    for (const result of found) {
      if (typeof result === 'string') {
        problems.push(result);
      }
    }
    for (const dir of this.directories) {
      if (!(await isDirectory(dir))) {
        problems.push(`--directory ${dir}: not a directory`);
      }
    }
    if (problems.length > 0) {
      throw new ConfigError(problems.join('\n'));
    }
    this.fixed.clear();
    for (const { repo, gitDir, commonDir } of found as Found[]) {
      if (!this.fixed.has(repo.uuid)) {
        await this.prepare(repo);
      }
      this.add(this.fixed, repo);
      this.fixedDirs.set(repo.path, { gitDir, commonDir });
    }
    this.initialised = true;
    for (const repo of this.fixed.values()) {
      const dirs = this.fixedDirs.get(repo.path);
      if (dirs !== undefined) {
        // Few, and given explicitly: every --repo is read for what it proxies and watched.
        this.addGateway(repo, dirs.gitDir, dirs.commonDir);
      }
    }
    this.firstScan = this.serialised(async () => {
      await this.walkRoots();
      this.firstScanDone = true;
      this.lastReconcileEnd = performance.now();
    });
    this.firstScan.catch(() => {});
    this.scheduleReconcile();
  }

  /** Resolves when the first walk of the --directory roots is done. */
  async whenScanned(): Promise<void> {
    if (this.firstScan === undefined) {
      throw new Error('RepositoryRegistry.whenScanned() called before start()');
    }
    await this.firstScan;
    await this.refreshGateways(true);
  }

  /** Stops watching and reconciling. */
  close(): void {
    this.closed = true;
    clearTimeout(this.reconcileTimer);
    clearTimeout(this.pendingTimer);
    for (const root of this.roots.values()) {
      this.unwatchTree(root);
    }
    for (const gateway of this.gateways.values()) {
      closeAll(gateway.watchers);
      gateway.watchers = [];
    }
  }

  /**
   * What serves `uuid`: a repository's own uuid, or a uuid a repository proxies (then `path` is
   * the gateway's). A proxied uuid makes its gateway's proxy.log be checked for changes (at most
   * once per proxyRefreshIntervalMs, a check in progress is shared). An unknown uuid costs two
   * map lookups: it never makes anything be scanned or read.
   */
  async lookup(uuid: string): Promise<ServedRepository | undefined> {
    if (!this.initialised) {
      throw new Error('RepositoryRegistry.lookup() called before init()');
    }
    if (!UUID.test(uuid)) {
      return undefined;
    }
    const own = await this.known(uuid);
    if (own !== undefined) {
      return own;
    }
    const hit = this.proxied.get(uuid);
    if (hit === undefined) {
      return undefined;
    }
    const gateway = this.gateways.get(hit.path);
    if (gateway !== undefined) {
      await this.checkGateway(gateway);
    }
    return this.knownProxied(uuid);
  }

  /**
   * `uuid` as served through the repository at `repoPath`: its own uuid, or a uuid it proxies
   * (even one that another served repository proxies too, which lookup() would give to the
   * first). Undefined when that repository is not served or does not serve `uuid`.
   */
  async lookupAt(repoPath: string, uuid: string): Promise<ServedRepository | undefined> {
    const found = await this.lookup(uuid);
    if (found === undefined || found.path === repoPath) {
      return found?.path === repoPath ? found : undefined;
    }
    if (found.kind === 'repository') {
      return undefined; // a repository's own uuid is never served through another one
    }
    const gateway = this.gateways.get(repoPath);
    if (gateway === undefined || (await this.known(gateway.uuid))?.path !== repoPath) {
      return undefined;
    }
    await this.checkGateway(gateway);
    const proxied = gateway.proxied.find((entry) => entry.uuid === uuid);
    if (proxied === undefined) {
      return undefined;
    }
    const served: ServedRepository = {
      uuid,
      path: gateway.path,
      kind: proxied.kind,
      gateway: gateway.uuid,
    };
    return proxied.specialRemote ? { ...served, specialRemote: true } : served;
  }

  /**
   * Reconciles now when the first walk is done and the last reconciliation ended
   * reconcileIntervalMs ago or more (a walk that stats each repository's config, and a check of
   * each gateway); otherwise does nothing.
   */
  async refresh(): Promise<void> {
    if (!this.initialised) {
      throw new Error('RepositoryRegistry.refresh() called before init()');
    }
    // The first walk is a reconciliation of its own.
    if (
      this.firstScanFinished &&
      performance.now() - this.lastReconcileEnd >= this.reconcileIntervalMs
    ) {
      await this.reconcile();
    }
  }

  /** Walks the roots and checks every gateway now (the periodic safety net). */
  reconcile(): Promise<void> {
    this.reconciling ??= this.serialised(() => this.walkRoots())
      .then(() => this.refreshGateways(true))
      .catch((err: unknown) => {
        this.log(`scanning ${this.directories.join(', ')} failed: ${String(err)}`);
      })
      .finally(() => {
        this.lastReconcileEnd = performance.now();
        this.reconciling = undefined;
      });
    return this.reconciling;
  }

  /**
   * Every uuid served right now: the --repo repositories first, then those found below the
   * roots, then the proxied and cluster uuids as last read.
   */
  list(): ServedRepository[] {
    return [...this.fixed.values(), ...this.scanned.values(), ...this.proxied.values()];
  }

  private async known(uuid: string): Promise<ServedRepository | undefined> {
    const fixed = this.fixed.get(uuid);
    if (fixed !== undefined) {
      return fixed;
    }
    const found = this.scanned.get(uuid);
    if (found !== undefined && !(await isDirectory(found.path))) {
      // Removed, and the watch has not told yet: stop serving it (and what it proxied) now.
      const node = this.repoNodes.get(found.path);
      if (node !== undefined && this.scanned.get(uuid) === found) {
        this.forget(node);
      }
      return undefined;
    }
    return found;
  }

  /** A proxied uuid whose gateway is still served. */
  private async knownProxied(uuid: string): Promise<ServedRepository | undefined> {
    const hit = this.proxied.get(uuid);
    if (hit === undefined || hit.gateway === undefined) {
      return undefined;
    }
    const gateway = await this.known(hit.gateway);
    return gateway !== undefined && gateway.path === hit.path ? this.proxied.get(uuid) : undefined;
  }

  /** Adds `repo` unless its uuid is taken; a clash with another path is warned about once. */
  private add(into: Map<string, ServedRepository>, repo: ServedRepository): boolean {
    const first = this.fixed.get(repo.uuid) ?? into.get(repo.uuid);
    if (first === undefined) {
      into.set(repo.uuid, repo);
      this.changes += 1;
      return true;
    }
    const key = `${repo.uuid}\0${repo.path}`;
    if (first.path !== repo.path && !this.warned.has(key)) {
      this.warned.add(key);
      this.log(
        `repository ${repo.path} has the same uuid ${repo.uuid} as ${first.path}; serving only ${first.path}`,
      );
    }
    return first.path === repo.path;
  }

  private warnOnce(key: string, msg: string): void {
    if (!this.warned.has(key)) {
      this.warned.add(key);
      this.log(msg);
    }
  }

  // -------------------------------------------------------------------------------------------
  // The --directory trees
  // -------------------------------------------------------------------------------------------

  /** Runs `fn` after every tree change queued before it. */
  private serialised(fn: () => Promise<void>): Promise<void> {
    const run = this.chain.then(fn);
    this.chain = run.catch(() => {});
    return run;
  }

  private scheduleReconcile(): void {
    if (this.closed || this.directories.length === 0) {
      return;
    }
    this.reconcileTimer = setTimeout(() => {
      void this.refresh().finally(() => this.scheduleReconcile());
    }, this.reconcileIntervalMs);
    this.reconcileTimer.unref();
  }

  private async walkRoots(): Promise<void> {
    this.scanCount++;
    for (const dir of this.directories) {
      const node = await this.visit(dir, 0, this.roots.get(dir));
      if (node?.kind === 'dir') {
        this.roots.set(dir, node);
      } else {
        const old = this.roots.get(dir);
        if (old !== undefined) {
          this.forget(old);
        }
        this.roots.delete(dir);
      }
    }
  }

  /**
   * Reads what `path` is now and brings its node (`existing`, if any) up to date: a repository
   * is (re)registered, a directory that can hold repositories is watched and walked. Returns
   * the node to keep, or undefined when nothing at `path` needs one.
   */
  private async visit(
    path: string,
    depth: number,
    existing: TreeNode | undefined,
    full = true,
  ): Promise<TreeNode | undefined> {
    if (existing?.kind === 'repo' && existing.forgotten) {
      existing = undefined; // dropped on a lookup that found its directory gone
    }
    let entries: Dirent[];
    try {
      entries = await readdir(path, { withFileTypes: true });
    } catch {
      if (existing !== undefined) {
        this.forget(existing);
      }
      return undefined;
    }
    const what = classify(path, entries, depth);
    if (what.kind === 'repo') {
      if (existing?.kind === 'repo' && existing.gitDir === what.gitDir) {
        await this.readRepoNode(existing);
        return existing;
      }
      if (existing !== undefined) {
        this.forget(existing);
      }
      const node: RepoNode = { ...what, kind: 'repo', path, depth, uuid: '', mayProxy: false };
      this.repoNodes.set(path, node);
      await this.readRepoNode(node);
      return node;
    }
    if (depth >= this.maxDepth) {
      if (existing !== undefined) {
        this.forget(existing);
      }
      return undefined;
    }
    let node: DirNode;
    if (existing?.kind === 'dir') {
      node = existing;
    } else {
      if (existing !== undefined) {
        this.forget(existing);
      }
      node = { kind: 'dir', path, depth, children: new Map() };
    }
    this.watchDir(node);
    const names = new Set(
      entries.filter((e) => e.isDirectory() && e.name !== '.git').map((e) => e.name),
    );
    for (const [name, child] of node.children) {
      if (!names.has(name)) {
        this.forget(child);
        node.children.delete(name);
      }
    }
    const toVisit = [...names].sort().filter((name) => full || !node.children.has(name));
    await mapLimit(toVisit, WALK_CONCURRENCY, async (name) => {
      const child = await this.visit(join(path, name), depth + 1, node.children.get(name), full);
      if (child === undefined) {
        node.children.delete(name);
      } else {
        node.children.set(name, child);
      }
    });
    return node;
  }

  /** Stops serving everything at and below `node`, and stops watching it. */
  private forget(node: TreeNode): void {
    if (node.kind === 'dir') {
      node.watcher?.close();
      node.watcher = undefined;
      this.pending.delete(node);
      for (const child of node.children.values()) {
        this.forget(child);
      }
      node.children.clear();
      return;
    }
    node.forgotten = true;
    node.watcher?.close();
    node.watcher = undefined;
    this.pendingRepos.delete(node);
    if (this.repoNodes.get(node.path) === node) {
      this.repoNodes.delete(node.path);
    }
    this.unregister(node);
  }

  private unwatchTree(node: TreeNode): void {
    node.watcher?.close();
    node.watcher = undefined;
    if (node.kind === 'dir') {
      for (const child of node.children.values()) {
        this.unwatchTree(child);
      }
    }
  }

  /** Reads a repository's config when it changed since the last read, and registers it. */
  private async readRepoNode(node: RepoNode): Promise<void> {
    let stamp: string | undefined;
    if (node.configFile !== undefined) {
      try {
        const s = await stat(node.configFile, { bigint: true });
        stamp = `${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
      } catch {
        stamp = '-'; // no config (yet): not a repository
      }
      if (stamp === node.stamp) {
        return;
      }
    } else if (node.stamp !== undefined) {
      return; // a `.git` file: read once, then at reconciliations only when re-found
    }
    const facts: ConfigFacts | { error: string } =
      stamp === '-' ? { uuid: '', mayProxy: false } : await this.readFacts(node);
    if (node.forgotten) {
      return;
    }
    node.stamp = stamp ?? 'read';
    if ('error' in facts) {
      this.warnOnce(
        `unreadable\0${node.path}`,
        `repository ${node.path}: cannot read its git config (${facts.error}); not served`,
      );
      this.setUuid(node, '', false);
      return;
    }
    if (facts.uuid !== '' && !UUID.test(facts.uuid)) {
      this.warnOnce(
        `invalid\0${node.path}\0${facts.uuid}`,
        `repository ${node.path}: annex.uuid ${JSON.stringify(facts.uuid)} is not a valid uuid; not served`,
      );
      this.setUuid(node, '', false);
      return;
    }
    if (facts.uuid !== node.uuid && facts.uuid !== '' && !this.fixed.has(facts.uuid)) {
      await this.prepare({ uuid: facts.uuid, path: node.path, kind: 'repository' });
      if (node.forgotten) {
        return;
      }
    }
    this.setUuid(node, facts.uuid, facts.mayProxy);
  }

  /** annex.uuid and whether it may proxy: from the config file, else from `git config`. */
  private async readFacts(node: RepoNode): Promise<ConfigFacts | { error: string }> {
    if (node.configFile !== undefined) {
      let text: string | undefined;
      try {
        text = await readFile(node.configFile, 'utf8');
      } catch {
        return { uuid: '', mayProxy: false };
      }
      const facts = parseConfigFacts(text);
      if (facts !== undefined) {
        return facts;
      }
    }
    const uuid = await this.readUuid(node.gitDir);
    if (typeof uuid !== 'string') {
      return uuid;
    }
    // Not read in-process: whether it proxies is found out by reading its proxy.log.
    return { uuid, mayProxy: true };
  }

  /** Registers `node` under `uuid` ('' = not served), replacing what it had. */
  private setUuid(node: RepoNode, uuid: string, mayProxy: boolean): void {
    if (node.uuid === uuid && node.mayProxy === mayProxy) {
      this.watchPlain(node);
      return;
    }
    this.unregister(node);
    node.uuid = uuid;
    node.mayProxy = mayProxy;
    this.watchPlain(node);
    if (uuid === '') {
      return;
    }
    const claimants = this.claims.get(uuid) ?? [];
    claimants.push(node);
    this.claims.set(uuid, claimants);
    const repo: ServedRepository = { uuid, path: node.path, kind: 'repository' };
    if (this.add(this.scanned, repo) && this.scanned.get(uuid) === repo && mayProxy) {
      this.addGateway(repo, node.gitDir, node.commonDir);
    }
  }

  /** Stops serving `node`'s uuid through it; another repository with that uuid takes over. */
  private unregister(node: RepoNode): void {
    if (node.uuid === '') {
      return;
    }
    const uuid = node.uuid;
    const claimants = (this.claims.get(uuid) ?? []).filter((c) => c !== node);
    if (claimants.length > 0) {
      this.claims.set(uuid, claimants);
    } else {
      this.claims.delete(uuid);
    }
    const served = this.scanned.get(uuid);
    if (served?.path === node.path) {
      this.changes += 1;
      this.scanned.delete(uuid);
      this.removeGateway(node.path);
      const next = claimants[0];
      if (next !== undefined) {
        const repo: ServedRepository = { uuid, path: next.path, kind: 'repository' };
        this.scanned.set(uuid, repo);
        if (next.mayProxy) {
          this.addGateway(repo, next.gitDir, next.commonDir);
        }
      }
    }
    node.uuid = '';
    node.mayProxy = false;
  }

  /** A directory that can hold repositories: watched for entries appearing and vanishing. */
  private watchDir(node: DirNode): void {
    if (node.watcher !== undefined || !this.watching || this.closed) {
      return;
    }
    node.watcher = this.watchPath(node.path, (name) => {
      const names = this.pending.get(node);
      if (name === null) {
        this.pending.set(node, 'all');
      } else if (names !== 'all') {
        this.pending.set(node, (names ?? new Set()).add(name));
      }
      this.settle();
    });
  }

  /**
   * A plain git repository (no annex.uuid) is watched, so that `git annex init` is seen; a
   * served one is not (its config is re-read at reconciliations, its removal is seen by its
   * parent directory's watch).
   */
  private watchPlain(node: RepoNode): void {
    if (node.uuid !== '' || node.configFile === undefined || !this.watching || this.closed) {
      node.watcher?.close();
      node.watcher = undefined;
      return;
    }
    node.watcher ??= this.watchPath(node.commonDir ?? node.gitDir, (name) => {
      if (name === null || name === 'config') {
        this.pendingRepos.add(node);
        this.settle();
      }
    });
  }

  private watchPath(path: string, onChange: (name: string | null) => void): FSWatcher | undefined {
    try {
      const watcher = watch(path, { persistent: false }, (_event, name) => {
        onChange(typeof name === 'string' ? name : null);
      });
      watcher.on('error', () => {
        watcher.close(); // the directory went away: its parent's watch tells
      });
      return watcher;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if ((code === 'ENOSPC' || code === 'EMFILE') && !this.watchFailed) {
        this.watchFailed = true;
        this.log(
          `cannot watch ${path} (${code}: the inotify watch limit, fs.inotify.max_user_watches, ` +
            `is reached); new repositories are found by the reconciliation every ` +
            `${Math.round(this.reconcileIntervalMs / 1000)} s instead`,
        );
      }
      return undefined;
    }
  }

  /** Handles the watch events gathered, SETTLE_MS after the first of them. */
  private settle(): void {
    if (this.pendingTimer !== undefined || this.closed) {
      return;
    }
    this.pendingTimer = setTimeout(() => {
      this.pendingTimer = undefined;
      void this.serialised(() => this.applyPending()).catch((err: unknown) => {
        this.log(`re-reading changed directories failed: ${String(err)}`);
      });
    }, SETTLE_MS);
    this.pendingTimer.unref();
  }

  private async applyPending(): Promise<void> {
    const dirs = [...this.pending];
    this.pending.clear();
    const repos = [...this.pendingRepos];
    this.pendingRepos.clear();
    for (const repo of repos) {
      if (!repo.forgotten) {
        await this.readRepoNode(repo);
      }
    }
    for (const [node, names] of dirs) {
      if (node.watcher === undefined && this.watching) {
        continue; // forgotten since
      }
      const marker = names === 'all' || [...names].some((n) => REPOSITORY_MARKERS.has(n));
      if (marker && node.depth > 0) {
        // It may have become a repository: re-read it from its parent.
        await this.revisitInParent(node);
        continue;
      }
      if (names === 'all') {
        await this.visit(node.path, node.depth, node, false);
        continue;
      }
      await mapLimit([...names], WALK_CONCURRENCY, async (name) => {
        const path = join(node.path, name);
        // Only real directories, as in a walk: never a symlink, never a .git directory.
        const real = name !== '.git' && (await lstat(path).catch(() => undefined))?.isDirectory();
        const child = real
          ? await this.visit(path, node.depth + 1, node.children.get(name))
          : undefined;
        if (child === undefined) {
          const old = node.children.get(name);
          if (old !== undefined) {
            this.forget(old);
          }
          node.children.delete(name);
        } else {
          node.children.set(name, child);
        }
      });
    }
  }

  private async revisitInParent(node: DirNode): Promise<void> {
    const parent = this.parentOf(node.path);
    const name = node.path.slice(node.path.lastIndexOf('/') + 1);
    const next = await this.visit(node.path, node.depth, node);
    if (parent !== undefined) {
      if (next === undefined) {
        parent.children.delete(name);
      } else {
        parent.children.set(name, next);
      }
    }
  }

  /** The directory node holding `path`, if it is watched. */
  private parentOf(path: string): DirNode | undefined {
    const parentPath = path.slice(0, path.lastIndexOf('/'));
    for (const root of this.roots.values()) {
      if (parentPath === root.path) {
        return root;
      }
      if (!parentPath.startsWith(`${root.path}/`)) {
        continue;
      }
      let node: TreeNode | undefined = root;
      for (const part of parentPath.slice(root.path.length + 1).split('/')) {
        node = node?.kind === 'dir' ? node.children.get(part) : undefined;
      }
      return node?.kind === 'dir' ? node : undefined;
    }
    return undefined;
  }

  // -------------------------------------------------------------------------------------------
  // Gateways
  // -------------------------------------------------------------------------------------------

  private addGateway(repo: ServedRepository, gitDir: string, commonDir?: string): void {
    if (this.gateways.has(repo.path)) {
      return;
    }
    const gateway: GatewayState = {
      uuid: repo.uuid,
      path: repo.path,
      gitDir,
      commonDir,
      checkedAt: -Infinity,
      proxied: [],
      watchers: [],
    };
    this.gateways.set(repo.path, gateway);
    void this.checkGateway(gateway).then(() => this.watchGateway(gateway));
  }

  private removeGateway(path: string): void {
    const gateway = this.gateways.get(path);
    if (gateway === undefined) {
      return;
    }
    this.gateways.delete(path);
    closeAll(gateway.watchers);
    gateway.watchers = [];
    if (gateway.proxied.length > 0) {
      this.reindex();
    }
  }

  /** Watches what changes when what a gateway proxies may have changed. */
  private watchGateway(gateway: GatewayState): void {
    if (
      !this.watching ||
      this.closed ||
      gateway.commonDir === undefined ||
      this.gateways.get(gateway.path) !== gateway ||
      gateway.watchers.length > 0
    ) {
      return;
    }
    const recheck = () => {
      gateway.checkedAt = -Infinity;
      void this.checkGateway(gateway);
    };
    for (const dir of ['', 'refs/heads', 'annex/journal', 'annex/journal-private']) {
      const watcher = this.watchPath(join(gateway.commonDir, dir), recheck);
      if (watcher !== undefined) {
        gateway.watchers.push(watcher);
      }
    }
  }

  /**
   * Rebuilds the proxied index: gateways in the order they were found, the first gateway of a
   * uuid wins, and a uuid that some served repository has as its own is never served by proxy.
   */
  private reindex(): void {
    const index = new Map<string, ServedRepository>();
    const ordered = [
      ...[...this.gateways.values()].filter((g) => this.fixed.get(g.uuid)?.path === g.path),
      ...[...this.gateways.values()].filter((g) => this.fixed.get(g.uuid)?.path !== g.path),
    ];
    for (const gateway of ordered) {
      for (const { uuid, kind, specialRemote } of gateway.proxied) {
        if (index.has(uuid) || this.fixed.has(uuid) || this.scanned.has(uuid)) {
          continue;
        }
        const served: ServedRepository = { uuid, path: gateway.path, kind, gateway: gateway.uuid };
        index.set(uuid, specialRemote ? { ...served, specialRemote } : served);
      }
    }
    this.proxied = index;
    this.changes += 1;
  }

  /** Checks every gateway that is due (see checkGateway); `force` checks them all. */
  private async refreshGateways(force = false): Promise<void> {
    await mapLimit([...this.gateways.values()], GIT_CONCURRENCY, (g) => {
      if (force && g.checking === undefined) {
        g.checkedAt = -Infinity;
      }
      return this.checkGateway(g).then(() => this.watchGateway(g));
    });
  }

  /**
   * Re-reads what `gateway` proxies if its git-annex branch or journal changed, unless it was
   * checked less than proxyRefreshIntervalMs ago; a check in progress is shared. The check
   * itself is a few stats; git runs only when something changed.
   */
  private checkGateway(gateway: GatewayState): Promise<void> {
    if (gateway.checking !== undefined) {
      return gateway.checking;
    }
    if (performance.now() - gateway.checkedAt < this.proxyRefreshIntervalMs) {
      return Promise.resolve();
    }
    gateway.checking = this.readGateway(gateway)
      .catch((err: unknown) => {
        this.warnOnce(
          `proxies\0${gateway.path}\0${String(err)}`,
          `repository ${gateway.path}: cannot read what it proxies (${firstLine(
            err instanceof Error ? err.message : String(err),
          )}); keeping what was read before`,
        );
      })
      .finally(() => {
        gateway.checkedAt = performance.now();
        gateway.checking = undefined;
      });
    return gateway.checking;
  }

  private async readGateway(gateway: GatewayState): Promise<void> {
    gateway.commonDir ??= await gitCommonDir(this.git, gateway.gitDir);
    // The stamp is taken before reading, so a change during the read is seen next time.
    const stamp = await branchStamp(gateway.commonDir);
    if (stamp === gateway.stamp) {
      return;
    }
    this.proxyReads++;
    const proxied = await readProxiedUuids(this.git, gateway.commonDir, gateway.uuid);
    gateway.stamp = stamp;
    if (!sameProxied(gateway.proxied, proxied)) {
      gateway.proxied = proxied;
      if (this.gateways.get(gateway.path) === gateway) {
        this.reindex();
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // --repo
  // -------------------------------------------------------------------------------------------

  /** A --repo's top directory and uuid, or the problem with it. */
  private async readRepo(path: string): Promise<Found | string> {
    const where = `--repo ${path}`;
    if (!(await isDirectory(path))) {
      return `${where}: not a directory`;
    }
    const rev = await runGit(this.git, [
      '-C',
      path,
      'rev-parse',
      '--is-bare-repository',
      '--is-inside-git-dir',
      '--absolute-git-dir',
      '--path-format=absolute',
      '--git-common-dir',
      // Last: a bare repository prints no line for it.
      '--show-cdup',
    ]);
    if (rev.code !== 0) {
      return `${where}: not a git repository (${firstLine(rev.stderr)})`;
    }
    const [bare, insideGitDir, gitDir, commonDir, cdup] = rev.stdout.split('\n');
    if (gitDir === undefined || gitDir === '') {
      return `${where}: git rev-parse gave no git directory`;
    }
    let top: string;
    if (bare === 'true') {
      top = gitDir;
    } else if (insideGitDir === 'true') {
      return `${where}: inside a .git directory; give the repository's top directory`;
    } else {
      top = resolve(path, cdup ?? '');
    }
    const uuid = await this.readUuid(gitDir);
    if (typeof uuid !== 'string') {
      return `${where}: cannot read its git config (${uuid.error})`;
    }
    if (uuid === '') {
      return `${where}: not a git-annex repository (annex.uuid is not set; run git annex init)`;
    }
    if (!UUID.test(uuid)) {
      return `${where}: annex.uuid ${JSON.stringify(uuid)} is not a valid uuid`;
    }
    return {
      repo: { uuid, path: top, kind: 'repository' },
      gitDir,
      commonDir: commonDir === undefined || commonDir === '' ? undefined : commonDir,
    };
  }

  /** annex.uuid from the repository's own config: '' when unset. */
  private async readUuid(gitDir: string): Promise<string | { error: string }> {
    const res = await runGit(this.git, [
      `--git-dir=${gitDir}`,
      'config',
      '--local',
      '--get',
      'annex.uuid',
    ]);
    if (res.code === 0) {
      return res.stdout.trim();
    }
    if (res.code === 1) {
      return '';
    }
    return { error: firstLine(res.stderr) };
  }
}

function closeAll(watchers: FSWatcher[]): void {
  for (const watcher of watchers) {
    watcher.close();
  }
}

function sameProxied(a: ProxiedUuid[], b: ProxiedUuid[]): boolean {
  return (
    a.length === b.length &&
    a.every(
      (x, i) =>
        x.uuid === b[i]?.uuid && x.kind === b[i]?.kind && x.specialRemote === b[i]?.specialRemote,
    )
  );
}
