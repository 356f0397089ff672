/**
 * The cluster Dispatcher: every operation becomes a BullMQ job on the queue that serves the uuid
 * (the shard queue of its repository in its worker group, keys.ts; a ClusterDirectory lookup
 * gives it as the target's `repoPath`; the job names the uuid, so the worker finds the
 * repository), except checkpresent and gettimestamp, which go through the cheaper query lane of
 * that queue (query-lane.ts), batched while one is out. The queues and their events readers are
 * opened as they are used: one per shard queue, a number that does not grow with repositories.
 * Jobs run once (attempts 1: remove, remove-before and put are never re-run) and are answered
 * through the queue's events stream (one reader per queue in this process).
 *
 * - Backpressure: a job that no worker takes within `queueWaitMs` is removed and the request gets
 *   503 with Retry-After, instead of queueing without bound.
 * - Every job has a timeout (`jobTimeoutMs`) until its answer; a get's or put's bytes then flow
 *   over the data plane without one, as in embedded mode.
 * - A requester that goes away removes its waiting job, or tells the worker (pub/sub) to cancel.
 * - Redis down: new requests fail at once (DISPATCH_UNAVAILABLE, 503), waiting ones too; the
 *   connections reconnect by themselves.
 */
import { randomUUID } from 'node:crypto';
import { type Agent } from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Queue, QueueEvents } from 'bullmq';
import type Redis from 'ioredis';
import { PrimaryWatch, type ClusterKeys } from '@annex-p2phttp/redis';
import { AbortError } from '@annex-p2phttp/p2p';
import { type RepositoryTarget } from '@annex-p2phttp/protocol';
import {
  answerWithoutSession,
  boundedStep,
  cutWhenIdle,
  Deadline,
  DEFAULT_UPLOAD_IDLE_MS,
  KeyedMutex,
  NO_ANSWER_FROM_REDIS,
  REDIS_STEP_MS,
  redisUnreachable,
  SHUTDOWN_CLEANUP_MS,
  stageBody,
  waitUntil,
  type GetOutcome,
  type GetRequest,
  type PlusResult,
  type PutOffsetResult,
  type PutOutcome,
  type PutRequest,
} from '@annex-p2phttp/ops';
import { type Dispatcher, type DispatcherStats } from '../dispatcher';
import { Batcher, type Settled } from './batcher';
import { decodeFailure, DispatchError, shuttingDown, unavailable } from './errors';
import {
  encodePayload,
  isStreamOffer,
  jobTarget,
  type BatchableJob,
  type JobOperation,
  type JobPayload,
  type JobResult,
  type QueryPayload,
  type StreamOffer,
} from './jobs';
import { QueryClient } from './query-lane';
import { blockingOptions, quietLog } from './redis';
import { abandonStream, claimGetStream, dataPlaneAgent, sendPutStream } from './stream-client';

export interface BullMqDispatcherOptions {
  readonly redisUrl: string;
  /** The command connection (fail-fast, see redis.ts); owned by the caller. */
  readonly redis: Redis;
  readonly keys: ClusterKeys;
  readonly queueWaitMs: number;
  readonly jobTimeoutMs: number;
  /**
   * Checkpresent and gettimestamp jobs of one queue out at once before further ones wait and go
   * together as one batch query (batcher.ts). Default 1.
   */
  readonly batchInFlight?: number;
  /** How long such a request waits for a batch at most (batcher.ts). Default 10 ms. */
  readonly batchWaitMs?: number;
  readonly log?: (message: string) => void;
  /** An upload body that brings no bytes for this long is cut (default a minute). */
  readonly uploadIdleMs?: number;
  /** Where upload bodies are staged before their job is sent (default the system's). */
  readonly stagingDir?: string;
}

