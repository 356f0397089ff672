import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IdleSet } from '@annex-p2phttp/p2p';

describe('IdleSet', () => {
  it('takes the most recently used value of a key and evicts the least recently used overall', () => {
    const set = new IdleSet<string, string>();
    set.put('a', 'a1', 1);
    set.put('b', 'b1', 2);
    set.put('a', 'a2', 3);
    set.put('c', 'c1', 4);
    expect(set.size).toBe(4);
    expect(set.keyCount).toBe(3);
    expect(set.take('a')).toBe('a2');
    expect(set.evictOldest()).toBe('a1');
    expect(set.take('a')).toBeUndefined();
    expect(set.oldestSince()).toBe(2);
    expect(set.evictOldest()).toBe('b1');
    expect(set.delete('c1')).toBe(true);
    expect(set.delete('c1')).toBe(false);
    expect(set.size).toBe(0);
    expect(set.keyCount).toBe(0);
    expect(set.evictOldest()).toBeUndefined();
  });

  it('refuses a value that is already idle', () => {
    const set = new IdleSet<string, object>();
    const value = {};
    set.put('k', value);
    expect(() => set.put('k', value)).toThrow(/already idle/);
  });

  it('behaves like a reference model under random operations', () => {
    type Op =
      | { op: 'put'; key: number }
      | { op: 'take'; key: number }
      | { op: 'evict' }
      | { op: 'delete'; index: number };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ op: fc.constant('put' as const), key: fc.integer({ min: 0, max: 4 }) }),
      fc.record({ op: fc.constant('take' as const), key: fc.integer({ min: 0, max: 4 }) }),
      fc.record({ op: fc.constant('evict' as const) }),
      fc.record({ op: fc.constant('delete' as const), index: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 200 }), (ops) => {
        const set = new IdleSet<number, number>();
        // Reference: a list in put-back order of [key, value].
        let model: Array<[number, number]> = [];
        let next = 0;
        for (const step of ops) {
          switch (step.op) {
            case 'put': {
              const value = next++;
              set.put(step.key, value);
              model.push([step.key, value]);
              break;
            }
            case 'take': {
              const index = model.map(([k]) => k).lastIndexOf(step.key);
              const expected = index >= 0 ? model[index]?.[1] : undefined;
              if (index >= 0) {
                model.splice(index, 1);
              }
              expect(set.take(step.key)).toBe(expected);
              break;
            }
            case 'evict': {
              const expected = model.shift()?.[1];
              expect(set.evictOldest()).toBe(expected);
              break;
            }
            case 'delete': {
              const victim = model.length > 0 ? model[step.index % model.length] : undefined;
              if (victim) {
                model = model.filter((entry) => entry !== victim);
                expect(set.delete(victim[1])).toBe(true);
              }
              break;
            }
          }
          expect(set.size).toBe(model.length);
          expect(set.keyCount).toBe(new Set(model.map(([k]) => k)).size);
        }
      }),
    );
  });
});
