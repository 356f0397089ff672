/**
 * Stall detection and the progress line. A workload reports progress (a request answered, bytes
 * received, a file done); if none comes within the stall bound, the watchdog aborts it and it is
 * reported as STALL with what it was doing, instead of hanging the whole run.
 */

export class StallError extends Error {
  constructor(
    readonly doing: string,
    readonly idleMs: number,
  ) {
    super(`no progress for ${Math.round(idleMs / 1000)} s while ${doing}`);
    this.name = 'StallError';
  }
}

/** What a running workload tells the watchdog. */
export class Progress {
  private last = Date.now();
  private text: string;

  constructor(doing: string) {
    this.text = doing;
  }

  /** Something moved; optionally a new description of the state. */
  tick(doing?: string): void {
    this.last = Date.now();
    if (doing !== undefined) {
      this.text = doing;
    }
  }

  /** Describes the state without counting as progress. */
  describe(doing: string): void {
    this.text = doing;
  }

  get doing(): string {
    return this.text;
  }

  get idleMs(): number {
    return Date.now() - this.last;
  }
}

export interface WatchOptions {
  /** no progress for this long → StallError */
  stallMs: number;
  /** the whole thing may not take longer than this (→ StallError too) */
  capMs?: number;
  /** called every half second with the current state, e.g. to update the progress line */
  onStatus?: (progress: Progress, elapsedMs: number) => void;
}

/**
 * Runs `work` under a watchdog. On a stall it aborts `signal`, gives `work` up to 15 s to wind
 * down (it should kill its clients when the signal fires) and throws a StallError.
 */
export async function watch<T>(
  initialDoing: string,
  { stallMs, capMs = Number.POSITIVE_INFINITY, onStatus }: WatchOptions,
  work: (progress: Progress, signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const progress = new Progress(initialDoing);
  const controller = new AbortController();
  const started = Date.now();
  let stall: StallError | undefined;
  let rejectStall: (error: StallError) => void = () => {};
  const stalled = new Promise<never>((_, reject) => {
    rejectStall = reject;
  });
  stalled.catch(() => {});
  const timer = setInterval(() => {
    const elapsed = Date.now() - started;
    onStatus?.(progress, elapsed);
    if (stall === undefined && (progress.idleMs >= stallMs || elapsed >= capMs)) {
      stall =
        elapsed >= capMs
          ? new StallError(`${progress.doing} (over the ${Math.round(capMs / 1000)} s cap)`, 0)
          : new StallError(progress.doing, progress.idleMs);
      controller.abort(stall);
      rejectStall(stall);
    }
  }, 500);
  const running = work(progress, controller.signal);
  try {
    return await Promise.race([running, stalled]);
  } catch (error) {
    if (stall !== undefined) {
      // let the workload end its clients, but do not wait for ever
      await Promise.race([
        running.catch(() => {}),
        new Promise((resolve) => setTimeout(resolve, 15_000)),
      ]);
      throw stall;
    }
    throw error;
  } finally {
    clearInterval(timer);
  }
}

/**
 * One status line on stderr: rewritten in place on a terminal; elsewhere (logs, CI) printed as
 * a new line when the prefix changes and at most every `quietMs` otherwise.
 */
export class StatusLine {
  private lastPrinted = 0;
  private lastPrefix = '';
  private visible = false;

  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly quietMs = 15_000,
  ) {}

  show(prefix: string, detail = ''): void {
    const text = detail === '' ? prefix : `${prefix} | ${detail}`;
    if (this.stream.isTTY) {
      const width = Math.max(20, (this.stream.columns || 100) - 1);
      this.stream.write(`\r\x1b[K${text.slice(0, width)}`);
      this.visible = true;
      return;
    }
    const now = Date.now();
    if (prefix !== this.lastPrefix || now - this.lastPrinted >= this.quietMs) {
      this.stream.write(`${text}\n`);
      this.lastPrinted = now;
      this.lastPrefix = prefix;
    }
  }

  /** Erases the line on a terminal (before other output). */
  clear(): void {
    if (this.visible && this.stream.isTTY) {
      this.stream.write('\r\x1b[K');
      this.visible = false;
    }
  }
}
