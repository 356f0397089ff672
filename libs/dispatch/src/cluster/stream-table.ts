/**
 * The worker side of the data plane (DESIGN.md "Cluster-mode data plane"): short-lived streams
 * registered under a random, unguessable token, each claimed at most once by the gateway that
 * asked for it (`GET` for a get's bytes, `PUT` for a put's body, `DELETE` to abandon either).
 * A stream nobody claims within `claimTimeoutMs` is dropped and its owner told, so that it can
 * close the P2P session behind it.
 */
import { randomBytes } from 'node:crypto';
import { type IncomingMessage, type ServerResponse } from 'node:http';
import { DispatchError } from './errors';

export type StreamKind = 'get' | 'put';

export interface Claim {
  readonly request: IncomingMessage;
  readonly response: ServerResponse;
}

export interface StreamSlot {
  readonly token: string;
  /** The path gateways claim the stream at. */
  readonly path: string;
  /** Resolves with the gateway's request; rejects when unclaimed in time, abandoned or cancelled. */
  readonly claimed: Promise<Claim>;
  /** Withdraws an unclaimed stream (its job was cancelled). */
  cancel(reason: Error): void;
}

interface Entry {
  readonly kind: StreamKind;
  readonly resolve: (claim: Claim) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

export const STREAM_PATH = '/streams/';
export const DEFAULT_CLAIM_TIMEOUT_MS = 5000;

export class StreamTable {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly claimTimeoutMs = DEFAULT_CLAIM_TIMEOUT_MS) {}

  /** Streams registered and not yet claimed. */
  get size(): number {
    return this.entries.size;
  }

  register(kind: StreamKind): StreamSlot {
    const token = randomBytes(24).toString('base64url');
    let resolve!: (claim: Claim) => void;
    let reject!: (error: Error) => void;
    const claimed = new Promise<Claim>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // Nobody may be listening yet when it is rejected; the owner awaits it later.
    claimed.catch(() => {});
    const drop = (error: Error) => {
      const entry = this.entries.get(token);
      if (entry) {
        clearTimeout(entry.timer);
        this.entries.delete(token);
        entry.reject(error);
      }
    };
    const timer = setTimeout(
      () =>
        drop(
          new DispatchError(
            'DISPATCH_STREAM_FAILED',
            `stream not claimed within ${this.claimTimeoutMs} ms`,
          ),
        ),
      this.claimTimeoutMs,
    );
    timer.unref();
    this.entries.set(token, { kind, resolve, reject, timer });
    return { token, path: `${STREAM_PATH}${token}`, claimed, cancel: drop };
  }

  /**
   * Handles a request under STREAM_PATH: hands it to the stream's owner (GET/PUT of the right
   * kind), abandons the stream (DELETE), or answers 404 / 405. Returns false for other paths.
   */
  handle(request: IncomingMessage, response: ServerResponse): boolean {
    const url = request.url ?? '';
    if (!url.startsWith(STREAM_PATH)) {
      return false;
    }
    const token = url.slice(STREAM_PATH.length);
    const entry = this.entries.get(token);
    if (!entry) {
      plain(response, 404, 'no such stream\n');
      return true;
    }
    const method = request.method ?? '';
    const expected = entry.kind === 'get' ? 'GET' : 'PUT';
    if (method !== expected && method !== 'DELETE') {
      plain(response, 405, `use ${expected} or DELETE\n`);
      return true;
    }
    clearTimeout(entry.timer);
    this.entries.delete(token);
    if (method === 'DELETE') {
      plain(response, 204, '');
      entry.reject(new DispatchError('DISPATCH_STREAM_FAILED', 'stream abandoned by the gateway'));
      return true;
    }
    entry.resolve({ request, response });
    return true;
  }

  /** Rejects every unclaimed stream (shutdown). */
  close(reason: Error): void {
    for (const [token, entry] of [...this.entries]) {
      clearTimeout(entry.timer);
      this.entries.delete(token);
      entry.reject(reason);
    }
  }
}

function plain(response: ServerResponse, status: number, body: string): void {
  response.writeHead(status, { 'content-type': 'text/plain;charset=utf-8' }).end(body);
}
