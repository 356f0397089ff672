/**
 * The health checks after each stress wave: gettimestamp within 1 s, then the server settles to
 * a state where nothing is left that should not be (GET /stats and git-annex-shell processes in
 * /proc), and the wave runner that applies them.
 */
import { randomUUID } from 'node:crypto';
import { request } from '../../test/support/http';
import { annexShellsMentioning } from '../../test/support/process-tree';
import { pointAt } from '../../test/support/repos';
import { startServer } from './servers';
import type { ServerStats } from '../../test/support/servers';
import { check, type Check, type Context, type WaveBody, type WaveResult } from './stress-shared';
import { delay, errorMessage } from '../../test/support/util';

async function gettimestampCheck(ctx: Context): Promise<Check> {
  const target = `/git-annex/${ctx.served.uuid}/v4/gettimestamp?clientuuid=${randomUUID()}`;
  try {
    const result = await request(ctx.server.port, target, { timeoutMs: 1000 });
    const body = result.body.toString('utf8');
    const ok = result.status === 200 && /"timestamp":\d+/.test(body);
    return check('gettimestamp answered within 1 s', ok, `${result.elapsedMs} ms: ${body}`);
  } catch (error) {
    return check('gettimestamp answered within 1 s', false, errorMessage(error));
  }
}

interface Settled {
  ok: boolean;
  problems: string[];
  stats?: ServerStats;
  shells: number;
}

/** One look at the server: what /stats and /proc say, and what is wrong with it. */
async function inspect(ctx: Context, expectedLocks: number): Promise<Settled> {
  const shells = annexShellsMentioning([ctx.sandbox.root]);
  const problems: string[] = [];
  if (!ctx.isProject) {
    // the reference serves a local repository in-process: no git-annex-shell at all
    if (shells.length > 0) {
      problems.push(`${shells.length} git-annex-shell processes alive`);
    }
    return { ok: problems.length === 0, problems, shells: shells.length };
  }
  let stats: ServerStats;
  try {
    stats = await ctx.server.stats(1000);
  } catch (error) {
    return { ok: false, problems: [`GET /stats: ${errorMessage(error)}`], shells: shells.length };
  }
  const { pool } = stats;
  if (pool.active !== 0) {
    problems.push(`pool.active ${pool.active} (expected 0)`);
  }
  if (pool.streams !== 0) {
    problems.push(`pool.streams ${pool.streams} (expected 0)`);
  }
  if (pool.waiting !== 0) {
    problems.push(`pool.waiting ${pool.waiting} (expected 0)`);
  }
  if (pool.connections > pool.idle + pool.locks) {
    problems.push(`pool.connections ${pool.connections} > idle ${pool.idle} + locks ${pool.locks}`);
  }
  if (stats.locks !== expectedLocks) {
    problems.push(`locks ${stats.locks} (expected ${expectedLocks})`);
  }
  if (pool.locks !== expectedLocks) {
    problems.push(`pool.locks ${pool.locks} (expected ${expectedLocks})`);
  }
  if (stats.keeplocked !== 0) {
    problems.push(`keeplocked ${stats.keeplocked} (expected 0)`);
  }
  const orphans = shells.filter((s) => s.ppid !== ctx.server.pid);
  if (orphans.length > 0) {
    problems.push(`${orphans.length} git-annex-shell not children of the server`);
  }
  if (shells.length !== pool.connections) {
    problems.push(
      `${shells.length} git-annex-shell processes, pool.connections ${pool.connections}`,
    );
  }
  return { ok: problems.length === 0, problems, stats, shells: shells.length };
}

async function settleChecks(
  ctx: Context,
  expectedLocks: number,
): Promise<{ checks: Check[]; stats?: ServerStats }> {
  const started = Date.now();
  let state = await inspect(ctx, expectedLocks);
  const firstLook = state.problems;
  while (!state.ok && Date.now() - started < ctx.profile.settleMs) {
    await delay(100);
    state = await inspect(ctx, expectedLocks);
  }
  const waited = Date.now() - started;
  const summary = ctx.isProject
    ? `${JSON.stringify(state.stats)}; ${state.shells} git-annex-shell`
    : `${state.shells} git-annex-shell`;
  const before = firstLook.length === 0 ? '' : ` (first look: ${firstLook.join('; ')})`;
  const detail = state.ok
    ? `after ${waited} ms${before}: ${summary}`
    : `still after ${waited} ms: ${state.problems.join('; ')} | ${summary}`;
  return {
    checks: [
      check(
        `nothing left behind (${expectedLocks} lock${expectedLocks === 1 ? '' : 's'} held on purpose)`,
        state.ok,
        detail,
      ),
    ],
    stats: state.stats,
  };
}

export async function runWave(
  ctx: Context,
  id: string,
  title: string,
  expectedLocks: number,
  body: () => Promise<WaveBody>,
): Promise<WaveResult> {
  ctx.log(`${id}: ${title}`);
  const started = Date.now();
  let counts: Record<string, number> = {};
  const checks: Check[] = [];
  try {
    const result = await body();
    counts = result.counts;
    checks.push(...result.checks);
  } catch (error) {
    checks.push(check('wave ran', false, errorMessage(error)));
  }
  const elapsedMs = Date.now() - started;
  const answered = await gettimestampCheck(ctx);
  checks.push(answered);
  const settled = await settleChecks(ctx, expectedLocks);
  checks.push(...settled.checks);
  if (!answered.ok && ctx.restartStuck) {
    await ctx.server.kill();
    ctx.server = await startServer(ctx.spec, { sandbox: ctx.sandbox, repo: ctx.served });
    for (const client of ctx.clients) {
      await pointAt(client, ctx.server.port);
    }
    checks.push(check('still usable without a restart', false, 'killed and started afresh'));
  }
  return {
    id,
    title,
    ok: checks.every((c) => c.ok),
    elapsedMs,
    counts,
    checks,
    ...(settled.stats === undefined ? {} : { stats: settled.stats }),
  };
}
