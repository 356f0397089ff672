/**
 * Opportunistic batching of small jobs per queue. While fewer than `maxInFlight` jobs of a queue
 * are out, a request goes at once as a job of its own (no timer, no delay at low load); past that
 * it waits, and when one of the queue's jobs is answered every waiting request (up to `maxBatch`)
 * goes as ONE batch job whose result carries each answer. So under load the number of jobs, and
 * with it the Redis round trips, grows with the number of answers per round trip, not with the
 * number of requests.
 *
 * A job of the queue that takes long (a checkpresent that needs a session, say) would hold up the
 * requests behind it: a request waits at most `maxWaitMs`, then the waiting ones go as a batch even
 * past `maxInFlight`. That timer runs only while requests wait, never at low load.
 *
 * A request whose signal aborts while it waits leaves the batch at once; once sent, its answer is
 * dropped when it comes, and a batch whose every member left is aborted (its job withdrawn).
 */
import { AbortError } from '@annex-p2phttp/p2p';

/** One member's answer in a batch: its value, or why it failed. */
export type Settled<R> =
  { readonly ok: true; readonly value: R } | { readonly ok: false; readonly error: Error };

export interface BatcherOptions<I, R> {
  /** Jobs per key out at once before requests wait to be batched. */
  readonly maxInFlight: number;
  /** Requests per batch job at most. */
  readonly maxBatch: number;
  /** How long a request waits for a batch at most before it goes past maxInFlight. */
  readonly maxWaitMs: number;
  /** Sends one request as a job of its own. */
  readonly single: (key: string, item: I, signal: AbortSignal | undefined) => Promise<R>;
  /** Sends several requests as one job; resolves with one Settled per item, in order. */
  readonly batch: (key: string, items: readonly I[], signal: AbortSignal) => Promise<Settled<R>[]>;
}

interface Member<I, R> {
  readonly item: I;
  readonly signal: AbortSignal | undefined;
  readonly resolve: (value: R) => void;
  readonly reject: (error: Error) => void;
  /** What its client leaving does: changes when the member moves from waiting into a batch. */
  onLeave: () => void;
  /** Detaches the abort listener; true if the member was still waiting for its answer. */
  settle(): boolean;
}

interface Lane<I, R> {
  inFlight: number;
  readonly waiting: Member<I, R>[];
  /** Flushes the waiting requests past maxInFlight; set while any wait. */
  timer: NodeJS.Timeout | null;
}

export class Batcher<I, R> {
  private readonly lanes = new Map<string, Lane<I, R>>();
  private readonly counters = { singles: 0, batches: 0, batched: 0 };

  constructor(private readonly options: BatcherOptions<I, R>) {
    if (!Number.isInteger(options.maxInFlight) || options.maxInFlight < 1) {
      throw new RangeError('maxInFlight must be an integer >= 1');
    }
    if (!Number.isInteger(options.maxBatch) || options.maxBatch < 2) {
      throw new RangeError('maxBatch must be an integer >= 2');
    }
  }

  /** Jobs sent alone, batch jobs sent, and requests that went in a batch, since start. */
  get totals(): { readonly singles: number; readonly batches: number; readonly batched: number } {
    return { ...this.counters };
  }

  /** Requests waiting for a batch, over all keys. */
  get waiting(): number {
    let count = 0;
    for (const lane of this.lanes.values()) {
      count += lane.waiting.length;
    }
    return count;
  }

