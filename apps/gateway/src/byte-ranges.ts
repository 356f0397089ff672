/**
 * Byte ranges of a key GET (RFC 9110 §14): one range of `bytes=first-last`, `bytes=first-` or
 * `bytes=-suffix` is served as 206 Partial Content. Everything else this server does not serve as
 * a range (several ranges, another unit, a malformed or backwards range) is ignored, which RFC 9110
 * allows: the whole body goes out with 200. A range that is well-formed but selects nothing (its
 * first byte at or past the end, or `bytes=-0`) is 416. Pure: no I/O.
 */

/** What the Range header asks for, before the content's length is known. */
export type RangeRequest =
  /** No Range header, or one that is ignored: the whole body. */
  | { readonly kind: 'whole' }
  /** `bytes=first-last` or `bytes=first-` (`last` absent: to the end). */
  | { readonly kind: 'from'; readonly first: number; readonly last?: number }
  /** `bytes=-length`: the last `length` bytes (length > 0). */
  | { readonly kind: 'suffix'; readonly length: number }
  /** `bytes=-0`: selects nothing, whatever the length. */
  | { readonly kind: 'unsatisfiable' };

/** A range resolved against the length of the body it is taken from. */
export type ResolvedRange =
  | { readonly kind: 'whole' }
  /** Bytes first..last of the body, both included, last < length. */
  | { readonly kind: 'part'; readonly first: number; readonly last: number }
  | { readonly kind: 'unsatisfiable' };

const WHOLE: RangeRequest = { kind: 'whole' };
const DIGITS = /^[0-9]+$/;
/** Header field values longer than this are not ranges this server serves (one range). */
const MAX_HEADER = 256;

/** Parses a Range header (RFC 9110 §14.2); anything not served as a range is `whole`. */
export function parseRange(header: string | readonly string[] | undefined): RangeRequest {
  if (typeof header !== 'string' || header.length > MAX_HEADER) {
    return WHOLE;
  }
  const equals = header.indexOf('=');
  if (equals < 0 || header.slice(0, equals).trim().toLowerCase() !== 'bytes') {
    return WHOLE;
  }
  // A list may hold empty elements (RFC 9110 §5.6.1); one range is served, several are not.
  const specs = header
    .slice(equals + 1)
    .split(',')
    .map((spec) => spec.trim())
    .filter((spec) => spec !== '');
  if (specs.length !== 1) {
    return WHOLE;
  }
  const spec = specs[0]!;
  const dash = spec.indexOf('-');
  if (dash < 0) {
    return WHOLE;
  }
  const firstText = spec.slice(0, dash);
  const lastText = spec.slice(dash + 1);
  if (firstText === '') {
    if (!DIGITS.test(lastText)) {
      return WHOLE;
    }
    const length = decimal(lastText);
    return length === 0 ? { kind: 'unsatisfiable' } : { kind: 'suffix', length };
  }
  if (!DIGITS.test(firstText) || (lastText !== '' && !DIGITS.test(lastText))) {
    return WHOLE;
  }
  const first = decimal(firstText);
  if (lastText === '') {
    return { kind: 'from', first };
  }
  const last = decimal(lastText);
  // A last position below the first makes the range invalid (§14.1.1): ignored.
  return last < first ? WHOLE : { kind: 'from', first, last };
}

/**
 * The decimal value of a digit string; values past Number.MAX_SAFE_INTEGER become Infinity (they
 * are past the end of any content this server can send, and stay comparable).
 */
function decimal(digits: string): number {
  const value = Number(digits);
  return Number.isSafeInteger(value) ? value : Infinity;
}

/** Resolves a range against the length of the body it selects from (RFC 9110 §14.1.2-3). */
export function resolveRange(range: RangeRequest, length: number): ResolvedRange {
  switch (range.kind) {
    case 'whole':
      return range;
    case 'unsatisfiable':
      return range;
    case 'from':
      if (range.first >= length) {
        return { kind: 'unsatisfiable' };
      }
      return { kind: 'part', first: range.first, last: Math.min(range.last ?? length, length - 1) };
    case 'suffix':
      if (length === 0) {
        return { kind: 'unsatisfiable' };
      }
      return { kind: 'part', first: Math.max(0, length - range.length), last: length - 1 };
  }
}

/** `Content-Range` of a 206: `bytes first-last/length` (`*` for a length not known). */
export function contentRange(first: number, last: number, length: number | undefined): string {
  return `bytes ${first}-${last}/${length === undefined ? '*' : length}`;
}

// Content-Range of a 416: "bytes */" and the length; undefined for a length not known.
export function unsatisfiedRange(length: number | undefined): string | undefined {
  return length === undefined ? undefined : `bytes */${length}`;
}
