/**
 * Receiving a large upload straight into the served repository (PROTOCOL.md §2.4 semantics).
 *
 * Through git-annex-shell an upload crosses a pipe and is hashed by git-annex as it arrives, which
 * caps a large upload well below what the client sends. For a key whose name carries the digest
 * of its whole content, this module instead writes the body to a staging file in the
 * repository's `annex/tmp` and hashes it on the way with the key's own algorithm. Only content
 * whose length and digest both match is handed to git-annex, which installs it with
 * `git annex setkey` (its own content locking, permissions and location log); git-annex is told
 * not to hash it a second time. Anything else gets the answer git-annex would give:
 * - a body that ends early keeps its bytes as git-annex's own partial file for the key, so that a
 *   putoffset reports them and the client resumes (the reference's behaviour);
 * - a body longer than announced, or content that does not match its key, stores nothing.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes, type Hash } from 'node:crypto';
import {
  mkdir,
  open,
  readdir,
  rename,
  stat,
  statfs,
  unlink,
  type FileHandle,
} from 'node:fs/promises';
import * as path from 'node:path';
import { isPlainText, parseKey } from '@annex-p2phttp/protocol';
import { objectFileName } from './object-files';

/** The digest a key names for its whole content, when Node can compute that algorithm. */
export interface ContentDigest {
  /** Node's name of the hash algorithm. */
  readonly algorithm: string;
  /** Lowercase hex, as in the key. */
  readonly digest: string;
  /** The content's size in bytes (the key's `-s` field). */
  readonly size: number;
}

/** git-annex hash backends (without the `E` suffix) and Node's names for them. */
const ALGORITHMS: ReadonlyMap<string, string> = new Map([
  ['MD5', 'md5'],
  ['SHA1', 'sha1'],
  ['SHA224', 'sha224'],
  ['SHA256', 'sha256'],
  ['SHA384', 'sha384'],
  ['SHA512', 'sha512'],
  ['SHA3_224', 'sha3-224'],
  ['SHA3_256', 'sha3-256'],
  ['SHA3_384', 'sha3-384'],
  ['SHA3_512', 'sha3-512'],
  ['BLAKE2B512', 'blake2b512'],
  ['BLAKE2S256', 'blake2s256'],
]);

/**
 * The digest named by a key of a whole-content hash backend with a size field (`SHA256E-s12--…`),
 * or undefined for every other key: chunks, keys without a size, WORM, URL, external backends,
 * hash lengths that do not fit the algorithm, and keys that are not UTF-8 (an extension of bytes
 * from an old archive): `git annex setkey` takes the key as an argument, and process arguments
 * from Node are UTF-8, so those go through git-annex-shell, which reads keys as bytes.
 */
export function contentDigestOf(key: string): ContentDigest | undefined {
  if (!isPlainText(key)) {
    return undefined;
  }
  let info;
  try {
    info = parseKey(key);
  } catch {
    return undefined;
  }
  if (
    info.size === undefined ||
    info.mtime !== undefined ||
    info.chunkSize !== undefined ||
    info.chunkNumber !== undefined
  ) {
    return undefined;
  }
  const withExtension = info.variety.endsWith('E');
  const backend = withExtension ? info.variety.slice(0, -1) : info.variety;
  const algorithm = ALGORITHMS.get(backend);
  if (algorithm === undefined) {
    return undefined;
  }
  const hexLength = createHash(algorithm).digest().length * 2;
  const digest = info.name.slice(0, hexLength);
  const rest = info.name.slice(hexLength);
  if (!/^[0-9a-f]*$/.test(digest) || digest.length !== hexLength) {
    return undefined;
  }
  if (rest !== '' && !(withExtension && rest.startsWith('.'))) {
    return undefined;
  }
  return { algorithm, digest, size: info.size };
}

export type VerifiedPutResult =
  /** The content matched its key and git-annex installed it (or refused: `stored` false). */
  | { readonly kind: 'done'; readonly stored: boolean }
  /** The body ended before `length` bytes; they are kept as the key's partial file. */
  | { readonly kind: 'short-body'; readonly received: number }
  /** The body was longer than `length`: nothing stored. */
  | { readonly kind: 'long-body' };

/** Bytes gathered before one write to the staging file. */
const WRITE_BATCH = 1024 * 1024;

/** Prefix of staging files in `annex/tmp`. */
export const STAGING_PREFIX = 'p2phttp-';

/**
 * A staging file untouched this long is left from a server that died mid-upload (a live upload
 * writes to its file continuously) and is removed.
 */
const STALE_STAGING_MS = 60 * 60 * 1000;

/** Free space a verified upload leaves untouched beyond twice its size; else git-annex decides. */
const SPACE_MARGIN = 1024 * 1024 * 1024;

/** Runs `git annex setkey`; resolves with its exit code and stderr. */
export type SetKeyRunner = (
  repoPath: string,
  key: string,
  file: string,
) => Promise<{ code: number | null; stderr: string }>;

/**
 * Smallest upload taken this way. Below it the pooled git-annex-shell session is cheaper than a
 * `git annex setkey` process per upload (measured with many parallel 256 KiB uploads).
 */
export const VERIFIED_PUT_MIN_BYTES = 32 * 1024 * 1024;

export interface VerifiedPutOptions {
  readonly setKey?: SetKeyRunner;
  readonly minBytes?: number;
}

export class VerifiedPut {
  private readonly swept = new Set<string>();
  private readonly setKey: SetKeyRunner;
  private readonly minBytes: number;

  constructor(options: VerifiedPutOptions = {}) {
    this.setKey = options.setKey ?? runSetKey;
    this.minBytes = options.minBytes ?? VERIFIED_PUT_MIN_BYTES;
  }

