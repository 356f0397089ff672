/**
 * Runs one cluster job on this worker's sessions: resolves the job's uuid to a repository this
 * worker serves through the job's queue, then runs the operation with the InProcessDispatcher
 * (the same code as embedded mode). For get and put it opens the P2P exchange first, then offers
 * a stream on the data port (reported as job progress) and moves the bytes once the gateway
 * claims it; the job stays active until the bytes went, so the worker's BullMQ concurrency is the
 * number of sessions in use. An unclaimed or abandoned stream closes its session.
 */
import { type IncomingMessage, type ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { type Job } from 'bullmq';
import { type RepositoryRegistry } from '@annex-p2phttp/config';
import {
  DATA_LENGTH_HEADER,
  DispatchError,
  type InProcessDispatcher,
  type JobOperation,
  type JobPayload,
  type JobResult,
  type JobTarget,
  type StreamOffer,
  type StreamSlot,
  type StreamTable,
} from '@annex-p2phttp/dispatch';
import { AbortError, type PutOutcome, type SessionTarget } from '@annex-p2phttp/p2p';

export type ClusterJob = Job<JobPayload, JobResult, JobOperation>;

export interface JobProcessorOptions {
  readonly registry: RepositoryRegistry;
  readonly dispatcher: InProcessDispatcher;
  readonly streams: StreamTable;
  /** The data port's advertised base URL. */
  readonly baseUrl: string;
}

const MODES = new Set(['full', 'readonly', 'appendonly']);
const UUID = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;

export class JobProcessor {
  private claimedStreams = 0;

  constructor(private readonly options: JobProcessorOptions) {}

  /** Get and put streams claimed by a gateway and not finished yet. */
  get streams(): number {
    return this.claimedStreams;
  }

  async process(job: ClusterJob, queue: string, signal: AbortSignal): Promise<JobResult> {
    const payload = job.data;
    const target = await this.resolve(payload.target, queue);
    const { dispatcher } = this.options;
    switch (payload.op) {
      case 'checkpresent':
        return {
          op: 'checkpresent',
          present: await dispatcher.checkPresent(target, payload.key, signal),
        };
      case 'gettimestamp':
        return { op: 'gettimestamp', timestamp: await dispatcher.getTimestamp(target, signal) };
      case 'remove': {
        const result = await dispatcher.remove(target, payload.key, payload.before, signal);
        return { op: 'remove', ok: result.ok, plusUuids: result.plusUuids };
      }
      case 'putoffset':
        return { op: 'putoffset', result: await dispatcher.putOffset(target, payload.key, signal) };
      case 'put':
        return { op: 'put', outcome: await this.put(job, target, payload, signal) };
      case 'get':
        return { op: 'get', streamed: await this.get(job, target, payload, signal) };
    }
  }

  /** The session target of a job, checked against what this worker serves on that queue. */
  private async resolve(target: JobTarget, queue: string): Promise<SessionTarget> {
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
      MODES.has(target.mode);
    if (!valid) {
      throw new DispatchError('DISPATCH_JOB_FAILED', 'malformed job target');
    }
    const served = await this.options.registry.lookup(target.serverUuid);
    const through = served?.kind === 'repository' ? served.uuid : served?.gateway;
    if (!served || through !== queue) {
      throw new DispatchError(
        'DISPATCH_UNAVAILABLE',
        'this proxy worker does not serve that uuid through this queue',
      );
    }
    const bypass = (target.bypass as readonly unknown[]).map((uuid) => String(uuid));
    return { ...target, bypass, repoPath: served.path, direct: served.kind === 'repository' };
  }

  /** Offers a stream for the job and waits for the gateway to claim it. */
  private async offer(
    job: ClusterJob,
    slot: StreamSlot,
    length: number | undefined,
    signal: AbortSignal,
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
    target: SessionTarget,
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
      outcome = await this.options.dispatcher.put(
        target,
        {
          key: payload.key,
          associatedFile: payload.associatedFile,
          offset: payload.offset,
          length: payload.length,
          dataPresent: payload.dataPresent,
          body: body(),
        },
        signal,
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
    target: SessionTarget,
    payload: Extract<JobPayload, { op: 'get' }>,
    signal: AbortSignal,
  ): Promise<boolean> {
    const outcome = await this.options.dispatcher.get(
      target,
      {
        key: payload.key,
        associatedFile: payload.associatedFile,
        offset: payload.offset,
        signalInvalid: payload.signalInvalid,
      },
      signal,
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
