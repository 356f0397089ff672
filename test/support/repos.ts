/**
 * Repositories in a temp dir, for test/e2e, the libs' tests and scripts/bench: a sandbox with its
 * own HOME and git identity (one per test file or benchmark run), git and git-annex commands run
 * in a repository, served repositories and their files, copies of a served repository (they
 * share every byte and the uuid; annexed objects are hard links, everything git or git-annex may
 * rewrite in place is a real copy), and client clones that reach the served repository over HTTP
 * only (PROTOCOL.md §0, §5).
 */
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { lstat, mkdir, mkdtemp, open, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { CommandError, runCommand, type CommandResult } from './processes';
import { MiB } from './util';

const IDENTITY = {
  GIT_AUTHOR_NAME: 'annex-p2phttp test',
  GIT_AUTHOR_EMAIL: 'test@example.invalid',
  GIT_COMMITTER_NAME: 'annex-p2phttp test',
  GIT_COMMITTER_EMAIL: 'test@example.invalid',
};

export class Sandbox {
  private constructor(
    readonly root: string,
    readonly home: string,
  ) {}

  /** `$TMPDIR/annex-p2phttp-<name>-XXXXXX` with an isolated HOME and gitconfig. */
  static async create(name: string): Promise<Sandbox> {
    const root = await mkdtemp(path.join(tmpdir(), `annex-p2phttp-${name}-`));
    const home = path.join(root, 'home');
    await mkdir(home);
    await writeFile(
      path.join(home, '.gitconfig'),
      `[user]\n\tname = ${IDENTITY.GIT_AUTHOR_NAME}\n\temail = ${IDENTITY.GIT_AUTHOR_EMAIL}\n` +
        '[init]\n\tdefaultBranch = main\n',
    );
    return new Sandbox(root, home);
  }

  path(...parts: string[]): string {
    return path.join(this.root, ...parts);
  }

  /** Environment of every git, git-annex and server process: no inherited GIT_* settings. */
  env(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {};
    for (const [name, value] of Object.entries(process.env)) {
      if (!/^(GIT_|VITEST|NODE_ENV$|NODE_OPTIONS$|SSH_ASKPASS$|TEST$)/.test(name)) {
        env[name] = value;
      }
    }
    return {
      ...env,
      ...IDENTITY,
      HOME: this.home,
      XDG_CONFIG_HOME: path.join(this.home, '.config'),
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_TERMINAL_PROMPT: '0',
      LC_ALL: 'C.UTF-8',
      ...extra,
    };
  }

  async remove(): Promise<void> {
    await removeTree(this.root);
  }
}

/** rm -rf, after making directories writable (git-annex makes object directories read-only). */
export async function removeTree(dir: string): Promise<void> {
  await runCommand('chmod', ['-R', 'u+w', dir], { cwd: '/', env: process.env, timeoutMs: 120_000 });
  await rm(dir, { recursive: true, force: true });
}

/** A repository directory plus the environment its commands run with. */
export interface Repo {
  dir: string;
  env: NodeJS.ProcessEnv;
}

export interface RepoCommandOptions {
  /** default: 120 s for git, 600 s for git-annex */
  timeoutMs?: number;
  /** keep everything the command writes (default: the last MiB of stdout, 64 KiB of stderr) */
  keepAll?: boolean;
  /**
   * SIGKILL what is left of the command's process group once it exited (default true); false
   * leaves it to processes.ts's tracker.
   */
  sweepGroup?: boolean;
}

/** Runs `file args` in `repo` and resolves with its exit status whatever it is. */
export async function runIn(
  repo: Repo,
  file: string,
  args: readonly string[],
  { timeoutMs = 120_000, keepAll = false, sweepGroup = true }: RepoCommandOptions = {},
): Promise<CommandResult> {
  const result = await runCommand(file, args, {
    cwd: repo.dir,
    env: repo.env,
    timeoutMs,
    sweepGroup,
    ...(keepAll ? { keepStdout: Infinity, keepStderr: Infinity } : {}),
  });
  return result.timedOut
    ? { ...result, stderr: `${result.stderr}\n[killed after ${timeoutMs} ms]` }
    : result;
}

/** Runs `file args` in `repo`; throws a CommandError carrying its output unless it exits 0. */
export async function runCheckedIn(
  repo: Repo,
  file: string,
  args: readonly string[],
  options: RepoCommandOptions = {},
): Promise<CommandResult> {
  const result = await runIn(repo, file, args, options);
  if (result.code !== 0) {
    const line = [file, ...args].map((a) => JSON.stringify(a)).join(' ');
    throw new CommandError(`(cd ${repo.dir} && ${line})`, result);
  }
  return result;
}

function commandOptions(
  options: number | RepoCommandOptions | undefined,
  timeoutMs: number,
): RepoCommandOptions {
  return typeof options === 'number' ? { timeoutMs: options } : { timeoutMs, ...(options ?? {}) };
}

export function git(repo: Repo, args: readonly string[], options?: number | RepoCommandOptions) {
  return runCheckedIn(repo, 'git', args, commandOptions(options, 120_000));
}

/** `git-annex …` run directly (not through `git annex`), so that a kill reaches it. */
export function annex(repo: Repo, args: readonly string[], options?: number | RepoCommandOptions) {
  return runCheckedIn(repo, 'git-annex', args, commandOptions(options, 600_000));
}

/** `git-annex …`, resolving with its exit status whatever it is. */
export function annexStatus(
  repo: Repo,
  args: readonly string[],
  options?: number | RepoCommandOptions,
) {
  return runIn(repo, 'git-annex', args, commandOptions(options, 600_000));
}

// ---------------------------------------------------------------------------------------------
// Contents
// ---------------------------------------------------------------------------------------------

/** A file to write: random bytes of `size`, or the given `content`. */
export type FileSpec = { path: string; size: number } | { path: string; content: Buffer | string };

/** `count` files `dir/fNNN.bin` of `size` bytes each. */
export function manyFiles(dir: string, count: number, size: number): FileSpec[] {
  return Array.from({ length: count }, (_, i) => ({
    path: `${dir}/f${String(i).padStart(3, '0')}.bin`,
    size,
  }));
}

/** Writes the files below `dir`. */
export async function writeFiles(dir: string, files: readonly FileSpec[]): Promise<void> {
  for (const spec of files) {
    const file = path.join(dir, spec.path);
    if ('content' in spec) {
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, spec.content);
    } else {
      await writeRandomFile(file, spec.size);
    }
  }
}

