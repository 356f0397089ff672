/**
 * Commits a served repository's git-annex journal soon after its content changed, so that a
 * clone fetching the repository's `git-annex` branch learns where content is.
 *
 * git-annex records location changes (a put, a remove, also for the proxied remotes and clusters
 * a repository serves, whose logs live in the serving repository) in `.git/annex/journal` and
 * commits the journal to the `git-annex` branch when its process ends. The pooled
 * `git-annex-shell` sessions live for minutes, so their changes would wait that long.
 * `git annex p2phttp` (10.20260213 and later) commits once a repository has had no change in
 * progress for about a second; so does this, per repository:
 *
 * - `track` marks an operation that may change the branch; when the last one in progress ends,
 *   a commit is due `idleMs` later, unless another change starts meanwhile (debounce: under load
 *   not once per request). Changes that keep overlapping are still committed `maxDelayMs` after
 *   the first uncommitted one ended.
 * - The commit is git-annex's own: a `git-annex-shell p2pstdio` session that is given no request
 *   (stdin at EOF) ends at once and, ending, commits the journal, with git-annex's locking, so it
 *   is safe beside the sessions that keep running. Nothing else is touched. It runs only when the
 *   journal holds something, one at a time per repository, in its own process group.
 * - `close` stops scheduling and makes a last commit of every repository with uncommitted
 *   changes, each bounded by `closeTimeoutMs`. A commit that outlives its bound (the ones made
 *   while serving get `commitTimeoutMs`) is killed with its process group, so no git process is
 *   left behind.
 */
import { spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { shellEnvironment, trackShellProcess } from '@annex-p2phttp/p2p';

/** Last commits made at once by close. */
const CLOSE_CONCURRENCY = 4;

/** The peer uuid the committing session names (it transfers nothing). */
const COMMIT_PEER = '00000000-0000-0000-0000-000000000000';

export interface JournalCommitterOptions {
  /** Quiet time after the last change before a commit; default 1000 ms. */
  readonly idleMs?: number;
  /** A change is committed at most this long after it ended, busy or not; default 30 s. */
  readonly maxDelayMs?: number;
  /** How long one commit may take before it is killed; default 30 s. */
  readonly commitTimeoutMs?: number;
  /** The same for the last commits made by `close`; default 5 s. */
  readonly closeTimeoutMs?: number;
  /** The git-annex-shell executable; default 'git-annex-shell'. */
  readonly command?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** The repository's git directory (`REPO/.git`, or REPO when bare), for its journal. */
  readonly gitDir?: (repoPath: string) => Promise<string>;
  readonly log?: (message: string) => void;
}

interface RepoState {
  /** Changes in progress. */
  running: number;
  /** A change ended since the last commit began. */
  dirty: boolean;
  /** performance.now() when the first uncommitted change ended. */
  dirtySince: number;
  timer: NodeJS.Timeout | null;
  committing: Promise<void> | null;
}

export interface JournalCommitterStats {
  /** Commits run (sessions spawned). */
  readonly commits: number;
  /** Commits that failed or were killed. */
  readonly failures: number;
}

export class JournalCommitter {
  private readonly repos = new Map<string, RepoState>();
  private readonly idleMs: number;
  private readonly maxDelayMs: number;
  private readonly commitTimeoutMs: number;
  private readonly closeTimeoutMs: number;
  private closing = false;
  private commits = 0;
  private failures = 0;

  constructor(private readonly options: JournalCommitterOptions = {}) {
    this.idleMs = options.idleMs ?? 1000;
    this.maxDelayMs = options.maxDelayMs ?? 30_000;
    this.commitTimeoutMs = options.commitTimeoutMs ?? 30_000;
    this.closeTimeoutMs = options.closeTimeoutMs ?? 5000;
  }

  /** Runs `work`, an operation that may journal changes in the repository at `repoPath`. */
  async track<T>(repoPath: string, work: () => Promise<T>): Promise<T> {
    const state = this.state(repoPath);
    state.running += 1;
    if (state.timer !== null && !this.overdue(state)) {
      clearTimeout(state.timer);
      state.timer = null;
    }
    try {
      return await work();
    } finally {
      state.running -= 1;
      if (!state.dirty) {
        state.dirty = true;
        state.dirtySince = performance.now();
      }
      this.schedule(repoPath, state);
    }
  }

  stats(): JournalCommitterStats {
    return { commits: this.commits, failures: this.failures };
  }

  /**
   * Stops scheduling and commits what is left: the repositories changed since their last commit,
   * a few at a time, each bounded by closeTimeoutMs.
   */
  async close(): Promise<void> {
    this.closing = true;
    const left: Array<[string, RepoState]> = [];
    for (const [repoPath, state] of this.repos) {
      if (state.timer !== null) {
        clearTimeout(state.timer);
        state.timer = null;
      }
      left.push([repoPath, state]);
    }
    const next = async (): Promise<void> => {
      for (let item = left.shift(); item !== undefined; item = left.shift()) {
        const [repoPath, state] = item;
        await state.committing;
        if (state.dirty) {
          await this.commit(repoPath, state, this.closeTimeoutMs);
        }
      }
    };
    await Promise.all(Array.from({ length: CLOSE_CONCURRENCY }, next));
  }

  private state(repoPath: string): RepoState {
    let state = this.repos.get(repoPath);
    if (state === undefined) {
      state = { running: 0, dirty: false, dirtySince: 0, timer: null, committing: null };
      this.repos.set(repoPath, state);
    }
    return state;
  }

  private overdue(state: RepoState): boolean {
    return state.dirty && performance.now() - state.dirtySince >= this.maxDelayMs;
  }

  /** (Re)arms the repository's timer: idleMs after the last change, or when overdue. */
  private schedule(repoPath: string, state: RepoState): void {
    if (this.closing || !state.dirty || state.committing !== null) {
      return;
    }
    if (state.running > 0 && !this.overdue(state)) {
      // The last change to end arms it; a change that goes on for long is capped below.
      if (state.timer === null) {
        const cap = state.dirtySince + this.maxDelayMs - performance.now();
        state.timer = setTimeout(() => this.fire(repoPath, state), Math.max(0, cap));
        state.timer.unref();
      }
      return;
    }
    if (state.timer !== null) {
      clearTimeout(state.timer);
    }
    const cap = state.dirtySince + this.maxDelayMs - performance.now();
    state.timer = setTimeout(
      () => this.fire(repoPath, state),
      Math.max(0, Math.min(this.idleMs, cap)),
    );
    state.timer.unref();
  }

  private fire(repoPath: string, state: RepoState): void {
    state.timer = null;
    if (this.closing || state.committing !== null) {
      return;
    }
    if (state.running > 0 && !this.overdue(state)) {
      return; // a change started meanwhile: its end re-arms the timer
    }
    void this.commit(repoPath, state).then(() => this.schedule(repoPath, state));
  }

  private commit(
    repoPath: string,
    state: RepoState,
    timeoutMs = this.commitTimeoutMs,
  ): Promise<void> {
    state.dirty = false;
    state.committing = (async () => {
      try {
        if (await this.journalEmpty(repoPath)) {
          return;
        }
        this.commits += 1;
        await this.runSession(repoPath, timeoutMs);
      } catch (error) {
        this.failures += 1;
        this.options.log?.(
          `repository ${repoPath}: committing the git-annex journal failed: ${
            error instanceof Error ? error.message : String(error)
          }`,
        );
      } finally {
        state.committing = null;
      }
    })();
    return state.committing;
  }

  /** True only when the journal directory can be read and holds nothing. */
  private async journalEmpty(repoPath: string): Promise<boolean> {
    if (this.options.gitDir === undefined) {
      return false;
    }
    try {
      const gitDir = await this.options.gitDir(repoPath);
      return (await readdir(join(gitDir, 'annex', 'journal'))).length === 0;
    } catch {
      return false;
    }
  }

  /** A session with no request: git-annex-shell ends at once and commits the journal. */
  private runSession(repoPath: string, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const child = spawn(
        this.options.command ?? 'git-annex-shell',
        ['p2pstdio', repoPath, COMMIT_PEER],
        {
          cwd: repoPath,
          env: shellEnvironment(this.options.env ?? process.env, 'full'),
          stdio: ['ignore', 'ignore', 'pipe'],
          detached: true,
        },
      );
      trackShellProcess(child, { group: true });
      let stderr = '';
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (chunk: string) => {
        stderr = (stderr + chunk).slice(-2000);
      });
      // Past its bound it is killed with whatever git it started (its process group).
      const timer = setTimeout(() => killGroup(child.pid), timeoutMs);
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) {
          resolve();
        } else {
          const how = signal === null ? `exit ${code}` : `killed by ${signal} after the bound`;
          reject(new Error(`git-annex-shell ${how}: ${stderr.trim().split('\n').pop() ?? ''}`));
        }
      });
    });
  }
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) {
    return;
  }
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // the group is gone
  }
}
