import { describe, expect, it } from 'vitest';
import { InvalidParameterError, validateUuid } from '../src';

describe('validateUuid', () => {
  it.each([
    '75796132-29ea-48c1-bc2a-7efc79621091',
    '11111111-2222-3333-4444-555555555555',
    'a',
    'notauuid',
    'A0-',
    'x'.repeat(64),
  ])('accepts %s', (u) => {
    expect(validateUuid(u, 'clientuuid')).toBe(u);
  });

  it.each(['', '-abc', 'a b', 'a\tb', 'a\nb', 'a_b', 'a/b', 'a.b', 'é', '--uuid', 'x'.repeat(65)])(
    'rejects %j',
    (u) => {
      let caught: unknown;
      try {
        validateUuid(u, 'clientuuid');
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(InvalidParameterError);
      const err = caught as InvalidParameterError;
      expect(err.param).toBe('clientuuid');
      expect(err.message).toBe('invalid clientuuid');
      expect(err.code).toBe('BAD_PARAM');
    },
  );

  it('uses the parameter name in the message', () => {
    expect(() => validateUuid('a b', 'bypass')).toThrow('invalid bypass');
  });
});
