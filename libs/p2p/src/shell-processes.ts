/**
 * Every git-annex-shell process this process started and that still runs, so that shutdown can
 * make sure none outlives it: sessions end by closing their stdin (git-annex-shell then unlocks,
 * keeps a partial upload and exits), and whatever is still running when the process must go is
 * killed (a second signal, or a shutdown that ran out of time).
 */
import { type ChildProcess } from 'node:child_process';

const running = new Set<ChildProcess>();

/** Counts `child` as running until it exits (LocalShellConnector does this for each session). */
export function trackShellProcess(child: ChildProcess): void {
  if (child.exitCode !== null || child.signalCode !== null) {
    return;
  }
  running.add(child);
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
  for (const child of running) {
    child.kill('SIGKILL');
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
      [...running].map(
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
