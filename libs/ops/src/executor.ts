/**
 * The operation executor: runs each operation in this process on the SessionPool. The embedded
 * server reaches it through the local Dispatcher (libs/dispatch); the proxy workers of cluster
 * mode and the lock-service call it directly. Operations that change content (put, remove,
 * remove-before) are tracked by the JournalCommitter, which commits the repository's git-annex
 * journal about a second after the last of them ended, and once more on close.
 */
import * as path from 'node:path';
import { type SessionPool } from '@annex-p2phttp/p2p';
import { type RepositoryTarget } from '@annex-p2phttp/protocol';
import { bootClockSeconds, timestampSeconds } from './boot-clock';
import { JournalCommitter } from './journal-committer';
import { ObjectFiles, readObject } from './object-files';
import {
  checkPresent,
  get,
  getTimestamp,
  lockContent,
  put,
  putOffset,
  remove,
  removeBeforeJudgedHere,
  unlockContent,
  type GetOutcome,
  type GetRequest,
  type PlusResult,
  type PutOffsetResult,
  type PutOutcome,
  type PutRequest,
} from './operations';
import {
  answerWithoutSession,
  cutWhenIdle,
  DEFAULT_UPLOAD_IDLE_MS,
  stageBody,
} from './upload-staging';
import { contentDigestOf, VerifiedPut } from './verified-put';
import { KeyedMutex } from './keyed-mutex';
import { boundedStep, Deadline, SHUTDOWN_CLEANUP_MS } from './shutdown-steps';

/** How long an unlock waits for the answer that shows git-annex has unlocked. */
const UNLOCK_ANSWER_MS = 10_000;

/** Operations that change nothing when repeated after a session died unanswered. */
const RETRY = { retryOnStale: true };

/** A repository-side retention lock, held until `release` or until it is lost. */
export interface HeldLock {
  /** Unlocks in the repository. Idempotent. */
  release(): Promise<void>;
  /**
   * Ends the holding session by a signal without unlocking: git-annex keeps the lock's retention
   * file, and the content stays locked for the ten minutes after it was locked (shutdown, when
   * the lock must outlive this process). Idempotent; a no-op after `release`.
   */
  abandon(): void;
  /** Called if the lock is lost without `release` (the holding session died). */
  onLost(listener: () => void): void;
}

export interface ExecutorStats {
  /** Sessions running an operation. */
  readonly active: number;
  /** Sessions kept idle for reuse. */
  readonly idle: number;
  /** Requests waiting for a job slot. */
  readonly waiting: number;
  /** Sessions holding a retention lock. */
  readonly locks: number;
  /** Sessions that exist (each one a git-annex-shell process). */
  readonly connections: number;
  /** GET bodies being streamed. */
  readonly streams: number;
  readonly opened: number;
  readonly openFailures: number;
  readonly evicted: number;
  readonly expired: number;
}

export class OperationExecutor {
  private readonly uploads = new KeyedMutex();
  private heldLocks = 0;
  /** Abandons each retention lock held here (see lockContent). */
  private readonly holders = new Set<() => void>();
  private streams = 0;

  private readonly objects = new ObjectFiles();
  private readonly journal: JournalCommitter;
  private readonly uploadIdleMs: number;
  private stagingUploads = 0;

  constructor(
    private readonly pool: SessionPool,
    private readonly verifiedPut = new VerifiedPut(),
    options: {
      readonly log?: (message: string) => void;
      readonly journal?: JournalCommitter;
      /** An upload body that brings no bytes for this long is cut (default a minute). */
      readonly uploadIdleMs?: number;
    } = {},
  ) {
    this.journal =
      options.journal ??
      new JournalCommitter({ gitDir: (repo) => this.objects.gitDir(repo), log: options.log });
    this.uploadIdleMs = options.uploadIdleMs ?? DEFAULT_UPLOAD_IDLE_MS;
  }

  /**
   * Content plainly present in the repository's own object files is answered from disk; anything
   * else (absent there, a proxied remote, a cluster) is asked of git-annex.
   */
  async checkPresent(
    target: RepositoryTarget,
    key: string,
    signal?: AbortSignal,
  ): Promise<boolean> {
    if (await this.presentLocally(target, key)) {
      return true;
    }
    return this.pool.run(target, (c) => checkPresent(c, key), signal, RETRY);
  }

  async presentLocally(target: RepositoryTarget, key: string): Promise<boolean> {
    return (
      target.direct === true && (await this.objects.locate(target.repoPath, key)) !== undefined
    );
  }

  async localSize(target: RepositoryTarget, key: string): Promise<number | undefined> {
    if (target.direct !== true) {
      return undefined;
    }
    const file = await this.objects.locate(target.repoPath, key);
    return file === undefined ? undefined : this.objects.sizeOf(file);
  }

