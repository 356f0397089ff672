/**
 * Redis connections of cluster mode: they come from the one factory, @annex-p2phttp/redis
 * (one Redis or a Sentinel master set; commands fail fast, blocking connections wait).
 */
export {
  blockingOptions,
  commandConnection,
  connected,
  quietLog,
  subscription,
} from '@annex-p2phttp/redis';
