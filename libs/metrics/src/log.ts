/**
 * The structured log of every app: one line per event on stderr, with a level and a time.
 * `json` (one JSON object per line: time, level, app, msg and the event's fields) is for log
 * collectors and is the default when stderr is not a terminal; `text` is for people. Lines below
 * the chosen level are dropped. Values pass through `redact` on their way out, so that a password
 * or an Authorization header handed to the log by mistake never reaches it.
 */

import { writeSync } from 'node:fs';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ['json', 'text'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export type LogFields = Readonly<Record<string, unknown>>;

export interface LoggerOptions {
  readonly format: LogFormat;
  readonly level: LogLevel;
  /** Where lines go; default process.stderr. */
  readonly write?: (line: string) => void;
  /** The clock; default Date.now. */
  readonly now?: () => number;
}

/** One request, as the access log records it. */
export interface AccessRecord {
  readonly method: string;
  /** The route's name from a fixed vocabulary (an API operation, `metrics`, `healthz`, ...). */
  readonly route: string;
  /** The API version of the request, or `none`. */
  readonly version?: string;
  /** The repository uuid of the request, when it named a well-formed one. */
  readonly repository?: string;
  readonly status: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly durationMs: number;
  /** The authenticated user, or null for anonymous requests. */
  readonly user: string | null;
  readonly client: string;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
/** Field names whose values are never written. */
const SECRET_FIELD = /authorization|password|passwd|secret|token|cookie/i;
/** `scheme://user:password@` in URLs (a Redis URL with a password). */
const URL_CREDENTIALS = /(\b[a-z][a-z0-9+.-]*:\/\/)([^/\s:@]*):[^/\s@]*@/gi;
const BASIC = /\b(Basic|Bearer)\s+[A-Za-z0-9+/=._~-]+/g;

/** A log line's text with credentials taken out of URLs and Authorization values. */
export function redact(text: string): string {
  return text.replace(URL_CREDENTIALS, '$1$2:***@').replace(BASIC, '$1 ***');
}

/** The default format: json unless the log goes to a terminal. */
export function defaultLogFormat(stream: { isTTY?: boolean } = process.stderr): LogFormat {
  return stream.isTTY === true ? 'text' : 'json';
}

export function isLogLevel(value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value);
}

export function isLogFormat(value: string): value is LogFormat {
  return (LOG_FORMATS as readonly string[]).includes(value);
}

export class Logger {
  private readonly write: (line: string) => void;
  private readonly now: () => number;
  private readonly threshold: number;

  constructor(
    private readonly options: LoggerOptions,
    /** Fields on every line of this logger (`app`, a component). */
    private readonly base: LogFields = {},
  ) {
    this.write = options.write ?? stderrLines;
    this.now = options.now ?? Date.now;
    this.threshold = RANK[options.level];
  }

  get level(): LogLevel {
    return this.options.level;
  }

  get format(): LogFormat {
    return this.options.format;
  }

  /** A logger adding `fields` to every line. */
  child(fields: LogFields): Logger {
    return new Logger(this.options, { ...this.base, ...fields });
  }

  enabled(level: LogLevel): boolean {
    return RANK[level] >= this.threshold;
  }

  debug(msg: string, fields?: LogFields): void {
    this.log('debug', msg, fields);
  }

  info(msg: string, fields?: LogFields): void {
    this.log('info', msg, fields);
  }

  warn(msg: string, fields?: LogFields): void {
    this.log('warn', msg, fields);
  }

  error(msg: string, fields?: LogFields): void {
    this.log('error', msg, fields);
  }

  /**
   * One access-log line (level info, msg `access`). Its fields come from a fixed vocabulary or
   * were validated (the uuid), and none can hold a credential, so the line is built directly:
   * it is written for every request.
   */
  access(record: AccessRecord): void {
    if (!this.enabled('info')) {
      return;
    }
    const fields = {
      method: record.method,
      route: record.route,
      version: record.version ?? 'none',
      repository: record.repository ?? null,
      status: record.status,
      bytesIn: record.bytesIn,
      bytesOut: record.bytesOut,
      durationMs: Math.round(record.durationMs * 1000) / 1000,
      user: record.user ?? 'anonymous',
      client: record.client,
    };
    if (this.options.format !== 'json') {
      this.log('info', 'access', fields);
      return;
    }
    this.write(
      `${JSON.stringify({
        time: new Date(this.now()).toISOString(),
        level: 'info',
        msg: 'access',
        ...this.base,
        ...fields,
      })}\n`,
    );
  }

  log(level: LogLevel, msg: string, fields?: LogFields): void {
    if (RANK[level] < this.threshold) {
      return;
    }
    const all = fields ? { ...this.base, ...fields } : this.base;
    this.write(
      this.options.format === 'json'
        ? jsonLine(this.now(), level, msg, all)
        : textLine(level, msg, all),
    );
    if (RANK[level] >= RANK.warn && this.write === stderrLines) {
      flushStderr();
    }
  }
}

/**
 * The default destination: stderr, with the lines of one event-loop turn written together (one
 * system call instead of one per request under load). Warnings and errors, and whatever is
 * pending when the process exits, are written at once.
 */
let pending: string[] = [];
let flushScheduled = false;

function flushStderr(): void {
  flushScheduled = false;
  if (pending.length === 0) {
    return;
  }
  const text = pending.join('');
  pending = [];
  process.stderr.write(text);
}

function stderrLines(line: string): void {
  pending.push(line);
  if (pending.length === 1 && !flushScheduled) {
    flushScheduled = true;
    setImmediate(flushStderr);
  }
  if (pending.length >= 256) {
    flushStderr();
  }
}

process.once('exit', () => {
  if (pending.length > 0) {
    try {
      writeSync(2, pending.join(''));
    } catch {
      // stderr is gone
    }
    pending = [];
  }
});

function clean(key: string, value: unknown): unknown {
  if (SECRET_FIELD.test(key)) {
    return '***';
  }
  if (typeof value === 'string') {
    return redact(value);
  }
  if (value instanceof Error) {
    return redact(value.message);
  }
  if (typeof value === 'bigint') {
    return value.toString();
  }
  return value;
}

function jsonLine(time: number, level: LogLevel, msg: string, fields: LogFields): string {
  const record: Record<string, unknown> = {
    time: new Date(time).toISOString(),
    level,
    msg: redact(msg),
  };
  for (const [key, value] of Object.entries(fields)) {
    if (value !== undefined && key !== 'time' && key !== 'level' && key !== 'msg') {
      record[key] = clean(key, value);
    }
  }
  return `${JSON.stringify(record)}\n`;
}

function textLine(level: LogLevel, msg: string, fields: LogFields): string {
  const { app, ...rest } = fields;
  const prefix = level === 'info' ? '' : `${level}: `;
  const extra = Object.entries(rest)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => {
      const cleaned = clean(key, value);
      const text = typeof cleaned === 'string' ? cleaned : JSON.stringify(cleaned);
      return ` ${key}=${/[\s"=]/.test(text) ? JSON.stringify(text) : text}`;
    })
    .join('');
  const name = typeof app === 'string' && app !== 'embedded' ? app : 'annex-p2phttp';
  return `${name}: ${prefix}${redact(msg)}${extra}\n`;
}

