/**
 * The slice of the options each role uses. The command line is read once (parseServeArgs, frozen);
 * each role is then handed only what it uses, frozen too: the embedded server, the cluster
 * gateway, the proxy worker, the lock-service. A role that needs Redis and has none is a
 * ConfigError here, before anything starts.
 */
import { type AuthPolicy } from './auth';
import { ConfigError } from './errors';
import { deepFreeze } from './frozen';
import { type ServeOptions } from './options';

/** The log every role writes. */
export interface LogConfig {
  readonly logFormat?: 'json' | 'text';
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error';
}

/** What a role serves: --repo and --directory, absolute. */
export interface RepositoriesConfig {
  readonly repos: readonly string[];
  readonly directories: readonly string[];
}

/** The git-annex-shell sessions of a role that runs operations. */
export interface SessionsConfig {
  readonly jobs: number;
  readonly proxyConnections: number;
  readonly clusterJobs: number;
  readonly uploadIdleMs: number;
  readonly debug: boolean;
}

/** The HTTP API, its access rules and its retention locks (embedded server and gateway alike). */
export interface ApiConfig extends Readonly<AuthPolicy>, LogConfig {
  readonly port: number;
  readonly bind: readonly string[];
  readonly socket?: string;
  readonly certFile?: string;
  readonly privateKeyFile?: string;
  readonly chainFiles: readonly string[];
  readonly trustForwardedFor: boolean;
  readonly policyFile?: string;
  readonly authHook?: string;
  readonly authHookCacheMs: number;
  readonly pathPrefix?: string;
  readonly opsListen?: ServeOptions['opsListen'];
  readonly lockedFiles: number;
  readonly lockTtlMs: number;
  readonly uploadIdleMs: number;
}

/** Where cluster mode's shared state is. */
export interface RedisConfig {
  readonly redis: string;
  readonly redisPrefix: string;
}

/** `serve` without Redis: the API over its own sessions and repositories. */
export interface EmbeddedConfig extends ApiConfig, SessionsConfig, RepositoriesConfig {}

/** `gateway` (or `serve --redis`): the API over the job queues. */
export interface GatewayConfig extends ApiConfig, RedisConfig {
  readonly queueWaitMs: number;
  readonly jobTimeoutMs: number;
}

/** `proxy-worker`. */
export interface WorkerConfig extends SessionsConfig, RepositoriesConfig, RedisConfig, LogConfig {
  /** The first is the data port's address (all by default). */
  readonly bind: readonly string[];
  readonly dataPort: number;
  readonly advertiseUrl?: string;
  readonly queueWaitMs: number;
  readonly workerJobs: number;
  readonly stallCheckMs: number;
  readonly shards: number;
  readonly workerGroup?: string;
}

/** `lock-service`. */
export interface LockServiceConfig extends RepositoriesConfig, RedisConfig, LogConfig {
  readonly healthPort: number;
  /** The health port's address (the first --bind; all by default). */
  readonly healthHost?: string;
  readonly clusterJobs: number;
  readonly debug: boolean;
}

/** `options` with only `keys`, those that are set, frozen. */
function pick<T extends object, K extends keyof T>(options: T, keys: readonly K[]): Pick<T, K> {
  const slice = {} as Pick<T, K>;
  for (const key of keys) {
    if (options[key] !== undefined) {
      slice[key] = options[key];
    }
  }
  return deepFreeze(slice) as Pick<T, K>;
}

const LOG = ['logFormat', 'logLevel'] as const;
const REPOSITORIES = ['repos', 'directories'] as const;
const SESSIONS = ['jobs', 'proxyConnections', 'clusterJobs', 'uploadIdleMs', 'debug'] as const;
const API = [
  ...LOG,
  'authEnv',
  'authEnvHttp',
  'unauthReadonly',
  'unauthAppendonly',
  'unauthNolocking',
  'wideopen',
  'port',
  'bind',
  'socket',
  'certFile',
  'privateKeyFile',
  'chainFiles',
  'trustForwardedFor',
  'policyFile',
  'authHook',
  'authHookCacheMs',
  'pathPrefix',
  'opsListen',
  'lockedFiles',
  'lockTtlMs',
  'uploadIdleMs',
] as const;

function redisOf(options: ServeOptions, role: string): RedisConfig {
  if (options.redis === undefined) {
    throw new ConfigError(`${role} needs --redis URL (or REDIS_URL)`);
  }
  return { redis: options.redis, redisPrefix: options.redisPrefix };
}

export function embeddedConfig(options: ServeOptions): EmbeddedConfig {
  return pick(options, [...API, ...SESSIONS, ...REPOSITORIES]);
}

export function gatewayConfig(options: ServeOptions, role = 'gateway'): GatewayConfig {
  return deepFreeze({
    ...pick(options, [...API, 'queueWaitMs', 'jobTimeoutMs']),
    ...redisOf(options, role),
  });
}

export function workerConfig(options: ServeOptions): WorkerConfig {
  return deepFreeze({
    ...pick(options, [
      ...LOG,
      ...SESSIONS,
      ...REPOSITORIES,
      'bind',
      'dataPort',
      'advertiseUrl',
      'queueWaitMs',
      'workerJobs',
      'stallCheckMs',
      'shards',
      'workerGroup',
    ]),
    ...redisOf(options, 'proxy-worker'),
  });
}

export function lockServiceConfig(options: ServeOptions): LockServiceConfig {
  const healthHost = options.bind[0];
  return deepFreeze({
    ...pick(options, [...LOG, ...REPOSITORIES, 'healthPort', 'clusterJobs', 'debug']),
    ...redisOf(options, 'lock-service'),
    ...(healthHost === undefined ? {} : { healthHost }),
  });
}
