/**
 * The query lane against a real private redis-server: answers and failures travel back to the
 * asking client only, a query nobody takes is taken back out of its list (503), one taken and
 * never answered times out, an aborted one leaves nothing queued, a server takes no more than its
 * slots at once and drains on close, and Redis going away fails waiting queries at once.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AbortError } from '@annex-p2phttp/p2p';
import { PrivateRedis } from '../../../test/support/redis';
import {
  ClusterKeys,
  commandConnection,
  DispatchError,
  QueryClient,
  QueryServer,
  type JobResult,
  type QueryClientOptions,
  type QueryPayload,
  type QueryServerOptions,
} from '../src/index';
import { type ServedTarget } from '@annex-p2phttp/protocol';

let redis: PrivateRedis;
let connection: ReturnType<typeof commandConnection>;
const keys = new ClusterKeys('unit-lane:');
const target: ServedTarget = {
  serverUuid: 's',
  clientUuid: 'c',
  bypass: [],
  version: 4,
  mode: 'full',
};
const checkpresent = (key: string): QueryPayload => ({ op: 'checkpresent', target, key });

const cleanups: (() => Promise<void>)[] = [];

function client(overrides: Partial<QueryClientOptions> = {}): QueryClient {
  const made = new QueryClient({
    redisUrl: redis.url,
    redis: connection,
    keys,
    queueWaitMs: 2000,
    jobTimeoutMs: 5000,
    ...overrides,
  });
  cleanups.push(() => made.close());
  return made;
}

function server(
  queues: string[],
  handle: QueryServerOptions['handle'],
  overrides: Partial<QueryServerOptions> = {},
): QueryServer {
  const made = new QueryServer({
    redisUrl: redis.url,
    redis: connection,
    keys,
    concurrency: 4,
    handle,
    log: () => {},
    blockSeconds: 0.2,
    ...overrides,
  });
  made.setQueues(queues);
  cleanups.push(() => made.close(1000));
  return made;
}

/** Answers checkpresent with present = (key starts with "yes"); fails keys starting "bad". */
const answerer: QueryServerOptions['handle'] = (_queue, payload) => {
  if (payload.op === 'checkpresent') {
    if (payload.key.startsWith('bad')) {
      return Promise.reject(
        new DispatchError('DISPATCH_JOB_FAILED', `no such thing: ${payload.key}`),
      );
    }
    return Promise.resolve({ op: 'checkpresent', present: payload.key.startsWith('yes') });
  }
  return Promise.resolve({ op: 'gettimestamp', timestamp: 7 });
};

async function failure(promise: Promise<unknown>): Promise<Error> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(Error);
  return error as Error;
}

