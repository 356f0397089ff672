// Serialises client messages into protocol lines (PROTOCOL.md §1.2 framing, §1.4 messages).
// Only framing is enforced here; key and uuid *validity* is the caller's job (key.ts, uuid.ts).
// Keys and associated files are byte strings (byte-text.ts) and go out as the bytes they stand for.

import { encodeAssociatedFile } from './associated-file';
import { bytesOfText, characterCount } from './byte-text';
import { isWritableDecimal } from './decimal';
import { ProtocolError } from './errors';
import { MAX_LINE_CHARACTERS, type ClientMessage } from './messages';

// A key is the last parameter, so it may hold spaces, but never a line break or NUL.
const KEY_BREAKS_FRAMING = /[\r\n\0]/;
// A uuid is a middle word: no whitespace and no control character.
const BAD_UUID_CHAR = /[\s\p{White_Space}\p{Cc}]/u;

function num(n: number, what: string): string {
  if (!isWritableDecimal(n)) {
    throw new ProtocolError(`cannot encode ${what} ${String(n)}: not a non-negative safe integer`);
  }
  return String(n);
}

function key(k: string): string {
  if (k === '') {
    throw new ProtocolError('cannot encode an empty key');
  }
  if (KEY_BREAKS_FRAMING.test(k)) {
    throw new ProtocolError('cannot encode a key containing CR, LF or NUL');
  }
  return k;
}

function uuidWords(uuids: readonly string[]): string[] {
  for (const u of uuids) {
    if (u === '' || BAD_UUID_CHAR.test(u)) {
      throw new ProtocolError(`cannot encode uuid ${JSON.stringify(u)}`);
    }
  }
  return [...uuids];
}

function errorText(message: string): string {
  const text = message.replace(/[\r\n]/g, ' ');
  if (text.includes('\0')) {
    throw new ProtocolError('cannot encode an ERROR message containing NUL');
  }
  return text;
}

function words(m: ClientMessage, withAf = true): string[] {
  switch (m.kind) {
    case 'VERSION':
      return ['VERSION', num(m.version, 'version')];
    case 'BYPASS':
      return ['BYPASS', ...uuidWords(m.uuids)];
    case 'CHECKPRESENT':
    case 'REMOVE':
    case 'LOCKCONTENT':
      return [m.kind, key(m.key)];
    case 'GET':
      return [
        'GET',
        num(m.offset, 'offset'),
        encodeAssociatedFile(withAf ? m.af : null),
        key(m.key),
      ];
    case 'PUT':
      return ['PUT', encodeAssociatedFile(withAf ? m.af : null), key(m.key)];
    case 'DATA':
      return ['DATA', num(m.length, 'length')];
    case 'REMOVE-BEFORE':
      return ['REMOVE-BEFORE', num(m.timestamp, 'timestamp'), key(m.key)];
    case 'ERROR':
      return ['ERROR', errorText(m.message)];
    case 'DATA-PRESENT':
    case 'VALID':
    case 'INVALID':
    case 'SUCCESS':
    case 'FAILURE':
    case 'GETTIMESTAMP':
    case 'UNLOCKCONTENT':
      return [m.kind];
  }
}

/**
 * One protocol line including its '\n'. Throws ProtocolError when a field would break framing or
 * the line (without '\n') is longer than MAX_LINE_CHARACTERS. The associated file of GET and PUT
 * is informational: a line too long with it goes without it.
 */
export function encodeMessage(m: ClientMessage): Buffer {
  let text = words(m).join(' ');
  let length = characterCount(text);
  if (length > MAX_LINE_CHARACTERS && (m.kind === 'GET' || m.kind === 'PUT')) {
    text = words(m, false).join(' ');
    length = characterCount(text);
  }
  if (length > MAX_LINE_CHARACTERS) {
    throw new ProtocolError(
      `${m.kind} line of ${length} characters exceeds ${MAX_LINE_CHARACTERS} characters`,
    );
  }
  return bytesOfText(`${text}\n`);
}