/** Random bytes; above 8 MiB one random MiB repeated with a counter per MiB (fast, unique). */
export async function writeRandomFile(file: string, size: number): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  if (size <= 8 * MiB) {
    await writeFile(file, randomBytes(size));
    return;
  }
  const block = randomBytes(MiB);
  const salt = randomBytes(8);
  const handle = await open(file, 'w');
  try {
    for (let offset = 0, index = 0; offset < size; offset += block.length, index += 1) {
      block.writeUInt32LE(index, 0);
      salt.copy(block, 4);
      await handle.write(block, 0, Math.min(block.length, size - offset));
    }
  } finally {
    await handle.close();
  }
}

/**
 * Writes the files, `git annex add`s them and commits. `add: 'top-level'` (default) names their
 * top-level directories to `git annex add` (short for many files, but adds whatever else is new
 * there); `'each'` names every file.
 */
export async function addFiles(
  repo: Repo,
  files: readonly FileSpec[],
  { add = 'top-level' }: { add?: 'top-level' | 'each' } = {},
): Promise<void> {
  await writeFiles(repo.dir, files);
  await annex(repo, ['add', '-q', '--', ...addArguments(files, add)]);
  await git(repo, ['commit', '-q', '-m', `add ${files.length} files`]);
}

function addArguments(files: readonly FileSpec[], add: 'top-level' | 'each'): string[] {
  return add === 'each'
    ? files.map((spec) => spec.path)
    : [...new Set(files.map((spec) => spec.path.split('/')[0] ?? spec.path))];
}

/** worktree path → key of every annexed file in the worktree, present or not. */
export async function annexedKeys(repo: Repo): Promise<Map<string, string>> {
  const { stdout } = await annex(repo, ['find', '--json', '--include=*'], { keepAll: true });
  const keys = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    if (line.trim() !== '') {
      const entry = JSON.parse(line) as { file: string; key: string };
      keys.set(entry.file, entry.key);
    }
  }
  return keys;
}

export interface ServedRepo extends Repo {
  uuid: string;
  keys: Map<string, string>;
}

/** `git init -q -b main`, `git annex init`, add and commit `files` (one commit). */
export async function makeServedRepo(
  sandbox: Sandbox,
  dir: string,
  files: readonly FileSpec[],
): Promise<ServedRepo> {
  await mkdir(dir, { recursive: true });
  const repo: Repo = { dir, env: sandbox.env() };
  await git(repo, ['init', '-q', '-b', 'main']);
  await annex(repo, ['init', '-q', 'served']);
  await writeFiles(dir, files);
  if (files.length > 0) {
    // a new repository: its top-level entries are exactly these files' (see addFiles)
    await annex(repo, ['add', '-q', '--', ...addArguments(files, 'top-level')]);
  }
  await git(repo, ['commit', '-q', '--allow-empty', '-m', 'served files']);
  const uuid = (await git(repo, ['config', 'annex.uuid'])).stdout.trim();
  return { ...repo, uuid, keys: await annexedKeys(repo) };
}

