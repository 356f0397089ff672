/**
 * Which repositories are served, by uuid (PROTOCOL.md §4, DESIGN.md "Serving repositories").
 *
 * - `--repo PATH`: the repository containing PATH (its top directory, or the bare repository),
 *   read once by init(). Not an initialised git-annex repository → ConfigError.
 * - `--directory DIR`: every git-annex repository below DIR, at any depth up to `maxDepth`,
 *   without following symlinks. A request for an unknown uuid rescans (at most once per
 *   `rescanIntervalMs`, one scan at a time), so repositories added later are served without a
 *   restart; one whose directory disappeared stops being served.
 * - Proxies and clusters: besides its own uuid, each served repository (the gateway) serves every
 *   uuid on its line of proxy.log (proxied remotes, its clusters, cluster nodes, nodes behind
 *   other gateways), read from its git-annex branch and journal (see proxies.ts). Requests for
 *   those go to the gateway's directory with the requested uuid, and git-annex-shell relays them.
 *   What a gateway proxies is re-read when its git-annex branch or journalled proxy.log /
 *   cluster.log changed; that is checked (by stat, no git process) at most once per
 *   `proxyRefreshIntervalMs` per gateway, on lookups of its proxied uuids and of unknown uuids.
 *   A repository's own uuid is never looked up anywhere else, and never shadowed by a proxied
 *   uuid.
 *
 * git runs through execFile/spawn (no shell) with the repository given explicitly, so neither the
 * caller's GIT_DIR nor a repository above a scanned directory can leak in. Every uuid is checked
 * against `^[A-Za-z0-9][A-Za-z0-9-]*$` before it is registered, so only such uuids reach an argv.
 */
import type { Dirent } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ConfigError } from './errors';
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
  /** Minimum time between directory rescans; default 2000. */
  rescanIntervalMs?: number;
  /** Minimum time between two checks of one gateway's proxy.log / cluster.log; default 1000. */
  proxyRefreshIntervalMs?: number;
  /** How many directory levels below a --directory root are searched; default 8. */
  maxDepth?: number;
  /** Warnings (duplicate uuids, unreadable repositories). */
  log?: (msg: string) => void;
  /** The git executable; default 'git'. */
  git?: string;
}

export const DEFAULT_RESCAN_INTERVAL_MS = 2000;
export const DEFAULT_PROXY_REFRESH_INTERVAL_MS = 1000;
export const DEFAULT_MAX_DEPTH = 8;
const GIT_CONCURRENCY = 8;

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

/** A repository found by a directory scan; `gitDir` is what git is pointed at. */
interface Candidate {
  path: string;
  gitDir: string;
  /** The config file whose stat identifies an unchanged annex.uuid; none for a `.git` file. */
  configFile?: string;
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
}

export class RepositoryRegistry {
  private readonly repoPaths: string[];
  private readonly directories: string[];
  private readonly rescanIntervalMs: number;
  private readonly proxyRefreshIntervalMs: number;
  private readonly maxDepth: number;
  private readonly log: (msg: string) => void;
  private readonly git: string;

  /** From --repo, fixed after init(). */
  private readonly fixed = new Map<string, ServedRepository>();
  /** From --directory, replaced by every scan. */
  private scanned = new Map<string, ServedRepository>();
  /** Where git finds each served repository, by path. */
  private gitDirs = new Map<string, { gitDir: string; commonDir?: string }>();
  /** Per served repository path: what it proxies. */
  private gateways = new Map<string, GatewayState>();
  /** Every proxied and cluster uuid served, built from `gateways` by reindex(). */
  private proxied = new Map<string, ServedRepository>();
  /** Per scanned repository path: its annex.uuid ('' = none) and the config stat it came from. */
  private uuidCache = new Map<string, { stamp: string; uuid: string }>();
  private readonly warned = new Set<string>();
  private initialised = false;
  private scanning: Promise<void> | undefined;
  private lastScanEnd = -Infinity;
  private scanCount = 0;
  private proxyReads = 0;

