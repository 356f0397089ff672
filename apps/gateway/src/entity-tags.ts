/**
 * Caching headers of the key routes (RFC 9110 §8.8.3, §13; RFC 9111 §5.2). A key names its
 * content: for a key of a checksum backend (SHA256E, MD5, BLAKE2B512, …) the content cannot change,
 * so its entity tag is strong and the response may be cached for good; a key of another backend
 * (WORM, URL, VURL, an external backend) names content that git-annex does not check against the
 * key, so its tag is weak and caches revalidate. The tag is a digest of the key's bytes (and of
 * the versioned route's `offset`, which selects another body), so that any key, whatever bytes it
 * holds, gives a tag of plain characters. Pure: no I/O.
 */
import { createHash } from 'node:crypto';
import { bytesOfText, parseKey } from '@annex-p2phttp/protocol';

/** The entity tag of a key's body, as sent (`"…"` or `W/"…"`). */
export interface EntityTag {
  readonly value: string;
  readonly strong: boolean;
}

/** Backends whose key holds a checksum of the content (optionally with the `E` extension form). */
const CHECKSUM_BACKEND =
  /^(?:MD5|SHA1|SHA224|SHA256|SHA384|SHA512|SHA3_(?:224|256|384|512)|SKEIN(?:256|512)|BLAKE2(?:B|BP|S|SP)(?:160|224|256|384|512))E?$/;

/** Whether the key's variety is a backend that names content by its checksum. */
export function keyHasChecksum(key: string): boolean {
  const dash = key.indexOf('-');
  return dash > 0 && CHECKSUM_BACKEND.test(key.slice(0, dash));
}

/** The entity tag of the body served for `key` from `offset` (0 for the whole content). */
export function entityTag(key: string, offset = 0): EntityTag {
  const digest = createHash('sha256').update(bytesOfText(key));
  if (offset !== 0) {
    digest.update(`\n${offset}`);
  }
  const opaque = `"${digest.digest('base64url').slice(0, 27)}"`;
  const strong = keyHasChecksum(key);
  return { value: strong ? opaque : `W/${opaque}`, strong };
}

/** `Cache-Control` for the body of a key whose tag is `tag`. */
export function cacheControl(tag: EntityTag): string {
  return tag.strong ? 'max-age=31536000, immutable' : 'no-cache';
}

/** The entity tags of an If-None-Match or If-Range value; `*` stands for itself. */
function tagsOf(header: string): string[] {
  const tags: string[] = [];
  const pattern = /\s*(\*|(?:W\/)?"[^"]*")\s*(?:,|$)/gy;
  let match: RegExpExecArray | null;
  while (pattern.lastIndex < header.length && (match = pattern.exec(header)) !== null) {
    tags.push(match[1]!);
  }
  return tags;
}

function opaque(tag: string): string {
  return tag.startsWith('W/') ? tag.slice(2) : tag;
}

/**
 * If-None-Match (RFC 9110 §13.1.2): true when it names this body (weak comparison) or is `*`;
 * then a GET or HEAD of content that is present answers 304.
 */
export function noneMatchFails(header: string | readonly string[] | undefined, tag: EntityTag) {
  const value = Array.isArray(header) ? header.join(',') : header;
  if (typeof value !== 'string') {
    return false;
  }
  return tagsOf(value).some((t) => t === '*' || opaque(t) === opaque(tag.value));
}

/**
 * If-Range (RFC 9110 §13.1.5): whether the Range header may be honoured. Only a strong tag
 * equal to this body's strong tag lets it through; a weak tag, another tag or a date (this
 * server sends no Last-Modified) asks for the whole body instead.
 */
export function ifRangeHolds(header: string | readonly string[] | undefined, tag: EntityTag) {
  if (header === undefined) {
    return true;
  }
  if (typeof header !== 'string') {
    return false;
  }
  const value = header.trim();
  return tag.strong && value.startsWith('"') && value === tag.value;
}

/**
 * The size of the content a key names, from its `-s` field; undefined when it has none, and for a
 * chunk key (whose content is one chunk of that size, not all of it).
 */
export function keyContentSize(key: string): number | undefined {
  const info = parseKey(key);
  if (info.chunkSize !== undefined || info.chunkNumber !== undefined) {
    return undefined;
  }
  return info.size;
}
