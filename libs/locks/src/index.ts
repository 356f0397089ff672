export * from './lock-store';
export * from './memory-lock-store';
export * from './retention-locks';