  submit(key: string, item: I, signal?: AbortSignal): Promise<R> {
    if (signal?.aborted) {
      return Promise.reject(clientGone());
    }
    let lane = this.lanes.get(key);
    if (!lane) {
      lane = { inFlight: 0, waiting: [], timer: null };
      this.lanes.set(key, lane);
    }
    if (lane.inFlight < this.options.maxInFlight && lane.waiting.length === 0) {
      return this.sendSingle(key, lane, item, signal);
    }
    const waitingLane = lane;
    return new Promise<R>((resolve, reject) => {
      let open = true;
      const onAbort = () => member.onLeave();
      const member: Member<I, R> = {
        item,
        signal,
        resolve,
        reject,
        onLeave: () => {
          if (!member.settle()) {
            return;
          }
          const index = waitingLane.waiting.indexOf(member);
          if (index >= 0) {
            waitingLane.waiting.splice(index, 1);
          }
          reject(clientGone());
          this.forget(key, waitingLane);
        },
        settle: () => {
          if (!open) {
            return false;
          }
          open = false;
          signal?.removeEventListener('abort', onAbort);
          return true;
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      waitingLane.waiting.push(member);
      waitingLane.timer ??= setTimeout(() => {
        waitingLane.timer = null;
        this.flush(key, waitingLane, Number.POSITIVE_INFINITY);
      }, this.options.maxWaitMs);
    });
  }

  /** Fails every waiting request (shutdown); those already sent get their answers. */
  close(reason: Error): void {
    for (const [key, lane] of [...this.lanes]) {
      for (const member of lane.waiting.splice(0)) {
        if (member.settle()) {
          member.reject(reason);
        }
      }
      this.forget(key, lane);
    }
  }

  private async sendSingle(
    key: string,
    lane: Lane<I, R>,
    item: I,
    signal: AbortSignal | undefined,
  ): Promise<R> {
    lane.inFlight += 1;
    this.counters.singles += 1;
    try {
      return await this.options.single(key, item, signal);
    } finally {
      this.done(key, lane);
    }
  }

  private sendBatch(key: string, lane: Lane<I, R>, members: Member<I, R>[]): void {
    lane.inFlight += 1;
    this.counters.batches += 1;
    this.counters.batched += members.length;
    const controller = new AbortController();
    let left = members.length;
    const leave = () => {
      left -= 1;
      if (left === 0) {
        controller.abort(new AbortError('every request of the batch went away'));
      }
    };
    // A member that goes away is answered at once; the batch goes on for the others.
    for (const member of members) {
      member.onLeave = () => {
        if (member.settle()) {
          member.reject(clientGone());
          leave();
        }
      };
    }
    this.options
      .batch(
        key,
        members.map((member) => member.item),
        controller.signal,
      )
      .then(
        (results) => {
          members.forEach((member, i) => {
            if (!member.settle()) {
              return;
            }
            const result = results[i];
            if (result === undefined) {
              member.reject(new Error('the batch answer has no result for this request'));
            } else if (result.ok) {
              member.resolve(result.value);
            } else {
              member.reject(result.error);
            }
          });
        },
        (error: unknown) => {
          const reason = error instanceof Error ? error : new Error(String(error));
          for (const member of members) {
            if (member.settle()) {
              member.reject(reason);
            }
          }
        },
      )
      .finally(() => this.done(key, lane));
  }

  /** One of the lane's jobs was answered: the requests that waited meanwhile go now. */
  private done(key: string, lane: Lane<I, R>): void {
    lane.inFlight -= 1;
    this.flush(key, lane, this.options.maxInFlight);
  }

  /** Sends the waiting requests while fewer than `limit` jobs of the lane are out. */
  private flush(key: string, lane: Lane<I, R>, limit: number): void {
    while (lane.inFlight < limit && lane.waiting.length > 0) {
      const members = lane.waiting.splice(0, this.options.maxBatch);
      if (members.length === 1) {
        const [member] = members as [Member<I, R>];
        // It waited with an abort listener of its own; the single job takes its signal now.
        if (member.settle()) {
          this.sendSingle(key, lane, member.item, member.signal).then(
            member.resolve,
            member.reject,
          );
        }
      } else {
        this.sendBatch(key, lane, members);
      }
    }
    this.forget(key, lane);
  }

  private forget(key: string, lane: Lane<I, R>): void {
    if (lane.waiting.length === 0 && lane.timer) {
      clearTimeout(lane.timer);
      lane.timer = null;
    }
    if (lane.inFlight === 0 && lane.waiting.length === 0 && this.lanes.get(key) === lane) {
      this.lanes.delete(key);
    }
  }
}

/** What the dispatcher answers a request whose client went away, batched or not. */
function clientGone(): Error {
  return new AbortError('client disconnected');
}
