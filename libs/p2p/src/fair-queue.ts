/**
 * Who gets the next free session slot when several requests wait: the waiting request of the
 * client that holds the fewest slots now, the earliest among equals. One client with many
 * requests then gets no more than its share while others wait: every slot that frees goes to a
 * client with fewer, until the shares are even; with one client waiting it is plain FIFO.
 */
export class FairQueue<T> {
  /** Each client's waiting items in arrival order; a client is listed only while it waits. */
  private readonly queues = new Map<string, Array<{ readonly item: T; readonly seq: number }>>();
  private seq = 0;
  private count = 0;

  get size(): number {
    return this.count;
  }

  push(client: string, item: T): void {
    let queue = this.queues.get(client);
    if (queue === undefined) {
      queue = [];
      this.queues.set(client, queue);
    }
    queue.push({ item, seq: this.seq++ });
    this.count += 1;
  }

  /** Takes `item` out (a request that gave up waiting). Returns whether it was there. */
  remove(client: string, item: T): boolean {
    const queue = this.queues.get(client);
    const index = queue?.findIndex((entry) => entry.item === item) ?? -1;
    if (queue === undefined || index < 0) {
      return false;
    }
    queue.splice(index, 1);
    if (queue.length === 0) {
      this.queues.delete(client);
    }
    this.count -= 1;
    return true;
  }

  /**
   * The next item to serve: the first one of the waiting client with the fewest slots in use
   * (`inUse`), the earliest arrival among clients with equally many.
   */
  shift(inUse: (client: string) => number): { client: string; item: T } | undefined {
    let best: { client: string; used: number; seq: number } | undefined;
    for (const [client, queue] of this.queues) {
      const head = queue[0];
      if (head === undefined) {
        continue;
      }
      const used = inUse(client);
      if (best === undefined || used < best.used || (used === best.used && head.seq < best.seq)) {
        best = { client, used, seq: head.seq };
      }
    }
    if (best === undefined) {
      return undefined;
    }
    const queue = this.queues.get(best.client)!;
    const entry = queue.shift()!;
    if (queue.length === 0) {
      this.queues.delete(best.client);
    }
    this.count -= 1;
    return { client: best.client, item: entry.item };
  }

  /** Takes every item out, in arrival order. */
  drain(): T[] {
    const all = [...this.queues.values()].flat().sort((a, b) => a.seq - b.seq);
    this.queues.clear();
    this.count = 0;
    return all.map((entry) => entry.item);
  }
}
