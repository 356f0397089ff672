/**
 * `npm run bench [-- OPTIONS]`: this project's embedded server against `git annex p2phttp` (-J2
 * and -J8) and a minimal Node static-file server (the ceiling, GET workloads only), on identical
 * fresh repositories, each workload on each server in turn for several rounds. Prints medians and
 * ratios and writes every run to a JSON file under .bench/. Runs the pool put-back
 * micro-benchmark (pool-micro.ts) first.
 *
 *   --quick            one short round with smaller sizes
 *   --rounds N         rounds (default 3; 1 with --quick)
 *   --only ID,…        only these workloads (ids: see the JSON file or WORKLOADS; `pool` is the
 *                      pool put-back micro-benchmark, which needs no server or repository)
 *   --servers ID,…     only these columns (ref-J2, ref-J8, project, cluster, ceiling,
 *                      cluster-sentinel)
 *   --sentinel         also the column cluster-sentinel: cluster mode behind a private Redis
 *                      Sentinel set (primary, replica, three sentinels)
 *   --stall-seconds N  a run with no progress for N s is reported as STALL (default 60; 30 quick)
 *   --reference        also run the stress waves (stress.ts) against `git annex p2phttp -J2`
 *   --keep             keep the temp dir
 *   --report FILE      only print the report of an earlier run's JSON file
 *   --only repos ...   many repositories below one --directory instead (options: scale.ts)
 */
import { readFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import * as path from 'node:path';
import { runChecked } from '../../test/support/processes';
import {
  annexShellsMentioning,
  processesInside,
  TreeSampler,
} from '../../test/support/process-tree';
import {
  addFiles,
  copyRepo,
  keyOf,
  makeClientClone,
  makeServedRepo,
  manyFiles,
  objectPath,
  removeTree,
  Sandbox,
  type ServedRepo,
} from '../../test/support/repos';
import {
  POOL_MICRO_FULL,
  POOL_MICRO_ID,
  POOL_MICRO_QUICK,
  renderPoolMicro,
  runPoolMicro,
  type PoolMicroResult,
} from './pool-micro';
import { renderReport, writeJson, type Column, type ReportInput, type RunRecord } from './report';
import { ceilingServer, startServer } from './servers';
import {
  clusterServer,
  hasRedisServer,
  projectServer,
  referenceServer,
  type RunningServer,
  type ServerSpec,
} from '../../test/support/servers';
import { runScale } from './scale';
import { renderStress, runStress, STRESS_FULL, STRESS_SHORT } from './stress';
import { errorMessage, projectRoot } from '../../test/support/util';
import { installExitHandlers } from '../../test/support/processes';
import { StallError, StatusLine, watch, type Progress } from './watchdog';
import {
  BIG_FILE,
  FULL,
  QUICK,
  SMALL_DIR,
  UP_BIG_DIR,
  UP_SMALL_DIR,
  WORKLOADS,
  WorkloadFailure,
  type BenchData,
  type Profile,
  type Workload,
} from './workloads';

interface Options {
  profile: Profile;
  only: string[] | undefined;
  servers: string[] | undefined;
  reference: boolean;
  sentinel: boolean;
  keep: boolean;
  report: string | undefined;
}

function parseArgs(argv: readonly string[]): Options {
  let profile: Profile = FULL;
  let rounds: number | undefined;
  let stallSeconds: number | undefined;
  let only: string[] | undefined;
  let servers: string[] | undefined;
  let reference = false;
  let sentinel = false;
  let keep = false;
  let report: string | undefined;
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
      case '--quick':
        profile = QUICK;
        break;
      case '--rounds':
        rounds = Number(value());
        break;
      case '--stall-seconds':
        stallSeconds = Number(value());
        break;
      case '--only':
        only = value().split(',');
        break;
      case '--servers':
        servers = value().split(',');
        break;
      case '--reference':
        reference = true;
        break;
      case '--keep':
        keep = true;
        break;
      case '--sentinel':
        sentinel = true;
        break;
      case '--report':
        report = value();
        break;
      default:
        throw new Error(`unknown option ${String(arg)} (see the top of scripts/bench/bench.ts)`);
    }
  }
  const ids = [POOL_MICRO_ID, ...WORKLOADS.map((w) => w.id)];
  const unknown = (only ?? []).filter((id) => !ids.includes(id));
  if (unknown.length > 0) {
    throw new Error(`--only: unknown workload ${unknown.join(', ')} (known: ${ids.join(', ')})`);
  }
  return {
    profile: {
      ...profile,
      ...(rounds !== undefined && rounds > 0 ? { rounds } : {}),
      ...(stallSeconds !== undefined && stallSeconds > 0 ? { stallMs: stallSeconds * 1000 } : {}),
    },
    only,
    servers,
    reference,
    sentinel,
    keep,
    report,
  };
}

