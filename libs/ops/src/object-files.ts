/**
 * Reading a repository's own object files directly (PROTOCOL.md §3), so that a GET or a
 * checkpresent of content that is plainly there needs no git-annex-shell session. git-annex
 * stores a key's content at `<gitdir>/annex/objects/<H>/<F>/<F>`, where F escapes the key and H is
 * one of two hash directory layouts; both are probed, and anything not found there is left to
 * git-annex itself. Keys are byte strings (PROTOCOL.md §1.2): the hash directories come from the
 * key's bytes, and the path of a key that is not UTF-8 is a Buffer, so that its bytes reach the
 * file system as they are. Only complete objects live there (git-annex moves content in from `tmp/` once
 * verified), so an object file found is content that may be sent.
 */
import { hash } from 'node:crypto';
import { constants, stat as statCallback, statSync, type Stats } from 'node:fs';
import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { bytesOfText, isPlainText, parseKey } from '@annex-p2phttp/protocol';

const MIXED_ALPHABET = '0123456789zqjxkmvwgpfZQJXKMVWGPF';

/** A file path as the file system takes it: the string when it is UTF-8, else its bytes. */
export type FsPath = string | Buffer;

/** The path that a byte string (byte-text in @annex-p2phttp/protocol) stands for. */
export function fsPath(text: string): FsPath {
  return isPlainText(text) ? text : bytesOfText(text);
}

/** The object file (and directory) name of a key: `&`→`&a`, `%`→`&s`, `:`→`&c`, `/`→`%`. */
export function objectFileName(key: string): string {
  let out = '';
  for (const ch of key) {
    switch (ch) {
      case '&':
        out += '&a';
        break;
      case '%':
        out += '&s';
        break;
      case ':':
        out += '&c';
        break;
      case '/':
        out += '%';
        break;
      default:
        out += ch;
    }
  }
  return out;
}

/** The key as hashed for its directory: without the chunk fields, so chunks share a directory. */
export function unchunkedKey(key: string): string {
  // The fields come before the first "--" (a variety holds no "-"): no -S or -C, no chunk.
  const fieldsEnd = key.indexOf('--');
  if (fieldsEnd >= 0) {
    const fields = key.slice(0, fieldsEnd);
    if (!fields.includes('-S') && !fields.includes('-C')) {
      return key;
    }
  }
  const info = parseKey(key);
  if (info.chunkSize === undefined && info.chunkNumber === undefined) {
    return key;
  }
  let out = info.variety;
  if (info.size !== undefined) {
    out += `-s${info.size}`;
  }
  if (info.mtime !== undefined) {
    out += `-m${info.mtime}`;
  }
  return `${out}--${info.name}`;
}

/** Both hash directory layouts of a key: `hashdirlower` (`d91/b11`) and `hashdirmixed` (`mK/4w`). */
export function hashDirectories(key: string): { lower: string; mixed: string } {
  const digest = hash('md5', bytesOfText(unchunkedKey(key)), 'buffer');
  const hex = digest.toString('hex');
  const w = digest.readUInt32LE(0);
  const letter = (shift: number) => MIXED_ALPHABET[(w >>> shift) & 31];
  return {
    lower: `${hex.slice(0, 3)}/${hex.slice(3, 6)}`,
    mixed: `${letter(6)}${letter(0)}/${letter(18)}${letter(12)}`,
  };
}

/**
 * A lookup is a stat of a path whose metadata the kernel normally has cached. Made synchronously
 * it costs a few microseconds; through libuv's thread pool it costs two thread hand-offs, which
 * were most of a checkpresent's CPU (as nginx does, the stat runs in the event loop). A stat that
 * took longer than this (a slow or network filesystem) sends the repository's lookups to the
 * thread pool for `SLOW_STAT_BACKOFF_MS`, so that a slow disk never stalls every request.
 */
const SLOW_STAT_MS = 2;
const SLOW_STAT_BACKOFF_MS = 60_000;

export interface ObjectFilesOptions {
  /** A synchronous stat slower than this sends lookups to the thread pool (default 2 ms). */
  readonly slowStatMs?: number;
}

/** Finds the object files of a repository's keys; caches each repository's git directory. */
export class ObjectFiles {
  private readonly gitDirs = new Map<string, Promise<string>>();
  private readonly objectDirs = new Map<string, Promise<string>>();
  /** Object directories whose stats were slow → when to try synchronous ones again. */
  private readonly slowUntil = new Map<string, number>();
  private readonly slowStatMs: number;

