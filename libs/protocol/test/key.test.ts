import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  InvalidParameterError,
  MAX_KEY_LENGTH,
  canonicalKey,
  isValidKey,
  keySize,
  parseKey,
} from '../src';

const HASH = '5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03';

function rejection(key: string): InvalidParameterError {
  try {
    parseKey(key);
  } catch (err) {
    if (err instanceof InvalidParameterError) {
      return err;
    }
    throw err;
  }
  throw new Error(`key accepted: ${JSON.stringify(key)}`);
}

describe('parseKey: accepted keys (PROTOCOL.md §3)', () => {
  it('parses all fields in order', () => {
    expect(parseKey('SHA256E-s1-m2-S3-C4--x')).toEqual({
      variety: 'SHA256E',
      size: 1,
      mtime: 2,
      chunkSize: 3,
      chunkNumber: 4,
      name: 'x',
    });
  });

  it('parses a real key', () => {
    expect(parseKey(`SHA256E-s6--${HASH}.txt`)).toEqual({
      variety: 'SHA256E',
      size: 6,
      name: `${HASH}.txt`,
    });
  });

  it.each([
    ['SHA256E--', { variety: 'SHA256E', name: '' }],
    ['SHA256E-s01--x', { variety: 'SHA256E', size: 1, name: 'x' }],
    ['X-s1--x', { variety: 'X', size: 1, name: 'x' }],
    ['SHA256E-s1--', { variety: 'SHA256E', size: 1, name: '' }],
    ['SHA256E---x', { variety: 'SHA256E', name: '-x' }],
    ['SHA256E-s1---x', { variety: 'SHA256E', size: 1, name: '-x' }],
    ['SHA256E-s1-C2--x', { variety: 'SHA256E', size: 1, chunkNumber: 2, name: 'x' }],
    ['SHA256E-m1-S3--x', { variety: 'SHA256E', mtime: 1, chunkSize: 3, name: 'x' }],
    ['SHA256E-S1--x', { variety: 'SHA256E', chunkSize: 1, name: 'x' }],
    ['WORM--a--b', { variety: 'WORM', name: 'a--b' }],
    ['my_var1-s0--x', { variety: 'my_var1', size: 0, name: 'x' }],
    [
      'SHA256E-s9007199254740991--x',
      { variety: 'SHA256E', size: Number.MAX_SAFE_INTEGER, name: 'x' },
    ],
  ])('%s', (key, info) => {
    expect(parseKey(key)).toEqual(info);
  });

  it.each([
    'WORM-s2-m1700000000--sp,32ace%,38:.txt',
    'URL--http://example.com/a,32b/c,63d,61%41,38e',
    'URL-s100--https://example.com/x?a=1&b=2',
    'WORM-s3--a/b&c:d%e',
    'VURL--http://h/p%20q',
    'WORM-s1--../../etc/passwd',
    'SHA256E-s1--café.txt',
    'WORM--日本語',
    'GITBUNDLE--abc',
  ])('allows / %% : & and non-ASCII: %s', (key) => {
    expect(isValidKey(key)).toBe(true);
    expect(parseKey(key).name).toBe(key.slice(key.indexOf('--') + 2));
  });
});

