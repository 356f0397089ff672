import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_LINE_BYTES, P2PStreamParser, ProtocolError, type ParserEvent } from '../src';
import {
  expectedEvents,
  mergeData,
  serialize,
  splitAt,
  streamItemArb,
  type StreamItem,
} from './helpers/server-stream';

function feed(parser: P2PStreamParser, pieces: readonly Buffer[]): ParserEvent[] {
  return pieces.flatMap((p) => parser.push(p));
}

function bytewise(buf: Buffer): Buffer[] {
  return Array.from({ length: buf.length }, (_, i) => buf.subarray(i, i + 1));
}

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

describe('P2PStreamParser', () => {
  it('parses several messages in one chunk', () => {
    const p = new P2PStreamParser();
    expect(p.push(b('AUTH-SUCCESS abc-1\nVERSION 4\nSUCCESS\n'))).toEqual([
      { type: 'message', message: { kind: 'AUTH-SUCCESS', uuid: 'abc-1' } },
      { type: 'message', message: { kind: 'VERSION', version: 4 } },
      { type: 'message', message: { kind: 'SUCCESS' } },
    ]);
    expect(p.inData).toBe(false);
    expect(() => p.end()).not.toThrow();
  });

  it('drops a trailing CR', () => {
    const p = new P2PStreamParser();
    expect(p.push(b('FAILURE\r\nERROR oops\r\n'))).toEqual([
      { type: 'message', message: { kind: 'FAILURE' } },
      { type: 'message', message: { kind: 'ERROR', message: 'oops' } },
    ]);
  });

  it('emits DATA, payload subarrays, data-end, then the next line', () => {
    const p = new P2PStreamParser();
    const input = b('DATA 5\nab\ncdVALID\n');
    const events = p.push(input);
    expect(events).toHaveLength(4);
    expect(events[0]).toEqual({ type: 'message', message: { kind: 'DATA', length: 5 } });
    const data = events[1];
    expect(data?.type).toBe('data');
    if (data?.type === 'data') {
      expect(data.chunk.toString('latin1')).toBe('ab\ncd');
      expect(data.chunk.buffer).toBe(input.buffer); // no copy
      expect(data.chunk.byteOffset).toBe(input.byteOffset + 7);
    }
    expect(events[2]).toEqual({ type: 'data-end' });
    expect(events[3]).toEqual({ type: 'message', message: { kind: 'VALID' } });
  });

  it('emits data-end right after DATA 0', () => {
    const p = new P2PStreamParser();
    expect(p.push(b('DATA 0\nINVALID\n'))).toEqual([
      { type: 'message', message: { kind: 'DATA', length: 0 } },
      { type: 'data-end' },
      { type: 'message', message: { kind: 'INVALID' } },
    ]);
  });

  it('tracks inData across chunks and never emits empty data chunks', () => {
    const p = new P2PStreamParser();
    expect(p.push(b('DATA 4\n'))).toEqual([
      { type: 'message', message: { kind: 'DATA', length: 4 } },
    ]);
    expect(p.inData).toBe(true);
    expect(p.push(Buffer.alloc(0))).toEqual([]);
    expect(p.push(b('DA'))).toEqual([{ type: 'data', chunk: b('DA') }]);
    expect(p.inData).toBe(true);
    expect(p.push(b('TA'))).toEqual([{ type: 'data', chunk: b('TA') }, { type: 'data-end' }]);
    expect(p.inData).toBe(false);
  });

  it('reassembles a line split across chunks', () => {
    const p = new P2PStreamParser();
    expect(p.push(b('SUCCESS-PL'))).toEqual([]);
    expect(p.push(b('US u1 '))).toEqual([]);
    expect(p.push(b('u2\nTIMES'))).toEqual([
      { type: 'message', message: { kind: 'SUCCESS-PLUS', uuids: ['u1', 'u2'] } },
    ]);
    expect(p.push(b('TAMP 77\n'))).toEqual([
      { type: 'message', message: { kind: 'TIMESTAMP', timestamp: 77 } },
    ]);
  });

  it('does not keep references to the caller buffer of a partial line', () => {
    const p = new P2PStreamParser();
    const chunk = b('VERS');
    p.push(chunk);
    chunk.fill(0x41); // caller reuses its buffer
    expect(p.push(b('ION 2\n'))).toEqual([
      { type: 'message', message: { kind: 'VERSION', version: 2 } },
    ]);
  });

  it('throws on a malformed line and is unusable afterwards', () => {
    const p = new P2PStreamParser();
    expect(() => p.push(b('SUCCESS\nBOGUS 1\n'))).toThrow(ProtocolError);
    expect(() => p.push(b('SUCCESS\n'))).toThrow(ProtocolError);
    expect(() => p.end()).toThrow(ProtocolError);
  });

  it('throws when pushed after end()', () => {
    const p = new P2PStreamParser();
    p.end();
    expect(() => p.end()).not.toThrow();
    expect(() => p.push(b('SUCCESS\n'))).toThrow(ProtocolError);
  });

  it('end() throws inside a line or a payload', () => {
    const inLine = new P2PStreamParser();
    inLine.push(b('SUCC'));
    expect(() => inLine.end()).toThrow(/inside a line/);
    const inPayload = new P2PStreamParser();
    inPayload.push(b('DATA 3\nab'));
    expect(() => inPayload.end()).toThrow(/1 bytes of DATA payload missing/);
    const afterHeader = new P2PStreamParser();
    afterHeader.push(b('DATA 3\n'));
    expect(() => afterHeader.end()).toThrow(ProtocolError);
  });

  it('accepts a line of exactly maxLineBytes and rejects one byte more', () => {
    const exact = 'ERROR ' + 'x'.repeat(MAX_LINE_BYTES - 6);
    expect(new P2PStreamParser().push(b(exact + '\n'))).toEqual([
      { type: 'message', message: { kind: 'ERROR', message: 'x'.repeat(MAX_LINE_BYTES - 6) } },
    ]);
    expect(() => new P2PStreamParser().push(b(exact + 'x\n'))).toThrow(ProtocolError);
    const p = new P2PStreamParser();
    expect(p.push(b(exact))).toEqual([]);
    expect(() => p.push(b('x'))).toThrow(/longer than 32767/);
  });

  it('rejects a huge line without newline in one push', () => {
    const p = new P2PStreamParser({ maxLineBytes: 100 });
    expect(() => p.push(Buffer.alloc(10_000_000, 0x41))).toThrow(ProtocolError);
  });

  it('rejects an invalid maxLineBytes option', () => {
    expect(() => new P2PStreamParser({ maxLineBytes: 0 })).toThrow(RangeError);
  });
});