  constructor(options: RepositoryRegistryOptions) {
    this.repoPaths = options.repos.map((p) => resolve(p));
    this.directories = options.directories.map((p) => resolve(p));
    this.rescanIntervalMs = options.rescanIntervalMs ?? DEFAULT_RESCAN_INTERVAL_MS;
    this.proxyRefreshIntervalMs =
      options.proxyRefreshIntervalMs ?? DEFAULT_PROXY_REFRESH_INTERVAL_MS;
    this.maxDepth = options.maxDepth ?? DEFAULT_MAX_DEPTH;
    this.log = options.log ?? (() => {});
    this.git = options.git ?? 'git';
    if (!(this.rescanIntervalMs >= 0)) {
      throw new ConfigError(`rescanIntervalMs must be >= 0, not ${options.rescanIntervalMs}`);
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

  /** Directory scans done so far (init's included). */
  get scans(): number {
    return this.scanCount;
  }

  /** Reads of a gateway's proxy.log and cluster.log (git processes) done so far. */
  get proxyLogReads(): number {
    return this.proxyReads;
  }

  /**
   * Reads every --repo's uuid, scans the --directory roots and reads what each repository
   * proxies. Every bad --repo or --directory is reported in one ConfigError.
   */
  async init(): Promise<void> {
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
    const gitDirs = new Map<string, { gitDir: string; commonDir?: string }>();
    for (const { repo, gitDir, commonDir } of found as Found[]) {
      this.add(this.fixed, repo);
      gitDirs.set(repo.path, { gitDir, commonDir });
    }
    this.gitDirs = gitDirs;
    this.initialised = true;
    this.lastScanEnd = -Infinity;
    this.syncGateways();
    await this.rescan();
    await this.refreshGateways();
  }

  /**
   * What serves `uuid`: a repository's own uuid, or a uuid a repository proxies (then `path` is
   * the gateway's). A proxied uuid makes its gateway's proxy.log be checked for changes, an
   * unknown one every gateway's (each at most once per proxyRefreshIntervalMs) and then the
   * --directory roots be rescanned, unless a scan ended less than rescanIntervalMs ago; a check or
   * scan in progress is shared.
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
    if (hit !== undefined) {
      const gateway = this.gateways.get(hit.path);
      if (gateway !== undefined) {
        await this.checkGateway(gateway);
      }
      const now = await this.knownProxied(uuid);
      if (now !== undefined) {
        return now;
      }
    }
    await this.refreshGateways();
    const proxied = await this.knownProxied(uuid);
    if (proxied !== undefined || this.directories.length === 0) {
      return proxied;
    }
    await this.rescan();
    return (await this.known(uuid)) ?? (await this.knownProxied(uuid));
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
   * Notices changes without waiting for a lookup: rescans the --directory roots and re-reads
   * what each repository proxies, each only when its interval has passed (as lookup does).
   */
  async refresh(): Promise<void> {
    if (!this.initialised) {
      throw new Error('RepositoryRegistry.refresh() called before init()');
    }
    await this.rescan();
    await this.refreshGateways();
  }

  /**
   * Every uuid served right now: the --repo repositories first, then those found by the last
   * scan, then the proxied and cluster uuids as last read.
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
      // Removed since the last scan: stop serving it, and what it proxied.
      this.scanned.delete(uuid);
      this.syncGateways();
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
  private add(into: Map<string, ServedRepository>, repo: ServedRepository): void {
    const first = this.fixed.get(repo.uuid) ?? into.get(repo.uuid);
    if (first === undefined) {
      into.set(repo.uuid, repo);
      return;
    }
    const key = `${repo.uuid}\0${repo.path}`;
    if (first.path !== repo.path && !this.warned.has(key)) {
      this.warned.add(key);
      this.log(
        `repository ${repo.path} has the same uuid ${repo.uuid} as ${first.path}; serving only ${first.path}`,
      );
    }
  }

  private warnOnce(key: string, msg: string): void {
    if (!this.warned.has(key)) {
      this.warned.add(key);
      this.log(msg);
    }
  }

  /**
   * Makes `gateways` hold one state per served repository, keeping the state (and what was read)
   * of a repository still served at the same path with the same uuid, then rebuilds the index.
   */
  private syncGateways(): void {
    const next = new Map<string, GatewayState>();
    for (const repo of [...this.fixed.values(), ...this.scanned.values()]) {
      const old = this.gateways.get(repo.path);
      if (old !== undefined && old.uuid === repo.uuid) {
        next.set(repo.path, old);
        continue;
      }
      const dirs = this.gitDirs.get(repo.path);
      if (dirs === undefined) {
        continue; // cannot happen: every served repository's git directory is recorded
      }
      next.set(repo.path, {
        uuid: repo.uuid,
        path: repo.path,
        gitDir: dirs.gitDir,
        commonDir: dirs.commonDir,
        checkedAt: -Infinity,
        proxied: [],
      });
    }
    this.gateways = next;
    this.reindex();
  }

  /**
   * Rebuilds the proxied index: gateways in list() order, the first gateway of a uuid wins, and
   * a uuid that some served repository has as its own is never served by proxy.
   */
  private reindex(): void {
    const index = new Map<string, ServedRepository>();
    for (const gateway of this.gateways.values()) {
      for (const { uuid, kind, specialRemote } of gateway.proxied) {
        if (index.has(uuid) || this.fixed.has(uuid) || this.scanned.has(uuid)) {
          continue;
        }
        const served: ServedRepository = { uuid, path: gateway.path, kind, gateway: gateway.uuid };
        index.set(uuid, specialRemote ? { ...served, specialRemote } : served);
      }
    }
    this.proxied = index;
  }

  /** Checks every gateway that is due (see checkGateway). */
  private async refreshGateways(): Promise<void> {
    await mapLimit([...this.gateways.values()], GIT_CONCURRENCY, (g) => this.checkGateway(g));
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

  private rescan(): Promise<void> {
    if (this.scanning !== undefined) {
      return this.scanning;
    }
    if (
      this.directories.length === 0 ||
      performance.now() - this.lastScanEnd < this.rescanIntervalMs
    ) {
      return Promise.resolve();
    }
    this.scanning = this.scan()
      .then(() => this.refreshGateways())
      .catch((err: unknown) => {
        this.log(`scanning ${this.directories.join(', ')} failed: ${String(err)}`);
      })
      .finally(() => {
        this.lastScanEnd = performance.now();
        this.scanning = undefined;
      });
    return this.scanning;
  }

  private async scan(): Promise<void> {
    this.scanCount++;
    const candidates: Candidate[] = [];
    for (const root of this.directories) {
      await this.walk(root, 0, candidates);
    }
    const cache = new Map<string, { stamp: string; uuid: string }>();
    const uuids = await mapLimit(candidates, GIT_CONCURRENCY, (c) => this.candidateUuid(c, cache));
    const scanned = new Map<string, ServedRepository>();
    const gitDirs = new Map<string, { gitDir: string; commonDir?: string }>();
    for (const repo of this.fixed.values()) {
      const dirs = this.gitDirs.get(repo.path);
      if (dirs !== undefined) {
        gitDirs.set(repo.path, dirs);
      }
    }
    candidates.forEach((c, i) => {
      const uuid = uuids[i] ?? '';
      if (uuid === '') {
        return; // a plain git repository, or one git could not read
      }
      if (!UUID.test(uuid)) {
        this.warnOnce(
          `invalid\0${c.path}\0${uuid}`,
          `repository ${c.path}: annex.uuid ${JSON.stringify(uuid)} is not a valid uuid; not served`,
        );
        return;
      }
      this.add(scanned, { uuid, path: c.path, kind: 'repository' });
      if (!gitDirs.has(c.path)) {
        // A `.git` directory or a bare repository is its own common directory; a `.git` file
        // (worktree, submodule) is resolved by git when first needed.
        gitDirs.set(c.path, {
          gitDir: c.gitDir,
          commonDir: c.configFile !== undefined ? c.gitDir : undefined,
        });
      }
    });
    this.scanned = scanned;
    this.gitDirs = gitDirs;
    this.uuidCache = cache;
    this.syncGateways();
  }

  /**
   * Collects the repositories below `dir` (not `dir` itself when it is a root). Symlinks are
   * never followed; a repository's `.git` and a bare repository's insides are not entered, so
   * neither are annex object directories. Unreadable directories are skipped.
   */
  private async walk(dir: string, depth: number, out: Candidate[]): Promise<void> {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    const byName = new Map(entries.map((e) => [e.name, e]));
    if (depth > 0) {
      const dotGit = byName.get('.git');
      if (dotGit?.isDirectory()) {
        const gitDir = join(dir, '.git');
        out.push({ path: dir, gitDir, configFile: join(gitDir, 'config') });
      } else if (dotGit?.isFile()) {
        out.push({ path: dir, gitDir: join(dir, '.git') });
      } else if (
        byName.get('HEAD')?.isFile() &&
        byName.get('config')?.isFile() &&
        byName.get('objects')?.isDirectory()
      ) {
        out.push({ path: dir, gitDir: dir, configFile: join(dir, 'config') });
        return;
      }
    }
    if (depth >= this.maxDepth) {
      return;
    }
    const subdirs = entries
      .filter((e) => e.isDirectory() && e.name !== '.git')
      .map((e) => e.name)
      .sort();
    for (const name of subdirs) {
      await this.walk(join(dir, name), depth + 1, out);
    }
  }

  /** The candidate's annex.uuid, from the cache when its config file did not change. */
  private async candidateUuid(
    c: Candidate,
    cache: Map<string, { stamp: string; uuid: string }>,
  ): Promise<string> {
    let stamp: string | undefined;
    if (c.configFile !== undefined) {
      try {
        const s = await stat(c.configFile);
        stamp = `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
      } catch {
        return ''; // no config: not a repository
      }
      const cached = this.uuidCache.get(c.path);
      if (cached !== undefined && cached.stamp === stamp) {
        cache.set(c.path, cached);
        return cached.uuid;
      }
    }
    const uuid = await this.readUuid(c.gitDir);
    if (typeof uuid !== 'string') {
      this.warnOnce(
        `unreadable\0${c.path}`,
        `repository ${c.path}: cannot read its git config (${uuid.error}); not served`,
      );
      return '';
    }
    if (stamp !== undefined) {
      cache.set(c.path, { stamp, uuid });
    }
    return uuid;
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
