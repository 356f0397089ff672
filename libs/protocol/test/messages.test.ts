import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  MAX_LINE_CHARACTERS,
  ProtocolError,
  encodeMessage,
  parseServerLine,
  type ClientMessage,
  type ServerMessage,
} from '../src';
import { serverLine, serverMessageArb } from './helpers/server-stream';

const K = 'SHA256E-s6--5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03.txt';
const enc = (m: ClientMessage): string => encodeMessage(m).toString('utf8');
const parse = (s: string): ServerMessage => parseServerLine(Buffer.from(s, 'utf8'));

describe('encodeMessage', () => {
  it('encodes every client message as one line', () => {
    const cases: [ClientMessage, string][] = [
      [{ kind: 'VERSION', version: 4 }, 'VERSION 4\n'],
      [{ kind: 'BYPASS', uuids: ['u1', 'u-2'] }, 'BYPASS u1 u-2\n'],
      [{ kind: 'BYPASS', uuids: [] }, 'BYPASS\n'],
      [{ kind: 'CHECKPRESENT', key: K }, `CHECKPRESENT ${K}\n`],
      [{ kind: 'GET', offset: 2, af: 'dir/a b.txt', key: K }, `GET 2 dir/a%b.txt ${K}\n`],
      [{ kind: 'GET', offset: 0, af: null, key: K }, `GET 0  ${K}\n`],
      [{ kind: 'GET', offset: 0, af: '/etc/passwd', key: K }, `GET 0  ${K}\n`],
      [{ kind: 'PUT', af: '100%.txt', key: K }, `PUT 100%%.txt ${K}\n`],
      [{ kind: 'PUT', af: null, key: K }, `PUT  ${K}\n`],
      [{ kind: 'DATA', length: 20 }, 'DATA 20\n'],
      [{ kind: 'DATA', length: 0 }, 'DATA 0\n'],
      [{ kind: 'DATA-PRESENT' }, 'DATA-PRESENT\n'],
      [{ kind: 'VALID' }, 'VALID\n'],
      [{ kind: 'INVALID' }, 'INVALID\n'],
      [{ kind: 'SUCCESS' }, 'SUCCESS\n'],
      [{ kind: 'FAILURE' }, 'FAILURE\n'],
      [{ kind: 'REMOVE', key: K }, `REMOVE ${K}\n`],
      [{ kind: 'REMOVE-BEFORE', timestamp: 1, key: K }, `REMOVE-BEFORE 1 ${K}\n`],
      [{ kind: 'GETTIMESTAMP' }, 'GETTIMESTAMP\n'],
      [{ kind: 'LOCKCONTENT', key: K }, `LOCKCONTENT ${K}\n`],
      [{ kind: 'UNLOCKCONTENT' }, 'UNLOCKCONTENT\n'],
      [{ kind: 'ERROR', message: 'bad thing' }, 'ERROR bad thing\n'],
      [{ kind: 'ERROR', message: 'a\r\nb\nc' }, 'ERROR a  b c\n'],
      [{ kind: 'ERROR', message: '' }, 'ERROR \n'],
    ];
    for (const [m, line] of cases) {
      expect(enc(m)).toBe(line);
    }
  });

  it('keeps spaces and non-ASCII in the key (last word)', () => {
    expect(enc({ kind: 'CHECKPRESENT', key: 'WORM--a b/é%:&' })).toBe(
      'CHECKPRESENT WORM--a b/é%:&\n',
    );
    expect(encodeMessage({ kind: 'CHECKPRESENT', key: 'WORM--é' })).toEqual(
      Buffer.from([...Buffer.from('CHECKPRESENT WORM--'), 0xc3, 0xa9, 0x0a]),
    );
  });

  it('rejects fields that would break framing', () => {
    const bad: ClientMessage[] = [
      { kind: 'CHECKPRESENT', key: `${K}\nREMOVE ${K}` },
      { kind: 'REMOVE', key: `${K}\r` },
      { kind: 'LOCKCONTENT', key: 'WORM--a\0b' },
      { kind: 'GET', offset: 0, af: null, key: '' },
      { kind: 'PUT', af: null, key: 'x\ny' },
      { kind: 'ERROR', message: 'nul\0inside' },
      { kind: 'BYPASS', uuids: ['a b'] },
      { kind: 'BYPASS', uuids: [''] },
      { kind: 'BYPASS', uuids: ['a\tb'] },
      { kind: 'BYPASS', uuids: ['a\nb'] },
      { kind: 'VERSION', version: -1 },
      { kind: 'VERSION', version: 1.5 },
      { kind: 'VERSION', version: Number.NaN },
      { kind: 'DATA', length: 2 ** 53 },
      { kind: 'DATA', length: Infinity },
      { kind: 'GET', offset: -1, af: null, key: K },
      { kind: 'REMOVE-BEFORE', timestamp: -5, key: K },
      { kind: 'REMOVE-BEFORE', timestamp: 0.5, key: K },
    ];
    for (const m of bad) {
      expect(() => encodeMessage(m), JSON.stringify(m)).toThrow(ProtocolError);
    }
  });

  it('enforces MAX_LINE_CHARACTERS on the line without its newline, as git-annex counts', () => {
    const prefix = 'CHECKPRESENT WORM--';
    const fits = 'a'.repeat(MAX_LINE_CHARACTERS - prefix.length);
    expect(encodeMessage({ kind: 'CHECKPRESENT', key: `WORM--${fits}` })).toHaveLength(
      MAX_LINE_CHARACTERS + 1,
    );
    expect(() => encodeMessage({ kind: 'CHECKPRESENT', key: `WORM--${fits}a` })).toThrow(
      ProtocolError,
    );
    // counted in characters: a UTF-8 sequence is one, and so is a byte that is none
    const wide = 'é'.repeat(MAX_LINE_CHARACTERS - prefix.length);
    expect(encodeMessage({ kind: 'CHECKPRESENT', key: `WORM--${wide}` })).toHaveLength(
      prefix.length + 2 * wide.length + 1,
    );
    expect(() => encodeMessage({ kind: 'CHECKPRESENT', key: `WORM--${wide}é` })).toThrow(
      /exceeds 32767/,
    );
    const raw = '\udcff'.repeat(MAX_LINE_CHARACTERS - prefix.length);
    expect(encodeMessage({ kind: 'CHECKPRESENT', key: `WORM--${raw}` })).toHaveLength(
      MAX_LINE_CHARACTERS + 1,
    );
    expect(() =>
      encodeMessage({ kind: 'ERROR', message: 'x'.repeat(MAX_LINE_CHARACTERS) }),
    ).toThrow(ProtocolError);
  });

  it('sends key and associated file as the bytes they stand for', () => {
    const line = encodeMessage({
      kind: 'GET',
      offset: 0,
      af: 'd/bad\udcff\udcfe.bin',
      key: 'WORM--\udcff\udcfe\udc80',
    });
    expect(
      line.equals(
        Buffer.concat([
          Buffer.from('GET 0 d/bad'),
          Buffer.from([0xff, 0xfe]),
          Buffer.from('.bin WORM--'),
          Buffer.from([0xff, 0xfe, 0x80, 0x0a]),
        ]),
      ),
    ).toBe(true);
  });

  it('leaves out an associated file that would make the line too long', () => {
    const key = `WORM--${'k'.repeat(MAX_LINE_CHARACTERS - 100)}`;
    const af = 'f'.repeat(200);
    expect(encodeMessage({ kind: 'PUT', af, key }).toString()).toBe(`PUT  ${key}\n`);
    expect(encodeMessage({ kind: 'GET', offset: 5, af, key }).toString()).toBe(`GET 5  ${key}\n`);
    expect(encodeMessage({ kind: 'PUT', af: 'f', key }).toString()).toBe(`PUT f ${key}\n`);
  });

  it('property: every encoded line ends with exactly one newline and holds no CR or NUL', () => {
    const keyArb = fc
      .string({ unit: 'binary', minLength: 1, maxLength: 50 })
      .filter((k) => !/[\r\n\0]/.test(k));
    const msgArb: fc.Arbitrary<ClientMessage> = fc.oneof(
      fc
        .tuple(fc.maxSafeNat(), fc.option(fc.string({ unit: 'binary' })), keyArb)
        .map(([offset, af, key]): ClientMessage => ({ kind: 'GET', offset, af, key })),
      fc
        .tuple(fc.option(fc.string({ unit: 'binary' })), keyArb)
        .map(([af, key]): ClientMessage => ({ kind: 'PUT', af, key })),
      fc
        .string({ unit: 'binary' })
        .filter((s) => !s.includes('\0'))
        .map((message): ClientMessage => ({ kind: 'ERROR', message })),
    );
    fc.assert(
      fc.property(msgArb, (m) => {
        const line = encodeMessage(m);
        expect(line[line.length - 1]).toBe(0x0a);
        expect(line.indexOf(0x0a)).toBe(line.length - 1);
        expect(line.includes(0x0d)).toBe(false);
        expect(line.includes(0x00)).toBe(false);
        if (m.kind === 'GET' || m.kind === 'PUT') {
          // the AF is one word: the key follows the (possibly empty) AF word
          const text = line.toString('utf8');
          const words = text.slice(0, -1).split(' ');
          const afWord = m.kind === 'GET' ? words[2] : words[1];
          expect(afWord).toBeDefined();
          expect(afWord).not.toMatch(/[\s\p{Cc}]/u);
          expect(text.endsWith(` ${m.key}\n`)).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('parseServerLine', () => {
  it('parses every server message', () => {
    const cases: [string, ServerMessage][] = [
      ['AUTH-SUCCESS 7579-ab', { kind: 'AUTH-SUCCESS', uuid: '7579-ab' }],
      ['VERSION 4', { kind: 'VERSION', version: 4 }],
      ['VERSION 007', { kind: 'VERSION', version: 7 }],
      ['SUCCESS', { kind: 'SUCCESS' }],
      ['FAILURE', { kind: 'FAILURE' }],
      ['SUCCESS-PLUS u1 u2', { kind: 'SUCCESS-PLUS', uuids: ['u1', 'u2'] }],
      ['FAILURE-PLUS u1', { kind: 'FAILURE-PLUS', uuids: ['u1'] }],
      ['FAILURE-PLUS', { kind: 'FAILURE-PLUS', uuids: [] }],
      ['ALREADY-HAVE', { kind: 'ALREADY-HAVE' }],
      ['ALREADY-HAVE-PLUS u3', { kind: 'ALREADY-HAVE-PLUS', uuids: ['u3'] }],
      ['PUT-FROM 10', { kind: 'PUT-FROM', offset: 10 }],
      ['DATA 0', { kind: 'DATA', length: 0 }],
      ['DATA 9007199254740991', { kind: 'DATA', length: Number.MAX_SAFE_INTEGER }],
      ['VALID', { kind: 'VALID' }],
      ['INVALID', { kind: 'INVALID' }],
      ['TIMESTAMP 8666', { kind: 'TIMESTAMP', timestamp: 8666 }],
      ['ERROR unknown command', { kind: 'ERROR', message: 'unknown command' }],
      ['ERROR', { kind: 'ERROR', message: '' }],
      ['ERROR ', { kind: 'ERROR', message: '' }],
      ['ERROR  two  spaces ', { kind: 'ERROR', message: ' two  spaces ' }],
      ['SUCCESS\r', { kind: 'SUCCESS' }],
      ['ERROR x\r', { kind: 'ERROR', message: 'x' }],
    ];
    for (const [line, m] of cases) {
      expect(parse(line), line).toEqual(m);
    }
  });

  it('rejects unknown verbs, wrong arity and bad numbers', () => {
    const bad = [
      '',
      '\r',
      'success',
      'AUTH',
      'NOTIFYCHANGE',
      'AUTH-SUCCESS',
      'AUTH-SUCCESS ',
      'AUTH-SUCCESS a b',
      'SUCCESS x',
      'SUCCESS ',
      'VALID 1',
      'ALREADY-HAVE u1',
      'VERSION',
      'VERSION ',
      'VERSION -1',
      'VERSION +1',
      'VERSION 1.0',
      'VERSION 1 2',
      'VERSION 0x10',
      'VERSION ４',
      'DATA 1e3',
      'DATA 9007199254740992',
      'DATA 99999999999999999999999',
      'DATA  5',
      'DATA 5 ',
      'PUT-FROM',
      'TIMESTAMP abc',
      ' SUCCESS',
      'SUCCESS\r\r',
    ];
    for (const line of bad) {
      expect(() => parse(line), JSON.stringify(line)).toThrow(ProtocolError);
    }
  });

  it('round-trips generated server messages', () => {
    fc.assert(
      fc.property(serverMessageArb, (m) => {
        expect(parse(serverLine(m))).toEqual(m);
      }),
      { numRuns: 500 },
    );
  });

  it('property: garbage lines parse or throw ProtocolError, nothing else', () => {
    const lineArb = fc.oneof(
      fc.uint8Array({ maxLength: 100 }).map((a) => Buffer.from(a)),
      fc
        .tuple(
          fc.constantFrom(
            'AUTH-SUCCESS',
            'VERSION',
            'SUCCESS',
            'FAILURE-PLUS',
            'PUT-FROM',
            'DATA',
            'TIMESTAMP',
            'ERROR',
            'INVALID',
          ),
          fc.constantFrom('', ' ', '  ', '\r', '\t'),
          fc.string({ unit: 'binary', maxLength: 20 }),
        )
        .map(([v, sep, s]) => Buffer.from(v + sep + s, 'utf8')),
    );
    const kinds = new Set([
      'AUTH-SUCCESS',
      'VERSION',
      'SUCCESS',
      'FAILURE',
      'SUCCESS-PLUS',
      'FAILURE-PLUS',
      'ALREADY-HAVE',
      'ALREADY-HAVE-PLUS',
      'PUT-FROM',
      'DATA',
      'VALID',
      'INVALID',
      'TIMESTAMP',
      'ERROR',
    ]);
    fc.assert(
      fc.property(lineArb, (line) => {
        let m: ServerMessage;
        try {
          m = parseServerLine(line);
        } catch (err) {
          expect(err).toBeInstanceOf(ProtocolError);
          return;
        }
        expect(kinds.has(m.kind)).toBe(true);
        if ('version' in m) {
          expect(Number.isSafeInteger(m.version) && m.version >= 0).toBe(true);
        }
        if (m.kind === 'DATA') {
          expect(Number.isSafeInteger(m.length) && m.length >= 0).toBe(true);
        }
      }),
      { numRuns: 1000 },
    );
  });
});
