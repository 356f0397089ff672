/**
 * The HTTP API of `git annex p2phttp` (PROTOCOL.md §2), request by request: resolve the served
 * repository, check the version and the permission, validate every parameter, hand the operation
 * to the Dispatcher and shape its answer for the API version. Routing and Nest wiring live in the
 * controller; this class knows Fastify's request and reply only.
 */
import { type IncomingMessage, type ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import {
  AnnexP2PError,
  checkPresentResult,
  keepLockedResult,
  lockContentResult,
  operationAvailable,
  parseApiVersion,
  permissionClass,
  ProtocolError,
  putOffsetResult,
  putResult,
  removeResult,
  timestampResult,
  type AnnexP2PErrorCode,
  type ApiVersion,
  type Operation,
  type RepositoryTarget,
  type ServerMode,
} from '@annex-p2phttp/protocol';
import { type Dispatcher, type DispatcherStats } from '@annex-p2phttp/dispatch';
import { UnknownBrake } from './unknown-brake';
import { type RetentionLocks } from '@annex-p2phttp/locks';
import { type FastifyReply, type FastifyRequest } from 'fastify';
import { type AccessControl } from './access';
import { BodyTap } from './body-tap';
import {
  contentRange,
  parseRange,
  resolveRange,
  unsatisfiedRange,
  type RangeRequest,
  type ResolvedRange,
} from './byte-ranges';
import {
  cacheControl,
  entityTag,
  ifRangeHolds,
  keyContentSize,
  noneMatchFails,
  type EntityTag,
} from './entity-tags';
import { exactLength } from './exact-length';
import { badRequest, HttpError, notFound } from './http-error';
import { repositoryScope } from './repository-scope';
import { noteUser } from './request-user';
import {
  associatedFileParam,
  bypassParam,
  clientUuidParam,
  dataLengthHeader,
  dataPresentParam,
  keyParam,
  lockIdParam,
  offsetParam,
  optionalClientUuid,
  timestampParam,
  pathKey,
  pathUuid,
  type Query,
} from './request-params';

const JSON_TYPE = 'application/json;charset=utf-8';
/** The peer uuid recorded for reads whose client did not say who it is. */
const ANONYMOUS_CLIENT = '00000000-0000-0000-0000-000000000000';
const WHOLE = { kind: 'whole' } as const;
const PRESENT = { present: true, size: undefined } as const;
/** The longest keeplocked message line accepted. */
const MAX_KEEPLOCKED_LINE = 1024;

/** How long an upload answered before its body was read may take to send the rest. */
const DRAIN_MS = 30_000;

/** The operations reached by POST (every one but get). */
export const POST_OPERATIONS: ReadonlySet<string> = new Set<Operation>([
  'checkpresent',
  'put',
  'putoffset',
  'remove',
  'remove-before',
  'gettimestamp',
  'lockcontent',
  'keeplocked',
]);

/**
 * What serves the uuids: the RepositoryRegistry (embedded) or the cluster directory. `path` is the
 * repository (embedded) or its queue (cluster); `kind` 'repository' marks a repository's own uuid;
 * `location` is the repository's path below its --directory root, or its absolute path (what
 * policies and path-addressed URLs name). With `within` (a location), only the repository there
 * and the uuids it proxies are found.
 */
export interface RepositoryDirectory {
  lookup(
    uuid: string,
    within?: string,
  ): Promise<
    | {
        readonly uuid: string;
        readonly path: string;
        readonly kind?: string;
        readonly specialRemote?: boolean;
        readonly location?: string;
      }
    | undefined
  >;
}

export interface ApiContext {
  readonly registry: RepositoryDirectory;
  readonly dispatcher: Dispatcher;
  readonly locks: RetentionLocks;
  readonly access: AccessControl;
  /** An anonymous client's address is the last one in X-Forwarded-For (see requesterOf). */
  readonly trustForwardedFor?: boolean;
}

interface Resolved {
  readonly repoPath: string;
  readonly serverUuid: string;
  readonly mode: ServerMode;
  /** The uuid is the repository's own, not a proxied remote or cluster. */
  readonly direct: boolean;
  /** The uuid is a special remote the repository proxies (known in embedded mode only). */
  readonly specialRemote: boolean;
  /** Who asks, for sharing the sessions fairly (see requesterOf). */
  readonly requester: string;
}

export interface ServiceStats {
  readonly pool: DispatcherStats;
  readonly locks: number;
  readonly keeplocked: number;
}

export class P2pHttpService {
  private openKeepLocked = 0;

  /** Slows 404s for unknown uuids under a flood of them (unknown-brake.ts). */
  private readonly unknown = new UnknownBrake();

  constructor(private readonly context: ApiContext) {}

  async stats(): Promise<ServiceStats> {
    return {
      pool: this.context.dispatcher.stats(),
      locks: await this.context.locks.count(),
      keeplocked: this.openKeepLocked,
    };
  }

  /** POST /git-annex/:uuid/:version/:op */
  async post(
    request: FastifyRequest,
    reply: FastifyReply,
    uuid: string,
    versionSegment: string,
    op: string,
  ): Promise<void> {
    const version = parseApiVersion(versionSegment);
    const operation = op as Operation;
    if (
      version === undefined ||
      !POST_OPERATIONS.has(operation) ||
      !operationAvailable(operation, version)
    ) {
      throw notFound(`no such endpoint: ${versionSegment}/${op}`);
    }
    const resolved = await this.resolve(request, uuid, operation);
    const query = request.query as Query;
    // Made only for operations that go on to wait for something: most checkpresents need none.
    const signal = () => abortSignalOf(reply.raw);
    const target = (clientUuid: string): RepositoryTarget => ({
      repoPath: resolved.repoPath,
      serverUuid: resolved.serverUuid,
      clientUuid,
      bypass: bypassParam(query),
      version,
      mode: resolved.mode,
      direct: resolved.direct,
      specialRemote: resolved.specialRemote,
      requester: resolved.requester,
    });
    const { dispatcher, locks } = this.context;
    switch (operation) {
      case 'checkpresent': {
        const key = keyParam(query);
        const t = target(clientUuidParam(query));
        const present =
          (await dispatcher.presentLocally?.(t, key)) ||
          (await dispatcher.checkPresent(t, key, signal()));
        return sendJson(reply, checkPresentResult(present));
      }
      case 'gettimestamp': {
        const timestamp = await dispatcher.getTimestamp(target(clientUuidParam(query)), signal());
        return sendJson(reply, timestampResult(timestamp));
      }
      case 'remove':
      case 'remove-before': {
        const key = keyParam(query);
        const clientUuid = clientUuidParam(query);
        const before = operation === 'remove-before' ? timestampParam(query) : undefined;
        const t = target(clientUuid);
        if (await locks.isLocked(t.serverUuid, key)) {
          return sendJson(reply, removeResult(version, false, []));
        }
        const result = await dispatcher.remove(t, key, before, signal());
        return sendJson(reply, removeResult(version, result.ok, result.plusUuids));
      }
      case 'putoffset': {
        const key = keyParam(query);
        const result = await dispatcher.putOffset(target(clientUuidParam(query)), key, signal());
        return sendJson(
          reply,
          putOffsetResult(
            version,
            result.kind === 'offset'
              ? { offset: result.offset }
              : { alreadyHave: true, plusuuids: result.plusUuids },
          ),
        );
      }
      case 'put':
        return this.put(request, reply, query, version, target);
      case 'lockcontent': {
        const key = keyParam(query);
        const lockid = await locks.lock(target(clientUuidParam(query)), key);
        return sendJson(reply, lockContentResult(lockid));
      }
      case 'keeplocked':
        return this.keepLocked(request, reply, query);
      case 'get':
        throw notFound('no such endpoint');
    }
  }

  /**
   * GET and HEAD /git-annex/:uuid[/:version]/key/:key, as a git-annex client and as any HTTP
   * client reads them: Content-Length, one byte range (206), entity tags (If-None-Match → 304,
   * If-Range) and caching headers; HEAD and 304 ask only whether the content is there. The body
   * is the content from the versioned route's `offset` on (the whole content on the unversioned
   * route), and ranges select from that body.
   */
  async get(
    request: FastifyRequest,
    reply: FastifyReply,
    uuid: string,
    versionSegment: string | null,
    rawKey: string,
  ): Promise<void> {
    let version: ApiVersion | null = null;
    if (versionSegment !== null) {
      const parsed = parseApiVersion(versionSegment);
      if (parsed === undefined) {
        throw notFound(`no such endpoint: ${versionSegment}/key`);
      }
      version = parsed;
    }
    const resolved = await this.resolve(request, uuid, 'get');
    const query = request.query as Query;
    const key = pathKey(rawKey);
    // The unversioned form ignores every parameter (PROTOCOL.md §2.1).
    const clientUuid =
      (version === null ? undefined : optionalClientUuid(query)) ?? ANONYMOUS_CLIENT;
    const target: RepositoryTarget = {
      repoPath: resolved.repoPath,
      serverUuid: resolved.serverUuid,
      clientUuid,
      bypass: version === null ? [] : bypassParam(query),
      version: version ?? 4,
      mode: resolved.mode,
      direct: resolved.direct,
      specialRemote: resolved.specialRemote,
      requester: resolved.requester,
    };
    const base = version === null ? 0 : offsetParam(query);
    const tag = entityTag(key, base);
    const { headers } = request;
    const signal = abortSignalOf(reply.raw);
    const notModified = noneMatchFails(headers['if-none-match'], tag);
    if (request.method === 'HEAD' || notModified) {
      const found = await this.probe(target, key, signal);
      if (!found.present) {
        throw notFound('key not present');
      }
      contentHeaders(reply, tag);
      if (notModified) {
        return reply.code(304).send(request.method === 'HEAD' ? Readable.from([]) : undefined);
      }
      if (found.size !== undefined) {
        const length = String(Math.max(0, found.size - base));
        reply.header('content-length', length).header('x-git-annex-data-length', length);
      }
      // An answer with no payload at all gets Content-Length 0 from Fastify's HEAD route; an
      // empty stream keeps the one set here.
      return reply.code(200).send(Readable.from([]));
    }
    const range = ifRangeHolds(headers['if-range'], tag) ? parseRange(headers.range) : WHOLE;
    const known =
      range.kind === 'whole' ? undefined : await this.knownSize(target, key).then(after(base));
    const part = selectPart(range, known);
    if (part.kind === 'unsatisfiable') {
      return this.unsatisfiable(target, key, known, signal);
    }
    const outcome = await this.context.dispatcher
      .get(
        target,
        {
          key,
          associatedFile: version === null ? null : associatedFileParam(query),
          offset: base + (part.kind === 'part' ? part.first : 0),
          signalInvalid: version !== null && version >= 1,
          ...(part.kind === 'part' && part.last !== Infinity
            ? { limit: part.last - part.first + 1 }
            : {}),
        },
        signal,
      )
      .catch(async (error: unknown) => {
        // git-annex-shell 10.20250416 dies on a GET of content a proxied special remote does
        // not have (it opens the file its retrieval did not make): absent content is 404.
        const found =
          signal.aborted || !peerFailed(error)
            ? PRESENT
            : await this.probe(target, key, signal).catch(() => PRESENT);
        if (!found.present) {
          throw notFound('key not present');
        }
        throw error;
      });
    if (outcome.kind === 'absent') {
      throw notFound('key not present');
    }
    const total = outcome.total === undefined ? known : Math.max(0, outcome.total - base);
    if (part.kind === 'part') {
      if (outcome.length === 0) {
        // The range starts at or past the end of content whose size was not known before.
        outcome.body.destroy();
        return this.unsatisfiable(target, key, total, signal);
      }
      reply
        .code(206)
        .header('content-range', contentRange(part.first, part.first + outcome.length - 1, total));
    } else {
      reply.code(200);
    }
    contentHeaders(reply, tag);
    reply
      .header('content-length', String(outcome.length))
      .header('x-git-annex-data-length', String(outcome.length));
    const { stream, sink } = exactLength(outcome.body, outcome.length, reply.raw);
    outcome.releaseWhenFlushed?.(sink);
    return reply.send(stream);
  }

  /**
   * Whether the content is there, and its size when that is known without a transfer: from the
   * repository's own object file, else one checkpresent and the key's size field.
   */
  private async probe(
    target: RepositoryTarget,
    key: string,
    signal: AbortSignal,
  ): Promise<{ present: false } | { present: true; size: number | undefined }> {
    const { dispatcher } = this.context;
    const local = await dispatcher.localSize?.(target, key);
    if (local !== undefined) {
      return { present: true, size: local };
    }
    if (!(await dispatcher.checkPresent(target, key, signal))) {
      return { present: false };
    }
    return { present: true, size: keyContentSize(key) };
  }

  /** The content's size as known before any transfer: its object file's, or the key's field. */
  private async knownSize(target: RepositoryTarget, key: string): Promise<number | undefined> {
    return (await this.context.dispatcher.localSize?.(target, key)) ?? keyContentSize(key);
  }

  /** 416 for content that is there (404 otherwise), with its length when known. */
  private async unsatisfiable(
    target: RepositoryTarget,
    key: string,
    length: number | undefined,
    signal: AbortSignal,
  ): Promise<never> {
    if (!(await this.probe(target, key, signal)).present) {
      throw notFound('key not present');
    }
    const contentRange = unsatisfiedRange(length);
    throw new HttpError(
      416,
      'range not satisfiable',
      contentRange === undefined ? {} : { 'content-range': contentRange },
    );
  }

  private async put(
    request: FastifyRequest,
    reply: FastifyReply,
    query: Query,
    version: ApiVersion,
    target: (clientUuid: string) => RepositoryTarget,
  ): Promise<void> {
    const key = keyParam(query);
    const clientUuid = clientUuidParam(query);
    const length = dataLengthHeader(request.headers['x-git-annex-data-length']);
    const tap = request.body instanceof BodyTap ? request.body : undefined;
    const outcome = await this.context.dispatcher.put(
      target(clientUuid),
      {
        key,
        associatedFile: associatedFileParam(query),
        offset: offsetParam(query),
        length,
        body: tap ?? request.raw,
        dataPresent: version >= 4 && dataPresentParam(query),
      },
      abortSignalOf(reply.raw),
    );
    switch (outcome.kind) {
      case 'done':
        // Answered without the body (content already present): take the rest off the wire
        // first, so that a client still sending it, on a connection that then closes, is not
        // reset before it reads the answer.
        tap?.discard();
        await drain(request.raw, DRAIN_MS);
        return sendJson(reply, putResult(version, outcome.stored, outcome.plusUuids));
      case 'short-body':
      case 'offset-mismatch':
        // A body one or more bytes short is how a client marks content that changed while it
        // was sent; the partial upload stays resumable. A body cut unread (idle) ends the
        // connection with the answer.
        if (!(tap?.complete ?? request.raw.complete)) {
          void reply.header('connection', 'close');
        }
        return sendJson(reply, putResult(version, false, []));
      case 'long-body':
        throw badRequest('request body is longer than X-git-annex-data-length');
    }
  }

  /**
   * keeplocked: a long poll whose request body is newline-framed JSON (`{"unlock":false}` any
   * number of times, then `{"unlock":true}`). The lock is held while the request is open and is
   * released at once on unlock; a request that ends or breaks without unlocking leaves the lock
   * to expire ten minutes later, as the design doc says.
   */
  private async keepLocked(request: FastifyRequest, reply: FastifyReply, query: Query) {
    const lockid = lockIdParam(query);
    const keeper = await this.context.locks.keep(lockid);
    if (!keeper) {
      return sendJson(reply, keepLockedResult());
    }
    let unlock = false;
    this.openKeepLocked += 1;
    try {
      unlock = await readUnlockRequest(request.raw);
    } catch (error) {
      await keeper.end();
      if (error instanceof HttpError) {
        throw error;
      }
      return; // The client went away; nobody is left to answer.
    } finally {
      this.openKeepLocked -= 1;
    }
    if (unlock) {
      // Whether or not the unlock gets through (Redis may be failing over), this request keeps
      // the lock no longer: at worst it expires a ttl later.
      keeper.stop();
      await this.context.locks.unlock(lockid);
    } else {
      await keeper.end();
    }
    return sendJson(reply, keepLockedResult());
  }

  /**
   * Finds the served repository (within the one the URL's path names, if it names one) and checks
   * the caller may do `op` there.
   */
  private async resolve(request: FastifyRequest, uuid: string, op: Operation): Promise<Resolved> {
    const within = repositoryScope(request.raw);
    const repository = await this.context.registry.lookup(pathUuid(uuid), within);
    if (!repository) {
      await this.unknown.pass();
      throw notFound('unknown repository uuid');
    }
    const grant = await this.context.access.check({
      authorization: request.headers.authorization,
      tls: request.protocol === 'https',
      location: repository.location,
      uuid: repository.uuid,
      cls: permissionClass(op),
    });
    noteUser(request, grant.user);
    return {
      repoPath: repository.path,
      serverUuid: repository.uuid,
      // The git-annex-shell mode matching the caller's rights: a second fence behind the check.
      mode: grant.mode,
      direct: repository.kind === 'repository',
      specialRemote: repository.specialRemote === true,
      requester: requesterOf(request, grant.user, this.context.trustForwardedFor === true),
    };
  }
}

/**
 * Who asks, for sharing the sessions fairly: the user when logged in, else the client's address.
 * Behind a reverse proxy (`trustForwardedFor`) that is the last address of X-Forwarded-For, the
 * one the proxy itself added (earlier ones are whatever the client sent).
 */
export function requesterOf(
  request: { readonly headers: FastifyRequest['headers']; readonly ip: string },
  user: string | null,
  trustForwardedFor: boolean,
): string {
  if (user !== null) {
    return `user:${user}`;
  }
  const forwarded = request.headers['x-forwarded-for'];
  if (trustForwardedFor && forwarded !== undefined) {
    const list = (Array.isArray(forwarded) ? forwarded.join(',') : forwarded).split(',');
    const last = list[list.length - 1]?.trim() ?? '';
    if (last !== '') {
      return `address:${last}`;
    }
  }
  return `address:${request.ip}`;
}

/** The headers every answer with a key's content, or about it, carries. */
function contentHeaders(reply: FastifyReply, tag: EntityTag): void {
  reply
    .header('content-type', 'application/octet-stream')
    .header('accept-ranges', 'bytes')
    .header('etag', tag.value)
    .header('cache-control', cacheControl(tag));
}

/**
 * The codes of a failure of the peer's session (it died, or said ERROR) or of the job running it:
 * not a lack of capacity, a timeout or a client gone.
 */
const PEER_FAILURES: ReadonlySet<AnnexP2PErrorCode> = new Set<AnnexP2PErrorCode>([
  'P2P_CONNECTION_CLOSED',
  'P2P_REMOTE_ERROR',
  'DISPATCH_JOB_FAILED',
  'DISPATCH_STREAM_FAILED',
]);

/** Whether a failure came from the peer's session (by its stable code), or it said something unexpected. */
function peerFailed(error: unknown): boolean {
  if (error instanceof ProtocolError) {
    return true;
  }
  return error instanceof AnnexP2PError && PEER_FAILURES.has(error.code);
}

/** A size as the length of the body that starts at `base`. */
function after(base: number): (size: number | undefined) => number | undefined {
  return (size) => (size === undefined ? undefined : Math.max(0, size - base));
}

/**
 * The part of the body a range selects, from its length when known. Unknown, a range from a
 * first byte is sent up to its last byte or the end (and told apart from one past the end once
 * the transfer says how long the content is); a suffix range is ignored, as it needs the length.
 */
function selectPart(range: RangeRequest, length: number | undefined): ResolvedRange {
  if (length !== undefined) {
    return resolveRange(range, length);
  }
  if (range.kind === 'from') {
    if (!Number.isSafeInteger(range.first)) {
      return { kind: 'unsatisfiable' };
    }
    return { kind: 'part', first: range.first, last: range.last ?? Infinity };
  }
  return range.kind === 'unsatisfiable' ? range : WHOLE;
}

function sendJson(reply: FastifyReply, body: object): void {
  void reply.code(200).header('content-type', JSON_TYPE).send(JSON.stringify(body));
}

/** Reads and discards what is left of a request body; gives up after `ms`. */
function drain(body: IncomingMessage, ms: number): Promise<void> {
  if (body.complete || body.destroyed || body.readableEnded) {
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      body.off('end', done);
      body.off('close', done);
      body.off('error', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    body.on('end', done);
    body.on('close', done);
    body.on('error', done);
    body.resume();
  });
}

/**
 * An AbortSignal that fires when the HTTP client goes away before the response is complete;
 * already aborted if it went away before this was called.
 */
function abortSignalOf(response: ServerResponse): AbortSignal {
  const controller = new AbortController();
  if (response.closed) {
    if (!response.writableFinished) {
      controller.abort(new Error('client disconnected'));
    }
    return controller.signal;
  }
  response.once('close', () => {
    if (!response.writableFinished) {
      controller.abort(new Error('client disconnected'));
    }
  });
  return controller.signal;
}

/**
 * Reads keeplocked messages until `{"unlock":true}` (true) or the end of the body (false).
 * Rejects with HttpError 400 on a malformed message and with the stream error when the client
 * disconnects.
 */
async function readUnlockRequest(body: IncomingMessage): Promise<boolean> {
  let pending = '';
  for await (const chunk of body as AsyncIterable<Buffer>) {
    pending += chunk.toString('utf8');
    let newline: number;
    while ((newline = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, newline).trim();
      pending = pending.slice(newline + 1);
      if (line !== '' && parseUnlock(line)) {
        return true;
      }
    }
    if (pending.length > MAX_KEEPLOCKED_LINE) {
      throw badRequest('keeplocked message too long');
    }
  }
  if (!body.complete) {
    throw new Error('client disconnected');
  }
  return pending.trim() !== '' && parseUnlock(pending.trim());
}

function parseUnlock(line: string): boolean {
  let message: unknown;
  try {
    message = JSON.parse(line);
  } catch {
    throw badRequest('malformed keeplocked message');
  }
  if (
    typeof message !== 'object' ||
    message === null ||
    typeof (message as { unlock?: unknown }).unlock !== 'boolean'
  ) {
    throw badRequest('malformed keeplocked message');
  }
  return (message as { unlock: boolean }).unlock;
}
