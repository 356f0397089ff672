import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  byteCount,
  bytesOfText,
  characterCount,
  isCanonicalText,
  isPlainText,
  textOfBytes,
} from '../src';

const bytes = (...b: number[]): Buffer => Buffer.from(b);

describe('textOfBytes and bytesOfText', () => {
  it('UTF-8 is its text', () => {
    for (const text of ['', 'WORM--a', 'café/日本.txt', 'emoji 😀 ok', '\u0000\u007f']) {
      expect(textOfBytes(Buffer.from(text, 'utf8'))).toBe(text);
      expect(bytesOfText(text).equals(Buffer.from(text, 'utf8'))).toBe(true);
      expect(isPlainText(text)).toBe(true);
    }
  });

  it('every other byte is the lone surrogate U+DC00 + byte', () => {
    expect(textOfBytes(bytes(0x61, 0xff, 0xfe, 0x80))).toBe('a\udcff\udcfe\udc80');
    // Latin-1 "café": é is e9, which starts a sequence that does not continue
    expect(textOfBytes(Buffer.from('caf\xe9', 'latin1'))).toBe('caf\udce9');
    // truncated sequence, overlong form, an encoded surrogate, beyond U+10FFFF
    expect(textOfBytes(bytes(0x41, 0xc3))).toBe('A\udcc3');
    expect(textOfBytes(bytes(0xc0, 0xaf))).toBe('\udcc0\udcaf');
    expect(textOfBytes(bytes(0xed, 0xa0, 0x80))).toBe('\udced\udca0\udc80');
    expect(textOfBytes(bytes(0xf4, 0x90, 0x80, 0x80))).toBe('\udcf4\udc90\udc80\udc80');
    // valid sequences around invalid bytes stay characters
    expect(textOfBytes(bytes(0xc3, 0xa9, 0xff, 0xe6, 0x97, 0xa5))).toBe('é\udcff日');
    expect(bytesOfText('a\udcff\udcfe\udc80').equals(bytes(0x61, 0xff, 0xfe, 0x80))).toBe(true);
    expect(isPlainText('a\udcff')).toBe(false);
  });

  it('an astral character whose low half looks like an escape is a character', () => {
    // U+10080 is d800 dc80 in UTF-16
    const text = '\u{10080}';
    expect(bytesOfText(text).equals(Buffer.from(text, 'utf8'))).toBe(true);
    expect(isPlainText(text)).toBe(true);
  });

  it('refuses lone surrogates that stand for no byte', () => {
    expect(() => bytesOfText('a\ud800')).toThrow(RangeError);
    expect(() => bytesOfText('\udc7f')).toThrow(RangeError);
    expect(() => bytesOfText('\udd00')).toThrow(RangeError);
    expect(isCanonicalText('a\ud800')).toBe(false);
  });

  it('a second spelling of UTF-8 bytes is not canonical', () => {
    // c3 a9 is "é": escaping its two bytes spells the same bytes another way
    expect(bytesOfText('\udcc3\udca9').equals(Buffer.from('é'))).toBe(true);
    expect(isCanonicalText('\udcc3\udca9')).toBe(false);
    expect(isCanonicalText('é')).toBe(true);
    expect(isCanonicalText('\udcff\udcfe')).toBe(true);
  });

  it('counts characters as git-annex does and bytes as they are', () => {
    expect(characterCount('abc')).toBe(3);
    expect(characterCount('é日😀')).toBe(3);
    expect(characterCount('a\udcff\udcfe')).toBe(3);
    expect(byteCount('é日😀')).toBe(2 + 3 + 4);
    expect(byteCount('a\udcff\udcfe')).toBe(3);
  });

  it('property: any bytes round-trip, and the text is canonical', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (array) => {
        const buffer = Buffer.from(array);
        const text = textOfBytes(buffer);
        expect(bytesOfText(text).equals(buffer)).toBe(true);
        expect(isCanonicalText(text)).toBe(true);
        expect(byteCount(text)).toBe(buffer.length);
        expect(JSON.parse(JSON.stringify(text))).toBe(text);
      }),
      { numRuns: 2000 },
    );
  });

  it('property: any well-formed string round-trips as UTF-8', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), (text) => {
        expect(textOfBytes(bytesOfText(text))).toBe(text);
        expect(isPlainText(text)).toBe(true);
        expect(characterCount(text)).toBe([...text].length);
      }),
      { numRuns: 500 },
    );
  });
});