const status = new StatusLine();

function log(line: string): void {
  status.clear();
  process.stderr.write(`${line}\n`);
}

/** The template repositories every run copies. */
async function prepareData(sandbox: Sandbox, profile: Profile): Promise<BenchData> {
  status.show('setup: served repository (big file, many small files)');
  const served = await makeServedRepo(sandbox, sandbox.path('template', 'served'), [
    { path: BIG_FILE, size: profile.bigGetSize },
    ...manyFiles(SMALL_DIR, profile.smallGetCount, profile.smallGetSize),
  ]);
  status.show('setup: client templates');
  const getter = await makeClientClone(sandbox, served, sandbox.path('template', 'getter'));
  const uploader = await makeClientClone(sandbox, served, sandbox.path('template', 'uploader'));
  status.show('setup: upload files');
  await addFiles(uploader, [
    ...manyFiles(UP_SMALL_DIR, profile.upSmallCount, profile.upSmallSize),
    { path: `${UP_BIG_DIR}/big.bin`, size: profile.upBigSize },
  ]);
  const bigKey = keyOf(served, BIG_FILE);
  const checkKey = keyOf(served, `${SMALL_DIR}/f000.bin`);
  return {
    sandbox,
    profile,
    served,
    bigKey,
    bigObject: await objectPath(served, bigKey),
    checkKey,
    getterTemplate: getter.dir,
    uploaderTemplate: uploader.dir,
  };
}

