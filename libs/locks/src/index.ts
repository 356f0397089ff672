export * from './lock-store';
export * from './memory-lock-store';
export * from './retention-locks';
export * from './redis-keys';
export * from './redis-connection';
export * from './redis-lock-store';
export * from './lock-requests';
export * from './cluster-retention-locks';
