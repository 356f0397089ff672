/**
 * The `annex-p2phttp serve` command line. Options are named, spelt and defaulted like those of
 * `git annex p2phttp`, so that switching means changing the command name (DESIGN.md, "Serving
 * repositories"). Deliberate differences from the reference:
 * - `--proxyconnections` defaults to the number of jobs (the reference: 1);
 * - `--jobs` accepts 1 (the reference wants 2 or more, because its web server takes a slot);
 * - `--repo PATH` (repeatable) names repositories explicitly; the reference serves the repository
 *   in the current directory, which is what we do when neither `--repo` nor `--directory` is given;
 * - `--cpus N`: the reference's web server runs Haskell threads on at most N cores. Here the
 *   JavaScript runs on one core whatever N is; N sizes the thread pool that does the file I/O
 *   (libuv's UV_THREADPOOL_SIZE, default 4), the server's other use of cores (cli.ts applies it).
 */
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import {
  DEFAULT_REDIS_PREFIX,
  parseRedisUrl,
  redactRedisUrl,
  RedisUrlError,
} from '@annex-p2phttp/redis';
import { Command, CommanderError, Option } from 'commander';
import { CONTENT_LOCK_MS } from '@annex-p2phttp/protocol';
import { type AuthPolicy } from './auth';
import { ConfigError, HelpRequested } from './errors';
import { deepFreeze } from './frozen';

/**
 * Everything the command line says, read and checked once and then frozen (deepFreeze): no part
 * of it changes afterwards. Each role takes the slice it uses (roles.ts).
 */
export interface ServeOptions extends Readonly<AuthPolicy> {
  /** TCP port; 0 lets the system pick a free one. */
  readonly port: number;
  /** Addresses to listen on; empty = all interfaces. */
  readonly bind: readonly string[];
  /** Listen on this unix socket instead of TCP. */
  readonly socket?: string;
  /** Concurrent jobs (worker slots per repository). */
  readonly jobs: number;
  /** `--cpus N`: cores the server may use at once (threads of its file I/O pool); unset: default. */
  readonly cpus?: number;
  /** Idle P2P connections kept for reuse, across all keys. */
  readonly proxyConnections: number;
  /** Concurrent node operations per connection to a cluster. */
  readonly clusterJobs: number;
  /** Content locks held at once; past it lockcontent answers locked:false. */
  readonly lockedFiles: number;
  /** How long a retention lock lasts after lockcontent, or after its keeplocked request ended. */
  readonly lockTtlMs: number;
  /** An upload body that brings no bytes for this long is cut (its bytes kept for a resume). */
  readonly uploadIdleMs: number;
  /**
   * Take an anonymous client's address from `X-Forwarded-For` (set by a reverse proxy in front),
   * for sharing the sessions fairly between clients.
   */
  readonly trustForwardedFor: boolean;
  readonly certFile?: string;
  readonly privateKeyFile?: string;
  readonly chainFiles: readonly string[];
  /** Repositories served, absolute. */
  readonly repos: readonly string[];
  /** Directories whose repositories are served, absolute. */
  readonly directories: readonly string[];
  readonly debug: boolean;
  /** Cluster mode: the Redis URL (`--redis` or REDIS_URL); embedded mode when absent. */
  readonly redis?: string;
  /** Prefix of every Redis key (`--redis-prefix` or ANNEX_P2PHTTP_REDIS_PREFIX). */
  readonly redisPrefix: string;
  /** Cluster mode: how long a job may wait for a worker before the request gets 503. */
  readonly queueWaitMs: number;
  /** Cluster mode: how long the gateway waits for a job's answer (streams excepted). */
  readonly jobTimeoutMs: number;
  /** proxy-worker: the internal data port (get/put bytes, /metrics, /healthz, /readyz). */
  readonly dataPort: number;
  /** proxy-worker: the URL gateways reach the data port at; default from --bind or hostname. */
  readonly advertiseUrl?: string;
  /** proxy-worker: the job lock duration and stalled-job check interval. */
  readonly stallCheckMs: number;
  /**
   * proxy-worker: jobs taken at once per queue. More than `jobs`: a job served from the object
   * files needs no session, one that does waits for one of the `jobs` session slots.
   */
  readonly workerJobs: number;
  /**
   * proxy-worker: the BullMQ queues (shards) of its worker group; a repository's queue is its
   * uuid's hash mod `shards`. Workers of a group share the queues of the same number only.
   */
  readonly shards: number;
  /**
   * proxy-worker: its worker group (`--worker-group`): workers that serve the same repositories
   * and share their shard queues. Absent: derived from its --repo and --directory paths.
   */
  readonly workerGroup?: string;
  /** lock-service: port of /healthz, /readyz and /metrics. */
  readonly healthPort: number;
  /**
   * serve, gateway: a listener of its own for /metrics and /stats (which then leave the API's
   * port); absent: they are answered on the API's port like /healthz and /readyz.
   */
  readonly opsListen?: ListenAddress;
  /** The log's format; absent: json unless stderr is a terminal. */
  readonly logFormat?: 'json' | 'text';
  /** Lines below this level are not logged (`--debug` makes it debug). */
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** `--policy FILE` (or ANNEX_P2PHTTP_POLICY): per-repository access rules, absolute. */
  readonly policyFile?: string;
  /** `--auth-hook URL`: the forge's service asked for each access decision. */
  readonly authHook?: string;
  /** `--auth-hook-cache S`: how long a hook's answer is reused, in ms; 0 = not at all. */
  readonly authHookCacheMs: number;
  /** `--path-prefix /P`: the API is also served below this path (no trailing slash). */
  readonly pathPrefix?: string;
}

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

