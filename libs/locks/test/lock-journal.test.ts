import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { textOfBytes } from '@annex-p2phttp/protocol';
import {
  formatJournaledLock,
  LOCK_JOURNAL_DIR,
  LockJournal,
  parseJournaledLock,
  type JournaledLock,
} from '../src/lock-journal';

const lock: JournaledLock = {
  lockid: '0f0e0d0c-0b0a-4908-8706-050403020100',
  repoPath: '/srv/repo',
  serverUuid: '11111111-2222-3333-4444-555555555555',
  key: 'SHA256E-s3--abc.bin',
  clientUuid: '66666666-7777-8888-9999-000000000000',
  bypass: ['aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee'],
  version: 4,
  mode: 'appendonly',
  lockedAt: 1_700_000_000_000,
  expiresAt: 1_700_000_600_000,
};

describe('journaled lock text', () => {
  it('round-trips, keys with bytes that are not UTF-8 included', () => {
    expect(parseJournaledLock(formatJournaledLock(lock))).toEqual(lock);
    const bytes = { ...lock, key: `SHA256E-s2--${textOfBytes(Buffer.from([0xff, 0xfe]))}` };
    expect(formatJournaledLock(bytes)).toContain('"key":"[');
    expect(parseJournaledLock(formatJournaledLock(bytes))).toEqual(bytes);
  });

  it.each([
    ['not JSON', '{"lockid":'],
    ['a torn write', formatJournaledLock(lock).slice(0, 40)],
    ['null', 'null'],
    ['a missing field', JSON.stringify({ ...lock, serverUuid: undefined })],
    ['a bad lockid', JSON.stringify({ ...lock, lockid: '../../etc/passwd' })],
    ['a bad mode', JSON.stringify({ ...lock, mode: 'root' })],
    ['a fractional expiry', JSON.stringify({ ...lock, expiresAt: 1.5 })],
    ['bypass not a list', JSON.stringify({ ...lock, bypass: 'x' })],
    ['a bad wire key', JSON.stringify({ ...lock, key: '[!!]' })],
  ])('rejects %s', (_, text) => {
    expect(parseJournaledLock(text)).toBeUndefined();
  });
});

describe('LockJournal', () => {
  let gitDir: string;
  let journal: LockJournal;

  beforeEach(async () => {
    gitDir = await mkdtemp(path.join(os.tmpdir(), 'lock-journal-'));
    journal = new LockJournal(() => Promise.resolve(gitDir));
  });

  afterEach(async () => {
    await rm(gitDir, { recursive: true, force: true });
  });

  it('writes, updates, reads and removes locks', async () => {
    expect(await journal.read('/srv/repo')).toEqual([]);
    await journal.write(lock);
    await journal.write({ ...lock, expiresAt: lock.expiresAt + 1 });
    expect(await journal.read('/srv/repo')).toEqual([{ ...lock, expiresAt: lock.expiresAt + 1 }]);
    expect(await readdir(path.join(gitDir, LOCK_JOURNAL_DIR))).toEqual([`${lock.lockid}.json`]);
    await journal.remove('/srv/repo', lock.lockid);
    await journal.remove('/srv/repo', lock.lockid);
    expect(await journal.read('/srv/repo')).toEqual([]);
  });

  it('gives the path the repository is served from now, and clears files that are not locks', async () => {
    await journal.write(lock);
    const dir = path.join(gitDir, LOCK_JOURNAL_DIR);
    await writeFile(path.join(dir, 'garbage.json'), 'nope');
    await writeFile(path.join(dir, `.${lock.lockid}.x.tmp`), 'half');
    await mkdir(path.join(dir, 'stray'));
    const other = { ...lock, lockid: '0f0e0d0c-0b0a-4908-8706-050403020101' };
    await writeFile(path.join(dir, 'renamed.json'), formatJournaledLock(other));
    expect(await journal.read('/moved/repo')).toEqual([{ ...lock, repoPath: '/moved/repo' }]);
    expect(await readdir(dir)).toEqual([`${lock.lockid}.json`]);
  });
});
