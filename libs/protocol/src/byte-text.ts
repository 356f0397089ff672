// Byte strings as JavaScript strings (PROTOCOL.md §1.2, §2.1: keys, file names and uuids are
// bytes to git-annex, not text).
//
// A value that may hold any bytes is kept as a `string` in which every well-formed UTF-8 sequence
// is its character and every other byte b (always 0x80-0xff) is the lone surrogate U+DC00 + b.
// This is the "surrogate escape" of Python's os.fsdecode and of the file system encoding of GHC,
// which git-annex itself uses to read P2P lines. Valid UTF-8 values, i.e. nearly all of them,
// are ordinary strings and every existing use of them keeps working; other values survive every
// step that keeps strings as they are (Maps, JSON.stringify and JSON.parse, comparisons), and
// turn back into their bytes with `bytesOfText`.
//
// What must never happen to such a string is an implicit conversion to UTF-8 (`Buffer.from(s)`,
// a `string` written to a stream, a process argument, an ioredis command): that turns each
// escaped byte into U+FFFD. Convert with `bytesOfText`, or with `wireText` (base64url.ts) where
// only text can travel.

import { isUtf8 } from 'node:buffer';

const ESCAPE_BASE = 0xdc00;
const ANY_SURROGATE = /[\ud800-\udfff]/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * The string form of `bytes`: well-formed UTF-8 as its characters, every other byte as the lone
 * surrogate U+DC00 + byte.
 */
export function textOfBytes(bytes: Uint8Array): string {
  const buffer = Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  if (isUtf8(buffer)) {
    return buffer.toString('utf8');
  }
  let out = '';
  let plainFrom = 0;
  let i = 0;
  while (i < buffer.length) {
    const length = sequenceLength(buffer, i);
    if (length > 0) {
      i += length;
      continue;
    }
    out += buffer.toString('utf8', plainFrom, i) + String.fromCharCode(ESCAPE_BASE + buffer[i]!);
    i += 1;
    plainFrom = i;
  }
  return out + buffer.toString('utf8', plainFrom, buffer.length);
}

/**
 * The bytes a string stands for: the inverse of `textOfBytes`. Throws RangeError for a lone
 * surrogate that is no escaped byte (U+D800-U+DC7F, U+DD00-U+DFFF), which no decoded value holds.
 */
export function bytesOfText(text: string): Buffer {
  if (!ANY_SURROGATE.test(text)) {
    return Buffer.from(text, 'utf8');
  }
  const parts: Buffer[] = [];
  let plainFrom = 0;
  for (let i = 0; i < text.length; i += 1) {
    const unit = text.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i += 1; // a pair: one astral character, plain UTF-8
        continue;
      }
      throw new RangeError(`lone surrogate U+${unit.toString(16).toUpperCase()} is no byte`);
    }
    if (unit >= 0xdc00 && unit <= 0xdfff) {
      const byte = unit - ESCAPE_BASE;
      if (byte < 0x80 || byte > 0xff) {
        throw new RangeError(`lone surrogate U+${unit.toString(16).toUpperCase()} is no byte`);
      }
      parts.push(Buffer.from(text.slice(plainFrom, i), 'utf8'), Buffer.of(byte));
      plainFrom = i + 1;
    }
  }
  parts.push(Buffer.from(text.slice(plainFrom), 'utf8'));
  return Buffer.concat(parts);
}

/** True when `text` is well-formed Unicode: its bytes are its UTF-8, nothing is escaped. */
export function isPlainText(text: string): boolean {
  return !ANY_SURROGATE.test(text) || !LONE_SURROGATE.test(text);
}

/**
 * True when `text` is exactly what `textOfBytes` gives for some bytes: no lone surrogate other
 * than escaped bytes, and no escaped bytes that together would form UTF-8 (such a string names
 * the same bytes as another one, so it must not be taken as a second spelling of a key).
 */
export function isCanonicalText(text: string): boolean {
  if (isPlainText(text)) {
    return true;
  }
  try {
    return textOfBytes(bytesOfText(text)) === text;
  } catch {
    return false;
  }
}

/** Length in characters as git-annex counts a line: a UTF-8 sequence is one, an escaped byte one. */
export function characterCount(text: string): number {
  if (!ANY_SURROGATE.test(text)) {
    return text.length;
  }
  let count = 0;
  for (let i = 0; i < text.length; i += 1) {
    const unit = text.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i += 1;
      }
    }
    count += 1;
  }
  return count;
}

/** Length in bytes of what `text` stands for. */
export function byteCount(text: string): number {
  return ANY_SURROGATE.test(text) ? bytesOfText(text).length : Buffer.byteLength(text, 'utf8');
}

/**
 * Length of the well-formed UTF-8 sequence at `i` (Unicode Table 3-7: shortest form, no
 * surrogates, at most U+10FFFF), or 0 when the byte there starts none.
 */
function sequenceLength(bytes: Buffer, i: number): number {
  const b0 = bytes[i]!;
  if (b0 < 0x80) {
    return 1;
  }
  const cont = (k: number, lo = 0x80, hi = 0xbf): boolean => {
    const b = bytes[i + k];
    return b !== undefined && b >= lo && b <= hi;
  };
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    return cont(1) ? 2 : 0;
  }
  if (b0 >= 0xe0 && b0 <= 0xef) {
    const lo = b0 === 0xe0 ? 0xa0 : 0x80;
    const hi = b0 === 0xed ? 0x9f : 0xbf;
    return cont(1, lo, hi) && cont(2) ? 3 : 0;
  }
  if (b0 >= 0xf0 && b0 <= 0xf4) {
    const lo = b0 === 0xf0 ? 0x90 : 0x80;
    const hi = b0 === 0xf4 ? 0x8f : 0xbf;
    return cont(1, lo, hi) && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}
