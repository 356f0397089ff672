/**
 * Opens P2P transports to repositories on this machine by spawning
 * `git-annex-shell p2pstdio REPO CLIENTUUID --uuid SERVERUUID` (PROTOCOL.md §1.1). Arguments are
 * passed as an argv array, never through a shell; every value was validated by the caller.
 * The server mode (§1.6) is set through git-annex-shell's environment.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { type Writable } from 'node:stream';
import { type RepositoryTarget, type ServerMode } from '@annex-p2phttp/protocol';
import { openLockInput } from './lock-input';
import { trackShellProcess } from './shell-processes';
import { type Transport } from './transport';

export interface Connector {
  connect(target: RepositoryTarget): Transport;
  /**
   * A session that will hold a retention lock (PROTOCOL.md §1.5): one that never sees the end of
   * its input when this process goes, and is ended by a signal instead, so that git-annex keeps
   * the lock's retention file. Its `destroy` ends it by a signal too; to unlock, send
   * UNLOCKCONTENT first. A connector that cannot do this opens an ordinary session.
   */
  connectHolder?(target: RepositoryTarget): Promise<Transport>;
}

/** How long a peer may take to exit after its stdin closed before it is killed. */
export const KILL_GRACE_MS = 3000;

const MODE_VARIABLES = ['GIT_ANNEX_SHELL_READONLY', 'GIT_ANNEX_SHELL_APPENDONLY'] as const;

/**
 * git-annex-shell's environment for a session: the server mode (PROTOCOL.md §1.6), and with
 * `clusterJobs` > 1 the git config `annex.jobs`, which bounds how many cluster nodes a
 * `p2pstdio --uuid <cluster>` session reaches at once (git-annex-shell has no option for it; a
 * session for a plain repository or a single proxied remote ignores it).
 */
export function shellEnvironment(
  base: NodeJS.ProcessEnv,
  mode: ServerMode,
  clusterJobs = 1,
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base };
  if (clusterJobs > 1) {
    const count = Number(env.GIT_CONFIG_COUNT ?? '0');
    const index = Number.isInteger(count) && count >= 0 ? count : 0;
    env[`GIT_CONFIG_KEY_${index}`] = 'annex.jobs';
    env[`GIT_CONFIG_VALUE_${index}`] = String(clusterJobs);
    env.GIT_CONFIG_COUNT = String(index + 1);
  }
  for (const name of MODE_VARIABLES) {
    delete env[name];
  }
  delete env.GIT_ANNEX_SHELL_DIRECTORY;
  delete env.GIT_ANNEX_SHELL_LIMITED;
  if (mode === 'readonly') {
    env.GIT_ANNEX_SHELL_READONLY = '1';
  } else if (mode === 'appendonly') {
    env.GIT_ANNEX_SHELL_APPENDONLY = '1';
  }
  return env;
}

export class LocalShellConnector implements Connector {
  constructor(
    private readonly options: {
      command?: string;
      env?: NodeJS.ProcessEnv;
      debug?: boolean;
      clusterJobs?: number;
      /** util-linux's setpriv, which starts the sessions that hold locks. */
      setpriv?: string;
    } = {},
  ) {}

  connect(target: RepositoryTarget): Transport {
    const child = spawn(this.command(), this.args(target), {
      cwd: target.repoPath,
      env: this.env(target),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    trackShellProcess(child);
    // Writing to a process that already died raises EPIPE on stdin; the connection sees the
    // exit through `exited` and the input stream's end, so the error itself needs no handler
    // beyond keeping it from becoming an uncaught exception.
    child.stdin.on('error', () => undefined);
    const transport = this.transport(target, child, child.stdin, () => {
      // Closing stdin makes git-annex-shell unlock held content and keep a partial upload
      // (PROTOCOL.md §1.5); closing stdout stops a download. A peer that does not exit by
      // itself is killed after a grace period.
      child.stdin.destroy();
      child.stdout?.destroy();
      killLater(child, KILL_GRACE_MS);
    });
    return {
      ...transport,
      end: () => {
        // The payload bytes still queued in this process reach git-annex-shell before its input
        // ends: it keeps every one of them in the partial file. What it still says is read and
        // dropped, so that it never blocks on a full pipe.
        child.stdin.end();
        child.stdout?.resume();
        killLater(child, KILL_GRACE_MS);
      },
    };
  }

  /**
   * git-annex unlocks and deletes the retention file when a holder's input ends, but keeps the
   * file when the holder dies by a signal (PROTOCOL.md §1.5). So the holder's input is a FIFO it
   * holds open for writing itself (its input never ends), and it is started through `setpriv
   * --pdeathsig SIGKILL`, which kills it when this process dies, however it dies.
   */
  async connectHolder(target: RepositoryTarget): Promise<Transport> {
    const input = await openLockInput();
    let child: ChildProcess;
    try {
      child = spawn(
        this.options.setpriv ?? 'setpriv',
        ['--pdeathsig', 'SIGKILL', '--', this.command(), ...this.args(target)],
        { cwd: target.repoPath, env: this.env(target), stdio: [input.fd, 'pipe', 'pipe'] },
      );
    } catch (error) {
      input.close();
      throw error;
    }
    trackShellProcess(child);
    child.once('exit', () => input.close());
    child.once('error', () => input.close());
    return this.transport(target, child, input.stream, () => {
      // End of input would unlock: a signal ends the holder, and its retention file stays.
      input.close();
      child.stdout?.destroy();
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        killLater(child, KILL_GRACE_MS);
      }
    });
  }

  private command(): string {
    return this.options.command ?? 'git-annex-shell';
  }

  private args(target: RepositoryTarget): string[] {
    const args = ['p2pstdio', target.repoPath, target.clientUuid, '--uuid', target.serverUuid];
    if (this.options.debug) {
      args.push('--debug');
    }
    return args;
  }

  private env(target: RepositoryTarget): NodeJS.ProcessEnv {
    return shellEnvironment(this.options.env ?? process.env, target.mode, this.options.clusterJobs);
  }

  private transport(
    target: RepositoryTarget,
    child: ChildProcess,
    output: Writable,
    destroy: () => void,
  ): Transport {
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) {
        resolve();
        return;
      }
      child.once('exit', () => resolve());
      child.once('error', () => resolve());
    });
    if (!child.stdout || !child.stderr) {
      throw new Error('git-annex-shell was started without stdout or stderr pipes');
    }
    return {
      input: child.stdout,
      output,
      diagnostics: child.stderr,
      exited,
      description: `git-annex-shell p2pstdio ${target.repoPath} --uuid ${target.serverUuid}`,
      destroy,
    };
  }
}

/** SIGKILLs `child` after `ms` unless it exited by then. */
function killLater(child: ChildProcess, ms: number): void {
  if (child.exitCode === null && child.signalCode === null) {
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    timer.unref();
    child.once('exit', () => clearTimeout(timer));
  }
}
