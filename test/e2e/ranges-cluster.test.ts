/**
 * The byte-range suite (ranges.test.ts) run unchanged against cluster mode: a private Redis, a
 * proxy worker, a lock-service and a gateway, started together by the cluster launcher.
 */
import './ranges.test';

process.env.E2E_SERVER = 'cluster';