describe('parseKey: rejected keys', () => {
  it.each([
    ['SHA256E-m2-s1--x', /out of order/],
    ['SHA256E-s1-s2--x', /out of order or repeated/],
    ['SHA256E-C1-S1--x', /out of order/],
    ['SHA256E-s1-x--y', /bad field/],
    ['SHA256E-sX--x', /bad field/],
    ['SHA256E-s--x', /bad field/],
    ['SHA256E-s+1--x', /bad field/],
    ['SHA256E-s-1--x', /bad field/],
    ['SHA256E-s1x--y', /bad field/],
    ['SHA256E-x1--y', /bad field/],
    ['-s1--x', /bad variety/],
    ['SHA256E-s1', /bad field/],
    ['SHA256E-s1-', /bad field/],
    ['SHA256E', /missing "--"/],
    ['SHA256E-', /bad field/],
    ['', /empty/],
    ['SHA-256-s1--x', /bad field/],
    ['a.b-s1--x', /bad variety/],
    ['SHA256E-s9007199254740992--x', /too large/],
    ['SHA256E-s99999999999999999999999--x', /too large/],
  ])('%s', (key, reason) => {
    const err = rejection(key);
    expect(err.param).toBe('key');
    expect(err.code).toBe('BAD_PARAM');
    expect(err.message).toMatch(/^invalid key: /);
    expect(err.message).toMatch(reason);
  });

  it.each([
    ['NUL', 'SHA256E-s1--a\0b'],
    ['LF', 'SHA256E-s1--a\nb'],
    ['CR', 'SHA256E-s1--a\rb'],
    ['tab', 'SHA256E-s1--a\tb'],
    ['space in name', 'SHA256E-s1--a b'],
    ['space in variety', 'z SHA256E-s1--x'],
    ['ESC', 'WORM--a\u001bb'],
    ['DEL', 'WORM--a\u007fb'],
    ['NBSP', 'WORM--a\u00a0b'],
    ['NEL', 'WORM--a\u0085b'],
    ['ideographic space', 'WORM--a\u3000b'],
    ['line separator', 'WORM--a\u2028b'],
    ['BOM', 'WORM--a\ufeffb'],
    ['lone surrogate that stands for no byte', 'WORM--a\ud800b'],
  ])('rejects %s', (_what, key) => {
    expect(isValidKey(key)).toBe(false);
    expect(rejection(key).message).toMatch(/^invalid key: /);
  });

  it('limits keys to what fits the longest P2P line, counting characters as git-annex does', () => {
    expect(MAX_KEY_LENGTH).toBe(32767 - 'REMOVE-BEFORE '.length - 16 - 1);
    const prefix = 'WORM--';
    expect(isValidKey(prefix + 'a'.repeat(10_000))).toBe(true);
    expect(isValidKey(prefix + 'a'.repeat(MAX_KEY_LENGTH - prefix.length))).toBe(true);
    expect(isValidKey(prefix + 'a'.repeat(MAX_KEY_LENGTH - prefix.length + 1))).toBe(false);
    // 'é' is two bytes but one character; so is an escaped byte
    expect(isValidKey(prefix + 'é'.repeat(MAX_KEY_LENGTH - prefix.length))).toBe(true);
    expect(isValidKey(prefix + '\udcff'.repeat(MAX_KEY_LENGTH - prefix.length))).toBe(true);
    expect(isValidKey(prefix + '😀'.repeat(MAX_KEY_LENGTH - prefix.length + 1))).toBe(false);
    expect(rejection('WORM--' + 'x'.repeat(MAX_KEY_LENGTH)).message).toMatch(
      /longer than 32736 characters/,
    );
  });
});

describe('parseKey: bytes that are not UTF-8 (byte strings)', () => {
  it('accepts any byte above 127 in the name', () => {
    expect(parseKey('WORM--\udcff\udcfe\udc80')).toEqual({
      variety: 'WORM',
      name: '\udcff\udcfe\udc80',
    });
    expect(isValidKey('SHA256E-s1--abc.d\udce9j\udce0')).toBe(true);
  });

  it('counts the extension limit in bytes', () => {
    expect(isValidKey(`SHA256E-s1--abc.${'\udcff'.repeat(63)}`)).toBe(true);
    expect(isValidKey(`SHA256E-s1--abc.${'\udcff'.repeat(64)}`)).toBe(false);
  });

  it('refuses a second spelling of UTF-8 bytes and surrogates that stand for no byte', () => {
    expect(rejection('WORM--\udcc3\udca9').message).toMatch(/not a byte string/);
    expect(isValidKey('WORM--a\udc7fb')).toBe(false);
  });
});

describe('canonicalKey', () => {
  it('writes numbers as git-annex does, without leading zeros', () => {
    expect(canonicalKey('SHA256E-s007-m00012-S0-C01--x')).toBe('SHA256E-s7-m12-S0-C1--x');
    expect(canonicalKey(`SHA256E-s${'0'.repeat(40)}5--x`)).toBe('SHA256E-s5--x');
    expect(canonicalKey('WORM--\udcff')).toBe('WORM--\udcff');
    expect(canonicalKey('URL--http://e/a--b')).toBe('URL--http://e/a--b');
  });
});

