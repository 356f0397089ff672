import { describe, expect, it } from 'vitest';
import { shellEnvironment } from '@annex-p2phttp/p2p';

describe('shellEnvironment', () => {
  it('sets exactly the mode variable of the session, whatever the server was started with', () => {
    const base = { PATH: '/bin', GIT_ANNEX_SHELL_READONLY: '1', GIT_ANNEX_SHELL_DIRECTORY: '/x' };
    expect(shellEnvironment(base, 'full')).toEqual({ PATH: '/bin' });
    expect(shellEnvironment(base, 'readonly')).toEqual({
      PATH: '/bin',
      GIT_ANNEX_SHELL_READONLY: '1',
    });
    expect(shellEnvironment(base, 'appendonly')).toEqual({
      PATH: '/bin',
      GIT_ANNEX_SHELL_APPENDONLY: '1',
    });
  });

  it('passes --clusterjobs as annex.jobs after any git config already in the environment', () => {
    expect(shellEnvironment({}, 'full', 1)).toEqual({});
    expect(shellEnvironment({}, 'full', 3)).toEqual({
      GIT_CONFIG_COUNT: '1',
      GIT_CONFIG_KEY_0: 'annex.jobs',
      GIT_CONFIG_VALUE_0: '3',
    });
    const base = { GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'a.b', GIT_CONFIG_VALUE_0: 'c' };
    expect(shellEnvironment(base, 'full', 4)).toEqual({
      ...base,
      GIT_CONFIG_COUNT: '2',
      GIT_CONFIG_KEY_1: 'annex.jobs',
      GIT_CONFIG_VALUE_1: '4',
    });
  });
});