  constructor(options: ObjectFilesOptions = {}) {
    this.slowStatMs = options.slowStatMs ?? SLOW_STAT_MS;
  }

  /** Whether lookups in the repository go through the thread pool now (its stats were slow). */
  async statsInThreadPool(repoPath: string): Promise<boolean> {
    return !this.statsInline(await this.objectDir(repoPath));
  }

  /** The path of the key's object file if it is present, else undefined. */
  async locate(repoPath: string, key: string): Promise<FsPath | undefined> {
    const objects = await this.objectDir(repoPath);
    const name = objectFileName(key);
    const dirs = hashDirectories(key);
    // Plain concatenation is path.join here: `objects` is normalised, the hash directories are
    // two plain names, and an object file name holds no "/" and is never "." or "..".
    const sync = this.statsInline(objects);
    for (const hash of [dirs.mixed, dirs.lower]) {
      const file = fsPath(`${objects}/${hash}/${name}/${name}`);
      if (sync ? this.isFileInline(objects, file) : await isFile(file)) {
        return file;
      }
    }
    return undefined;
  }

  private statsInline(objects: string): boolean {
    const until = this.slowUntil.get(objects);
    if (until === undefined) {
      return true;
    }
    if (Date.now() < until) {
      return false;
    }
    this.slowUntil.delete(objects);
    return true;
  }

  private isFileInline(objects: string, file: FsPath): boolean {
    const started = performance.now();
    let found = false;
    try {
      found = statSync(file, { throwIfNoEntry: false })?.isFile() === true;
    } catch {
      // unreadable: not content that can be sent
    }
    if (performance.now() - started > this.slowStatMs) {
      this.slowUntil.set(objects, Date.now() + SLOW_STAT_BACKOFF_MS);
    }
    return found;
  }

