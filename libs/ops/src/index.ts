export * from './operations';
export * from './object-files';
export * from './verified-put';
export * from './boot-clock';
export * from './journal-committer';
export * from './upload-staging';
