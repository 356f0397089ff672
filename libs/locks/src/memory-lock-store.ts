/** The in-process LockStore of the embedded server. */
import { type LockRecord, type LockStore } from './lock-store';

export class MemoryLockStore implements LockStore {
  private readonly records = new Map<string, LockRecord>();
  /** Number of live locks per (repository, key). */
  private readonly covered = new Map<string, number>();

  create(record: LockRecord, limit: number): Promise<boolean> {
    if (this.records.size >= limit || this.records.has(record.lockid)) {
      return Promise.resolve(false);
    }
    this.records.set(record.lockid, record);
    const cover = coverKey(record.repository, record.key);
    this.covered.set(cover, (this.covered.get(cover) ?? 0) + 1);
    return Promise.resolve(true);
  }

  get(lockid: string): Promise<LockRecord | undefined> {
    return Promise.resolve(this.records.get(lockid));
  }

  extend(lockid: string, expiresAt: number): Promise<boolean> {
    const record = this.records.get(lockid);
    if (!record) {
      return Promise.resolve(false);
    }
    this.records.set(lockid, { ...record, expiresAt });
    return Promise.resolve(true);
  }

  delete(lockid: string): Promise<LockRecord | undefined> {
    const record = this.records.get(lockid);
    if (record) {
      this.records.delete(lockid);
      const cover = coverKey(record.repository, record.key);
      const left = (this.covered.get(cover) ?? 1) - 1;
      if (left > 0) {
        this.covered.set(cover, left);
      } else {
        this.covered.delete(cover);
      }
    }
    return Promise.resolve(record);
  }

  isLocked(repository: string, key: string): Promise<boolean> {
    return Promise.resolve(this.covered.has(coverKey(repository, key)));
  }

  count(): Promise<number> {
    return Promise.resolve(this.records.size);
  }

  expired(now: number): Promise<LockRecord[]> {
    return Promise.resolve([...this.records.values()].filter((r) => r.expiresAt <= now));
  }
}

function coverKey(repository: string, key: string): string {
  return `${repository}\n${key}`;
}
