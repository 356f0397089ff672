/**
 * Who may do what: a pure decision from the policy (command-line flags), the users (environment),
 * the request's credentials, the transport and the permission class of the route.
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

function anonymousMay(policy: AuthPolicy, cls: PermissionClass): boolean {
  if (policy.wideopen) {
    return true;
  }
  if (!policy.unauthReadonly && !policy.unauthAppendonly) {
    return false;
  }
  switch (cls) {
    case 'read':
      return true;
    case 'append':
      return policy.unauthAppendonly;
    case 'remove':
      return false;
    case 'lock':
      // The reference ignores --unauth-nolocking when --unauth-appendonly is on; we do not.
      return !policy.unauthNolocking;
  }
}

/** Whether the transport lets a user log in: `--authenv-http`, or `--authenv` over TLS. */
export function loginAllowed(policy: AuthPolicy, tls: boolean): boolean {
  return policy.authEnvHttp || (policy.authEnv && tls);
}

function anonymousModeOn(policy: AuthPolicy): boolean {
  return policy.wideopen || policy.unauthReadonly || policy.unauthAppendonly;
}

export function authorize(args: {
  policy: AuthPolicy;
  users: Map<string, User>;
  credentials: Credentials | null;
  tls: boolean;
  cls: PermissionClass;
}): AuthDecision {
  const { policy, users, credentials, tls, cls } = args;
  const canLogin = loginAllowed(policy, tls);

  if (credentials !== null && canLogin) {
    const user = users.get(credentials.user);
    // Hash even for an unknown user, so that timing does not tell whether the name exists.
    const matches = passwordMatches(credentials.password, user?.password ?? '');
    if (user !== undefined && user.password !== '' && matches) {
      return userMay(user.permission, cls)
        ? { ok: true, user: user.name }
        : { ok: false, status: 403 };
    }
    // Wrong credentials count as anonymous. A refusal is 401 even when some anonymous access is
    // on: the login failed, and only 401 makes the client drop the password it sent.
    if (anonymousMay(policy, cls)) {
      return { ok: true, user: null };
    }
    return { ok: false, status: 401 };
  }

  if (anonymousMay(policy, cls)) {
    return { ok: true, user: null };
  }
  // 401 invites the client to send credentials; pointless when the transport would ignore them
  // and anonymous access is configured, so that case is 403.
  return { ok: false, status: anonymousModeOn(policy) && !canLogin ? 403 : 401 };
}
