import { MemoryLockStore } from '@annex-p2phttp/locks';
import { lockStoreContract } from './lock-store.contract';

lockStoreContract('MemoryLockStore', () => Promise.resolve(new MemoryLockStore()));
