import { describe, expect, it } from 'vitest';
import { applyCpus, cpusOption } from '../src/cpus';

describe('--cpus before anything is loaded', () => {
  it('reads --cpus N and --cpus=N', () => {
    expect(cpusOption(['serve', '--cpus', '3', '--wideopen'])).toBe(3);
    expect(cpusOption(['serve', '--cpus=12'])).toBe(12);
    expect(cpusOption(['serve', '-J4'])).toBeUndefined();
  });

  it('leaves a bad value to the option parser, which refuses it', () => {
    for (const value of ['0', '1025', 'x', '', '-1']) {
      expect(cpusOption(['--cpus', value])).toBeUndefined();
    }
    expect(cpusOption(['--cpus'])).toBeUndefined();
  });

  it('sizes the thread pool unless the environment does', () => {
    const env: NodeJS.ProcessEnv = {};
    applyCpus(['--cpus', '2'], env);
    expect(env.UV_THREADPOOL_SIZE).toBe('2');
    const given: NodeJS.ProcessEnv = { UV_THREADPOOL_SIZE: '7' };
    applyCpus(['--cpus', '2'], given);
    expect(given.UV_THREADPOOL_SIZE).toBe('7');
    const none: NodeJS.ProcessEnv = {};
    applyCpus(['--wideopen'], none);
    expect(none.UV_THREADPOOL_SIZE).toBeUndefined();
  });
});