export const DEFAULT_PORT = 9417;
export const DEFAULT_DATA_PORT = 9418;
export const DEFAULT_HEALTH_PORT = 9419;
export const DEFAULT_QUEUE_WAIT_SECONDS = 30;
export const DEFAULT_LOCK_TTL_SECONDS = CONTENT_LOCK_MS / 1000;
export const DEFAULT_UPLOAD_IDLE_SECONDS = 60;
export const DEFAULT_JOB_TIMEOUT_SECONDS = 600;
export const DEFAULT_STALL_CHECK_SECONDS = 30;
/**
 * `--shards` unless given: BullMQ queues per worker group (two Redis connections each on every
 * worker). Eight keep a worker at about twenty connections, spread a busy repository's jobs over
 * an eighth of the others at most, and give each worker 8 x --worker-jobs jobs to take at once.
 */
export const DEFAULT_SHARDS = 8;
export const MAX_SHARDS = 256;
export const DEFAULT_JOBS = 8;
export const DEFAULT_CLUSTER_JOBS = 1;
export const DEFAULT_LOCKED_FILES = 100;
export const DEFAULT_AUTH_HOOK_CACHE_SECONDS = 10;
/** libuv's largest thread pool. */
export const MAX_CPUS = 1024;

/** `--worker-jobs` unless given: enough that 64 reads from the object files all start at once. */
export function defaultWorkerJobs(jobs: number): number {
  return Math.max(64, jobs * 8);
}

/** What commander hands back; numbers stay strings so every bad one can be reported at once. */
interface RawOptions {
  port?: string;
  bind?: string[];
  socket?: string;
  jobs?: string;
  cpus?: string;
  proxyconnections?: string;
  clusterjobs?: string;
  lockedfiles?: string;
  certfile?: string;
  privatekeyfile?: string;
  chainfile?: string[];
  authenv?: boolean;
  authenvHttp?: boolean;
  unauthReadonly?: boolean;
  unauthAppendonly?: boolean;
  unauthNolocking?: boolean;
  wideopen?: boolean;
  repo?: string[];
  directory?: string[];
  debug?: boolean;
  redis?: string;
  redisPrefix?: string;
  healthPort?: string;
  queueWait?: string;
  lockTtl?: string;
  uploadIdle?: string;
  trustForwardedFor?: boolean;
  jobTimeout?: string;
  dataPort?: string;
  advertiseUrl?: string;
  stallCheck?: string;
  workerJobs?: string;
  shards?: string;
  workerGroup?: string;
  opsListen?: string;
  logFormat?: string;
  logLevel?: string;
  policy?: string;
  authHook?: string;
  authHookCache?: string;
  pathPrefix?: string;
}

