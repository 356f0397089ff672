/**
 * `npm run bench -- --only repos [--repos 10,1000,10000] [--servers project,cluster,reference]`:
 * how the servers cope with many repositories below one `--directory`.
 *
 * N repositories are made cheaply: one small template repository (one annexed file), copied
 * 100 at a time with `cp -a`, then each copy's `annex.uuid` rewritten in its `.git/config`. For
 * each N and each server (this project's embedded server, cluster mode, `git annex p2phttp
 * --directory` up to --reference-max repositories) it reports:
 *   - time from launch to the first answer (checkpresent of one repository) and until every
 *     repository answered once (each retried until it does);
 *   - RSS and open fds summed over the server's process tree (Redis included for cluster mode);
 *   - checkpresent req/s and p99 over random repositories, and the same on a 10-repository
 *     server of the same kind measured right after (same minute);
 *   - new-repository latency: a copy with a fresh uuid appears, polled until served;
 *   - known-repository req/s while another client asks for random unknown uuids.
 *
 *   --repos N,…          repository counts (default 10,1000)
 *   --servers ID,…       project, cluster, reference (default all three)
 *   --reference-max N    largest N the reference runs at (default 1000)
 *   --seconds S          length of each throughput measurement (default 8)
 *   --all-answered-max S give up waiting for every repository after S s (default 600)
 *   --keep               keep the temp dir
 */
import autocannon from 'autocannon';
import Redis from 'ioredis';
import { randomUUID } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { request } from '../../test/support/http';
import { processTree } from '../../test/support/process-tree';
import {
  runChecked,
  spawnTracked,
  stopProcess,
  installExitHandlers,
} from '../../test/support/processes';
import {
  keyOf,
  makeServedRepo,
  removeTree,
  Sandbox,
  type ServedRepo,
} from '../../test/support/repos';
import { clusterLauncherPath, hasRedisServer, projectBin } from '../../test/support/servers';
import { delay, formatBytes, freePort } from '../../test/support/util';

interface ScaleOptions {
  counts: number[];
  servers: string[];
  referenceMax: number;
  seconds: number;
  allAnsweredMaxMs: number;
  keep: boolean;
}

export function parseScaleArgs(argv: readonly string[]): ScaleOptions {
  const options: ScaleOptions = {
    counts: [10, 1000],
    servers: ['project', 'cluster', 'reference'],
    referenceMax: 1000,
    seconds: 8,
    allAnsweredMaxMs: 600_000,
    keep: false,
  };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const value = (): string => {
      const next = argv[++i];
      if (next === undefined) {
        throw new Error(`${String(arg)} needs a value`);
      }
      return next;
    };
    switch (arg) {
      case '--only':
        value();
        break;
      case '--repos':
        options.counts = value().split(',').map(Number);
        break;
      case '--servers':
        options.servers = value().split(',');
        break;
      case '--reference-max':
        options.referenceMax = Number(value());
        break;
      case '--seconds':
        options.seconds = Number(value());
        break;
      case '--all-answered-max':
        options.allAnsweredMaxMs = Number(value()) * 1000;
        break;
      case '--keep':
        options.keep = true;
        break;
      default:
        throw new Error(`unknown option ${String(arg)} (see the top of scripts/bench/scale.ts)`);
    }
  }
  if (options.counts.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new Error('--repos: positive integers, comma-separated');
  }
  return options;
}

interface Template {
  dir: string;
  key: string;
}

interface RepoSet {
  root: string;
  uuids: string[];
}

const PER_BUCKET = 100;

/** The template: one annexed file, hook samples removed (they are most of a copy's files). */
async function makeTemplate(sandbox: Sandbox): Promise<Template> {
  const repo: ServedRepo = await makeServedRepo(sandbox, sandbox.path('template', 'r'), [
    { path: 'data/one.bin', size: 1024 },
  ]);
  await rm(path.join(repo.dir, '.git', 'hooks'), { recursive: true, force: true });
  await mkdir(path.join(repo.dir, '.git', 'hooks'));
  return { dir: repo.dir, key: keyOf(repo, 'data/one.bin') };
}

/** Sets annex.uuid in a repository's .git/config (the template's line is replaced). */
async function setUuid(repoDir: string, uuid: string): Promise<void> {
  const file = path.join(repoDir, '.git', 'config');
  const text = await readFile(file, 'utf8');
  const next = text.replace(/^(\s*uuid\s*=\s*).*$/m, `$1${uuid}`);
  if (next === text) {
    throw new Error(`${file}: no annex.uuid line`);
  }
  await writeFile(file, next);
}

