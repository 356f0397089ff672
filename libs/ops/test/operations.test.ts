/**
 * The operations over real `git-annex-shell p2pstdio` sessions: what each exchange returns and in
 * which state it leaves the connection.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LocalShellConnector, P2PConnection, SessionPool } from '@annex-p2phttp/p2p';
import { type RepositoryTarget } from '@annex-p2phttp/protocol';
import {
  bootClockSeconds,
  checkPresent,
  get,
  getTimestamp,
  lockContent,
  put,
  putOffset,
  remove,
  removeBeforeJudgedHere,
  timestampSeconds,
  unlockContent,
} from '@annex-p2phttp/ops';
import { makeRepo, sha256Key, shellProcesses, waitFor, type TestRepo } from './support';

const CLIENT = '11111111-2222-3333-4444-555555555555';

let repo: TestRepo;
let helloKey: string;
const big = randomBytes(3 * 1024 * 1024 + 17);
let bigKey: string;
const connections: P2PConnection[] = [];

beforeAll(() => {
  repo = makeRepo();
  helloKey = repo.add('hello.txt', 'hello\n');
  bigKey = repo.add('big.bin', big);
});

afterEach(() => {
  for (const connection of connections.splice(0)) {
    connection.close();
  }
});

afterAll(async () => {
  await waitFor(() => shellProcesses(repo.path).length === 0);
  repo.remove();
});

function target(version = 4, mode: RepositoryTarget['mode'] = 'full'): RepositoryTarget {
  return {
    repoPath: repo.path,
    serverUuid: repo.uuid,
    clientUuid: CLIENT,
    bypass: [],
    version,
    mode,
  };
}

async function open(version = 4, mode: RepositoryTarget['mode'] = 'full'): Promise<P2PConnection> {
  const t = target(version, mode);
  const connection = await P2PConnection.open(new LocalShellConnector().connect(t), {
    serverUuid: t.serverUuid,
    version,
    bypass: [],
  });
  connections.push(connection);
  connection.begin();
  return connection;
}

async function collect(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) {
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function bodyOf(...parts: Array<Buffer | string>): AsyncIterable<Buffer> {
  return Readable.from(parts.map((part) => Buffer.from(part)));
}

describe('P2PConnection', () => {
  it('negotiates the version and refuses a wrong server uuid', async () => {
    const connection = await open(9);
    expect(connection.version).toBe(4);
    const wrong = { ...target(), serverUuid: '99999999-2222-3333-4444-555555555555' };
    await expect(
      P2PConnection.open(new LocalShellConnector().connect(wrong), {
        serverUuid: wrong.serverUuid,
        version: 4,
        bypass: [],
      }),
    ).rejects.toMatchObject({ code: 'P2P_HANDSHAKE_FAILED' });
  });

  it('is reusable after a clean operation and not while busy', async () => {
    const connection = await open();
    expect(await checkPresent(connection, helloKey)).toBe(true);
    expect(connection.finish()).toBe(true);
    expect(connection.state).toBe('idle');
    connection.begin();
    expect(() => connection.begin()).toThrow(/not idle/);
    expect(await checkPresent(connection, 'SHA256E-s1--00')).toBe(false);
    expect(connection.finish()).toBe(true);
  });
});

describe('operations', () => {
  it('gets content whole, from an offset, and reports absent keys', async () => {
    const connection = await open();
    const whole = await get(connection, {
      key: bigKey,
      associatedFile: 'big.bin',
      offset: 0,
      signalInvalid: true,
    });
    expect(whole.kind).toBe('data');
    if (whole.kind !== 'data') {
      return;
    }
    expect(whole.length).toBe(big.length);
    expect((await collect(whole.body)).equals(big)).toBe(true);
    await whole.done;
    expect(connection.finish()).toBe(true);

    connection.begin();
    const tail = await get(connection, {
      key: bigKey,
      associatedFile: null,
      offset: 1000,
      signalInvalid: true,
    });
    expect(tail.kind === 'data' && tail.length).toBe(big.length - 1000);
    if (tail.kind === 'data') {
      expect((await collect(tail.body)).equals(big.subarray(1000))).toBe(true);
      await tail.done;
    }
    expect(connection.finish()).toBe(true);

    connection.begin();
    expect(
      await get(connection, {
        key: 'SHA256E-s5--abc',
        associatedFile: null,
        offset: 0,
        signalInvalid: true,
      }),
    ).toEqual({ kind: 'absent' });
    expect(connection.finish()).toBe(true);
  });

  it('tells an absent key from an empty one at version 0', async () => {
    const connection = await open(0);
    expect(
      await get(connection, {
        key: 'SHA256E-s5--abc',
        associatedFile: null,
        offset: 0,
        signalInvalid: false,
      }),
    ).toEqual({ kind: 'absent' });
    expect(connection.finish()).toBe(true);
    connection.begin();
    const past = await get(connection, {
      key: helloKey,
      associatedFile: null,
      offset: 100,
      signalInvalid: false,
    });
    expect(past.kind === 'data' && past.length).toBe(0);
  });

  it('sends a byte range: stops after its last byte and closes the session', async () => {
    for (const [offset, limit] of [
      [0, 1],
      [1_000_000, 65_536],
      [big.length - 10, 10],
      [big.length - 10, 1000],
    ] as const) {
      const connection = await open();
      const part = await get(connection, {
        key: bigKey,
        associatedFile: null,
        offset,
        signalInvalid: true,
        limit,
      });
      if (part.kind !== 'data') {
        throw new Error('expected data');
      }
      const expected = big.subarray(offset, offset + limit);
      expect(part.length).toBe(expected.length);
      expect(part.total).toBe(big.length);
      expect((await collect(part.body)).equals(expected)).toBe(true);
      await part.done;
      // Reaching the content's end reads VALID as a whole GET does; an earlier stop cannot.
      expect(connection.finish()).toBe(offset + limit >= big.length);
    }
  });

  it('tells the whole size after an offset, and not past the end', async () => {
    const connection = await open();
    const tail = await get(connection, {
      key: bigKey,
      associatedFile: null,
      offset: 1000,
      signalInvalid: true,
    });
    if (tail.kind !== 'data') {
      throw new Error('expected data');
    }
    expect([tail.length, tail.total]).toEqual([big.length - 1000, big.length]);
    await collect(tail.body);
    await tail.done;
    expect(connection.finish()).toBe(true);
    connection.begin();
    const past = await get(connection, {
      key: helloKey,
      associatedFile: null,
      offset: 100,
      signalInvalid: true,
    });
    expect(past.kind === 'data' && [past.length, past.total]).toEqual([0, undefined]);
    expect(connection.finish()).toBe(true);
  });

  it('closes the session when a download is abandoned', async () => {
    const connection = await open();
    const outcome = await get(connection, {
      key: bigKey,
      associatedFile: null,
      offset: 0,
      signalInvalid: true,
    });
    if (outcome.kind !== 'data') {
      throw new Error('expected data');
    }
    outcome.body.destroy();
    await expect(outcome.done).rejects.toThrow();
    expect(connection.closed).toBe(true);
  });

  it('stores content, keeps a short upload resumable and rejects an overlong one', async () => {
    const content = randomBytes(100_000);
    const key = sha256Key(content);
    let connection = await open();
    expect(await putOffset(connection, key)).toEqual({ kind: 'offset', offset: 0 });
    expect(connection.finish()).toBe(true);

    connection.begin();
    const short = await put(connection, {
      key,
      associatedFile: 'x y/z.bin',
      offset: 0,
      length: content.length,
      body: bodyOf(content.subarray(0, 40_000)),
      dataPresent: false,
    });
    expect(short).toEqual({ kind: 'short-body', received: 40_000 });
    expect(connection.closed).toBe(true);

    connection = await open();
    expect(await putOffset(connection, key)).toEqual({ kind: 'offset', offset: 40_000 });
    expect(connection.finish()).toBe(true);

    connection.begin();
    const long = await put(connection, {
      key,
      associatedFile: null,
      offset: 40_000,
      length: 60_000,
      body: bodyOf(content.subarray(40_000), 'extra'),
      dataPresent: false,
    });
    expect(long).toEqual({ kind: 'long-body' });
    expect(connection.closed).toBe(true);
    connection = await open();
    expect(await checkPresent(connection, key)).toBe(false);
    expect(connection.finish()).toBe(true);

    connection.begin();
    const resumed = await put(connection, {
      key,
      associatedFile: null,
      offset: 0,
      length: content.length,
      body: bodyOf(content.subarray(0, 50_000), content.subarray(50_000)),
      dataPresent: false,
    });
    expect(resumed).toEqual({ kind: 'done', stored: true, plusUuids: [] });
    expect(connection.finish()).toBe(true);
    expect(await checkPresentOn(connection, key)).toBe(true);

    connection.begin();
    expect(await putOffset(connection, key)).toEqual({ kind: 'already-have', plusUuids: [] });
    expect(connection.finish()).toBe(true);
  });

  it('refuses content that does not match its checksum key', async () => {
    const content = Buffer.from('the right content');
    const key = sha256Key(content);
    const connection = await open();
    const outcome = await put(connection, {
      key,
      associatedFile: null,
      offset: 0,
      length: content.length,
      body: bodyOf('the wrong content'),
      dataPresent: false,
    });
    expect(outcome).toEqual({ kind: 'done', stored: false, plusUuids: [] });
    expect(connection.finish()).toBe(true);
    expect(await checkPresentOn(connection, key)).toBe(false);
  });

  it('removes, gives timestamps, and answers "not removed" for locked content', async () => {
    const key = repo.add('doomed.txt', 'doomed\n');
    const locker = await open();
    expect(await lockContent(locker, key)).toBe(true);
    const remover = await open();
    expect(await remove(remover, key)).toEqual({ ok: false, plusUuids: [] });
    expect(remover.closed).toBe(true);
    await unlockContent(locker);
    expect(locker.finish()).toBe(true);

    const again = await open();
    const now = await getTimestamp(again);
    expect(now).toBeGreaterThan(0);
    expect(again.finish()).toBe(true);
    again.begin();
    expect(await remove(again, key, 1)).toEqual({ ok: false, plusUuids: [] });
    expect(again.finish()).toBe(true);
    again.begin();
    expect(await remove(again, key, now + 600)).toEqual({ ok: true, plusUuids: [] });
    expect(again.finish()).toBe(true);
    expect(await checkPresentOn(again, key)).toBe(false);
  });

  it('judges a remove-before deadline on this side right before REMOVE, as git-annex does', async () => {
    const key = repo.add('judged.txt', 'judged\n');
    const connection = await open();
    let asked = 0;
    const clock = (seconds: number) => () => {
      asked += 1;
      return Promise.resolve(seconds);
    };
    // A deadline that is not ahead of the clock sends nothing and removes nothing.
    for (const now of [500, 501]) {
      expect(await removeBeforeJudgedHere(connection, key, 500, clock(now))).toEqual({
        ok: false,
        plusUuids: [],
      });
      expect(connection.finish()).toBe(true);
      expect(await checkPresentOn(connection, key)).toBe(true);
      connection.begin();
    }
    expect(await removeBeforeJudgedHere(connection, key, 500, clock(499))).toEqual({
      ok: true,
      plusUuids: [],
    });
    expect(asked).toBe(3);
    expect(connection.finish()).toBe(true);
    expect(await checkPresentOn(connection, key)).toBe(false);
    // The clock it is judged by is the one git-annex-shell answers GETTIMESTAMP from.
    connection.begin();
    const before = await timestampSeconds();
    const theirs = await getTimestamp(connection);
    expect(before).toBeLessThanOrEqual(theirs);
    expect(theirs).toBeLessThanOrEqual(await timestampSeconds());
    expect(connection.finish()).toBe(true);
  });

  it('reads the boot clock that git-annex-shell answers GETTIMESTAMP with', async () => {
    const connection = await open();
    // Several samples spread over a second, so that some fall in the second half of a second
    // (where rounding instead of truncating would give the next second).
    for (let i = 0; i < 6; i += 1) {
      const before = await bootClockSeconds();
      const theirs = await getTimestamp(connection);
      const after = await bootClockSeconds();
      expect(connection.finish()).toBe(true);
      connection.begin();
      expect(before).toBeDefined();
      expect(before).toBeLessThanOrEqual(theirs);
      expect(theirs).toBeLessThanOrEqual(after!);
      await new Promise((resolve) => setTimeout(resolve, 170));
    }
  });

  it('reports repository refusals in read-only mode as remote errors', async () => {
    const connection = await open(4, 'readonly');
    await expect(remove(connection, helloKey)).rejects.toMatchObject({ code: 'P2P_REMOTE_ERROR' });
    expect(connection.finish()).toBe(true);
    expect(await checkPresentOn(connection, helloKey)).toBe(true);
  });
});

describe('SessionPool', () => {
  it('reuses sessions and ends every git-annex-shell on close', async () => {
    const pool = new SessionPool({
      connector: new LocalShellConnector(),
      maxActive: 4,
      maxIdle: 2,
    });
    const results = await Promise.all(
      Array.from({ length: 12 }, () => pool.run(target(), (c) => checkPresent(c, helloKey))),
    );
    expect(results.every(Boolean)).toBe(true);
    const stats = pool.stats();
    expect(stats.opened).toBeLessThanOrEqual(4);
    expect(stats.idle).toBeLessThanOrEqual(2);
    expect(shellProcesses(repo.path).length).toBeGreaterThan(0);
    await pool.close();
    await waitFor(() => shellProcesses(repo.path).length === 0);
  });
});

async function checkPresentOn(connection: P2PConnection, key: string): Promise<boolean> {
  connection.begin();
  const present = await checkPresent(connection, key);
  connection.finish();
  return present;
}

describe('SessionPool with a session that died while idle', () => {
  it('runs a repeatable operation again on a fresh session', async () => {
    const pool = new SessionPool({
      connector: new LocalShellConnector(),
      maxActive: 1,
      maxIdle: 1,
    });
    try {
      await waitFor(() => shellProcesses(repo.path).length === 0);
      expect(await pool.run(target(), (c) => checkPresent(c, helloKey))).toBe(true);
      const [pid] = shellProcesses(repo.path);
      expect(shellProcesses(repo.path)).toHaveLength(1);
      expect(pid).toBeDefined();
      // Killed and reused in the same tick: the pool cannot have noticed the exit yet.
      process.kill(pid ?? 0, 'SIGKILL');
      const present = await pool.run(target(), (c) => checkPresent(c, helloKey), undefined, {
        retryOnStale: true,
      });
      expect(present).toBe(true);
      expect(pool.stats().opened).toBe(2);
    } finally {
      await pool.close();
    }
  });

  it('reports the failure when the operation may not be repeated', async () => {
    const pool = new SessionPool({
      connector: new LocalShellConnector(),
      maxActive: 1,
      maxIdle: 1,
    });
    try {
      await waitFor(() => shellProcesses(repo.path).length === 0);
      await pool.run(target(), (c) => checkPresent(c, helloKey));
      const [pid] = shellProcesses(repo.path);
      expect(shellProcesses(repo.path)).toHaveLength(1);
      process.kill(pid ?? 0, 'SIGKILL');
      await expect(pool.run(target(), (c) => checkPresent(c, helloKey))).rejects.toMatchObject({
        code: 'P2P_CONNECTION_CLOSED',
      });
    } finally {
      await pool.close();
    }
  });
});
