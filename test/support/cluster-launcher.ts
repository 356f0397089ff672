/**
 * Cluster mode as one process (the `cluster` server of servers.ts: a benchmark column, and a
 * server of the e2e tests): starts a private redis-server (redis.ts), one proxy worker, one
 * lock-service and one gateway serving REPO, all in this process's group (so the benchmark's
 * process-tree sampling and its group kill cover every service), opens the gateway's port only
 * once the worker is ready, and stops them all on SIGTERM / SIGINT, or when one of them dies.
 *
 * With `--sentinel`, Redis is a Sentinel set instead (sentinel.ts: a primary, a replica and three
 * sentinels, all private to this launcher) and the apps get its `redis+sentinel://` URL, as a
 * deployment without a single point of failure would.
 *
 *   node cluster-launcher.js --port N (--repo PATH | --directory DIR) [--sentinel] [options...]
 *
 * CLUSTER_LAUNCHER_WAIT_MS (default 60000) bounds the wait for each app to be ready.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { httpStatus } from './http';
import { PrivateRedis } from './redis';
import { SentinelSet } from './sentinel';
import { projectBin } from './servers';
import { delay, freePort } from './util';

const children: ChildProcess[] = [];
let redis: PrivateRedis | SentinelSet | undefined;
let stopping = false;

function start(file: string, args: string[], name: string): ChildProcess {
  const child = spawn(file, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  children.push(child);
  child.once('exit', (code, signal) => {
    if (!stopping) {
      process.stderr.write(`cluster-launcher: ${name} exited (${signal ?? code}); stopping\n`);
      void stop(1);
    }
  });
  return child;
}

async function stop(code: number): Promise<void> {
  if (stopping) {
    return;
  }
  stopping = true;
  // Gateway first, then workers, then Redis: each drains what the previous one still sends.
  for (const child of [...children].reverse()) {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 12_000);
      await exited;
      clearTimeout(timer);
    }
  }
  await (redis instanceof SentinelSet ? redis.close() : redis?.stop());
  process.exit(code);
}

async function waitFor(what: string, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + Number(process.env.CLUSTER_LAUNCHER_WAIT_MS ?? 60_000);
  while (!(await probe())) {
    if (stopping || Date.now() > deadline) {
      throw new Error(`cluster-launcher: ${what} not ready`);
    }
    await delay(100);
  }
}

/**
 * A private redis-server, or a Sentinel set, in this process's group; resolves the URL the apps
 * are given. A redis-server that dies stops the cluster.
 */
async function startRedis(sentinel: boolean): Promise<string> {
  if (sentinel) {
    const set = await SentinelSet.start({ group: 'parent', echo: process.stdout });
    redis = set;
    return set.url;
  }
  const server = await PrivateRedis.start({ group: 'parent', echo: process.stdout });
  redis = server;
  void server.exited().then(() => {
    if (!stopping) {
      process.stderr.write('cluster-launcher: redis-server exited; stopping\n');
      void stop(1);
    }
  });
  return server.url;
}

async function main(argv: string[]): Promise<void> {
  const sentinel = argv.includes('--sentinel');
  argv = argv.filter((arg) => arg !== '--sentinel');
  const portIndex = argv.indexOf('--port');
  const port = argv[portIndex + 1];
  // --repo PATH or --directory DIR: what the worker and the lock-service serve.
  let repoIndex = argv.indexOf('--repo');
  if (repoIndex < 0) {
    repoIndex = argv.indexOf('--directory');
  }
  const served = argv[repoIndex];
  const repo = argv[repoIndex + 1];
  if (
    portIndex < 0 ||
    repoIndex < 0 ||
    port === undefined ||
    served === undefined ||
    repo === undefined
  ) {
    throw new Error(
      'usage: cluster-launcher --port N (--repo PATH | --directory DIR) [--sentinel] [options...]',
    );
  }
  const rest = argv.filter(
    (_, i) => ![portIndex, portIndex + 1, repoIndex, repoIndex + 1].includes(i),
  );
  const bin = projectBin();
  const dataPort = await freePort();
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => void stop(0));
  }
  const redisUrl = await startRedis(sentinel);
  // The bench counts Redis clients with it (scale.ts).
  process.stderr.write(`cluster-launcher: redis ${redisUrl}\n`);
  start(
    process.execPath,
    [
      bin,
      'proxy-worker',
      '--redis',
      redisUrl,
      served,
      repo,
      '--bind',
      '127.0.0.1',
      '--data-port',
      String(dataPort),
      ...rest,
    ],
    'proxy-worker',
  );
  await waitFor('proxy-worker', async () => (await httpStatus(dataPort, '/readyz')) === 200);
  const healthPort = await freePort();
  start(
    process.execPath,
    [
      bin,
      'lock-service',
      '--redis',
      redisUrl,
      served,
      repo,
      '--bind',
      '127.0.0.1',
      '--health-port',
      String(healthPort),
      ...rest,
    ],
    'lock-service',
  );
  await waitFor('lock-service', async () => (await httpStatus(healthPort, '/readyz')) === 200);
  start(
    process.execPath,
    [bin, 'gateway', '--redis', redisUrl, '--bind', '127.0.0.1', '--port', port, ...rest],
    'gateway',
  );
}

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  void stop(1);
});