const collect = (value: string, previous: string[] | undefined): string[] => [
  ...(previous ?? []),
  value,
];

/** A single-valued option (`<ARG>` in `flags`) or a boolean flag. */
const valued = (flags: string, description: string): Option => new Option(flags, description);
const flag = valued;
const repeatable = (flags: string, description: string): Option =>
  new Option(flags, description).argParser(collect);

function buildCommand(): Command {
  const options = [
    valued('--port <N>', `TCP port to listen on (default ${DEFAULT_PORT}; 0 = any free port)`),
    repeatable('--bind <ADDRESS>', 'address to listen on; repeatable (default: all addresses)'),
    valued('--socket <PATH>', 'listen on this unix socket instead of a TCP port'),
    valued('-J, --jobs <N>', `concurrent jobs, a number or "cpus" (default ${DEFAULT_JOBS})`),
    valued('--cpus <N>', 'cores used at once: threads of the file I/O pool (default 4)'),
    valued(
      '--proxyconnections <N>',
      'idle P2P connections kept for reuse (default: the number of jobs)',
    ),
    valued(
      '--clusterjobs <N>',
      `concurrent node accesses per connection to a cluster (default ${DEFAULT_CLUSTER_JOBS})`,
    ),
    valued(
      '--lockedfiles <N>',
      `maximum number of content locks held at once (default ${DEFAULT_LOCKED_FILES})`,
    ),
    valued(
      '--lock-ttl <S>',
      `a content lock lasts S s after lockcontent or its keeplocked (${DEFAULT_LOCK_TTL_SECONDS})`,
    ),
    valued(
      '--upload-idle <S>',
      `cut an upload body that brings no bytes for S s (default ${DEFAULT_UPLOAD_IDLE_SECONDS})`,
    ),
    flag(
      '--trust-forwarded-for',
      "take an anonymous client's address from X-Forwarded-For (behind a reverse proxy)",
    ),
    valued('--certfile <FILE>', 'TLS certificate file for HTTPS'),
    valued('--privatekeyfile <FILE>', 'TLS private key file for HTTPS'),
    repeatable('--chainfile <FILE>', 'TLS chain file; repeatable'),
    flag('--authenv', 'authenticate users from the environment (HTTPS only)'),
    flag('--authenv-http', 'authenticate users from the environment (HTTP too)'),
    flag('--unauth-readonly', 'allow unauthenticated users to read the repositories'),
    flag(
      '--unauth-appendonly',
      'allow unauthenticated users to read and store content, not remove it',
    ),
    flag('--unauth-nolocking', 'forbid unauthenticated users to lock content'),
    flag('--wideopen', 'give unauthenticated users full read, store and remove access'),
    repeatable(
      '--repo <PATH>',
      'serve this git-annex repository; repeatable (default: the current one)',
    ),
    repeatable(
      '--directory <PATH>',
      'serve every git-annex repository below this directory; repeatable',
    ),
    flag('-d, --debug', 'show debug messages'),
    valued('--redis <URL>', 'cluster mode: the shared Redis or Sentinel set (default $REDIS_URL)'),
    valued('--redis-prefix <PREFIX>', `prefix of Redis keys (default ${DEFAULT_REDIS_PREFIX})`),
    valued(
      '--queue-wait <S>',
      `503 when no worker takes a job in S s (${DEFAULT_QUEUE_WAIT_SECONDS})`,
    ),
    valued(
      '--job-timeout <S>',
      `504 when a job has no answer in S s (${DEFAULT_JOB_TIMEOUT_SECONDS})`,
    ),
    valued('--data-port <N>', `proxy-worker: data, health port (${DEFAULT_DATA_PORT})`),
    valued('--advertise-url <URL>', 'proxy-worker: its data port as gateways reach it'),
    valued(
      '--stall-check <S>',
      `proxy-worker: stalled-job check (${DEFAULT_STALL_CHECK_SECONDS} s)`,
    ),
    valued(
      '--worker-jobs <N>',
      'proxy-worker: jobs taken at once per queue (default: 8 x jobs, at least 64)',
    ),
    valued('--shards <N>', `proxy-worker: job queues of its worker group (${DEFAULT_SHARDS})`),
    valued(
      '--worker-group <NAME>',
      'proxy-worker: workers that serve the same repositories (default: from --repo and --directory)',
    ),
    valued('--health-port <N>', `lock-service: health port (${DEFAULT_HEALTH_PORT})`),
    valued(
      '--ops-listen <HOST:PORT>',
      'serve /metrics and /stats on this listener only, not on the API port',
    ),
    valued('--policy <FILE>', 'per-repository access rules (YAML; default $ANNEX_P2PHTTP_POLICY)'),
    valued('--auth-hook <URL>', 'ask this HTTP service whether to allow each access'),
    valued(
      '--auth-hook-cache <S>',
      `reuse an auth hook answer for S s (default ${DEFAULT_AUTH_HOOK_CACHE_SECONDS}; 0 = never)`,
    ),
    valued('--path-prefix <PATH>', "also serve the API below this path (a reverse proxy's)"),
    valued('--log-format <FORMAT>', 'json or text (default: json unless stderr is a terminal)'),
    valued('--log-level <LEVEL>', 'debug, info, warn or error (default info; --debug: debug)'),
  ];
  const cmd = new Command('annex-p2phttp serve')
    .description('Serve the git-annex HTTP P2P API for one or more git-annex repositories.')
    .helpOption('-h, --help', 'show this help text')
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({
      writeOut: () => {},
      writeErr: () => {},
      outputError: () => {},
      getOutHelpWidth: () => 100,
      getErrHelpWidth: () => 100,
    });
  for (const option of options) {
    cmd.addOption(option);
  }
  return cmd;
}

