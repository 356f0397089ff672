/**
 * End-to-end harness: real git repositories in temp dirs, a real git-annex client, and either the
 * project's server (`bin/annex-p2phttp.js serve`) or the reference `git annex p2phttp`, chosen by
 * `E2E_SERVER=project|reference` (default `project`; `E2E_REFERENCE_JOBS` sets the reference's
 * `-J`, default 4). Facts it relies on: /work/shared/PROTOCOL.md
 * §0 (lab setup), §2 (HTTP API), §5 (client); nothing here depends on that directory at run time.
 *
 * What the tests share with scripts/bench lives in test/support (servers.ts and cluster.ts start
 * the servers, repos.ts makes repositories and clones, processes.ts tracks every process in its
 * own process group, so cleanup can end it and anything it left behind even when a test fails or
 * the worker exits); this file keeps the choice of server, the tests' command habits, the
 * probes of repositories and processes the tests assert on, and the vitest hooks.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, open, readdir, readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { beforeEach } from 'vitest';
import { spawnClusterApp, untilReady, type ClusterAppContext } from '../support/cluster';
import { httpStatus } from '../support/http';
import { CommandError, killAllTracked, type CommandResult } from '../support/processes';
import { annexShellsMentioning } from '../support/process-tree';
import {
  addFiles,
  annexedKeys,
  annex as annexIn,
  annexStatus as annexStatusIn,
  annexUrlFor,
  contentLocation,
  git as gitIn,
  keyOf,
  lookupKey,
  makeClientClone,
  makeServedRepo,
  runCheckedIn,
  runIn,
  Sandbox,
  setAnnexUrl,
  writeFiles,
  writeRandomFile,
  type ClientRepo,
  type FileSpec,
  type Repo as RepoContext,
  type ServedRepo,
} from '../support/repos';
import {
  clusterServer,
  projectBin,
  projectServer,
  referenceServer,
  RunningServer,
  startServer as launchServer,
  usersEnv,
  type ServerSpec,
  type StopResult,
  type UserSpec,
} from '../support/servers';
import { delay, freePort, pollUntil, projectRoot } from '../support/util';

export {
  annexedKeys,
  annexUrlFor,
  CommandError,
  contentLocation,
  lookupKey,
  makeClientClone,
  makeServedRepo,
  setAnnexUrl,
  writeFiles,
  type ClientRepo,
  type FileSpec,
  type RepoContext,
  type ServedRepo,
  delay,
  freePort,
  httpStatus,
  keyOf,
  killAllTracked,
  pollUntil,
  RunningServer,
  Sandbox,
  spawnClusterApp,
  untilReady,
  writeRandomFile,
  type ClusterAppContext,
  type CommandResult,
  type StopResult,
  type UserSpec,
};

export const PROJECT_ROOT = projectRoot();
export const PROJECT_BIN = projectBin();

// ---------------------------------------------------------------------------------------------
// Which server, polling, small utilities
// ---------------------------------------------------------------------------------------------

/**
 * `project`: the embedded server; `cluster`: this project in cluster mode (a private Redis, a
 * proxy worker, a lock-service and a gateway under one launcher process); `reference`:
 * `git annex p2phttp`.
 */
export type ServerKind = 'project' | 'cluster' | 'reference';

/** The server under test, from `E2E_SERVER` (default `project`). */
export function serverKind(): ServerKind {
  const value = process.env.E2E_SERVER ?? 'project';
  if (value !== 'project' && value !== 'cluster' && value !== 'reference') {
    throw new Error(
      `E2E_SERVER must be "project", "cluster" or "reference", not ${JSON.stringify(value)}`,
    );
  }
  return value;
}

export const isReference = (): boolean => serverKind() === 'reference';

// ---------------------------------------------------------------------------------------------
// Process tracking (test/support/processes.ts: every child in its own process group, killed at exit)
// ---------------------------------------------------------------------------------------------

// A worker ended by a signal (vitest interrupted, CI timeout) still takes its children along.
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  process.once(signal, () => {
    killAllTracked();
    process.kill(process.pid, signal);
  });
}

