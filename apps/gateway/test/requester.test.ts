import { describe, expect, it } from 'vitest';
import { requesterOf } from '../src/p2phttp.service';

describe('requesterOf', () => {
  const anonymous = (headers: Record<string, string | string[]>) => ({ headers, ip: '192.0.2.7' });

  it('names a logged-in user, whatever the address', () => {
    expect(requesterOf(anonymous({ 'x-forwarded-for': '198.51.100.1' }), 'alice', true)).toBe(
      'user:alice',
    );
  });

  it("names an anonymous client by its connection's address unless told to trust a proxy", () => {
    expect(requesterOf(anonymous({ 'x-forwarded-for': '198.51.100.1' }), null, false)).toBe(
      'address:192.0.2.7',
    );
    expect(requesterOf(anonymous({}), null, true)).toBe('address:192.0.2.7');
  });

  it('behind a trusted proxy, takes the address the proxy added (the last one)', () => {
    const forwarded = { 'x-forwarded-for': 'spoofed-by-client, 198.51.100.1' };
    expect(requesterOf(anonymous(forwarded), null, true)).toBe('address:198.51.100.1');
    expect(requesterOf(anonymous({ 'x-forwarded-for': ' ' }), null, true)).toBe(
      'address:192.0.2.7',
    );
  });
});
