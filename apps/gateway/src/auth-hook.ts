/**
 * `--auth-hook URL`: a forge's service decides who may do what, in the style of reverse proxies'
 * forward-auth. Per decision: `GET URL` with the client's `Authorization` header unchanged and
 * `X-Annex-Repository-Path` (the repository's location), `X-Annex-Repository-Uuid` (the uuid
 * asked for) and `X-Annex-Access` (read, append, remove or lock). The answer:
 * - 2xx allows; an `X-Annex-User` header names the user (logs);
 * - 401: a login could help (the client gets 401 with WWW-Authenticate);
 * - 403: denied;
 * - anything else, no answer within the timeout, or no connection: the hook is unavailable, and
 *   the request is denied with 503 (fail closed), never allowed.
 * Answers (allow, 401, 403) are kept for `cacheMs` per (Authorization, location, uuid, access);
 * concurrent asks for the same are one call. At most `maxInFlight` calls run at once; more wait
 * for a place within the same timeout. close() aborts what is in flight and clears the cache.
 */
import { createHash } from 'node:crypto';
import { type PermissionClass } from '@annex-p2phttp/config';
import { AnnexP2PError } from '@annex-p2phttp/protocol';

export type HookAnswer =
  { kind: 'allow'; user: string | null } | { kind: 'deny'; status: 401 | 403 };

export interface HookQuestion {
  /** The request's Authorization header, as sent (undefined: none). */
  readonly authorization: string | undefined;
  readonly location: string;
  readonly uuid: string;
  readonly access: PermissionClass;
}

export interface AuthHookOptions {
  readonly url: string;
  /** How long an answer is reused; 0 = never. */
  readonly cacheMs: number;
  /** Bound on one decision, waiting for a place included; default 5000 ms. */
  readonly timeoutMs?: number;
  /** Calls in flight at once; default 16. */
  readonly maxInFlight?: number;
  /** Answers kept at most (the oldest go first); default 10,000. */
  readonly maxCached?: number;
  /** Says why the hook is unavailable (once per distinct reason in a row). */
  readonly log?: (message: string) => void;
}

/** The hook could not decide: the request is refused (see AUTH_HOOK_UNAVAILABLE in error-status.ts). */
export class AuthHookUnavailable extends AnnexP2PError {
  declare readonly code: 'AUTH_HOOK_UNAVAILABLE';

  constructor(message: string) {
    super('AUTH_HOOK_UNAVAILABLE', message);
    this.name = 'AuthHookUnavailable';
  }
}

export const DEFAULT_HOOK_TIMEOUT_MS = 5000;
export const DEFAULT_HOOK_IN_FLIGHT = 16;
const DEFAULT_MAX_CACHED = 10_000;
const USER_HEADER = /^[\x21-\x7e][\x20-\x7e]{0,255}$/;

export class AuthHook {
  private readonly cache = new Map<string, { answer: HookAnswer; until: number }>();
  private readonly pending = new Map<string, Promise<HookAnswer>>();
  private readonly waiting: (() => void)[] = [];
  private readonly closed = new AbortController();
  private running = 0;
  private lastProblem = '';
  private callCount = 0;
  private readonly timeoutMs: number;
  private readonly maxInFlight: number;
  private readonly maxCached: number;

  constructor(private readonly options: AuthHookOptions) {
    this.timeoutMs = options.timeoutMs ?? DEFAULT_HOOK_TIMEOUT_MS;
    this.maxInFlight = options.maxInFlight ?? DEFAULT_HOOK_IN_FLIGHT;
    this.maxCached = options.maxCached ?? DEFAULT_MAX_CACHED;
    if (!(this.maxInFlight >= 1) || !(this.timeoutMs > 0) || !(options.cacheMs >= 0)) {
      throw new RangeError('auth hook: maxInFlight >= 1, timeoutMs > 0 and cacheMs >= 0');
    }
  }

  /** Calls made to the hook so far. */
  get calls(): number {
    return this.callCount;
  }

