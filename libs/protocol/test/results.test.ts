import { describe, expect, it } from 'vitest';
import {
  checkPresentResult,
  keepLockedResult,
  lockContentResult,
  putOffsetResult,
  putResult,
  removeResult,
  timestampResult,
} from '../src';

// JSON.stringify checks field names, values and order at once.
const json = (o: object): string => JSON.stringify(o);

describe('results (PROTOCOL.md §2.2)', () => {
  it('checkpresent', () => {
    expect(json(checkPresentResult(true))).toBe('{"present":true}');
    expect(json(checkPresentResult(false))).toBe('{"present":false}');
  });

  it('put', () => {
    expect(json(putResult(0, true, ['u1']))).toBe('{"stored":true}');
    expect(json(putResult(1, false, []))).toBe('{"stored":false}');
    expect(json(putResult(2, true, []))).toBe('{"stored":true,"plusuuids":[]}');
    expect(json(putResult(3, false, []))).toBe('{"stored":false,"plusuuids":[]}');
    expect(json(putResult(4, true, ['u1', 'u2']))).toBe('{"stored":true,"plusuuids":["u1","u2"]}');
  });

  it('remove', () => {
    expect(json(removeResult(0, true, ['u1']))).toBe('{"removed":true}');
    expect(json(removeResult(1, false, []))).toBe('{"removed":false}');
    expect(json(removeResult(2, true, []))).toBe('{"removed":true,"plusuuids":[]}');
    expect(json(removeResult(4, false, ['u9']))).toBe('{"removed":false,"plusuuids":["u9"]}');
  });

  it('putoffset', () => {
    expect(json(putOffsetResult(1, { offset: 0 }))).toBe('{"offset":0}');
    expect(json(putOffsetResult(4, { offset: 10 }))).toBe('{"offset":10}');
    expect(json(putOffsetResult(1, { alreadyHave: true, plusuuids: ['u1'] }))).toBe(
      '{"alreadyhave":true}',
    );
    expect(json(putOffsetResult(2, { alreadyHave: true, plusuuids: [] }))).toBe(
      '{"alreadyhave":true,"plusuuids":[]}',
    );
    expect(json(putOffsetResult(3, { alreadyHave: true, plusuuids: ['a', 'b'] }))).toBe(
      '{"alreadyhave":true,"plusuuids":["a","b"]}',
    );
  });

  it('gettimestamp', () => {
    expect(json(timestampResult(8666))).toBe('{"timestamp":8666}');
  });

  it('lockcontent and keeplocked', () => {
    expect(json(lockContentResult('1b2c-uuid'))).toBe('{"locked":true,"lockid":"1b2c-uuid"}');
    expect(json(lockContentResult(null))).toBe('{"locked":false}');
    expect(json(keepLockedResult())).toBe('{"locked":false}');
  });

  it('does not alias the caller array', () => {
    const uuids = ['u1'];
    const r = putResult(2, true, uuids) as { plusuuids: string[] };
    uuids.push('u2');
    expect(r.plusuuids).toEqual(['u1']);
  });
});