export function keyOf(repo: ServedRepo, file: string): string {
  const key = repo.keys.get(file);
  if (key === undefined) {
    throw new Error(`no annexed file ${file} in ${repo.dir}`);
  }
  return key;
}

export async function lookupKey(repo: Repo, file: string): Promise<string> {
  return (await annex(repo, ['lookupkey', '--', file])).stdout.trim();
}

/** Path of the key's object if the repository has its content, else undefined. */
export async function contentLocation(repo: Repo, key: string): Promise<string | undefined> {
  const result = await annexStatus(repo, ['contentlocation', key], 120_000);
  return result.code === 0 ? path.join(repo.dir, result.stdout.trim()) : undefined;
}

/** Absolute path of the object file of `key` in `repo` (which must have the content). */
export async function objectPath(repo: Repo, key: string): Promise<string> {
  const location = await contentLocation(repo, key);
  if (location === undefined) {
    throw new Error(`${repo.dir} has no content for ${key}`);
  }
  return location;
}

export function annexUrlFor(port: number): string {
  return `annex+http://127.0.0.1:${port}/git-annex/`;
}

export interface ClientRepo extends Repo {
  uuid: string;
}

/**
 * Clones `served` into `dir` and makes HTTP the only way back to it: `git annex init client`,
 * loopback addresses allowed, `remote.origin.annexUrl` set to `server` (an annex+http URL, or the
 * port of a server on 127.0.0.1; else later, see pointAt), origin's url moved to a path that
 * does not exist, and the served uuid recorded for origin.
 */
export async function makeClientClone(
  sandbox: Sandbox,
  served: ServedRepo,
  dir: string,
  server?: string | number,
): Promise<ClientRepo> {
  const env = sandbox.env();
  await runCheckedIn({ dir: sandbox.root, env }, 'git', ['clone', '-q', served.dir, dir]);
  const repo: Repo = { dir, env };
  await annex(repo, ['init', '-q', 'client']);
  await git(repo, ['config', 'annex.security.allowed-ip-addresses', 'all']);
  if (server !== undefined) {
    await setAnnexUrl(repo, typeof server === 'number' ? annexUrlFor(server) : server);
  }
  await git(repo, ['remote', 'set-url', 'origin', sandbox.path('moved-away', path.basename(dir))]);
  const recorded = await runIn(repo, 'git', ['config', 'remote.origin.annex-uuid']);
  if (recorded.stdout.trim() !== served.uuid) {
    await git(repo, ['config', 'remote.origin.annex-uuid', served.uuid]);
  }
  const uuid = (await git(repo, ['config', 'annex.uuid'])).stdout.trim();
  return { ...repo, uuid };
}

export async function setAnnexUrl(repo: Repo, annexUrl: string): Promise<void> {
  await git(repo, ['config', 'remote.origin.annexUrl', annexUrl]);
}

/** Points the clone's origin annexUrl at the server on `port`. */
export async function pointAt(repo: Repo, port: number): Promise<void> {
  await setAnnexUrl(repo, annexUrlFor(port));
}

// ---------------------------------------------------------------------------------------------
// Copies that share annexed objects
// ---------------------------------------------------------------------------------------------

/**
 * Copies a repository: `cp -al` (everything hard-linked), then every regular file outside
 * `.git/annex/objects` is replaced by a real copy, so the copies share only immutable content.
 */
export async function copyRepo(src: string, dst: string): Promise<void> {
  await mkdir(path.dirname(dst), { recursive: true });
  await runCheckedIn({ dir: '/', env: process.env }, 'cp', ['-al', src, dst], {
    timeoutMs: 300_000,
  });
  const objects = path.join(dst, '.git', 'annex', 'objects');
  const unlink = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (full !== objects) {
          await unlink(full);
        }
      } else if (entry.isFile() && (await lstat(full)).nlink > 1) {
        const fresh = `${full}.copying`;
        await copyFile(full, fresh);
        await rename(fresh, full);
      }
    }
  };
  await unlink(dst);
}

/**
 * Whether the repository refuses to remove `key` because its content is locked: asks it directly
 * over a git-annex-shell session of its own.
 */
export function lockedInRepository(repo: ServedRepo, key: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      'git-annex-shell',
      ['p2pstdio', repo.dir, randomUUID(), '--uuid', repo.uuid],
      { cwd: repo.dir, env: repo.env, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.once('error', reject);
    child.once('close', () => {
      if (stderr.includes('content is locked')) {
        resolve(true);
      } else if (/^FAILURE$/m.test(stdout)) {
        resolve(false);
      } else {
        reject(new Error(`unexpected probe answer:\n${stdout}\n${stderr}`));
      }
    });
    // A timestamp in the past: REMOVE-BEFORE never removes, but checks the lock first.
    child.stdin.end(`VERSION 4\nREMOVE-BEFORE 1 ${key}\n`);
  });
}
