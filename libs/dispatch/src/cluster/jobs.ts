/**
 * The jobs of cluster mode: what a gateway puts on a repository's queue and what the proxy worker
 * answers, one discriminated union each, plus the stream offer a worker reports (as job progress)
 * for get and put, whose bytes then travel over its data port (DESIGN.md "Cluster-mode data
 * plane").
 *
 * Keys and associated files are byte strings (@annex-p2phttp/protocol, byte-text): on their way
 * through Redis they travel as `wireText` (the string itself, or `[base64url]` of its bytes when
 * it is not UTF-8), so that nothing on the way (JSON, Lua, msgpack, a UTF-8 conversion) can
 * change them. `encodePayload` and `decodePayload` do that, at the two ends of each lane.
 */
import {
  fromWireText,
  wireText,
  type RepositoryTarget,
  type ServedTarget,
} from '@annex-p2phttp/protocol';
import { type PutOffsetResult, type PutOutcome } from '@annex-p2phttp/ops';

/** What goes through the query lane (query-lane.ts), alone or batched. */
export type BatchableJob =
  | { readonly op: 'checkpresent'; readonly target: ServedTarget; readonly key: string }
  | { readonly op: 'gettimestamp'; readonly target: ServedTarget };

/** One query, or several of one queue answered together (see batcher.ts). */
export type QueryPayload =
  BatchableJob | { readonly op: 'batch'; readonly items: readonly BatchableJob[] };

/**
 * What every job carries besides its operation: the replication id of the Redis primary it was
 * queued on (PrimaryWatch of @annex-p2phttp/redis), when the gateway knew it. A worker does not
 * run a job queued on another primary: it is a job that survived a failover while its completion
 * did not, and its requester answered 503 when it lost that primary.
 */
export interface JobStamp {
  readonly primary?: string;
}

/** What goes through BullMQ: the operations that change content or move its bytes. */
export type JobPayload = JobStamp &
  (
    | {
        readonly op: 'remove';
        readonly target: ServedTarget;
        readonly key: string;
        /** REMOVE-BEFORE's timestamp; absent for REMOVE. */
        readonly before?: number;
      }
    | { readonly op: 'putoffset'; readonly target: ServedTarget; readonly key: string }
    | {
        readonly op: 'put';
        readonly target: ServedTarget;
        readonly key: string;
        readonly associatedFile: string | null;
        readonly offset: number;
        readonly length: number;
        readonly dataPresent: boolean;
      }
    | {
        readonly op: 'get';
        readonly target: ServedTarget;
        readonly key: string;
        readonly associatedFile: string | null;
        readonly offset: number;
        readonly signalInvalid: boolean;
        /** A byte range: at most this many bytes from `offset`. */
        readonly limit?: number;
      }
  );

export type JobOperation = JobPayload['op'];

export const BATCHABLE_OPS: ReadonlySet<string> = new Set(['checkpresent', 'gettimestamp']);

/** One batch member's answer: its result, or its failure as encodeFailure gives it. */
export type BatchItemResult = { readonly result: JobResult } | { readonly error: string };

export type JobResult =
  | { readonly op: 'checkpresent'; readonly present: boolean }
  | { readonly op: 'gettimestamp'; readonly timestamp: number }
  | { readonly op: 'remove'; readonly ok: boolean; readonly plusUuids: string[] }
  | { readonly op: 'putoffset'; readonly result: PutOffsetResult }
  | { readonly op: 'put'; readonly outcome: PutOutcome }
  /** `streamed`: the body went over the data port; false: the key is absent. */
  | { readonly op: 'get'; readonly streamed: boolean }
  /** One answer per item of the batch, in order. */
  | { readonly op: 'batch'; readonly results: readonly BatchItemResult[] };

/** Reported as job progress once the worker registered a stream for the job. */
export interface StreamOffer {
  /** Where the gateway claims it: GET (get) or PUT (put) this URL; DELETE abandons it. */
  readonly stream: string;
  /** get: the length of the body the stream carries (DATA's, or the byte range's). */
  readonly length?: number;
  /** get: the content's whole size, when the worker knows it. */
  readonly total?: number;
}

type AnyPayload = JobPayload | QueryPayload;

function mapText<P extends AnyPayload>(payload: P, text: (value: string) => string): P {
  switch (payload.op) {
    case 'gettimestamp':
      return payload;
    case 'batch':
      return { ...payload, items: payload.items.map((item) => mapText(item, text)) };
    case 'checkpresent':
    case 'remove':
    case 'putoffset':
      return { ...payload, key: text(payload.key) };
    case 'put':
    case 'get':
      return {
        ...payload,
        key: text(payload.key),
        associatedFile: payload.associatedFile === null ? null : text(payload.associatedFile),
      };
  }
}

/** The payload as it goes into Redis: keys and associated files as wireText. */
export function encodePayload<P extends AnyPayload>(payload: P): P {
  return mapText(payload, wireText);
}

/** The payload as it came out of Redis (encodePayload inverted); throws on a malformed value. */
export function decodePayload<P extends AnyPayload>(payload: P): P {
  if (typeof payload !== 'object' || payload === null) {
    return payload;
  }
  return mapText(payload, (value) => (typeof value === 'string' ? fromWireText(value) : value));
}

export function jobTarget(target: RepositoryTarget): ServedTarget {
  return {
    serverUuid: target.serverUuid,
    clientUuid: target.clientUuid,
    bypass: [...target.bypass],
    version: target.version,
    mode: target.mode,
    ...(target.requester === undefined ? {} : { requester: target.requester }),
  };
}

export function isStreamOffer(value: unknown): value is StreamOffer {
  const offer = value as StreamOffer | null;
  return (
    typeof offer === 'object' &&
    offer !== null &&
    typeof offer.stream === 'string' &&
    (offer.length === undefined || Number.isSafeInteger(offer.length)) &&
    (offer.total === undefined || Number.isSafeInteger(offer.total))
  );
}
