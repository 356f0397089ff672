import { describe, expect, it } from 'vitest';
import { AnnexP2PError, ERROR_CODES, InvalidParameterError, ProtocolError } from '../src';

describe('errors', () => {
  it('ProtocolError has name, code and prototype', () => {
    const e = new ProtocolError('bad line');
    expect(e).toBeInstanceOf(ProtocolError);
    expect(e).toBeInstanceOf(AnnexP2PError);
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
    expect(e).toBeInstanceOf(AnnexP2PError);
    expect(e).toBeInstanceOf(Error);
    expect(e).not.toBeInstanceOf(ProtocolError);
    expect(e.name).toBe('InvalidParameterError');
    expect(e.code).toBe('BAD_PARAM');
    expect(e.param).toBe('key');
    expect(e.message).toBe('invalid key: empty');
  });

  it('AnnexP2PError carries code, cause and retryAfterSeconds only when given', () => {
    const cause = new Error('underneath');
    const e = new AnnexP2PError('LOCKS_UNAVAILABLE', 'no locks', { cause, retryAfterSeconds: 7 });
    expect(e).toBeInstanceOf(Error);
    expect(e.code).toBe('LOCKS_UNAVAILABLE');
    expect(e.cause).toBe(cause);
    expect(e.retryAfterSeconds).toBe(7);
    const bare = new AnnexP2PError('DISPATCH_TIMEOUT', 'late');
    expect('cause' in bare).toBe(false);
    expect(bare.retryAfterSeconds).toBeUndefined();
  });

  it('declares each code once', () => {
    expect(new Set(ERROR_CODES).size).toBe(ERROR_CODES.length);
    for (const code of ERROR_CODES) {
      expect(code).toMatch(/^[A-Z][A-Z0-9_]*$/);
    }
  });
});
