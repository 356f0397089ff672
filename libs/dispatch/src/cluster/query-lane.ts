/**
 * The query lane: checkpresent and gettimestamp (alone or batched) go from a gateway to a proxy
 * worker through a plain Redis list and come back on the gateway's own pub/sub channel, instead of
 * as BullMQ jobs.
 *
 * Why: a BullMQ job costs about 25 Redis commands (scripts that add it, move it to active and to
 * finished, its events stream read by every gateway), which made a checkpresent in cluster mode
 * several times dearer than in embedded mode. A query is read-only, answered in milliseconds and
 * safe to lose (the gateway bounds it and answers 503 or a timeout), so it needs none of what a
 * job's bookkeeping buys (retries, stalled-job recovery, a record of its end). Here it costs three
 * commands: the gateway's RPUSH and PEXPIRE (one small script), a worker's BLMPOP (which
 * takes up to as many queries as it has free slots) and the worker's PUBLISH of the answer.
 *
 * - `<prefix>query:<queue>`  list of waiting queries of one queue (a served repository's uuid);
 *   it expires `2 × queueWaitMs` after the last query pushed, so a queue nobody serves leaves no
 *   key behind.
 * - `<prefix>reply:<gateway id>`  the channel on which a gateway's answers arrive.
 *
 * Backpressure and bounds match the job path: a query no worker took within `queueWaitMs` is taken
 * back out of the list (LREM) and answered 503; one taken but not answered within `jobTimeoutMs`
 * fails as a timeout; a requester that goes away takes its query back if it is still waiting.
 * Redis lost: waiting queries fail at once (the gateway answers 503).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import Redis from 'ioredis';
import { AbortError } from '@annex-p2phttp/p2p';
import { type ClusterKeys } from '@annex-p2phttp/redis';
import { decodeFailure, DispatchError, encodeFailure, shuttingDown, unavailable } from './errors';
import {
  BATCHABLE_OPS,
  decodePayload,
  encodePayload,
  type JobResult,
  type QueryPayload,
} from './jobs';
import { blockingOptions, subscription } from './redis';
import {
  boundedStep,
  NO_ANSWER_FROM_REDIS,
  REDIS_STEP_MS,
  redisUnreachable,
} from '@annex-p2phttp/ops';

interface QueryMessage {
  readonly id: string;
  readonly reply: string;
  readonly payload: QueryPayload;
}

type ReplyMessage =
  | { readonly id: string; readonly result: JobResult }
  | { readonly id: string; readonly error: string };

export interface QueryClientOptions {
  readonly redisUrl: string;
  /** The command connection (fail-fast); owned by the caller. */
  readonly redis: Redis;
  readonly keys: ClusterKeys;
  readonly queueWaitMs: number;
  readonly jobTimeoutMs: number;
}

interface PendingQuery {
  readonly resolve: (result: JobResult) => void;
  readonly fail: (error: Error) => void;
}

/** How long a worker tries to publish an answer while its connection to Redis is down. */
const ANSWER_RETRY_MS = 10_000;

/** The gateway's end of the lane. */
export class QueryClient {
  private readonly id = `${process.pid}-${randomBytes(6).toString('hex')}`;
  private readonly pending = new Map<string, PendingQuery>();
  private subscriber: Redis | null = null;
  private subscribed: Promise<void> | null = null;
  /** Whether answers can reach us now (the reply channel is subscribed on a live connection). */
  private listening = false;
  private closed = false;

  constructor(private readonly options: QueryClientOptions) {}

  /** Queries sent and not answered yet. */
  get size(): number {
    return this.pending.size;
  }

  private get channel(): string {
    return this.options.keys.reply(this.id);
  }

  /** Sends a query to `queue` and waits for its answer within the bounds above. */
  async call(queue: string, payload: QueryPayload, signal?: AbortSignal): Promise<JobResult> {
    if (this.closed) {
      throw shuttingDown();
    }
    signal?.throwIfAborted();
    await this.subscribe();
    if (!this.listening) {
      // Reconnecting (Redis restarting or failing over): an answer now would be lost.
      throw unavailable('the channel for answers is reconnecting to Redis');
    }
    const { redis, keys, queueWaitMs, jobTimeoutMs } = this.options;
    const id = randomUUID();
    const list = keys.query(queue);
    const message = JSON.stringify({
      id,
      reply: this.channel,
      payload: encodePayload(payload),
    } satisfies QueryMessage);
    return new Promise<JobResult>((resolve, reject) => {
      let taken = false;
      const end = () => {
        this.pending.delete(id);
        clearTimeout(waitTimer);
        clearTimeout(answerTimer);
        signal?.removeEventListener('abort', onAbort);
      };
      const entry: PendingQuery = {
        resolve: (result) => {
          end();
          resolve(result);
        },
        fail: (error) => {
          end();
          reject(error);
        },
      };
      /** Takes the query back out of the list; true if no worker had taken it. */
      const withdraw = async (): Promise<boolean> => {
        try {
          return (await redis.lrem(list, 1, message)) === 1;
        } catch {
          return false;
        }
      };
      const onAbort = () => {
        if (!taken) {
          void withdraw();
        }
        entry.fail(new AbortError('client disconnected'));
      };
      const waitTimer = setTimeout(() => {
        void withdraw().then((removed) => {
          if (removed && this.pending.get(id) === entry) {
            entry.fail(
              unavailable(
                `no proxy worker took the query within ${Math.round(queueWaitMs / 1000)} s`,
                Math.max(1, Math.round(queueWaitMs / 1000)),
              ),
            );
          }
          taken = !removed;
        });
      }, queueWaitMs);
      const answerTimer = setTimeout(() => {
        entry.fail(
          new DispatchError(
            'DISPATCH_TIMEOUT',
            `no answer from a proxy worker within ${Math.round(jobTimeoutMs / 1000)} s`,
          ),
        );
      }, jobTimeoutMs);
      this.pending.set(id, entry);
      signal?.addEventListener('abort', onAbort, { once: true });
      withPushScript(redis)
        .annexQueryPush(list, message, queueWaitMs * 2)
        .catch((error: unknown) => {
          if (this.pending.get(id) === entry) {
            entry.fail(
              unavailable(
                `cannot queue the query: ${error instanceof Error ? error.message : String(error)}`,
              ),
            );
          }
        });
    });
  }