/** For code that takes a `(message) => void` callback: lines at `level`. */
export function logFunction(logger: Logger, level: LogLevel = 'info'): (message: string) => void {
  return (message) => logger.log(level, message);
}

/** The logger of an app started with these options (`--log-format`, `--log-level`). */
export function loggerFor(
  options: { readonly logFormat?: LogFormat; readonly logLevel?: LogLevel },
  app: string,
): Logger {
  return new Logger(
    { format: options.logFormat ?? defaultLogFormat(), level: options.logLevel ?? 'info' },
    { app },
  );
}

interface NodeSocket {
  readonly bytesRead: number;
  readonly remoteAddress?: string;
}
interface NodeRequest {
  readonly method?: string;
  readonly socket: NodeSocket | null;
}
/** Per connection: its bytesRead already counted for an earlier request. */
const accountedRead = new WeakMap<NodeSocket, number>();
interface NodeResponse {
  readonly statusCode: number;
  readonly socket: { readonly bytesWritten: number } | null;
  once(event: 'close', listener: () => void): unknown;
}

/**
 * Writes the access-log line of a request answered by a plain node:http server (the proxy
 * worker's data port, the lock-service's and the ops listener's endpoints) once its response
 * closes. `route` names what was asked from a fixed vocabulary.
 */
export function logNodeRequest(
  log: Logger,
  request: NodeRequest,
  response: NodeResponse,
  route: string,
): void {
  if (!log.enabled('info')) {
    return;
  }
  const at = process.hrtime.bigint();
  const written = response.socket?.bytesWritten ?? 0;
  const socket = response.socket;
  const reader = request.socket;
  response.once('close', () => {
    // Everything read on the connection since the previous request's answer (headers included).
    const read = reader?.bytesRead ?? 0;
    const bytesIn = reader ? Math.max(0, read - (accountedRead.get(reader) ?? 0)) : 0;
    if (reader) {
      accountedRead.set(reader, read);
    }
    log.access({
      method: request.method ?? 'GET',
      route,
      status: response.statusCode,
      bytesIn,
      bytesOut: Math.max(0, (socket?.bytesWritten ?? written) - written),
      durationMs: Number(process.hrtime.bigint() - at) / 1e6,
      user: null,
      client: request.socket?.remoteAddress ?? 'unknown',
    });
  });
}
