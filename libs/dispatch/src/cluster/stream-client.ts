/**
 * The gateway side of the data plane: claims a stream a proxy worker offered (StreamOffer) and
 * moves the bytes over plain Node http with backpressure. A get's body is relayed exactly as the
 * worker sends it (one byte short when the content proved invalid); a put's body is sent as it
 * arrives and the worker answers with the put's outcome. A client that goes away destroys the
 * request to the worker, which closes the P2P session behind it.
 */
import { Agent, request as httpRequest, type IncomingMessage } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { type PutOutcome } from '@annex-p2phttp/ops';
import { DispatchError } from './errors';

export const DATA_LENGTH_HEADER = 'x-git-annex-data-length';

export function streamFailed(message: string, cause?: unknown): DispatchError {
  const detail = cause instanceof Error ? `: ${cause.message}` : '';
  return new DispatchError('DISPATCH_STREAM_FAILED', `${message}${detail}`);
}

/** A keep-alive agent for the data plane (large socket buffers are the kernel's business). */
export function dataPlaneAgent(): Agent {
  return new Agent({ keepAlive: true, keepAliveMsecs: 10_000, maxFreeSockets: 64 });
}

/** Claims a get stream: the response whose body is the content (already flowing on return). */
export function claimGetStream(
  url: string,
  agent: Agent,
  signal?: AbortSignal,
): Promise<{ length: number; body: IncomingMessage; done: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'GET', agent, signal });
    req.once('error', (error) => reject(streamFailed('cannot claim the stream', error)));
    req.once('response', (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(streamFailed(`the proxy worker answered ${res.statusCode} to a stream claim`));
        return;
      }
      const length = Number(res.headers[DATA_LENGTH_HEADER]);
      const done = new Promise<void>((ok, fail) => {
        res.once('end', ok);
        res.once('error', (error) => fail(streamFailed('the stream broke', error)));
        res.once('close', () => {
          if (!res.complete) {
            fail(streamFailed('the stream broke'));
          }
        });
      });
      done.catch(() => {});
      resolve({ length, body: res, done });
    });
    req.end();
  });
}

/** Abandons a stream that will not be claimed (a HEAD request, a client gone). */
export function abandonStream(url: string, agent: Agent): void {
  const req = httpRequest(url, { method: 'DELETE', agent });
  req.once('error', () => {});
  req.once('response', (res) => res.resume());
  req.end();
}

/** Sends a put's body to the worker's stream; resolves with the outcome the worker reports. */
export async function sendPutStream(
  url: string,
  body: AsyncIterable<Buffer>,
  agent: Agent,
  signal?: AbortSignal,
): Promise<PutOutcome> {
  const req = httpRequest(url, {
    method: 'PUT',
    agent,
    signal,
    headers: { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' },
  });
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.once('response', resolve);
    req.once('error', reject);
  });
  response.catch(() => {});
  const source = body instanceof Readable ? body : Readable.from(body);
  // The worker may answer before the whole body went (ALREADY-HAVE, an overlong body): then the
  // rest is not needed and the upload stops there.
  const sent = pipeline(source, req).catch((error: unknown) => error);
  const res = await Promise.race([response, sent.then(() => response)]).catch((error: unknown) => {
    req.destroy();
    throw streamFailed('the upload to the proxy worker failed', error);
  });
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      chunks.push(chunk);
    }
  } catch (error) {
    throw streamFailed('the proxy worker did not answer the upload', error);
  }
  if (!req.writableFinished) {
    req.destroy();
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (res.statusCode !== 200) {
    throw streamFailed(`the proxy worker answered ${res.statusCode}: ${text.trim()}`);
  }
  return JSON.parse(text) as PutOutcome;
}