async function ready(): Promise<void> {
  for (let i = 0; i < 200 && connection.status !== 'ready'; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

beforeAll(async () => {
  redis = await PrivateRedis.start();
  connection = commandConnection(redis.url, 'unit-lane');
  connection.on('error', () => {});
  await ready();
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) {
    await cleanup();
  }
  if (redis.running) {
    await connection.flushdb();
  }
});

afterAll(async () => {
  connection.disconnect();
  await redis.stop();
});

describe('query lane', () => {
  it('answers queries and batches, and carries failures back with their code', async () => {
    server(['q1'], answerer);
    const lane = client();
    expect(await lane.call('q1', checkpresent('yes-1'))).toEqual({
      op: 'checkpresent',
      present: true,
    });
    expect(await lane.call('q1', checkpresent('no-1'))).toEqual({
      op: 'checkpresent',
      present: false,
    });
    const error = await failure(lane.call('q1', checkpresent('bad-1')));
    expect(error).toBeInstanceOf(DispatchError);
    expect((error as DispatchError).code).toBe('DISPATCH_JOB_FAILED');
    expect(error.message).toMatch(/no such thing: bad-1/);
    const batch = await lane.call('q1', {
      op: 'batch',
      items: [
        { op: 'checkpresent', target, key: 'yes-2' },
        { op: 'gettimestamp', target },
      ],
    });
    // The server answers a batch as a whole (the proxy worker's processor splits it).
    expect(batch).toEqual({ op: 'gettimestamp', timestamp: 7 });
    expect(lane.size).toBe(0);
  });

  it('answers each client on its own channel, from any of several servers and queues', async () => {
    const seen: string[] = [];
    server(['q1', 'q2'], (queue, payload, signal) => {
      seen.push(queue);
      return answerer(queue, payload, signal);
    });
    server(['q2'], answerer);
    const [a, b] = [client(), client()];
    const answers = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        (i % 2 === 0 ? a : b).call(
          i % 4 < 2 ? 'q1' : 'q2',
          checkpresent(i % 3 === 0 ? `yes-${i}` : `no-${i}`),
        ),
      ),
    );
    answers.forEach((answer, i) =>
      expect(answer).toEqual({ op: 'checkpresent', present: i % 3 === 0 }),
    );
    expect(seen).toContain('q1');
    expect(await connection.llen(keys.query('q1'))).toBe(0);
    expect(await connection.llen(keys.query('q2'))).toBe(0);
  });

  it('takes back a query nobody took within queueWaitMs and answers unavailable', async () => {
    const lane = client({ queueWaitMs: 300 });
    const started = Date.now();
    const error = await failure(lane.call('nobody', checkpresent('yes')));
    expect(error).toBeInstanceOf(DispatchError);
    expect((error as DispatchError).code).toBe('DISPATCH_UNAVAILABLE');
    expect(error.message).toMatch(/no proxy worker took the query/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(await connection.llen(keys.query('nobody'))).toBe(0);
  });

  it('lets a list nobody serves expire', async () => {
    const lane = client({ queueWaitMs: 200, jobTimeoutMs: 5000 });
    void lane.call('expiring', checkpresent('yes')).catch(() => {});
    await new Promise((resolve) => setTimeout(resolve, 50));
    const ttl = await connection.pttl(keys.query('expiring'));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(400);
  });

  it('times out a query taken and never answered', async () => {
    let taken = 0;
    server(['slow'], () => {
      taken += 1;
      return new Promise<JobResult>(() => {});
    });
    const lane = client({ queueWaitMs: 200, jobTimeoutMs: 800 });
    const error = await failure(lane.call('slow', checkpresent('yes')));
    expect((error as DispatchError).code).toBe('DISPATCH_TIMEOUT');
    expect(taken).toBe(1);
    expect(lane.size).toBe(0);
  });

  it('takes an aborted query back out of the list', async () => {
    const lane = client({ queueWaitMs: 5000 });
    const controller = new AbortController();
    const call = lane.call('nobody', checkpresent('yes'), controller.signal);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await connection.llen(keys.query('nobody'))).toBe(1);
    controller.abort();
    expect(await failure(call)).toBeInstanceOf(AbortError);
    for (let i = 0; i < 50 && (await connection.llen(keys.query('nobody'))) > 0; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(await connection.llen(keys.query('nobody'))).toBe(0);
    expect(lane.size).toBe(0);
  });

  it('runs no more queries at once than its slots, and drains them on close', async () => {
    let running = 0;
    let most = 0;
    const lane = client();
    const worker = server(
      ['busy'],
      async (queue, payload, signal) => {
        running += 1;
        most = Math.max(most, running);
        await new Promise((resolve) => setTimeout(resolve, 30));
        running -= 1;
        return answerer(queue, payload, signal);
      },
      { concurrency: 3 },
    );
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => lane.call('busy', checkpresent(`yes-${i}`))),
    );
    expect(answers.every((answer) => answer.op === 'checkpresent' && answer.present)).toBe(true);
    expect(most).toBe(3);
    // On close: the query being answered finishes; later ones stay queued for another worker.
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    let cutWhileDraining = true;
    const holding = server(['held'], async (queue, payload, signal) => {
      await held;
      cutWhileDraining = signal.aborted;
      return answerer(queue, payload, signal);
    });
    const first = lane.call('held', checkpresent('yes-held'));
    while (holding.active === 0) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const closed = holding.close(5000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const later = lane.call('held', checkpresent('yes-later'));
    await new Promise((resolve) => setTimeout(resolve, 300));
    release();
    await closed;
    expect(await first).toEqual({ op: 'checkpresent', present: true });
    expect(cutWhileDraining).toBe(false);
    expect(await connection.llen(keys.query('held'))).toBe(1);
    server(['held'], answerer);
    expect(await later).toEqual({ op: 'checkpresent', present: true });
    await worker.close(1000);
  });

  it('cuts a query still being answered when the grace of close is over', async () => {
    const lane = client();
    const holding = server(['stuck'], (_queue, _payload, signal) => {
      return new Promise<JobResult>((_resolve, reject) => {
        signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
      });
    });
    const call = lane.call('stuck', checkpresent('yes'));
    const failed = failure(call);
    while (holding.active === 0) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await holding.close(200);
    expect((await failed).message).toMatch(/shutting down/);
  });

  it('drops a malformed query and goes on answering', async () => {
    const logged: string[] = [];
    server(['q1'], answerer, { log: (message) => logged.push(message) });
    await connection.rpush(keys.query('q1'), 'not json', JSON.stringify({ nothing: 1 }));
    const lane = client();
    expect(await lane.call('q1', checkpresent('yes'))).toEqual({
      op: 'checkpresent',
      present: true,
    });
    expect(logged.filter((line) => /malformed query/.test(line))).toHaveLength(2);
  });

  it('fails waiting queries at once when Redis goes away', async () => {
    const lane = client({ queueWaitMs: 10_000, jobTimeoutMs: 3000 });
    connection.once('close', () =>
      lane.failWaiting(new DispatchError('DISPATCH_UNAVAILABLE', 'lost Redis')),
    );
    const call = lane.call('nobody', checkpresent('yes'));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const failed = failure(call);
    await redis.stop('SIGKILL');
    const error = await failed;
    expect((error as DispatchError).code).toBe('DISPATCH_UNAVAILABLE');
    // Not the 10 s wait bound: the command connection or the reply channel saw Redis go.
    expect(error.message).toMatch(/lost Redis|lost the channel for answers/);
    const refused = await failure(lane.call('nobody', checkpresent('yes')));
    expect((refused as DispatchError).code).toBe('DISPATCH_UNAVAILABLE');
    await redis.restart();
    await ready();
    // The same client gets answers again once its reply channel is subscribed anew.
    server(['back'], answerer);
    let answer: JobResult | undefined;
    // Refused at once (503) until the reply channel is subscribed again.
    for (let attempt = 0; attempt < 50 && answer === undefined; attempt += 1) {
      answer = await lane.call('back', checkpresent('yes')).catch(() => undefined);
      if (answer === undefined) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    expect(answer).toEqual({ op: 'checkpresent', present: true });
  }, 60_000);

  it('fails waiting queries at once when only the reply channel is lost, then answers again', async () => {
    const lane = client({ queueWaitMs: 10_000, jobTimeoutMs: 3000 });
    // Subscribed: a first query is answered.
    server(['answered'], answerer);
    expect(await lane.call('answered', checkpresent('yes'))).toEqual({
      op: 'checkpresent',
      present: true,
    });
    const failed = failure(lane.call('nobody', checkpresent('yes')));
    await new Promise((resolve) => setTimeout(resolve, 100));
    // As a demoted primary does to its subscribers: the command connection stays.
    await connection.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    const error = await failed;
    expect((error as DispatchError).code).toBe('DISPATCH_UNAVAILABLE');
    expect(error.message).toMatch(/lost the channel for answers/); // not the 3 s timeout
    let answer: JobResult | undefined;
    for (let attempt = 0; attempt < 50 && answer === undefined; attempt += 1) {
      answer = await lane.call('answered', checkpresent('yes')).catch(() => undefined);
      if (answer === undefined) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    expect(answer).toEqual({ op: 'checkpresent', present: true });
  }, 60_000);

  it('delivers an answer when the server lost its own connection to Redis while answering', async () => {
    // As in a failover, when a gateway is back on the new primary before the worker is: the
    // worker's publish of an answer meets a closed connection.
    const lane = client({ queueWaitMs: 10_000, jobTimeoutMs: 5000 });
    const own = commandConnection(redis.url, 'unit-lane-worker');
    cleanups.push(() => Promise.resolve(own.disconnect()));
    await new Promise<void>((resolve) =>
      own.status === 'ready' ? resolve() : own.once('ready', () => resolve()),
    );
    const id = String(await own.client('ID'));
    server(
      ['cut'],
      async (queue, payload) => {
        await connection.call('CLIENT', 'KILL', 'ID', id);
        return answerer(queue, payload, new AbortController().signal);
      },
      { redis: own },
    );
    const started = Date.now();
    expect(await lane.call('cut', checkpresent('yes'))).toEqual({
      op: 'checkpresent',
      present: true,
    });
    expect(Date.now() - started).toBeLessThan(5000); // not the job timeout
  }, 30_000);
});
