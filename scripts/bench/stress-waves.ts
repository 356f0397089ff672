/**
 * The stress waves (see stress.ts). Each returns its counts and checks; the health checks
 * that follow every wave are in stress-checks.ts.
 */
import { createHash, randomUUID } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import * as http from 'node:http';
import * as path from 'node:path';
import { download, request, requestJson } from '../../test/support/http';
import { runCommand } from '../../test/support/processes';
import { annex, keyOf, pointAt, type Repo } from '../../test/support/repos';
import { startServer } from './servers';
import {
  check,
  KILL_FILE,
  LOCK_FILE,
  RESTART_LOCK_FILE,
  LOOP_DIR,
  type Check,
  type Context,
  type WaveBody,
} from './stress-shared';
import { delay, errorMessage } from '../../test/support/util';

export async function dropGetLoops(ctx: Context, clients: readonly Repo[]): Promise<WaveBody> {
  const { profile } = ctx;
  const deadline = Date.now() + profile.loopSeconds * 1000;
  const counts = { gets: 0, drops: 0, failed: 0, overBound: 0, longestMs: 0 };
  const failures: string[] = [];
  const stuck: string[] = [];
  const perClient = clients.map(() => 0);
  let lastLog = Date.now();
  await Promise.all(
    clients.map(async (client, index) => {
      while (Date.now() < deadline) {
        for (const args of [
          ['get', '--from', 'origin', `-J${profile.getJobs}`, LOOP_DIR],
          ['drop', LOOP_DIR],
        ]) {
          const result = await runCommand('git-annex', args, {
            cwd: client.dir,
            env: client.env,
            timeoutMs: profile.commandBoundMs,
          });
          counts.longestMs = Math.max(counts.longestMs, result.elapsedMs);
          counts[args[0] === 'get' ? 'gets' : 'drops'] += 1;
          if (result.timedOut) {
            counts.overBound += 1;
            stuck.push(`client ${index} git annex ${args[0]}: no end within its bound`);
          } else if (result.code !== 0) {
            counts.failed += 1;
            failures.push(
              `client ${index} git annex ${args.join(' ')}: exit ${String(result.code ?? result.signal)}: ${result.stderr.trim().slice(-300)}`,
            );
          }
        }
        perClient[index] = (perClient[index] ?? 0) + 1;
        if (Date.now() - lastLog >= 5000) {
          lastLog = Date.now();
          ctx.log(`${counts.gets} gets, ${counts.drops} drops, ${counts.failed} failed`);
        }
      }
    }),
  );
  return {
    counts: { ...counts, iterationsMin: Math.min(...perClient) },
    checks: [
      check(
        `every command ended within ${profile.commandBoundMs / 1000} s`,
        counts.overBound === 0,
        `${counts.overBound} over; longest ${counts.longestMs} ms${stuck.length > 0 ? `\n${stuck.slice(0, 3).join('\n')}` : ''}`,
      ),
      check(
        'every get and drop that ended succeeded',
        counts.failed === 0,
        failures.slice(0, 3).join('\n'),
      ),
      check(
        'every client looped at least twice',
        Math.min(...perClient) >= 2,
        `iterations per client: ${perClient.join(', ')}`,
      ),
    ],
  };
}

