import { createHash } from 'node:crypto';
import {
  existsSync,
  readdirSync,
  readFileSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  contentDigestOf,
  ObjectFiles,
  objectFileName,
  removeStaleStaging,
  VerifiedPut,
  type ContentDigest,
} from '@annex-p2phttp/ops';
import { makeRepo, run, type TestRepo } from './support';

/** Every hash backend this module verifies, as git-annex names it. */
const BACKENDS = [
  'MD5',
  'MD5E',
  'SHA1',
  'SHA1E',
  'SHA224',
  'SHA256',
  'SHA256E',
  'SHA384E',
  'SHA512',
  'SHA512E',
  'SHA3_224',
  'SHA3_256E',
  'SHA3_384',
  'SHA3_512E',
  'BLAKE2B512E',
  'BLAKE2S256',
];

async function* chunks(...parts: Buffer[]): AsyncIterable<Buffer> {
  for (const part of parts) {
    yield part;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

async function* failing(part: Buffer): AsyncIterable<Buffer> {
  yield part;
  await Promise.resolve();
  throw new Error('client went away');
}

describe('contentDigestOf', () => {
  let repo: TestRepo;
  const content = Buffer.from('verified put content\n');
  beforeAll(() => {
    repo = makeRepo('verified-digest-');
    writeFileSync(join(repo.path, 'file.tar.gz'), content);
  });
  afterAll(() => repo.remove());

  it.each(BACKENDS)('reads the digest of a %s key that git-annex computed', (backend) => {
    const key = run(repo.path, 'git', ['annex', 'calckey', `--backend=${backend}`, 'file.tar.gz']);
    const named = contentDigestOf(key);
    expect(named).toBeDefined();
    expect(named!.size).toBe(content.length);
    expect(createHash(named!.algorithm).update(content).digest('hex')).toBe(named!.digest);
  });

  it.each([
    ['a key without a hash backend', 'WORM-s3-m1700000000--a'],
    ['a URL key', 'URL--http://example.com/a'],
    ['a key without a size', 'SHA256E--' + 'a'.repeat(64)],
    ['a chunk', `SHA256E-s10-S5-C2--${'a'.repeat(64)}.txt`],
    ['a short digest', `SHA256E-s10--${'a'.repeat(63)}`],
    ['a long digest without extension', `SHA256-s10--${'a'.repeat(65)}`],
    ['upper-case hex', `SHA256-s10--${'A'.repeat(64)}`],
    ['an extension on a backend without E', `SHA256-s10--${'a'.repeat(64)}.txt`],
    ['junk after the digest', `SHA256E-s10--${'a'.repeat(64)}x`],
    ['a BLAKE2 length Node cannot compute', `BLAKE2B256-s10--${'a'.repeat(64)}`],
    ['an external backend', `XFOO-s10--${'a'.repeat(64)}`],
    ['no key at all', 'not a key'],
  ])('declines %s', (_what, key) => {
    expect(contentDigestOf(key)).toBeUndefined();
  });
});

describe('VerifiedPut', () => {
  let repo: TestRepo;
  let gitDir: string;
  const objects = new ObjectFiles();
  const verified = new VerifiedPut({ minBytes: 1024 * 1024 });
  const content = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
  let key: string;
  let named: ContentDigest;

  beforeAll(async () => {
    repo = makeRepo('verified-put-');
    gitDir = await objects.gitDir(repo.path);
    writeFileSync(join(repo.path, 'probe.bin'), content);
    key = run(repo.path, 'git', ['annex', 'calckey', 'probe.bin']);
    named = contentDigestOf(key)!;
  });
  afterAll(() => repo.remove());

  const tmpEntries = () => {
    const dir = join(gitDir, 'annex', 'tmp');
    return existsSync(dir) ? readdirSync(dir) : [];
  };
  const partialFile = () => join(gitDir, 'annex', 'tmp', objectFileName(key));

  it('applies only to a large body of exactly the key size', async () => {
    expect(await verified.applies(gitDir, key, content.length)).toEqual(named);
    expect(await verified.applies(gitDir, key, content.length - 1)).toBeUndefined();
    expect(await new VerifiedPut().applies(gitDir, key, content.length)).toBeUndefined();
    expect(await verified.applies(gitDir, 'WORM-s3-m1--a', 3)).toBeUndefined();
  });

  it('stores nothing when the content does not match its key', async () => {
    const wrong = Buffer.from(content);
    wrong[wrong.length - 1] = 8;
    const result = await verified.receive(repo.path, gitDir, key, named, chunks(wrong));
    expect(result).toEqual({ kind: 'done', stored: false });
    expect(await objects.locate(repo.path, key)).toBeUndefined();
    expect(tmpEntries()).toEqual([]);
  });

  it('stores nothing from a body longer than the key', async () => {
    const result = await verified.receive(
      repo.path,
      gitDir,
      key,
      named,
      chunks(content, Buffer.from('x')),
    );
    expect(result).toEqual({ kind: 'long-body' });
    expect(await objects.locate(repo.path, key)).toBeUndefined();
    expect(tmpEntries()).toEqual([]);
  });

  it('keeps a short body as the partial file git-annex resumes from', async () => {
    const part = content.subarray(0, 1024 * 1024);
    const result = await verified.receive(repo.path, gitDir, key, named, chunks(part));
    expect(result).toEqual({ kind: 'short-body', received: part.length });
    expect(statSync(partialFile()).size).toBe(part.length);
    expect(tmpEntries()).toEqual([objectFileName(key)]);
    // git-annex itself offers to resume from there.
    const reply = run(repo.path, 'sh', [
      '-c',
      `printf 'VERSION 1\\nPUT x %s\\nDATA 0\\nINVALID\\n' '${key}' | git-annex-shell p2pstdio "$PWD" ${repo.uuid} --uuid ${repo.uuid} 2>/dev/null || true`,
    ]);
    expect(reply).toContain(`PUT-FROM ${part.length}`);
  });

  it('keeps what came before the client went away, never a shorter copy over a longer one', async () => {
    const shorter = content.subarray(0, 1000);
    await expect(verified.receive(repo.path, gitDir, key, named, failing(shorter))).rejects.toThrow(
      'client went away',
    );
    expect(statSync(partialFile()).size).toBe(1024 * 1024);
    const longer = content.subarray(0, 2 * 1024 * 1024);
    await expect(verified.receive(repo.path, gitDir, key, named, failing(longer))).rejects.toThrow(
      'client went away',
    );
    expect(statSync(partialFile()).size).toBe(longer.length);
    expect(tmpEntries()).toEqual([objectFileName(key)]);
  });

  it('reports a refusal by git-annex as not stored and removes its staging file', async () => {
    const refusing = new VerifiedPut({
      setKey: () => Promise.resolve({ code: 1, stderr: 'refused' }),
    });
    const result = await refusing.receive(repo.path, gitDir, key, named, chunks(content));
    expect(result).toEqual({ kind: 'done', stored: false });
    expect(await objects.locate(repo.path, key)).toBeUndefined();
    // The whole content came, so the earlier partial file went (it is obsolete), and so did the
    // staging file git-annex refused.
    expect(tmpEntries()).toEqual([]);
  });

  it('has git-annex install verified content and record it', async () => {
    // An obsolete partial file must neither survive nor make git-annex hash the content again.
    writeFileSync(partialFile(), content.subarray(0, 10));
    const half = content.length >> 1;
    const result = await verified.receive(
      repo.path,
      gitDir,
      key,
      named,
      chunks(content.subarray(0, half), content.subarray(half)),
    );
    expect(result).toEqual({ kind: 'done', stored: true });
    const file = await objects.locate(repo.path, key);
    expect(file).toBeDefined();
    expect(readFileSync(file!).equals(content)).toBe(true);
    // git-annex records the copy in its location log and its own fsck agrees.
    expect(run(repo.path, 'git', ['annex', 'whereis', '--key', key])).toContain(repo.uuid);
    run(repo.path, 'git', ['annex', 'fsck', '--key', key, '--quiet']);
    expect(tmpEntries()).toEqual([]);
  });

  it('removes staging files a dead server left, and only those', async () => {
    const tmp = join(gitDir, 'annex', 'tmp');
    writeFileSync(join(tmp, 'p2phttp-stale'), 'x');
    writeFileSync(join(tmp, 'p2phttp-live'), 'x');
    const hourAgo = (Date.now() - 2 * 60 * 60 * 1000) / 1000;
    utimesSync(join(tmp, 'p2phttp-stale'), hourAgo, hourAgo);
    await removeStaleStaging(tmp, Date.now() - 60 * 60 * 1000);
    expect(existsSync(join(tmp, 'p2phttp-stale'))).toBe(false);
    expect(existsSync(join(tmp, 'p2phttp-live'))).toBe(true);
  });
});
