/**
 * The operations of the HTTP API, each a function of (connection, request) that speaks the P2P
 * exchange of PROTOCOL.md §1.4 / §2.3-§2.5 over a busy connection. They leave the connection at a
 * message boundary when they return normally; any other outcome closes it. The in-process
 * dispatcher and the cluster workers call the same functions.
 */
import { Readable } from 'node:stream';
import { ProtocolError, type ServerMessage } from '@annex-p2phttp/protocol';
import {
  ConnectionClosedError,
  describe,
  RemoteError,
  type P2PConnection,
} from '@annex-p2phttp/p2p';

export interface PlusResult {
  readonly ok: boolean;
  readonly plusUuids: string[];
}

function unexpected(connection: P2PConnection, message: ServerMessage, expected: string): never {
  if (message.kind === 'ERROR') {
    // The session is still usable after an ERROR (PROTOCOL.md §1.5); the caller decides.
    throw new RemoteError(message.message);
  }
  const error = new ProtocolError(`expected ${expected}, got ${describe(message)}`);
  connection.close(error);
  throw error;
}

/** SUCCESS / FAILURE, with or without -PLUS. */
function successOrFailure(connection: P2PConnection, message: ServerMessage): PlusResult {
  switch (message.kind) {
    case 'SUCCESS':
      return { ok: true, plusUuids: [] };
    case 'FAILURE':
      return { ok: false, plusUuids: [] };
    case 'SUCCESS-PLUS':
      return { ok: true, plusUuids: message.uuids };
    case 'FAILURE-PLUS':
      return { ok: false, plusUuids: message.uuids };
    default:
      return unexpected(connection, message, 'SUCCESS or FAILURE');
  }
}

export async function checkPresent(connection: P2PConnection, key: string): Promise<boolean> {
  await connection.send({ kind: 'CHECKPRESENT', key });
  return successOrFailure(connection, await connection.expectMessage()).ok;
}

export async function getTimestamp(connection: P2PConnection): Promise<number> {
  await connection.send({ kind: 'GETTIMESTAMP' });
  const reply = await connection.expectMessage();
  if (reply.kind !== 'TIMESTAMP') {
    return unexpected(connection, reply, 'TIMESTAMP');
  }
  return reply.timestamp;
}

/**
 * REMOVE / REMOVE-BEFORE. git-annex-shell dies with "content is locked" when another process holds
 * the content (PROTOCOL.md §1.4): that is an answer (not removed), not a server failure.
 */
export async function remove(
  connection: P2PConnection,
  key: string,
  before?: number,
): Promise<PlusResult> {
  try {
    await connection.send(
      before === undefined
        ? { kind: 'REMOVE', key }
        : { kind: 'REMOVE-BEFORE', timestamp: before, key },
    );
    return successOrFailure(connection, await connection.expectMessage());
  } catch (error) {
    if (error instanceof ConnectionClosedError && /content is locked/i.test(error.stderr)) {
      return { ok: false, plusUuids: [] };
    }
    throw error;
  }
}

/**
 * REMOVE-BEFORE judged on this side, for a peer that cannot judge it (a special remote proxied by
 * git-annex-shell, which gives up on REMOVE-BEFORE): the deadline is compared with `now()` once
 * the session is ours, right before REMOVE goes out, as git-annex itself checks a drop proof's
 * deadline right before it removes from a special remote. The content goes only while `now()` is
 * still below the deadline (git-annex-shell's own test); otherwise nothing is sent: FAILURE.
 */
export async function removeBeforeJudgedHere(
  connection: P2PConnection,
  key: string,
  before: number,
  now: () => Promise<number>,
): Promise<PlusResult> {
  if (!((await now()) < before)) {
    return { ok: false, plusUuids: [] };
  }
  return remove(connection, key);
}

/** LOCKCONTENT: on true the connection holds the lock until `unlockContent`. */
export async function lockContent(connection: P2PConnection, key: string): Promise<boolean> {
  await connection.send({ kind: 'LOCKCONTENT', key });
  return successOrFailure(connection, await connection.expectMessage()).ok;
}

export async function unlockContent(connection: P2PConnection): Promise<void> {
  await connection.send({ kind: 'UNLOCKCONTENT' });
}

