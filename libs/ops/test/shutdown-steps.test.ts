import { describe, expect, it } from 'vitest';
import { boundedStep, Deadline, InFlight, redisUnreachable, waitUntil } from '@annex-p2phttp/ops';

function recorder() {
  const lines: string[] = [];
  let cuts = 0;
  return {
    lines,
    get cuts() {
      return cuts;
    },
    options: (withinMs: number, skip?: string | null) => ({
      withinMs,
      skip,
      log: (line: string) => lines.push(line),
      cut: () => {
        cuts += 1;
      },
    }),
  };
}

const never = () => new Promise<void>(() => undefined);

describe('boundedStep', () => {
  it('runs a step that finishes in time, silently', async () => {
    const r = recorder();
    expect(await boundedStep('close the queues', () => Promise.resolve(), r.options(1000))).toBe(
      'done',
    );
    expect(r.lines).toEqual([]);
    expect(r.cuts).toBe(0);
  });

  it('gives up on a step that does not finish in time, says so and cuts it', async () => {
    const r = recorder();
    const started = performance.now();
    expect(await boundedStep('withdraw the advert', never, r.options(200))).toBe('late');
    expect(performance.now() - started).toBeGreaterThanOrEqual(190);
    expect(r.lines).toEqual(['could not withdraw the advert: not done within 0.2 s']);
    expect(r.cuts).toBe(1);
  });

  it('skips a step that cannot run, says why and cuts it without waiting', async () => {
    const r = recorder();
    let ran = false;
    const work = () => {
      ran = true;
      return Promise.resolve();
    };
    expect(
      await boundedStep('withdraw the advert', work, r.options(10_000, 'Redis unreachable')),
    ).toBe('skipped');
    expect(ran).toBe(false);
    expect(r.lines).toEqual(['could not withdraw the advert: Redis unreachable']);
    expect(r.cuts).toBe(1);
  });

  it('reports a step that fails, also one that throws at once', async () => {
    const r = recorder();
    expect(
      await boundedStep('close the queues', () => Promise.reject(new Error('boom')), r.options(50)),
    ).toBe('failed');
    const throwing = (): Promise<void> => {
      throw new Error('at once');
    };
    expect(await boundedStep('close the lanes', throwing, r.options(50))).toBe('failed');
    expect(r.lines).toEqual([
      'could not close the queues: boom',
      'could not close the lanes: at once',
    ]);
    expect(r.cuts).toBe(2);
  });

  it('gives a step no time once the deadline passed', async () => {
    const r = recorder();
    expect(await boundedStep('close the queues', never, r.options(0))).toBe('late');
    expect(r.lines).toEqual(['could not close the queues: no time left']);
  });

  it('survives a cut that throws and a step that fails after its bound', async () => {
    const lines: string[] = [];
    const late = () =>
      new Promise<void>((_resolve, reject) => setTimeout(reject, 100, new Error()));
    const outcome = await boundedStep('close', late, {
      withinMs: 10,
      log: (line) => lines.push(line),
      cut: () => {
        throw new Error('already closed');
      },
    });
    expect(outcome).toBe('late');
    await new Promise((resolve) => setTimeout(resolve, 150)); // no unhandled rejection
    expect(lines).toHaveLength(1);
  });
});

describe('Deadline', () => {
  it('counts down, never below zero, and caps a bound to what is left', () => {
    let now = 1000;
    const deadline = new Deadline(10_000, () => now);
    expect(deadline.remaining).toBe(10_000);
    expect(deadline.cap(2000)).toBe(2000);
    now += 9000;
    expect(deadline.cap(2000)).toBe(1000);
    const later = deadline.extended(2000);
    now += 2000;
    expect(deadline.remaining).toBe(0);
    expect(deadline.cap(2000)).toBe(0);
    expect(later.remaining).toBe(1000);
    now += 2000;
    expect(later.remaining).toBe(0);
  });
});

describe('redisUnreachable', () => {
  it('is null only when every connection is ready', () => {
    expect(redisUnreachable({ status: 'ready' }, { status: 'ready' })).toBeNull();
    expect(redisUnreachable({ status: 'ready' }, { status: 'reconnecting' })).toBe(
      'Redis unreachable',
    );
    expect(redisUnreachable({ status: 'connecting' })).toBe('Redis unreachable');
  });
});

describe('InFlight', () => {
  it('waits for the work in flight, also work started meanwhile, and for nothing when idle', async () => {
    const inFlight = new InFlight();
    await inFlight.idle();
    const order: string[] = [];
    let finishFirst!: () => void;
    const first = inFlight.run(
      () =>
        new Promise<string>((resolve) => {
          finishFirst = () => resolve('first');
        }),
    );
    expect(inFlight.size).toBe(1);
    const idle = inFlight.idle().then(() => order.push('idle'));
    const second = inFlight.run(() => Promise.reject(new Error('second failed')));
    await expect(second).rejects.toThrow('second failed');
    order.push('second');
    finishFirst();
    expect(await first).toBe('first');
    order.push('first');
    await idle;
    expect(order).toEqual(['second', 'first', 'idle']);
    expect(inFlight.size).toBe(0);
  });
});

describe('waitUntil', () => {
  it('resolves once the condition holds, at once if it already does', async () => {
    await waitUntil(() => true).reached;
    let ready = false;
    setTimeout(() => (ready = true), 120);
    const started = performance.now();
    await waitUntil(() => ready, 10).reached;
    expect(performance.now() - started).toBeGreaterThanOrEqual(100);
  });

  it('stops checking when cut, as the cut of a step', async () => {
    let checks = 0;
    const wait = waitUntil(() => {
      checks += 1;
      return false;
    }, 10);
    const lines: string[] = [];
    const outcome = await boundedStep('wait', () => wait.reached, {
      withinMs: 50,
      cut: wait.stop,
      log: (line) => lines.push(line),
    });
    expect(outcome).toBe('late');
    const after = checks;
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(checks).toBe(after);
  });
});