export async function killedGets(ctx: Context, client: Repo): Promise<WaveBody> {
  const { profile, rng } = ctx;
  const counts = { killed: 0, completedFirst: 0, failed: 0, overBound: 0, partialsRemoved: 0 };
  const failures: string[] = [];
  const tmp = path.join(client.dir, '.git', 'annex', 'tmp');
  // one uninterrupted get tells how long a whole one takes; kills fall within that time
  const calibration = await runCommand('git-annex', ['get', '--from', 'origin', KILL_FILE], {
    cwd: client.dir,
    env: client.env,
    timeoutMs: profile.commandBoundMs,
  });
  if (calibration.code !== 0) {
    throw new Error(
      `an uninterrupted get failed (exit ${String(calibration.code)}, ${calibration.elapsedMs} ms): ${calibration.stderr.trim().slice(-300)}`,
    );
  }
  await annex(client, ['drop', '--force', KILL_FILE], profile.commandBoundMs);
  const killWithin = Math.min(profile.killMaxDelayMs, Math.max(200, calibration.elapsedMs));
  for (let run = 1; run <= profile.killRuns; run += 1) {
    const killAfter = rng.int(0, killWithin);
    const killer = new AbortController();
    const timer = setTimeout(() => killer.abort(), killAfter);
    const result = await runCommand('git-annex', ['get', '--from', 'origin', KILL_FILE], {
      cwd: client.dir,
      env: client.env,
      timeoutMs: profile.commandBoundMs,
      signal: killer.signal,
    });
    clearTimeout(timer);
    if (result.aborted) {
      counts.killed += 1;
    } else if (result.timedOut) {
      counts.overBound += 1;
      failures.push(`run ${run}: no end within its bound`);
    } else if (result.code === 0) {
      counts.completedFirst += 1;
      await annex(client, ['drop', '--force', KILL_FILE], profile.commandBoundMs);
    } else {
      counts.failed += 1;
      failures.push(`run ${run}: exit ${String(result.code)}: ${result.stderr.trim().slice(-300)}`);
    }
    if (rng.chance(0.5)) {
      for (const entry of await readdir(tmp).catch(() => [])) {
        await rm(path.join(tmp, entry), { recursive: true, force: true });
      }
      counts.partialsRemoved += 1;
    }
    ctx.log(
      `run ${run}/${profile.killRuns}: ${result.aborted ? `killed after ${killAfter} ms` : 'ended'}`,
    );
  }
  const final = await runCommand('git-annex', ['get', '--from', 'origin', KILL_FILE], {
    cwd: client.dir,
    env: client.env,
    timeoutMs: profile.commandBoundMs,
  });
  const present = await runCommand('git-annex', ['find', '--in', 'here', KILL_FILE], {
    cwd: client.dir,
    env: client.env,
    timeoutMs: profile.commandBoundMs,
  });
  return {
    counts: { ...counts, wholeGetMs: calibration.elapsedMs, killWithinMs: killWithin },
    checks: [
      check(
        `no get waited beyond ${profile.commandBoundMs / 1000} s`,
        counts.overBound === 0,
        failures.join('\n'),
      ),
      check('no get that was not killed failed', counts.failed === 0, failures.join('\n')),
      check(
        'a get after the kills completes (content verified by git-annex)',
        final.code === 0 && present.stdout.trim() === KILL_FILE,
        `exit ${String(final.code)} in ${final.elapsedMs} ms ${final.timedOut ? '(timed out)' : ''} ${final.stderr.trim().slice(-300)}`,
      ),
    ],
  };
}

export async function destroyedHttpGets(ctx: Context): Promise<WaveBody> {
  const { profile, rng, served, server } = ctx;
  const key = keyOf(served, KILL_FILE);
  const target = `/git-annex/${served.uuid}/v4/key/${encodeURIComponent(key)}?clientuuid=${randomUUID()}`;
  const counts = {
    destroyedBeforeHeaders: 0,
    destroyedStreaming: 0,
    completed: 0,
    brokenByServer: 0,
    notReading: 0,
  };
  const errors: string[] = [];
  await Promise.all(
    Array.from({ length: profile.httpGets }, (_, index) => {
      const destroyAfter = rng.int(0, profile.httpDestroyMaxMs);
      const reads = index % 2 === 0;
      if (!reads) {
        counts.notReading += 1;
      }
      return new Promise<void>((resolve) => {
        let finished = false;
        let destroyed = false;
        let headers = false;
        const finish = (): void => {
          if (!finished) {
            finished = true;
            clearTimeout(timer);
            resolve();
          }
        };
        const req = http.request({
          host: '127.0.0.1',
          port: server.port,
          method: 'GET',
          path: target,
          agent: false,
        });
        req.once('response', (res) => {
          headers = true;
          res.once('error', () => {});
          res.once('end', () => {
            counts.completed += 1;
            finish();
          });
          if (reads) {
            res.resume();
          } else {
            res.pause();
          }
        });
        req.once('error', (error) => {
          if (!destroyed) {
            counts.brokenByServer += 1;
            errors.push(errorMessage(error));
          }
          finish();
        });
        const timer = setTimeout(() => {
          if (!finished) {
            destroyed = true;
            counts[headers ? 'destroyedStreaming' : 'destroyedBeforeHeaders'] += 1;
            req.destroy();
            finish();
          }
        }, destroyAfter);
        req.end();
      });
    }),
  );
  ctx.log('all clients destroyed; a complete GET must follow');
  let probe: Check;
  try {
    const result = await download(server.port, target, {
      signal: AbortSignal.timeout(profile.requestBoundMs),
    });
    probe = check(
      `a complete GET afterwards within ${profile.requestBoundMs / 1000} s`,
      result.status === 200 && result.bytes === profile.killFileSize,
      `${result.status}, ${result.bytes} bytes in ${result.elapsedMs} ms`,
    );
  } catch (error) {
    probe = check(
      `a complete GET afterwards within ${profile.requestBoundMs / 1000} s`,
      false,
      errorMessage(error),
    );
  }
  return {
    counts,
    checks: [
      check(
        'no GET was broken by the server',
        counts.brokenByServer === 0,
        errors.slice(0, 3).join('; '),
      ),
      probe,
    ],
  };
}

