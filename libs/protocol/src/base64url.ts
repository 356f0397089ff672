// HTTP parameter values (PROTOCOL.md §2.1): plain, or "[" + base64url with padding + "]". Either
// way the value is bytes, not text: a file name or key that is not UTF-8 travels in the bracketed
// form, and decodes to a byte string (byte-text.ts). The brackets arrive already percent-decoded
// by the HTTP layer, and a plain value arrives as the byte string of its percent-decoded bytes.
//
// Stricter than git-annex 10.20250416, which ignores anything after a padded group
// (`[V09STS0tYQ==V09S]` and `[V09STS0tYQ===]` are accepted there): we require the whole body
// to be well-formed. Like the reference, the standard alphabet ('+', '/') is rejected and
// non-zero unused bits in the last group are tolerated.

import { bytesOfText, isPlainText, textOfBytes } from './byte-text';
import { InvalidParameterError } from './errors';

const BASE64URL_PADDED = /^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2}==|[A-Za-z0-9_-]{3}=)?$/;

function isBracketed(value: string): boolean {
  return value.length >= 2 && value.startsWith('[') && value.endsWith(']');
}

/**
 * Decodes a "[base64url]" value to the byte string of its bytes (which need not be UTF-8); any
 * other value is returned unchanged.
 */
export function decodeParam(value: string, param: string): string {
  if (!isBracketed(value)) {
    return value;
  }
  const body = value.slice(1, -1);
  if (!BASE64URL_PADDED.test(body)) {
    throw new InvalidParameterError(param, `invalid ${param}: bad base64 encoding`);
  }
  return textOfBytes(Buffer.from(body, 'base64url'));
}

/** Always "[" + base64url with padding + "]" of the bytes of a byte string. */
export function encodeParam(value: string): string {
  const b64 = bytesOfText(value).toString('base64');
  return `[${b64.replace(/\+/g, '-').replace(/\//g, '_')}]`;
}

/**
 * A byte string as text that survives any UTF-8 step (JSON to a client, a Redis value): itself
 * when it is well-formed Unicode and not of the bracketed form, else its "[base64url]" form, as
 * git-annex writes such values. `fromWireText` inverts it.
 */
export function wireText(value: string): string {
  return isPlainText(value) && !isBracketed(value) ? value : encodeParam(value);
}

/** The byte string `wireText` was given; throws InvalidParameterError('value') on bad base64. */
export function fromWireText(wire: string): string {
  return decodeParam(wire, 'value');
}
