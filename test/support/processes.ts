/**
 * Every process the tools start: spawned without a shell in its own process group and tracked, so
 * that it and whatever it started can be ended on success, on failure and on Ctrl-C (SIGTERM to
 * the group, SIGKILL after a grace period).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { delay, tail } from './util';

const live = new Set<ChildProcess>();
/** Tracked children spawned in this process's own group (`group: 'parent'`). */
const sharesOurGroup = new WeakSet<ChildProcess>();

// whatever ends this process (a test runner's worker included), no group it started survives it
process.once('exit', () => killAllTracked());

export interface SpawnOptions {
  cwd: string;
  env: NodeJS.ProcessEnv;
  /**
   * `own` (default): a new process group, which stopProcess ends as a whole; `parent`: this
   * process's group, so that whoever ends this process's group ends it too (a launcher's child).
   */
  group?: 'own' | 'parent';
}

/** Spawns `file args` in a new process group with piped stdout and stderr, and tracks it. */
export function spawnTracked(
  file: string,
  args: readonly string[],
  { cwd, env, group = 'own' }: SpawnOptions,
): ChildProcess {
  const child = spawn(file, args, {
    cwd,
    env,
    detached: group === 'own',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  if (group === 'parent') {
    sharesOurGroup.add(child);
  }
  child.once('exit', () => live.delete(child));
  child.once('error', () => live.delete(child));
  return child;
}

/** Sends `signal` to the child's whole process group (quietly if it is gone). */
export function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) {
    return;
  }
  try {
    if (sharesOurGroup.has(child)) {
      child.kill(signal); // its group is ours: the process alone
    } else {
      process.kill(-child.pid, signal);
    }
  } catch {
    // the group is gone
  }
}

export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function exitOf(child: ChildProcess): Promise<void> {
  if (hasExited(child) || child.pid === undefined) {
    return Promise.resolve();
  }
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/**
 * Ends a process and its group: `signal` to the leader only (`'group'` sends it to every member),
 * up to `graceMs` for it to exit, then SIGKILL to the whole group, which also sweeps up any member
 * left behind by a leader that did exit (unless `sweepGroup` is false). Resolves whether the
 * leader exited in time.
 */
export async function stopProcess(
  child: ChildProcess,
  { graceMs = 5000, signal = 'SIGTERM', to = 'leader', sweepGroup = true }: StopOptions = {},
): Promise<{ graceful: boolean }> {
  const exited = exitOf(child);
  if (!hasExited(child)) {
    if (to === 'group') {
      signalGroup(child, signal);
    } else {
      child.kill(signal);
    }
  }
  const graceful = await Promise.race([exited.then(() => true), delay(graceMs).then(() => false)]);
  if (graceful && !sweepGroup) {
    return { graceful };
  }
  signalGroup(child, 'SIGKILL');
  await Promise.race([exited, delay(5000)]);
  return { graceful };
}

export interface StopOptions {
  graceMs?: number;
  signal?: NodeJS.Signals;
  to?: 'leader' | 'group';
  /**
   * SIGKILL the group even when the leader exited in time (default true); false leaves what the
   * leader left behind for the caller to find.
   */
  sweepGroup?: boolean;
}

/** SIGKILLs every tracked group at once (for exit paths that cannot wait). */
export function killAllTracked(): void {
  for (const child of live) {
    signalGroup(child, 'SIGKILL');
  }
}

/** SIGTERM to every tracked group, then SIGKILL what is left after `graceMs`. */
export async function stopAllTracked(graceMs = 3000): Promise<void> {
  await Promise.all([...live].map((child) => stopProcess(child, { graceMs, to: 'group' })));
}

let handlersInstalled = false;

/**
 * On SIGINT or SIGTERM: end every tracked process group, run `cleanup`, and exit with 130.
 * Installed once.
 */
export function installExitHandlers(cleanup: () => Promise<void> | void = () => {}): void {
  if (handlersInstalled) {
    return;
  }
  handlersInstalled = true;
  const onSignal = (name: NodeJS.Signals): void => {
    process.stderr.write(`\n${name}: stopping every process started, cleaning up\n`);
    const finish = async (): Promise<void> => {
      await stopAllTracked(2000);
      await cleanup();
    };
    const hardStop = setTimeout(() => process.exit(130), 15_000);
    hardStop.unref();
    void finish().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
}

// ---------------------------------------------------------------------------------------------

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** killed because `timeoutMs` passed */
  timedOut: boolean;
  /** killed because `signal` aborted */
  aborted: boolean;
  elapsedMs: number;
}

export interface CommandOptions extends SpawnOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
  /** called with every complete stdout line as it arrives */
  onLine?: (line: string) => void;
  /** keep at most this many characters of stdout (default 1 MiB; Infinity: all) */
  keepStdout?: number;
  /** keep at most this many characters of stderr (default 64 KiB; Infinity: all) */
  keepStderr?: number;
  /**
   * Once the leader exited, SIGKILL what is left of its process group (default true: a helper
   * process must not outlive the command). False leaves it to the tracker.
   */
  sweepGroup?: boolean;
}