export async function vanishedKeeplocked(ctx: Context): Promise<WaveBody> {
  const { profile, served, server } = ctx;
  const key = encodeURIComponent(keyOf(served, LOCK_FILE));
  const base = `/git-annex/${served.uuid}/v4`;
  const lockerUuid = randomUUID();
  const locked = await requestJson<{ locked?: boolean; lockid?: string }>(
    server.port,
    `${base}/lockcontent?key=${key}&clientuuid=${lockerUuid}`,
    { timeoutMs: profile.requestBoundMs },
  );
  if (locked.locked !== true || locked.lockid === undefined) {
    return {
      counts: {},
      checks: [check('lockcontent locked the content', false, JSON.stringify(locked))],
    };
  }
  const keeplocked = http.request({
    host: '127.0.0.1',
    port: server.port,
    method: 'POST',
    path: `${base}/keeplocked?lockid=${encodeURIComponent(locked.lockid)}&clientuuid=${lockerUuid}`,
    headers: {
      'transfer-encoding': 'chunked',
      'content-type': 'application/json',
      connection: 'keep-alive',
      'keep-alive': 'timeout=1200',
    },
    agent: false,
  });
  keeplocked.on('error', () => {});
  keeplocked.write('{"unlock":false}\n');
  // let the server take the keeplocked request in, then vanish without a word
  const seen = await waitForKeeplocked(ctx, (n) => n >= 1);
  keeplocked.destroy();
  const gone = await waitForKeeplocked(ctx, (n) => n === 0);
  let removed: string;
  let removedFalse = false;
  try {
    const result = await request(
      server.port,
      `${base}/remove?key=${key}&clientuuid=${randomUUID()}`,
      {
        timeoutMs: profile.requestBoundMs,
      },
    );
    removed = `${result.status} ${result.body.toString('utf8')} in ${result.elapsedMs} ms`;
    removedFalse = result.status === 200 && /"removed":false/.test(result.body.toString('utf8'));
  } catch (error) {
    removed = errorMessage(error);
  }
  return {
    counts: {},
    checks: [
      check('the server saw the keeplocked request, then its end', seen && gone),
      check(
        'the lock is still held right after (remove answers removed:false)',
        removedFalse,
        removed,
      ),
    ],
  };
}

/** Polls /stats keeplocked until `predicate` holds (reference: waits half a second instead). */
async function waitForKeeplocked(
  ctx: Context,
  predicate: (n: number) => boolean,
): Promise<boolean> {
  if (!ctx.isProject) {
    await delay(500);
    return true;
  }
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    try {
      if (predicate((await ctx.server.stats(1000)).keeplocked)) {
        return true;
      }
    } catch {
      // try again
    }
    await delay(50);
  }
  return false;
}

/**
 * Restart with locks: the lock the previous wave left (its keeplocked vanished) and a new one
 * with keeplocked open, then the server is killed by SIGKILL (the process alone, as a crash would)
 * and started again. Both locks must hold: remove answers removed:false, git-annex itself
 * refuses `git annex drop --force` in the served repository, and `{"unlock":true}` through the
 * new server releases the one held open. Leaves one lock (the previous wave's) held.
 */
