/**
 * Cluster mode as one process (a benchmark column, and the `cluster` server of the e2e tests):
 * starts a private redis-server, one proxy worker, one lock-service and one gateway serving REPO, all in this process's group (so the benchmark's process-tree sampling and
 * its group kill cover every service), opens the gateway's port only once the worker is ready,
 * and stops them all on SIGTERM / SIGINT, or when one of them dies.
 *
 * With `--sentinel`, Redis is a Sentinel set instead (a primary, a replica and three sentinels,
 * `redis-server --sentinel`, all private to this launcher) and the apps get its
 * `redis+sentinel://` URL, as a deployment without a single point of failure would.
 *
 *   node cluster-launcher.js --port N (--repo PATH | --directory DIR) [--sentinel] [options...]
 *
 * CLUSTER_LAUNCHER_WAIT_MS (default 60000) bounds the wait for each service to be ready.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { delay, freePort, projectRoot } from '../../test/support/util';

const children: ChildProcess[] = [];
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
  process.exit(code);
}

function status(port: number, urlPath: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.once('error', () => resolve(0));
  });
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

/** Whether something listens on 127.0.0.1:`port`. */
function listening(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.end();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Sends one inline command to 127.0.0.1:`port`; resolves the first reply line. */
function ask(port: number, command: string): Promise<string> {
  return new Promise<string>((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(`${command}\r\n`));
    let reply = '';
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString('utf8');
      if (reply.includes('\r\n')) {
        socket.end();
        resolve(reply);
      }
    });
    socket.once('error', () => resolve(''));
  });
}

const REDIS_ARGS = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];

/** A private redis-server; resolves its redis:// URL once it accepts connections. */
async function startRedis(): Promise<string> {
  const port = await freePort();
  start('redis-server', ['--port', String(port), ...REDIS_ARGS], 'redis-server');
  await waitFor('redis-server', () => listening(port));
  return `redis://127.0.0.1:${port}`;
}

/**
 * A private Sentinel set: primary, replica (in sync), three sentinels that know both; resolves
 * its redis+sentinel:// URL.
 */
async function startSentinelSet(): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'annex-p2phttp-bench-sentinel-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const sync = [
    '--repl-diskless-sync',
    'yes',
    '--repl-diskless-sync-delay',
    '0',
    '--repl-diskless-load',
    'swapdb',
  ];
  const primary = await freePort();
  start('redis-server', ['--port', String(primary), ...REDIS_ARGS, ...sync], 'redis primary');
  await waitFor('redis primary', () => listening(primary));
  const replica = await freePort();
  start(
    'redis-server',
    [
      '--port',
      String(replica),
      ...REDIS_ARGS,
      ...sync,
      '--replicaof',
      '127.0.0.1',
      String(primary),
    ],
    'redis replica',
  );
  await waitFor('redis replica in sync', async () =>
    (await ask(primary, 'INFO replication')).includes('state=online'),
  );
  const sentinels: number[] = [];
  for (let i = 0; i < 3; i += 1) {
    const port = await freePort();
    const config = path.join(dir, `sentinel-${port}.conf`);
    writeFileSync(
      config,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `sentinel monitor bench 127.0.0.1 ${primary} 2`,
        'sentinel down-after-milliseconds bench 1000',
        'sentinel failover-timeout bench 2000',
        '',
      ].join('\n'),
    );
    start('redis-server', [config, '--sentinel'], `sentinel ${port}`);
    sentinels.push(port);
  }
  await waitFor('sentinels that know each other and the replica', async () => {
    for (const port of sentinels) {
      const info = await ask(port, 'INFO sentinel');
      if (!/master0:.*status=ok,.*slaves=1,sentinels=3/.test(info)) {
        return false;
      }
    }
    return true;
  });
  return `redis+sentinel://${sentinels.map((p) => `127.0.0.1:${p}`).join(',')}/bench`;
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
  const bin = path.join(projectRoot(), 'bin', 'annex-p2phttp.js');
  const dataPort = await freePort();
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => void stop(0));
  }
  const redisUrl = sentinel ? await startSentinelSet() : await startRedis();
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
  await waitFor('proxy-worker', async () => (await status(dataPort, '/readyz')) === 200);
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
  await waitFor('lock-service', async () => (await status(healthPort, '/readyz')) === 200);
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
