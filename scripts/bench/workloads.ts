/**
 * The benchmark workloads. Each one runs against one freshly started server serving a fresh copy
 * of the template repository, reports progress to the watchdog, stops its clients when the
 * watchdog's signal fires, and returns its metrics (or throws WorkloadFailure for a wrong answer).
 */
import autocannon from 'autocannon';
import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import * as path from 'node:path';
import { download, requestJson } from '../../test/support/http';
import { runCommand } from '../../test/support/processes';
import {
  copyRepo,
  pointAt,
  type Repo,
  type Sandbox,
  type ServedRepo,
} from '../../test/support/repos';
import type { Role, RunningServer } from '../../test/support/servers';
import { formatBytes, formatNumber, GiB, KiB, MiB } from '../../test/support/util';
import type { Progress } from './watchdog';

/** Sizes and durations of one benchmark run. */
export interface Profile {
  name: 'full' | 'quick';
  rounds: number;
  stallMs: number;
  checkpresentSeconds: number;
  bigGetSize: number;
  parallelGets: number;
  /** Concurrent GETs of the memory workload, and the bytes each one reads (the big key's tail). */
  manyGets: number;
  manyGetBytes: number;
  /** Clients reading random 1 MiB ranges of the big key at once, and the ranges each reads. */
  rangeClients: number;
  rangeReads: number;
  smallGetCount: number;
  smallGetSize: number;
  upSmallCount: number;
  upSmallSize: number;
  upBigSize: number;
  jobs: number;
}

export const FULL: Profile = {
  name: 'full',
  rounds: 3,
  stallMs: 60_000,
  checkpresentSeconds: 10,
  bigGetSize: GiB,
  parallelGets: 4,
  manyGets: 64,
  manyGetBytes: 128 * MiB,
  rangeClients: 16,
  rangeReads: 64,
  smallGetCount: 500,
  smallGetSize: 64 * KiB,
  upSmallCount: 200,
  upSmallSize: 256 * KiB,
  upBigSize: 512 * MiB,
  jobs: 8,
};

export const QUICK: Profile = {
  name: 'quick',
  rounds: 1,
  stallMs: 30_000,
  checkpresentSeconds: 3,
  bigGetSize: 128 * MiB,
  parallelGets: 4,
  manyGets: 64,
  manyGetBytes: 16 * MiB,
  rangeClients: 16,
  rangeReads: 16,
  smallGetCount: 100,
  smallGetSize: 64 * KiB,
  upSmallCount: 50,
  upSmallSize: 256 * KiB,
  upBigSize: 64 * MiB,
  jobs: 8,
};

/** Worktree paths of the template repositories (see bench.ts `prepareData`). */
export const BIG_FILE = 'big/big.bin';
export const SMALL_DIR = 'small';
export const UP_SMALL_DIR = 'up-small';
export const UP_BIG_DIR = 'up-big';

/** Everything built once per benchmark and shared by every run. */
export interface BenchData {
  sandbox: Sandbox;
  profile: Profile;
  /** the served template; every run serves a copy */
  served: ServedRepo;
  bigKey: string;
  /** the big file's object in the template (what the ceiling server sends) */
  bigObject: string;
  checkKey: string;
  /** a clone of the template configured for HTTP except its annexUrl */
  getterTemplate: string;
  /** the same, with the upload files added (content present only there) */
  uploaderTemplate: string;
}

export interface RunContext {
  data: BenchData;
  server: RunningServer;
  /** scratch directory of this run (removed afterwards) */
  workDir: string;
  progress: Progress;
  signal: AbortSignal;
}

export interface MetricSpec {
  key: string;
  label: string;
  better: 'higher' | 'lower';
}

export interface Workload {
  id: string;
  title(profile: Profile): string;
  metrics: readonly MetricSpec[];
  /** which kinds of server it runs against */
  roles: readonly Role[];
  /** a tighter stall bound than the profile's, if any */
  stallMs?(profile: Profile): number;
  /** run first, unmeasured (e.g. to let a pool fill as it would on a server in use) */
  warmup?(context: RunContext): Promise<void>;
  run(context: RunContext): Promise<Record<string, number>>;
}

/** The server answered, but wrongly (not a stall). */
export class WorkloadFailure extends Error {
  override name = 'WorkloadFailure';
}

const P2P: readonly Role[] = ['reference', 'project'];
const WITH_CEILING: readonly Role[] = ['reference', 'project', 'ceiling'];
const MB = 1e6;

