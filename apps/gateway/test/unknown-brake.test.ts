import { describe, expect, it } from 'vitest';
import { UnknownBrake } from '../src/unknown-brake';

describe('UnknownBrake', () => {
  it('answers a burst at once, then slows what comes faster than its rate', () => {
    let now = 0;
    const brake = new UnknownBrake(10, 5, 250, () => now);
    expect(Array.from({ length: 5 }, () => brake.take())).toEqual([0, 0, 0, 0, 0]);
    expect(brake.take()).toBe(250);
    expect(brake.take()).toBe(250);
    // A tenth of a second refills one answer at 10 a second.
    now += 100;
    expect(brake.take()).toBe(0);
    expect(brake.take()).toBe(250);
    // A quiet second refills the burst, no more.
    now += 10_000;
    expect(Array.from({ length: 6 }, () => brake.take())).toEqual([0, 0, 0, 0, 0, 250]);
  });

  it('waits when slowed', async () => {
    const brake = new UnknownBrake(1, 1, 30, () => 0);
    await brake.pass(); // the burst: at once
    const slowed = performance.now();
    await brake.pass();
    expect(performance.now() - slowed).toBeGreaterThanOrEqual(25);
  });
});