const DEFAULT_BATCH_IN_FLIGHT = 1;
/** Pauses before a job refused as not served is sent again (elsewhere), doubling up to the max. */
const NOT_SERVED_FIRST_PAUSE_MS = 50;
const NOT_SERVED_MAX_PAUSE_MS = 400;
/** How long at most (and --queue-wait at most): a worker notices a new repository within ~1 s. */
const NOT_SERVED_RETRY_MS = 3000;
const DEFAULT_BATCH_WAIT_MS = 10;
/** Requests per batch at most. */
const MAX_BATCH = 256;

type Answer =
  | { readonly kind: 'result'; readonly result: JobResult }
  | { readonly kind: 'offer'; readonly offer: StreamOffer };

interface Pending {
  readonly queue: string;
  taken: boolean;
  /** This gateway is removing the job itself: its 'removed' event is no news. */
  withdrawing: boolean;
  readonly settle: (answer: Answer) => void;
  readonly fail: (error: Error) => void;
}

interface QueueHandle {
  readonly queue: Queue<JobPayload, JobResult, JobOperation>;
  readonly events: QueueEvents;
}

/** Failed jobs are kept a while for inspection; completed ones are not needed after the event. */
const KEEP_FAILED = { age: 3600, count: 1000 };

export class BullMqDispatcher implements Dispatcher {
  private readonly queues = new Map<string, Promise<QueueHandle>>();
  private readonly pending = new Map<string, Pending>();
  private readonly streams = new Set<{ destroy(): void }>();
  private readonly uploads = new KeyedMutex();
  private readonly agent: Agent = dataPlaneAgent();
  private closing: Promise<void> | null = null;
  private readonly counters = { jobs: 0, failed: 0, rejected: 0 };
  private readonly batcher: Batcher<BatchableJob, JobResult>;
  private readonly queries: QueryClient;
  /** Which Redis primary the command connection has; jobs are stamped with it (jobs.ts). */
  readonly primary: PrimaryWatch;

  constructor(private readonly options: BullMqDispatcherOptions) {
    this.primary = new PrimaryWatch(options.redis);
    this.queries = new QueryClient(options);
    this.batcher = new Batcher<BatchableJob, JobResult>({
      maxInFlight: options.batchInFlight ?? DEFAULT_BATCH_IN_FLIGHT,
      maxBatch: MAX_BATCH,
      maxWaitMs: options.batchWaitMs ?? DEFAULT_BATCH_WAIT_MS,
      single: (queue, payload, signal) => this.query(queue, payload, signal),
      batch: async (queue, items, signal) => {
        const { results } = expectOp(
          await this.query(queue, { op: 'batch', items }, signal),
          'batch',
        );
        if (results.length !== items.length) {
          throw new DispatchError('DISPATCH_JOB_FAILED', 'a batch answer of the wrong length');
        }
        return results.map((item): Settled<JobResult> =>
          'result' in item
            ? { ok: true, value: item.result }
            : { ok: false, error: decodeFailure(item.error) },
        );
      },
    });
    options.redis.on('close', () => this.failWaiting(unavailable('lost the connection to Redis')));
  }

  /** A query through the lane, counted like a job. */
  private async query(
    queue: string,
    payload: QueryPayload,
    signal?: AbortSignal,
  ): Promise<JobResult> {
    if (this.closing) {
      throw shuttingDown();
    }
    this.counters.jobs += 1;
    try {
      return await this.queries.call(queue, payload, signal);
    } catch (error) {
      if (error instanceof DispatchError && error.code === 'DISPATCH_UNAVAILABLE') {
        this.counters.rejected += 1;
      } else if (!(error instanceof AbortError)) {
        this.counters.failed += 1;
      }
      throw error;
    }
  }

  async checkPresent(
    target: RepositoryTarget,
    key: string,
    signal?: AbortSignal,
  ): Promise<boolean> {
    const result = await this.elsewhere(
      () =>
        this.batcher.submit(
          target.repoPath,
          { op: 'checkpresent', target: jobTarget(target), key },
          signal,
        ),
      signal,
    );
    return expectOp(result, 'checkpresent').present;
  }

