import { describe, expect, it } from 'vitest';
import {
  cacheControl,
  entityTag,
  ifRangeHolds,
  keyHasChecksum,
  noneMatchFails,
} from '../src/entity-tags';

const SHA = 'SHA256E-s5--2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824.txt';
const WORM = 'WORM-s5-m1700000000--hello.txt';

describe('keyHasChecksum', () => {
  it('knows the checksum backends, with and without E', () => {
    for (const variety of ['SHA256E', 'SHA256', 'MD5E', 'SHA1', 'SHA3_512E', 'BLAKE2B512']) {
      expect(keyHasChecksum(`${variety}-s1--x`), variety).toBe(true);
    }
    for (const variety of ['BLAKE2SP224E', 'SKEIN512', 'BLAKE2B160E']) {
      expect(keyHasChecksum(`${variety}-s1--x`), variety).toBe(true);
    }
    for (const variety of ['WORM', 'URL', 'VURL', 'XFOO', 'SHA256X', 'GITBUNDLE']) {
      expect(keyHasChecksum(`${variety}-s1--x`), variety).toBe(false);
    }
  });
});

describe('entityTag', () => {
  it('is strong for a checksum key, weak otherwise, and plain ASCII', () => {
    const strong = entityTag(SHA);
    expect(strong.strong).toBe(true);
    expect(strong.value).toMatch(/^"[A-Za-z0-9_-]{27}"$/);
    const weak = entityTag(WORM);
    expect(weak.strong).toBe(false);
    expect(weak.value).toMatch(/^W\/"[A-Za-z0-9_-]{27}"$/);
    expect(entityTag('WORM--\udcff"é').value).toMatch(/^W\/"[A-Za-z0-9_-]{27}"$/);
  });

  it('differs between keys and between offsets of one key', () => {
    expect(entityTag(SHA).value).not.toBe(entityTag(`${SHA}x`).value);
    expect(entityTag(SHA, 0).value).toBe(entityTag(SHA).value);
    expect(entityTag(SHA, 3).value).not.toBe(entityTag(SHA).value);
  });

  it('gives immutable caching to strong tags only', () => {
    expect(cacheControl(entityTag(SHA))).toBe('max-age=31536000, immutable');
    expect(cacheControl(entityTag(WORM))).toBe('no-cache');
  });
});

describe('If-None-Match', () => {
  const tag = entityTag(SHA);
  const weak = entityTag(WORM);
  it('matches the tag (weakly), one of a list, and *', () => {
    expect(noneMatchFails(tag.value, tag)).toBe(true);
    expect(noneMatchFails(`W/${tag.value}`, tag)).toBe(true);
    expect(noneMatchFails(`"other", ${tag.value}`, tag)).toBe(true);
    expect(noneMatchFails('*', tag)).toBe(true);
    expect(noneMatchFails(weak.value, weak)).toBe(true);
    expect(noneMatchFails(weak.value.slice(2), weak)).toBe(true);
    expect(noneMatchFails(['"a"', tag.value], tag)).toBe(true);
  });

  it('does not match other tags, malformed values or no header', () => {
    expect(noneMatchFails(undefined, tag)).toBe(false);
    expect(noneMatchFails('"other"', tag)).toBe(false);
    expect(noneMatchFails(tag.value.slice(1, -1), tag)).toBe(false);
    expect(noneMatchFails(weak.value, tag)).toBe(false);
    expect(noneMatchFails('', tag)).toBe(false);
  });
});

describe('If-Range', () => {
  const tag = entityTag(SHA);
  const weak = entityTag(WORM);
  it('holds without the header and for the same strong tag only', () => {
    expect(ifRangeHolds(undefined, tag)).toBe(true);
    expect(ifRangeHolds(tag.value, tag)).toBe(true);
    expect(ifRangeHolds(` ${tag.value} `, tag)).toBe(true);
  });

  it('fails for another tag, a weak tag, a weak body and a date', () => {
    expect(ifRangeHolds('"other"', tag)).toBe(false);
    expect(ifRangeHolds(`W/${tag.value}`, tag)).toBe(false);
    expect(ifRangeHolds(weak.value, weak)).toBe(false);
    expect(ifRangeHolds(weak.value.slice(2), weak)).toBe(false);
    expect(ifRangeHolds('Wed, 21 Oct 2015 07:28:00 GMT', tag)).toBe(false);
  });
});
