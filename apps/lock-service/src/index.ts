export * from './lock-holder';
export * from './health-server';
export * from './lock-service';
