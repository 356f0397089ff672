/**
 * The JournalCommitter against real git-annex repositories: changes are written to the journal by
 * git-annex itself (with annex.alwayscommit off, as a long-lived session leaves them), and the
 * commits are git-annex-shell's.
 */
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JournalCommitter } from '@annex-p2phttp/ops';
import { makeRepo, run, waitFor, type TestRepo } from './support';

let repo: TestRepo;
let keys: string[];

beforeAll(() => {
  repo = makeRepo('journal-committer-');
  keys = ['a', 'b', 'c', 'd', 'e', 'f'].map((name) => repo.add(`${name}.txt`, `${name}\n`));
});

afterAll(() => {
  repo.remove();
});

const gitDir = (path: string) => Promise.resolve(join(path, '.git'));

function journal(): string[] {
  const dir = join(repo.path, '.git', 'annex', 'journal');
  return existsSync(dir) ? readdirSync(dir) : [];
}

function branchCommits(): number {
  return Number(run(repo.path, 'git', ['rev-list', '--count', 'git-annex']));
}

/** A key never seen before: recording it is always a change. */
function freshKey(): string {
  return `SHA256E-s1--${randomBytes(32).toString('hex')}`;
}

/** A location-log change left in the journal, as a pooled git-annex-shell session leaves it. */
function journalChange(key = freshKey(), present = true): Promise<void> {
  run(repo.path, 'git', [
    '-c',
    'annex.alwayscommit=false',
    'annex',
    'setpresentkey',
    key,
    repo.uuid,
    present ? '1' : '0',
  ]);
  return Promise.resolve();
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('JournalCommitter', () => {
  it('commits once, idleMs after the last of overlapping changes', async () => {
    const committer = new JournalCommitter({ idleMs: 1000, gitDir });
    const before = branchCommits();
    await Promise.all(
      keys.map((key, i) =>
        committer.track(repo.path, async () => {
          await delay(i * 40);
          await journalChange(key, false);
        }),
      ),
    );
    expect(journal().length).toBeGreaterThan(0);
    await delay(100);
    expect(committer.stats().commits, 'not before the repository was quiet').toBe(0);
    await waitFor(() => journal().length === 0);
    expect(committer.stats()).toEqual({ commits: 1, failures: 0 });
    expect(branchCommits()).toBe(before + 1);
    await committer.close();
  });

  it('commits changes that keep overlapping after maxDelayMs', async () => {
    const committer = new JournalCommitter({ idleMs: 200, maxDelayMs: 600, gitDir });
    let busy = true;
    const steady = (async () => {
      // A change every 50 ms for about two seconds: never quiet for idleMs.
      for (let i = 0; busy && i < 40; i += 1) {
        await committer.track(repo.path, async () => {
          await journalChange(keys[i % keys.length], i % 2 === 0);
          await delay(50);
        });
      }
    })();
    await waitFor(() => committer.stats().commits > 0, 5000);
    busy = false;
    await steady;
    await committer.close();
    expect(journal()).toEqual([]);
  });

  it('spawns nothing while the journal is empty', async () => {
    const committer = new JournalCommitter({ idleMs: 50, gitDir });
    await committer.track(repo.path, () => Promise.resolve());
    await delay(300);
    expect(committer.stats().commits).toBe(0);
    await committer.close();
    expect(committer.stats().commits).toBe(0);
  });

  it('commits what is left on close without waiting for the idle time', async () => {
    const committer = new JournalCommitter({ idleMs: 60_000, gitDir });
    await committer.track(repo.path, () => journalChange());
    expect(journal().length).toBeGreaterThan(0);
    await committer.close();
    expect(journal()).toEqual([]);
    expect(committer.stats().commits).toBe(1);
  });

  it('kills a commit that outlives its bound on close, with what it started', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'journal-committer-stuck-'));
    const pids = join(dir, 'pids');
    const script = join(dir, 'stuck-shell');
    // A git-annex-shell that hangs, with a child of its own (as git would be).
    writeFileSync(script, `#!/bin/sh\nsleep 60 &\necho $$ $! > ${pids}\nwait\n`);
    chmodSync(script, 0o755);
    const logged: string[] = [];
    const committer = new JournalCommitter({
      idleMs: 60_000,
      closeTimeoutMs: 300,
      command: script,
      gitDir,
      log: (message) => logged.push(message),
    });
    await committer.track(repo.path, () => journalChange());
    const started = performance.now();
    await committer.close();
    expect(performance.now() - started).toBeLessThan(5000);
    expect(committer.stats()).toEqual({ commits: 1, failures: 1 });
    expect(logged.join('\n')).toMatch(/committing the git-annex journal failed: .*SIGKILL/);
    // SIGKILL went to the whole group; a loaded machine may take a moment to carry it out.
    const running = (pid: number) => existsSync(`/proc/${pid}`) && !isZombie(pid);
    const spawned = readFileSync(pids, 'utf8').trim().split(' ').map(Number);
    await waitFor(() => !spawned.some(running), 5000).catch(() => undefined);
    for (const pid of spawned) {
      expect(running(pid), `process ${pid} left running`).toBe(false);
    }
    // The journal is still there for the next commit.
    expect(journal().length).toBeGreaterThan(0);
    const again = new JournalCommitter({ gitDir });
    await again.track(repo.path, () => Promise.resolve());
    await again.close();
    expect(journal()).toEqual([]);
  });
});

function isZombie(pid: number): boolean {
  try {
    return /^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}
