/**
 * The one server launcher of test/e2e and scripts/bench: the reference `git annex p2phttp`, this
 * project's embedded server (`bin/annex-p2phttp.js serve`), and cluster mode under one launcher
 * process (cluster-launcher.ts: a private Redis, a proxy worker, a lock-service and a gateway).
 * Each server runs in its own process group, tracked by processes.ts, is polled until it answers
 * HTTP, and is stopped with SIGTERM, then SIGKILL of its whole group.
 *
 * A server is described by a ServerSpec (how to start it, how to tell it is up), so that a caller
 * may add its own kind of server (the benchmark's static-file "ceiling" server).
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as path from 'node:path';
import { answersHttp, requestJson } from './http';
import { hasExited, spawnTracked, stopProcess } from './processes';
import type { Sandbox, ServedRepo } from './repos';
import { annexUrlFor } from './repos';
import { delay, freePort, projectRoot, tail } from './util';

/** `bin/annex-p2phttp.js`, the project's command line. */
export function projectBin(): string {
  return path.join(projectRoot(), 'bin', 'annex-p2phttp.js');
}

/**
 * The compiled cluster launcher. test/support is compiled with scripts/bench (`npm run build`),
 * whose output mirrors the tree from the project root: when this file runs compiled the launcher
 * is beside it, when it runs as TypeScript (vitest) it is in that build's output.
 */
export function clusterLauncherPath(): string {
  return path.extname(__filename) === '.js'
    ? path.join(__dirname, 'cluster-launcher.js')
    : path.join(
        projectRoot(),
        'scripts',
        'bench',
        'dist',
        'test',
        'support',
        'cluster-launcher.js',
      );
}

export function hasRedisServer(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

// ---------------------------------------------------------------------------------------------
// What to start
// ---------------------------------------------------------------------------------------------

/** What a server is compared as in the benchmark's report. */
export type Role = 'reference' | 'project' | 'ceiling';

/** Which server: `cluster` is this project in cluster mode, `ceiling` a static-file server. */
export type ServerKind = 'project' | 'cluster' | 'reference' | 'ceiling';

export interface LaunchContext {
  port: number;
  repo: ServedRepo;
  /** the one file a ceiling server serves */
  file: string;
}

/** How to start one server and how to tell it is up. */
export interface ServerSpec {
  id: string;
  label: string;
  kind: ServerKind;
  role: Role;
  command(context: LaunchContext): { file: string; args: string[]; cwd: string };
  ready: { method: 'GET' | 'POST'; path(context: LaunchContext): string };
}

/** Any HTTP answer at all to POST …/v4/gettimestamp means a p2phttp server is up. */
export const gettimestampReady: ServerSpec['ready'] = {
  method: 'POST',
  path: ({ repo }) => `/git-annex/${repo.uuid}/v4/gettimestamp?clientuuid=${randomUUID()}`,
};

/** `git-annex p2phttp -JN <args>` run in the served repository (args: `--wideopen` by default). */
export function referenceServer(
  jobs: number,
  args: readonly string[] = ['--wideopen'],
): ServerSpec {
  return {
    id: `ref-J${jobs}`,
    label: `reference -J${jobs}`,
    kind: 'reference',
    role: 'reference',
    command: ({ port, repo }) => ({
      file: 'git-annex',
      args: ['p2phttp', '--bind', '127.0.0.1', '--port', String(port), `-J${jobs}`, ...args],
      cwd: repo.dir,
    }),
    ready: gettimestampReady,
  };
}

/** `bin/annex-p2phttp.js serve --repo … <args>` (args: `--wideopen` by default). */
export function projectServer(args: readonly string[] = ['--wideopen']): ServerSpec {
  const bin = projectBin();
  return {
    id: 'project',
    label: 'annex-p2phttp',
    kind: 'project',
    role: 'project',
    command: ({ port, repo }) => ({
      file: process.execPath,
      args: [
        bin,
        'serve',
        '--repo',
        repo.dir,
        '--bind',
        '127.0.0.1',
        '--port',
        String(port),
      ].concat(args),
      cwd: repo.dir,
    }),
    ready: gettimestampReady,
  };
}

/**
 * Cluster mode (DESIGN.md) under one parent process, cluster-launcher.js: a private redis-server
 * (with `sentinel`, a private Sentinel set), one proxy worker, one lock-service and one gateway,
 * so that the process tree, and with it RSS and CPU, covers every service. `args` go to every app
 * (`--wideopen` by default).
 */
export function clusterServer({
  sentinel = false,
  args = ['--wideopen'],
}: { sentinel?: boolean; args?: readonly string[] } = {}): ServerSpec {
  const launcher = clusterLauncherPath();
  return {
    id: sentinel ? 'cluster-sentinel' : 'cluster',
    label: sentinel ? 'annex-p2phttp cluster, Sentinel' : 'annex-p2phttp cluster',
    kind: 'cluster',
    role: 'project',
    command: ({ port, repo }) => ({
      file: process.execPath,
      args: [launcher, '--port', String(port), '--repo', repo.dir]
        .concat(sentinel ? ['--sentinel'] : [])
        .concat(args),
      cwd: repo.dir,
    }),
    ready: gettimestampReady,
  };
}

export interface UserSpec {
  password: string;
  permissions?: 'readonly' | 'appendonly';
}

/** The environment that gives the servers these users (`--authenv`). */
export function usersEnv(users: Record<string, UserSpec> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, spec] of Object.entries(users)) {
    env[`GIT_ANNEX_P2PHTTP_PASSWORD_${name}`] = spec.password;
    if (spec.permissions !== undefined) {
      env[`GIT_ANNEX_P2PHTTP_PERMISSIONS_${name}`] = spec.permissions;
    }
  }
  return env;
}

