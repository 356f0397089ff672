/**
 * The proxied remotes and the cluster of the embedded suite (proxies.test.ts), run unchanged
 * against cluster mode: a private Redis, a proxy worker, a lock-service and a gateway, each its
 * own process, started together by the cluster launcher. The suite reads the server kind when it
 * starts its server, after this module set it.
 */
import './proxies.test';

process.env.E2E_SERVER = 'cluster';
