/**
 * Runs one cluster job on this worker's sessions: resolves the job's uuid to a repository this
 * worker serves through the job's queue (the shard queue of that repository in its group), then runs the operation with the OperationExecutor
 * (the same code as embedded mode). For get and put it opens the P2P exchange first, then offers
 * a stream on the data port (reported as job progress) and moves the bytes once the gateway
 * claims it; the job stays active until the bytes went. An unclaimed or abandoned stream closes
 * its session. Queries (checkpresent, gettimestamp, or a batch of them the gateway sent as one)
 * arrive through the query lane (`query`; query-lane.ts) rather than as BullMQ jobs; a batch runs
 * its items side by side and answers each one.
 *
 * Sessions, not jobs, are the scarce thing: the worker takes more jobs at once than it has job
 * slots (content read straight from the object files needs no session), and a job waits for a
 * session slot in the pool at most `sessionWaitMs` (the --queue-wait), then fails as unavailable
 * (the gateway answers 503), as it would have had no worker taken it.
 */
import { type IncomingMessage, type ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { type Job } from 'bullmq';
import {
  type OperationExecutor,
  type PutOutcome,
  type RepositoryRegistry,
} from '@annex-p2phttp/ops';
import {
  BATCHABLE_OPS,
  DATA_LENGTH_HEADER,
  decodePayload,
  DispatchError,
  encodeFailure,
  type BatchableJob,
  type BatchItemResult,
  type JobOperation,
  type JobPayload,
  type JobResult,
  type QueryPayload,
  type StreamOffer,
  type StreamSlot,
  type StreamTable,
} from '@annex-p2phttp/dispatch';
import { type RepositoryTarget, type ServedTarget } from '@annex-p2phttp/protocol';
import { AbortError } from '@annex-p2phttp/p2p';

export type ClusterJob = Job<JobPayload, JobResult, JobOperation>;

export interface JobProcessorOptions {
  readonly registry: RepositoryRegistry;
  readonly executor: OperationExecutor;
  readonly streams: StreamTable;
  /** The data port's advertised base URL. */
  readonly baseUrl: string;
  /** How long a job may wait for a session slot before it fails as unavailable. */
  readonly sessionWaitMs: number;
  /** The queue through which this worker serves the repository with that uuid (its shard's). */
  readonly queueOf: (repository: string) => string;
}

/** Items per batch at most (the gateway sends far fewer). */
const MAX_BATCH_ITEMS = 1024;

const MODES = new Set(['full', 'readonly', 'appendonly']);
/** The longest requester (a user name or an address) a job may carry. */
const MAX_REQUESTER = 1024;
const UUID = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;

export class JobProcessor {
  private claimedStreams = 0;

  constructor(private readonly options: JobProcessorOptions) {}

  /** Get and put streams claimed by a gateway and not finished yet. */
  get streams(): number {
    return this.claimedStreams;
  }

  async process(job: ClusterJob, queue: string, signal: AbortSignal): Promise<JobResult> {
    const payload = decodePayload(job.data);
    const target = await this.resolve(payload.target, queue);
    const { executor } = this.options;
    switch (payload.op) {
      case 'remove': {
        const result = await this.bounded(signal, (wait) =>
          executor.remove(target, payload.key, payload.before, wait),
        );
        return { op: 'remove', ok: result.ok, plusUuids: result.plusUuids };
      }
      case 'putoffset':
        return {
          op: 'putoffset',
          result: await this.bounded(signal, (wait) =>
            executor.putOffset(target, payload.key, wait),
          ),
        };
      case 'put':
        return { op: 'put', outcome: await this.put(job, target, payload, signal) };
      case 'get':
        return { op: 'get', streamed: await this.get(job, target, payload, signal) };
    }
  }

  /** A checkpresent, a gettimestamp or a batch of them (a query of the query lane). */
  async query(payload: QueryPayload, queue: string, signal: AbortSignal): Promise<JobResult> {
    if (payload.op === 'batch') {
      return this.batch(payload.items, queue, signal);
    }
    return this.small(payload, await this.resolve(payload.target, queue), signal);
  }

  private async small(
    payload: BatchableJob,
    target: RepositoryTarget,
    signal: AbortSignal,
  ): Promise<JobResult> {
    const { executor } = this.options;
    if (payload.op === 'checkpresent') {
      // Content in the object files is answered from disk: no session to wait for.
      if (await executor.presentLocally(target, payload.key)) {
        return { op: 'checkpresent', present: true };
      }
      return {
        op: 'checkpresent',
        present: await this.bounded(signal, (wait) =>
          executor.checkPresent(target, payload.key, wait),
        ),
      };
    }
    return {
      op: 'gettimestamp',
      timestamp: await this.bounded(signal, (wait) => executor.getTimestamp(target, wait)),
    };
  }

  /** Runs every item at once; each one's failure is its own answer. */
  private async batch(
    items: readonly BatchableJob[],
    queue: string,
    signal: AbortSignal,
  ): Promise<JobResult> {
    if (!Array.isArray(items) || items.length === 0 || items.length > MAX_BATCH_ITEMS) {
      throw new DispatchError('DISPATCH_JOB_FAILED', 'malformed batch job');
    }
    const results = await Promise.all(
      items.map(async (item: unknown): Promise<BatchItemResult> => {
        try {
          const payload = item as BatchableJob | null;
          if (typeof payload !== 'object' || payload === null || !BATCHABLE_OPS.has(payload.op)) {
            throw new DispatchError('DISPATCH_JOB_FAILED', 'not a job that may be batched');
          }
          const target = await this.resolve(payload.target, queue);
          return { result: await this.small(payload, target, signal) };
        } catch (error) {
          return { error: encodeFailure(error) };
        }
      }),
    );
    return { op: 'batch', results };
  }

  /**
   * Runs an executor call whose signal only bounds waits (for a session slot, for an upload of
   * the same key): aborted with the job, or when the wait outlasts `sessionWaitMs`, which fails
   * it as unavailable.
   */
  private async bounded<T>(
    signal: AbortSignal,
    work: (wait: AbortSignal) => Promise<T>,
  ): Promise<T> {
    const controller = new AbortController();
    const onAbort = () => controller.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => controller.abort(), this.options.sessionWaitMs);
    try {
      if (signal.aborted) {
        onAbort();
      }
      return await work(controller.signal);
    } catch (error) {
      if (error instanceof AbortError && controller.signal.aborted && !signal.aborted) {
        throw new DispatchError(
          'DISPATCH_UNAVAILABLE',
          `no session free on the proxy worker within ${Math.round(this.options.sessionWaitMs / 1000)} s`,
        );
      }
      throw error;
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    }
  }

  /**
   * The session target of a job, checked against what this worker serves on that queue. A uuid
   * it does not serve (yet: another worker of its group may have found a new repository first)
   * fails as DISPATCH_NOT_SERVED, before anything is done, and the gateway sends it again.
   */
  private async resolve(target: ServedTarget, queue: string): Promise<RepositoryTarget> {
    const valid =
      typeof target === 'object' &&
      target !== null &&
      UUID.test(String(target.serverUuid)) &&
      UUID.test(String(target.clientUuid)) &&
      Array.isArray(target.bypass) &&
      target.bypass.every((uuid) => UUID.test(String(uuid))) &&
      Number.isInteger(target.version) &&
      target.version >= 0 &&
      target.version <= 4 &&
      MODES.has(target.mode) &&
      (target.requester === undefined ||
        (typeof target.requester === 'string' && target.requester.length <= MAX_REQUESTER));
    if (!valid) {
      throw new DispatchError('DISPATCH_JOB_FAILED', 'malformed job target');
    }
    const served = await this.options.registry.lookup(target.serverUuid);
    const through = served?.kind === 'repository' ? served.uuid : served?.gateway;
    if (!served || through === undefined || this.options.queueOf(through) !== queue) {
      throw new DispatchError(
        'DISPATCH_NOT_SERVED',
        'this proxy worker does not serve that uuid through this queue',
        1,
      );
    }
    const bypass = (target.bypass as readonly unknown[]).map((uuid) => String(uuid));
    return {
      ...target,
      bypass,
      repoPath: served.path,
      direct: served.kind === 'repository',
      specialRemote: served.specialRemote === true,
    };
  }

  /** Offers a stream for the job and waits for the gateway to claim it. */
  private async offer(
    job: ClusterJob,
    slot: StreamSlot,
    length: number | undefined,
    signal: AbortSignal,
    total?: number,
  ): Promise<{ request: IncomingMessage; response: ServerResponse }> {
    const onAbort = () => slot.cancel(new AbortError('job cancelled'));
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      if (signal.aborted) {
        onAbort();
      }
      const offer: StreamOffer = {
        stream: `${this.options.baseUrl}${slot.path}`,
        ...(length === undefined ? {} : { length }),
        ...(total === undefined ? {} : { total }),
      };
      await job.updateProgress(offer);
      return await slot.claimed;
    } catch (error) {
      slot.cancel(error instanceof Error ? error : new Error(String(error)));
      throw error;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  private async put(
    job: ClusterJob,
    target: RepositoryTarget,
    payload: Extract<JobPayload, { op: 'put' }>,
    signal: AbortSignal,
  ): Promise<PutOutcome> {
    let claim: { request: IncomingMessage; response: ServerResponse } | undefined;
    const offer = (): Promise<{ request: IncomingMessage; response: ServerResponse }> =>
      this.offer(job, this.options.streams.register('put'), undefined, signal);
    // The body is asked for only after PUT-FROM: then the stream is offered and its bytes read.
    const counted = { on: () => (this.claimedStreams += 1), off: () => (this.claimedStreams -= 1) };
    async function* body(): AsyncGenerator<Buffer> {
      claim = await offer();
      counted.on();
      for await (const chunk of claim.request.iterator({ destroyOnReturn: false })) {
        yield chunk as Buffer;
      }
    }
    let outcome: PutOutcome;
    try {
      outcome = await this.bounded(signal, (wait) =>
        this.options.executor.put(
          target,
          {
            key: payload.key,
            associatedFile: payload.associatedFile,
            offset: payload.offset,
            length: payload.length,
            dataPresent: payload.dataPresent,
            body: body(),
          },
          wait,
        ),
      );
    } catch (error) {
      if (claim) {
        counted.off();
        answer(claim, 502, 'text/plain;charset=utf-8', `${String(error)}\n`);
      }
      throw error;
    }
    if (claim) {
      counted.off();
      answer(claim, 200, 'application/json', JSON.stringify(outcome));
    }
    return outcome;
  }

  private async get(
    job: ClusterJob,
    target: RepositoryTarget,
    payload: Extract<JobPayload, { op: 'get' }>,
    signal: AbortSignal,
  ): Promise<boolean> {
    const limit = validLimit(payload.limit);
    const outcome = await this.bounded(signal, (wait) =>
      this.options.executor.get(
        target,
        {
          key: payload.key,
          associatedFile: payload.associatedFile,
          offset: payload.offset,
          signalInvalid: payload.signalInvalid,
          ...(limit === undefined ? {} : { limit }),
        },
        wait,
      ),
    );
    if (outcome.kind === 'absent') {
      return false;
    }
    let response: ServerResponse;
    try {
      ({ response } = await this.offer(
        job,
        this.options.streams.register('get'),
        outcome.length,
        signal,
        outcome.total,
      ));
    } catch (error) {
      // Unclaimed, abandoned or cancelled: destroying the body closes the session.
      outcome.body.destroy();
      await outcome.done.catch(() => {});
      throw error;
    }
    const onAbort = () => response.destroy();
    signal.addEventListener('abort', onAbort, { once: true });
    this.claimedStreams += 1;
    try {
      response.writeHead(200, {
        'content-type': 'application/octet-stream',
        [DATA_LENGTH_HEADER]: String(outcome.length),
      });
      outcome.releaseWhenFlushed?.(response);
      await pipeline(outcome.body, response);
      await outcome.done;
    } catch (error) {
      outcome.body.destroy();
      await outcome.done.catch(() => {});
      throw new DispatchError(
        'DISPATCH_STREAM_FAILED',
        `the get stream ended early: ${error instanceof Error ? error.message : String(error)}`,
      );
    } finally {
      this.claimedStreams -= 1;
      signal.removeEventListener('abort', onAbort);
    }
    return true;
  }
}

/** A get job's byte-range limit: a non-negative safe integer, or none. */
function validLimit(limit: unknown): number | undefined {
  if (limit === undefined) {
    return undefined;
  }
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 0) {
    throw new DispatchError('DISPATCH_JOB_FAILED', 'malformed get job: bad limit');
  }
  return limit;
}

/** Answers a claimed put stream; a body not read to its end closes the connection. */
function answer(
  claim: { request: IncomingMessage; response: ServerResponse },
  status: number,
  type: string,
  body: string,
): void {
  const { request, response } = claim;
  if (response.headersSent || response.destroyed) {
    response.destroy();
    return;
  }
  const headers: Record<string, string> = { 'content-type': type };
  if (!request.complete) {
    headers.connection = 'close';
  }
  response.writeHead(status, headers).end(body);
}
