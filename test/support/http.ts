/**
 * HTTP helpers on node:http (one fresh connection per request, nothing pooled): small JSON
 * requests with a hard deadline, and streamed downloads that report progress and can be cut.
 */
import * as http from 'node:http';

export interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  elapsedMs: number;
}

export interface RequestOptions {
  method?: string;
  headers?: http.OutgoingHttpHeaders;
  body?: Buffer | string;
  timeoutMs?: number;
}

/**
 * One request, its path, query and headers sent exactly as written (fetch would normalise `..`
 * and refuse odd headers); content-length from the body unless `headers` give one. Rejects on a
 * network error or when no complete answer came within `timeoutMs`.
 */
export function request(
  port: number,
  pathAndQuery: string,
  { method = 'POST', headers = {}, body, timeoutMs = 10_000 }: RequestOptions = {},
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const payload = body === undefined ? Buffer.alloc(0) : Buffer.from(body);
    const hasLength = Object.keys(headers).some((h) => h.toLowerCase() === 'content-length');
    const req = http.request({
      host: '127.0.0.1',
      port,
      method,
      path: pathAndQuery,
      headers: hasLength ? headers : { 'content-length': String(payload.length), ...headers },
      agent: false,
    });
    const timer = setTimeout(() => {
      req.destroy(
        new Error(`${method} ${pathAndQuery}: no complete answer within ${timeoutMs} ms`),
      );
    }, timeoutMs);
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.once('end', () => {
        clearTimeout(timer);
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks),
          elapsedMs: Date.now() - started,
        });
      });
      res.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
    req.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.end(payload);
  });
}

/** A request whose 200 answer is JSON; returns it parsed. */
export async function requestJson<T>(
  port: number,
  pathAndQuery: string,
  options: RequestOptions = {},
): Promise<T> {
  const result = await request(port, pathAndQuery, options);
  const text = result.body.toString('utf8');
  if (result.status !== 200) {
    throw new Error(`${options.method ?? 'POST'} ${pathAndQuery}: ${result.status} ${text}`);
  }
  return JSON.parse(text) as T;
}

export interface DownloadResult {
  status: number;
  /** X-git-annex-data-length, when sent */
  announced: number | undefined;
  /** Content-Range, when sent */
  contentRange: string | undefined;
  bytes: number;
  elapsedMs: number;
}

export interface DownloadOptions {
  signal?: AbortSignal;
  onBytes?: (count: number) => void;
  /** more request headers (a Range, say) */
  headers?: http.OutgoingHttpHeaders;
}

/** GETs `pathAndQuery`, discarding the body; rejects when aborted or the connection breaks. */
export function download(
  port: number,
  pathAndQuery: string,
  { signal, onBytes, headers = {} }: DownloadOptions = {},
): Promise<DownloadResult> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const req = http.request({
      host: '127.0.0.1',
      port,
      method: 'GET',
      path: pathAndQuery,
      headers: { accept: 'application/octet-stream', ...headers },
      agent: false,
    });
    const onAbort = (): void => {
      req.destroy(new Error('aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const settle = (): void => signal?.removeEventListener('abort', onAbort);
    req.once('response', (res) => {
      const header = res.headers['x-git-annex-data-length'];
      let bytes = 0;
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        onBytes?.(chunk.length);
      });
      res.once('end', () => {
        settle();
        resolve({
          status: res.statusCode ?? 0,
          announced: typeof header === 'string' ? Number(header) : undefined,
          contentRange: res.headers['content-range'],
          bytes,
          elapsedMs: Date.now() - started,
        });
      });
      res.once('error', (error) => {
        settle();
        reject(error);
      });
    });
    req.once('error', (error) => {
      settle();
      reject(error);
    });
    req.end();
  });
}

/** True if anything at all answers HTTP on the port within `timeoutMs`. */
export async function answersHttp(
  port: number,
  pathAndQuery: string,
  method = 'POST',
  timeoutMs = 2000,
): Promise<boolean> {
  try {
    await request(port, pathAndQuery, { method, timeoutMs });
    return true;
  } catch {
    return false;
  }
}

/** The status of GET `pathAndQuery` on 127.0.0.1:`port`, or 0 when nothing answers. */
export function httpStatus(
  port: number,
  pathAndQuery: string,
  timeoutMs = 10_000,
): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(
      { host: '127.0.0.1', port, path: pathAndQuery, agent: false, timeout: timeoutMs },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}
