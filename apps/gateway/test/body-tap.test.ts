import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { stageBody } from '@annex-p2phttp/ops';
import { BodyTap } from '../src/body-tap';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'body-tap-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('BodyTap', () => {
  it('keeps the chunks that arrived before its source was destroyed', async () => {
    const source = new PassThrough();
    const tap = new BodyTap(source);
    source.write('kept ');
    source.write('bytes');
    await new Promise((resolve) => setImmediate(resolve));
    source.destroy(new Error('aborted'));
    const received: string[] = [];
    await expect(
      (async () => {
        for await (const chunk of tap) {
          received.push(chunk.toString());
        }
      })(),
    ).rejects.toThrow('aborted');
    expect(received.join('')).toBe('kept bytes');
    expect(tap.complete).toBe(false);
  });

  it('ends with its source, complete, and pauses the source past its high-water mark', async () => {
    const source = new PassThrough();
    const tap = new BodyTap(source, 4);
    source.write('12345');
    await new Promise((resolve) => setImmediate(resolve));
    expect(source.isPaused()).toBe(true);
    source.end('678');
    const staged = await stageBody(dir, tap, 8);
    expect(staged).toMatchObject({ received: 8, broken: false });
    expect(tap.complete).toBe(true);
    expect(await readFile(path.join(dir, (await readdir(dir))[0] ?? ''), 'utf8')).toBe('12345678');
    await staged.discard();
  });
});

describe('BodyTap on a real HTTP request', () => {
  it('keeps every byte a client sent before it went away, also while it held the body paused', async () => {
    const size = 768 * 1024;
    const cut = 512 * 1024 + 3;
    const received: number[] = [];
    const server = http.createServer((request, response) => {
      const tap = new BodyTap(request, 16 * 1024);
      void (async () => {
        let got = 0;
        try {
          for await (const chunk of tap) {
            got += chunk.length;
            // A slow disk: the tap pauses the request meanwhile.
            await new Promise((resolve) => setTimeout(resolve, Math.random() * 4));
          }
        } catch {
          // The client went away: what arrived counts.
        }
        received.push(got);
        response.destroy();
      })();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      for (let round = 0; round < 12; round += 1) {
        const before = received.length;
        await new Promise<void>((resolve) => {
          const request = http.request({
            host: '127.0.0.1',
            port,
            method: 'POST',
            headers: { 'content-length': String(size) },
            agent: false,
          });
          request.on('error', () => undefined);
          request.write(Buffer.alloc(cut), () => {
            request.destroy();
            resolve();
          });
        });
        const deadline = Date.now() + 10_000;
        while (received.length === before && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      }
    } finally {
      server.close();
    }
    expect(received).toEqual(Array.from({ length: 12 }, () => cut));
  });
});