export async function restartWithLocks(ctx: Context): Promise<WaveBody> {
  const { profile, served } = ctx;
  const base = `/git-annex/${served.uuid}/v4`;
  const keyParam = (file: string) => encodeURIComponent(keyOf(served, file));
  const clientUuid = randomUUID();
  const locked = await requestJson<{ locked?: boolean; lockid?: string }>(
    ctx.server.port,
    `${base}/lockcontent?key=${keyParam(RESTART_LOCK_FILE)}&clientuuid=${clientUuid}`,
    { timeoutMs: profile.requestBoundMs },
  );
  if (locked.locked !== true || locked.lockid === undefined) {
    return {
      counts: {},
      checks: [check('lockcontent locked the content', false, JSON.stringify(locked))],
    };
  }
  const lockid = locked.lockid;
  const keeplocked = http.request({
    host: '127.0.0.1',
    port: ctx.server.port,
    method: 'POST',
    path: `${base}/keeplocked?lockid=${encodeURIComponent(lockid)}&clientuuid=${clientUuid}`,
    headers: { 'transfer-encoding': 'chunked', 'content-type': 'application/json' },
    agent: false,
  });
  keeplocked.on('error', () => {});
  keeplocked.write('{"unlock":false}\n');
  const seen = !ctx.isProject || (await waitForKeeplocked(ctx, (n) => n >= 1));

  const killedPid = ctx.server.pid;
  process.kill(killedPid, 'SIGKILL');
  const started = Date.now();
  ctx.server = await startServer(ctx.spec, { sandbox: ctx.sandbox, repo: served });
  const restartMs = Date.now() - started;
  keeplocked.destroy();
  for (const client of ctx.clients) {
    await pointAt(client, ctx.server.port);
  }
  const port = ctx.server.port;

  const removeAnswer = async (file: string): Promise<string> => {
    try {
      const result = await request(
        port,
        `${base}/remove?key=${keyParam(file)}&clientuuid=${randomUUID()}`,
        { timeoutMs: profile.requestBoundMs },
      );
      return `${result.status} ${result.body.toString('utf8')}`;
    } catch (error) {
      return errorMessage(error);
    }
  };
  const removeHeld = await removeAnswer(RESTART_LOCK_FILE);
  const removeVanished = await removeAnswer(LOCK_FILE);
  const drop = await runCommand('git', ['annex', 'drop', '--force', RESTART_LOCK_FILE], {
    cwd: served.dir,
    env: served.env,
    timeoutMs: profile.requestBoundMs * 10,
  });
  const locksAfterRestart = ctx.isProject ? (await ctx.server.stats()).locks : 2;
  let unlocked: string;
  try {
    const result = await request(
      port,
      `${base}/keeplocked?lockid=${encodeURIComponent(lockid)}&clientuuid=${clientUuid}`,
      { body: '{"unlock":true}\n', timeoutMs: profile.requestBoundMs },
    );
    unlocked = `${result.status} ${result.body.toString('utf8')}`;
  } catch (error) {
    unlocked = errorMessage(error);
  }
  const locksAfterUnlock = ctx.isProject ? (await ctx.server.stats()).locks : 1;
  return {
    counts: { restartMs },
    checks: [
      check('the server saw the keeplocked request before it was killed', seen),
      check(
        'a lock held open survives SIGKILL (remove answers removed:false)',
        removeHeld.startsWith('200 ') && removeHeld.includes('"removed":false'),
        removeHeld,
      ),
      check(
        'a lock whose keeplocked vanished survives SIGKILL (remove answers removed:false)',
        removeVanished.startsWith('200 ') && removeVanished.includes('"removed":false'),
        removeVanished,
      ),
      check(
        'git annex drop --force in the served repository is refused',
        drop.code !== 0,
        `exit ${String(drop.code ?? drop.signal)}: ${drop.stderr.trim().split('\n').pop() ?? ''}`,
      ),
      check(
        'the restarted server took over both locks',
        locksAfterRestart === 2,
        `${locksAfterRestart} locks`,
      ),
      check(
        '{"unlock":true} through the restarted server releases the lock',
        unlocked === '200 {"locked":false}' && locksAfterUnlock === 1,
        `${unlocked}; ${locksAfterUnlock} locks left`,
      ),
    ],
  };
}