  /** Fails every query waiting for an answer. */
  failWaiting(error: Error): void {
    for (const entry of [...this.pending.values()]) {
      entry.fail(error);
    }
  }

  /**
   * Fails what is waiting and closes the reply channel: politely within `withinMs` when Redis is
   * there, at once when it is not (`log` says so).
   */
  async close(withinMs = REDIS_STEP_MS, log: (message: string) => void = () => {}): Promise<void> {
    this.closed = true;
    this.failWaiting(shuttingDown());
    const subscriber = this.subscriber;
    this.subscriber = null;
    if (subscriber) {
      await boundedStep('close the reply channel', () => subscriber.quit(), {
        withinMs,
        late: NO_ANSWER_FROM_REDIS,
        skip: redisUnreachable(subscriber),
        cut: () => subscriber.disconnect(),
        log,
      });
    }
  }

  private subscribe(): Promise<void> {
    this.subscribed ??= subscription(
      this.options.redisUrl,
      this.channel,
      (text) => this.answer(text),
      undefined,
      (listening) => {
        this.listening = listening;
        if (!listening) {
          // Answers published while the channel is down never arrive: fail now, not at the
          // job timeout.
          this.failWaiting(unavailable('lost the channel for answers (Redis went away)'));
        }
      },
    ).then(
      (subscriber) => {
        if (this.closed) {
          subscriber.disconnect();
        } else {
          this.subscriber = subscriber;
        }
      },
      (error: unknown) => {
        this.subscribed = null;
        throw unavailable(
          `cannot listen for answers: ${error instanceof Error ? error.message : String(error)}`,
        );
      },
    );
    return this.subscribed;
  }

  private answer(text: string): void {
    let reply: ReplyMessage;
    try {
      reply = JSON.parse(text) as ReplyMessage;
    } catch {
      return;
    }
    const entry = this.pending.get(reply?.id);
    if (!entry) {
      return; // a query this gateway gave up on
    }
    if ('result' in reply) {
      entry.resolve(reply.result);
    } else {
      entry.fail(decodeFailure(String(reply.error)));
    }
  }
}

/** RPUSH of a query and PEXPIRE of its list, in one command. */
const PUSH = `redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`;

type PushRedis = Redis & {
  annexQueryPush(list: string, message: string, ttlMs: number): Promise<number>;
};

function withPushScript(redis: Redis): PushRedis {
  const scripted = redis as PushRedis;
  if (typeof scripted.annexQueryPush !== 'function') {
    redis.defineCommand('annexQueryPush', { numberOfKeys: 1, lua: PUSH });
  }
  return scripted;
}

export interface QueryServerOptions {
  readonly redisUrl: string;
  /** The command connection (fail-fast), for the answers; owned by the caller. */
  readonly redis: Redis;
  readonly keys: ClusterKeys;
  /** Queries run at once at most. */
  readonly concurrency: number;
  /** Answers one query of `queue`. */
  readonly handle: (
    queue: string,
    payload: QueryPayload,
    signal: AbortSignal,
  ) => Promise<JobResult>;
  readonly log: (message: string) => void;
  /** How long one BLMPOP blocks; a changed set of queues applies after it. Default 1 s. */
  readonly blockSeconds?: number;
}

