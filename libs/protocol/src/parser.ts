// Incremental parser of the byte stream from `git-annex-shell p2pstdio` (PROTOCOL.md §1.2:
// '\n'-terminated lines, `DATA n` followed by exactly n raw bytes; §1.5 truncation).

import { ProtocolError } from './errors';
import { MAX_LINE_BYTES, type ServerMessage } from './messages';
import { parseServerLine } from './parse-server-line';

const LF = 0x0a;

export type ParserEvent =
  /** A parsed line. A `DATA n` line comes first, followed by its payload events. */
  | { type: 'message'; message: ServerMessage }
  /** Payload bytes of the current DATA (subarrays of the pushed chunk; never empty). */
  | { type: 'data'; chunk: Buffer }
  /** The DATA payload is complete (right after the message when n = 0). */
  | { type: 'data-end' };

export class P2PStreamParser {
  private readonly maxLineBytes: number;
  /** Copies of the bytes of the current partial line; at most maxLineBytes in total. */
  private partial: Buffer[] = [];
  private partialBytes = 0;
  private dataRemaining = 0;
  private broken: ProtocolError | undefined;
  private ended = false;

  constructor(options?: { maxLineBytes?: number }) {
    const max = options?.maxLineBytes ?? MAX_LINE_BYTES;
    if (!Number.isSafeInteger(max) || max < 1) {
      throw new RangeError(`maxLineBytes must be a positive integer, got ${String(max)}`);
    }
    this.maxLineBytes = max;
  }

  /** True while DATA payload bytes are pending. */
  get inData(): boolean {
    return this.dataRemaining > 0;
  }

  /**
   * Feeds bytes; returns the events they complete. Throws ProtocolError on an over-long or a
   * malformed line, after which the parser is unusable.
   */
  push(chunk: Buffer): ParserEvent[] {
    this.assertUsable();
    try {
      return this.consume(chunk);
    } catch (err) {
      this.broken =
        err instanceof ProtocolError ? err : new ProtocolError(`parser failed: ${String(err)}`);
      throw err;
    }
  }

  /**
   * The stream ended: throws ProtocolError if a partial line or DATA payload remains. Calling it
   * again after a clean end is harmless; push() after end() throws.
   */
  end(): void {
    if (this.broken === undefined && this.ended) {
      return;
    }
    this.assertUsable();
    this.ended = true;
    let problem: ProtocolError | undefined;
    if (this.dataRemaining > 0) {
      problem = new ProtocolError(
        `stream ended with ${this.dataRemaining} bytes of DATA payload missing`,
      );
    } else if (this.partialBytes > 0) {
      problem = new ProtocolError(`stream ended inside a line (${this.partialBytes} bytes)`);
    }
    if (problem !== undefined) {
      this.broken = problem;
      throw problem;
    }
  }

  private assertUsable(): void {
    if (this.broken !== undefined) {
      throw new ProtocolError(`parser unusable after an earlier error: ${this.broken.message}`);
    }
    if (this.ended) {
      throw new ProtocolError('parser used after end()');
    }
  }

  private consume(chunk: Buffer): ParserEvent[] {
    const events: ParserEvent[] = [];
    let pos = 0;
    while (pos < chunk.length) {
      if (this.dataRemaining > 0) {
        const n = Math.min(this.dataRemaining, chunk.length - pos);
        events.push({ type: 'data', chunk: chunk.subarray(pos, pos + n) });
        pos += n;
        this.dataRemaining -= n;
        if (this.dataRemaining === 0) {
          events.push({ type: 'data-end' });
        }
        continue;
      }
      const lf = chunk.indexOf(LF, pos);
      const lineEnd = lf === -1 ? chunk.length : lf;
      const lineBytes = this.partialBytes + (lineEnd - pos);
      if (lineBytes > this.maxLineBytes) {
        throw new ProtocolError(`server line longer than ${this.maxLineBytes} bytes`);
      }
      if (lf === -1) {
        // Copy: the caller may reuse its buffer, and the copy is bounded by maxLineBytes.
        this.partial.push(Buffer.from(chunk.subarray(pos)));
        this.partialBytes = lineBytes;
        break;
      }
      const line = this.takeLine(chunk.subarray(pos, lf));
      pos = lf + 1;
      const message = parseServerLine(line);
      events.push({ type: 'message', message });
      if (message.kind === 'DATA') {
        if (message.length === 0) {
          events.push({ type: 'data-end' });
        } else {
          this.dataRemaining = message.length;
        }
      }
    }
    return events;
  }

  private takeLine(tail: Buffer): Buffer {
    if (this.partial.length === 0) {
      return tail;
    }
    const line = Buffer.concat([...this.partial, tail], this.partialBytes + tail.length);
    this.partial = [];
    this.partialBytes = 0;
    return line;
  }
}
