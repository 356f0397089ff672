/**
 * The real-client flows of the embedded suite (client-flows.test.ts), run unchanged against
 * cluster mode: a private Redis, a proxy worker, a lock-service and a gateway, each its own
 * process, started together by the cluster launcher. The flows read the server kind when they
 * start their server, after this module set it.
 */
import './client-flows.test';

process.env.E2E_SERVER = 'cluster';