/**
 * `count` copies of the template directly below `root` (`git annex p2phttp --directory` serves
 * immediate subdirectories only), each with a fresh uuid: made 100 at a time with `cp -a` in a
 * staging directory, then renamed into place.
 */
async function makeRepos(
  template: Template,
  root: string,
  count: number,
  say: (line: string) => void,
): Promise<RepoSet> {
  await mkdir(root, { recursive: true });
  const staging = `${root}.staging`;
  const buckets = Math.ceil(count / PER_BUCKET);
  const bucket = (b: number): string => path.join(staging, `b${String(b).padStart(4, '0')}`);
  const member = (i: number): string => path.join(bucket(0), `r${String(i).padStart(2, '0')}`);
  await mkdir(bucket(0), { recursive: true });
  for (let i = 0; i < Math.min(PER_BUCKET, count); i += 1) {
    await runChecked('cp', ['-a', template.dir, member(i)], {
      cwd: '/',
      env: process.env,
      timeoutMs: 60_000,
    });
  }
  for (let b = 1; b < buckets; b += 1) {
    if (b % 20 === 0) {
      say(`copies: ${b * PER_BUCKET} of ${count}`);
    }
    await runChecked('cp', ['-a', bucket(0), bucket(b)], {
      cwd: '/',
      env: process.env,
      timeoutMs: 300_000,
    });
  }
  const uuids: string[] = [];
  for (let i = 0; i < count; i += 1) {
    const from = path.join(
      bucket(Math.floor(i / PER_BUCKET)),
      `r${String(i % PER_BUCKET).padStart(2, '0')}`,
    );
    const dir = repoDir(root, i);
    await rename(from, dir);
    const uuid = randomUUID();
    await setUuid(dir, uuid);
    uuids.push(uuid);
  }
  await removeTree(staging);
  return { root, uuids };
}

function repoDir(root: string, i: number): string {
  return path.join(root, `r${String(i).padStart(6, '0')}`);
}

type Kind = 'project' | 'cluster' | 'reference';

interface Launched {
  kind: Kind;
  port: number;
  startedAt: number;
  child: ReturnType<typeof spawnTracked>;
  output: () => string;
  /** Cluster mode: the launcher's Redis (it says where). */
  redisUrl: () => string | undefined;
}

async function launch(kind: Kind, root: string, sandbox: Sandbox): Promise<Launched> {
  const port = await freePort();
  const bin = projectBin();
  let file: string;
  let args: string[];
  switch (kind) {
    case 'project':
      file = process.execPath;
      args = [bin, 'serve', '--directory', root, '--bind', '127.0.0.1', '--port', String(port)];
      args.push('--wideopen');
      break;
    case 'cluster':
      file = process.execPath;
      args = [clusterLauncherPath(), '--port', String(port), '--directory', root, '--wideopen'];
      break;
    case 'reference':
      file = 'git-annex';
      args = ['p2phttp', '--directory', root, '--bind', '127.0.0.1', '--port', String(port)];
      args.push('--wideopen', '-J2');
      break;
  }
  const startedAt = performance.now();
  const child = spawnTracked(file, args, {
    cwd: root,
    env: sandbox.env({ CLUSTER_LAUNCHER_WAIT_MS: '3600000' }),
  });
  let out = '';
  let redisUrl: string | undefined;
  const collect = (chunk: Buffer): void => {
    out = (out + chunk.toString('utf8')).slice(-20_000);
    redisUrl ??= /cluster-launcher: redis (redis:\/\/\S+)/.exec(out)?.[1];
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  return { kind, port, startedAt, child, output: () => out, redisUrl: () => redisUrl };
}

/** The clients connected to the cluster's Redis (CLIENT LIST, without this one). */
async function redisClients(server: Launched): Promise<number | undefined> {
  const url = server.redisUrl();
  if (url === undefined) {
    return undefined;
  }
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  try {
    await redis.connect();
    const list = (await redis.client('LIST')) as string;
    return list.split('\n').filter((line) => line.startsWith('id=')).length - 1;
  } catch {
    return undefined;
  } finally {
    redis.disconnect();
  }
}

function checkpresentPath(uuid: string, key: string): string {
  return `/git-annex/${uuid}/v4/checkpresent?key=${encodeURIComponent(key)}&clientuuid=${CLIENT}`;
}

const CLIENT = randomUUID();

async function answers(port: number, uuid: string, key: string): Promise<number> {
  try {
    const res = await request(port, checkpresentPath(uuid, key), {
      headers: { accept: 'application/json' },
      timeoutMs: 30_000,
    });
    return res.status;
  } catch {
    return 0;
  }
}

async function untilAnswered(
  server: Launched,
  uuid: string,
  key: string,
  deadline: number,
): Promise<boolean> {
  while (performance.now() < deadline) {
    if (server.child.exitCode !== null || server.child.signalCode !== null) {
      return false;
    }
    if ((await answers(server.port, uuid, key)) === 200) {
      return true;
    }
    await delay(20);
  }
  return false;
}

interface Usage {
  rssBytes: number;
  fds: number;
  processes: number;
}

function usage(pid: number): Usage {
  let rssBytes = 0;
  let fds = 0;
  const tree = processTree(pid);
  for (const entry of tree) {
    rssBytes += entry.rssBytes;
    try {
      fds += readdirSync(`/proc/${entry.pid}/fd`).length;
    } catch {
      // gone
    }
  }
  return { rssBytes, fds, processes: tree.length };
}

interface Cannon {
  rps: number;
  p99: number;
  non2xx: number;
  errors: number;
}

function cannon(
  port: number,
  paths: () => string,
  connections: number,
  seconds: number,
): Promise<Cannon> {
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url: `http://127.0.0.1:${port}`,
        connections,
        duration: seconds,
        timeout: 10,
        requests: [
          {
            method: 'POST',
            headers: { 'content-length': '0', accept: 'application/json' },
            setupRequest: (req) => ({ ...req, path: paths() }),
          },
        ],
      },
      (error: unknown, result: autocannon.Result) => {
        if (error !== null && error !== undefined) {
          reject(error instanceof Error ? error : new Error(JSON.stringify(error)));
          return;
        }
        resolve({
          rps: result.requests.average,
          p99: result.latency.p99,
          non2xx: result.non2xx,
          errors: result.errors + result.timeouts,
        });
      },
    );
  });
}

