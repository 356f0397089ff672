/**
 * The embedded server: one process serving repositories over the HTTP P2P API, like
 * `git annex p2phttp`. The composition of its backend (registry, pool, operation executor behind
 * the local dispatcher, local locks, journaled locks taken over at start) plugged into the HTTP
 * API of apps/gateway (`startGateway`), as cluster-gateway.ts plugs the cluster backend.
 */
import { join } from 'node:path';
import { repositoryLocation, type EmbeddedConfig } from '@annex-p2phttp/config';
import { localDispatcher, unavailable } from '@annex-p2phttp/dispatch';
import {
  startGateway,
  type RepositoryDirectory,
  type RunningGateway,
} from '@annex-p2phttp/gateway';
import { LocalRetentionLocks, LockJournal, MemoryLockStore } from '@annex-p2phttp/locks';
import {
  CounterMirror,
  logFunction,
  loggerFor,
  Metrics,
  mirrorPool,
  type Logger,
} from '@annex-p2phttp/metrics';
import {
  boundedStep,
  Deadline,
  ObjectFiles,
  OperationExecutor,
  RepositoryRegistry,
  unwritableAdvice,
  WritableCheck,
} from '@annex-p2phttp/ops';
import { LocalShellConnector, SessionPool } from '@annex-p2phttp/p2p';
import { gatewayShutdown } from './gateway-shutdown';

export interface RunningServer extends RunningGateway {
  readonly pool: SessionPool;
  readonly locks: LocalRetentionLocks;
}

export async function startEmbeddedServer(
  options: EmbeddedConfig,
  env: NodeJS.ProcessEnv = process.env,
  log: Logger = loggerFor(options, 'embedded'),
): Promise<RunningServer> {
  const pool = new SessionPool({
    connector: new LocalShellConnector({ debug: options.debug, clusterJobs: options.clusterJobs }),
    maxActive: options.jobs,
    maxIdle: options.proxyConnections,
  });
  const executor = new OperationExecutor(pool, undefined, {
    log: logFunction(log, 'warn'),
    uploadIdleMs: options.uploadIdleMs,
  });
  const dispatcher = localDispatcher(executor);
  const objects = new ObjectFiles();
  // The executor takes the repository-side locks.
  const locks = new LocalRetentionLocks(new MemoryLockStore(), executor, {
    lockedFiles: options.lockedFiles,
    ttlMs: options.lockTtlMs,
    journal: new LockJournal((repoPath) => objects.gitDir(repoPath)),
    log: logFunction(log, 'warn'),
  });
  let restored = 0;
  const registry = new RepositoryRegistry({
    repos: [...options.repos],
    directories: [...options.directories],
    log: logFunction(log, 'warn'),
    // The locks a previous server left (stopped or crashed) are taken over before a repository
    // is served.
    prepare: async (repo) => {
      restored += await locks.restore([repo.path]);
    },
  });
  try {
    // Reads the --repo repositories; those below --directory are served as they are found.
    await registry.start();
  } catch (error) {
    registry.close();
    await executor.close(0, logFunction(log, 'warn'));
    throw error;
  }
  let writable: WritableCheck | undefined;
  let stopped = false;
  const scanned = registry.whenScanned().then(async () => {
    if (stopped) {
      return;
    }
    writable = await checkWritable(registry, log);
    const served = registry.list().filter((repo) => repo.kind === 'repository').length;
    log.info(`serving ${served} repositories`);
    if (restored > 0) {
      log.info(`took over ${restored} content lock(s) held before the restart`);
    }
  });
  scanned.catch((error: unknown) => log.error(`reading the repositories failed: ${String(error)}`));
  const metrics = new Metrics('embedded');
  mirrorPool(metrics, () => dispatcher.stats());
  const expirations = new CounterMirror(metrics.lockExpirations);
  metrics.onCollect(() => expirations.update(locks.expirations));
  const started = startGateway(
    options,
    {
      directory: registryDirectory(registry, options.directories),
      dispatcher,
      locks,
      metrics,
      checks: {
        repositories: () => {
          if (!registry.firstScanFinished || writable === undefined) {
            return Promise.resolve('still reading the repositories');
          }
          const served = registry.list().filter((repo) => repo.kind === 'repository').length;
          return Promise.resolve(served > 0 ? { note: `${served} served` } : '0 served');
        },
        writable: () =>
          writable === undefined
            ? Promise.resolve('not checked yet: still reading the repositories')
            : writable.problem(),
      },
      close: async (graceMs) => {
        stopped = true;
        registry.close();
        const grace = new Deadline(graceMs);
        await boundedStep('leave the locks to their retention files', () => locks.close(), {
          withinMs: grace.remaining,
          log: logFunction(log, 'warn'),
        });
        // Sessions still in use when the grace is over are closed; then the journals are
        // committed, within SHUTDOWN_CLEANUP_MS after the grace at the latest.
        await executor.close(grace.remaining, logFunction(log, 'warn'));
      },
      shutdown: gatewayShutdown(log),
    },
    env,
    log,
  );
  let gateway: Awaited<typeof started>;
  try {
    gateway = await started;
  } catch (error) {
    stopped = true;
    registry.close();
    throw error;
  }
  return { ...gateway, pool, locks };
}

/**
 * The registry as the API looks repositories up: each with its location, and within the one a
 * path-addressed URL names (a location below a --directory root, or a --repo's absolute path
 * written without its leading '/').
 */
export function registryDirectory(
  registry: RepositoryRegistry,
  directories: readonly string[],
): RepositoryDirectory {
  const withLocation = <T extends { path: string }>(found: T | undefined) =>
    found === undefined
      ? undefined
      : { ...found, location: repositoryLocation(found.path, directories) };
  const lookup = async (uuid: string, within: string | undefined) => {
    if (within === undefined) {
      return withLocation(await registry.lookup(uuid));
    }
    const candidates = [...directories.map((root) => join(root, within)), `/${within}`];
    for (const candidate of candidates) {
      if (repositoryLocation(candidate, directories).replace(/^\//, '') !== within) {
        continue;
      }
      const found = await registry.lookupAt(candidate, uuid);
      if (found !== undefined) {
        return withLocation(found);
      }
    }
    return undefined;
  };
  return {
    lookup: async (uuid, within) => {
      const found = await lookup(uuid, within);
      if (found === undefined && !registry.firstScanFinished) {
        // Perhaps a repository not reached yet: never 404 before the first scan is done.
        throw unavailable('the server is still reading its repositories', 2);
      }
      return found;
    },
  };
}

/**
 * Checks that the served repositories are writable, warns at start about each one that is not
 * (with what to do), and returns the check for /readyz.
 */
export async function checkWritable(
  registry: { list(): { path: string; kind: string }[] },
  log: Logger,
): Promise<WritableCheck> {
  const check = new WritableCheck(() =>
    registry
      .list()
      .filter((repo) => repo.kind === 'repository')
      .map((repo) => repo.path),
  );
  for (const dir of await check.unwritable()) {
    log.warn(unwritableAdvice(dir), { path: dir.path });
  }
  return check;
}
