export * from './cli';
export * from './cpus';
export * from './embedded';
export * from './cluster-gateway';