/** SIGKILLs the given pids (processes this suite caused, e.g. leftover git-annex-shell). */
export function killPids(pids: readonly number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Running commands (test/support/repos.ts, with the tests' habits: everything a command wrote is
// kept, its group's leftovers are left to the tracker, 120 s to finish unless told)
// ---------------------------------------------------------------------------------------------

const TEST_COMMANDS = { keepAll: true, sweepGroup: false } as const;

export interface RunOptions {
  cwd: string;
  env: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

/** Runs a command and resolves with its exit status whatever it is, with all it wrote. */
export function runStatus(
  file: string,
  args: readonly string[],
  { cwd, env, timeoutMs = 120_000 }: RunOptions,
): Promise<CommandResult> {
  return runIn({ dir: cwd, env }, file, args, { timeoutMs, ...TEST_COMMANDS });
}

/** Runs a command; throws a CommandError carrying stdout and stderr unless it exits 0. */
export function run(
  file: string,
  args: readonly string[],
  { cwd, env, timeoutMs = 120_000 }: RunOptions,
): Promise<CommandResult> {
  return runCheckedIn({ dir: cwd, env }, file, args, { timeoutMs, ...TEST_COMMANDS });
}

export function git(repo: RepoContext, args: readonly string[], timeoutMs = 120_000) {
  return gitIn(repo, args, { timeoutMs, ...TEST_COMMANDS });
}

/** `git-annex …` called directly (not through `git annex`) so a timeout kill reaches it. */
export function annex(repo: RepoContext, args: readonly string[], timeoutMs = 120_000) {
  return annexIn(repo, args, { timeoutMs, ...TEST_COMMANDS });
}

export function annexStatus(repo: RepoContext, args: readonly string[], timeoutMs = 120_000) {
  return annexStatusIn(repo, args, { timeoutMs, ...TEST_COMMANDS });
}

// ---------------------------------------------------------------------------------------------
// File contents
// ---------------------------------------------------------------------------------------------

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) {
    hash.update(chunk as Buffer);
  }
  return hash.digest('hex');
}

/** The SHA256E key git-annex gives `content` (no extension). */
export function sha256Key(content: Buffer): string {
  return `SHA256E-s${content.length}--${createHash('sha256').update(content).digest('hex')}`;
}

/** Size and SHA-256 of a file (follows symlinks), for byte-equality checks of big files. */
export async function fileDigest(file: string): Promise<{ size: number; sha256: string }> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    return { size, sha256: await sha256File(file) };
  } finally {
    await handle.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Repositories
// ---------------------------------------------------------------------------------------------

/** Adds (or replaces) files in a repository with `git annex add` and commits them. */
export function addAndCommit(repo: RepoContext, files: readonly FileSpec[]): Promise<void> {
  return addFiles(repo, files, { add: 'each' });
}

/**
 * A plain clone of `served` over the filesystem that learns where content is only from the served
 * repository's committed `git-annex` branch (see `whereisFromBranch`), never from its journal.
 */
export async function makeObserverClone(
  sandbox: Sandbox,
  served: ServedRepo,
  dir: string,
): Promise<ClientRepo> {
  const env = sandbox.env();
  await run('git', ['clone', '-q', served.dir, dir], { cwd: sandbox.root, env });
  const repo: RepoContext = { dir, env };
  await annex(repo, ['init', '-q', 'observer']);
  const uuid = (await git(repo, ['config', 'annex.uuid'])).stdout.trim();
  return { ...repo, uuid };
}

/**
 * Fetches the served repository's `git-annex` branch into `observer` (plain git over the
 * filesystem) and returns the uuids `git annex whereis` then lists for `key`, sorted.
 */
export async function whereisFromBranch(
  observer: RepoContext,
  served: RepoContext,
  key: string,
): Promise<string[]> {
  await git(observer, [
    'fetch',
    '-q',
    served.dir,
    '+refs/heads/git-annex:refs/remotes/origin/git-annex',
  ]);
  const { stdout } = await annexStatus(observer, ['whereis', '--json', '--key', key]);
  const line = stdout.split('\n').find((l) => l.trim() !== '');
  if (line === undefined) {
    return [];
  }
  const entry = JSON.parse(line) as { whereis?: { uuid: string }[] };
  return (entry.whereis ?? []).map((w) => w.uuid).sort();
}

/** Names of the object files under `.git/annex/objects` (one per key whose content is there). */
export async function objectFileNames(repo: RepoContext): Promise<string[]> {
  const names: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        await walk(full);
      } else if (entry.name === path.basename(dir)) {
        names.push(entry.name);
      }
    }
  };
  await walk(path.join(repo.dir, '.git', 'annex', 'objects'));
  return names.sort();
}

