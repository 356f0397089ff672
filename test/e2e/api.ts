/**
 * A small HTTP client for the p2phttp API (PROTOCOL.md §2), on node:http so that paths, queries
 * and headers go out exactly as written (fetch would normalise `..` and reject odd headers).
 */
import { randomUUID } from 'node:crypto';
import * as http from 'node:http';
import { expect } from 'vitest';
import { request, type HttpResult as Answer, type RequestOptions } from '../support/http';

export type { RequestOptions };
/** A complete answer: what test/support/http.ts's request and the streaming requests below give. */
export type HttpResult = Omit<Answer, 'elapsedMs'>;

/** One request on a fresh connection (test/support/http.ts), with 30 s to answer by default. */
export function httpRequest(
  port: number,
  rawPath: string,
  options: RequestOptions = {},
): Promise<HttpResult> {
  return request(port, rawPath, { timeoutMs: 30_000, ...options });
}

export type QueryValue = string | number | readonly string[] | undefined;

/** `a=1&b=2`, values percent-encoded (repeated for arrays, skipped when undefined). */
export function queryString(params: Record<string, QueryValue>): string {
  const parts: string[] = [];
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined) {
      continue;
    }
    const values = Array.isArray(value) ? (value as readonly string[]) : [String(value)];
    for (const v of values) {
      parts.push(`${encodeURIComponent(name)}=${encodeURIComponent(v)}`);
    }
  }
  return parts.join('&');
}

/** `[` + base64url with padding + `]`, the API's alternative spelling of any value. */
export function bracketBase64(value: string, { pad = true } = {}): string {
  const encoded = Buffer.from(value, 'utf8').toString('base64url');
  const padding = pad ? '='.repeat((4 - (encoded.length % 4)) % 4) : '';
  return `[${encoded}${padding}]`;
}

/** `[` + base64url with padding + `]` of any bytes (a file name or key that is not UTF-8). */
export function bracketBytes(value: Buffer): string {
  return `[${value.toString('base64url')}${'='.repeat((3 - (value.length % 3)) % 3)}]`;
}

/** Every byte of `value` as `%XX`: a plain URL value that need not be UTF-8. */
export function percentEncodeBytes(value: Buffer): string {
  return [...value].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
}

export function basicAuth(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`, 'utf8').toString('base64')}`;
}

export type Version = 0 | 1 | 2 | 3 | 4;

/** The API of one served uuid as seen by one client uuid (optionally with an Authorization). */
export class P2PApi {
  constructor(
    readonly port: number,
    readonly serverUuid: string,
    readonly clientUuid: string = randomUUID(),
    readonly authorization?: string,
  ) {}

  withAuthorization(authorization: string | undefined): P2PApi {
    return new P2PApi(this.port, this.serverUuid, this.clientUuid, authorization);
  }

  /** `/git-annex/<uuid>/v<N>/<op>?<query>`; `version` may be any string, e.g. `vx`. */
  path(version: Version | string, op: string, params: Record<string, QueryValue> = {}): string {
    const v = typeof version === 'number' ? `v${version}` : version;
    const query = queryString(params);
    return `/git-annex/${this.serverUuid}/${v}/${op}${query === '' ? '' : `?${query}`}`;
  }

  request(rawPath: string, options: RequestOptions = {}): Promise<HttpResult> {
    const headers: http.OutgoingHttpHeaders = { ...options.headers };
    if (this.authorization !== undefined && headers.authorization === undefined) {
      headers.authorization = this.authorization;
    }
    return httpRequest(this.port, rawPath, { ...options, headers });
  }

  /** POST of a JSON endpoint with key and clientuuid (pass `undefined` to leave one out). */
  post(
    op: string,
    params: Record<string, QueryValue>,
    { version = 4, ...options }: RequestOptions & { version?: Version | string } = {},
  ): Promise<HttpResult> {
    return this.request(this.path(version, op, { clientuuid: this.clientUuid, ...params }), {
      method: 'POST',
      ...options,
    });
  }

  checkpresent(key: string, version: Version = 4): Promise<HttpResult> {
    return this.post('checkpresent', { key }, { version });
  }

