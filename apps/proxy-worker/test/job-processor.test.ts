/**
 * The worker's job processor without Redis: a job waits for a session slot at most the session
 * wait, then fails as unavailable (the gateway's 503); a cancelled job stays an abort; a batch
 * answers each item on its own.
 */
import { describe, expect, it } from 'vitest';
import {
  type OperationExecutor,
  type RepositoryRegistry,
  type ServedRepository,
} from '@annex-p2phttp/ops';
import {
  decodeFailure,
  DispatchError,
  StreamTable,
  type BatchItemResult,
  type BatchableJob,
} from '@annex-p2phttp/dispatch';
import { type RepositoryTarget, type ServedTarget } from '@annex-p2phttp/protocol';
import { AbortError } from '@annex-p2phttp/p2p';
import { JobProcessor } from '../src/job-processor';

const QUEUE = 'aaaaaaaa-1111-2222-3333-444444444444';
const target: ServedTarget = {
  serverUuid: QUEUE,
  clientUuid: 'bbbbbbbb-1111-2222-3333-444444444444',
  bypass: [],
  version: 4,
  mode: 'full',
};

const registry = {
  lookup: (uuid: string): Promise<ServedRepository | undefined> =>
    Promise.resolve(uuid === QUEUE ? { uuid, path: '/repo', kind: 'repository' } : undefined),
} as unknown as RepositoryRegistry;

/**
 * An executor with one session slot whose signal, like the OperationExecutor's, bounds only
 * the wait for a slot. Key "hold" keeps the slot until `release`; "present" answers true.
 */
class OneSlot {
  private busy = false;
  private readonly waiters: Array<() => void> = [];
  private releaseHeld: (() => void) | undefined;

  release(): void {
    this.releaseHeld?.();
  }

  /** Only the key "on-disk" is in the object files: every other checkpresent needs a session. */
  presentLocally(_target: RepositoryTarget, key: string): Promise<boolean> {
    return Promise.resolve(key === 'on-disk');
  }

  async checkPresent(
    _target: RepositoryTarget,
    key: string,
    signal?: AbortSignal,
  ): Promise<boolean> {
    await this.slot(signal);
    try {
      if (key === 'hold') {
        await new Promise<void>((resolve) => (this.releaseHeld = resolve));
      }
      return key === 'present' || key === 'hold';
    } finally {
      this.busy = false;
      this.waiters.shift()?.();
    }
  }

  getTimestamp(): Promise<number> {
    return Promise.resolve(1234);
  }

  private slot(signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted) {
      return Promise.reject(new AbortError('request aborted while waiting for a connection'));
    }
    if (!this.busy) {
      this.busy = true;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const grant = () => {
        signal?.removeEventListener('abort', onAbort);
        this.busy = true;
        resolve();
      };
      const onAbort = () => {
        this.waiters.splice(this.waiters.indexOf(grant), 1);
        reject(new AbortError('request aborted while waiting for a connection'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(grant);
    });
  }
}

function processor(executor: OneSlot, sessionWaitMs: number): JobProcessor {
  return new JobProcessor({
    registry,
    executor: executor as unknown as OperationExecutor,
    streams: new StreamTable(),
    baseUrl: 'http://worker:9418',
    sessionWaitMs,
    queueOf: (repository) => repository,
  });
}

const check = (key: string): BatchableJob => ({ op: 'checkpresent', target, key });

describe('JobProcessor', () => {
  it('fails a job as unavailable when no session slot is free within the session wait', async () => {
    const slots = new OneSlot();
    const worker = processor(slots, 100);
    const held = worker.query(check('hold'), QUEUE, new AbortController().signal);
    const refused = worker.query(check('present'), QUEUE, new AbortController().signal);
    await expect(refused).rejects.toMatchObject({ code: 'DISPATCH_UNAVAILABLE' });
    await expect(refused).rejects.toThrow(/no session free/);
    slots.release();
    await expect(held).resolves.toEqual({ op: 'checkpresent', present: true });
    // the slot is free again: no wait, and a job that runs longer than the wait is not cut
    await expect(
      worker.query(check('present'), QUEUE, new AbortController().signal),
    ).resolves.toEqual({ op: 'checkpresent', present: true });
  });

  it('answers a query for content in the object files while every session slot is taken', async () => {
    const slots = new OneSlot();
    const worker = processor(slots, 60_000);
    const held = worker.query(check('hold'), QUEUE, new AbortController().signal);
    await expect(
      worker.query(check('on-disk'), QUEUE, new AbortController().signal),
    ).resolves.toEqual({
      op: 'checkpresent',
      present: true,
    });
    slots.release();
    await expect(held).resolves.toEqual({ op: 'checkpresent', present: true });
  });

  it('leaves a cancelled job an abort, not unavailable', async () => {
    const slots = new OneSlot();
    const worker = processor(slots, 60_000);
    const held = worker.query(check('hold'), QUEUE, new AbortController().signal);
    const cancel = new AbortController();
    const cancelled = worker.query(check('present'), QUEUE, cancel.signal);
    cancel.abort();
    await expect(cancelled).rejects.toBeInstanceOf(AbortError);
    slots.release();
    await held;
  });

  it('answers each item of a batch on its own', async () => {
    const worker = processor(new OneSlot(), 60_000);
    const result = await worker.query(
      {
        op: 'batch',
        items: [
          check('present'),
          { op: 'gettimestamp', target },
          check('absent'),
          { op: 'checkpresent', target: { ...target, serverUuid: 'cccccccc-0000' }, key: 'k' },
          { op: 'remove', target, key: 'k' } as unknown as BatchableJob,
        ],
      },
      QUEUE,
      new AbortController().signal,
    );
    expect(result.op).toBe('batch');
    const results = (result as { results: readonly BatchItemResult[] }).results;
    expect(results.slice(0, 3)).toEqual([
      { result: { op: 'checkpresent', present: true } },
      { result: { op: 'gettimestamp', timestamp: 1234 } },
      { result: { op: 'checkpresent', present: false } },
    ]);
    const failures = results.slice(3).map((item) => {
      if (!('error' in item)) {
        throw new Error('expected a failure');
      }
      return decodeFailure(item.error);
    });
    expect(failures[0]).toMatchObject({ code: 'DISPATCH_NOT_SERVED' });
    expect(failures[1]).toBeInstanceOf(DispatchError);
    expect(failures[1]?.message).toMatch(/not a job that may be batched/);
  });

  it('refuses an empty batch', async () => {
    const worker = processor(new OneSlot(), 60_000);
    await expect(
      worker.query({ op: 'batch', items: [] }, QUEUE, new AbortController().signal),
    ).rejects.toThrow(/malformed batch/);
  });
});
