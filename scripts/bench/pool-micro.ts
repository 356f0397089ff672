/**
 * Micro-benchmark of the connection pool's put-back: the release of a lease into the idle set of
 * a pool already holding its bound (`--proxyconnections`) of idle connections, so every put-back
 * also evicts and closes the least recently used idle connection. Run with 10 and with 10,000
 * idle connections, each under its own pool key (distinct server and client uuids, as a gateway
 * proxying many remotes for many clients has), in memory: the connections are fakes with no
 * process behind them, so only the pool's own bookkeeping is measured.
 *
 * Each sample releases `batch` leases in a tight loop (the leases are acquired beforehand, outside
 * the timed region) and divides the elapsed time by `batch`. Samples are short (well under a
 * scheduler time slice), so the few that a garbage collection or another process interrupts are
 * outliers that the median leaves out. Sizes take turns sample by sample
 * after unmeasured warm-up samples; the figure per size is the median of its samples, and the
 * ratio is the 10,000 figure over the 10 figure (about 1 when a put-back costs the same
 * whatever the number of idle connections).
 */
import { randomUUID } from 'node:crypto';
import { ConnectionPool, poolKey, type Lease, type Poolable } from '@annex-p2phttp/p2p';
import { median } from '../../test/support/util';

export const POOL_MICRO_ID = 'pool';

export interface PoolMicroProfile {
  /** measured samples per size */
  samples: number;
  /** unmeasured samples per size first (JIT warm-up) */
  warmupSamples: number;
  /** put-backs per sample */
  batch: number;
  /** idle connections in the pool while measuring */
  sizes: readonly number[];
}

export const POOL_MICRO_FULL: PoolMicroProfile = {
  samples: 300,
  warmupSamples: 30,
  batch: 250,
  sizes: [10, 1000, 10_000],
};

export const POOL_MICRO_QUICK: PoolMicroProfile = {
  samples: 100,
  warmupSamples: 20,
  batch: 250,
  sizes: [10, 1000, 10_000],
};

export interface PoolMicroSize {
  idle: number;
  /** median nanoseconds per put-back (release + eviction of the oldest idle connection) */
  nsPerPutBack: number;
  /** every measured sample, ns per put-back */
  samples: number[];
  /** idle connections after the last sample (must equal `idle`) */
  idleAfter: number;
  /** connections evicted by put-backs, warm-up included */
  evicted: number;
}

export interface PoolMicroResult {
  id: typeof POOL_MICRO_ID;
  profile: PoolMicroProfile;
  sizes: PoolMicroSize[];
  /** nsPerPutBack of the largest size over that of the smallest */
  ratio: number;
}

/** One error for every close: building a stack trace per close would dwarf the pool's own work. */
const CLOSED = new Error('closed');

class MemoryConnection implements Poolable {
  closed = false;
  private listeners: ((error: Error) => void)[] = [];

  close(): void {
    if (this.closed) {
      return;
    }
    this.closed = true;
    const listeners = this.listeners;
    this.listeners = [];
    for (const listener of listeners) {
      listener(CLOSED);
    }
  }

  onClose(listener: (error: Error) => void): void {
    if (this.closed) {
      listener(CLOSED);
    } else {
      this.listeners.push(listener);
    }
  }
}

/** One pool filled with `idle` idle connections, each under its own key. */
class Bench {
  readonly pool: ConnectionPool<MemoryConnection>;
  private readonly repoPath = '/srv/annex/gateway';
  private readonly servers = Array.from({ length: 100 }, () => randomUUID());
  private next = 0;

  constructor(readonly idle: number) {
    this.pool = new ConnectionPool<MemoryConnection>({
      maxActive: Number.MAX_SAFE_INTEGER,
      maxIdle: idle,
      idleTimeoutMs: 0,
      open: () => Promise.resolve(new MemoryConnection()),
    });
  }

  /** A key never used before: another (server uuid, client uuid) pair. */
  private freshKey(): string {
    const n = this.next++;
    return poolKey({
      repoPath: this.repoPath,
      serverUuid: this.servers[n % this.servers.length] as string,
      clientUuid: randomUUID(),
      bypass: [],
      version: 4,
      mode: 'full',
    });
  }

  async leases(count: number): Promise<Lease<MemoryConnection>[]> {
    const leases: Lease<MemoryConnection>[] = [];
    for (let i = 0; i < count; i += 1) {
      leases.push(await this.pool.acquire(this.freshKey()));
    }
    return leases;
  }

  async fill(): Promise<void> {
    for (const lease of await this.leases(this.idle)) {
      lease.release(true);
    }
  }

  /** Releases `batch` fresh leases into the full pool; returns ns per put-back. */
  async sample(batch: number): Promise<number> {
    const leases = await this.leases(batch);
    const start = process.hrtime.bigint();
    for (const lease of leases) {
      lease.release(true);
    }
    const elapsed = process.hrtime.bigint() - start;
    return Number(elapsed) / batch;
  }
}

export async function runPoolMicro(
  profile: PoolMicroProfile,
  onProgress: (line: string) => void = () => {},
): Promise<PoolMicroResult> {
  const benches = profile.sizes.map((size) => new Bench(size));
  for (const bench of benches) {
    await bench.fill();
  }
  const samples = benches.map((): number[] => []);
  const total = profile.warmupSamples + profile.samples;
  for (let round = 0; round < total; round += 1) {
    onProgress(`pool put-back: sample ${round + 1}/${total}`);
    for (const [index, bench] of benches.entries()) {
      const ns = await bench.sample(profile.batch);
      if (round >= profile.warmupSamples) {
        samples[index]?.push(ns);
      }
    }
  }
  const sizes = benches.map((bench, index): PoolMicroSize => {
    const stats = bench.pool.stats();
    const own = samples[index] ?? [];
    return {
      idle: bench.idle,
      nsPerPutBack: median(own) ?? Number.NaN,
      samples: own,
      idleAfter: stats.idle,
      evicted: stats.evicted,
    };
  });
  for (const bench of benches) {
    await bench.pool.close();
  }
  for (const size of sizes) {
    if (size.idleAfter !== size.idle) {
      throw new Error(`pool of ${size.idle}: ${size.idleAfter} idle after the put-backs`);
    }
  }
  const smallest = sizes[0];
  const largest = sizes[sizes.length - 1];
  const ratio =
    smallest === undefined || largest === undefined
      ? Number.NaN
      : largest.nsPerPutBack / smallest.nsPerPutBack;
  return { id: POOL_MICRO_ID, profile, sizes, ratio };
}

export function renderPoolMicro(result: PoolMicroResult): string {
  const { profile } = result;
  const lines = [
    `pool put-back micro-benchmark (in memory; release of a lease into a full idle set, ` +
      `evicting the least recently used; median of ${profile.samples} samples of ` +
      `${profile.batch} put-backs each)`,
  ];
  for (const size of result.sizes) {
    const lo = Math.min(...size.samples);
    const hi = Math.max(...size.samples);
    lines.push(
      `  ${String(size.idle).padStart(6)} idle connections: ${size.nsPerPutBack.toFixed(0)} ns ` +
        `per put-back (samples ${lo.toFixed(0)}-${hi.toFixed(0)} ns)`,
    );
  }
  const last = result.sizes[result.sizes.length - 1];
  const first = result.sizes[0];
  if (first !== undefined && last !== undefined) {
    lines.push(`  ratio ${last.idle} ÷ ${first.idle}: ${result.ratio.toFixed(2)}×`);
  }
  return lines.join('\n');
}