describe('parseKey: extension limit of varieties ending in E (checked on 10.20250416)', () => {
  const ext = (bytes: number): string => '.' + 'a'.repeat(bytes - 1);

  it('accepts 64 bytes from the first dot and rejects 65', () => {
    expect(isValidKey(`SHA256E-s1--abc${ext(64)}`)).toBe(true);
    expect(rejection(`SHA256E-s1--abc${ext(65)}`).message).toMatch(/extension longer than 64/);
    expect(isValidKey(`SHA256E-s1--abc${ext(71)}`)).toBe(false);
    expect(isValidKey(`SHA256E-s1--${ext(64)}`)).toBe(true);
    expect(isValidKey(`SHA256E-s1--${ext(65)}`)).toBe(false);
  });

  it('counts from the first dot, in bytes', () => {
    expect(isValidKey(`SHA256E-s1--abc.${'a'.repeat(30)}.${'a'.repeat(32)}`)).toBe(true);
    expect(isValidKey(`SHA256E-s1--abc.${'a'.repeat(31)}.${'a'.repeat(32)}`)).toBe(false);
    expect(isValidKey(`SHA256E-s1--abc..${'a'.repeat(62)}`)).toBe(true);
    expect(isValidKey(`SHA256E-s1--abc.${'a'.repeat(61)}é`)).toBe(true); // 64 bytes
    expect(isValidKey(`SHA256E-s1--abc.${'a'.repeat(62)}é`)).toBe(false); // 65 bytes, 64 chars
  });

  it('applies to every variety ending in E and to no other', () => {
    for (const v of ['MD5E', 'SHA256E', 'XfooE', 'FOOE', 'E', 'BLAKE2B256E']) {
      expect(isValidKey(`${v}-s1-S1-C1--abc${ext(64)}`), v).toBe(true);
      expect(isValidKey(`${v}-s1-S1-C1--abc${ext(65)}`), v).toBe(false);
    }
    for (const v of ['SHA256', 'WORM', 'URL', 'SHA256e', 'X']) {
      expect(isValidKey(`${v}-s1--abc${ext(300)}`), v).toBe(true);
    }
  });

  it('does not limit a name without a dot', () => {
    expect(isValidKey(`SHA256E-s1--${'a'.repeat(300)}`)).toBe(true);
    expect(isValidKey(`SHA256E-s1--${'a'.repeat(300)}.b`)).toBe(true);
  });
});

describe('keySize', () => {
  it('returns the size field', () => {
    expect(keySize(`SHA256E-s6--${HASH}.txt`)).toBe(6);
    expect(keySize('SHA256E-s0--x')).toBe(0);
    expect(keySize('SHA256E-s007-m3--x')).toBe(7);
  });

  it('is undefined without a size field or for an invalid key', () => {
    expect(keySize('URL--http://x/y')).toBeUndefined();
    expect(keySize('SHA256E-m2-S3--x')).toBeUndefined();
    expect(keySize('SHA256E-m2-s1--x')).toBeUndefined();
    expect(keySize('not a key')).toBeUndefined();
  });
});

describe('parseKey properties', () => {
  const fieldArb = fc.option(fc.maxSafeNat(), { nil: undefined });
  const nameArb = fc
    .string({ unit: 'grapheme', maxLength: 40 })
    .filter((s) => !/[\s\p{White_Space}\p{Cc}]/u.test(s) && !s.includes('.'));

  it('round-trips keys built from the grammar', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[A-Za-z0-9_]{1,12}$/),
        fieldArb,
        fieldArb,
        fieldArb,
        fieldArb,
        nameArb,
        (variety, size, mtime, chunkSize, chunkNumber, name) => {
          let key = variety;
          const expected: Record<string, unknown> = { variety, name };
          for (const [letter, field, value] of [
            ['s', 'size', size],
            ['m', 'mtime', mtime],
            ['S', 'chunkSize', chunkSize],
            ['C', 'chunkNumber', chunkNumber],
          ] as const) {
            if (value !== undefined) {
              key += `-${letter}${value}`;
              expected[field] = value;
            }
          }
          key += `--${name}`;
          expect(parseKey(key)).toEqual(expected);
          expect(keySize(key)).toBe(size);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('rejects a valid key with any whitespace or control character inserted', () => {
    const badChar = fc.oneof(
      fc.integer({ min: 0, max: 0x1f }).map((c) => String.fromCharCode(c)),
      fc.constantFrom('\u007f', ' ', '\u00a0', '\u0085', '\u2003', '\u3000', '\u2029'),
    );
    fc.assert(
      fc.property(badChar, fc.nat(), (c, at) => {
        const key = `SHA256E-s6--${HASH}.txt`;
        const i = at % (key.length + 1);
        const bad = key.slice(0, i) + c + key.slice(i);
        expect(isValidKey(bad)).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  it('never throws anything but InvalidParameterError', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 60 }), (key) => {
        try {
          const info = parseKey(key);
          expect(key.startsWith(info.variety)).toBe(true);
          expect(key.endsWith(`--${info.name}`)).toBe(true);
        } catch (err) {
          expect(err).toBeInstanceOf(InvalidParameterError);
        }
      }),
      { numRuns: 500 },
    );
  });
});
