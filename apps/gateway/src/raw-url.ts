/**
 * Values in the URL are bytes (PROTOCOL.md §2.1). A plain value's percent-encoding stands for
 * bytes that need not be UTF-8 (`key=WORM--%FF%FE`), exactly as its `[base64url]` form would.
 * Fastify decodes the query and the path as UTF-8: an escape that is no UTF-8 is left undecoded
 * in a query value (`%FF` stays the three characters `%FF`) and fails the whole request in the
 * path (400 "not a valid url component"). So:
 * - `parseQuery` replaces Fastify's query parser: every name and value is the byte string
 *   (byte-text.ts) of its percent-decoded bytes, `+` being a space as in any query;
 * - `normalizePath` (Fastify's rewriteUrl, before routing) gives a path segment whose bytes are
 *   not UTF-8 its equivalent `[base64url]` spelling, which the router takes as it is and
 *   `decodeParam` turns back into the same bytes. Other paths are left alone.
 * The raw URL is taken as bytes too (Node reads the request target as Latin-1).
 */
import { isUtf8 } from 'node:buffer';
import { encodeParam, textOfBytes } from '@annex-p2phttp/protocol';

/** Parsed query: one string per parameter, an array for a repeated one. */
export type ParsedQuery = Record<string, string | string[]>;

const NEEDS_DECODING = /[%+\u0080-\uffff]/;
const NEEDS_DECODING_IN_PATH = /%[89a-fA-F]|[\u0080-\uffff]/;

function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) {
    return code - 0x30;
  }
  const lower = code | 0x20;
  return lower >= 0x61 && lower <= 0x66 ? lower - 0x61 + 10 : -1;
}

/**
 * The bytes of a URL component: `%XX` is the byte XX (a `%` not followed by two hex digits is
 * itself), `+` is a space when `plusIsSpace`, any other character its Latin-1 byte (UTF-8 for
 * one beyond, which Node does not produce).
 */
export function componentBytes(text: string, plusIsSpace: boolean): Buffer {
  const out: number[] = [];
  for (let i = 0; i < text.length; i += 1) {
    const code = text.charCodeAt(i);
    if (code === 0x25 && i + 2 < text.length) {
      const high = hexValue(text.charCodeAt(i + 1));
      const low = hexValue(text.charCodeAt(i + 2));
      if (high >= 0 && low >= 0) {
        out.push(high * 16 + low);
        i += 2;
        continue;
      }
    }
    if (code === 0x2b && plusIsSpace) {
      out.push(0x20);
    } else if (code <= 0xff) {
      out.push(code);
    } else {
      out.push(...Buffer.from(String.fromCodePoint(text.codePointAt(i) ?? code), 'utf8'));
      if (code >= 0xd800 && code <= 0xdbff) {
        i += 1;
      }
    }
  }
  return Buffer.from(out);
}

/** A query component as the byte string of its bytes. */
function decodeComponent(text: string): string {
  return NEEDS_DECODING.test(text) ? textOfBytes(componentBytes(text, true)) : text;
}

/** Fastify's querystringParser: `a=1&b=%FF&a=2` → `{ a: ['1', '2'], b: '\udcff' }`. */
export function parseQuery(query: string): ParsedQuery {
  const parsed: ParsedQuery = Object.create(null) as ParsedQuery;
  if (query === '') {
    return parsed;
  }
  for (const pair of query.split('&')) {
    if (pair === '') {
      continue;
    }
    const equals = pair.indexOf('=');
    const name = decodeComponent(equals < 0 ? pair : pair.slice(0, equals));
    const value = equals < 0 ? '' : decodeComponent(pair.slice(equals + 1));
    const previous = parsed[name];
    if (previous === undefined) {
      parsed[name] = value;
    } else if (Array.isArray(previous)) {
      previous.push(value);
    } else {
      parsed[name] = [previous, value];
    }
  }
  return parsed;
}

/**
 * The URL with each path segment whose bytes are not UTF-8 spelled `%5B<base64url>%5D`; a
 * segment with raw characters beyond ASCII that are UTF-8 is percent-encoded. The query is kept.
 */
export function normalizePath(url: string): string {
  const queryAt = url.indexOf('?');
  const pathPart = queryAt < 0 ? url : url.slice(0, queryAt);
  if (!NEEDS_DECODING_IN_PATH.test(pathPart)) {
    return url;
  }
  const segments = pathPart.split('/').map((segment) => {
    if (!NEEDS_DECODING_IN_PATH.test(segment)) {
      return segment;
    }
    const bytes = componentBytes(segment, false);
    if (isUtf8(bytes)) {
      return encodeURIComponent(bytes.toString('utf8'));
    }
    return encodeURIComponent(encodeParam(textOfBytes(bytes)));
  });
  return segments.join('/') + (queryAt < 0 ? '' : url.slice(queryAt));
}

/** The URL to route, and the repository location its path named before `/git-annex/`. */
export interface RoutedUrl {
  readonly url: string;
  readonly location?: string;
}

const API_SEGMENT = '/git-annex/';

/**
 * Takes `pathPrefix` (`--path-prefix`, e.g. `/annex`) off the front of the path, when it is
 * there, then a repository's location off `/<location>/git-annex/<uuid>/…`, leaving the plain
 * `/git-annex/<uuid>/…`. The git-annex client keeps the whole path of an annexUrl other than
 * `/git-annex/` as a prefix, so `annex+http://h/<location>/git-annex/` reaches us as
 * `/<location>/git-annex/git-annex/<uuid>/…` (PROTOCOL.md §2.1): a location ending in
 * `/git-annex` loses that last segment. The location is the path's segments, percent-decoded;
 * one that is not UTF-8 or holds an empty, `.` or `..` segment matches no repository.
 */
export function routeUrl(url: string, pathPrefix: string | undefined): RoutedUrl {
  const queryAt = url.indexOf('?');
  let path = queryAt < 0 ? url : url.slice(0, queryAt);
  const query = queryAt < 0 ? '' : url.slice(queryAt);
  if (pathPrefix !== undefined && (path === pathPrefix || path.startsWith(`${pathPrefix}/`))) {
    path = path.slice(pathPrefix.length) || '/';
  }
  const at = path.lastIndexOf(API_SEGMENT);
  if (at <= 0) {
    return { url: path + query };
  }
  const raw = path.slice(1, at).replace(/(^|\/)git-annex$/, '');
  if (raw === '') {
    return { url: path.slice(at) + query };
  }
  let location = raw;
  try {
    location = raw
      .split('/')
      .map((segment) => decodeURIComponent(segment))
      .join('/');
  } catch {
    // Not UTF-8: kept as written, which names no repository.
  }
  return { url: path.slice(at) + query, location };
}
