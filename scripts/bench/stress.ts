/**
 * `npm run stress [-- OPTIONS]` and the short variant in test/e2e/stress.test.ts: the failure modes
 * reported against `git annex p2phttp`, in waves against one server:
 *
 *   1. several clients looping `git annex get --from origin -J4` / `git annex drop`
 *   2. `git annex get` of a big file SIGKILLed at random moments (partial downloads kept or not)
 *   3. concurrent HTTP GETs of a big key, half of them not reading, destroyed at random moments
 *   4. 2 × --jobs uploads that send 10 bytes and then nothing, held open while other clients'
 *      checkpresent, get and put must be answered; their bytes are kept (putoffset)
 *   5. a keeplocked client that vanishes: the lock must still be held (remove → removed:false)
 *   6. restart with locks: the server SIGKILLed with a lock kept open and the one of wave 4; the
 *      restarted server and git-annex itself must still refuse removal, and unlock must work
 *
 * Pass means: no command or request waits longer than its bound; after each wave the server
 * answers gettimestamp within 1 s and settles to a state where nothing is left that should not
 * be: no request running, waiting or streaming, no session beyond the idle ones and the held
 * locks, exactly the locks deliberately left, and every git-annex-shell process accounted for.
 *
 *   --short            the short variant (as in the test suite)
 *   --seed N           replay a run (random delays come from it)
 *   --jobs N           the server's --jobs (default 2, where queues are longest)
 *   --keep             keep the temp dir
 */
import { installExitHandlers } from '../../test/support/processes';
import { annexShellsMentioning, processesInside } from '../../test/support/process-tree';
import {
  makeClientClone,
  makeServedRepo,
  manyFiles,
  removeTree,
  Sandbox,
} from '../../test/support/repos';
import { startServer } from './servers';
import { projectServer, type RunningServer, type ServerSpec } from '../../test/support/servers';
import { runWave } from './stress-checks';
import {
  check,
  KILL_FILE,
  LOCK_FILE,
  LOOP_DIR,
  RESTART_LOCK_FILE,
  STRESS_FULL,
  STRESS_SHORT,
  type Check,
  type Context,
  type StressProfile,
  type StressResult,
} from './stress-shared';
import {
  destroyedHttpGets,
  dropGetLoops,
  killedGets,
  restartWithLocks,
  silentUploads,
  vanishedKeeplocked,
} from './stress-waves';
import { delay, formatBytes, KiB, Random } from '../../test/support/util';

export { STRESS_FULL, STRESS_SHORT };
export type { Check, StressProfile, StressResult, WaveResult } from './stress-shared';

export interface StressOptions {
  profile: StressProfile;
  /** default: this project's server with `--jobs profile.serverJobs` */
  server?: ServerSpec;
  seed?: number;
  log?: (line: string) => void;
  keep?: boolean;
  /**
   * When the server does not answer gettimestamp after a wave, kill it and start a fresh one for
   * the next wave, so each failure mode shows on its own (used against the reference, which
   * stays stuck). A restart is itself reported as a failed check.
   */
  restartStuck?: boolean;
}

// ---------------------------------------------------------------------------------------------