describe('P2PStreamParser properties', () => {
  const itemsArb = fc.array(streamItemArb, { maxLength: 12 });

  it('(1) any chunking of a serialised stream gives back the original events', () => {
    fc.assert(
      fc.property(itemsArb, fc.array(fc.nat(), { maxLength: 20 }), (items, cuts) => {
        const bytes = serialize(items);
        const parser = new P2PStreamParser();
        const events = feed(parser, splitAt(bytes, cuts));
        parser.end();
        for (const e of events) {
          if (e.type === 'data') {
            expect(e.chunk.length).toBeGreaterThan(0);
          }
        }
        expect(mergeData(events)).toEqual(expectedEvents(items));
      }),
      { numRuns: 300 },
    );
  });

  it('(1) one byte at a time gives back the original events', () => {
    fc.assert(
      fc.property(itemsArb, (items) => {
        const parser = new P2PStreamParser();
        const events = feed(parser, bytewise(serialize(items)));
        parser.end();
        expect(mergeData(events)).toEqual(expectedEvents(items));
      }),
      { numRuns: 100 },
    );
  });

  it('(2) random garbage either parses or throws ProtocolError', () => {
    const garbageArb = fc.oneof(
      fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
      fc
        .tuple(
          fc.constantFrom('DATA ', 'VERSION ', 'SUCCESS', 'AUTH-SUCCESS ', 'ERROR', 'PUT-FROM '),
          fc.string({ maxLength: 30 }),
        )
        .map(([v, s]) => Buffer.from(`${v}${s}\n`)),
    );
    fc.assert(
      fc.property(
        fc.array(garbageArb, { maxLength: 5 }),
        fc.array(fc.nat(), { maxLength: 5 }),
        (parts, cuts) => {
          const parser = new P2PStreamParser({ maxLineBytes: 64 });
          try {
            feed(parser, splitAt(Buffer.concat(parts), cuts));
            parser.end();
          } catch (err) {
            expect(err).toBeInstanceOf(ProtocolError);
            expect((err as ProtocolError).code).toBe('P2P_PROTOCOL');
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('(3) an over-long line throws exactly when the limit is passed, never later', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 300 }),
        fc.array(fc.integer({ min: 1, max: 120 }), { minLength: 1, maxLength: 20 }),
        (max, sizes) => {
          const parser = new P2PStreamParser({ maxLineBytes: max });
          let total = 0;
          for (const size of sizes) {
            total += size;
            const push = (): ParserEvent[] => parser.push(Buffer.alloc(size, 0x41));
            if (total > max) {
              expect(push).toThrow(ProtocolError);
              return;
            }
            expect(push()).toEqual([]);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('(4) end() throws exactly when the stream stops inside a line or a payload', () => {
    fc.assert(
      fc.property(
        itemsArb.filter((items) => items.length > 0),
        fc.nat(),
        (items, at) => {
          const bytes = serialize(items);
          const clean = cleanOffsets(items);
          const cut = at % (bytes.length + 1);
          const parser = new P2PStreamParser();
          parser.push(bytes.subarray(0, cut));
          if (clean.has(cut)) {
            expect(() => parser.end()).not.toThrow();
          } else {
            expect(() => parser.end()).toThrow(ProtocolError);
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});

/** Byte offsets at which a message (with its payload) is complete. */
function cleanOffsets(items: readonly StreamItem[]): Set<number> {
  const offsets = new Set<number>([0]);
  let pos = 0;
  for (const item of items) {
    pos += serialize([item]).length;
    offsets.add(pos);
  }
  return offsets;
}