/**
 * 2 × --jobs uploads that announce 1 MiB, send 10 bytes and then nothing, held open while other
 * clients check for an absent key, get a file and put a small one: every one of those must be
 * answered within the request bound. The silent uploads then go away; what they sent stays as
 * partial content (putoffset 10).
 */
export async function silentUploads(ctx: Context): Promise<WaveBody> {
  const { profile, served, server } = ctx;
  const count = 2 * profile.serverJobs;
  const base = `/git-annex/${served.uuid}/v4`;
  const announced = 1024 * 1024;
  const keys = Array.from(
    { length: count },
    (_, i) =>
      `SHA256E-s${announced}--${randomUUID().replace(/-/g, '')}${String(i).padStart(32, '0')}`,
  );
  const silent = keys.map((key) => {
    const req = http.request({
      host: '127.0.0.1',
      port: server.port,
      method: 'POST',
      path: `${base}/put?key=${encodeURIComponent(key)}&associatedfile=&offset=0&clientuuid=${randomUUID()}`,
      headers: {
        'content-type': 'application/octet-stream',
        'content-length': String(announced),
        'x-git-annex-data-length': String(announced),
      },
      agent: false,
    });
    req.once('error', () => {});
    req.write(Buffer.alloc(10, 1));
    return req;
  });
  const counts = { silent: count, answered: 0, failed: 0, longestMs: 0 };
  const failures: string[] = [];
  const timed = async (what: string, run: () => Promise<boolean>): Promise<void> => {
    const started = Date.now();
    try {
      if (await run()) {
        counts.answered += 1;
      } else {
        counts.failed += 1;
        failures.push(`${what}: wrong answer`);
      }
    } catch (error) {
      counts.failed += 1;
      failures.push(`${what}: ${errorMessage(error)}`);
    }
    counts.longestMs = Math.max(counts.longestMs, Date.now() - started);
  };
  try {
    await delay(500);
    const bound = { timeoutMs: profile.requestBoundMs };
    const clientuuid = randomUUID();
    for (let round = 0; round < 3; round += 1) {
      const absent = `SHA256E-s5--${randomUUID().replace(/-/g, '')}${'0'.repeat(32)}`;
      await timed('checkpresent', async () => {
        const answer = await requestJson<{ present: boolean }>(
          server.port,
          `${base}/checkpresent?key=${absent}&clientuuid=${clientuuid}`,
          bound,
        );
        return answer.present === false;
      });
      await timed('get', async () => {
        const key = encodeURIComponent(keyOf(served, LOCK_FILE));
        const result = await request(server.port, `${base}/key/${key}?clientuuid=${clientuuid}`, {
          method: 'GET',
          ...bound,
        });
        return result.status === 200;
      });
      const content = `a small put during silent uploads ${round} ${randomUUID()}\n`;
      const key = `SHA256E-s${Buffer.byteLength(content)}--${createHash('sha256').update(content).digest('hex')}`;
      await timed('put', async () => {
        const answer = await requestJson<{ stored: boolean }>(
          server.port,
          `${base}/put?key=${key}&associatedfile=&offset=0&clientuuid=${clientuuid}`,
          {
            ...bound,
            headers: {
              'content-type': 'application/octet-stream',
              'x-git-annex-data-length': String(Buffer.byteLength(content)),
            },
            body: content,
          },
        );
        return answer.stored;
      });
    }
  } finally {
    for (const req of silent) {
      req.destroy();
    }
  }
  // What the silent uploads sent is kept for a resume.
  const offset = await requestJson<{ offset?: number }>(
    server.port,
    `${base}/putoffset?key=${encodeURIComponent(keys[0] ?? '')}&clientuuid=${randomUUID()}`,
    { timeoutMs: profile.requestBoundMs },
  ).catch((error: unknown) => ({ error: errorMessage(error) }));
  return {
    counts,
    checks: [
      check(
        `checkpresent, get and put answered within ${profile.requestBoundMs / 1000} s each while ${count} uploads were silent`,
        counts.failed === 0,
        failures.slice(0, 3).join('; '),
      ),
      check(
        'a silent upload cut by its client keeps its 10 bytes (putoffset 10)',
        'offset' in offset && offset.offset === 10,
        JSON.stringify(offset),
      ),
    ],
  };
}