  /** The size of an object file `locate` found; undefined if it went since. */
  async sizeOf(file: FsPath): Promise<number | undefined> {
    try {
      const info = await stat(file);
      return info.isFile() ? info.size : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * The size of git-annex's partial file of an interrupted upload of the key
   * (`annex/tmp/<key>`), the offset an upload resumes from; 0 when there is none.
   */
  async partialSize(repoPath: string, key: string): Promise<number> {
    const file = fsPath(
      path.join(await this.gitDir(repoPath), 'annex', 'tmp', objectFileName(key)),
    );
    try {
      const info = await stat(file);
      return info.isFile() ? info.size : 0;
    } catch {
      return 0;
    }
  }

  /** The repository's git directory (`REPO/.git`, or REPO itself when bare). */
  gitDir(repoPath: string): Promise<string> {
    let dir = this.gitDirs.get(repoPath);
    if (!dir) {
      dir = findGitDir(repoPath);
      this.gitDirs.set(repoPath, dir);
      dir.catch(() => this.gitDirs.delete(repoPath));
    }
    return dir;
  }

  /** `<gitdir>/annex/objects`, normalised. */
  private objectDir(repoPath: string): Promise<string> {
    let dir = this.objectDirs.get(repoPath);
    if (!dir) {
      dir = this.gitDir(repoPath).then((gitDir) => path.join(gitDir, 'annex', 'objects'));
      this.objectDirs.set(repoPath, dir);
      dir.catch(() => this.objectDirs.delete(repoPath));
    }
    return dir;
  }
}

/**
 * Whether `file` is a regular file (symlinks followed). The callback form of stat: on the
 * checkpresent path the promise form costs about twice the CPU per call.
 */
function isFile(file: FsPath): Promise<boolean> {
  return new Promise((resolve) => {
    statCallback(file, (error, stats) => resolve(error === null && stats.isFile()));
  });
}

/** `REPO/.git` (a directory, or a file naming one) for a repository with a work tree; else REPO. */
async function findGitDir(repoPath: string): Promise<string> {
  const dotGit = path.join(repoPath, '.git');
  let info: Stats;
  try {
    info = await stat(dotGit);
  } catch {
    return repoPath;
  }
  if (info.isDirectory()) {
    return dotGit;
  }
  const text = await readFile(dotGit, 'utf8');
  const match = /^gitdir:\s*(.+?)\s*$/m.exec(text);
  return match ? path.resolve(repoPath, match[1]!) : repoPath;
}

export interface ObjectRead {
  /** Bytes the body carries (one fewer when it ends short to signal a changed file). */
  readonly length: number;
  /** The file's size when it was opened. */
  readonly total: number;
  readonly body: Readable;
  /** Settles when the body ended or was destroyed; the file is closed by then. */
  readonly done: Promise<void>;
  /**
   * Names the stream the body is piped to, so that read buffers are reused once that stream has
   * handed everything written so far to the kernel (its `writableLength` is 0) instead of being
   * left to the garbage collector: with many parallel GETs this is most of the memory.
   */
  releaseWhenFlushed(sink: FlushedSink): void;
}

/** What the body is piped into: an HTTP response, say. */
export interface FlushedSink {
  readonly writableLength: number;
}

/** Buffers a body keeps for reuse; beyond it, buffers still in flight are left to the GC. */
const MAX_LENT = 4;

/** Bytes read per chunk: large enough for few syscalls, small enough for many parallel GETs. */
const CHUNK = 256 * 1024;

/**
 * Streams an object file from `offset`, at most `limit` bytes (a byte range) or to its end. When
 * `signalInvalid`, a file that changed while it was being sent (an unlocked file modified in
 * place: its size, mtime or inode moved) ends one byte short, the API's signal of invalid
 * content, as git-annex's own VALID/INVALID check would. Returns undefined if the file vanished
 * before it could be opened.
 */
export async function readObject(
  file: FsPath,
  offset: number,
  signalInvalid: boolean,
  limit?: number,
): Promise<ObjectRead | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch {
    return undefined;
  }
  let before: Stats;
  try {
    before = await handle.stat();
  } catch (error) {
    await handle.close();
    throw error;
  }
  const start = Math.min(offset, before.size);
  const length = Math.min(before.size - start, limit ?? Infinity);
  let position = start;
  let sink: FlushedSink | null = null;
  const free: Buffer[] = [];
  let lent: Buffer[] = [];
  const buffer = (): Buffer => {
    // Every chunk pushed so far was taken by the consumer and flushed out of the sink.
    if (
      sink !== null &&
      sink.writableLength === 0 &&
      body.readableLength === 0 &&
      lent.length > 0
    ) {
      free.push(...lent);
      lent = [];
    }
    const next = free.pop() ?? Buffer.allocUnsafeSlow(CHUNK);
    lent.push(next);
    if (lent.length > MAX_LENT) {
      lent.shift();
    }
    return next;
  };
  let settle!: (error?: Error) => void;
  const done = new Promise<void>((resolve, reject) => {
    settle = (error) => (error ? reject(error) : resolve());
  });
  done.catch(() => undefined);
  const body = new Readable({
    // No read-ahead: the next chunk is read only once the consumer asks for it, i.e. once the
    // response took the previous one (a response that has to queue it pauses the pipe until it
    // drained). Each body then holds about one chunk, not one queued plus one read ahead.
    highWaterMark: 0,
    read() {
      const remaining = start + length - position;
      if (remaining <= 0) {
        this.push(null);
        return;
      }
      const size = Math.min(CHUNK, remaining);
      handle.read(buffer(), 0, size, position).then(
        async ({ bytesRead, buffer }) => {
          if (bytesRead === 0) {
            // Truncated under us: the body ends short, which the client sees as invalid.
            this.push(null);
            return;
          }
          position += bytesRead;
          let chunk = buffer.subarray(0, bytesRead);
          if (
            position === start + length &&
            signalInvalid &&
            (await changed(handle, file, before))
          ) {
            chunk = chunk.subarray(0, chunk.length - 1);
          }
          if (chunk.length > 0) {
            this.push(chunk);
          }
          if (position === start + length) {
            this.push(null);
          }
        },
        (error: Error) => this.destroy(error),
      );
    },
    destroy(error, callback) {
      handle.close().then(
        () => callback(error),
        () => callback(error),
      );
    },
  });
  body.once('close', () => settle(body.readableEnded ? undefined : new Error('body destroyed')));
  if (length === 0) {
    body.push(null);
  }
  return {
    length,
    total: before.size,
    body,
    done,
    releaseWhenFlushed: (to) => {
      sink = to;
    },
  };
}

/** Whether the file changed since `before`: through the open handle, or replaced at its path. */
async function changed(handle: FileHandle, file: FsPath, before: Stats): Promise<boolean> {
  try {
    const [now, atPath] = await Promise.all([handle.stat(), stat(file)]);
    return (
      now.size !== before.size ||
      now.mtimeMs !== before.mtimeMs ||
      atPath.ino !== before.ino ||
      atPath.dev !== before.dev
    );
  } catch {
    return true;
  }
}
