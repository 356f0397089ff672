/**
 * The tests of non-utf8.test.ts, run unchanged against cluster mode (a private Redis, a proxy
 * worker, a lock-service and a gateway, started together by the cluster launcher): there the
 * values also cross Redis and the data plane.
 */
import './non-utf8.test';

process.env.E2E_SERVER = 'cluster';
