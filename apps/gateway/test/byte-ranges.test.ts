import { describe, expect, it } from 'vitest';
import { contentRange, parseRange, resolveRange, unsatisfiedRange } from '../src/byte-ranges';

describe('parseRange', () => {
  it('reads one range of each form', () => {
    expect(parseRange('bytes=0-499')).toEqual({ kind: 'from', first: 0, last: 499 });
    expect(parseRange('bytes=500-')).toEqual({ kind: 'from', first: 500 });
    expect(parseRange('bytes=-500')).toEqual({ kind: 'suffix', length: 500 });
    expect(parseRange('Bytes = 7-7')).toEqual({ kind: 'from', first: 7, last: 7 });
    expect(parseRange('bytes=, 3-4 ,')).toEqual({ kind: 'from', first: 3, last: 4 });
    expect(parseRange('bytes=007-008')).toEqual({ kind: 'from', first: 7, last: 8 });
  });

  it('takes bytes=-0 as a range that selects nothing', () => {
    expect(parseRange('bytes=-0')).toEqual({ kind: 'unsatisfiable' });
  });

  it('ignores what it does not serve as one range: the whole body', () => {
    for (const header of [
      undefined,
      '',
      'bytes',
      'bytes=',
      'bytes=0-1,5-6',
      'items=0-1',
      'bytes=1',
      'bytes=a-b',
      'bytes=5-4',
      'bytes=-',
      'bytes=--1',
      'bytes=1-2-3',
      'bytes=+1-2',
      'bytes=0x10-',
      `bytes=${'1'.repeat(300)}-`,
    ]) {
      expect(parseRange(header), String(header)).toEqual({ kind: 'whole' });
    }
    expect(parseRange(['bytes=0-1', 'bytes=2-3'])).toEqual({ kind: 'whole' });
  });

  it('keeps positions past any length comparable', () => {
    const range = parseRange(`bytes=${'9'.repeat(30)}-`);
    expect(range).toEqual({ kind: 'from', first: Infinity });
    expect(resolveRange(range, 10)).toEqual({ kind: 'unsatisfiable' });
    expect(resolveRange(parseRange(`bytes=2-${'9'.repeat(30)}`), 10)).toEqual({
      kind: 'part',
      first: 2,
      last: 9,
    });
    expect(resolveRange(parseRange(`bytes=-${'9'.repeat(30)}`), 10)).toEqual({
      kind: 'part',
      first: 0,
      last: 9,
    });
  });
});

describe('resolveRange', () => {
  it('clamps the last position and the suffix to the length', () => {
    expect(resolveRange({ kind: 'from', first: 0, last: 99 }, 10)).toEqual({
      kind: 'part',
      first: 0,
      last: 9,
    });
    expect(resolveRange({ kind: 'from', first: 4 }, 10)).toEqual({
      kind: 'part',
      first: 4,
      last: 9,
    });
    expect(resolveRange({ kind: 'suffix', length: 3 }, 10)).toEqual({
      kind: 'part',
      first: 7,
      last: 9,
    });
    expect(resolveRange({ kind: 'suffix', length: 30 }, 10)).toEqual({
      kind: 'part',
      first: 0,
      last: 9,
    });
  });

  it('is unsatisfiable from the end on, and for empty content', () => {
    expect(resolveRange({ kind: 'from', first: 10 }, 10)).toEqual({ kind: 'unsatisfiable' });
    expect(resolveRange({ kind: 'from', first: 0, last: 0 }, 0)).toEqual({
      kind: 'unsatisfiable',
    });
    expect(resolveRange({ kind: 'suffix', length: 1 }, 0)).toEqual({ kind: 'unsatisfiable' });
    expect(resolveRange({ kind: 'unsatisfiable' }, 10)).toEqual({ kind: 'unsatisfiable' });
    expect(resolveRange({ kind: 'whole' }, 0)).toEqual({ kind: 'whole' });
  });
});

describe('Content-Range', () => {
  it('names the part and the length', () => {
    expect(contentRange(0, 0, 1)).toBe('bytes 0-0/1');
    expect(contentRange(5, 9, undefined)).toBe('bytes 5-9/*');
    expect(unsatisfiedRange(10)).toBe('bytes */10');
    expect(unsatisfiedRange(undefined)).toBeUndefined();
  });
});