/** Every path (files and directories) below `dir`, relative to it, sorted. */
export async function listTree(dir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    const entries = await readdir(path.join(dir, rel), { withFileTypes: true });
    for (const entry of entries) {
      const child = rel === '' ? entry.name : path.join(rel, entry.name);
      found.push(child);
      if (entry.isDirectory()) {
        await walk(child);
      }
    }
  };
  await walk('');
  return found.sort();
}

/** The partial upload the served repo keeps for `key` in `.git/annex/tmp` (bytes), if any. */
export async function partialUploadSize(
  repo: RepoContext,
  key: string,
): Promise<number | undefined> {
  const tmp = path.join(repo.dir, '.git', 'annex', 'tmp');
  let size: number | undefined;
  try {
    size = (await lstat(path.join(tmp, key))).size;
  } catch {
    // no partial file of git-annex's own
  }
  for (const staging of await stagingFiles(repo)) {
    try {
      size = Math.max(size ?? 0, (await lstat(path.join(tmp, staging))).size);
    } catch {
      // finished meanwhile
    }
  }
  return size;
}

/**
 * The server's staging files of uploads in flight (`.git/annex/tmp/p2phttp-*`): a verified put
 * receives there before git-annex installs the content, and on a broken upload moves what came
 * to git-annex's own partial file.
 */
async function stagingFiles(repo: RepoContext): Promise<string[]> {
  try {
    const names = await readdir(path.join(repo.dir, '.git', 'annex', 'tmp'));
    return names.filter((name) => name.startsWith('p2phttp-'));
  } catch {
    return [];
  }
}

/**
 * True while some git-annex process of the served repo is still receiving `key` (git-annex keeps
 * `.git/annex/transfer/download/<peer uuid>/<key>` for the duration of an upload to it), or the
 * server still has a staging file of an upload.
 */