export type PutOffsetResult =
  | { readonly kind: 'offset'; readonly offset: number }
  | { readonly kind: 'already-have'; readonly plusUuids: string[] };

/** putoffset: PUT, then abandon the transfer with an empty invalid DATA (PROTOCOL.md §2.4). */
export async function putOffset(connection: P2PConnection, key: string): Promise<PutOffsetResult> {
  await connection.send({ kind: 'PUT', af: null, key });
  const reply = await connection.expectMessage();
  switch (reply.kind) {
    case 'ALREADY-HAVE':
      return { kind: 'already-have', plusUuids: [] };
    case 'ALREADY-HAVE-PLUS':
      return { kind: 'already-have', plusUuids: reply.uuids };
    case 'PUT-FROM':
      await abandonPut(connection);
      return { kind: 'offset', offset: reply.offset };
    default:
      return unexpected(connection, reply, 'PUT-FROM or ALREADY-HAVE');
  }
}

/** After PUT-FROM: sends no content and reads the resulting FAILURE, keeping the session clean. */
async function abandonPut(connection: P2PConnection): Promise<void> {
  if (connection.version < 1) {
    // v0 has no INVALID: an empty DATA would be taken as the whole content.
    connection.close(new ProtocolError('cannot abandon a transfer at protocol version 0'));
    return;
  }
  await connection.send({ kind: 'DATA', length: 0 });
  await connection.send({ kind: 'INVALID' });
  successOrFailure(connection, await connection.expectMessage());
}

export interface PutRequest {
  readonly key: string;
  readonly associatedFile: string | null;
  /** Offset the client's body starts at (the `offset` parameter). */
  readonly offset: number;
  /** Body length announced by `X-git-annex-data-length`. */
  readonly length: number;
  readonly body: AsyncIterable<Buffer>;
  /** v4 `data-present=true`: the content was put in place out of band. */
  readonly dataPresent: boolean;
}

export type PutOutcome =
  /** The repository answered; `stored` is its verdict. */
  | { readonly kind: 'done'; readonly stored: boolean; readonly plusUuids: string[] }
  /** The body ended before the announced length: partial content kept for a resume. */
  | { readonly kind: 'short-body'; readonly received: number }
  /** The body was longer than announced: nothing stored. */
  | { readonly kind: 'long-body' }
  /** The client resumes from an offset below what the repository has; nothing was sent. */
  | { readonly kind: 'offset-mismatch'; readonly serverOffset: number };

/**
 * put (PROTOCOL.md §2.4): PUT, then on PUT-FROM o stream the body from o (skipping what the
 * repository already has), check its length against the announced one, and report VALID or
 * INVALID. A short body closes the session, which keeps the partial content resumable.
 */
export async function put(connection: P2PConnection, request: PutRequest): Promise<PutOutcome> {
  await connection.send({ kind: 'PUT', af: request.associatedFile, key: request.key });
  const reply = await connection.expectMessage();
  if (reply.kind === 'ALREADY-HAVE') {
    return { kind: 'done', stored: true, plusUuids: [] };
  }
  if (reply.kind === 'ALREADY-HAVE-PLUS') {
    return { kind: 'done', stored: true, plusUuids: reply.uuids };
  }
  if (reply.kind !== 'PUT-FROM') {
    return unexpected(connection, reply, 'PUT-FROM or ALREADY-HAVE');
  }
  if (request.dataPresent && connection.version >= 4) {
    await connection.send({ kind: 'DATA-PRESENT' });
    const result = successOrFailure(connection, await connection.expectMessage());
    return { kind: 'done', stored: result.ok, plusUuids: result.ok ? result.plusUuids : [] };
  }
  const skip = reply.offset - request.offset;
  if (skip < 0 || skip > request.length) {
    await abandonPut(connection);
    return { kind: 'offset-mismatch', serverOffset: reply.offset };
  }
  const toSend = request.length - skip;
  await connection.send({ kind: 'DATA', length: toSend });
  const streamed = await streamBody(connection, request.body, skip, toSend);
  if (streamed.received < request.length) {
    // Every byte sent reaches the repository before its input ends: it keeps them all as the
    // partial content that putoffset then reports.
    await connection.closeAfterWrites(
      new ConnectionClosedError('request body ended before its announced length'),
    );
    return { kind: 'short-body', received: streamed.received };
  }
  if (streamed.received > request.length) {
    // The last byte was never sent, so the repository cannot have completed the content.
    connection.close(new ConnectionClosedError('request body longer than announced'));
    return { kind: 'long-body' };
  }
  if (connection.version >= 1) {
    await connection.send({ kind: 'VALID' });
  }
  const result = successOrFailure(connection, await connection.expectMessage());
  // A FAILURE-PLUS on put reports no stored copies (PROTOCOL.md §2.2).
  return { kind: 'done', stored: result.ok, plusUuids: result.ok ? result.plusUuids : [] };
}

