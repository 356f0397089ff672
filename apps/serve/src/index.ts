export * from './cli';
export * from './cpus';
