export * from './server';
export * from './cluster-gateway';
export * from './cli';