  async getTimestamp(target: RepositoryTarget, signal?: AbortSignal): Promise<number> {
    const result = await this.elsewhere(
      () =>
        this.batcher.submit(
          target.repoPath,
          { op: 'gettimestamp', target: jobTarget(target) },
          signal,
        ),
      signal,
    );
    return expectOp(result, 'gettimestamp').timestamp;
  }

  async remove(
    target: RepositoryTarget,
    key: string,
    before: number | undefined,
    signal?: AbortSignal,
  ): Promise<PlusResult> {
    const payload: JobPayload =
      before === undefined
        ? { op: 'remove', target: jobTarget(target), key }
        : { op: 'remove', target: jobTarget(target), key, before };
    const result = expectOp(await this.call(target.repoPath, payload, signal), 'remove');
    return { ok: result.ok, plusUuids: result.plusUuids };
  }

  putOffset(target: RepositoryTarget, key: string, signal?: AbortSignal): Promise<PutOffsetResult> {
    return this.uploads.run(
      uploadKey(target, key),
      async () => {
        const payload: JobPayload = { op: 'putoffset', target: jobTarget(target), key };
        return expectOp(await this.call(target.repoPath, payload, signal), 'putoffset').result;
      },
      signal,
    );
  }

  /**
   * The body is received here first, into a staging file (upload-staging.ts), and the job goes to
   * a worker only once it ended: a client that sends slowly or stops holds no worker job and no
   * session meanwhile, and is cut after `uploadIdleMs`. The worker then gets the bytes at disk
   * speed, and a body that ended short reaches it cleanly as far as it came (also when its client
   * is gone), so the repository keeps every byte received.
   */
  put(target: RepositoryTarget, request: PutRequest, signal?: AbortSignal): Promise<PutOutcome> {
    if (request.dataPresent) {
      return this.putNow(target, request, signal);
    }
    return this.uploads.run(uploadKey(target, request.key), async () => {
      const staged = await stageBody(
        this.options.stagingDir ?? path.join(tmpdir(), 'annex-p2phttp-uploads'),
        cutWhenIdle(request.body, this.options.uploadIdleMs ?? DEFAULT_UPLOAD_IDLE_MS),
        request.length,
      );
      try {
        const early = answerWithoutSession(staged, request.length);
        if (early !== undefined) {
          return early;
        }
        const complete = staged.received === request.length && !staged.broken;
        return await this.sendPut(
          target,
          { ...request, body: staged.read() },
          complete ? signal : undefined,
        );
      } finally {
        await staged.discard();
      }
    });
  }

  private putNow(
    target: RepositoryTarget,
    request: PutRequest,
    signal?: AbortSignal,
  ): Promise<PutOutcome> {
    return this.uploads.run(
      uploadKey(target, request.key),
      () => this.sendPut(target, request, signal),
      signal,
    );
  }

  private async sendPut(
    target: RepositoryTarget,
    request: PutRequest,
    signal?: AbortSignal,
  ): Promise<PutOutcome> {
    const answer = await this.submit(
      target.repoPath,
      {
        op: 'put',
        target: jobTarget(target),
        key: request.key,
        associatedFile: request.associatedFile,
        offset: request.offset,
        length: request.length,
        dataPresent: request.dataPresent,
      },
      signal,
    );
    if (answer.kind === 'result') {
      return expectOp(answer.result, 'put').outcome;
    }
    const stream = { destroy: () => abandonStream(answer.offer.stream, this.agent) };
    this.streams.add(stream);
    try {
      return await sendPutStream(answer.offer.stream, request.body, this.agent, signal);
    } finally {
      this.streams.delete(stream);
    }
  }