// ---------------------------------------------------------------------------------------------
// A running server
// ---------------------------------------------------------------------------------------------

export interface StopResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** it exited within the grace period after SIGTERM */
  graceful: boolean;
  /** it ignored SIGTERM for the grace period and had to be SIGKILLed */
  forced: boolean;
}

export interface ServerStopOptions {
  /** how long SIGTERM may take before SIGKILL of the group */
  graceMs?: number;
  /**
   * SIGKILL what is left of the group even after the leader exited in time (true); false leaves
   * leftovers (a git-annex-shell, say) for a test to find (see killGroup).
   */
  sweepGroup?: boolean;
}

export interface RunningServerOptions {
  /** keep at most this many characters of output (default 1 MiB) */
  keepOutput?: number;
  /** what `stop()` does without arguments (default 20 s grace, group swept) */
  stop?: ServerStopOptions;
}

export class RunningServer {
  private outputText = '';
  private readonly exitPromise: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private stopping: Promise<StopResult> | undefined;
  private readonly stopDefaults: Required<ServerStopOptions>;

  constructor(
    readonly spec: Pick<ServerSpec, 'kind' | 'label'>,
    readonly port: number,
    readonly repo: ServedRepo,
    readonly commandLine: string,
    private readonly child: ChildProcess,
    { keepOutput = 1 << 20, stop = {} }: RunningServerOptions = {},
  ) {
    this.stopDefaults = { graceMs: 20_000, sweepGroup: true, ...stop };
    const collect = (chunk: Buffer): void => {
      this.outputText = tail(this.outputText + chunk.toString('utf8'), keepOutput);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    this.exitPromise = hasExited(child)
      ? Promise.resolve({ code: child.exitCode, signal: child.signalCode })
      : new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  get kind(): ServerKind {
    return this.spec.kind;
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get exited(): boolean {
    return hasExited(this.child);
  }

  get uuid(): string {
    return this.repo.uuid;
  }

  /** http://127.0.0.1:PORT */
  get origin(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get annexUrl(): string {
    return annexUrlFor(this.port);
  }

  /** Everything the server wrote to stdout and stderr so far (the last `keepOutput`). */
  output(): string {
    return this.outputText;
  }

  describe(): string {
    return (
      `${this.spec.label} (pid ${this.pid}, port ${this.port}): ${this.commandLine}\n` +
      `--- server output ---\n${tail(this.outputText, 4000)}`
    );
  }

  waitExit(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return this.exitPromise;
  }

  /** `GET /stats` of this project's server. */
  stats(timeoutMs = 5000): Promise<ServerStats> {
    return requestJson<ServerStats>(this.port, '/stats', { method: 'GET', timeoutMs });
  }

  /**
   * SIGTERM, up to `graceMs`, then SIGKILL of the whole group (see ServerStopOptions; defaults
   * from the server's options). Idempotent.
   */
  stop(options: ServerStopOptions | number = {}): Promise<StopResult> {
    const { graceMs, sweepGroup } = {
      ...this.stopDefaults,
      ...(typeof options === 'number' ? { graceMs: options } : options),
    };
    this.stopping ??= stopProcess(this.child, { graceMs, sweepGroup }).then(
      async ({ graceful }) => ({
        ...(await this.exitPromise),
        graceful,
        forced: !graceful,
      }),
    );
    return this.stopping;
  }

  /** SIGKILL of the whole group at once (after a stall there is nothing to wait for). */
  kill(): Promise<StopResult> {
    this.stopping ??= stopProcess(this.child, { graceMs: 0, signal: 'SIGKILL', to: 'group' }).then(
      () => ({
        code: this.child.exitCode,
        signal: this.child.signalCode,
        graceful: false,
        forced: true,
      }),
    );
    return this.stopping;
  }

  /** Last-resort cleanup: SIGKILL the server's whole process group, without waiting. */
  killGroup(): void {
    if (this.child.pid !== undefined) {
      try {
        process.kill(-this.child.pid, 'SIGKILL');
      } catch {
        // the group is gone
      }
    }
  }
}

export interface PoolStats {
  active: number;
  idle: number;
  waiting: number;
  locks: number;
  connections: number;
  streams: number;
  opened: number;
  openFailures: number;
  evicted: number;
  expired: number;
}

export interface ServerStats {
  pool: PoolStats;
  locks: number;
  keeplocked: number;
}

// ---------------------------------------------------------------------------------------------
// Starting one
// ---------------------------------------------------------------------------------------------

export interface StartOptions extends RunningServerOptions {
  sandbox: Sandbox;
  repo: ServedRepo;
  /** the one file a ceiling server serves */
  file?: string;
  /** a fixed port (e.g. one a client clone was already pointed at); else a free one */
  port?: number;
  /** more environment on top of the sandbox's */
  env?: NodeJS.ProcessEnv;
  /** how long it may take to answer (default 30 s) */
  timeoutMs?: number;
  /** how often to ask whether it answers (default 100 ms) */
  pollMs?: number;
}

/**
 * Starts the server and waits until it answers HTTP; on a free port, retries another one (up to
 * three attempts) if the chosen one was taken meanwhile.
 */
export async function startServer(spec: ServerSpec, options: StartOptions): Promise<RunningServer> {
  const { sandbox, repo, file = '', timeoutMs = 30_000, pollMs = 100 } = options;
  for (let attempt = 1; ; attempt += 1) {
    const context: LaunchContext = { port: options.port ?? (await freePort()), repo, file };
    const command = spec.command(context);
    const child = spawnTracked(command.file, command.args, {
      cwd: command.cwd,
      env: sandbox.env(options.env),
    });
    const commandLine = [command.file, ...command.args].join(' ');
    const server = new RunningServer(spec, context.port, repo, commandLine, child, options);
    let spawnError: Error | undefined;
    child.once('error', (error) => {
      spawnError = error;
    });
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && !server.exited && spawnError === undefined) {
      if (await answersHttp(context.port, spec.ready.path(context), spec.ready.method)) {
        return server;
      }
      await delay(pollMs);
    }
    await server.stop({ graceMs: 2000, sweepGroup: true });
    if (spawnError !== undefined) {
      throw new Error(`cannot start ${commandLine}: ${spawnError.message}`);
    }
    if (/in use|EADDRINUSE/i.test(server.output()) && options.port === undefined && attempt < 3) {
      continue;
    }
    throw new Error(`server did not answer within ${timeoutMs} ms: ${server.describe()}`);
  }
}
