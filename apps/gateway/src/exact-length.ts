/**
 * A body sent with a Content-Length must be exactly that long. The key routes announce the length
 * before the first byte, but a body may still end early on purpose: git-annex's API signals
 * content that proved invalid (a file modified while it was sent) by ending the body one byte
 * short. With a Content-Length that short end must not look like a complete response followed by
 * a keep-alive connection (the client would wait for the missing byte, or read the next answer
 * as part of this one): the connection is cut instead, which every HTTP client, git-annex's
 * included, takes as a failed transfer.
 */
import { type ServerResponse } from 'node:http';
import { pipeline, Transform, type Readable } from 'node:stream';

/** What a body that reuses its buffers needs to know about where they went (object-files.ts). */
export interface FlushedSink {
  readonly writableLength: number;
}

/**
 * Passes `body` through, counting; when it ends before `length` bytes the response's connection
 * is destroyed instead of ended. Destroying the result (a client gone) destroys `body`. `sink` is
 * what the body's bytes are buffered in until the kernel took them.
 */
export function exactLength(
  body: Readable,
  length: number,
  response: ServerResponse,
): { readonly stream: Readable; readonly sink: FlushedSink } {
  let sent = 0;
  const guard = new Transform({
    // Passes chunks on as they come: no buffering beyond what the response queues.
    readableHighWaterMark: 0,
    writableHighWaterMark: 0,
    transform(chunk: Buffer, _encoding, callback) {
      sent += chunk.length;
      if (sent > length) {
        callback(new Error(`body longer than its Content-Length ${length}`));
        return;
      }
      callback(null, chunk);
    },
    flush(callback) {
      if (sent < length) {
        response.destroy();
      }
      callback();
    },
  });
  pipeline(body, guard, () => {});
  const sink: FlushedSink = {
    get writableLength() {
      return guard.writableLength + guard.readableLength + response.writableLength;
    },
  };
  return { stream: guard, sink };
}