  remove(key: string, version: Version = 4): Promise<HttpResult> {
    return this.post('remove', { key }, { version });
  }

  removeBefore(key: string, timestamp: string | number, version: Version = 4) {
    return this.post('remove-before', { key, timestamp: String(timestamp) }, { version });
  }

  putoffset(key: string, version: Version = 4): Promise<HttpResult> {
    return this.post('putoffset', { key }, { version });
  }

  gettimestamp(version: Version = 4): Promise<HttpResult> {
    return this.post('gettimestamp', {}, { version });
  }

  lockcontent(key: string, version: Version = 4): Promise<HttpResult> {
    return this.post('lockcontent', { key }, { version });
  }

  /** POST put: `length` (default body length) goes in X-git-annex-data-length; null omits it. */
  put(
    key: string,
    body: Buffer,
    opts: {
      version?: Version;
      length?: number | string | null;
      offset?: number;
      associatedfile?: string;
      timeoutMs?: number;
    } = {},
  ): Promise<HttpResult> {
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/octet-stream' };
    const length = opts.length === undefined ? body.length : opts.length;
    if (length !== null) {
      headers['x-git-annex-data-length'] = String(length);
    }
    const params = { key, associatedfile: opts.associatedfile ?? '', offset: opts.offset ?? 0 };
    return this.post('put', params, {
      version: opts.version ?? 4,
      headers,
      body,
      timeoutMs: opts.timeoutMs,
    });
  }

  /** GET `/vN/key/<key>` (the key percent-encoded into one path segment). */
  get(key: string, opts: { version?: Version; offset?: string | number } = {}) {
    const params = { clientuuid: this.clientUuid, associatedfile: '', offset: opts.offset };
    const query = queryString(params);
    const v = `v${opts.version ?? 4}`;
    const rawPath = `/git-annex/${this.serverUuid}/${v}/key/${encodeURIComponent(key)}?${query}`;
    return this.request(rawPath, { method: 'GET' });
  }

  /**
   * Starts a v4 put of `body` and sends only its first `sent` bytes; the rest goes when the
   * caller says so (an upload still arriving).
   */
  openPut(key: string, body: Buffer, sent: number): OpenPut {
    const path = this.path(4, 'put', {
      key,
      associatedfile: '',
      offset: 0,
      clientuuid: this.clientUuid,
    });
    return new OpenPut(this.port, path, body, sent);
  }

  /** Opens keeplocked for `lockid` and sends `{"unlock":false}` at once, as the client does. */
  keeplocked(lockid: string | undefined): KeepLocked {
    const query = queryString({ lockid, clientuuid: this.clientUuid });
    const headers: http.OutgoingHttpHeaders = {
      'content-type': 'application/json',
      'transfer-encoding': 'chunked',
    };
    if (this.authorization !== undefined) {
      headers.authorization = this.authorization;
    }
    return new KeepLocked(this.port, this.path(4, 'keeplocked') + `?${query}`, headers);
  }

  /** Releases a lock: keeplocked with `{"unlock":true}` right away; answers `{"locked":false}`. */
  async unlock(lockid: string): Promise<HttpResult> {
    return this.keeplocked(lockid).unlock();
  }
}

/** A put whose body is sent in two parts, the second one only on `finish()`. */
export class OpenPut {
  private readonly req: http.ClientRequest;
  /** The answer, or the error that ended the request (a reset connection). */
  readonly response: Promise<HttpResult | Error>;
  private readonly firstPart: Promise<void>;

  constructor(
    port: number,
    rawPath: string,
    private readonly body: Buffer,
    private readonly sent: number,
  ) {
    this.req = http.request({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: rawPath,
      headers: {
        'content-type': 'application/octet-stream',
        'content-length': String(body.length),
        'x-git-annex-data-length': String(body.length),
      },
      agent: false,
    });
    this.response = new Promise((resolve) => {
      this.req.once('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.once('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
          }),
        );
        res.once('error', resolve);
      });
      this.req.once('error', resolve);
    });
    this.firstPart = new Promise((resolve) => {
      this.req.write(body.subarray(0, sent), () => resolve());
    });
  }

  /** Resolves once the first part was handed to the socket. */
  written(): Promise<void> {
    return this.firstPart;
  }

  /** Sends the rest of the body. */
  finish(): Promise<HttpResult | Error> {
    this.req.end(this.body.subarray(this.sent));
    return this.response;
  }

  /** Drops the connection (a client that died). */
  destroy(): void {
    this.req.destroy();
  }
}

