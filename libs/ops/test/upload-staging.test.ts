import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { answerWithoutSession, cutWhenIdle, stageBody } from '@annex-p2phttp/ops';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'upload-staging-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) {
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function chunks(...parts: string[]): AsyncIterable<Buffer> {
  return Readable.from(parts.map((part) => Buffer.from(part)));
}

async function* breaksAfter(...parts: string[]): AsyncGenerator<Buffer> {
  yield* chunks(...parts);
  throw new Error('client gone');
}

describe('stageBody', () => {
  it('stages a whole body, hashes it, and removes the file on discard', async () => {
    const staged = await stageBody(dir, chunks('hello ', 'world'), 11, 'sha256');
    expect(staged).toMatchObject({ received: 11, long: false, broken: false });
    expect(staged.digest).toBe(createHash('sha256').update('hello world').digest('hex'));
    expect((await readAll(staged.read())).toString()).toBe('hello world');
    await staged.discard();
    expect(await readdir(dir)).toEqual([]);
  });

  it('closes on discard a reader nobody consumed (the repository already had the content)', async () => {
    const staged = await stageBody(dir, chunks('unread'), 6);
    const reader = staged.read();
    await new Promise((resolve) => reader.once('open', resolve));
    await staged.discard();
    expect(reader.destroyed).toBe(true);
    await new Promise((resolve) =>
      reader.closed ? resolve(undefined) : reader.once('close', resolve),
    );
    expect(await readdir(dir)).toEqual([]);
  });

  it('discards a reader that has not opened the file yet without an error (a job refused at once)', async () => {
    // The reader opens the file asynchronously: a discard right after `read` must not remove
    // the file under that open, whose ENOENT would be emitted on a stream nobody listens to and
    // end the process.
    for (let round = 0; round < 200; round += 1) {
      const staged = await stageBody(dir, chunks('refused'), 7);
      const reader = staged.read();
      await staged.discard();
      await new Promise((resolve) =>
        reader.closed ? resolve(undefined) : reader.once('close', resolve),
      );
      expect(reader.errored, `round ${round}`).toBeNull();
    }
    expect(await readdir(dir)).toEqual([]);
  });

  it('keeps every byte of a body that breaks, and marks it broken', async () => {
    const staged = await stageBody(dir, breaksAfter('abc', 'def'), 100);
    expect(staged).toMatchObject({ received: 6, long: false, broken: true });
    expect((await readAll(staged.read())).toString()).toBe('abcdef');
    await staged.discard();
  });

  it('stops at the announced length and marks a longer body, staging none of the excess', async () => {
    const staged = await stageBody(dir, chunks('abcd', 'efgh'), 6);
    expect(staged).toMatchObject({ received: 6, long: true });
    expect((await readAll(staged.read())).toString()).toBe('abcdef');
    await staged.discard();
  });
});

describe('answerWithoutSession', () => {
  it('answers a longer body and an empty one itself, and hands any other over', async () => {
    const long = await stageBody(dir, chunks('abcdef'), 4);
    expect(answerWithoutSession(long, 4)).toEqual({ kind: 'long-body' });
    const none = await stageBody(dir, chunks(), 4);
    expect(answerWithoutSession(none, 4)).toEqual({ kind: 'short-body', received: 0 });
    const empty = await stageBody(dir, chunks(), 0);
    expect(answerWithoutSession(empty, 0)).toBeUndefined();
    const short = await stageBody(dir, chunks('ab'), 4);
    expect(answerWithoutSession(short, 4)).toBeUndefined();
    for (const staged of [long, none, empty, short]) {
      await staged.discard();
    }
  });
});

describe('cutWhenIdle', () => {
  it('ends a body that brings nothing for the idle time, and destroys its stream', async () => {
    const source = new PassThrough();
    source.write('first');
    const received: string[] = [];
    const done = (async () => {
      for await (const chunk of cutWhenIdle(source, 50)) {
        received.push(chunk.toString());
      }
    })();
    await done;
    expect(received).toEqual(['first']);
    expect(source.destroyed).toBe(true);
  });

  it('passes a body that keeps coming', async () => {
    const source = new PassThrough();
    const writer = (async () => {
      for (const part of ['a', 'b', 'c']) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        source.write(part);
      }
      source.end();
    })();
    const received: string[] = [];
    for await (const chunk of cutWhenIdle(source, 200)) {
      received.push(chunk.toString());
    }
    await writer;
    expect(received.join('')).toBe('abc');
    expect(source.readableEnded).toBe(true);
  });
});
