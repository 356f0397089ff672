// Message types of the line protocol spoken with `git-annex-shell p2pstdio` (PROTOCOL.md §1.2-§1.4).

/**
 * The longest line (without its '\n') git-annex-shell reads, in characters: a UTF-8 sequence
 * counts as one, and so does a byte that is none (PROTOCOL.md §1.2).
 */
export const MAX_LINE_CHARACTERS = 32767;

/** The longest server line this parser takes, in bytes. */
export const MAX_LINE_BYTES = 32767;

/** A line the server (git-annex-shell) sends. */
export type ServerMessage =
  | { kind: 'AUTH-SUCCESS'; uuid: string }
  | { kind: 'VERSION'; version: number }
  | { kind: 'SUCCESS' }
  | { kind: 'FAILURE' }
  | { kind: 'SUCCESS-PLUS'; uuids: string[] }
  | { kind: 'FAILURE-PLUS'; uuids: string[] }
  | { kind: 'ALREADY-HAVE' }
  | { kind: 'ALREADY-HAVE-PLUS'; uuids: string[] }
  | { kind: 'PUT-FROM'; offset: number }
  | { kind: 'DATA'; length: number }
  | { kind: 'VALID' }
  | { kind: 'INVALID' }
  | { kind: 'TIMESTAMP'; timestamp: number }
  | { kind: 'ERROR'; message: string };

/** A line the client (this server) sends. Keys and associated files are byte strings (byte-text.ts). */
export type ClientMessage =
  | { kind: 'VERSION'; version: number }
  | { kind: 'BYPASS'; uuids: string[] }
  | { kind: 'CHECKPRESENT'; key: string }
  | { kind: 'GET'; offset: number; af: string | null; key: string }
  | { kind: 'PUT'; af: string | null; key: string }
  /** The header line only; payload bytes are written separately. */
  | { kind: 'DATA'; length: number }
  | { kind: 'DATA-PRESENT' }
  | { kind: 'VALID' }
  | { kind: 'INVALID' }
  | { kind: 'SUCCESS' }
  | { kind: 'FAILURE' }
  | { kind: 'REMOVE'; key: string }
  | { kind: 'REMOVE-BEFORE'; timestamp: number; key: string }
  | { kind: 'GETTIMESTAMP' }
  | { kind: 'LOCKCONTENT'; key: string }
  | { kind: 'UNLOCKCONTENT' }
  | { kind: 'ERROR'; message: string };
