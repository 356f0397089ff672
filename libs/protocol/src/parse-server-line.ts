// Parses one line sent by git-annex-shell p2pstdio (PROTOCOL.md §1.2 framing, §1.4 replies).

import { textOfBytes } from './byte-text';
import { parseDecimal } from './decimal';
import { ProtocolError } from './errors';
import type { ServerMessage } from './messages';

const CR = 0x0d;

function describe(text: string): string {
  const shown = text.length > 80 ? `${text.slice(0, 80)}...` : text;
  return JSON.stringify(shown);
}

function noArgs(
  kind: 'SUCCESS' | 'FAILURE' | 'ALREADY-HAVE' | 'VALID' | 'INVALID',
  rest: string | null,
  text: string,
): ServerMessage {
  if (rest !== null) {
    throw new ProtocolError(`${kind} takes no parameter: ${describe(text)}`);
  }
  return { kind };
}

function numberArg(verb: string, rest: string | null, text: string): number {
  const n = rest === null ? undefined : parseDecimal(rest);
  if (n === undefined) {
    throw new ProtocolError(`${verb} needs one decimal number: ${describe(text)}`);
  }
  return n;
}

// -PLUS lists carry zero or more uuids separated by spaces; empty words are ignored.
function uuidList(rest: string | null): string[] {
  return rest === null ? [] : rest.split(' ').filter((w) => w !== '');
}

/**
 * Parses a server line given without its '\n'; a trailing '\r' is dropped. Words are byte strings
 * (byte-text.ts): a uuid or message that is not UTF-8 keeps its bytes. Throws ProtocolError
 * for an unknown verb, a wrong number of parameters or a number that is not plain decimal.
 */
export function parseServerLine(line: Buffer): ServerMessage {
  const end = line.length > 0 && line[line.length - 1] === CR ? line.length - 1 : line.length;
  const text = textOfBytes(line.subarray(0, end));
  const space = text.indexOf(' ');
  const verb = space === -1 ? text : text.slice(0, space);
  const rest = space === -1 ? null : text.slice(space + 1);
  switch (verb) {
    case 'AUTH-SUCCESS':
      if (rest === null || rest === '' || /\s/.test(rest)) {
        throw new ProtocolError(`AUTH-SUCCESS needs one uuid: ${describe(text)}`);
      }
      return { kind: 'AUTH-SUCCESS', uuid: rest };
    case 'VERSION':
      return { kind: 'VERSION', version: numberArg(verb, rest, text) };
    case 'PUT-FROM':
      return { kind: 'PUT-FROM', offset: numberArg(verb, rest, text) };
    case 'DATA':
      return { kind: 'DATA', length: numberArg(verb, rest, text) };
    case 'TIMESTAMP':
      return { kind: 'TIMESTAMP', timestamp: numberArg(verb, rest, text) };
    case 'SUCCESS':
    case 'FAILURE':
    case 'ALREADY-HAVE':
    case 'VALID':
    case 'INVALID':
      return noArgs(verb, rest, text);
    case 'SUCCESS-PLUS':
    case 'FAILURE-PLUS':
    case 'ALREADY-HAVE-PLUS':
      return { kind: verb, uuids: uuidList(rest) };
    case 'ERROR':
      return { kind: 'ERROR', message: rest ?? '' };
    default:
      throw new ProtocolError(`unknown server message: ${describe(text)}`);
  }
}
