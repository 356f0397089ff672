export * from './keys';
export * from './errors';
export * from './jobs';
export * from './redis';
export * from './directory';
export * from './stream-table';
export * from './stream-client';
export * from './bullmq-dispatcher';
