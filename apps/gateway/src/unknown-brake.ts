/**
 * Slows the answers to lookups of uuids nobody serves once they come faster than any client
 * that is merely misconfigured asks for them, so that a client flooding the server with unknown
 * uuids gets few answers per connection and leaves the CPU to everyone else.
 *
 * A token bucket: `ratePerSecond` answers a second (and a burst of `burst`) go out at once; beyond
 * that each one waits `delayMs` first. The wait is a timer: it costs the server nothing while it
 * runs, and a flooding connection sends its next request only after its answer.
 */
export class UnknownBrake {
  private tokens: number;
  private refilledAt: number;

  constructor(
    private readonly ratePerSecond = 100,
    private readonly burst = 200,
    private readonly delayMs = 250,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = burst;
    this.refilledAt = now();
  }

  /** How long the answer to one more unknown uuid should wait (0: answer now). */
  take(): number {
    const now = this.now();
    this.tokens = Math.min(
      this.burst,
      this.tokens + ((now - this.refilledAt) / 1000) * this.ratePerSecond,
    );
    this.refilledAt = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return this.delayMs;
  }

  /** Waits as take() says. */
  async pass(): Promise<void> {
    const wait = this.take();
    if (wait > 0) {
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}