export async function uploadInProgress(repo: RepoContext, key: string): Promise<boolean> {
  if ((await stagingFiles(repo)).length > 0) {
    return true;
  }
  const base = path.join(repo.dir, '.git', 'annex', 'transfer', 'download');
  let peers: string[];
  try {
    peers = await readdir(base);
  } catch {
    return false;
  }
  for (const peer of peers) {
    try {
      await lstat(path.join(base, peer, key));
      return true;
    } catch {
      // not this peer
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Processes on this machine
// ---------------------------------------------------------------------------------------------

export interface ProcessInfo {
  pid: number;
  argv: string[];
}

/** The live `git-annex-shell` processes among `dirs`' (see liveAnnexShells) whose parent is `pid`. */
export function annexShellsOf(pid: number, dirs: readonly string[]): Promise<ProcessInfo[]> {
  return Promise.resolve(annexShellsMentioning(dirs).filter((shell) => shell.ppid === pid));
}

/**
 * Which of `processes` still run `git-annex-shell` after up to `settleMs` (a process killed a
 * moment ago may take a little while to leave /proc).
 */
export async function stillRunningShells(
  processes: readonly ProcessInfo[],
  settleMs = 1000,
): Promise<ProcessInfo[]> {
  const deadline = Date.now() + settleMs;
  for (;;) {
    const live: ProcessInfo[] = [];
    for (const shell of processes) {
      try {
        const argv = (await readFile(`/proc/${shell.pid}/cmdline`, 'utf8')).split('\0');
        if (argv.some((a) => path.basename(a) === 'git-annex-shell')) {
          live.push(shell);
        }
      } catch {
        // gone
      }
    }
    if (live.length === 0 || Date.now() >= deadline) {
      return live;
    }
    await delay(100);
  }
}

/** Live `git-annex-shell` processes whose argv mentions one of `dirs` (test/support/process-tree.ts). */
export function liveAnnexShells(dirs: readonly string[]): Promise<ProcessInfo[]> {
  return Promise.resolve(annexShellsMentioning(dirs));
}

// ---------------------------------------------------------------------------------------------
// Servers (test/support/servers.ts and cluster.ts; here: which one, from E2E_SERVER, with which options)
// ---------------------------------------------------------------------------------------------

export type AuthFlag =
  | '--wideopen'
  | '--unauth-readonly'
  | '--unauth-appendonly'
  | '--unauth-nolocking'
  | '--authenv'
  | '--authenv-http';

export interface ServerOptions {
  repo: ServedRepo;
  sandbox: Sandbox;
  auth?: readonly AuthFlag[];
  users?: Record<string, UserSpec>;
  /** project only (`--lockedfiles N`); git-annex 10.20250416 has no such option */
  lockedfiles?: number;
  /** a fixed port, e.g. one a client clone was already pointed at */
  port?: number;
  kind?: ServerKind;
  /** more options for this project's server (not the reference) */
  extraArgs?: readonly string[];
  /** how long it may take to answer (default 20 s) */
  startTimeoutMs?: number;
}

function serverSpec(options: ServerOptions, kind: ServerKind): ServerSpec {
  const auth = options.auth ?? [];
  if (kind === 'reference') {
    if (options.lockedfiles !== undefined) {
      throw new Error('--lockedfiles is not an option of git-annex 10.20250416 p2phttp');
    }
    if (options.extraArgs !== undefined) {
      throw new Error('extraArgs are options of this project only');
    }
    return referenceServer(referenceJobs(), auth);
  }
  const args = ['--jobs', '4', ...auth];
  if (options.lockedfiles !== undefined) {
    args.push('--lockedfiles', String(options.lockedfiles));
  }
  args.push(...(options.extraArgs ?? []));
  return kind === 'cluster' ? clusterServer({ args }) : projectServer(args);
}

/**
 * `-J` of the reference server: 4 unless `E2E_REFERENCE_JOBS` says otherwise. git-annex
 * 10.20250416 deadlocks when concurrent requests outnumber about half its slots (PROTOCOL.md §6.2,
 * fixed in 10.20251114), so `get -J8` hangs against `-J4`; raise it to exercise the other tests.
 */
function referenceJobs(): number {
  const jobs = Number(process.env.E2E_REFERENCE_JOBS ?? '4');
  if (!Number.isInteger(jobs) || jobs < 2) {
    throw new Error('E2E_REFERENCE_JOBS must be an integer >= 2');
  }
  return jobs;
}

/**
 * Starts the server (kind from options or `E2E_SERVER`) serving `options.repo`, waits until it
 * answers HTTP (max 20 s) and returns it. Retries on another port if the chosen one was taken.
 * Its `stop()` gives SIGTERM 20 s and leaves what a graceful exit left behind for
 * stopAndCollectLeftovers to find.
 */
export function startServer(options: ServerOptions): Promise<RunningServer> {
  const kind = options.kind ?? serverKind();
  return launchServer(serverSpec(options, kind), {
    sandbox: options.sandbox,
    repo: options.repo,
    port: options.port,
    env: usersEnv(options.users),
    timeoutMs: options.startTimeoutMs ?? 20_000,
    pollMs: 50,
    keepOutput: 1 << 20,
    stop: { graceMs: 20_000, sweepGroup: false },
  });
}

/**
 * Stops the servers and checks what they left: returns the git-annex-shell processes still alive
 * that mention `dirs` (polled for up to 3 s, to let /proc catch up), after SIGKILLing them so the
 * next file starts clean. Only meaningful once no server that serves `dirs` is left running, so
 * pass every server of the file (already stopped ones are fine).
 */
export async function stopAndCollectLeftovers(
  servers: readonly (RunningServer | undefined)[],
  dirs: readonly string[],
): Promise<{ stops: StopResult[]; leftovers: ProcessInfo[] }> {
  const running = servers.filter((s): s is RunningServer => s !== undefined);
  const stops = await Promise.all(running.map((server) => server.stop()));
  const deadline = Date.now() + 3000;
  let leftovers = await liveAnnexShells(dirs);
  while (leftovers.length > 0 && Date.now() < deadline) {
    await delay(100);
    leftovers = await liveAnnexShells(dirs);
  }
  killPids(leftovers.map((p) => p.pid));
  for (const server of running) {
    server.killGroup();
  }
  return { stops, leftovers };
}

/** Prints the server's output next to a failing test's error. */
export function reportServerOutputOnFailure(
  servers: () => readonly (RunningServer | undefined)[],
): void {
  beforeEach(({ onTestFailed }) => {
    onTestFailed(() => {
      for (const server of servers()) {
        if (server !== undefined) {
          console.error(server.describe());
        }
      }
    });
  });
}
