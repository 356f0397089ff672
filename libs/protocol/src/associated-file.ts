// AssociatedFile escaping for GET and PUT lines (PROTOCOL.md §1.2). The AF is informational
// only, so anything risky is dropped rather than rejected.

/** Longest encoded AF kept, in UTF-8 bytes; longer ones are dropped. */
const MAX_AF_BYTES = 4096;

// Whitespace in the JavaScript and the Unicode sense (this includes TAB, LF, VT, FF, CR).
const WHITESPACE = /^[\s\p{White_Space}]$/u;
// Remaining control characters (C0, DEL, and also C1 so that the word stays plain text)
// and lone surrogates (not encodable as UTF-8).
const CONTROL = /^[\p{Cc}\p{Cs}]$/u;

function escapeChar(c: string): string {
  if (c === '%') {
    return '%%';
  }
  if (WHITESPACE.test(c)) {
    return '%';
  }
  if (CONTROL.test(c)) {
    return '_';
  }
  return c;
}

/**
 * The AF word of a GET or PUT line: '' for null, for an absolute path (which would make the
 * line unparseable) and for an encoded form over 4096 bytes. Otherwise '%' becomes '%%', each
 * whitespace character '%', and other control characters (C0, DEL, C1) and lone surrogates '_'.
 */
export function encodeAssociatedFile(af: string | null): string {
  if (af === null || af.startsWith('/')) {
    return '';
  }
  let out = '';
  for (const c of af) {
    out += escapeChar(c);
  }
  return Buffer.byteLength(out, 'utf8') > MAX_AF_BYTES ? '' : out;
}