  async get(
    target: RepositoryTarget,
    request: GetRequest,
    signal?: AbortSignal,
  ): Promise<GetOutcome> {
    const answer = await this.submit(
      target.repoPath,
      {
        op: 'get',
        target: jobTarget(target),
        key: request.key,
        associatedFile: request.associatedFile,
        offset: request.offset,
        signalInvalid: request.signalInvalid,
        ...(request.limit === undefined ? {} : { limit: request.limit }),
      },
      signal,
    );
    if (answer.kind === 'result') {
      if (expectOp(answer.result, 'get').streamed) {
        throw new DispatchError('DISPATCH_STREAM_FAILED', 'the stream ended before it was claimed');
      }
      return { kind: 'absent' };
    }
    const { offer } = answer;
    if (signal?.aborted) {
      abandonStream(offer.stream, this.agent);
      throw new AbortError('client disconnected');
    }
    const claimed = await claimGetStream(offer.stream, this.agent, signal);
    const stream = { destroy: () => claimed.body.destroy() };
    this.streams.add(stream);
    claimed.done.then(
      () => this.streams.delete(stream),
      () => this.streams.delete(stream),
    );
    return {
      kind: 'data',
      length: offer.length ?? claimed.length,
      ...(offer.total === undefined ? {} : { total: offer.total }),
      body: claimed.body,
      done: claimed.done,
    };
  }

  stats(): DispatcherStats {
    let active = 0;
    for (const pending of this.pending.values()) {
      if (pending.taken) {
        active += 1;
      }
    }
    return {
      active: active + this.queries.size,
      idle: 0,
      waiting: this.pending.size - active + this.batcher.waiting,
      locks: 0,
      connections: 0,
      streams: this.streams.size,
      opened: 0,
      openFailures: 0,
      evicted: 0,
      expired: 0,
    };
  }

  /** Jobs submitted, failed, and refused for backpressure or Redis trouble, since start. */
  get totals(): { readonly jobs: number; readonly failed: number; readonly rejected: number } {
    return { ...this.counters };
  }

  /**
   * Refuses new work, lets pending jobs and streams finish for `graceMs`, then cuts them and
   * closes the queues and the reply channel: at once while Redis is unreachable, else within
   * `cleanupMs` more; whatever could not be closed in time is disconnected (and logged).
   */
  close(graceMs = 10_000, cleanupMs = SHUTDOWN_CLEANUP_MS): Promise<void> {
    this.closing ??= (async () => {
      const log = this.options.log ?? (() => {});
      const drained = waitUntil(
        () =>
          this.pending.size === 0 &&
          this.batcher.waiting === 0 &&
          this.queries.size === 0 &&
          this.streams.size === 0,
      );
      await boundedStep('finish the work in flight', () => drained.reached, {
        withinMs: graceMs,
        cut: drained.stop,
        log,
      });
      const cleanup = new Deadline(cleanupMs);
      const closed = shuttingDown();
      this.batcher.close(closed);
      this.failWaiting(closed);
      for (const stream of [...this.streams]) {
        stream.destroy();
      }
      const handles = (await Promise.allSettled([...this.queues.values()])).flatMap((h) =>
        h.status === 'fulfilled' ? [h.value] : [],
      );
      await Promise.all([
        this.queries.close(cleanup.cap(REDIS_STEP_MS), log),
        boundedStep(
          'close the job queues',
          () =>
            Promise.all(handles.flatMap(({ events, queue }) => [events.close(), queue.close()])),
          {
            withinMs: cleanup.cap(REDIS_STEP_MS),
            late: NO_ANSWER_FROM_REDIS,
            skip: handles.length > 0 ? redisUnreachable(this.options.redis) : null,
            // The queues share the caller's connection; each events reader has its own.
            cut: () => {
              for (const { events } of handles) {
                events.disconnect().catch(() => {});
              }
            },
            log,
          },
        ),
      ]);
      this.agent.destroy();
    })();
    return this.closing;
  }

  /** A job of `queue` answered by a result (not a stream offer). */
  private async call(
    queue: string,
    payload: JobPayload,
    signal: AbortSignal | undefined,
  ): Promise<JobResult> {
    const answer = await this.submit(queue, payload, signal);
    if (answer.kind !== 'result') {
      abandonStream(answer.offer.stream, this.agent);
      throw new DispatchError('DISPATCH_JOB_FAILED', `a ${payload.op} job offered a stream`);
    }
    return answer.result;
  }