/** The help text of `annex-p2phttp serve`: every option with a one-line description. */
export function serveHelp(): string {
  return buildCommand().helpInformation();
}

/**
 * A non-negative integer given as decimal digits (`fallback` when the option was not given), or
 * an error text naming the option. `min` raises the lower bound, `max` caps it.
 */
function parseCount(
  flag: string,
  text: string | undefined,
  fallback: number | undefined,
  problems: string[],
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  if (text === undefined) {
    return fallback;
  }
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    const range =
      max === Number.MAX_SAFE_INTEGER
        ? min === 0
          ? 'a non-negative integer'
          : `an integer >= ${min}`
        : `an integer from ${min} to ${max}`;
    problems.push(`${flag} ${JSON.stringify(text)}: must be ${range}`);
    return undefined;
  }
  return value;
}

/**
 * `HOST:PORT`, `[IPV6]:PORT` or `:PORT` (all addresses) → a listen address, or undefined with the
 * problem recorded.
 */
export function parseListenAddress(
  flag: string,
  text: string,
  problems: string[],
): ListenAddress | undefined {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]*)):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    problems.push(`${flag} ${JSON.stringify(text)}: must be HOST:PORT, [IPV6]:PORT or :PORT`);
    return undefined;
  }
  const host = match[1] ?? match[2] ?? '';
  return { host: host === '' ? '0.0.0.0' : host, port };
}

