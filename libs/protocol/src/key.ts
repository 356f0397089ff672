// git-annex key validation (PROTOCOL.md §3): the key grammar
//   VARIETY[-sSIZE][-mMTIME][-SCHUNKSIZE][-CCHUNKNUM]--NAME
// plus the "safe validator" rules of §3, so that a key can be sent as the last word of a line.
// A key is bytes (a byte string, byte-text.ts): NAME may hold any bytes but those refused below.
//
// Extension limit, verified against git-annex 10.20250416 (`git annex examinekey` and
// `git annex p2phttp` checkpresent, both agree): when the VARIETY ends in an uppercase 'E' (any
// variety, including unknown ones such as `FOOE` and the bare `E`), the part of NAME from its
// first '.' (the '.' included) may be at most 64 bytes; 65 bytes is "bad key" / 400.
// `SHA256E-s1--abc.` + 63 more bytes is accepted; a name without '.' has no limit; a lowercase
// 'e' or any other variety has no limit.
//
// Numeric fields are decimal digits, leading zeros allowed, as git-annex parses them; git-annex
// then writes the key with plain numbers (`-s007` is the key `-s7`), and so does serializeKey.
//
// Deliberate differences from git-annex: numeric fields beyond Number.MAX_SAFE_INTEGER are
// rejected (git-annex has no maximum), as are keys containing C0 controls, DEL, whitespace, a
// VARIETY outside [A-Za-z0-9_]+, or more than MAX_KEY_LENGTH characters (what fits git-annex's
// line limit in the longest line a key travels in).

import { byteCount, characterCount, isCanonicalText } from './byte-text';
import { InvalidParameterError } from './errors';
import { MAX_LINE_CHARACTERS } from './messages';

export interface KeyInfo {
  variety: string;
  size?: number;
  mtime?: number;
  chunkSize?: number;
  chunkNumber?: number;
  name: string;
}

/**
 * Longest accepted key, in characters as git-annex counts them (a UTF-8 sequence or a byte that
 * is none is one): the longest line a key travels in is `REMOVE-BEFORE <timestamp> <key>`, with a
 * timestamp of up to 16 digits, and git-annex-shell reads lines of MAX_LINE_CHARACTERS.
 */
export const MAX_KEY_LENGTH = MAX_LINE_CHARACTERS - 'REMOVE-BEFORE '.length - 16 - 1;

/** Longest NAME extension (from the first '.') of a variety ending in 'E'. */
const MAX_EXTENSION_BYTES = 64;

const VARIETY = /^[A-Za-z0-9_]+$/;
// Whitespace in both the JavaScript and the Unicode sense.
const WHITESPACE = /[\s\p{White_Space}]/u;
const FIELD = /^-([smSC])([0-9]+)(?=-)/;

// Field letters in their only permitted order.
const FIELDS = [
  ['s', 'size'],
  ['m', 'mtime'],
  ['S', 'chunkSize'],
  ['C', 'chunkNumber'],
] as const;

function hasC0OrDel(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) {
      return true;
    }
  }
  return false;
}

function invalid(reason: string): never {
  throw new InvalidParameterError('key', `invalid key: ${reason}`);
}

/** Parses and validates a key; throws InvalidParameterError('key', 'invalid key: ...'). */
export function parseKey(key: string): KeyInfo {
  if (key === '') {
    invalid('empty');
  }
  if (key.length > MAX_KEY_LENGTH && characterCount(key) > MAX_KEY_LENGTH) {
    invalid(`longer than ${MAX_KEY_LENGTH} characters`);
  }
  if (!isCanonicalText(key)) {
    invalid('not a byte string');
  }
  if (hasC0OrDel(key) || WHITESPACE.test(key)) {
    invalid('contains whitespace or a control character');
  }
  const dash = key.indexOf('-');
  if (dash === -1) {
    invalid('missing "--" before the name');
  }
  const variety = key.slice(0, dash);
  if (!VARIETY.test(variety)) {
    invalid('bad variety (expected letters, digits or "_")');
  }
  const info: KeyInfo = { variety, name: '' };
  let rest = key.slice(dash);
  let next = 0; // index into FIELDS of the next field allowed
  while (!rest.startsWith('--')) {
    const m = FIELD.exec(rest);
    const letter = m?.[1];
    const digits = m?.[2];
    if (m === null || letter === undefined || digits === undefined) {
      invalid('bad field (expected -s, -m, -S or -C with a decimal number, then "--NAME")');
    }
    const index = FIELDS.findIndex(([l]) => l === letter);
    if (index < next) {
      invalid(`field -${letter} out of order or repeated`);
    }
    const value = Number(digits);
    if (!Number.isSafeInteger(value)) {
      invalid(`field -${letter} is too large`);
    }
    const field = FIELDS[index];
    if (field !== undefined) {
      info[field[1]] = value;
    }
    next = index + 1;
    rest = rest.slice(m[0].length);
  }
  info.name = rest.slice(2);
  if (variety.endsWith('E')) {
    const dot = info.name.indexOf('.');
    if (dot !== -1 && byteCount(info.name.slice(dot)) > MAX_EXTENSION_BYTES) {
      invalid(`extension longer than ${MAX_EXTENSION_BYTES} bytes`);
    }
  }
  return info;
}

/**
 * The key as git-annex writes it: numeric fields without leading zeros. Two spellings of one key
 * (`-s07` and `-s7`) name the same object, lock and location log entry.
 */
export function serializeKey(info: KeyInfo): string {
  let out = info.variety;
  for (const [letter, field] of FIELDS) {
    const value = info[field];
    if (value !== undefined) {
      out += `-${letter}${value}`;
    }
  }
  return `${out}--${info.name}`;
}

/** Parses and validates a key and returns it as git-annex writes it (serializeKey). */
export function canonicalKey(key: string): string {
  return serializeKey(parseKey(key));
}

/** True when parseKey accepts the key. */
export function isValidKey(key: string): boolean {
  try {
    parseKey(key);
    return true;
  } catch (err) {
    if (err instanceof InvalidParameterError) {
      return false;
    }
    throw err;
  }
}

/** The -s field of a valid key; undefined when the key has none or is invalid. */
export function keySize(key: string): number | undefined {
  try {
    return parseKey(key).size;
  } catch (err) {
    if (err instanceof InvalidParameterError) {
      return undefined;
    }
    throw err;
  }
}
