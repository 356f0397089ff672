import { describe, expect, it } from 'vitest';
import { CounterMirror, Metrics, mirrorPool, type PoolCounts } from '@annex-p2phttp/metrics';

function sample(body: string, name: string): number | undefined {
  const line = body.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('Metrics', () => {
  it('labels every sample with the app and includes process metrics', async () => {
    const metrics = new Metrics('gateway');
    metrics.httpRequests.inc({
      route: 'checkpresent',
      version: 'v4',
      method: 'POST',
      status: '200',
    });
    const { body, contentType } = await metrics.render();
    expect(contentType).toMatch(/^text\/plain/);
    expect(body).toContain(
      'annex_p2phttp_http_requests_total{route="checkpresent",version="v4",method="POST",status="200",app="gateway"} 1',
    );
    expect(body).toMatch(/^process_cpu_seconds_total\{app="gateway"\} /m);
  });

  it('mirrors a pool into gauges and only-growing counters at each scrape', async () => {
    const metrics = new Metrics('embedded');
    let counts: PoolCounts = {
      active: 2,
      idle: 5,
      locks: 1,
      waiting: 3,
      streams: 1,
      opened: 10,
      openFailures: 1,
      evicted: 4,
      expired: 0,
    };
    const stop = mirrorPool(metrics, () => counts);
    let { body } = await metrics.render();
    expect(body).toContain('annex_p2phttp_pool_connections{state="idle",app="embedded"} 5');
    expect(body).toContain('annex_p2phttp_pool_connections{state="active",app="embedded"} 2');
    expect(sample(body, 'annex_p2phttp_pool_waiters')).toBe(3);
    expect(sample(body, 'annex_p2phttp_pool_opens_total')).toBe(10);
    expect(sample(body, 'annex_p2phttp_pool_evictions_total')).toBe(4);

    counts = { ...counts, idle: 0, opened: 12, evicted: 9 };
    ({ body } = await metrics.render());
    expect(body).toContain('annex_p2phttp_pool_connections{state="idle",app="embedded"} 0');
    expect(sample(body, 'annex_p2phttp_pool_opens_total')).toBe(12);
    expect(sample(body, 'annex_p2phttp_pool_evictions_total')).toBe(9);

    stop();
    counts = { ...counts, opened: 20 };
    ({ body } = await metrics.render());
    expect(sample(body, 'annex_p2phttp_pool_opens_total')).toBe(12);
  });

  it('never lets a mirrored counter go backwards', async () => {
    const metrics = new Metrics('proxy-worker');
    const mirror = new CounterMirror(metrics.lockExpirations);
    mirror.update(5);
    mirror.update(3);
    mirror.update(6);
    const { body } = await metrics.render();
    expect(sample(body, 'annex_p2phttp_lock_expirations_total')).toBe(6);
  });
});