  /**
   * A repository's own timestamp is the host's boot clock, read here as git-annex-shell would
   * read it (no session to open, none left idle). A proxied special remote has no clock of its
   * own that git-annex-shell would tell: its timestamp is this host's, which its remove-before
   * is judged by (see remove). Another proxied remote or a cluster is asked.
   */
  async getTimestamp(target: RepositoryTarget, signal?: AbortSignal): Promise<number> {
    if (target.specialRemote === true) {
      return timestampSeconds();
    }
    if (target.direct === true) {
      const seconds = await bootClockSeconds();
      if (seconds !== undefined) {
        return seconds;
      }
    }
    return this.pool.run(target, (c) => getTimestamp(c), signal, RETRY);
  }

  /**
   * REMOVE, or REMOVE-BEFORE. A proxied special remote's deadline is judged here against the
   * clock getTimestamp answers from, once a session is ours, and only a plain REMOVE reaches
   * git-annex-shell.
   */
  remove(
    target: RepositoryTarget,
    key: string,
    before: number | undefined,
    signal?: AbortSignal,
  ): Promise<PlusResult> {
    return this.journal.track(target.repoPath, () => {
      if (before !== undefined && target.specialRemote === true) {
        return this.pool.run(
          target,
          (c) => removeBeforeJudgedHere(c, key, before, timestampSeconds),
          signal,
          RETRY,
        );
      }
      return this.pool.run(target, (c) => remove(c, key, before), signal, RETRY);
    });
  }

  /**
   * For the served repository itself the offset is read off its files (the object present, else
   * the size of git-annex's partial file), as git-annex would answer; no session is needed, and
   * no empty partial file is left behind.
   */
  putOffset(target: RepositoryTarget, key: string, signal?: AbortSignal): Promise<PutOffsetResult> {
    return this.uploads.run(
      uploadKey(target, key),
      async (): Promise<PutOffsetResult> => {
        if (!target.direct) {
          return this.pool.run(target, (c) => putOffset(c, key), signal, RETRY);
        }
        if (await this.presentLocally(target, key)) {
          return { kind: 'already-have', plusUuids: [] };
        }
        return { kind: 'offset', offset: await this.objects.partialSize(target.repoPath, key) };
      },
      signal,
    );
  }

  put(target: RepositoryTarget, request: PutRequest, signal?: AbortSignal): Promise<PutOutcome> {
    const idleCut = { ...request, body: cutWhenIdle(request.body, this.uploadIdleMs) };
    return this.uploads.run(
      uploadKey(target, request.key),
      () =>
        this.journal.track(
          target.repoPath,
          async () =>
            (await this.putDirect(target, idleCut)) ?? this.putStaged(target, idleCut, signal),
        ),
      // Not abortable: the bytes of a client that went away are still received and kept.
    );
  }

  /**
   * The body is received into a staging file first, holding no session (upload-staging.ts); then
   * a session takes it at the speed of the disk. A body that ended short is handed over as far as
   * it came, also when its client is gone, so that the repository keeps every byte received.
   */
  private async putStaged(
    target: RepositoryTarget,
    request: PutRequest,
    signal?: AbortSignal,
  ): Promise<PutOutcome> {
    if (request.dataPresent) {
      return this.pool.run(target, (c) => put(c, request), signal);
    }
    const gitDir = await this.objects.gitDir(target.repoPath);
    // A whole body for a key that names its content's digest is checked here, for every target:
    // git-annex-shell proxying a special remote stores what it is sent without checking it.
    const named = request.offset === 0 ? contentDigestOf(request.key) : undefined;
    const verify = named !== undefined && named.size === request.length ? named : undefined;
    this.stagingUploads += 1;
    let staged;
    try {
      staged = await stageBody(
        path.join(gitDir, 'annex', 'tmp'),
        request.body,
        request.length,
        verify?.algorithm,
      );
    } finally {
      this.stagingUploads -= 1;
    }
    try {
      const early = answerWithoutSession(staged, request.length);
      if (early !== undefined) {
        return early;
      }
      const complete = staged.received === request.length;
      if (complete && verify !== undefined && staged.digest !== verify.digest) {
        // Content that is not the key's never reaches the repository, at any version.
        return { kind: 'done', stored: false, plusUuids: [] };
      }
      // A client still waiting may give up while queued for a session; bytes of a body that
      // ended short are handed over whatever the client does.
      return await this.pool.run(
        target,
        (c) => put(c, { ...request, body: staged.read() }),
        complete && !staged.broken ? signal : undefined,
      );
    } finally {
      await staged.discard();
    }
  }

  /**
   * A whole upload of a hash-named key into the served repository itself is received and
   * verified here and installed by git-annex (verified-put.ts); content already present is
   * ALREADY-HAVE without hashing or storing the body (the gateway discards it). Undefined when
   * the upload must go through git-annex.
   */
  private async putDirect(
    target: RepositoryTarget,
    request: PutRequest,
  ): Promise<PutOutcome | undefined> {
    if (!target.direct || request.offset !== 0 || request.dataPresent) {
      return undefined;
    }
    if (await this.presentLocally(target, request.key)) {
      return { kind: 'done', stored: true, plusUuids: [] };
    }
    const gitDir = await this.objects.gitDir(target.repoPath);
    const named = await this.verifiedPut.applies(gitDir, request.key, request.length);
    if (named === undefined) {
      return undefined;
    }
    this.streams += 1;
    try {
      const result = await this.verifiedPut.receive(
        target.repoPath,
        gitDir,
        request.key,
        named,
        request.body,
      );
      return result.kind === 'done' ? { ...result, plusUuids: [] } : result;
    } finally {
      this.streams -= 1;
    }
  }

