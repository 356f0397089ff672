export * from './errors';
export * from './options';
export * from './users';
export * from './auth';
export * from './policy';
export * from './frozen';
export * from './roles';