interface Row {
  n: number;
  kind: Kind;
  firstAnswerS?: number;
  allAnsweredS?: number;
  unanswered?: number;
  rss?: number;
  fds?: number;
  processes?: number;
  redisClients?: number;
  rps?: number;
  p99?: number;
  rps10?: number;
  p9910?: number;
  newRepoMs?: number[];
  knownUnderFlood?: number;
  knownAlone?: number;
  floodRps?: number;
  note?: string;
}

async function measure(
  kind: Kind,
  set: RepoSet,
  small: RepoSet,
  template: Template,
  sandbox: Sandbox,
  options: ScaleOptions,
  say: (line: string) => void,
): Promise<Row> {
  const row: Row = { n: set.uuids.length, kind };
  const server = await launch(kind, set.root, sandbox);
  let smallServer: Launched | undefined;
  try {
    const key = template.key;
    const deadline = performance.now() + options.allAnsweredMaxMs;
    const first = set.uuids[0] as string;
    if (!(await untilAnswered(server, first, key, deadline))) {
      const exit = server.child.exitCode ?? server.child.signalCode;
      row.note = `no first answer (exit ${String(exit)}): ${server.output().slice(-500)}`;
      return row;
    }
    row.firstAnswerS = (performance.now() - server.startedAt) / 1000;
    say(`${kind} N=${row.n}: first answer after ${row.firstAnswerS.toFixed(1)} s`);
    let next = 0;
    let unanswered = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < set.uuids.length) {
          const uuid = set.uuids[next++] as string;
          if (!(await untilAnswered(server, uuid, key, deadline))) {
            unanswered += 1;
          }
        }
      }),
    );
    row.allAnsweredS = (performance.now() - server.startedAt) / 1000;
    row.unanswered = unanswered;
    say(`${kind} N=${row.n}: all answered after ${row.allAnsweredS.toFixed(1)} s`);
    const used = usage(server.child.pid ?? -1);
    row.rss = used.rssBytes;
    row.fds = used.fds;
    row.processes = used.processes;
    row.redisClients = await redisClients(server);

    const random = (s: RepoSet) => () =>
      checkpresentPath(s.uuids[Math.floor(Math.random() * s.uuids.length)] as string, key);
    const measured = await cannon(server.port, random(set), 8, options.seconds);
    row.rps = measured.rps;
    row.p99 = measured.p99;
    if (measured.non2xx + measured.errors > 0) {
      row.note = `${measured.non2xx} non-2xx, ${measured.errors} errors at N`;
    }
    smallServer = await launch(kind, small.root, sandbox);
    if (await untilAnswered(smallServer, small.uuids[0] as string, key, deadline)) {
      for (const uuid of small.uuids) {
        await untilAnswered(smallServer, uuid, key, deadline);
      }
      const base = await cannon(smallServer.port, random(small), 8, options.seconds);
      row.rps10 = base.rps;
      row.p9910 = base.p99;
    }
    await stopProcess(smallServer.child, { graceMs: 15_000 });
    smallServer = undefined;

    // New repositories: a copy with a fresh uuid, polled until served.
    row.newRepoMs = [];
    for (let i = 0; i < 3; i += 1) {
      const dir = path.join(set.root, `new-${kind}-${i}`);
      const staged = `${set.root}.new-${kind}-${i}`;
      const uuid = randomUUID();
      await runChecked('cp', ['-a', template.dir, staged], {
        cwd: '/',
        env: process.env,
        timeoutMs: 60_000,
      });
      await setUuid(staged, uuid);
      const started = performance.now();
      await rename(staged, dir);
      const limit = performance.now() + 120_000;
      if (await untilAnswered(server, uuid, key, limit)) {
        row.newRepoMs.push(performance.now() - started);
      } else {
        row.newRepoMs.push(Number.NaN);
      }
    }

    // Known repositories alone, then with a client asking for unknown uuids beside them.
    const alone = await cannon(server.port, random(set), 4, options.seconds);
    row.knownAlone = alone.rps;
    const unknown = () => checkpresentPath(randomUUID(), key);
    const [known, flood] = await Promise.all([
      cannon(server.port, random(set), 4, options.seconds),
      cannon(server.port, unknown, 4, options.seconds),
    ]);
    row.knownUnderFlood = known.rps;
    row.floodRps = flood.rps;
    return row;
  } finally {
    if (smallServer !== undefined) {
      await stopProcess(smallServer.child, { graceMs: 15_000 });
    }
    await stopProcess(server.child, { graceMs: 15_000 });
  }
}

