export * from './errors';
export * from './options';
export * from './users';
export * from './auth';
export * from './repositories';
export * from './writable';
export * from './policy';
