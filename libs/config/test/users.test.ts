import { describe, expect, it } from 'vitest';
import { loadUsers } from '../src/index';

describe('loadUsers', () => {
  it('reads passwords and permissions from the environment', () => {
    const users = loadUsers({
      PATH: '/usr/bin',
      GIT_ANNEX_P2PHTTP_PASSWORD_alice: 'a-pw',
      GIT_ANNEX_P2PHTTP_PASSWORD_bob: 'b=pw:x',
      GIT_ANNEX_P2PHTTP_PERMISSIONS_bob: 'readonly',
      GIT_ANNEX_P2PHTTP_PASSWORD_carol: 'c-pw',
      GIT_ANNEX_P2PHTTP_PERMISSIONS_carol: 'appendonly',
    });
    expect([...users.values()]).toEqual([
      { name: 'alice', password: 'a-pw', permission: 'full' },
      { name: 'bob', password: 'b=pw:x', permission: 'readonly' },
      { name: 'carol', password: 'c-pw', permission: 'appendonly' },
    ]);
    expect(users.get('bob')?.permission).toBe('readonly');
  });

  it('an unknown permission value means full access, as an unset one does', () => {
    const users = loadUsers({
      GIT_ANNEX_P2PHTTP_PASSWORD_dave: 'pw',
      GIT_ANNEX_P2PHTTP_PERMISSIONS_dave: 'ReadOnly',
      GIT_ANNEX_P2PHTTP_PASSWORD_erin: 'pw',
      GIT_ANNEX_P2PHTTP_PERMISSIONS_erin: '',
    });
    expect(users.get('dave')?.permission).toBe('full');
    expect(users.get('erin')?.permission).toBe('full');
  });

  it('a permission without a password declares no user', () => {
    const users = loadUsers({ GIT_ANNEX_P2PHTTP_PERMISSIONS_frank: 'readonly' });
    expect(users.size).toBe(0);
  });

  it('skips an empty user name and an empty password', () => {
    const users = loadUsers({
      GIT_ANNEX_P2PHTTP_PASSWORD_: 'pw',
      GIT_ANNEX_P2PHTTP_PASSWORD_gina: '',
      GIT_ANNEX_P2PHTTP_PASSWORD_hank: undefined,
    });
    expect(users.size).toBe(0);
  });

  it('keeps the user name exactly, case and all', () => {
    const users = loadUsers({ GIT_ANNEX_P2PHTTP_PASSWORD_Ivy_2: 'pw' });
    expect([...users.keys()]).toEqual(['Ivy_2']);
  });
});
