/**
 * Every git-annex-shell process this process started and that still runs, so that shutdown can
 * make sure none outlives it: sessions end by closing their stdin (git-annex-shell then unlocks,
 * keeps a partial upload and exits), sessions holding a retention lock by a signal (so that
 * git-annex keeps the lock's retention file), and whatever is still running when the process must
 * go is killed (a second signal, or a shutdown that ran out of time).
 */
import { type ChildProcess } from 'node:child_process';

/** Each running one, and whether it leads a process group of its own (killed as a whole). */
const running = new Map<ChildProcess, boolean>();

/**
 * Counts `child` as running until it exits (LocalShellConnector does this for each session, the
 * JournalCommitter for each commit). `group`: it was spawned detached, and killing it kills its
 * process group, with whatever git it started.
 */
export function trackShellProcess(child: ChildProcess, { group = false } = {}): void {
  if (child.exitCode !== null || child.signalCode !== null) {
    return;
  }
  running.set(child, group);
  const gone = () => running.delete(child);
  child.once('exit', gone);
  child.once('error', gone);
}

/** git-annex-shell processes started here that have not exited. */
export function runningShellProcesses(): number {
  return running.size;
}

/** SIGKILLs every one of them at once; returns how many there were. */
export function killShellProcesses(): number {
  const count = running.size;
  for (const [child, group] of running) {
    try {
      if (group && child.pid !== undefined) {
        process.kill(-child.pid, 'SIGKILL');
      } else {
        child.kill('SIGKILL');
      }
    } catch {
      // gone meanwhile
    }
  }
  return count;
}

/**
 * Waits up to `withinMs` for them to exit by themselves (their sessions were closed), then kills
 * the rest; resolves with how many had to be killed.
 */
export async function endShellProcesses(withinMs: number): Promise<number> {
  if (running.size > 0) {
    const exited = Promise.all(
      [...running.keys()].map(
        (child) =>
          new Promise<void>((resolve) => {
            child.once('exit', () => resolve());
            child.once('error', () => resolve());
          }),
      ),
    );
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      exited,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, withinMs);
      }),
    ]);
    clearTimeout(timer);
  }
  return killShellProcesses();
}
