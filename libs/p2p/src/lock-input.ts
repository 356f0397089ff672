/**
 * The input of a session that holds a retention lock: a FIFO opened for reading and writing, given
 * to the session as its stdin, so that the session itself keeps a writer open and its input never
 * ends, whoever else closes it (PROTOCOL.md §1.5: the end of input unlocks and deletes the
 * retention file). The FIFO's name is removed at once; the open descriptors keep it alive.
 */
import { execFile } from 'node:child_process';
import { createWriteStream, open } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { type Writable } from 'node:stream';

export interface LockInput {
  /** The descriptor to give the session as its stdin. */
  readonly fd: number;
  /** Writes to the session. */
  readonly stream: Writable;
  /** Closes this process's descriptor (the session keeps its own). Idempotent. */
  close(): void;
}

export async function openLockInput(mkfifo = 'mkfifo'): Promise<LockInput> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'annex-p2phttp-lock-'));
  try {
    const fifo = path.join(dir, 'input');
    await new Promise<void>((resolve, reject) => {
      execFile(mkfifo, ['-m', '600', fifo], (error) => {
        if (error) {
          reject(new Error(`cannot make a FIFO for a lock's session: ${error.message}`));
        } else {
          resolve();
        }
      });
    });
    // Opening a FIFO for reading and writing does not wait for a peer.
    const fd = await new Promise<number>((resolve, reject) => {
      open(fifo, 'r+', (error, opened) => (error ? reject(error) : resolve(opened)));
    });
    const stream = createWriteStream('', { fd, autoClose: true });
    stream.on('error', () => undefined);
    let closed = false;
    return {
      fd,
      stream,
      close: () => {
        if (!closed) {
          closed = true;
          stream.destroy();
        }
      },
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