  /** Adds the job and waits for its answer: a result, or a stream offer (get, put). */
  private submit(
    queueName: string,
    payload: JobPayload,
    signal: AbortSignal | undefined,
  ): Promise<Answer> {
    return this.elsewhere(() => this.submitOnce(queueName, payload, signal), signal);
  }

  /**
   * Runs `attempt` again while a worker of the queue's group answers that it does not serve the
   * uuid (DISPATCH_NOT_SERVED: it has not found that repository yet, while another one of its
   * group has, and nothing was done), after a short pause, for 3 s at most (and `queueWaitMs`);
   * then 503.
   */
  private async elsewhere<T>(attempt: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const deadline = performance.now() + Math.min(this.options.queueWaitMs, NOT_SERVED_RETRY_MS);
    for (
      let pause = NOT_SERVED_FIRST_PAUSE_MS;
      ;
      pause = Math.min(pause * 2, NOT_SERVED_MAX_PAUSE_MS)
    ) {
      try {
        return await attempt();
      } catch (error) {
        if (!(error instanceof DispatchError && error.code === 'DISPATCH_NOT_SERVED')) {
          throw error;
        }
        if (this.closing || performance.now() + pause >= deadline) {
          throw unavailable(
            `no proxy worker that serves this repository took it: ${error.message}`,
            1,
          );
        }
        try {
          await delay(pause, undefined, signal === undefined ? {} : { signal });
        } catch {
          throw new AbortError('client disconnected');
        }
      }
    }
  }

  private async submitOnce(
    queueName: string,
    payload: JobPayload,
    signal: AbortSignal | undefined,
  ): Promise<Answer> {
    if (this.closing) {
      throw shuttingDown();
    }
    signal?.throwIfAborted();
    const { queue } = await this.queueFor(queueName);
    // Known once per connection; asked only when the connection was just made again.
    const primary = this.primary.known ?? (await this.primary.current().catch(() => ''));
    const jobId = randomUUID();
    const { queueWaitMs, jobTimeoutMs } = this.options;
    this.counters.jobs += 1;
    return new Promise<Answer>((resolve, reject) => {
      let finished = false;
      const timers: NodeJS.Timeout[] = [];
      const end = () => {
        finished = true;
        this.pending.delete(jobId);
        for (const timer of timers) {
          clearTimeout(timer);
        }
        signal?.removeEventListener('abort', onAbort);
      };
      const pending: Pending = {
        queue: queueName,
        taken: false,
        withdrawing: false,
        settle: (answer) => {
          if (!finished) {
            end();
            resolve(answer);
          }
        },
        fail: (error) => {
          if (!finished) {
            end();
            if (error instanceof DispatchError && error.code === 'DISPATCH_UNAVAILABLE') {
              this.counters.rejected += 1;
            } else {
              this.counters.failed += 1;
            }
            reject(error);
          }
        },
      };
      /** Removes the job if no worker has it yet; otherwise asks the worker to cancel it. */
      const withdraw = async (): Promise<boolean> => {
        pending.withdrawing = true;
        try {
          if ((await queue.remove(jobId)) === 1) {
            return true;
          }
          await this.options.redis.publish(this.options.keys.cancel, jobId);
        } catch {
          // Redis trouble: the worker's own bounds end the job.
        }
        return false;
      };
      const onAbort = () => {
        void withdraw();
        pending.fail(new AbortError('client disconnected'));
      };
      this.pending.set(jobId, pending);
      signal?.addEventListener('abort', onAbort, { once: true });
      timers.push(
        setTimeout(() => {
          if (pending.taken || finished) {
            return;
          }
          void withdraw().then((removed) => {
            if (removed) {
              pending.fail(
                unavailable(
                  `no proxy worker took the job within ${Math.round(queueWaitMs / 1000)} s`,
                  Math.max(1, Math.round(queueWaitMs / 1000)),
                ),
              );
            } else {
              pending.taken = true;
            }
          });
        }, queueWaitMs),
        setTimeout(() => {
          void withdraw();
          pending.fail(
            new DispatchError(
              'DISPATCH_TIMEOUT',
              `no answer from a proxy worker within ${Math.round(jobTimeoutMs / 1000)} s`,
            ),
          );
        }, jobTimeoutMs),
      );
      queue
        .add(payload.op, encodePayload(primary === '' ? payload : { ...payload, primary }), {
          jobId,
          attempts: 1,
          removeOnComplete: true,
          removeOnFail: KEEP_FAILED,
        })
        .catch((error: unknown) => {
          pending.fail(
            unavailable(
              `cannot queue the job: ${error instanceof Error ? error.message : String(error)}`,
            ),
          );
        });
    });
  }