// ---------------------------------------------------------------------------------------------

/** POSTs `target` from `connections` connections for `seconds` with autocannon. */
function cannon(
  { server, progress, signal }: RunContext,
  target: string,
  connections: number,
  seconds: number,
): Promise<autocannon.Result> {
  let answered = 0;
  return new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: `http://127.0.0.1:${server.port}${target}`,
        method: 'POST',
        connections,
        duration: seconds,
        timeout: 10,
        headers: { 'content-length': '0', accept: 'application/json' },
      },
      (error: unknown, result: autocannon.Result) => {
        signal.removeEventListener('abort', stop);
        if (error !== null && error !== undefined) {
          reject(error instanceof Error ? error : new Error(JSON.stringify(error)));
        } else {
          resolve(result);
        }
      },
    );
    const stop = (): void => instance.stop();
    signal.addEventListener('abort', stop, { once: true });
    instance.on('response', () => {
      answered += 1;
      progress.tick();
      if (answered % 256 === 1) {
        progress.describe(`checkpresent ×${connections}: ${formatNumber(answered)} answered`);
      }
    });
  });
}

function checkpresentTarget({ data, server }: RunContext): string {
  return `/git-annex/${server.repo.uuid}/v4/checkpresent?key=${encodeURIComponent(data.checkKey)}&clientuuid=${randomUUID()}`;
}

function checkpresent(connections: number): Workload {
  return {
    id: `checkpresent-${connections}`,
    title: (p) => `checkpresent, ${connections} connections, ${p.checkpresentSeconds} s`,
    metrics: [
      { key: 'reqPerSec', label: 'req/s', better: 'higher' },
      { key: 'p99Ms', label: 'p99 ms', better: 'lower' },
    ],
    roles: P2P,
    // a run lasts seconds: no answer for 10 s means it is stuck
    stallMs: (p) => Math.min(p.stallMs, 10_000),
    async warmup(context) {
      const target = checkpresentTarget(context);
      const probe = await requestJson<{ present?: boolean }>(context.server.port, target, {
        timeoutMs: 10_000,
      });
      if (probe.present !== true) {
        throw new WorkloadFailure(
          `checkpresent of a present key answered ${JSON.stringify(probe)}`,
        );
      }
      await cannon(context, target, connections, 1);
    },
    async run(context) {
      const seconds = context.data.profile.checkpresentSeconds;
      context.progress.describe(`checkpresent ×${connections}: waiting for the first answer`);
      const result = await cannon(context, checkpresentTarget(context), connections, seconds);
      const failed = result.non2xx + result.errors;
      if (result['2xx'] === 0 || failed > result['2xx'] / 100) {
        throw new WorkloadFailure(
          `${result['2xx']} answers 2xx, ${result.non2xx} other, ${result.errors} errors (${result.timeouts} timeouts)`,
        );
      }
      return {
        reqPerSec: result.requests.average,
        p99Ms: result.latency.p99,
        requests: result.requests.total,
        errors: failed,
      };
    },
  };
}

/**
 * `parallel` GETs of the big key at once. With `tail`, each reads only the last
 * `profile.manyGetBytes` of it (a GET with an offset): the many-clients memory workload.
 */
function bigGet(parallel: number, tail = false): Workload {
  const many = tail ? '-tail' : '';
  return {
    id: parallel === 1 ? 'get-big' : `get-big-x${parallel}${many}`,
    title: (p) =>
      parallel === 1
        ? `GET of one ${formatBytes(p.bigGetSize)} key`
        : tail
          ? `${parallel} parallel GETs of the last ${formatBytes(p.manyGetBytes)} of a key`
          : `GET of one ${formatBytes(p.bigGetSize)} key, ${parallel} in parallel`,
    metrics: [{ key: 'mbPerSec', label: 'MB/s', better: 'higher' }],
    roles: tail ? P2P : WITH_CEILING,
    async run({ data, server, progress, signal }) {
      const each = tail
        ? Math.min(data.profile.manyGetBytes, data.profile.bigGetSize)
        : data.profile.bigGetSize;
      const offset = data.profile.bigGetSize - each;
      const target = `/git-annex/${server.repo.uuid}/v4/key/${encodeURIComponent(data.bigKey)}?clientuuid=${randomUUID()}&associatedfile=&offset=${offset}`;
      let received = 0;
      let ended = 0;
      const total = parallel * each;
      const doing = (): string =>
        `GET ×${parallel}: ${formatNumber(received / MB)} of ${formatNumber(total / MB)} MB ` +
        `received, ${ended} of ${parallel} responses ended`;
      progress.describe(`GET ×${parallel}: waiting for the first byte`);
      // One abort listener per GET on the run's signal.
      setMaxListeners(parallel + 10, signal);
      const started = Date.now();
      const results = await Promise.all(
        Array.from({ length: parallel }, async () => {
          const result = await download(server.port, target, {
            signal,
            onBytes: (count) => {
              received += count;
              progress.tick(doing());
            },
          });
          ended += 1;
          progress.tick(doing());
          return result;
        }),
      );
      const elapsed = (Date.now() - started) / 1000;
      for (const result of results) {
        if (result.status !== 200 || result.bytes !== each || result.announced !== each) {
          throw new WorkloadFailure(
            `GET answered ${result.status}, announced ${String(result.announced)}, sent ${result.bytes} of ${each} bytes`,
          );
        }
      }
      return { mbPerSec: received / MB / elapsed, seconds: elapsed };
    },
  };
}

