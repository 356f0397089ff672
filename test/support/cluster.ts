/**
 * The apps of cluster mode one by one (a gateway, proxy workers, a lock-service), for tests that
 * start, stop and kill them separately; cluster-launcher.ts starts a whole cluster as one process.
 */
import { httpStatus } from './http';
import { spawnTracked } from './processes';
import type { Sandbox, ServedRepo } from './repos';
import { projectBin, RunningServer, type RunningServerOptions } from './servers';
import { pollUntil } from './util';

/** What a cluster-mode app needs: the repository, its sandbox, and the Redis it shares. */
export interface ClusterAppContext {
  sandbox: Sandbox;
  repo: ServedRepo;
  redisUrl: string;
  /** `--redis-prefix` */
  prefix: string;
}

export type ClusterCommand = 'gateway' | 'serve' | 'proxy-worker' | 'lock-service';

/**
 * Spawns `annex-p2phttp <command> --redis URL --redis-prefix P <args>` (a gateway, proxy-worker
 * or lock-service of cluster mode) in its own process group, tracked like every server; `port` is
 * where it answers HTTP (its API or its health port). `stop()` leaves what a graceful exit left
 * behind for the test to find.
 */
export function spawnClusterApp(
  context: ClusterAppContext,
  command: ClusterCommand,
  args: readonly string[],
  port: number,
  options: RunningServerOptions = { stop: { sweepGroup: false } },
): RunningServer {
  const all = [command, '--redis', context.redisUrl, '--redis-prefix', context.prefix, ...args];
  const child = spawnTracked(process.execPath, [projectBin(), ...all], {
    cwd: context.repo.dir,
    env: context.sandbox.env(),
  });
  return new RunningServer(
    { kind: 'project', label: command },
    port,
    context.repo,
    all.join(' '),
    child,
    options,
  );
}

/** Waits until an app answers GET /readyz with 200; fails at once if it exited. */
export async function untilReady(app: RunningServer, what: string): Promise<void> {
  await pollUntil(
    `${what} ready`,
    async () => {
      if (app.exited) {
        throw new Error(app.describe());
      }
      return (await httpStatus(app.port, '/readyz')) === 200 ? true : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200 },
  );
}