  async get(
    target: RepositoryTarget,
    request: GetRequest,
    signal?: AbortSignal,
  ): Promise<GetOutcome> {
    if (target.direct) {
      const file = await this.objects.locate(target.repoPath, request.key);
      const read =
        file && (await readObject(file, request.offset, request.signalInvalid, request.limit));
      if (read) {
        this.streams += 1;
        void read.done.then(
          () => (this.streams -= 1),
          () => (this.streams -= 1),
        );
        return { kind: 'data', ...read };
      }
    }
    const lease = await this.pool.lease(target, { signal });
    let outcome: GetOutcome;
    try {
      outcome = await get(lease.connection, request);
    } catch (error) {
      lease.release(false);
      throw error;
    }
    if (outcome.kind === 'absent') {
      lease.release(lease.connection.finish());
      return outcome;
    }
    this.streams += 1;
    outcome.done.then(
      () => {
        this.streams -= 1;
        lease.release(lease.connection.finish());
      },
      () => {
        this.streams -= 1;
        lease.release(false);
      },
    );
    return outcome;
  }

  /**
   * LOCKCONTENT on a session of its own that ends by a signal, never by the end of its input, so
   * git-annex keeps the lock's retention file if this process goes (PROTOCOL.md §1.5).
   */
  async lockContent(target: RepositoryTarget, key: string): Promise<HeldLock | null> {
    const connection = await this.pool.openHolder(target);
    let locked = false;
    try {
      locked = await lockContent(connection, key);
    } finally {
      if (!locked) {
        connection.close();
      }
    }
    if (!locked) {
      return null;
    }
    this.heldLocks += 1;
    const lost: Array<() => void> = [];
    let settled = false;
    const settle = () => {
      if (settled) {
        return false;
      }
      settled = true;
      this.heldLocks -= 1;
      this.holders.delete(abandon);
      return true;
    };
    const abandon = () => {
      if (settle()) {
        connection.close();
      }
    };
    this.holders.add(abandon);
    connection.onClose(() => {
      if (settle()) {
        for (const listener of lost) {
          listener();
        }
      }
    });
    return {
      release: async () => {
        if (!settle()) {
          return;
        }
        try {
          await unlockContent(connection);
          // UNLOCKCONTENT has no reply: an answer to the next request shows it was done, and
          // the session can then be ended without touching the lock. Without an answer in time
          // (a proxied remote that does not answer), the retention file lasts its ten minutes.
          await within(checkPresent(connection, key), UNLOCK_ANSWER_MS);
        } catch {
          // The session died: git-annex's retention file lasts its ten minutes.
        } finally {
          connection.close();
        }
      },
      abandon,
      onLost: (listener) => {
        lost.push(listener);
      },
    };
  }

  stats(): ExecutorStats {
    const stats = this.pool.stats();
    return {
      active: stats.active,
      idle: stats.idle,
      waiting: stats.waiting,
      locks: this.heldLocks,
      // Each held lock has a session of its own, outside the pool.
      connections: stats.connections + this.heldLocks,
      streams: this.streams + this.stagingUploads,
      opened: stats.opened,
      openFailures: stats.openFailures,
      evicted: stats.evicted,
      expired: stats.expired,
    };
  }

  /** Commits made of repositories' git-annex journals (see JournalCommitter). */
  journalStats() {
    return this.journal.stats();
  }

  /**
   * Ends every session: idle ones at once, those in use once their operation ends, or when
   * `graceMs` is over. Then commits what is left in the journals of the repositories changed
   * since their last commit (JournalCommitter bounds each commit), by `until` (default
   * SHUTDOWN_CLEANUP_MS after the grace) at the latest: a journal not committed by then stays
   * for git-annex's next run in that repository, and a commit still running is ended with the
   * process (endShellProcesses). `log` says what could not be done.
   */
  async close(
    graceMs = 10_000,
    log: (message: string) => void = () => {},
    until: Deadline = new Deadline(graceMs + SHUTDOWN_CLEANUP_MS),
  ): Promise<void> {
    // Locks still held end by a signal: their retention files stay (DESIGN.md "Locks").
    for (const abandon of [...this.holders]) {
      abandon();
    }
    await boundedStep('finish the work in flight', () => this.pool.close(), {
      withinMs: graceMs,
      cut: () => void this.pool.close(true),
      log,
    });
    await this.pool.close();
    await boundedStep('commit the git-annex journals', () => this.journal.close(), {
      withinMs: until.remaining,
      log,
    });
  }
}

function uploadKey(target: RepositoryTarget, key: string): string {
  return `${target.repoPath}\n${target.serverUuid}\n${key}`;
}

/** Resolves when `promise` settles or `ms` passed, whichever is first; never rejects. */
async function within(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    promise.catch(() => undefined),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
}