function cell(value: number | undefined, digits = 0): string {
  return value === undefined || Number.isNaN(value) ? '—' : value.toFixed(digits);
}

export function renderScale(rows: readonly Row[]): string {
  const lines = [
    '| N | server | first answer s | all answered s | RSS | fds | procs | Redis clients | checkpresent req/s at N (p99 ms) | at N=10 (p99 ms) | new repo ms | known req/s alone → with unknown flood (flood req/s) |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.n} | ${r.kind} | ${cell(r.firstAnswerS, 1)} | ${cell(r.allAnsweredS, 1)}${
        r.unanswered ? ` (${r.unanswered} never)` : ''
      } | ${r.rss === undefined ? '—' : formatBytes(r.rss)} | ${cell(r.fds)} | ${cell(r.processes)} | ${cell(r.redisClients)} | ${cell(
        r.rps,
      )} (${cell(r.p99)}) | ${cell(r.rps10)} (${cell(r.p9910)}) | ${
        r.newRepoMs?.map((ms) => cell(ms)).join(', ') ?? '—'
      } | ${cell(r.knownAlone)} → ${cell(r.knownUnderFlood)} (${cell(r.floodRps)}) |${
        r.note ? ` ${r.note.replace(/\s+/g, ' ').slice(0, 300)}` : ''
      }`,
    );
  }
  return lines.join('\n');
}

export async function runScale(argv: readonly string[]): Promise<number> {
  const options = parseScaleArgs(argv);
  const say = (line: string): void => {
    process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
  };
  const kinds = options.servers.filter((s): s is Kind =>
    ['project', 'cluster', 'reference'].includes(s),
  );
  if (kinds.includes('cluster') && !hasRedisServer()) {
    say('redis-server not installed: no cluster column');
  }
  const sandbox = await Sandbox.create('scale');
  const cleanup = async (): Promise<void> => {
    if (!options.keep) {
      await removeTree(sandbox.root);
    }
  };
  installExitHandlers(cleanup);
  const rows: Row[] = [];
  try {
    say(`temp dir ${sandbox.root}`);
    const template = await makeTemplate(sandbox);
    const small = await makeRepos(template, sandbox.path('n10'), 10, say);
    for (const n of options.counts) {
      say(`making ${n} repositories`);
      const started = performance.now();
      const set = await makeRepos(template, sandbox.path(`n${n}`), n, say);
      say(`made ${n} repositories in ${((performance.now() - started) / 1000).toFixed(1)} s`);
      for (const kind of kinds) {
        if (kind === 'reference' && n > options.referenceMax) {
          continue;
        }
        if (kind === 'cluster' && !hasRedisServer()) {
          continue;
        }
        say(`${kind} N=${n}`);
        try {
          rows.push(await measure(kind, set, small, template, sandbox, options, say));
        } catch (error) {
          rows.push({ n, kind, note: `failed: ${String(error)}` });
        }
        process.stdout.write(`${renderScale(rows)}\n`);
      }
      await removeTree(set.root);
    }
    process.stdout.write(`\n${renderScale(rows)}\n`);
    return 0;
  } finally {
    await cleanup();
  }
}
