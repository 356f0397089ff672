/**
 * The servers compared: `git annex p2phttp` (the reference) at some -J, this project's embedded
 * server, and the "ceiling" static-file server. Each runs in its own process group, is polled
 * until it answers HTTP, and is stopped with SIGTERM, then SIGKILL of its whole group.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as path from 'node:path';
import { answersHttp, requestJson } from '../../test/support/http';
import { hasExited, spawnTracked, stopProcess } from '../../test/support/processes';
import type { Sandbox, ServedRepo } from '../../test/support/repos';
import { delay, freePort, projectRoot, tail } from '../../test/support/util';

export type Role = 'reference' | 'project' | 'ceiling';

export interface LaunchContext {
  port: number;
  repo: ServedRepo;
  /** the one file the ceiling server serves */
  file: string;
}

/** One column of the benchmark: how to start that server. */
export interface ServerSpec {
  id: string;
  label: string;
  role: Role;
  command(context: LaunchContext): { file: string; args: string[]; cwd: string };
  /** how to tell it is up */
  ready: { method: 'GET' | 'POST'; path(context: LaunchContext): string };
}

const gettimestampReady: ServerSpec['ready'] = {
  method: 'POST',
  path: ({ repo }) => `/git-annex/${repo.uuid}/v3/gettimestamp?clientuuid=${randomUUID()}`,
};

/** `git-annex p2phttp -JN --wideopen` run in the served repository (git-annex 10.20250416). */
export function referenceServer(jobs: number): ServerSpec {
  return {
    id: `ref-J${jobs}`,
    label: `reference -J${jobs}`,
    role: 'reference',
    command: ({ port, repo }) => ({
      file: 'git-annex',
      args: ['p2phttp', '--bind', '127.0.0.1', '--port', String(port), '--wideopen', `-J${jobs}`],
      cwd: repo.dir,
    }),
    ready: gettimestampReady,
  };
}

/** `bin/annex-p2phttp.js serve --repo … --wideopen` with its defaults, plus `extraArgs`. */
export function projectServer(extraArgs: readonly string[] = []): ServerSpec {
  const bin = path.join(projectRoot(), 'bin', 'annex-p2phttp.js');
  return {
    id: 'project',
    label: 'annex-p2phttp',
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
        '--wideopen',
        ...extraArgs,
      ],
      cwd: repo.dir,
    }),
    ready: gettimestampReady,
  };
}

/** The minimal Node static-file server (ceiling-server.ts), for the GET workloads only. */
export function ceilingServer(): ServerSpec {
  return {
    id: 'ceiling',
    label: 'ceiling',
    role: 'ceiling',
    command: ({ port, file, repo }) => ({
      file: process.execPath,
      args: [path.join(__dirname, 'ceiling-server.js'), file, String(port)],
      cwd: repo.dir,
    }),
    ready: { method: 'GET', path: () => '/ready' },
  };
}

/**
 * Cluster mode (DESIGN.md): a private redis-server, one proxy worker and one gateway, started by
 * cluster-launcher.js under one parent process (so the process tree, and with it RSS and CPU,
 * covers every service). Undefined, so no column, when redis-server is not installed. With
 * `sentinel`, the column `cluster-sentinel`: the same behind a private Redis Sentinel set.
 */
export function clusterServer(sentinel = false): ServerSpec | undefined {
  if (!hasRedisServer()) {
    return undefined;
  }
  return {
    id: sentinel ? 'cluster-sentinel' : 'cluster',
    label: sentinel ? 'annex-p2phttp cluster, Sentinel' : 'annex-p2phttp cluster',
    role: 'project',
    command: ({ port, repo }) => ({
      file: process.execPath,
      args: [
        path.join(__dirname, 'cluster-launcher.js'),
        '--port',
        String(port),
        '--repo',
        repo.dir,
        '--wideopen',
        ...(sentinel ? ['--sentinel'] : []),
      ],
      cwd: repo.dir,
    }),
    ready: gettimestampReady,
  };
}

export function hasRedisServer(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

// ---------------------------------------------------------------------------------------------

export interface StopResult {
  graceful: boolean;
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class RunningServer {
  private outputText = '';
  private stopping: Promise<StopResult> | undefined;

  constructor(
    readonly spec: ServerSpec,
    readonly port: number,
    readonly repo: ServedRepo,
    readonly commandLine: string,
    private readonly child: ChildProcess,
  ) {
    const collect = (chunk: Buffer): void => {
      this.outputText = tail(this.outputText + chunk.toString('utf8'), 256 * 1024);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get exited(): boolean {
    return hasExited(this.child);
  }

  output(): string {
    return this.outputText;
  }

  describe(): string {
    return `${this.spec.label} (pid ${this.pid}, port ${this.port}): ${this.commandLine}\n${tail(this.outputText, 3000)}`;
  }

  /** `GET /stats` of this project's server. */
  stats(timeoutMs = 5000): Promise<ServerStats> {
    return requestJson<ServerStats>(this.port, '/stats', { method: 'GET', timeoutMs });
  }

  /** SIGTERM, up to `graceMs`, then SIGKILL of the whole group. Idempotent. */
  stop(graceMs = 15_000): Promise<StopResult> {
    this.stopping ??= stopProcess(this.child, { graceMs }).then(({ graceful }) => ({
      graceful,
      code: this.child.exitCode,
      signal: this.child.signalCode,
    }));
    return this.stopping;
  }

  /** SIGKILL of the whole group at once (after a stall there is nothing to wait for). */
  kill(): Promise<StopResult> {
    this.stopping ??= stopProcess(this.child, { graceMs: 0, signal: 'SIGKILL', to: 'group' }).then(
      () => ({ graceful: false, code: this.child.exitCode, signal: this.child.signalCode }),
    );
    return this.stopping;
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

export interface StartOptions {
  sandbox: Sandbox;
  repo: ServedRepo;
  file?: string;
  timeoutMs?: number;
}

/** Starts the server and waits until it answers HTTP; retries another port if one was taken. */
export async function startServer(spec: ServerSpec, options: StartOptions): Promise<RunningServer> {
  const { sandbox, repo, file = '', timeoutMs = 30_000 } = options;
  for (let attempt = 1; ; attempt += 1) {
    const context: LaunchContext = { port: await freePort(), repo, file };
    const command = spec.command(context);
    const child = spawnTracked(command.file, command.args, {
      cwd: command.cwd,
      env: sandbox.env(),
    });
    const commandLine = [command.file, ...command.args].join(' ');
    const server = new RunningServer(spec, context.port, repo, commandLine, child);
    let spawnError: Error | undefined;
    child.once('error', (error) => {
      spawnError = error;
    });
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && !server.exited && spawnError === undefined) {
      if (await answersHttp(context.port, spec.ready.path(context), spec.ready.method)) {
        return server;
      }
      await delay(100);
    }
    await server.stop(2000);
    if (spawnError !== undefined) {
      throw new Error(`cannot start ${commandLine}: ${spawnError.message}`);
    }
    if (/in use|EADDRINUSE/i.test(server.output()) && attempt < 3) {
      continue;
    }
    throw new Error(`server did not answer within ${timeoutMs} ms: ${server.describe()}`);
  }
}