/** Runs every wave against a fresh server in a fresh temp dir; never throws for a failed check. */
export async function runStress(options: StressOptions): Promise<StressResult> {
  const { profile, log = () => {} } = options;
  const spec =
    options.server ?? projectServer(['--wideopen', '--jobs', String(profile.serverJobs)]);
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const started = Date.now();
  const result: StressResult = {
    profile,
    server: spec.label,
    seed,
    ok: false,
    elapsedMs: 0,
    waves: [],
    shutdown: [],
  };
  const sandbox = await Sandbox.create(`stress-${profile.name}`);
  let server: RunningServer | undefined;
  let ctx: Context | undefined;
  try {
    log('setup: served repository and clients');
    const served = await makeServedRepo(sandbox, sandbox.path('served'), [
      ...manyFiles(LOOP_DIR, profile.loopFiles, profile.loopFileSize),
      { path: KILL_FILE, size: profile.killFileSize },
      { path: LOCK_FILE, size: 4 * KiB },
      { path: RESTART_LOCK_FILE, size: 4 * KiB },
    ]);
    server = await startServer(spec, { sandbox, repo: served });
    const port = server.port;
    const clients = await Promise.all(
      Array.from({ length: profile.loopClients }, (_, i) =>
        makeClientClone(sandbox, served, sandbox.path(`client-${i}`), port),
      ),
    );
    const killer = await makeClientClone(sandbox, served, sandbox.path('killer'), port);
    const c: Context = {
      profile,
      sandbox,
      served,
      server,
      spec,
      clients: [...clients, killer],
      restartStuck: options.restartStuck === true,
      rng: new Random(seed),
      log,
      isProject: spec.role === 'project',
    };
    ctx = c;
    result.waves.push(
      await runWave(
        c,
        'drop-get-loops',
        `${profile.loopClients} clients looping git annex get --from origin -J${profile.getJobs} / drop of ${profile.loopFiles} × ${formatBytes(profile.loopFileSize)} for ${profile.loopSeconds} s`,
        0,
        () => dropGetLoops(c, clients),
      ),
      await runWave(
        c,
        'killed-gets',
        `${profile.killRuns} × git annex get of a ${formatBytes(profile.killFileSize)} file, SIGKILLed at a random moment within the time of a whole get (at most ${profile.killMaxDelayMs} ms)`,
        0,
        () => killedGets(c, killer),
      ),
      await runWave(
        c,
        'destroyed-http-gets',
        `${profile.httpGets} concurrent GETs of the ${formatBytes(profile.killFileSize)} key (half not reading), destroyed after 0-${profile.httpDestroyMaxMs} ms`,
        0,
        () => destroyedHttpGets(c),
      ),
      await runWave(
        c,
        'silent-uploads',
        `${2 * profile.serverJobs} uploads silent after 10 bytes of 1 MiB, while others check, get and put`,
        0,
        () => silentUploads(c),
      ),
      await runWave(
        c,
        'vanished-keeplocked',
        'lockcontent, keeplocked {"unlock":false}, socket destroyed; then remove',
        1,
        () => vanishedKeeplocked(c),
      ),
      await runWave(
        c,
        'restart-with-locks',
        'lockcontent with keeplocked open, server SIGKILLed and started again; then remove, git annex drop --force, unlock',
        1,
        () => restartWithLocks(c),
      ),
    );
    server = c.server;
    const stop = await server.stop(15_000);
    result.shutdown.push(
      check(
        'the server ends within 15 s of SIGTERM',
        stop.graceful,
        `exit ${String(stop.code ?? stop.signal)}`,
      ),
    );
    let left = annexShellsMentioning([sandbox.root]);
    for (let waited = 0; left.length > 0 && waited < 3000; waited += 100) {
      await delay(100);
      left = annexShellsMentioning([sandbox.root]);
    }
    result.shutdown.push(
      check(
        'no git-annex-shell left after it ended',
        left.length === 0,
        left.map((p) => `${p.pid} ${p.argv.join(' ')}`).join('\n'),
      ),
    );
  } catch (error) {
    result.error = error instanceof Error ? (error.stack ?? error.message) : String(error);
  } finally {
    await server?.kill();
    await ctx?.server.kill();
    for (const pid of [
      ...processesInside(sandbox.root),
      ...annexShellsMentioning([sandbox.root]).map((p) => p.pid),
    ]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    if (options.keep === true) {
      log(`kept ${sandbox.root}`);
    } else {
      await removeTree(sandbox.root);
    }
  }
  result.elapsedMs = Date.now() - started;
  result.ok =
    result.error === undefined &&
    result.waves.length === 6 &&
    result.waves.every((w) => w.ok) &&
    result.shutdown.every((c) => c.ok);
  return result;
}

export function renderStress(result: StressResult): string {
  const lines = [
    `stress (${result.profile.name}) against ${result.server}, seed ${result.seed}: ` +
      `${result.ok ? 'PASS' : 'FAIL'} in ${(result.elapsedMs / 1000).toFixed(1)} s`,
  ];
  const mark = (c: Check): string =>
    `    ${c.ok ? 'ok  ' : 'FAIL'} ${c.name}${c.detail === '' ? '' : `: ${c.detail.replace(/\n/g, '\n          ')}`}`;
  for (const wave of result.waves) {
    lines.push(
      `  ${wave.ok ? 'PASS' : 'FAIL'} ${wave.id}: ${wave.title} (${(wave.elapsedMs / 1000).toFixed(1)} s)`,
    );
    const counts = Object.entries(wave.counts)
      .map(([name, value]) => `${name} ${value}`)
      .join(', ');
    if (counts !== '') {
      lines.push(`    counts: ${counts}`);
    }
    lines.push(...wave.checks.map(mark));
  }
  if (result.shutdown.length > 0) {
    lines.push('  shutdown');
    lines.push(...result.shutdown.map(mark));
  }
  if (result.error !== undefined) {
    lines.push(`  ERROR: ${result.error}`);
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------

async function main(argv: readonly string[]): Promise<number> {
  let profile = STRESS_FULL;
  let seed: number | undefined;
  let jobs: number | undefined;
  let keep = false;
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--short') {
      profile = STRESS_SHORT;
    } else if (arg === '--seed') {
      seed = Number(argv[++i]);
    } else if (arg === '--jobs') {
      jobs = Number(argv[++i]);
    } else if (arg === '--keep') {
      keep = true;
    } else {
      throw new Error(`unknown option ${String(arg)} (see the top of scripts/bench/stress.ts)`);
    }
  }
  if (jobs !== undefined) {
    profile = { ...profile, serverJobs: jobs };
  }
  installExitHandlers();
  const tty = process.stderr.isTTY;
  const result = await runStress({
    profile,
    ...(seed === undefined ? {} : { seed }),
    keep,
    log: (line) => process.stderr.write(tty ? `\r\x1b[K${line.slice(0, 150)}` : `${line}\n`),
  });
  if (tty) {
    process.stderr.write('\r\x1b[K');
  }
  process.stdout.write(`${renderStress(result)}\n`);
  return result.ok ? 0 : 1;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(
        `stress: ${error instanceof Error ? (error.stack ?? '') : String(error)}\n`,
      );
      process.exitCode = 1;
    },
  );
}
