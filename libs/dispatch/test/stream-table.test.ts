/**
 * The worker side of the data plane over a real HTTP server: a stream is claimed once with the
 * right method, abandoned with DELETE, and dropped when nobody claims it in time.
 */
import { createServer, type Server } from 'node:http';
import { type AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DispatchError, StreamTable } from '../src/index';

let server: Server;
let table: StreamTable;
let base: string;

beforeEach(async () => {
  table = new StreamTable(300);
  server = createServer((request, response) => {
    if (!table.handle(request, response)) {
      response.writeHead(418).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  table.close(new Error('test over'));
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

describe('StreamTable', () => {
  it('hands a get stream to the first GET only', async () => {
    const slot = table.register('get');
    expect(slot.token).toMatch(/^[A-Za-z0-9_-]{32}$/);
    const claimed = slot.claimed.then(({ response }) => response.end('bytes'));
    const first = await fetch(`${base}${slot.path}`);
    await claimed;
    expect(first.status).toBe(200);
    expect(await first.text()).toBe('bytes');
    const second = await fetch(`${base}${slot.path}`);
    expect(second.status).toBe(404);
    expect(table.size).toBe(0);
  });

  it('refuses the wrong method without using up the stream', async () => {
    const slot = table.register('put');
    const wrong = await fetch(`${base}${slot.path}`);
    expect(wrong.status).toBe(405);
    const claimed = slot.claimed.then(async ({ request, response }) => {
      const chunks: Buffer[] = [];
      for await (const chunk of request) {
        chunks.push(chunk as Buffer);
      }
      response.end(`got ${Buffer.concat(chunks).length}`);
    });
    const put = await fetch(`${base}${slot.path}`, { method: 'PUT', body: 'x'.repeat(1000) });
    await claimed;
    expect(await put.text()).toBe('got 1000');
  });

  it('drops a stream nobody claims, and one the gateway abandons', async () => {
    const unclaimed = table.register('get');
    await expect(unclaimed.claimed).rejects.toThrow(/not claimed/);
    expect((await fetch(`${base}${unclaimed.path}`)).status).toBe(404);
    const abandoned = table.register('get');
    expect((await fetch(`${base}${abandoned.path}`, { method: 'DELETE' })).status).toBe(204);
    const error = await abandoned.claimed.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DispatchError);
    expect((error as DispatchError).code).toBe('DISPATCH_STREAM_FAILED');
  });

  it('rejects unclaimed streams on cancel and close', async () => {
    const cancelled = table.register('put');
    cancelled.cancel(new Error('job cancelled'));
    await expect(cancelled.claimed).rejects.toThrow('job cancelled');
    const open = table.register('get');
    table.close(new Error('shutting down'));
    await expect(open.claimed).rejects.toThrow('shutting down');
    expect(table.size).toBe(0);
    expect((await fetch(`${base}/other`)).status).toBe(418);
  });
});
