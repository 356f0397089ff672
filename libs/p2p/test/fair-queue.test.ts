import { describe, expect, it } from 'vitest';
import { FairQueue } from '@annex-p2phttp/p2p';

describe('FairQueue', () => {
  it('is FIFO for one client', () => {
    const queue = new FairQueue<number>();
    for (const n of [1, 2, 3]) {
      queue.push('a', n);
    }
    expect([0, 0, 0].map(() => queue.shift(() => 0)?.item)).toEqual([1, 2, 3]);
    expect(queue.shift(() => 0)).toBeUndefined();
    expect(queue.size).toBe(0);
  });

  it('serves the waiting client holding the fewest slots first, the earliest among equals', () => {
    const queue = new FairQueue<string>();
    queue.push('greedy', 'g1');
    queue.push('greedy', 'g2');
    queue.push('other', 'o1');
    queue.push('third', 't1');
    const used = new Map([
      ['greedy', 4],
      ['other', 1],
      ['third', 1],
    ]);
    const take = () => {
      const next = queue.shift((client) => used.get(client) ?? 0);
      if (next) {
        used.set(next.client, (used.get(next.client) ?? 0) + 1);
      }
      return next?.item;
    };
    // other and third hold one each: the earlier of them first, then the other, then greedy.
    expect([take(), take(), take(), take()]).toEqual(['o1', 't1', 'g1', 'g2']);
  });

  it('one client with many waiting requests cannot take more than its share while others wait', () => {
    // 4 slots; a client with 10 requests and three clients with 3 each, every slot freed in turn.
    const slots = 4;
    const queue = new FairQueue<string>();
    const used = new Map<string, number>();
    for (let i = 0; i < 10; i += 1) {
      queue.push('greedy', `greedy-${i}`);
    }
    for (const client of ['a', 'b', 'c']) {
      for (let i = 0; i < 3; i += 1) {
        queue.push(client, `${client}-${i}`);
      }
    }
    const running: string[] = [];
    const waiting = new Map([
      ['greedy', 10],
      ['a', 3],
      ['b', 3],
      ['c', 3],
    ]);
    let maxGreedyWhileOthersWait = 0;
    const grant = () => {
      const next = queue.shift((client) => used.get(client) ?? 0)!;
      used.set(next.client, (used.get(next.client) ?? 0) + 1);
      waiting.set(next.client, (waiting.get(next.client) ?? 0) - 1);
      running.push(next.client);
      if (['a', 'b', 'c'].some((client) => (waiting.get(client) ?? 0) > 0)) {
        maxGreedyWhileOthersWait = Math.max(maxGreedyWhileOthersWait, used.get('greedy') ?? 0);
      }
    };
    for (let i = 0; i < slots; i += 1) {
      grant();
    }
    while (queue.size > 0) {
      const done = running.shift()!;
      used.set(done, (used.get(done) ?? 0) - 1);
      grant();
    }
    expect(maxGreedyWhileOthersWait).toBeLessThanOrEqual(1);
  });

  it('removes a waiter that gave up and drains in arrival order', () => {
    const queue = new FairQueue<string>();
    queue.push('a', 'a1');
    queue.push('b', 'b1');
    queue.push('a', 'a2');
    expect(queue.remove('a', 'a1')).toBe(true);
    expect(queue.remove('a', 'a1')).toBe(false);
    expect(queue.size).toBe(2);
    expect(queue.drain()).toEqual(['b1', 'a2']);
    expect(queue.size).toBe(0);
  });
});
