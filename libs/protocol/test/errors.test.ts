import { describe, expect, it } from 'vitest';
import { InvalidParameterError, ProtocolError } from '../src';

describe('errors', () => {
  it('ProtocolError has name, code and prototype', () => {
    const e = new ProtocolError('bad line');
    expect(e).toBeInstanceOf(ProtocolError);
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('ProtocolError');
    expect(e.code).toBe('P2P_PROTOCOL');
    expect(e.message).toBe('bad line');
    expect(Object.getPrototypeOf(e)).toBe(ProtocolError.prototype);
    expect(String(e)).toBe('ProtocolError: bad line');
  });

  it('InvalidParameterError has name, code, param and prototype', () => {
    const e = new InvalidParameterError('key', 'invalid key: empty');
    expect(e).toBeInstanceOf(InvalidParameterError);
    expect(e).toBeInstanceOf(Error);
    expect(e).not.toBeInstanceOf(ProtocolError);
    expect(e.name).toBe('InvalidParameterError');
    expect(e.code).toBe('BAD_PARAM');
    expect(e.param).toBe('key');
    expect(e.message).toBe('invalid key: empty');
  });
});
