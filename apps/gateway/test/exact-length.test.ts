import { createServer, request, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { exactLength } from '../src/exact-length';

let server: Server | undefined;

afterEach(async () => {
  const open = server;
  server = undefined;
  if (open !== undefined) {
    await new Promise((resolve) => open.close(resolve));
  }
});

/** Serves `body` with Content-Length `length` through exactLength; GETs it twice on one agent. */
async function serve(
  body: () => Readable,
  length: number,
): Promise<{ received: number; complete: boolean }> {
  server = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': String(length) });
    exactLength(body(), length, res).stream.pipe(res);
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/' });
    // Cut before the headers went: no response at all.
    req.once('error', () => resolve({ received: 0, complete: false }));
    req.once('response', (res) => {
      let received = 0;
      res.on('data', (chunk: Buffer) => (received += chunk.length));
      const settle = () => resolve({ received, complete: res.complete });
      res.once('end', settle);
      res.once('error', settle);
      res.once('close', settle);
    });
    req.end();
  });
}

describe('exactLength', () => {
  it('passes a body of the announced length through', async () => {
    const result = await serve(() => Readable.from([Buffer.alloc(1000), Buffer.alloc(24)]), 1024);
    expect(result).toEqual({ received: 1024, complete: true });
  });

  it('cuts the connection when the body ends short, even before its first byte', async () => {
    const short = await serve(() => Readable.from([Buffer.alloc(1000), Buffer.alloc(23)]), 1024);
    expect(short.complete).toBe(false);
    expect(short.received).toBeLessThan(1024);
    const empty = await serve(() => Readable.from([]), 1);
    expect(empty.complete).toBe(false);
    expect(empty.received).toBe(0);
  });

  it('destroys the body when what it feeds is destroyed (a client gone)', async () => {
    const body = new Readable({ read() {} });
    const response = { destroy: () => {} } as unknown as ServerResponse;
    const { stream } = exactLength(body, 10, response);
    body.push(Buffer.alloc(1));
    stream.destroy();
    await new Promise<void>((resolve) => body.once('close', resolve));
    expect(body.destroyed).toBe(true);
  });
});
