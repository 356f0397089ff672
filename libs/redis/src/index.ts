export * from './url';
export * from './connections';
export * from './primary';
export * from './keys';