const RANGE = MiB;
/** This server and the ceiling: git annex p2phttp ignores Range and would send whole keys. */
const RANGES: readonly Role[] = ['project', 'ceiling'];

/**
 * `rangeClients` clients at once, each reading `rangeReads` random 1 MiB ranges of the big key
 * one after the other through the unversioned key route, as a FUSE layer or fsspec reads a large
 * file over HTTP. The offsets are the same for every server (a fixed sequence).
 */
const rangedReads: Workload = {
  id: 'get-ranges',
  title: (p) =>
    `${p.rangeClients} clients reading random ${formatBytes(RANGE)} ranges of a ${formatBytes(p.bigGetSize)} key`,
  metrics: [
    { key: 'mbPerSec', label: 'MB/s', better: 'higher' },
    { key: 'p99Ms', label: 'p99 ms', better: 'lower' },
  ],
  roles: RANGES,
  async run({ data, server, progress, signal }) {
    const { rangeClients, rangeReads, bigGetSize } = data.profile;
    const target = `/git-annex/${server.repo.uuid}/key/${encodeURIComponent(data.bigKey)}`;
    let state = 2_463_534_242;
    const offsets = Array.from({ length: rangeClients * rangeReads }, () => {
      state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
      return state % (bigGetSize - RANGE + 1);
    });
    const latencies: number[] = [];
    let received = 0;
    setMaxListeners(rangeClients + 10, signal);
    progress.describe(`ranges ×${rangeClients}: waiting for the first byte`);
    const started = Date.now();
    await Promise.all(
      Array.from({ length: rangeClients }, async (_, client) => {
        for (let i = 0; i < rangeReads; i += 1) {
          const first = offsets[client * rangeReads + i]!;
          const last = first + RANGE - 1;
          const result = await download(server.port, target, {
            signal,
            headers: { range: `bytes=${first}-${last}` },
            onBytes: (count) => {
              received += count;
              progress.tick();
            },
          });
          const expected = `bytes ${first}-${last}/${bigGetSize}`;
          if (result.status !== 206 || result.bytes !== RANGE || result.contentRange !== expected) {
            throw new WorkloadFailure(
              `range ${first}-${last} answered ${result.status}, ${String(result.contentRange)}, ${result.bytes} bytes`,
            );
          }
          latencies.push(result.elapsedMs);
          progress.tick(
            `ranges ×${rangeClients}: ${latencies.length} of ${offsets.length} ranges read`,
          );
        }
      }),
    );
    const elapsed = (Date.now() - started) / 1000;
    latencies.sort((a, b) => a - b);
    const p99 = latencies[Math.min(latencies.length - 1, Math.ceil(latencies.length * 0.99) - 1)];
    return { mbPerSec: received / MB / elapsed, p99Ms: p99 ?? 0, seconds: elapsed };
  },
};

/** A fresh copy of a client template, pointed at the server. */
async function clientFor(
  template: string,
  { data, server, workDir }: RunContext,
  name: string,
): Promise<Repo> {
  const dir = path.join(workDir, name);
  await copyRepo(template, dir);
  const repo = { dir, env: data.sandbox.env() };
  await pointAt(repo, server.port);
  return repo;
}

interface AnnexJsonRun {
  done: number;
  failed: number;
  bytes: number;
  elapsedMs: number;
}