/** Runs a command to completion (or until its timeout or abort, which SIGKILL its group). */
export function runCommand(
  file: string,
  args: readonly string[],
  options: CommandOptions,
): Promise<CommandResult> {
  const {
    timeoutMs = 600_000,
    signal,
    onLine,
    keepStdout = 1 << 20,
    keepStderr = 64 * 1024,
    sweepGroup = true,
  } = options;
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawnTracked(file, args, options);
    let stdout = '';
    let stderr = '';
    let partial = '';
    // Decoded as a stream: a character split between two chunks stays whole.
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    child.stdout?.on('data', (text: string) => {
      stdout = tail(stdout + text, keepStdout);
      if (onLine !== undefined) {
        const lines = (partial + text).split('\n');
        partial = lines.pop() ?? '';
        lines.forEach(onLine);
      }
    });
    child.stderr?.on('data', (text: string) => {
      stderr = tail(stderr + text, keepStderr);
    });
    let timedOut = false;
    let aborted = false;
    const timer = setTimeout(() => {
      timedOut = true;
      signalGroup(child, 'SIGKILL');
    }, timeoutMs);
    const onAbort = (): void => {
      aborted = true;
      signalGroup(child, 'SIGKILL');
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted === true) {
      onAbort();
    }
    child.once('error', (error) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      reject(error);
    });
    child.once('close', (code, exitSignal) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      // members of the group may outlive the leader (e.g. a helper git process)
      if (sweepGroup) {
        signalGroup(child, 'SIGKILL');
      }
      if (onLine !== undefined && partial !== '') {
        onLine(partial);
      }
      resolve({
        code,
        signal: exitSignal,
        stdout,
        stderr,
        timedOut,
        aborted,
        elapsedMs: Date.now() - started,
      });
    });
  });
}

export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly result: CommandResult,
  ) {
    const how = result.timedOut
      ? 'timed out'
      : result.aborted
        ? 'aborted'
        : (result.signal ?? `exit ${String(result.code)}`);
    super(
      `${command}: ${how}\n--- stdout ---\n${tail(result.stdout.trim(), 4000)}\n` +
        `--- stderr ---\n${tail(result.stderr.trim(), 4000)}`,
    );
    this.name = 'CommandError';
  }
}

/** Runs a command; throws a CommandError unless it exits 0. */
export async function runChecked(
  file: string,
  args: readonly string[],
  options: CommandOptions,
): Promise<CommandResult> {
  const result = await runCommand(file, args, options);
  if (result.code !== 0) {
    throw new CommandError(`(cd ${options.cwd} && ${[file, ...args].join(' ')})`, result);
  }
  return result;
}
