export * from './dispatcher';
export * from './local-dispatcher';
export * from './cluster';
