import { execFileSync } from 'node:child_process';
import { createServer, get as httpGet } from 'node:http';
import { type AddressInfo } from 'node:net';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashDirectories, objectFileName, ObjectFiles, readObject } from '@annex-p2phttp/ops';
import { bytesOfText, textOfBytes } from '@annex-p2phttp/protocol';
import { GIT_ENV, makeRepo, run, type TestRepo } from './support';

async function drain(body: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) {
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

const KEYS = [
  'SHA256E-s1048576--5e1f3c0f6a4a6b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c.bin',
  'SHA256E-s10-S5-C2--abcdef.txt',
  'WORM-s3-m1700000000--a/b&c:d%e',
  'URL--http://example.com/a,32b/c',
  'MD5-s0--d41d8cd98f00b204e9800998ecf8427e',
];

describe('object file names and hash directories', () => {
  let repo: TestRepo;
  beforeAll(() => {
    repo = makeRepo('object-files-');
  });
  afterAll(() => repo.remove());

  it.each(KEYS)('match git-annex examinekey for %s', (key) => {
    const out = execFileSync(
      'git',
      ['annex', 'examinekey', key, '--format=${hashdirlower}\\n${hashdirmixed}\\n${objectpath}\\n'],
      { cwd: repo.path, env: GIT_ENV, encoding: 'utf8' },
    ).split('\n');
    const dirs = hashDirectories(key);
    expect(`${dirs.lower}/`).toBe(out[0]);
    expect(`${dirs.mixed}/`).toBe(out[1]);
    const name = objectFileName(key);
    expect(out[2]).toBe(`.git/annex/objects/${dirs.mixed}/${name}/${name}`);
    expect(name).not.toContain('/');
  });

  it('escapes the characters git-annex escapes', () => {
    expect(objectFileName('WORM-s3--a/b&c:d%e')).toBe('WORM-s3--a%b&ac&cd&se');
  });
});

describe('keys that are not UTF-8 (byte strings)', () => {
  let repo: TestRepo;
  beforeAll(() => {
    repo = makeRepo('object-bytes-');
  });
  afterAll(() => repo.remove());

  // WORM-- ff fe 80; a SHA256E key whose extension is Latin-1 "déjà"; one with escaped characters
  const KEY_BYTES = [
    Buffer.concat([Buffer.from('WORM--'), Buffer.from([0xff, 0xfe, 0x80])]),
    Buffer.from(`SHA256E-s1--${'ab'.repeat(32)}.d\xe9j\xe0`, 'latin1'),
    Buffer.from('WORM-s3--a/\xff&%:', 'latin1'),
  ];

  /** `git annex examinekey --batch` (keys as bytes on stdin): lower, mixed, objectpath. */
  function examine(key: Buffer): Buffer[] {
    const out = execFileSync(
      'git',
      [
        'annex',
        'examinekey',
        '--batch',
        '--format=${hashdirlower}\\n${hashdirmixed}\\n${objectpath}\\n',
      ],
      { cwd: repo.path, env: GIT_ENV, input: Buffer.concat([key, Buffer.from('\n')]) },
    );
    const lines: Buffer[] = [];
    for (let start = 0, end = out.indexOf(0x0a); end >= 0; end = out.indexOf(0x0a, start)) {
      lines.push(out.subarray(start, end));
      start = end + 1;
    }
    return lines;
  }

  it.each(KEY_BYTES.map((key) => [key.toString('latin1'), key]))(
    'hash directories and object path match git-annex for %s',
    async (_name, keyBytes) => {
      const key = textOfBytes(keyBytes);
      const [lower, mixed, objectPath] = examine(keyBytes);
      const dirs = hashDirectories(key);
      expect(`${dirs.lower}/`).toBe(lower?.toString());
      expect(`${dirs.mixed}/`).toBe(mixed?.toString());
      const name = objectFileName(key);
      expect(bytesOfText(`.git/annex/objects/${dirs.mixed}/${name}/${name}`)).toEqual(objectPath);
      // an object file put where git-annex keeps it is found and read, by its bytes
      const file = Buffer.concat([Buffer.from(`${repo.path}/`), objectPath!]);
      mkdirSync(file.subarray(0, file.lastIndexOf(0x2f)), { recursive: true });
      writeFileSync(file, 'content');
      const found = await new ObjectFiles().locate(repo.path, key);
      expect(found).toEqual(file);
      const read = (await readObject(found!, 2, true))!;
      expect((await drain(read.body)).toString()).toBe('ntent');
    },
  );
});

describe('ObjectFiles and readObject', () => {
  let repo: TestRepo;
  let bare: string;
  let key: string;
  const content = Buffer.alloc(600_000, 7).fill(9, 300_000);

  beforeAll(() => {
    repo = makeRepo('object-read-');
    key = repo.add('data.bin', content);
    bare = mkdtempSync(join(tmpdir(), 'object-bare-'));
    run(bare, 'git', ['clone', '-q', '--bare', repo.path, '.']);
    run(bare, 'git', ['annex', 'init', '-q', 'bare']);
    run(repo.path, 'git', ['remote', 'add', 'bare', bare]);
    run(repo.path, 'git', ['annex', 'copy', '-q', '--to', 'bare', 'data.bin']);
  });
  afterAll(() => {
    repo.remove();
    rmSync(bare, { recursive: true, force: true });
  });

  it('finds present objects in work-tree and bare repositories, and nothing else', async () => {
    const files = new ObjectFiles();
    const inRepo = await files.locate(repo.path, key);
    expect(inRepo).toBe(join(repo.path, run(repo.path, 'git', ['annex', 'contentlocation', key])));
    const inBare = await files.locate(bare, key);
    expect(inBare).toBe(join(bare, run(bare, 'git', ['annex', 'contentlocation', key])));
    expect(inBare).toContain(`/annex/objects/${hashDirectories(key).lower}/`);
    expect(await files.locate(repo.path, 'SHA256E-s1--00.bin')).toBeUndefined();
  });

  it('finds the same through the thread pool once a stat was slow', async () => {
    const fast = new ObjectFiles();
    expect(await fast.locate(repo.path, key)).toBeDefined();
    expect(await fast.statsInThreadPool(repo.path)).toBe(false);
    // Every stat counts as slow: the first lookup is made inline, the next ones in the pool.
    const slow = new ObjectFiles({ slowStatMs: -1 });
    expect(await slow.statsInThreadPool(repo.path)).toBe(false);
    const first = await slow.locate(repo.path, key);
    expect(await slow.statsInThreadPool(repo.path)).toBe(true);
    expect(await slow.statsInThreadPool(bare)).toBe(false);
    expect(await slow.locate(repo.path, key)).toBe(first);
    expect(first).toBe(await fast.locate(repo.path, key));
    expect(await slow.locate(repo.path, 'SHA256E-s1--00.bin')).toBeUndefined();
  });

  it('streams the whole object, or from an offset', async () => {
    const file = (await new ObjectFiles().locate(repo.path, key))!;
    const whole = (await readObject(file, 0, true))!;
    expect(whole.length).toBe(content.length);
    expect((await drain(whole.body)).equals(content)).toBe(true);
    await whole.done;
    const tail = (await readObject(file, 450_000, true))!;
    expect(tail.length).toBe(150_000);
    expect((await drain(tail.body)).equals(content.subarray(450_000))).toBe(true);
    const beyond = (await readObject(file, 10_000_000, true))!;
    expect(beyond.length).toBe(0);
    expect((await drain(beyond.body)).length).toBe(0);
  });

  it('streams a byte range: at most `limit` bytes from the offset, and tells the size', async () => {
    const file = (await new ObjectFiles().locate(repo.path, key))!;
    for (const [offset, limit] of [
      [0, 1],
      [300_000, 262_145],
      [content.length - 5, 5],
      [content.length - 5, 100],
    ] as const) {
      const part = (await readObject(file, offset, true, limit))!;
      const expected = content.subarray(offset, offset + limit);
      expect(part.length).toBe(expected.length);
      expect(part.total).toBe(content.length);
      expect((await drain(part.body)).equals(expected)).toBe(true);
      await part.done;
    }
  });

  it('ends one byte short when the file changed while it was sent (v1+ only)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'object-change-'));
    try {
      const file = join(dir, 'obj');
      writeFileSync(file, content);
      for (const signalInvalid of [true, false]) {
        const read = (await readObject(file, 0, signalInvalid))!;
        const first = await new Promise<Buffer>((resolve) =>
          read.body.once('data', (chunk: Buffer) => resolve(chunk)),
        );
        read.body.pause();
        const later = new Date(Date.now() + 5_000);
        utimesSync(file, later, later);
        const rest = await drain(read.body);
        const received = first.length + rest.length;
        expect(received).toBe(signalInvalid ? content.length - 1 : content.length);
        writeFileSync(file, content);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('closes the file when the body is destroyed early', async () => {
    const file = (await new ObjectFiles().locate(repo.path, key))!;
    const read = (await readObject(file, 0, true))!;
    read.body.destroy();
    await expect(read.done).rejects.toThrow('body destroyed');
  });

  it('reuses its buffers only once the response flushed them: parallel slow readers get every byte', async () => {
    const big = Buffer.alloc(3_000_000);
    for (let i = 0; i < big.length; i += 4) {
      big.writeUInt32LE(i, i);
    }
    const dir = mkdtempSync(join(tmpdir(), 'object-recycle-'));
    const file = join(dir, 'obj');
    writeFileSync(file, big);
    const server = createServer((_req, res) => {
      void readObject(file, 0, true).then((read) => {
        read!.releaseWhenFlushed(res);
        read!.body.pipe(res);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const fetchSlowly = () =>
        new Promise<Buffer>((resolve, reject) => {
          httpGet({ host: '127.0.0.1', port, path: '/' }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (chunk: Buffer) => {
              chunks.push(chunk);
              res.pause();
              setTimeout(() => res.resume(), 1);
            });
            res.on('end', () => resolve(Buffer.concat(chunks)));
            res.on('error', reject);
          }).on('error', reject);
        });
      const bodies = await Promise.all(Array.from({ length: 8 }, fetchSlowly));
      for (const body of bodies) {
        expect(body.length).toBe(big.length);
        expect(body.equals(big)).toBe(true);
      }
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
