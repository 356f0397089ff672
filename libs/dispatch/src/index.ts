export * from './dispatcher';
export * from './keyed-mutex';
export * from './shutdown-steps';
export * from './in-process-dispatcher';
export * from './cluster';
