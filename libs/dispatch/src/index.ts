export * from './dispatcher';
export * from './local-dispatcher';
export * from './cluster';
// The retention lock a Dispatcher returns is the executor's (libs/ops).
export type { HeldLock } from '@annex-p2phttp/ops';
