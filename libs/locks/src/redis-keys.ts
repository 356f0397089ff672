/** The lock keys are part of the one Redis key scheme (libs/redis/src/keys.ts lists them). */
export { DEFAULT_REDIS_PREFIX, LOCK_REQUEST_QUEUE, LockKeys } from '@annex-p2phttp/redis';
