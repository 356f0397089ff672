/**
 * Shutdown that cannot hang. Every role stops in steps (withdraw the advert, let jobs finish,
 * close queues and connections); a step that needs Redis must not hold the process up when Redis
 * is unreachable (ioredis retries forever, BullMQ's close() waits for its connections) or
 * connected but mute. So each step runs within a bound; one that cannot run, fails or does not
 * finish in time is reported in one log line ("could not withdraw the advert: Redis
 * unreachable"), whatever it waits on is cut (a connection disconnected), and shutdown goes on.
 */
/** What requests and jobs in flight get after SIGTERM before they are cut (README). */
export const SHUTDOWN_GRACE_MS = 10_000;
/** What cleanup after the grace (ending what was cut, closing connections) takes at most. */
export const SHUTDOWN_CLEANUP_MS = 2_000;
/** What one step that talks to Redis takes at most. */
export const REDIS_STEP_MS = 2_000;
/** Why a step that talks to Redis ran out of time. */
export const NO_ANSWER_FROM_REDIS = 'no answer from Redis';

/** A point in time steps are bounded by. */
export class Deadline {
  private readonly at: number;

  constructor(
    ms: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.at = now() + ms;
  }

  /** Milliseconds left, never negative. */
  get remaining(): number {
    return Math.max(0, this.at - this.now());
  }

  /** `ms`, or what is left if that is less. */
  cap(ms: number): number {
    return Math.min(ms, this.remaining);
  }

  /** A deadline `ms` after this one. */
  extended(ms: number): Deadline {
    return new Deadline(this.at - this.now() + ms, this.now);
  }
}

export interface StepOptions {
  /** How long the step may take; 0 or less: no time is left for it. */
  readonly withinMs: number;
  /** Why the step cannot run now (e.g. "Redis unreachable"); it is skipped and reported. */
  readonly skip?: string | null;
  /** What is missing when the step runs out of time (default "not done"): "… within 2 s". */
  readonly late?: string;
  /** Ends what the step would wait on, when it was skipped, failed or ran out of time. */
  readonly cut?: () => void;
  /** Where the one line about a step that could not be done goes. */
  readonly log: (message: string) => void;
}

export type StepOutcome = 'done' | 'skipped' | 'failed' | 'late';

/**
 * Runs `work` (a step described as "<verb> …", e.g. "withdraw the advert") within
 * `options.withinMs`. Never throws: anything but 'done' is logged as `could not <what>: <why>`
 * and cut.
 */
export async function boundedStep(
  what: string,
  work: () => Promise<unknown>,
  options: StepOptions,
): Promise<StepOutcome> {
  const { withinMs, skip, late: missing = 'not done', cut, log } = options;
  const giveUp = (outcome: Exclude<StepOutcome, 'done'>, why: string): StepOutcome => {
    log(`could not ${what}: ${why}`);
    try {
      cut?.();
    } catch {
      // Cutting is best effort: the process is stopping anyway.
    }
    return outcome;
  };
  if (skip) {
    return giveUp('skipped', skip);
  }
  if (withinMs <= 0) {
    return giveUp('late', 'no time left');
  }
  const running = Promise.resolve().then(work);
  running.catch(() => undefined); // a failure after the bound is no one's concern
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), withinMs);
  });
  try {
    if ((await Promise.race([running.then(() => 'done' as const), late])) === 'late') {
      return giveUp('late', `${missing} within ${seconds(withinMs)}`);
    }
    return 'done';
  } catch (error) {
    return giveUp('failed', error instanceof Error ? error.message : String(error));
  } finally {
    clearTimeout(timer);
  }
}

/**
 * "Redis unreachable" unless every connection is connected, else null. A step that needs Redis is
 * skipped at once then (a connection that is connected but mute is bounded by the step instead).
 */
export function redisUnreachable(
  ...connections: readonly { readonly status: string }[]
): string | null {
  return connections.every((connection) => connection.status === 'ready')
    ? null
    : 'Redis unreachable';
}

/**
 * A wait for `condition()` to hold, checked every `intervalMs` (state that has no event to wait
 * for, e.g. whether a BullMQ worker still runs). `stop()` ends the checking; `reached` then never
 * resolves. Meant as a step's work, with `stop` as its cut.
 */
export function waitUntil(
  condition: () => boolean,
  intervalMs = 50,
): { readonly reached: Promise<void>; readonly stop: () => void } {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const reached = new Promise<void>((resolve) => {
    const check = () => {
      if (stopped) {
        return;
      }
      if (condition()) {
        resolve();
      } else {
        timer = setTimeout(check, intervalMs);
      }
    };
    check();
  });
  return {
    reached,
    stop: () => {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/** Work in flight (jobs, lock requests), so that shutdown can wait for it to end by itself. */
export class InFlight {
  private readonly running = new Set<Promise<unknown>>();

  get size(): number {
    return this.running.size;
  }

  /** Runs `work`, counted until it settles. */
  run<T>(work: () => Promise<T>): Promise<T> {
    const result = Promise.resolve().then(work);
    const settled = result.then(
      () => undefined,
      () => undefined,
    );
    this.running.add(settled);
    void settled.then(() => this.running.delete(settled));
    return result;
  }

  /** Resolves once nothing is in flight (at once if nothing is). */
  async idle(): Promise<void> {
    while (this.running.size > 0) {
      await Promise.all([...this.running]);
    }
  }
}

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(1))} s`;
}