  /** The hook's answer; throws AuthHookUnavailable when it has none. */
  decide(question: HookQuestion): Promise<HookAnswer> {
    const key = cacheKey(question);
    const cached = this.cache.get(key);
    if (cached !== undefined) {
      if (cached.until > performance.now()) {
        return Promise.resolve(cached.answer);
      }
      this.cache.delete(key);
    }
    let call = this.pending.get(key);
    if (call === undefined) {
      call = this.ask(question).then(
        (answer) => {
          this.pending.delete(key);
          this.remember(key, answer);
          return answer;
        },
        (error: unknown) => {
          this.pending.delete(key);
          throw error;
        },
      );
      this.pending.set(key, call);
    }
    return call;
  }

  /** Aborts the calls in flight (they answer 503) and forgets every answer. */
  close(): void {
    this.closed.abort(new AuthHookUnavailable('shutting down'));
    this.cache.clear();
    for (const wake of this.waiting.splice(0)) {
      wake();
    }
  }

  private remember(key: string, answer: HookAnswer): void {
    if (this.options.cacheMs === 0 || this.closed.signal.aborted) {
      return;
    }
    this.cache.delete(key);
    this.cache.set(key, { answer, until: performance.now() + this.options.cacheMs });
    while (this.cache.size > this.maxCached) {
      const oldest = this.cache.keys().next().value;
      if (oldest === undefined) {
        break;
      }
      this.cache.delete(oldest);
    }
  }

  private async ask(question: HookQuestion): Promise<HookAnswer> {
    const signal = AbortSignal.any([this.closed.signal, AbortSignal.timeout(this.timeoutMs)]);
    try {
      await this.place(signal);
    } catch {
      throw this.unavailable(`no place for a call within ${this.timeoutMs} ms`);
    }
    this.callCount += 1;
    try {
      const headers: Record<string, string> = {
        'x-annex-repository-path': encodeURI(question.location),
        'x-annex-repository-uuid': question.uuid,
        'x-annex-access': question.access,
      };
      if (question.authorization !== undefined) {
        headers.authorization = question.authorization;
      }
      let response: Response;
      try {
        response = await fetch(this.options.url, { headers, signal, redirect: 'manual' });
      } catch (error) {
        const reason = signal.aborted
          ? this.closed.signal.aborted
            ? 'shutting down'
            : `no answer within ${this.timeoutMs} ms`
          : describe(error);
        throw this.unavailable(reason);
      }
      await response.body?.cancel().catch(() => {});
      if (response.status >= 200 && response.status < 300) {
        this.lastProblem = '';
        const user = response.headers.get('x-annex-user');
        return { kind: 'allow', user: user !== null && USER_HEADER.test(user) ? user : null };
      }
      if (response.status === 401 || response.status === 403) {
        this.lastProblem = '';
        return { kind: 'deny', status: response.status };
      }
      throw this.unavailable(`answered ${response.status}`);
    } finally {
      this.running -= 1;
      this.waiting.shift()?.();
    }
  }

  /**
   * Takes a place among the maxInFlight calls (given back by ask's `finally`), waiting for one;
   * rejects when `signal` aborts first.
   */
  private place(signal: AbortSignal): Promise<void> {
    if (this.running < this.maxInFlight) {
      this.running += 1;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const wake = () => {
        if (signal.aborted) {
          signal.removeEventListener('abort', abort);
          // The place this was woken for goes to the next one waiting.
          this.waiting.shift()?.();
          reject(new AuthHookUnavailable('aborted'));
        } else if (this.running < this.maxInFlight) {
          signal.removeEventListener('abort', abort);
          this.running += 1;
          resolve();
        } else {
          this.waiting.unshift(wake);
        }
      };
      const abort = () => {
        const at = this.waiting.indexOf(wake);
        if (at >= 0) {
          this.waiting.splice(at, 1);
        }
        reject(new AuthHookUnavailable('aborted'));
      };
      signal.addEventListener('abort', abort, { once: true });
      this.waiting.push(wake);
    });
  }

  private unavailable(reason: string): AuthHookUnavailable {
    const message = `auth hook ${this.options.url}: ${reason}`;
    if (message !== this.lastProblem) {
      this.lastProblem = message;
      this.options.log?.(`${message}; denying with 503 until it answers`);
    }
    return new AuthHookUnavailable(message);
  }
}

function cacheKey(question: HookQuestion): string {
  // The credentials are kept as a digest only.
  const credentials = createHash('sha256')
    .update(question.authorization ?? '')
    .digest('base64');
  return `${credentials}\0${question.location}\0${question.uuid}\0${question.access}`;
}

function describe(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (error instanceof Error ? error.message : String(error));
}
