/**
 * Upload bodies are received before a session is taken: the bytes go to a
 * staging file in the served repository's `annex/tmp` as they arrive, and only once the body
 * ended (complete, short, or cut) is a git-annex-shell session taken and the bytes handed over
 * at the speed of the disk. A client that sends slowly, or stops sending, holds no session and
 * no job slot meanwhile; one that stops for the idle limit is cut (cutWhenIdle), and what it
 * sent is handed over like any short body, so putoffset reports it.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, unlink } from 'node:fs/promises';
import * as path from 'node:path';
import { type Readable } from 'node:stream';
import { type PutOutcome } from './operations';
import { removeStaleStaging, STAGING_PREFIX } from './verified-put';

/** How long an upload body may bring no bytes before it is cut (the --upload-idle default). */
export const DEFAULT_UPLOAD_IDLE_MS = 60_000;

/** A staging file untouched this long is left from a server that died mid-upload. */
const STALE_STAGING_MS = 60 * 60 * 1000;

/**
 * The chunks of `body`; when none arrives for `idleMs`, the body ends there (as if the client
 * had ended it) and `body` is destroyed when it can be (a Readable, or the gateway's tap on a
 * request body: the client's connection closes). 0 never cuts.
 */
export async function* cutWhenIdle(
  body: AsyncIterable<Buffer>,
  idleMs: number,
  onCut: () => void = () => {},
): AsyncGenerator<Buffer> {
  if (idleMs <= 0) {
    yield* body;
    return;
  }
  const iterator = body[Symbol.asyncIterator]();
  for (;;) {
    let timer: NodeJS.Timeout | undefined;
    const idle = new Promise<'idle'>((resolve) => {
      timer = setTimeout(() => resolve('idle'), idleMs);
    });
    const next = iterator.next();
    let result: IteratorResult<Buffer> | 'idle';
    try {
      result = await Promise.race([next, idle]);
    } finally {
      clearTimeout(timer);
    }
    if (result === 'idle') {
      // The pending read settles when the stream is destroyed; nobody waits for it.
      next.catch(() => undefined);
      onCut();
      const destroy = (body as { destroy?: unknown }).destroy;
      if (typeof destroy === 'function') {
        (destroy as () => void).call(body);
      }
      return;
    }
    if (result.done === true) {
      return;
    }
    yield result.value;
  }
}

export interface StagedBody {
  /** Body bytes staged (at most the announced length). */
  readonly received: number;
  /** More bytes arrived than announced (the excess is not staged). */
  readonly long: boolean;
  /** Whether the body broke (the client went away) rather than ending. */
  readonly broken: boolean;
  /** Hex digest of the staged bytes, when an algorithm was asked for. */
  readonly digest?: string;
  /** The staged bytes from the start. */
  read(): Readable;
  /** Removes the staging file and ends every stream `read` gave that is still open. Idempotent. */
  discard(): Promise<void>;
}

const swept = new Set<string>();

/**
 * Receives `body` into a new staging file in `tmpDir`, reading at most `length` bytes of it (one
 * more shows a longer body), hashing them with `algorithm` when given. A body that breaks (the
 * client went away) ends where it broke.
 */
export async function stageBody(
  tmpDir: string,
  body: AsyncIterable<Buffer>,
  length: number,
  algorithm?: string,
): Promise<StagedBody> {
  await mkdir(tmpDir, { recursive: true });
  if (!swept.has(tmpDir)) {
    swept.add(tmpDir);
    await removeStaleStaging(tmpDir, Date.now() - STALE_STAGING_MS);
  }
  const file = path.join(tmpDir, `${STAGING_PREFIX}${randomBytes(12).toString('hex')}`);
  const handle = await open(file, 'wx', 0o600);
  const hash: Hash | undefined = algorithm === undefined ? undefined : createHash(algorithm);
  let received = 0;
  let long = false;
  let broken = false;
  let discarded = false;
  // A reader nobody consumed to its end (the repository already had the content, the job
  // failed) would hold its file descriptor until garbage collection.
  const readers = new Set<Readable>();
  // A reader opens the file asynchronously: the file goes only once every reader closed, since
  // removing it under an open still to come would make that reader emit ENOENT (a put refused
  // before its body was read, in a failover), an error nobody listens to.
  const discard = async () => {
    if (!discarded) {
      discarded = true;
      const closing = [...readers].map(
        (reader) =>
          new Promise<void>((resolve) => {
            if (reader.closed) {
              resolve();
            } else {
              reader.once('close', () => resolve());
            }
            // Nobody reads it any more: whatever it fails with now is of no interest.
            reader.on('error', () => undefined);
            reader.destroy();
          }),
      );
      readers.clear();
      await Promise.all(closing);
      await unlink(file).catch(() => undefined);
    }
  };
  const iterator = body[Symbol.asyncIterator]();
  try {
    for (;;) {
      let step: IteratorResult<Buffer>;
      try {
        step = await iterator.next();
      } catch {
        broken = true;
        break;
      }
      if (step.done === true) {
        break;
      }
      const chunk = step.value;
      const room = length - received;
      const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
      if (part.length > 0) {
        hash?.update(part);
        await handle.write(part);
        received += part.length;
      }
      if (chunk.length > room) {
        long = true;
        break;
      }
    }
  } catch (error) {
    await handle.close().catch(() => undefined);
    await discard();
    throw error;
  }
  await handle.close();
  return {
    received,
    long,
    broken,
    ...(hash === undefined ? {} : { digest: hash.digest('hex') }),
    read: () => {
      const reader = createReadStream(file, { highWaterMark: 256 * 1024 });
      readers.add(reader);
      reader.once('close', () => readers.delete(reader));
      return reader;
    },
    discard,
  };
}

/**
 * The answer a staged body of `length` announced bytes gets without any session: longer than
 * announced, or nothing arrived; undefined when it is to be handed over.
 */
export function answerWithoutSession(staged: StagedBody, length: number): PutOutcome | undefined {
  if (staged.long) {
    return { kind: 'long-body' };
  }
  if (staged.received === 0 && length > 0) {
    return { kind: 'short-body', received: 0 };
  }
  return undefined;
}