/**
 * Parses the arguments that follow `serve`. Relative paths are resolved against `cwd`; REDIS_URL
 * and ANNEX_P2PHTTP_REDIS_PREFIX come from `env` when the options are not given. Every problem
 * found is reported in one ConfigError; `--help` throws HelpRequested (a ConfigError) with the
 * help text. The options come back deeply frozen.
 */
export function parseServeArgs(
  argv: string[],
  cwd: string,
  env: NodeJS.ProcessEnv = {},
): ServeOptions {
  const cmd = buildCommand();
  try {
    cmd.parse(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.help') {
        throw new HelpRequested(cmd.helpInformation());
      }
      throw new ConfigError(err.message.replace(/^error: /, ''));
    }
    throw err;
  }
  const raw = cmd.opts<RawOptions>();
  const bind = raw.bind ?? [];
  const chainFiles = raw.chainfile ?? [];
  const repoArgs = raw.repo ?? [];
  const directoryArgs = raw.directory ?? [];
  const given = (name: string): boolean => cmd.getOptionValueSource(name) === 'cli';
  const problems: string[] = [];

  const port = parseCount('--port', raw.port, DEFAULT_PORT, problems, 0, 65535);
  const jobs =
    raw.jobs === 'cpus'
      ? availableParallelism()
      : parseCount('--jobs', raw.jobs, DEFAULT_JOBS, problems, 1);
  const cpus = parseCount('--cpus', raw.cpus, undefined, problems, 1, MAX_CPUS);
  const proxyConnections = parseCount('--proxyconnections', raw.proxyconnections, jobs, problems);
  const clusterJobs = parseCount('--clusterjobs', raw.clusterjobs, DEFAULT_CLUSTER_JOBS, problems);
  const lockedFiles = parseCount('--lockedfiles', raw.lockedfiles, DEFAULT_LOCKED_FILES, problems);

  const healthPort = parseCount(
    '--health-port',
    raw.healthPort,
    DEFAULT_HEALTH_PORT,
    problems,
    0,
    65535,
  );

  for (const [flag, values] of [
    ['--bind', bind],
    ['--chainfile', chainFiles],
    ['--repo', repoArgs],
    ['--directory', directoryArgs],
  ] as const) {
    if (values.some((v) => v.trim() === '')) {
      problems.push(`${flag}: must not be empty`);
    }
  }
  for (const [flag, value] of [
    ['--socket', raw.socket],
    ['--certfile', raw.certfile],
    ['--privatekeyfile', raw.privatekeyfile],
  ] as const) {
    if (value !== undefined && value.trim() === '') {
      problems.push(`${flag}: must not be empty`);
    }
  }

  if (raw.socket !== undefined) {
    const clashing = ['port', 'bind'].filter(given).map((n) => `--${n}`);
    if (clashing.length > 0) {
      problems.push(`--socket cannot be combined with ${clashing.join(' or ')}`);
    }
  }
  if ((raw.certfile === undefined) !== (raw.privatekeyfile === undefined)) {
    problems.push(
      raw.certfile === undefined
        ? '--privatekeyfile needs --certfile (HTTPS needs both)'
        : '--certfile needs --privatekeyfile (HTTPS needs both)',
    );
  }
  if (chainFiles.length > 0 && raw.certfile === undefined) {
    problems.push('--chainfile needs --certfile and --privatekeyfile');
  }

  const lockTtl = parseCount('--lock-ttl', raw.lockTtl, DEFAULT_LOCK_TTL_SECONDS, problems, 1);
  const uploadIdle = parseCount(
    '--upload-idle',
    raw.uploadIdle,
    DEFAULT_UPLOAD_IDLE_SECONDS,
    problems,
    1,
  );
  const queueWait = parseCount(
    '--queue-wait',
    raw.queueWait,
    DEFAULT_QUEUE_WAIT_SECONDS,
    problems,
    1,
  );
  const jobTimeout = parseCount(
    '--job-timeout',
    raw.jobTimeout,
    DEFAULT_JOB_TIMEOUT_SECONDS,
    problems,
    1,
  );
  const stallCheck = parseCount(
    '--stall-check',
    raw.stallCheck,
    DEFAULT_STALL_CHECK_SECONDS,
    problems,
    1,
  );
  const workerJobs = parseCount(
    '--worker-jobs',
    raw.workerJobs,
    jobs === undefined ? undefined : defaultWorkerJobs(jobs),
    problems,
    1,
  );
  const shards = parseCount('--shards', raw.shards, DEFAULT_SHARDS, problems, 1, MAX_SHARDS);
  const workerGroup = raw.workerGroup ?? (env.ANNEX_P2PHTTP_WORKER_GROUP || undefined);
  if (workerGroup !== undefined && !/^[A-Za-z0-9_-]{1,64}$/.test(workerGroup)) {
    problems.push(
      `--worker-group ${JSON.stringify(workerGroup)}: must be 1 to 64 of A-Z a-z 0-9 _ -`,
    );
  }
  const dataPort = parseCount('--data-port', raw.dataPort, DEFAULT_DATA_PORT, problems, 0, 65535);
  const redis = raw.redis ?? (env.REDIS_URL || undefined);
  if (redis !== undefined) {
    try {
      parseRedisUrl(redis);
    } catch (error) {
      if (!(error instanceof RedisUrlError)) {
        throw error;
      }
      // The URL may carry passwords: it is quoted without them.
      problems.push(`--redis ${JSON.stringify(redactRedisUrl(redis))}: ${error.message}`);
    }
  }
  const redisPrefix = raw.redisPrefix ?? env.ANNEX_P2PHTTP_REDIS_PREFIX ?? DEFAULT_REDIS_PREFIX;
  if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(redisPrefix)) {
    problems.push(
      `--redis-prefix ${JSON.stringify(redisPrefix)}: must be 1 to 64 of A-Z a-z 0-9 _ . : -`,
    );
  }
  const opsListen =
    raw.opsListen === undefined
      ? undefined
      : parseListenAddress('--ops-listen', raw.opsListen, problems);
  if (raw.logFormat !== undefined && !['json', 'text'].includes(raw.logFormat)) {
    problems.push(`--log-format ${JSON.stringify(raw.logFormat)}: must be json or text`);
  }
  const logLevel = raw.logLevel ?? (raw.debug === true ? 'debug' : 'info');
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel)) {
    problems.push(`--log-level ${JSON.stringify(logLevel)}: must be debug, info, warn or error`);
  }
  if (raw.advertiseUrl !== undefined && !/^https?:\/\/[^/]+\/?$/.test(raw.advertiseUrl)) {
    problems.push(`--advertise-url ${JSON.stringify(raw.advertiseUrl)}: must be http://HOST:PORT`);
  }

  const policyFile = raw.policy ?? (env.ANNEX_P2PHTTP_POLICY || undefined);
  if (policyFile !== undefined) {
    if (policyFile.trim() === '') {
      problems.push('--policy: must not be empty');
    }
    const clashing = ['unauthReadonly', 'unauthAppendonly', 'unauthNolocking', 'wideopen']
      .filter((name) => raw[name as keyof RawOptions] === true)
      .map((name) => `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
    if (clashing.length > 0) {
      problems.push(
        `--policy cannot be combined with ${clashing.join(', ')}: the policy file says ` +
          'per repository what anonymous users may do ("anonymous:" and "nolocking:")',
      );
    }
  }
  if (raw.authHook !== undefined && !/^https?:\/\/[^/\s]+(\/\S*)?$/.test(raw.authHook)) {
    problems.push(
      `--auth-hook ${JSON.stringify(raw.authHook)}: must be an http:// or https:// URL`,
    );
  }
  const authHookCache = parseCount(
    '--auth-hook-cache',
    raw.authHookCache,
    DEFAULT_AUTH_HOOK_CACHE_SECONDS,
    problems,
  );
  const pathPrefix = raw.pathPrefix?.replace(/\/+$/, '');
  if (
    raw.pathPrefix !== undefined &&
    pathPrefix !== '' &&
    (pathPrefix === undefined ||
      !/^(\/[A-Za-z0-9._~!$&'()*+,;=:@-]+)+$/.test(pathPrefix) ||
      pathPrefix.split('/').some((s) => s === '.' || s === '..'))
  ) {
    problems.push(
      `--path-prefix ${JSON.stringify(raw.pathPrefix)}: must be a path such as /annex ` +
        '(segments of URL characters, no "." or "..")',
    );
  }

  if (
    problems.length > 0 ||
    lockTtl === undefined ||
    uploadIdle === undefined ||
    authHookCache === undefined ||
    queueWait === undefined ||
    jobTimeout === undefined ||
    stallCheck === undefined ||
    workerJobs === undefined ||
    shards === undefined ||
    dataPort === undefined ||
    port === undefined ||
    jobs === undefined ||
    proxyConnections === undefined ||
    clusterJobs === undefined ||
    lockedFiles === undefined ||
    healthPort === undefined
  ) {
    throw new ConfigError(problems.join('\n'));
  }

  const abs = (p: string): string => resolve(cwd, p);
  const repos = repoArgs.map(abs);
  const directories = directoryArgs.map(abs);
  const options: { -readonly [K in keyof ServeOptions]: ServeOptions[K] } = {
    port,
    bind,
    jobs,
    proxyConnections,
    clusterJobs,
    lockedFiles,
    lockTtlMs: lockTtl * 1000,
    uploadIdleMs: uploadIdle * 1000,
    trustForwardedFor: raw.trustForwardedFor === true,
    chainFiles: chainFiles.map(abs),
    authEnv: raw.authenv === true,
    authEnvHttp: raw.authenvHttp === true,
    unauthReadonly: raw.unauthReadonly === true,
    unauthAppendonly: raw.unauthAppendonly === true,
    unauthNolocking: raw.unauthNolocking === true,
    wideopen: raw.wideopen === true,
    repos: repos.length === 0 && directories.length === 0 ? [resolve(cwd)] : repos,
    directories,
    debug: raw.debug === true,
    redisPrefix,
    healthPort,
    queueWaitMs: queueWait * 1000,
    jobTimeoutMs: jobTimeout * 1000,
    dataPort,
    stallCheckMs: stallCheck * 1000,
    workerJobs,
    shards,
    logLevel: logLevel as ServeOptions['logLevel'],
    authHookCacheMs: authHookCache * 1000,
  };
  if (workerGroup !== undefined) {
    options.workerGroup = workerGroup;
  }
  if (policyFile !== undefined) {
    options.policyFile = abs(policyFile);
  }
  if (raw.authHook !== undefined) {
    options.authHook = raw.authHook;
  }
  if (pathPrefix !== undefined && pathPrefix !== '') {
    options.pathPrefix = pathPrefix;
  }
  if (opsListen !== undefined) {
    options.opsListen = opsListen;
  }
  if (raw.logFormat !== undefined) {
    options.logFormat = raw.logFormat as 'json' | 'text';
  }
  if (cpus !== undefined) {
    options.cpus = cpus;
  }
  if (redis !== undefined) {
    options.redis = redis;
  }
  if (raw.advertiseUrl !== undefined) {
    options.advertiseUrl = raw.advertiseUrl.replace(/\/$/, '');
  }
  if (raw.socket !== undefined) {
    options.socket = abs(raw.socket);
  }
  if (raw.certfile !== undefined) {
    options.certFile = abs(raw.certfile);
  }
  if (raw.privatekeyfile !== undefined) {
    options.privateKeyFile = abs(raw.privatekeyfile);
  }
  return deepFreeze(options);
}
