export * from './metrics';
export * from './log';
export * from './health';
