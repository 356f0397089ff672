/**
 * Who may do what on one repository, per request: the rules of the repository (the rule of the
 * policy file that applies to it, or the command-line flags without --policy), the users of the
 * environment, and the auth hook for what those rules leave open (a caller they do not name).
 * Without --policy every repository is served; with it, a repository no rule matches answers 404
 * like an unknown uuid. The statuses follow the README: 401 when a login could help (a failed one
 * included), 403 when it cannot, 503 when the hook cannot be asked.
 */
import {
  decideAccess,
  loginAllowed,
  parseAuthorization,
  rulesFromFlags,
  type AuthPolicy,
  type PermissionClass,
  type Policy,
  type RepositoryRules,
  type User,
  type UserPermission,
} from '@annex-p2phttp/config';
import { type AuthHook } from './auth-hook';
import { badRequest, HttpError, notFound } from './http-error';

export interface AccessGrant {
  /** The user to log (null: anonymous). */
  readonly user: string | null;
  /** The git-annex-shell mode matching what was granted. */
  readonly mode: UserPermission;
}

export interface AccessControlOptions {
  readonly flags: AuthPolicy;
  readonly users: ReadonlyMap<string, User>;
  /** The policy in use now (it can be reloaded); undefined without --policy. */
  readonly policy?: () => Policy;
  readonly hook?: AuthHook;
}

/** The least git-annex-shell mode that allows an operation of class `cls`. */
function modeFor(cls: PermissionClass): UserPermission {
  switch (cls) {
    case 'read':
    case 'lock':
      return 'readonly';
    case 'append':
      return 'appendonly';
    case 'remove':
      return 'full';
  }
}

export class AccessControl {
  private readonly flagRules: RepositoryRules;

  constructor(private readonly options: AccessControlOptions) {
    this.flagRules = rulesFromFlags(options.flags);
  }

  /**
   * Whether the repository at `location` is served at all (it is, unless a policy names no rule
   * for it); throws 404 when it is not.
   */
  rulesFor(location: string | undefined): RepositoryRules {
    const policy = this.options.policy?.();
    if (policy === undefined) {
      return this.flagRules;
    }
    const rule = location === undefined ? undefined : policy.ruleFor(location);
    if (rule === undefined) {
      throw notFound('unknown repository uuid');
    }
    return rule;
  }

  /** Decides for a request; throws the HttpError to answer when it is refused. */
  async check(args: {
    authorization: string | undefined;
    tls: boolean;
    location: string | undefined;
    uuid: string;
    cls: PermissionClass;
  }): Promise<AccessGrant> {
    const rules = this.rulesFor(args.location);
    const credentials = parseAuthorization(args.authorization);
    if (credentials === 'malformed' && this.options.hook === undefined) {
      throw badRequest('malformed Authorization header: only Basic is supported');
    }
    const decision = decideAccess({
      rules,
      users: this.options.users,
      // A scheme other than Basic (a forge's token) is for the hook to judge.
      credentials: credentials === 'malformed' ? null : credentials,
      canLogin: loginAllowed(this.options.flags, args.tls),
      cls: args.cls,
    });
    switch (decision.kind) {
      case 'allow':
        return { user: decision.user, mode: decision.mode };
      case 'deny':
        throw refusal(decision.status);
      case 'unnamed':
        break;
    }
    const hook = this.options.hook;
    if (hook === undefined) {
      throw refusal(decision.status);
    }
    // Throws AuthHookUnavailable when the hook cannot decide (answered as error-status.ts says).
    const answer = await hook.decide({
      authorization: args.authorization,
      location: args.location ?? '',
      uuid: args.uuid,
      access: args.cls,
    });
    if (answer.kind === 'deny') {
      throw refusal(answer.status);
    }
    return { user: answer.user, mode: modeFor(args.cls) };
  }
}

function refusal(status: 401 | 403): HttpError {
  return status === 401
    ? new HttpError(401, 'authentication required', {
        'www-authenticate': 'Basic realm="git-annex", charset="UTF-8"',
      })
    : new HttpError(403, 'not permitted');
}