/** One workload on one server: fresh repository copy, fresh server, measured, torn down. */
async function runOnce(
  data: BenchData,
  workload: Workload,
  spec: ServerSpec,
  round: number,
  label: string,
): Promise<RunRecord> {
  const { sandbox, profile } = data;
  const workDir = sandbox.path('runs', `${workload.id}-${spec.id}-r${round}`);
  const started = Date.now();
  const record: RunRecord = {
    workload: workload.id,
    side: spec.id,
    round,
    status: 'ok',
    values: {},
    elapsedMs: 0,
  };
  let server: RunningServer | undefined;
  let sampler: TreeSampler | undefined;
  try {
    await copyRepo(data.served.dir, path.join(workDir, 'served'));
    const repo: ServedRepo = { ...data.served, dir: path.join(workDir, 'served') };
    server = await startServer(spec, { sandbox, repo, file: data.bigObject });
    const running = server;
    const watchOptions = {
      stallMs: workload.stallMs?.(profile) ?? profile.stallMs,
      onStatus: (progress: Progress, elapsed: number) =>
        status.show(label, `${(elapsed / 1000).toFixed(0)} s | ${progress.doing}`),
    };
    if (workload.warmup !== undefined) {
      await watch(`warming up`, watchOptions, (progress, signal) =>
        workload.warmup!({ data, server: running, workDir, progress, signal }),
      );
    }
    sampler = new TreeSampler(running.pid).start();
    record.values = await watch(`starting ${workload.id}`, watchOptions, (progress, signal) =>
      workload.run({ data, server: running, workDir, progress, signal }),
    );
  } catch (error) {
    if (error instanceof StallError) {
      record.status = 'stall';
      record.detail = error.message;
    } else {
      record.status = 'fail';
      record.detail =
        error instanceof WorkloadFailure ? error.message : `error: ${errorMessage(error)}`;
    }
  } finally {
    const usage = sampler?.stop();
    if (usage !== undefined) {
      record.peakRssBytes = usage.peakRssBytes;
      record.peakPssBytes = usage.peakPssBytes;
      record.cpuSeconds = usage.cpuSeconds;
      record.peakProcesses = usage.peakProcesses;
    }
    record.elapsedMs = Date.now() - started;
    if (server !== undefined) {
      if (record.status === 'stall') {
        await server.kill();
      } else {
        await server.stop();
      }
    }
    // anything still running inside this run's directory was started by it
    for (const pid of [
      ...processesInside(workDir),
      ...annexShellsMentioning([workDir]).map((p) => p.pid),
    ]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await removeTree(workDir);
  }
  return record;
}

async function environment(): Promise<Record<string, string>> {
  const annexVersion = (
    await runChecked('git-annex', ['version', '--raw'], { cwd: '/', env: process.env })
  ).stdout.trim();
  return {
    date: new Date().toISOString(),
    machine: `${cpus().length} cpus (${cpus()[0]?.model ?? '?'}), ${Math.round(totalmem() / 2 ** 30)} GiB RAM`,
    node: process.version,
    'git-annex': annexVersion,
  };
}

interface SavedRun {
  environment: Record<string, string>;
  profile: Profile;
  columns: Column[];
  workloads: { id: string }[];
  runs: RunRecord[];
  /** micro-benchmarks (absent in files from before they existed) */
  micro?: { pool?: PoolMicroResult };
}

/** The report of the server workloads, or only the environment when none ran. */
function renderRuns(input: ReportInput): string {
  if (input.workloads.length > 0) {
    return renderReport(input);
  }
  return Object.entries(input.environment)
    .map(([name, value]) => `${name}: ${value}`)
    .join('\n');
}

/** The report of a JSON file written by an earlier run. */
async function printSaved(file: string): Promise<number> {
  const saved = JSON.parse(await readFile(file, 'utf8')) as SavedRun;
  const ids = saved.workloads.map((w) => w.id);
  process.stdout.write(
    `${renderRuns({
      profile: saved.profile,
      columns: saved.columns,
      workloads: WORKLOADS.filter((w) => ids.includes(w.id)),
      records: saved.runs,
      environment: saved.environment,
    })}\n`,
  );
  if (saved.micro?.pool !== undefined) {
    process.stdout.write(`\n${renderPoolMicro(saved.micro.pool)}\n`);
  }
  return 0;
}

async function main(argv: readonly string[]): Promise<number> {
  const only = argv.indexOf('--only');
  if (only >= 0 && argv[only + 1] === 'repos') {
    return runScale(argv); // many repositories: its own options (scale.ts)
  }
  const options = parseArgs(argv);
  if (options.report !== undefined) {
    return printSaved(options.report);
  }
  const { profile } = options;
  const sandbox = await Sandbox.create('bench');
  let cleaned = false;
  const cleanup = async (): Promise<void> => {
    if (cleaned) {
      return;
    }
    cleaned = true;
    status.clear();
    if (options.keep) {
      process.stderr.write(`kept ${sandbox.root}\n`);
    } else {
      await removeTree(sandbox.root);
    }
  };
  installExitHandlers(cleanup);
  try {
    log(`bench: temp dir ${sandbox.root}`);
    const workloads = WORKLOADS.filter(
      (w) => options.only === undefined || options.only.includes(w.id),
    );
    let poolMicro: PoolMicroResult | undefined;
    if (options.only === undefined || options.only.includes(POOL_MICRO_ID)) {
      // First, while nothing else of the benchmark runs.
      poolMicro = await runPoolMicro(
        profile.name === 'quick' ? POOL_MICRO_QUICK : POOL_MICRO_FULL,
        (line) => status.show(line),
      );
      const perSize = poolMicro.sizes.map((x) => `${x.idle} idle ${x.nsPerPutBack.toFixed(0)} ns`);
      log(`pool put-back: ${perSize.join(', ')} (report at the end)`);
    }
    const data = workloads.length > 0 ? await prepareData(sandbox, profile) : undefined;
    const specs = [
      referenceServer(2),
      referenceServer(8),
      projectServer(),
      // cluster mode, when redis-server is installed (and behind Sentinel with --sentinel)
      ...(hasRedisServer()
        ? [clusterServer(), ...(options.sentinel ? [clusterServer({ sentinel: true })] : [])]
        : []),
      ceilingServer(),
    ].filter((s) => options.servers === undefined || options.servers.includes(s.id));
    const records: RunRecord[] = [];
    const runsTotal =
      profile.rounds *
      workloads.reduce((n, w) => n + specs.filter((s) => w.roles.includes(s.role)).length, 0);
    let runNumber = 0;
    for (const workload of workloads) {
      if (data === undefined) {
        break; // no workload needs the repositories
      }
      const stalled = new Set<string>();
      for (let round = 1; round <= profile.rounds; round += 1) {
        for (const spec of specs.filter((s) => workload.roles.includes(s.role))) {
          runNumber += 1;
          const label = `[${runNumber}/${runsTotal}] ${workload.title(profile)} | ${spec.label} | round ${round}`;
          if (stalled.has(spec.id)) {
            // it stalled in an earlier round: do not spend another stall bound on it
            records.push({
              workload: workload.id,
              side: spec.id,
              round,
              status: 'skipped',
              values: {},
              elapsedMs: 0,
            });
            continue;
          }
          status.show(label);
          const record = await runOnce(data, workload, spec, round, label);
          records.push(record);
          if (record.status === 'stall') {
            stalled.add(spec.id);
          }
          if (record.status !== 'ok') {
            log(`${label}: ${record.status.toUpperCase()}: ${record.detail ?? ''}`);
          }
        }
      }
    }
    status.clear();
    const env = await environment();
    const columns: Column[] = specs.map((s) => ({ id: s.id, label: s.label, role: s.role }));
    process.stdout.write(
      `${renderRuns({ profile, columns, workloads, records, environment: env })}\n`,
    );
    if (poolMicro !== undefined) {
      process.stdout.write(`\n${renderPoolMicro(poolMicro)}\n`);
    }
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const jsonPath = await writeJson(
      path.join(projectRoot(), '.bench'),
      `bench-${profile.name}-${stamp}.json`,
      {
        environment: env,
        profile,
        columns,
        workloads: workloads.map((w) => ({
          id: w.id,
          title: w.title(profile),
          metrics: w.metrics,
          roles: w.roles,
        })),
        runs: records,
        micro: poolMicro === undefined ? {} : { pool: poolMicro },
      },
    );
    process.stdout.write(`\nJSON: ${jsonPath}\n`);
    if (options.reference) {
      const stressProfile = profile.name === 'quick' ? STRESS_SHORT : STRESS_FULL;
      log(`stress waves (${stressProfile.name}) against git annex p2phttp -J2`);
      const result = await runStress({
        profile: stressProfile,
        server: referenceServer(2),
        restartStuck: true,
        log: (line) => status.show('stress vs reference', line),
      });
      status.clear();
      process.stdout.write(`\n${renderStress(result)}\n`);
    }
    return 0;
  } finally {
    await cleanup();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    status.clear();
    process.stderr.write(
      `bench: ${error instanceof Error ? (error.stack ?? '') : String(error)}\n`,
    );
    process.exitCode = 1;
  },
);
