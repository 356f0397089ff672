// HTTP parameter values (PROTOCOL.md §2.1): plain UTF-8 text, or "[" + base64url with padding
// + "]". The brackets arrive already percent-decoded by the HTTP layer.
//
// Stricter than git-annex 10.20250416, which ignores anything after a padded group
// (`[V09STS0tYQ==V09S]` and `[V09STS0tYQ===]` are accepted there): we require the whole body
// to be well-formed. Like the reference, the standard alphabet ('+', '/') is rejected and
// non-zero unused bits in the last group are tolerated.

import { InvalidParameterError } from './errors';

const BASE64URL_PADDED = /^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2}==|[A-Za-z0-9_-]{3}=)?$/;
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function isBracketed(value: string): boolean {
  return value.length >= 2 && value.startsWith('[') && value.endsWith(']');
}

/** Decodes a "[base64url]" value to UTF-8 text; any other value is returned unchanged. */
export function decodeParam(value: string, param: string): string {
  if (!isBracketed(value)) {
    return value;
  }
  const body = value.slice(1, -1);
  if (!BASE64URL_PADDED.test(body)) {
    throw new InvalidParameterError(param, `invalid ${param}: bad base64 encoding`);
  }
  try {
    return UTF8.decode(Buffer.from(body, 'base64url'));
  } catch {
    throw new InvalidParameterError(param, `invalid ${param}: bad base64 encoding`);
  }
}

/** Always "[" + base64url with padding + "]" of the UTF-8 bytes of value. */
export function encodeParam(value: string): string {
  const b64 = Buffer.from(value, 'utf8').toString('base64');
  return `[${b64.replace(/\+/g, '-').replace(/\//g, '_')}]`;
}
