// Public API of @annex-p2phttp/protocol: git-annex P2P line protocol and HTTP API facts
// (PROTOCOL.md §1, §2.1, §2.2, §2.7, §3). Pure, no I/O.

export {
  AnnexP2PError,
  ProtocolError,
  InvalidParameterError,
  type AnnexP2PErrorOptions,
} from './errors';
export {
  ERROR_CODES,
  P2P_ERROR_CODES,
  DISPATCH_ERROR_CODES,
  type AnnexP2PErrorCode,
  type P2PErrorCode,
  type DispatchErrorCode,
} from './error-codes';
export {
  MAX_LINE_BYTES,
  MAX_LINE_CHARACTERS,
  type ServerMessage,
  type ClientMessage,
} from './messages';
export { encodeMessage } from './encode-message';
export { parseServerLine } from './parse-server-line';
export { P2PStreamParser, type ParserEvent } from './parser';
export {
  parseKey,
  canonicalKey,
  serializeKey,
  isValidKey,
  keySize,
  MAX_KEY_LENGTH,
  type KeyInfo,
} from './key';
export { validateUuid } from './uuid';
export { encodeAssociatedFile } from './associated-file';
export { decodeParam, encodeParam, wireText, fromWireText } from './base64url';
export {
  textOfBytes,
  bytesOfText,
  isPlainText,
  isCanonicalText,
  characterCount,
  byteCount,
} from './byte-text';
export {
  API_VERSIONS,
  parseApiVersion,
  operationAvailable,
  permissionClass,
  type ApiVersion,
  type Operation,
  type PermissionClass,
} from './versions';
export {
  checkPresentResult,
  putResult,
  removeResult,
  putOffsetResult,
  timestampResult,
  lockContentResult,
  keepLockedResult,
} from './results';
export {
  type ServerMode,
  type SessionParams,
  type ServedTarget,
  type RepositoryTarget,
} from './target';
export { CONTENT_LOCK_MS } from './lock-duration';
