/**
 * Idle connections of the pool, grouped by pool key, with every operation in O(1):
 *
 * - `take(key)` hands out the most recently used idle value of that key (warm processes first);
 * - `evictOldest()` removes the least recently used idle value across all keys;
 * - `delete(value)` removes a value that died while idle.
 *
 * Each entry sits in two doubly linked lists: one across the whole set in put-back order, and one
 * per key. Nothing is ever re-sorted or rebuilt, so a put-back costs the same with 10 or 10,000
 * idle values.
 */
interface Entry<K, V> {
  readonly key: K;
  readonly value: V;
  readonly since: number;
  allPrev: Entry<K, V> | null;
  allNext: Entry<K, V> | null;
  keyPrev: Entry<K, V> | null;
  keyNext: Entry<K, V> | null;
}

interface KeyList<K, V> {
  head: Entry<K, V> | null; // least recently put back
  tail: Entry<K, V> | null; // most recently put back
  size: number;
}

export class IdleSet<K, V> {
  private oldest: Entry<K, V> | null = null;
  private newest: Entry<K, V> | null = null;
  private readonly byKey = new Map<K, KeyList<K, V>>();
  private readonly byValue = new Map<V, Entry<K, V>>();

  get size(): number {
    return this.byValue.size;
  }

  /** Number of keys with at least one idle value. */
  get keyCount(): number {
    return this.byKey.size;
  }

  has(value: V): boolean {
    return this.byValue.has(value);
  }

  /** Adds a value as the most recently used one. */
  put(key: K, value: V, now: number = Date.now()): void {
    if (this.byValue.has(value)) {
      throw new Error('value is already idle');
    }
    const entry: Entry<K, V> = {
      key,
      value,
      since: now,
      allPrev: this.newest,
      allNext: null,
      keyPrev: null,
      keyNext: null,
    };
    if (this.newest) {
      this.newest.allNext = entry;
    } else {
      this.oldest = entry;
    }
    this.newest = entry;
    let list = this.byKey.get(key);
    if (!list) {
      list = { head: null, tail: null, size: 0 };
      this.byKey.set(key, list);
    }
    entry.keyPrev = list.tail;
    if (list.tail) {
      list.tail.keyNext = entry;
    } else {
      list.head = entry;
    }
    list.tail = entry;
    list.size += 1;
    this.byValue.set(value, entry);
  }

  /** Removes and returns the most recently used idle value of `key`. */
  take(key: K): V | undefined {
    const entry = this.byKey.get(key)?.tail;
    if (!entry) {
      return undefined;
    }
    this.unlink(entry);
    return entry.value;
  }

  /** Removes and returns the least recently used idle value of all keys. */
  evictOldest(): V | undefined {
    const entry = this.oldest;
    if (!entry) {
      return undefined;
    }
    this.unlink(entry);
    return entry.value;
  }

  /** When the least recently used value was put back, if any. */
  oldestSince(): number | undefined {
    return this.oldest?.since;
  }

  /** Removes a value wherever it is; returns whether it was idle. */
  delete(value: V): boolean {
    const entry = this.byValue.get(value);
    if (!entry) {
      return false;
    }
    this.unlink(entry);
    return true;
  }

  /** Removes and returns every value. */
  drain(): V[] {
    const values = [...this.byValue.keys()];
    this.byValue.clear();
    this.byKey.clear();
    this.oldest = null;
    this.newest = null;
    return values;
  }

  private unlink(entry: Entry<K, V>): void {
    if (entry.allPrev) {
      entry.allPrev.allNext = entry.allNext;
    } else {
      this.oldest = entry.allNext;
    }
    if (entry.allNext) {
      entry.allNext.allPrev = entry.allPrev;
    } else {
      this.newest = entry.allPrev;
    }
    const list = this.byKey.get(entry.key);
    if (list) {
      if (entry.keyPrev) {
        entry.keyPrev.keyNext = entry.keyNext;
      } else {
        list.head = entry.keyNext;
      }
      if (entry.keyNext) {
        entry.keyNext.keyPrev = entry.keyPrev;
      } else {
        list.tail = entry.keyPrev;
      }
      list.size -= 1;
      if (list.size === 0) {
        this.byKey.delete(entry.key);
      }
    }
    entry.allPrev = entry.allNext = entry.keyPrev = entry.keyNext = null;
    this.byValue.delete(entry.value);
  }
}
