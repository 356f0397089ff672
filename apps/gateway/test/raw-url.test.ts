import { describe, expect, it } from 'vitest';
import { componentBytes, normalizePath, parseQuery, routeUrl } from '../src/raw-url';

describe('parseQuery', () => {
  it('percent-decodes every value to the byte string of its bytes', () => {
    expect(parseQuery('key=WORM--%FF%FE%80&clientuuid=c')).toEqual({
      key: 'WORM--\udcff\udcfe\udc80',
      clientuuid: 'c',
    });
    expect(parseQuery('af=caf%C3%A9%20d%E9j%E0')).toEqual({ af: 'café d\udce9j\udce0' });
    expect(parseQuery('key=%5BV09STS0t__6A%5D')).toEqual({ key: '[V09STS0t__6A]' });
  });

  it('reads + as a space, keeps a % that starts no escape, and repeats as arrays', () => {
    expect(parseQuery('af=a+b%2Bc')).toEqual({ af: 'a b+c' });
    expect(parseQuery('af=100%&b=%zz%4')).toEqual({ af: '100%', b: '%zz%4' });
    expect(parseQuery('bypass=a&bypass=b&bypass=c&x')).toEqual({ bypass: ['a', 'b', 'c'], x: '' });
    expect(parseQuery('')).toEqual({});
    expect(parseQuery('&&a=1&')).toEqual({ a: '1' });
  });

  it('gives objects without a prototype', () => {
    const parsed = parseQuery('__proto__=x&constructor=y');
    expect(Object.getPrototypeOf(parsed)).toBeNull();
    expect(parsed.__proto__).toBe('x');
  });

  it('takes raw characters beyond ASCII as the bytes Node read them as (Latin-1)', () => {
    expect(parseQuery('af=\u00ff')).toEqual({ af: '\udcff' });
    expect(parseQuery('af=\u00c3\u00a9')).toEqual({ af: 'é' });
  });
});

describe('normalizePath', () => {
  it('leaves UTF-8 paths and the query alone', () => {
    for (const url of [
      '/git-annex/u/v4/checkpresent?key=%FF',
      '/git-annex/u/v4/key/SHA256E-s1--caf%C3%A9.bin?x=1',
      '/git-annex/%5BAA%3D%3D%5D/v4/key/a%2Fb',
    ]) {
      expect(normalizePath(url)).toBe(url);
    }
  });

  it('spells a segment that is not UTF-8 in [base64url] form', () => {
    expect(normalizePath('/git-annex/u/v4/key/WORM--%FF%FE%80?clientuuid=c%FF')).toBe(
      '/git-annex/u/v4/key/%5BV09STS0t__6A%5D?clientuuid=c%FF',
    );
    expect(normalizePath('/git-annex/u/v4/key/WORM--%ff%fe%80')).toBe(
      '/git-annex/u/v4/key/%5BV09STS0t__6A%5D',
    );
  });

  it('percent-encodes raw UTF-8 and brackets raw bytes that are not', () => {
    expect(normalizePath('/git-annex/u/v4/key/caf\u00c3\u00a9')).toBe(
      '/git-annex/u/v4/key/caf%C3%A9',
    );
    expect(normalizePath('/git-annex/u/v4/key/x\u00ff')).toBe('/git-annex/u/v4/key/%5BeP8%3D%5D');
  });
});

describe('componentBytes', () => {
  it('decodes escapes in either case, leaves + in a path segment', () => {
    expect([...componentBytes('%ff%0A+', false)]).toEqual([0xff, 0x0a, 0x2b]);
    expect([...componentBytes('+', true)]).toEqual([0x20]);
  });
});

describe('routeUrl', () => {
  it('leaves the plain form alone', () => {
    expect(routeUrl('/git-annex/u/v4/checkpresent?key=k', undefined)).toEqual({
      url: '/git-annex/u/v4/checkpresent?key=k',
    });
    expect(routeUrl('/healthz', '/annex')).toEqual({ url: '/healthz' });
  });

  it('takes the repository location off the path, decoded', () => {
    expect(routeUrl('/labs/alice/b/git-annex/u/v4/put?key=k', undefined)).toEqual({
      url: '/git-annex/u/v4/put?key=k',
      location: 'labs/alice/b',
    });
    expect(routeUrl('/a%20b/%C3%A4/git-annex/u/key/K', undefined)).toEqual({
      url: '/git-annex/u/key/K',
      location: 'a b/ä',
    });
    // The client's form of annex+http://h/labs/alice/b/git-annex/ (the path kept as a prefix)
    expect(routeUrl('/labs/alice/b/git-annex/git-annex/u/v4/put?key=k', undefined)).toEqual({
      url: '/git-annex/u/v4/put?key=k',
      location: 'labs/alice/b',
    });
    // The last /git-annex/ counts: a repository called git-annex, in the client's form
    expect(routeUrl('/x/git-annex/git-annex/git-annex/u/key/K', undefined).location).toBe(
      'x/git-annex',
    );
    expect(routeUrl('/git-annex/git-annex/u/key/K', undefined)).toEqual({
      url: '/git-annex/u/key/K',
    });
    // Not UTF-8: kept as written, naming no repository.
    expect(routeUrl('/%FF/git-annex/u/key/K', undefined).location).toBe('%FF');
  });

  it('takes --path-prefix off first, and only a whole segment of it', () => {
    expect(routeUrl('/annex/git-annex/git-annex/u/key/K', '/annex')).toEqual({
      url: '/git-annex/u/key/K',
    });
    expect(routeUrl('/annex/git-annex/u/key/K', '/annex')).toEqual({ url: '/git-annex/u/key/K' });
    expect(routeUrl('/annex/public/a/git-annex/u/key/K?x=1', '/annex')).toEqual({
      url: '/git-annex/u/key/K?x=1',
      location: 'public/a',
    });
    expect(routeUrl('/annex/readyz', '/annex')).toEqual({ url: '/readyz' });
    expect(routeUrl('/annex', '/annex')).toEqual({ url: '/' });
    expect(routeUrl('/annexes/git-annex/u/key/K', '/annex').location).toBe('annexes');
  });
});
