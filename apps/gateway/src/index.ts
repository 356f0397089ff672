export * from './server';
export * from './cluster-gateway';
export * from './unavailable-locks';
export * from './cli';