/**
 * Writes body bytes [skip, skip + count) to the peer. The final byte is held back until the body
 * ended, so that a body longer than announced never completes the content in the repository.
 * Returns how many body bytes arrived (more than skip + count for an overlong body).
 */
async function streamBody(
  connection: P2PConnection,
  body: AsyncIterable<Buffer>,
  skip: number,
  count: number,
): Promise<{ received: number }> {
  const end = skip + count;
  let received = 0;
  let last: Buffer | null = null;
  for await (const chunk of untilBroken(body)) {
    const start = received;
    received += chunk.length;
    if (received > end) {
      return { received };
    }
    const from = Math.max(0, skip - start);
    if (from >= chunk.length) {
      continue;
    }
    const part = from === 0 ? chunk : chunk.subarray(from);
    if (received === end) {
      if (part.length > 1) {
        await connection.write(part.subarray(0, part.length - 1));
      }
      last = part.subarray(part.length - 1);
    } else {
      await connection.write(part);
    }
  }
  if (received === end && last) {
    await connection.write(last);
  }
  return { received };
}

/**
 * The chunks of `body` until it ends or breaks (a client that went away mid-body): what arrived
 * before the break counts as a body that ended there.
 */
async function* untilBroken(body: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  try {
    for await (const chunk of body) {
      yield chunk;
    }
  } catch {
    // The body ended here.
  }
}

export interface GetRequest {
  readonly key: string;
  readonly associatedFile: string | null;
  readonly offset: number;
  /** Withhold the last byte when the content proved invalid (versioned API, v1+). */
  readonly signalInvalid: boolean;
  /**
   * At most this many bytes from `offset` (a byte range); absent: to the end. A transfer cut
   * before its end never learns the content's validity, and its session is closed.
   */
  readonly limit?: number;
}

export type GetOutcome =
  | { readonly kind: 'absent' }
  | {
      readonly kind: 'data';
      /** Bytes the body carries (one fewer when it ends short to signal invalid content). */
      readonly length: number;
      /**
       * The content's whole size, when known: the file's size, or the offset plus the length
       * DATA announced. Unknown for an empty DATA at an offset (the content ends at or before it).
       */
      readonly total?: number;
      readonly body: Readable;
      /** Settles when the exchange ended: resolved with the session clean, rejected otherwise. */
      readonly done: Promise<void>;
      /** Lets the body reuse its buffers once `sink` flushed them (object files only). */
      readonly releaseWhenFlushed?: (sink: { readonly writableLength: number }) => void;
    };

/**
 * GET (PROTOCOL.md §2.3): answers once the DATA line arrived, then streams exactly the payload
 * through `body` with backpressure to the peer. When the peer reports INVALID after the payload,
 * the body ends one byte short: that is how the HTTP API signals it. Destroying `body` before its
 * end (client gone) closes the session. With a `limit` below the payload's length the body ends
 * after that many bytes and the session is closed there (it is left mid-payload).
 */
export async function get(connection: P2PConnection, request: GetRequest): Promise<GetOutcome> {
  await connection.send({
    kind: 'GET',
    offset: request.offset,
    af: request.associatedFile,
    key: request.key,
  });
  const first = await connection.expectMessage();
  if (first.kind !== 'DATA') {
    return unexpected(connection, first, 'DATA');
  }
  const length = first.length;
  if (length === 0) {
    await expectEvent(connection, 'data-end');
    const valid = await readValidity(connection);
    await connection.send({ kind: valid ? 'SUCCESS' : 'FAILURE' });
    if (!valid || (connection.version === 0 && !(await checkPresent(connection, request.key)))) {
      return { kind: 'absent' };
    }
    const body = Readable.from([]);
    const total = request.offset === 0 ? 0 : undefined;
    return { kind: 'data', length: 0, total, body, done: Promise.resolve() };
  }
  // The answer waits for the first payload bytes: a peer that announced content and then failed
  // to produce it (git-annex-shell proxying a special remote that lacks the key) is a failed GET,
  // not a response that breaks before its first byte.
  const firstBytes = await payloadChunk(connection);
  const total = request.offset + length;
  const limit = request.limit !== undefined && request.limit < length ? request.limit : undefined;
  return streamGet(connection, firstBytes, length, total, request.signalInvalid, limit);
}

