/**
 * The opportunistic batcher: alone while few jobs are out, batched while the queue is busy, each
 * member answered with its own result or failure, members that leave answered at once and a
 * batch whose members all left aborted.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AbortError } from '@annex-p2phttp/p2p';
import { Batcher, type Settled } from '../src/cluster/batcher';

interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(error: Error): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

interface Sent {
  readonly key: string;
  readonly items: readonly number[];
  readonly signal: AbortSignal | undefined;
  readonly answer: Deferred<Settled<string>[]>;
}

const made: Batcher<number, string>[] = [];

afterEach(() => {
  for (const batcher of made.splice(0)) {
    batcher.close(new Error('test over'));
  }
  vi.useRealTimers();
});

/** A batcher whose jobs are answered by the test: every single and batch job is recorded. */
function harness(maxInFlight = 1, maxBatch = 100, maxWaitMs = 60_000) {
  const sent: Sent[] = [];
  const batcher = new Batcher<number, string>({
    maxInFlight,
    maxBatch,
    maxWaitMs,
    single: async (key, item, signal) => {
      const answer = deferred<Settled<string>[]>();
      sent.push({ key, items: [item], signal, answer });
      const [result] = await answer.promise;
      if (!result) {
        throw new Error('no result');
      }
      if (!result.ok) {
        throw result.error;
      }
      return result.value;
    },
    batch: (key, items, signal) => {
      const answer = deferred<Settled<string>[]>();
      sent.push({ key, items: [...items], signal, answer });
      return answer.promise;
    },
  });
  made.push(batcher);
  const answerAll = (job: Sent | undefined) => {
    if (!job) {
      throw new Error('no such job');
    }
    job.answer.resolve(job.items.map((item) => ({ ok: true, value: `v${item}` })));
  };
  return { batcher, sent, answerAll };
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('Batcher', () => {
  it('sends a request alone while the queue has room', async () => {
    const { batcher, sent, answerAll } = harness(2);
    const a = batcher.submit('q', 1);
    const b = batcher.submit('q', 2);
    expect(sent.map((job) => job.items)).toEqual([[1], [2]]);
    answerAll(sent[0]);
    answerAll(sent[1]);
    await expect(Promise.all([a, b])).resolves.toEqual(['v1', 'v2']);
    expect(batcher.totals).toEqual({ singles: 2, batches: 0, batched: 0 });
  });

  it('batches the requests that arrive while the queue is busy, in order', async () => {
    const { batcher, sent, answerAll } = harness(1);
    const first = batcher.submit('q', 1);
    const rest = [2, 3, 4].map((item) => batcher.submit('q', item));
    expect(sent).toHaveLength(1);
    expect(batcher.waiting).toBe(3);
    answerAll(sent[0]);
    await expect(first).resolves.toBe('v1');
    expect(sent.map((job) => job.items)).toEqual([[1], [2, 3, 4]]);
    answerAll(sent[1]);
    await expect(Promise.all(rest)).resolves.toEqual(['v2', 'v3', 'v4']);
    expect(batcher.totals).toEqual({ singles: 1, batches: 1, batched: 3 });
    expect(batcher.waiting).toBe(0);
  });

  it('keeps keys apart', () => {
    const { batcher, sent } = harness(1);
    batcher.submit('a', 1).catch(() => {});
    batcher.submit('b', 2).catch(() => {});
    batcher.submit('a', 3).catch(() => {});
    expect(sent.map((job) => [job.key, job.items])).toEqual([
      ['a', [1]],
      ['b', [2]],
    ]);
    expect(batcher.waiting).toBe(1);
  });

  it('splits a long wait into batches of at most maxBatch, within maxInFlight', async () => {
    const { batcher, sent, answerAll } = harness(2, 3);
    const all = [1, 2, 3, 4, 5, 6, 7, 8, 9].map((item) => batcher.submit('q', item));
    expect(sent.map((job) => job.items)).toEqual([[1], [2]]);
    answerAll(sent[0]);
    await tick();
    // one slot free: one batch of three goes
    expect(sent.map((job) => job.items)).toEqual([[1], [2], [3, 4, 5]]);
    answerAll(sent[1]);
    await tick();
    expect(sent.map((job) => job.items)).toEqual([[1], [2], [3, 4, 5], [6, 7, 8]]);
    answerAll(sent[2]);
    await tick();
    // a lone waiter goes as a job of its own
    expect(sent[4]?.items).toEqual([9]);
    answerAll(sent[3]);
    answerAll(sent[4]);
    await expect(Promise.all(all)).resolves.toEqual(
      [1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => `v${i}`),
    );
  });

  it('answers each member with its own result or failure; a failed batch fails every member', async () => {
    const { batcher, sent, answerAll } = harness(1);
    const first = batcher.submit('q', 1);
    const ok = batcher.submit('q', 2);
    const bad = batcher.submit('q', 3);
    answerAll(sent[0]);
    await first;
    sent[1]?.answer.resolve([
      { ok: true, value: 'two' },
      { ok: false, error: new Error('three failed') },
    ]);
    await expect(ok).resolves.toBe('two');
    await expect(bad).rejects.toThrow('three failed');

    const blocker = batcher.submit('q', 4);
    const x = batcher.submit('q', 5);
    const y = batcher.submit('q', 6);
    answerAll(sent[2]);
    await blocker;
    sent[3]?.answer.reject(new Error('queue down'));
    await expect(x).rejects.toThrow('queue down');
    await expect(y).rejects.toThrow('queue down');
    // an answer missing a member's result fails that member
    const blocker2 = batcher.submit('q', 7);
    const short1 = batcher.submit('q', 8);
    const short2 = batcher.submit('q', 9);
    answerAll(sent[4]);
    await blocker2;
    sent[5]?.answer.resolve([{ ok: true, value: 'eight' }]);
    await expect(short1).resolves.toBe('eight');
    await expect(short2).rejects.toThrow('no result');
  });

  it('gives a single job the caller signal and fails an aborted caller at once', async () => {
    const { batcher, sent } = harness(1);
    const controller = new AbortController();
    void batcher.submit('q', 1, controller.signal).catch(() => {});
    expect(sent[0]?.signal).toBe(controller.signal);
    const gone = new AbortController();
    gone.abort();
    await expect(batcher.submit('q', 2, gone.signal)).rejects.toBeInstanceOf(AbortError);
    expect(batcher.waiting).toBe(0);
  });

  it('drops a waiting member that leaves, before its batch goes', async () => {
    const { batcher, sent, answerAll } = harness(1);
    const first = batcher.submit('q', 1);
    const leaving = new AbortController();
    const left = batcher.submit('q', 2, leaving.signal);
    const stays = batcher.submit('q', 3);
    leaving.abort();
    await expect(left).rejects.toBeInstanceOf(AbortError);
    expect(batcher.waiting).toBe(1);
    answerAll(sent[0]);
    await first;
    // only one left waiting: it goes alone
    expect(sent[1]?.items).toEqual([3]);
    answerAll(sent[1]);
    await expect(stays).resolves.toBe('v3');
  });

  it('answers a member that leaves a sent batch at once and aborts the batch once all left', async () => {
    const { batcher, sent, answerAll } = harness(1);
    const first = batcher.submit('q', 1);
    const a = new AbortController();
    const b = new AbortController();
    const pa = batcher.submit('q', 2, a.signal);
    const pb = batcher.submit('q', 3, b.signal);
    answerAll(sent[0]);
    await first;
    const batch = sent[1];
    expect(batch?.items).toEqual([2, 3]);
    a.abort();
    await expect(pa).rejects.toBeInstanceOf(AbortError);
    expect(batch?.signal?.aborted).toBe(false);
    b.abort();
    await expect(pb).rejects.toBeInstanceOf(AbortError);
    expect(batch?.signal?.aborted).toBe(true);
    // the late answer changes nothing, and the lane is free again
    answerAll(batch);
    await tick();
    const next = batcher.submit('q', 4);
    expect(sent[2]?.items).toEqual([4]);
    answerAll(sent[2]);
    await expect(next).resolves.toBe('v4');
  });

  it('sends requests held up by a slow job after maxWaitMs, past maxInFlight', async () => {
    vi.useFakeTimers();
    const { batcher, sent, answerAll } = harness(1, 100, 10);
    const slow = batcher.submit('q', 1);
    const held = [2, 3].map((item) => batcher.submit('q', item));
    await vi.advanceTimersByTimeAsync(9);
    expect(sent).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(sent.map((job) => job.items)).toEqual([[1], [2, 3]]);
    answerAll(sent[1]);
    await expect(Promise.all(held)).resolves.toEqual(['v2', 'v3']);
    // the slow job still out: the next request waits again, at most as long
    const later = batcher.submit('q', 4);
    expect(sent).toHaveLength(2);
    answerAll(sent[0]);
    await expect(slow).resolves.toBe('v1');
    expect(sent[2]?.items).toEqual([4]);
    answerAll(sent[2]);
    await expect(later).resolves.toBe('v4');
    // nothing waits: no timer left behind
    expect(vi.getTimerCount()).toBe(0);
  });

  it('fails the waiting requests on close; those sent keep their answers', async () => {
    const { batcher, sent, answerAll } = harness(1);
    const first = batcher.submit('q', 1);
    const waiting = batcher.submit('q', 2);
    batcher.close(new Error('shutting down'));
    await expect(waiting).rejects.toThrow('shutting down');
    expect(batcher.waiting).toBe(0);
    answerAll(sent[0]);
    await expect(first).resolves.toBe('v1');
    expect(sent).toHaveLength(1);
  });

  it('refuses nonsense bounds', () => {
    const send = () => Promise.reject(new Error('unused'));
    const bounds = { maxWaitMs: 10, single: send, batch: send };
    expect(() => new Batcher({ maxInFlight: 0, maxBatch: 4, ...bounds })).toThrow(RangeError);
    expect(() => new Batcher({ maxInFlight: 1, maxBatch: 1, ...bounds })).toThrow(RangeError);
  });
});
