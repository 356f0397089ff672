/**
 * Who may do what: a pure decision from a repository's rules (the command-line flags, or the
 * rule of the policy file that applies to it), the users (environment), the request's
 * credentials, the transport and the permission class of the route.
 * PROTOCOL.md §2.7 describes the reference's behaviour; we follow it except for two of its bugs
 * (§6.1 item 4) and one answer:
 * - an authenticated read-only user may lock content, as an anonymous read-only user may;
 * - `--unauth-nolocking` also applies with `--unauth-appendonly`;
 * - a failed login (wrong password, unknown user) that anonymous access does not cover answers
 *   401, whatever anonymous mode is on (the reference: 403 when some `--unauth-*` or
 *   `--wideopen` is on). git-annex clients tell `git credential` to reject a stored password only
 *   on 401, so a 403 would leave the user with a stale password that is never asked for again.
 * 403 remains the answer for a logged-in user who lacks the permission, and for anonymous
 * requests that no login could help (the transport cannot carry one).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { type PermissionClass } from '@annex-p2phttp/protocol';
import type { User, UserPermission } from './users';

export type { PermissionClass };

export interface AuthPolicy {
  authEnv: boolean;
  authEnvHttp: boolean;
  unauthReadonly: boolean;
  unauthAppendonly: boolean;
  unauthNolocking: boolean;
  wideopen: boolean;
}

export type Credentials = { user: string; password: string };

export type AuthDecision = { ok: true; user: string | null } | { ok: false; status: 401 | 403 };

const BASE64 = /^[A-Za-z0-9+/]*$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads an Authorization header. Absent or empty → null (anonymous). `Basic <base64(user:pass)>`,
 * scheme in any case, → the credentials: user = text before the first ':', password = the rest.
 * Any other scheme, bad base64, text that is not UTF-8 or has no ':' → 'malformed'.
 */
