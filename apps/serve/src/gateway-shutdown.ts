/**
 * The shutdown bounds of every role (libs/ops shutdown-steps.ts), as the HTTP API of either mode
 * keeps them.
 */
import { type GatewayShutdown } from '@annex-p2phttp/gateway';
import { logFunction, type Logger } from '@annex-p2phttp/metrics';
import { boundedStep, SHUTDOWN_CLEANUP_MS, SHUTDOWN_GRACE_MS } from '@annex-p2phttp/ops';

export function gatewayShutdown(log: Logger): GatewayShutdown {
  return {
    graceMs: SHUTDOWN_GRACE_MS,
    cleanupMs: SHUTDOWN_CLEANUP_MS,
    bounded: (what, work, withinMs, cut) =>
      boundedStep(what, work, { withinMs, cut, log: logFunction(log, 'warn') }),
  };
}
