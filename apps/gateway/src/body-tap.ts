/**
 * A put's request body, tapped as soon as it arrives (server.ts), so that the bytes of a client
 * that goes away are not lost before the upload is staged (libs/ops upload-staging.ts, which takes
 * any `AsyncIterable<Buffer>`).
 */
import { type Readable } from 'node:stream';

/**
 * A request body read from the moment it is tapped: its chunks are queued here (up to
 * `highWater` bytes, then the source is paused) so that a client that goes away loses nothing
 * that arrived: a destroyed stream drops what it buffered, the tap keeps it. Iterating yields
 * every chunk that arrived, then ends, or throws when the body broke.
 */
export class BodyTap implements AsyncIterable<Buffer> {
  private readonly chunks: Buffer[] = [];
  private queued = 0;
  private ended = false;
  private broken: Error | null = null;
  private discarding = false;
  private wake: (() => void) | null = null;

  constructor(
    private readonly source: Readable,
    private readonly highWater = 1024 * 1024,
  ) {
    source.on('data', (chunk: Buffer) => {
      if (this.discarding) {
        return;
      }
      this.chunks.push(chunk);
      this.queued += chunk.length;
      if (this.queued >= this.highWater) {
        source.pause();
      }
      this.notify();
    });
    source.once('end', () => {
      this.ended = true;
      this.notify();
    });
    source.on('error', (error: Error) => {
      this.broken ??= error;
      this.notify();
    });
    // An HTTP request whose connection ends mid-body is destroyed, and a destroyed stream drops
    // what it buffered while paused; 'aborted' comes first, with that buffer still readable.
    source.once('aborted', () => {
      while (source.readableLength > 0 && source.read() !== null) {
        // read() hands each buffered chunk to the 'data' listener above.
      }
    });
    source.once('close', () => {
      if (!this.ended) {
        this.broken ??= new Error('the request body ended before it was complete');
      }
      this.notify();
    });
  }

  /** Whether the whole body arrived. */
  get complete(): boolean {
    return this.ended;
  }

  /** Ends the body now (the client's connection closes). */
  destroy(): void {
    this.source.destroy();
  }

  /** Reads the rest of the body and drops it. */
  discard(): void {
    this.discarding = true;
    this.chunks.length = 0;
    this.queued = 0;
    this.source.resume();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    for (;;) {
      const chunk = this.chunks.shift();
      if (chunk !== undefined) {
        this.queued -= chunk.length;
        if (this.queued < this.highWater && this.source.isPaused() && !this.discarding) {
          this.source.resume();
        }
        yield chunk;
        continue;
      }
      if (this.ended) {
        return;
      }
      if (this.broken) {
        throw this.broken;
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }
}