/** A keeplocked long poll: a chunked request body of newline-framed JSON, held open. */
export class KeepLocked {
  private readonly req: http.ClientRequest;
  /** the answer, which a conforming server sends only after the lock is released */
  readonly response: Promise<HttpResult>;

  constructor(port: number, rawPath: string, headers: http.OutgoingHttpHeaders) {
    this.req = http.request({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: rawPath,
      headers,
      agent: false,
    });
    this.response = new Promise((resolve, reject) => {
      this.req.once('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.once('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
          }),
        );
        res.once('error', reject);
      });
      this.req.once('error', reject);
    });
    this.response.catch(() => undefined); // a disconnect() is not an unhandled rejection
    this.firstWrite = new Promise((resolve) => {
      this.req.write('{"unlock":false}\n', () => resolve());
    });
  }

  private readonly firstWrite: Promise<void>;

  /** Resolves once the headers and the first `{"unlock":false}` were handed to the socket. */
  written(): Promise<void> {
    return this.firstWrite;
  }

  sendKeepGoing(): void {
    this.req.write('{"unlock":false}\n');
  }

  /** Sends `{"unlock":true}`, ends the body and waits (max 30 s) for the answer. */
  async unlock(timeoutMs = 30_000): Promise<HttpResult> {
    this.req.end('{"unlock":true}\n');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        this.req.destroy();
        reject(new Error(`keeplocked: no answer within ${timeoutMs} ms after unlock`));
      }, timeoutMs);
    });
    try {
      return await Promise.race([this.response, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Ends the body without unlocking (a well-behaved client never does this). */
  async endWithoutUnlock(timeoutMs = 30_000): Promise<HttpResult> {
    this.req.end();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(
        () => reject(new Error(`keeplocked: no answer within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      return await Promise.race([this.response, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Drops the connection without unlocking (a client that died). */
  disconnect(): void {
    this.req.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------------------------

export const JSON_CONTENT_TYPE = /^application\/json;\s*charset=utf-8$/i;
export const WWW_AUTHENTICATE = /^Basic realm="git-annex"(, ?charset="UTF-8")?$/i;

function describeResult(result: HttpResult): string {
  const type = result.headers['content-type'] ?? '(no content-type)';
  return `HTTP ${result.status} ${type}: ${result.body.toString('utf8').slice(0, 500)}`;
}

/** Status and exact JSON body (asymmetric matchers allowed), plus a JSON content type. */
export function expectJson(result: HttpResult, status: number, body: unknown): void {
  expect(result.status, describeResult(result)).toBe(status);
  expect(result.headers['content-type'], describeResult(result)).toMatch(JSON_CONTENT_TYPE);
  let parsed: unknown;
  try {
    parsed = JSON.parse(result.body.toString('utf8'));
  } catch {
    throw new Error(`body is not JSON: ${describeResult(result)}`);
  }
  expect(parsed, describeResult(result)).toEqual(body);
}

export function expectStatus(result: HttpResult, status: number): void {
  expect(result.status, describeResult(result)).toBe(status);
}

export function jsonBody(result: HttpResult): Record<string, unknown> {
  return JSON.parse(result.body.toString('utf8')) as Record<string, unknown>;
}

/** lockcontent must answer `{"locked":true,"lockid":"…"}`; returns the lockid. */
export function expectLocked(result: HttpResult): string {
  expectJson(result, 200, { locked: true, lockid: expect.any(String) as unknown });
  const lockid = jsonBody(result).lockid as string;
  expect(lockid.length).toBeGreaterThan(0);
  return lockid;
}
