import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { HeartbeatKeeper } from '@annex-p2phttp/locks';

describe('HeartbeatKeeper', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('heartbeats every period while kept, once more on end, and never after', async () => {
    const heartbeat = vi.fn(() => Promise.resolve());
    const keeper = new HeartbeatKeeper(heartbeat, 1000);
    await vi.advanceTimersByTimeAsync(3500);
    expect(heartbeat).toHaveBeenCalledTimes(3);
    await keeper.end();
    expect(heartbeat).toHaveBeenCalledTimes(4);
    await keeper.end();
    await vi.advanceTimersByTimeAsync(5000);
    expect(heartbeat).toHaveBeenCalledTimes(4);
  });

  it('keeps heartbeating after a failed heartbeat', async () => {
    let calls = 0;
    const heartbeat = vi.fn(() => {
      calls += 1;
      return calls === 1 ? Promise.reject(new Error('store down')) : Promise.resolve();
    });
    const keeper = new HeartbeatKeeper(heartbeat, 1000);
    await vi.advanceTimersByTimeAsync(2000);
    expect(heartbeat).toHaveBeenCalledTimes(2);
    await keeper.end();
  });

  it('stop ends it without a last heartbeat and tells its owner once', async () => {
    const heartbeat = vi.fn(() => Promise.resolve());
    const stopped = vi.fn();
    const keeper = new HeartbeatKeeper(heartbeat, 1000, stopped);
    expect(keeper.stop()).toBe(true);
    expect(keeper.stop()).toBe(false);
    await keeper.end();
    await vi.advanceTimersByTimeAsync(5000);
    expect(heartbeat).not.toHaveBeenCalled();
    expect(stopped).toHaveBeenCalledTimes(1);
    expect(stopped).toHaveBeenCalledWith(keeper);
  });
});
