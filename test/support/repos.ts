/**
 * Repositories in a temp dir, for test/e2e and scripts/bench: a sandbox with its own HOME and git
 * identity (one per test file or benchmark run), served repositories built from one template
 * (copies share every byte and the uuid; annexed objects are hard links, everything git or
 * git-annex may rewrite in place is a real copy), and client clones that reach the served
 * repository over HTTP only (PROTOCOL.md §0, §5).
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, mkdtemp, open, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { runChecked, runCommand } from './processes';
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

export interface Repo {
  dir: string;
  env: NodeJS.ProcessEnv;
}

export function git(repo: Repo, args: readonly string[], timeoutMs = 120_000) {
  return runChecked('git', args, { cwd: repo.dir, env: repo.env, timeoutMs });
}

/** `git-annex …` run directly (not through `git annex`), so that a kill reaches it. */
export function annex(repo: Repo, args: readonly string[], timeoutMs = 600_000) {
  return runChecked('git-annex', args, { cwd: repo.dir, env: repo.env, timeoutMs });
}

// ---------------------------------------------------------------------------------------------
// Contents
// ---------------------------------------------------------------------------------------------

export interface FileSpec {
  path: string;
  size: number;
}

/** `count` files `dir/fNNN.bin` of `size` bytes each. */
export function manyFiles(dir: string, count: number, size: number): FileSpec[] {
  return Array.from({ length: count }, (_, i) => ({
    path: `${dir}/f${String(i).padStart(3, '0')}.bin`,
    size,
  }));
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

/** Writes the files, `git annex add`s them and commits. */
export async function addFiles(repo: Repo, files: readonly FileSpec[]): Promise<void> {
  for (const spec of files) {
    await writeRandomFile(path.join(repo.dir, spec.path), spec.size);
  }
  const dirs = [...new Set(files.map((spec) => spec.path.split('/')[0] ?? spec.path))];
  await annex(repo, ['add', '-q', '--', ...dirs]);
  await git(repo, ['commit', '-q', '-m', `add ${files.length} files`]);
}

/** worktree path → key of every annexed file in the worktree. */
export async function annexedKeys(repo: Repo): Promise<Map<string, string>> {
  const { stdout } = await annex(repo, ['find', '--include=*', '--format=${key} ${file}\\n']);
  const keys = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const space = line.indexOf(' ');
    if (space > 0) {
      keys.set(line.slice(space + 1), line.slice(0, space));
    }
  }
  return keys;
}

export interface ServedRepo extends Repo {
  uuid: string;
  keys: Map<string, string>;
}

/** `git init`, `git annex init`, add `files`, commit. */
export async function makeServedRepo(
  sandbox: Sandbox,
  dir: string,
  files: readonly FileSpec[],
): Promise<ServedRepo> {
  await mkdir(dir, { recursive: true });
  const repo: Repo = { dir, env: sandbox.env() };
  await git(repo, ['init', '-q', '-b', 'main']);
  await annex(repo, ['init', '-q', 'served']);
  await git(repo, ['commit', '-q', '--allow-empty', '-m', 'init']);
  if (files.length > 0) {
    await addFiles(repo, files);
  }
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

/** Absolute path of the object file of `key` in `repo` (which must have the content). */
export async function objectPath(repo: Repo, key: string): Promise<string> {
  const { stdout } = await annex(repo, ['contentlocation', key]);
  return path.resolve(repo.dir, stdout.trim());
}

export function annexUrlFor(port: number): string {
  return `annex+http://127.0.0.1:${port}/git-annex/`;
}

/**
 * Clones `served` into `dir` and makes HTTP the only way back to it: `git annex init`, loopback
 * addresses allowed, the served uuid recorded for origin, origin's url moved to a path that does
 * not exist, and `remote.origin.annexUrl` set when `port` is given (else later, see pointAt).
 */
export async function makeClientClone(
  sandbox: Sandbox,
  served: ServedRepo,
  dir: string,
  port?: number,
): Promise<Repo> {
  const env = sandbox.env();
  await runChecked('git', ['clone', '-q', served.dir, dir], { cwd: sandbox.root, env });
  const repo: Repo = { dir, env };
  await annex(repo, ['init', '-q', 'client']);
  await git(repo, ['config', 'annex.security.allowed-ip-addresses', 'all']);
  await git(repo, ['config', 'remote.origin.annex-uuid', served.uuid]);
  await git(repo, ['remote', 'set-url', 'origin', '/nonexistent']);
  if (port !== undefined) {
    await pointAt(repo, port);
  }
  return repo;
}

/** Points the clone's origin annexUrl at the server on `port`. */
export async function pointAt(repo: Repo, port: number): Promise<void> {
  await git(repo, ['config', 'remote.origin.annexUrl', annexUrlFor(port)]);
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
  await runChecked('cp', ['-al', src, dst], { cwd: '/', env: process.env, timeoutMs: 300_000 });
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
