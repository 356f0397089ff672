/**
 * Users allowed to log in, read once from the environment (PROTOCOL.md §2.7):
 * `GIT_ANNEX_P2PHTTP_PASSWORD_<user>=<password>` declares a user;
 * `GIT_ANNEX_P2PHTTP_PERMISSIONS_<user>=readonly|appendonly` restricts one (unset, or any other
 * value, means full access). An empty password counts as unset: such a user cannot log in.
 */
export type UserPermission = 'full' | 'readonly' | 'appendonly';

export interface User {
  name: string;
  password: string;
  permission: UserPermission;
}

export const PASSWORD_PREFIX = 'GIT_ANNEX_P2PHTTP_PASSWORD_';
export const PERMISSIONS_PREFIX = 'GIT_ANNEX_P2PHTTP_PERMISSIONS_';

function permissionOf(value: string | undefined): UserPermission {
  return value === 'readonly' || value === 'appendonly' ? value : 'full';
}

export function loadUsers(env: NodeJS.ProcessEnv): Map<string, User> {
  const users = new Map<string, User>();
  for (const [variable, password] of Object.entries(env)) {
    if (!variable.startsWith(PASSWORD_PREFIX)) {
      continue;
    }
    const name = variable.slice(PASSWORD_PREFIX.length);
    if (name === '' || password === undefined || password === '') {
      continue;
    }
    const permission = permissionOf(env[PERMISSIONS_PREFIX + name]);
    users.set(name, { name, password, permission });
  }
  return users;
}