/**
 * Runs `git-annex <args> --json --json-progress` in the client; every progress line is progress
 * for the watchdog. Throws WorkloadFailure unless it exits 0 with `expected` files done.
 */
async function annexJson(
  client: Repo,
  args: readonly string[],
  expected: number,
  { progress, signal }: RunContext,
  what: string,
): Promise<AnnexJsonRun> {
  let done = 0;
  let failed = 0;
  let bytes = 0;
  let inFlight = 0;
  const result = await runCommand('git-annex', [...args, '--json', '--json-progress'], {
    cwd: client.dir,
    env: client.env,
    timeoutMs: 3_600_000,
    signal,
    keepStdout: 64 * 1024,
    onLine: (line) => {
      if (line.trim() === '') {
        return;
      }
      const record = JSON.parse(line) as {
        success?: boolean;
        'byte-progress'?: number;
        key?: string;
      };
      if (record.success === true) {
        done += 1;
        bytes += keySize(record.key);
      } else if (record.success === false) {
        failed += 1;
      } else {
        inFlight = record['byte-progress'] ?? inFlight;
      }
      progress.tick(
        `${what}: ${done}/${expected} files done` +
          (expected === 1 ? `, ${formatNumber(inFlight / MB)} MB of the file` : ''),
      );
    },
  });
  if (result.aborted) {
    throw new WorkloadFailure(`${what}: aborted`);
  }
  if (result.code !== 0 || done !== expected) {
    throw new WorkloadFailure(
      `${what}: exit ${String(result.code ?? result.signal)}, ${done}/${expected} done, ${failed} failed\n${result.stderr.trim().slice(-1500)}`,
    );
  }
  return { done, failed, bytes, elapsedMs: result.elapsedMs };
}

/** The size field of a key (`SHA256E-s123--…`). */
function keySize(key: string | undefined): number {
  const match = /^[^-]+-s(\d+)/.exec(key ?? '');
  return match === null ? 0 : Number(match[1]);
}

const annexGet: Workload = {
  id: 'annex-get-many',
  title: (p) =>
    `git annex get -J${p.jobs} of ${p.smallGetCount} × ${formatBytes(p.smallGetSize)} files`,
  metrics: [{ key: 'filesPerSec', label: 'files/s', better: 'higher' }],
  roles: P2P,
  async run(context) {
    const { profile } = context.data;
    const client = await clientFor(context.data.getterTemplate, context, 'getter');
    context.progress.tick(`git annex get -J${profile.jobs}: starting`);
    const run = await annexJson(
      client,
      ['get', `-J${profile.jobs}`, SMALL_DIR],
      profile.smallGetCount,
      context,
      `git annex get -J${profile.jobs}`,
    );
    return { filesPerSec: run.done / (run.elapsedMs / 1000), seconds: run.elapsedMs / 1000 };
  },
};

function annexCopy(which: 'small' | 'big'): Workload {
  const dir = which === 'small' ? UP_SMALL_DIR : UP_BIG_DIR;
  return {
    id: which === 'small' ? 'copy-to-many' : 'copy-to-big',
    title: (p) =>
      which === 'small'
        ? `git annex copy --to origin -J${p.jobs} of ${p.upSmallCount} × ${formatBytes(p.upSmallSize)} files`
        : `git annex copy --to origin -J${p.jobs} of one ${formatBytes(p.upBigSize)} file`,
    metrics: [{ key: 'mbPerSec', label: 'MB/s', better: 'higher' }],
    roles: P2P,
    async run(context) {
      const { profile } = context.data;
      const count = which === 'small' ? profile.upSmallCount : 1;
      const client = await clientFor(context.data.uploaderTemplate, context, 'uploader');
      context.progress.tick(`git annex copy --to origin: starting`);
      const run = await annexJson(
        client,
        ['copy', '--to', 'origin', `-J${profile.jobs}`, dir],
        count,
        context,
        `git annex copy --to origin -J${profile.jobs}`,
      );
      return {
        mbPerSec: run.bytes / MB / (run.elapsedMs / 1000),
        filesPerSec: run.done / (run.elapsedMs / 1000),
        seconds: run.elapsedMs / 1000,
      };
    },
  };
}

/** Every workload, in the order they run. */
export const WORKLOADS: readonly Workload[] = [
  checkpresent(8),
  checkpresent(64),
  bigGet(1),
  bigGet(FULL.parallelGets),
  bigGet(FULL.manyGets, true),
  rangedReads,
  annexGet,
  annexCopy('small'),
  annexCopy('big'),
];
