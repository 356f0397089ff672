export * from './health-server';
export * from './lock-service';
