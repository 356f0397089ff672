import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidParameterError, decodeParam, encodeParam, fromWireText, wireText } from '../src';

const K = 'SHA256E-s6--5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03.txt';

/** base64url with padding, computed independently of the code under test. */
function padded(s: string): string {
  return Buffer.from(s).toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
}

function rejection(value: string, param = 'key'): InvalidParameterError {
  try {
    decodeParam(value, param);
  } catch (err) {
    if (err instanceof InvalidParameterError) {
      return err;
    }
    throw err;
  }
  throw new Error(`accepted: ${value}`);
}

describe('decodeParam', () => {
  it('returns plain values unchanged', () => {
    for (const v of [K, '', 'a', '[', ']', '[abc', 'abc]', ']abc[', 'x[QQ==]', '[QQ==]x']) {
      expect(decodeParam(v, 'key')).toBe(v);
    }
  });

  it('decodes bracketed base64url with padding', () => {
    expect(decodeParam(`[${padded(K)}]`, 'key')).toBe(K);
    expect(decodeParam('[V09STS0tYQ==]', 'key')).toBe('WORM--a');
    expect(decodeParam('[V09STS0tYWI=]', 'key')).toBe('WORM--ab');
    expect(decodeParam('[V09STS0tYWJj]', 'key')).toBe('WORM--abc');
    expect(decodeParam('[]', 'key')).toBe('');
    // '-' and '_' are the url-safe alphabet: "WORM--???~~~"
    expect(decodeParam('[V09STS0tPz8_fn5-]', 'key')).toBe('WORM--???~~~');
    // UTF-8 text
    expect(decodeParam(`[${padded('WORM--é日本')}]`, 'key')).toBe('WORM--é日本');
    expect(decodeParam('[V09STS0tw6nml6XmnKw=]', 'key')).toBe('WORM--é日本');
    // a plain value that itself looks bracketed round-trips through encodeParam
    expect(decodeParam('[W1FRPT1d]', 'associatedfile')).toBe('[QQ==]');
  });

  it('decodes bytes that are not UTF-8 to a byte string', () => {
    // ff fe: a file name from an old archive; bytes above U+DC00 stand for them (byte-text.ts)
    expect(decodeParam('[__4=]', 'associatedfile')).toBe('\udcff\udcfe');
    expect(decodeParam(`[${Buffer.from([0x41, 0xc3]).toString('base64url')}=]`, 'key')).toBe(
      'A\udcc3',
    );
    expect(decodeParam('[V09STS0t__6A]', 'key')).toBe('WORM--\udcff\udcfe\udc80');
  });

  it('tolerates non-zero unused bits like the reference', () => {
    expect(decodeParam('[QR==]', 'key')).toBe('A');
  });

  it.each([
    ['unpadded 2', '[V09STS0tYQ]'],
    ['unpadded 3', '[V09STS0tYWI]'],
    ['one pad where two are needed', '[V09STS0tYQ=]'],
    ['extra padding', '[V09STS0tYQ===]'],
    ['four pads', '[V09STS0tYQ====]'],
    ['data after padding', '[V09STS0tYQ==V09S]'],
    ['length 1 mod 4', '[V09STS]'],
    ['lone pad', '[=]'],
    ['standard alphabet +', '[V09STS0tPz8/fn5+]'],
    ['standard alphabet /', '[Pz8/]'],
    ['space', '[V09S TS0tYQ==]'],
    ['newline', '[V09STS0t\nYQ==]'],
    ['percent escape', '[V09STS0tYQ%3D%3D]'],
    ['non-ASCII', '[V09STS0tYé==]'],
    ['nested bracket', '[[V09S]]'],
  ])('rejects %s', (_what, value) => {
    const err = rejection(value, 'associatedfile');
    expect(err.param).toBe('associatedfile');
    expect(err.message).toBe('invalid associatedfile: bad base64 encoding');
  });
});

describe('encodeParam', () => {
  it('always brackets base64url with padding', () => {
    expect(encodeParam('WORM--a')).toBe('[V09STS0tYQ==]');
    expect(encodeParam('WORM--???~~~')).toBe('[V09STS0tPz8_fn5-]');
    expect(encodeParam('')).toBe('[]');
    expect(encodeParam('[QQ==]')).toBe('[W1FRPT1d]');
  });

  it('encodes the bytes a byte string stands for', () => {
    expect(encodeParam('WORM--\udcff\udcfe\udc80')).toBe('[V09STS0t__6A]');
  });

  it('property: decodeParam inverts encodeParam', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 100 }), (s) => {
        const enc = encodeParam(s);
        expect(enc).toMatch(/^\[[A-Za-z0-9_=-]*\]$/);
        expect((enc.length - 2) % 4).toBe(0);
        expect(decodeParam(enc, 'key')).toBe(s);
      }),
      { numRuns: 500 },
    );
  });

  it('property: bracketed garbage decodes or throws InvalidParameterError', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 30 }), (body) => {
        try {
          decodeParam(`[${body}]`, 'key');
        } catch (err) {
          expect(err).toBeInstanceOf(InvalidParameterError);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('wireText', () => {
  it('keeps well-formed text as it is, brackets anything else', () => {
    expect(wireText('WORM--a')).toBe('WORM--a');
    expect(wireText('café')).toBe('café');
    expect(wireText('WORM--\udcff\udcfe\udc80')).toBe('[V09STS0t__6A]');
    // a plain value of the bracketed form must itself be encoded
    expect(wireText('[QQ==]')).toBe('[W1FRPT1d]');
    expect(wireText('')).toBe('');
  });

  it('property: fromWireText inverts it for any bytes, and the wire form is UTF-8 safe', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 60 }), (array) => {
        const text = Buffer.from(array).toString('latin1');
        const value = decodeParam(encodeParam(text), 'key');
        const wire = wireText(value);
        expect(Buffer.from(wire, 'utf8').toString('utf8')).toBe(wire);
        expect(fromWireText(wire)).toBe(value);
      }),
      { numRuns: 1000 },
    );
  });
});