async function payloadChunk(connection: P2PConnection): Promise<Buffer> {
  const event = await connection.next();
  if (event.type !== 'data') {
    const error = new ProtocolError(`expected payload bytes, got ${event.type}`);
    connection.close(error);
    throw error;
  }
  return event.chunk;
}

function streamGet(
  connection: P2PConnection,
  first: Buffer,
  length: number,
  total: number,
  signalInvalid: boolean,
  limit?: number,
): GetOutcome {
  let firstChunk: Buffer | null = first;
  const nextChunk = (): Promise<Buffer> => {
    const chunk = firstChunk;
    firstChunk = null;
    return chunk === null ? payloadChunk(connection) : Promise.resolve(chunk);
  };
  let wake: (() => void) | null = null;
  let finished = false;
  const body = new Readable({
    highWaterMark: 256 * 1024,
    read() {
      const resume = wake;
      wake = null;
      resume?.();
    },
    destroy(error, callback) {
      if (!finished) {
        connection.close(new ConnectionClosedError('download abandoned by the client'));
      }
      const resume = wake;
      wake = null;
      resume?.();
      callback(error);
    },
  });
  const push = async (chunk: Buffer) => {
    if (!body.push(chunk)) {
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
    if (body.destroyed) {
      throw new ConnectionClosedError('download abandoned by the client');
    }
  };
  const done = (async () => {
    if (limit !== undefined) {
      await streamPart(limit);
      return;
    }
    let remaining = length;
    let held: Buffer | null = null;
    while (remaining > 0) {
      const chunk = await nextChunk();
      remaining -= chunk.length;
      if (held) {
        await push(held);
      }
      held = chunk;
    }
    await expectEvent(connection, 'data-end');
    const valid = await readValidity(connection);
    if (held) {
      const last = valid || !signalInvalid ? held : held.subarray(0, held.length - 1);
      if (last.length > 0) {
        await push(last);
      }
    }
    await connection.send({ kind: valid ? 'SUCCESS' : 'FAILURE' });
    finished = true;
    body.push(null);
  })();
  /** The first `count` payload bytes, then the session is closed: it is left mid-payload. */
  async function streamPart(count: number): Promise<void> {
    let remaining = count;
    if (remaining === 0) {
      connection.close(new ConnectionClosedError('byte range sent; the rest is not wanted'));
    }
    while (remaining > 0) {
      const payload = await nextChunk();
      const chunk = payload.length > remaining ? payload.subarray(0, remaining) : payload;
      remaining -= chunk.length;
      if (remaining === 0) {
        connection.close(new ConnectionClosedError('byte range sent; the rest is not wanted'));
      }
      await push(chunk);
    }
    finished = true;
    body.push(null);
  }
  done.catch((error: unknown) => {
    connection.close(error instanceof Error ? error : new Error(String(error)));
    body.destroy(error instanceof Error ? error : new Error(String(error)));
  });
  return { kind: 'data', length: limit ?? length, total, body, done };
}

async function expectEvent(connection: P2PConnection, type: 'data-end'): Promise<void> {
  const event = await connection.next();
  if (event.type !== type) {
    const error = new ProtocolError(`expected ${type}, got ${event.type}`);
    connection.close(error);
    throw error;
  }
}

/** VALID / INVALID after a payload, from version 1 on; version 0 has none (always valid). */
async function readValidity(connection: P2PConnection): Promise<boolean> {
  if (connection.version < 1) {
    return true;
  }
  const message = await connection.expectMessage();
  if (message.kind === 'VALID') {
    return true;
  }
  if (message.kind === 'INVALID') {
    return false;
  }
  return unexpected(connection, message, 'VALID or INVALID');
}