/** The proxy worker's end of the lane: takes queries of its queues and answers them. */
export class QueryServer {
  private queues: string[] = [];
  private rotation = 0;
  private running = 0;
  private slotFreed: (() => void) | null = null;
  /** Ends the loop that takes queries (close). */
  private readonly stopping = new AbortController();
  /** Ends the queries being answered (close, once its grace is over). */
  private readonly cut = new AbortController();
  private readonly blocking: Redis;
  private readonly loop: Promise<void>;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly options: QueryServerOptions) {
    setMaxListeners(0, this.cut.signal); // every query being answered listens to it
    this.blocking = new Redis(blockingOptions(options.redisUrl));
    this.blocking.on('error', () => {}); // reconnects by itself
    this.loop = this.run();
  }

  /** Queries being answered now. */
  get active(): number {
    return this.running;
  }

  /** The queues (served repository uuids) whose queries this worker takes. */
  setQueues(queues: readonly string[]): void {
    this.queues = [...queues];
  }

  /**
   * Stops taking queries, waits for those being answered (at most `graceMs`), then cuts them.
   * The last BLMPOP returns by itself within its block time; while Redis is unreachable (ioredis
   * would hold it until Redis is back) or when it does not return by then, its connection is cut.
   */
  async close(graceMs = 10_000): Promise<void> {
    if (!this.stopping.signal.aborted) {
      this.stopping.abort();
      this.slotFreed?.();
    }
    const quiet = () => {};
    const started = performance.now();
    await boundedStep('end the last read of queries', () => this.loop, {
      withinMs: Math.min(graceMs, (this.options.blockSeconds ?? 1) * 1000 + 1000),
      skip: redisUnreachable(this.blocking),
      cut: () => this.blocking.disconnect(),
      log: quiet,
    });
    await boundedStep('answer the queries in flight', () => Promise.all([...this.inFlight]), {
      withinMs: graceMs - (performance.now() - started),
      cut: () => this.cut.abort(shuttingDown()),
      log: quiet,
    });
    this.blocking.disconnect();
  }

  private async run(): Promise<void> {
    const { concurrency, keys, log } = this.options;
    const block = this.options.blockSeconds ?? 1;
    while (!this.stopping.signal.aborted) {
      if (this.running >= concurrency) {
        await new Promise<void>((resolve) => (this.slotFreed = resolve));
        this.slotFreed = null;
        continue;
      }
      if (this.queues.length === 0) {
        await sleep(block * 1000, this.stopping.signal);
        continue;
      }
      // Start at a different queue each time: BLMPOP takes from the first non-empty list.
      this.rotation = (this.rotation + 1) % this.queues.length;
      const lists = [
        ...this.queues.slice(this.rotation),
        ...this.queues.slice(0, this.rotation),
      ].map((queue) => keys.query(queue));
      let popped: [string, string[]] | null;
      try {
        popped = await this.blocking.blmpop(
          block,
          lists.length,
          ...lists,
          'LEFT',
          'COUNT',
          concurrency - this.running,
        );
      } catch (error) {
        if (this.stopping.signal.aborted) {
          break; // its connection was cut on close
        }
        log(`query lane: ${error instanceof Error ? error.message : String(error)}`);
        await sleep(500, this.stopping.signal);
        continue;
      }
      if (popped) {
        const queue = popped[0].slice(keys.query('').length);
        for (const text of popped[1]) {
          this.start(queue, text);
        }
      }
    }
  }

  private start(queue: string, text: string): void {
    this.running += 1;
    const done = this.answer(queue, text).finally(() => {
      this.running -= 1;
      this.inFlight.delete(done);
      this.slotFreed?.();
    });
    this.inFlight.add(done);
  }

  private async answer(queue: string, text: string): Promise<void> {
    let message: QueryMessage;
    try {
      message = JSON.parse(text) as QueryMessage;
      if (typeof message.id !== 'string' || typeof message.reply !== 'string') {
        throw new Error('no id or reply channel');
      }
    } catch (error) {
      this.options.log(
        `query lane: dropped a malformed query: ${error instanceof Error ? error.message : String(error)}`,
      );
      return;
    }
    let reply: ReplyMessage;
    try {
      const { payload } = message;
      if (
        typeof payload !== 'object' ||
        payload === null ||
        (payload.op !== 'batch' && !BATCHABLE_OPS.has(payload.op))
      ) {
        throw new DispatchError('DISPATCH_JOB_FAILED', 'not a query');
      }
      reply = {
        id: message.id,
        result: await this.options.handle(queue, decodePayload(payload), this.cut.signal),
      };
    } catch (error) {
      reply = { id: message.id, error: encodeFailure(error) };
    }
    await this.deliver(message.reply, JSON.stringify(reply));
  }

  /**
   * Publishes an answer. Nobody listening (the gateway gave up or went away) is fine. While this
   * worker's connection is down (a failover: the gateway may be back on the new primary before
   * this worker is) the answer is published again every 100 ms for ANSWER_RETRY_MS: dropped, it
   * would leave its gateway waiting for the whole job timeout.
   */
  private async deliver(channel: string, text: string): Promise<void> {
    const deadline = performance.now() + ANSWER_RETRY_MS;
    for (;;) {
      try {
        await this.options.redis.publish(channel, text);
        return;
      } catch {
        if (performance.now() >= deadline || this.cut.signal.aborted) {
          return; // its gateway fails the query itself, at the latest at the job timeout
        }
        await sleep(100, this.cut.signal);
      }
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
