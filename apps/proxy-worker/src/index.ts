export * from './proxy-worker';
export * from './job-processor';