export function parseAuthorization(header: string | undefined): Credentials | null | 'malformed' {
  if (header === undefined || header.trim() === '') {
    return null;
  }
  const match = /^\s*(\S+)\s+(\S+)\s*$/.exec(header);
  if (!match || match[1]?.toLowerCase() !== 'basic') {
    return 'malformed';
  }
  const token = match[2] ?? '';
  const unpadded = token.replace(/={1,2}$/, '');
  if (
    !BASE64.test(unpadded) ||
    unpadded.length % 4 === 1 ||
    (unpadded.length !== token.length && token.length % 4 !== 0)
  ) {
    return 'malformed';
  }
  let decoded: string;
  try {
    decoded = utf8.decode(Buffer.from(unpadded, 'base64'));
  } catch {
    return 'malformed';
  }
  const colon = decoded.indexOf(':');
  if (colon < 0) {
    return 'malformed';
  }
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** Compares passwords in time independent of where they differ (and of their lengths). */
export function passwordMatches(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

const RANK: Record<UserPermission, number> = { readonly: 0, appendonly: 1, full: 2 };

/** The lesser of two permissions. */
export function leastPermission(a: UserPermission, b: UserPermission): UserPermission {
  return RANK[a] <= RANK[b] ? a : b;
}

function userMay(permission: UserPermission, cls: PermissionClass): boolean {
  switch (permission) {
    case 'full':
      return true;
    case 'appendonly':
      return cls !== 'remove';
    case 'readonly':
      // The reference also refuses 'lock' here; anonymous read-only users may lock, so we let
      // authenticated read-only users lock as well.
      return cls === 'read' || cls === 'lock';
  }
}

/**
 * What one repository grants: anonymous access, whether anonymous users may lock, and the
 * permission of each user it names ("*": any logged-in user). `users` null: every user of the
 * environment, with the permission the environment gives (the command-line flags).
 */
export interface RepositoryRules {
  readonly anonymous: 'none' | UserPermission;
  readonly nolocking: boolean;
  readonly users: ReadonlyMap<string, UserPermission> | null;
}

/** The rules the `--unauth-*` and `--wideopen` flags give every repository. */
export function rulesFromFlags(policy: AuthPolicy): RepositoryRules {
  if (policy.wideopen) {
    return { anonymous: 'full', nolocking: false, users: null };
  }
  const anonymous = policy.unauthAppendonly
    ? 'appendonly'
    : policy.unauthReadonly
      ? 'readonly'
      : 'none';
  return { anonymous, nolocking: policy.unauthNolocking, users: null };
}

function anonymousMay(rules: RepositoryRules, cls: PermissionClass): boolean {
  if (rules.anonymous === 'none') {
    return false;
  }
  if (cls === 'lock') {
    // The reference ignores --unauth-nolocking when --unauth-appendonly is on; we do not.
    return !rules.nolocking;
  }
  return userMay(rules.anonymous, cls);
}

/** Whether the transport lets a user log in: `--authenv-http`, or `--authenv` over TLS. */
export function loginAllowed(policy: AuthPolicy, tls: boolean): boolean {
  return policy.authEnvHttp || (policy.authEnv && tls);
}

/**
 * - allow: go ahead; `user` names the logged-in user (null: anonymous), `mode` is the
 *   git-annex-shell mode that matches the access granted;
 * - deny: the rules name the caller and refuse (403), or a named user lacks the permission;
 * - unnamed: the rules say nothing for this caller (anonymous access does not cover it, a login
 *   failed, or the user is not named for this repository); `status` is the answer when nothing
 *   else (an auth hook) decides.
 */
export type AccessDecision =
  | { kind: 'allow'; user: string | null; mode: UserPermission }
  | { kind: 'deny'; status: 401 | 403 }
  | { kind: 'unnamed'; status: 401 | 403 };

export function decideAccess(args: {
  rules: RepositoryRules;
  users: ReadonlyMap<string, User>;
  credentials: Credentials | null;
  canLogin: boolean;
  cls: PermissionClass;
}): AccessDecision {
  const { rules, users, credentials, canLogin, cls } = args;
  const anonymous = (): AccessDecision | undefined =>
    anonymousMay(rules, cls)
      ? {
          kind: 'allow',
          user: null,
          mode: rules.anonymous === 'none' ? 'readonly' : rules.anonymous,
        }
      : undefined;

  if (credentials !== null && canLogin) {
    const user = users.get(credentials.user);
    // Hash even for an unknown user, so that timing does not tell whether the name exists.
    const matches = passwordMatches(credentials.password, user?.password ?? '');
    if (user !== undefined && user.password !== '' && matches) {
      const named =
        rules.users === null
          ? user.permission
          : (rules.users.get(user.name) ?? rules.users.get('*'));
      if (named === undefined) {
        return anonymous() ?? { kind: 'unnamed', status: 403 };
      }
      const permission = leastPermission(named, user.permission);
      return userMay(permission, cls)
        ? { kind: 'allow', user: user.name, mode: permission }
        : { kind: 'deny', status: 403 };
    }
    // Wrong credentials count as anonymous. A refusal is 401 even when some anonymous access is
    // on: the login failed, and only 401 makes the client drop the password it sent.
    return anonymous() ?? { kind: 'unnamed', status: 401 };
  }

  // 401 invites the client to send credentials; pointless when the transport would ignore them
  // and anonymous access is configured, so that case is 403.
  return (
    anonymous() ?? {
      kind: 'unnamed',
      status: rules.anonymous !== 'none' && !canLogin ? 403 : 401,
    }
  );
}

/** The decision of the command-line flags and the environment's users alone. */
export function authorize(args: {
  policy: AuthPolicy;
  users: Map<string, User>;
  credentials: Credentials | null;
  tls: boolean;
  cls: PermissionClass;
}): AuthDecision {
  const { policy, users, credentials, tls, cls } = args;
  const decision = decideAccess({
    rules: rulesFromFlags(policy),
    users,
    credentials,
    canLogin: loginAllowed(policy, tls),
    cls,
  });
  return decision.kind === 'allow'
    ? { ok: true, user: decision.user }
    : { ok: false, status: decision.status };
}