  private queueFor(name: string): Promise<QueueHandle> {
    let handle = this.queues.get(name);
    if (!handle) {
      handle = this.openQueue(name);
      this.queues.set(name, handle);
      handle.catch(() => this.queues.delete(name));
    }
    return handle;
  }

  private async openQueue(name: string): Promise<QueueHandle> {
    const { redis, keys, redisUrl } = this.options;
    if (redis.status !== 'ready') {
      throw unavailable('Redis is not reachable');
    }
    // Read the events stream from its current end, so that no answer to a job added from now on
    // can be missed, whenever the reader's first XREAD reaches Redis.
    let lastEventId = '0-0';
    try {
      const last = (await redis.xrevrange(keys.events(name), '+', '-', 'COUNT', 1))[0];
      lastEventId = last?.[0] ?? '0-0';
    } catch (error) {
      throw unavailable(`Redis: ${error instanceof Error ? error.message : String(error)}`);
    }
    const queue = new Queue<JobPayload, JobResult, JobOperation>(name, {
      connection: redis,
      prefix: keys.bullPrefix,
    });
    const events = new QueueEvents(name, {
      connection: blockingOptions(redisUrl),
      prefix: keys.bullPrefix,
      lastEventId,
      blockingTimeout: 5000,
    });
    const log = quietLog(this.options.log ?? (() => {}));
    queue.on('error', (error) => log(`queue ${name}: ${error.message}`));
    events.on('error', (error) => log(`queue events ${name}: ${error.message}`));
    events.on('active', ({ jobId }) => {
      const pending = this.pending.get(jobId);
      if (pending) {
        pending.taken = true;
      }
    });
    events.on('progress', ({ jobId, data }) => {
      if (isStreamOffer(data)) {
        this.pending.get(jobId)?.settle({ kind: 'offer', offer: data });
      }
    });
    events.on('completed', ({ jobId, returnvalue }) => {
      this.pending
        .get(jobId)
        ?.settle({ kind: 'result', result: returnvalue as unknown as JobResult });
    });
    events.on('failed', ({ jobId, failedReason }) => {
      this.pending.get(jobId)?.fail(decodeFailure(failedReason));
    });
    events.on('removed', ({ jobId }) => {
      const pending = this.pending.get(jobId);
      if (pending && !pending.withdrawing) {
        pending.fail(unavailable('the job was removed from the queue'));
      }
    });
    return { queue, events };
  }

  /** Fails the jobs still waiting for an answer (not the streams already flowing). */
  private failWaiting(error: Error): void {
    this.queries.failWaiting(error);
    for (const pending of [...this.pending.values()]) {
      pending.fail(error);
    }
  }
}

function expectOp<O extends JobResult['op']>(
  result: JobResult,
  op: O,
): Extract<JobResult, { op: O }> {
  if (result?.op !== op) {
    throw new DispatchError('DISPATCH_JOB_FAILED', `expected a ${op} result from the proxy worker`);
  }
  return result as Extract<JobResult, { op: O }>;
}

function uploadKey(target: RepositoryTarget, key: string): string {
  return `${target.repoPath}\n${target.serverUuid}\n${key}`;
}