  /**
   * Whether an upload of `length` bytes for `key` into the repository at `gitDir` can take this
   * path: a large body of exactly the size of a whole-content digest key, and ample free space.
   */
  async applies(gitDir: string, key: string, length: number): Promise<ContentDigest | undefined> {
    if (length < this.minBytes) {
      return undefined;
    }
    const named = contentDigestOf(key);
    if (named === undefined || named.size !== length) {
      return undefined;
    }
    try {
      const fs = await statfs(path.join(gitDir, 'annex'));
      if (fs.bavail * fs.bsize < 2 * length + SPACE_MARGIN) {
        return undefined;
      }
    } catch {
      return undefined;
    }
    return named;
  }

  /**
   * Receives `body` (which must be `named.size` bytes) into the repository at `repoPath` (git
   * directory `gitDir`), verifies it against `named`, and has git-annex install it.
   */
  async receive(
    repoPath: string,
    gitDir: string,
    key: string,
    named: ContentDigest,
    body: AsyncIterable<Buffer>,
  ): Promise<VerifiedPutResult> {
    const tmpDir = path.join(gitDir, 'annex', 'tmp');
    await mkdir(tmpDir, { recursive: true });
    if (!this.swept.has(tmpDir)) {
      this.swept.add(tmpDir);
      await removeStaleStaging(tmpDir, Date.now() - STALE_STAGING_MS);
    }
    const staging = path.join(tmpDir, `${STAGING_PREFIX}${randomBytes(12).toString('hex')}`);
    const handle = await open(staging, 'wx', 0o644);
    let keep = false;
    try {
      const hash = createHash(named.algorithm);
      let received: number;
      try {
        received = await writeHashed(handle, hash, body, named.size);
      } catch (error) {
        // The client went away mid-body: what came is kept for a resume, as git-annex would.
        await handle.close().catch(() => undefined);
        keep = await keepPartial(staging, path.join(tmpDir, objectFileName(key)));
        throw error;
      }
      await handle.close();
      if (received > named.size) {
        return { kind: 'long-body' };
      }
      if (received < named.size) {
        keep = await keepPartial(staging, path.join(tmpDir, objectFileName(key)));
        return { kind: 'short-body', received };
      }
      if (hash.digest('hex') !== named.digest) {
        return { kind: 'done', stored: false };
      }
      // An earlier partial file is obsolete now, and git-annex would take it for a resumed
      // transfer that it must hash again.
      await unlink(path.join(tmpDir, objectFileName(key))).catch(() => undefined);
      const { code, stderr } = await this.setKey(repoPath, key, staging);
      if (code !== 0) {
        process.emitWarning(`git annex setkey ${key} failed (${String(code)}): ${stderr.trim()}`);
      }
      return { kind: 'done', stored: code === 0 };
    } finally {
      await handle.close().catch(() => undefined);
      if (!keep) {
        await unlink(staging).catch(() => undefined);
      }
    }
  }
}

/**
 * Writes and hashes the body in batches, one batch writing while the next arrives; stops reading
 * once more than `size` bytes came (the excess is neither hashed nor written). Returns the bytes
 * received.
 */
async function writeHashed(
  handle: FileHandle,
  hash: Hash,
  body: AsyncIterable<Buffer>,
  size: number,
): Promise<number> {
  let received = 0;
  let batch: Buffer[] = [];
  let batched = 0;
  let writing: Promise<unknown> = Promise.resolve();
  const flush = async () => {
    await writing;
    if (batched > 0) {
      writing = handle.writev(batch);
      // Settled by the next flush; an early failure must not go unhandled meanwhile.
      writing.catch(() => undefined);
      batch = [];
      batched = 0;
    }
  };
  try {
    for await (const chunk of body) {
      received += chunk.length;
      if (received > size) {
        return received;
      }
      hash.update(chunk);
      batch.push(chunk);
      batched += chunk.length;
      if (batched >= WRITE_BATCH) {
        await flush();
      }
    }
    await flush();
  } finally {
    await writing;
  }
  return received;
}

/** Removes staging files last written before `before` (epoch ms). */
export async function removeStaleStaging(tmpDir: string, before: number): Promise<void> {
  let names: string[];
  try {
    names = await readdir(tmpDir);
  } catch {
    return;
  }
  for (const name of names.filter((n) => n.startsWith(STAGING_PREFIX))) {
    const file = path.join(tmpDir, name);
    try {
      if ((await stat(file)).mtimeMs < before) {
        await unlink(file);
      }
    } catch {
      // gone meanwhile
    }
  }
}

/**
 * Makes the staging file git-annex's partial file for the key (`annex/tmp/<key>`), unless one at
 * least as long is there already. Returns whether the staging file was moved.
 */
async function keepPartial(staging: string, partial: string): Promise<boolean> {
  try {
    const [ours, theirs] = await Promise.all([stat(staging), stat(partial).catch(() => undefined)]);
    if (ours.size === 0 || (theirs !== undefined && theirs.size >= ours.size)) {
      return false;
    }
    await rename(staging, partial);
    return true;
  } catch {
    return false;
  }
}

/** `git annex setkey KEY FILE` in the repository, with verification off: the digest was checked. */
export const runSetKey: SetKeyRunner = (repoPath, key, file) =>
  new Promise((resolve) => {
    const child = spawn(
      'git',
      ['-c', 'annex.verify=false', 'annex', 'setkey', '--quiet', '--', key, file],
      { cwd: repoPath, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text: string) => {
      if (stderr.length < 4096) {
        stderr += text;
      }
    });
    child.once('error', (error) => resolve({ code: null, stderr: error.message }));
    child.once('close', (code) => resolve({ code, stderr }));
  });
