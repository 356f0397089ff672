// Test helpers: serialise server messages the way git-annex-shell writes them (PROTOCOL.md
// §1.2), fast-check arbitraries for server streams, and event reassembly.

import fc from 'fast-check';
import type { ParserEvent, ServerMessage } from '../../src';

/** A server message plus, for DATA, its payload. */
export interface StreamItem {
  message: ServerMessage;
  payload?: Buffer;
}

export function serverLine(m: ServerMessage): string {
  switch (m.kind) {
    case 'AUTH-SUCCESS':
      return `AUTH-SUCCESS ${m.uuid}`;
    case 'VERSION':
      return `VERSION ${m.version}`;
    case 'PUT-FROM':
      return `PUT-FROM ${m.offset}`;
    case 'DATA':
      return `DATA ${m.length}`;
    case 'TIMESTAMP':
      return `TIMESTAMP ${m.timestamp}`;
    case 'SUCCESS-PLUS':
    case 'FAILURE-PLUS':
    case 'ALREADY-HAVE-PLUS':
      return [m.kind, ...m.uuids].join(' ');
    case 'ERROR':
      return `ERROR ${m.message}`;
    case 'SUCCESS':
    case 'FAILURE':
    case 'ALREADY-HAVE':
    case 'VALID':
    case 'INVALID':
      return m.kind;
  }
}

export function serialize(items: readonly StreamItem[]): Buffer {
  const parts: Buffer[] = [];
  for (const item of items) {
    parts.push(Buffer.from(serverLine(item.message) + '\n', 'utf8'));
    if (item.payload !== undefined) {
      parts.push(item.payload);
    }
  }
  return Buffer.concat(parts);
}

/** The events a correct parser emits for items, with each payload as one data event. */
export function expectedEvents(items: readonly StreamItem[]): ParserEvent[] {
  const events: ParserEvent[] = [];
  for (const item of items) {
    events.push({ type: 'message', message: item.message });
    if (item.message.kind === 'DATA') {
      if (item.payload !== undefined && item.payload.length > 0) {
        events.push({ type: 'data', chunk: item.payload });
      }
      events.push({ type: 'data-end' });
    }
  }
  return events;
}

/** Merges runs of data events into one (payload boundaries depend on chunking). */
export function mergeData(events: readonly ParserEvent[]): ParserEvent[] {
  const out: ParserEvent[] = [];
  for (const e of events) {
    const last = out[out.length - 1];
    if (e.type === 'data' && last?.type === 'data') {
      out[out.length - 1] = { type: 'data', chunk: Buffer.concat([last.chunk, e.chunk]) };
    } else {
      out.push(e);
    }
  }
  return out;
}

/** Splits buf at the given (unsorted, possibly repeated or out of range) cut points. */
export function splitAt(buf: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let start = 0;
  for (const p of points) {
    pieces.push(buf.subarray(start, p));
    start = p;
  }
  pieces.push(buf.subarray(start));
  return pieces;
}

const uuidArb = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9-]{0,40}$/);
const numArb = fc.oneof(fc.nat(1000), fc.maxSafeNat());
// An ERROR text survives the round trip unless it holds '\n' or ends in '\r'.
const errorTextArb = fc
  .string({ unit: 'binary', maxLength: 60 })
  .map((s) => s.replace(/\n/g, ' ').replace(/\r$/, '.'));

const DANGEROUS = ['\n', 'DATA 5\n', '\r\n', 'SUCCESS\n', 'DATA 0\n', 'ERROR x\n'].map((s) =>
  Buffer.from(s),
);

/** Random payload bytes, often containing newlines and things that look like lines. */
export const payloadArb: fc.Arbitrary<Buffer> = fc
  .array(
    fc.oneof(
      fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
      fc.constantFrom(...DANGEROUS),
    ),
    { maxLength: 8 },
  )
  .map((parts) => Buffer.concat(parts));

export const serverMessageArb: fc.Arbitrary<ServerMessage> = fc.oneof(
  uuidArb.map((uuid): ServerMessage => ({ kind: 'AUTH-SUCCESS', uuid })),
  numArb.map((version): ServerMessage => ({ kind: 'VERSION', version })),
  fc.constantFrom<ServerMessage>(
    { kind: 'SUCCESS' },
    { kind: 'FAILURE' },
    { kind: 'ALREADY-HAVE' },
    { kind: 'VALID' },
    { kind: 'INVALID' },
  ),
  fc
    .tuple(
      fc.constantFrom<'SUCCESS-PLUS' | 'FAILURE-PLUS' | 'ALREADY-HAVE-PLUS'>(
        'SUCCESS-PLUS',
        'FAILURE-PLUS',
        'ALREADY-HAVE-PLUS',
      ),
      fc.array(uuidArb, { maxLength: 4 }),
    )
    .map(([kind, uuids]): ServerMessage => ({ kind, uuids })),
  numArb.map((offset): ServerMessage => ({ kind: 'PUT-FROM', offset })),
  numArb.map((timestamp): ServerMessage => ({ kind: 'TIMESTAMP', timestamp })),
  errorTextArb.map((message): ServerMessage => ({ kind: 'ERROR', message })),
);

/** A stream item: any non-DATA message, or a DATA with its payload (payloads often hold newlines). */
export const streamItemArb: fc.Arbitrary<StreamItem> = fc.oneof(
  serverMessageArb.map((message) => ({ message })),
  payloadArb.map((payload): StreamItem => ({
    message: { kind: 'DATA', length: payload.length },
    payload,
  })),
);
