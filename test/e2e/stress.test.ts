/**
 * The short variant of `npm run stress` (scripts/bench/stress.ts): interrupted and concurrent
 * clients against this project's server (`--jobs 2`, where queues are longest), after which
 * nothing may be left running, waiting, streaming or locked except the one lock the last two waves
 * leave on purpose (a keeplocked that vanished keeps its lock for ten minutes, across a restart
 * of the server). About 30 s.
 */
import { describe, expect, it } from 'vitest';
import { renderStress, runStress, STRESS_SHORT, type WaveResult } from '../../scripts/bench/stress';

function wave(waves: readonly WaveResult[], id: string): WaveResult {
  const found = waves.find((w) => w.id === id);
  if (found === undefined) {
    throw new Error(`wave ${id} did not run`);
  }
  return found;
}

describe('stress (short)', () => {
  it('drop/get loops, killed gets, destroyed GETs, silent uploads, a vanished keeplocked and a restart with locks leave nothing behind', async () => {
    const result = await runStress({ profile: STRESS_SHORT });
    const report = renderStress(result);
    if (!result.ok) {
      console.error(report);
    }
    expect(result.error, report).toBeUndefined();
    expect(result.waves.map((w) => w.id)).toEqual([
      'drop-get-loops',
      'killed-gets',
      'destroyed-http-gets',
      'silent-uploads',
      'vanished-keeplocked',
      'restart-with-locks',
    ]);
    for (const w of result.waves) {
      expect(
        w.checks.filter((c) => !c.ok),
        `${w.id}\n${report}`,
      ).toEqual([]);
    }
    expect(
      result.shutdown.filter((c) => !c.ok),
      report,
    ).toEqual([]);

    const loops = wave(result.waves, 'drop-get-loops');
    expect(loops.counts.failed).toBe(0);
    expect(loops.counts.overBound).toBe(0);
    expect(loops.counts.iterationsMin).toBeGreaterThanOrEqual(2);
    expect(loops.counts.gets).toBe(loops.counts.drops);

    const kills = wave(result.waves, 'killed-gets');
    expect((kills.counts.killed ?? 0) + (kills.counts.completedFirst ?? 0)).toBe(
      STRESS_SHORT.killRuns,
    );
    expect(kills.counts.failed).toBe(0);

    const gets = wave(result.waves, 'destroyed-http-gets');
    expect(gets.counts.brokenByServer).toBe(0);
    expect(
      (gets.counts.destroyedBeforeHeaders ?? 0) +
        (gets.counts.destroyedStreaming ?? 0) +
        (gets.counts.completed ?? 0),
    ).toBe(STRESS_SHORT.httpGets);

    const uploads = wave(result.waves, 'silent-uploads');
    expect(uploads.counts.failed).toBe(0);
    expect(uploads.counts.answered).toBe(9);

    // after every wave: nothing running, waiting or streaming; sessions only idle or locking
    for (const w of result.waves) {
      // the lock of the vanished keeplocked lasts, through the restart too
      const expectedLocks = ['vanished-keeplocked', 'restart-with-locks'].includes(w.id) ? 1 : 0;
      expect(w.stats, w.id).toBeDefined();
      const { pool, locks, keeplocked } = w.stats!;
      expect({ active: pool.active, streams: pool.streams, waiting: pool.waiting }, w.id).toEqual({
        active: 0,
        streams: 0,
        waiting: 0,
      });
      expect(pool.connections, w.id).toBeLessThanOrEqual(pool.idle + pool.locks);
      expect(locks, w.id).toBe(expectedLocks);
      expect(pool.locks, w.id).toBe(expectedLocks);
      expect(keeplocked, w.id).toBe(0);
    }
    expect(result.ok, report).toBe(true);
  }, 180_000);
});
