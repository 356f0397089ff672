/**
 * Which repositories are served, by uuid (PROTOCOL.md §4, DESIGN.md "Serving repositories").
 *
 * - `--repo PATH`: the repository containing PATH (its top directory, or the bare repository),
 *   read once by init(). Not an initialised git-annex repository → ConfigError.
 * - `--directory DIR`: every git-annex repository below DIR, at any depth up to `maxDepth`,
 *   without following symlinks. A request for an unknown uuid rescans (at most once per
 *   `rescanIntervalMs`, one scan at a time), so repositories added later are served without a
 *   restart; one whose directory disappeared stops being served.
 *
 * Only each repository's own uuid is registered here; the uuids of the remotes and clusters it
 * proxies for are not.
 *
 * git runs through execFile (no shell) with the repository given explicitly, so neither the
 * caller's GIT_DIR nor a repository above a scanned directory can leak in.
 */
import { execFile } from 'node:child_process';
import type { Dirent } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ConfigError } from './errors';

export interface ServedRepository {
  uuid: string;
  /** The repository's top directory (the repository directory itself when bare). */
  path: string;
}

export interface RepositoryRegistryOptions {
  repos: string[];
  directories: string[];
  /** Minimum time between directory rescans; default 2000. */
  rescanIntervalMs?: number;
  /** How many directory levels below a --directory root are searched; default 8. */
  maxDepth?: number;
  /** Warnings (duplicate uuids, unreadable repositories). */
  log?: (msg: string) => void;
  /** The git executable; default 'git'. */
  git?: string;
}

export const DEFAULT_RESCAN_INTERVAL_MS = 2000;
export const DEFAULT_MAX_DEPTH = 8;
const GIT_TIMEOUT_MS = 30_000;
const GIT_CONCURRENCY = 8;

const UUID = /^[A-Za-z0-9][A-Za-z0-9-]*$/;

/** A uuid as git-annex accepts one in a URL: letters, digits and '-', not starting with '-'. */
export function isServableUuid(uuid: string): boolean {
  return UUID.test(uuid);
}

/** Variables that would make git look at some other repository than the one we name. */
const GIT_LOCATION_VARIABLES = [
  'GIT_DIR',
  'GIT_WORK_TREE',
  'GIT_COMMON_DIR',
  'GIT_INDEX_FILE',
  'GIT_OBJECT_DIRECTORY',
  'GIT_ALTERNATE_OBJECT_DIRECTORIES',
  'GIT_NAMESPACE',
  'GIT_PREFIX',
  'GIT_CEILING_DIRECTORIES',
  'GIT_DISCOVERY_ACROSS_FILESYSTEM',
];

function gitEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of GIT_LOCATION_VARIABLES) {
    delete env[name];
  }
  return env;
}

interface GitResult {
  code: number;
  stdout: string;
  stderr: string;
}

function runGit(git: string, args: string[]): Promise<GitResult> {
  return new Promise((done) => {
    execFile(
      git,
      args,
      { env: gitEnv(), timeout: GIT_TIMEOUT_MS, maxBuffer: 1024 * 1024, encoding: 'utf8' },
      (error, stdout, stderr) => {
        if (error === null) {
          done({ code: 0, stdout, stderr });
          return;
        }
        // A numeric code is git's exit status; otherwise git could not run (ENOENT, timeout).
        const code = typeof error.code === 'number' ? error.code : -1;
        done({ code, stdout, stderr: stderr || error.message });
      },
    );
  });
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

export class RepositoryRegistry {
  private readonly repoPaths: string[];
  private readonly directories: string[];
  private readonly rescanIntervalMs: number;
  private readonly maxDepth: number;
  private readonly log: (msg: string) => void;
  private readonly git: string;

  /** From --repo, fixed after init(). */
  private readonly fixed = new Map<string, ServedRepository>();
  /** From --directory, replaced by every scan. */
  private scanned = new Map<string, ServedRepository>();
  /** Per scanned repository path: its annex.uuid ('' = none) and the config stat it came from. */
  private uuidCache = new Map<string, { stamp: string; uuid: string }>();
  private readonly warned = new Set<string>();
  private initialised = false;
  private scanning: Promise<void> | undefined;
  private lastScanEnd = -Infinity;
  private scanCount = 0;

  constructor(options: RepositoryRegistryOptions) {
    this.repoPaths = options.repos.map((p) => resolve(p));
    this.directories = options.directories.map((p) => resolve(p));
    this.rescanIntervalMs = options.rescanIntervalMs ?? DEFAULT_RESCAN_INTERVAL_MS;
    this.maxDepth = options.maxDepth ?? DEFAULT_MAX_DEPTH;
    this.log = options.log ?? (() => {});
    this.git = options.git ?? 'git';
    if (!(this.rescanIntervalMs >= 0)) {
      throw new ConfigError(`rescanIntervalMs must be >= 0, not ${options.rescanIntervalMs}`);
    }
    if (!Number.isInteger(this.maxDepth) || this.maxDepth < 1) {
      throw new ConfigError(`maxDepth must be an integer >= 1, not ${options.maxDepth}`);
    }
  }

  /** Directory scans done so far (init's included). */
  get scans(): number {
    return this.scanCount;
  }

  /**
   * Reads every --repo's uuid and scans the --directory roots. Every bad --repo or --directory is
   * reported in one ConfigError.
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
    for (const repo of found as ServedRepository[]) {
      this.add(this.fixed, repo);
    }
    this.initialised = true;
    this.lastScanEnd = -Infinity;
    await this.rescan();
  }

  /**
   * The repository serving `uuid`. An unknown (but well-formed) uuid makes the --directory roots
   * be rescanned, unless a scan ended less than rescanIntervalMs ago; a scan in progress is
   * shared.
   */
  async lookup(uuid: string): Promise<ServedRepository | undefined> {
    if (!this.initialised) {
      throw new Error('RepositoryRegistry.lookup() called before init()');
    }
    const known = await this.known(uuid);
    if (known !== undefined || !UUID.test(uuid) || this.directories.length === 0) {
      return known;
    }
    await this.rescan();
    return this.known(uuid);
  }

  /** Every repository served right now: the --repo ones first, then those found by the last scan. */
  list(): ServedRepository[] {
    return [...this.fixed.values(), ...this.scanned.values()];
  }

  private async known(uuid: string): Promise<ServedRepository | undefined> {
    const fixed = this.fixed.get(uuid);
    if (fixed !== undefined) {
      return fixed;
    }
    const found = this.scanned.get(uuid);
    if (found !== undefined && !(await isDirectory(found.path))) {
      // Removed since the last scan: stop serving it.
      this.scanned.delete(uuid);
      return undefined;
    }
    return found;
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

  /** A --repo's top directory and uuid, or the problem with it. */
  private async readRepo(path: string): Promise<ServedRepository | string> {
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
      '--show-cdup',
    ]);
    if (rev.code !== 0) {
      return `${where}: not a git repository (${firstLine(rev.stderr)})`;
    }
    const [bare, insideGitDir, gitDir, cdup] = rev.stdout.split('\n');
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
    return { uuid, path: top };
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
      this.add(scanned, { uuid, path: c.path });
    });
    this.scanned = scanned;
    this.uuidCache = cache;
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

function firstLine(text: string): string {
  return (
    text
      .split('\n')
      .map((l) => l.trim())
      .find((l) => l !== '') ?? 'no message'
  );
}
