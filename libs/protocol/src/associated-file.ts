// AssociatedFile escaping for GET and PUT lines (PROTOCOL.md §1.2). The AF is informational
// only, so anything risky is dropped rather than rejected. It is a byte string (byte-text.ts): a
// byte that is no UTF-8 goes through as it is, as git-annex passes it.

import { byteCount } from './byte-text';

/** Longest encoded AF kept, in bytes; longer ones are dropped. */
const MAX_AF_BYTES = 4096;

// Whitespace in the JavaScript and the Unicode sense (this includes TAB, LF, VT, FF, CR).
const WHITESPACE = /^[\s\p{White_Space}]$/u;
// Remaining control characters (C0, DEL, and also C1 so that the word stays plain text).
const CONTROL = /^\p{Cc}$/u;
// A lone surrogate that stands for a byte (U+DC80-U+DCFF); any other one is no byte at all.
const ESCAPED_BYTE = /^[\udc80-\udcff]$/;
const SURROGATE = /^\p{Cs}$/u;

function escapeChar(c: string): string {
  if (c === '%') {
    return '%%';
  }
  if (WHITESPACE.test(c)) {
    return '%';
  }
  if (CONTROL.test(c) || (SURROGATE.test(c) && !ESCAPED_BYTE.test(c))) {
    return '_';
  }
  return c;
}

/**
 * The AF word of a GET or PUT line: '' for null, for an absolute path (which would make the
 * line unparseable) and for an encoded form over 4096 bytes. Otherwise '%' becomes '%%', each
 * whitespace character '%', and other control characters (C0, DEL, C1) '_'; bytes that are no
 * UTF-8 stay as they are.
 */
export function encodeAssociatedFile(af: string | null): string {
  if (af === null || af.startsWith('/')) {
    return '';
  }
  let out = '';
  for (const c of af) {
    out += escapeChar(c);
  }
  return byteCount(out) > MAX_AF_BYTES ? '' : out;
}
