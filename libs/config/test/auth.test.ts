import { describe, expect, it } from 'vitest';
import {
  authorize,
  loadUsers,
  parseAuthorization,
  passwordMatches,
  type AuthDecision,
  type AuthPolicy,
  type Credentials,
  type PermissionClass,
} from '../src/index';

const NONE: AuthPolicy = {
  authEnv: false,
  authEnvHttp: false,
  unauthReadonly: false,
  unauthAppendonly: false,
  unauthNolocking: false,
  wideopen: false,
};
const policy = (flags: Partial<AuthPolicy>): AuthPolicy => ({ ...NONE, ...flags });

const users = loadUsers({
  GIT_ANNEX_P2PHTTP_PASSWORD_alice: 'alice-pw',
  GIT_ANNEX_P2PHTTP_PASSWORD_bob: 'bob-pw',
  GIT_ANNEX_P2PHTTP_PERMISSIONS_bob: 'readonly',
  GIT_ANNEX_P2PHTTP_PASSWORD_carol: 'carol-pw',
  GIT_ANNEX_P2PHTTP_PERMISSIONS_carol: 'appendonly',
});

const CLASSES: PermissionClass[] = ['read', 'append', 'remove', 'lock'];
type Outcome = 'ok' | 401 | 403;
const outcome = (d: AuthDecision): Outcome => (d.ok ? 'ok' : d.status);

function decide(
  flags: Partial<AuthPolicy>,
  cls: PermissionClass,
  credentials: Credentials | null = null,
  tls = false,
): AuthDecision {
  return authorize({ policy: policy(flags), users, credentials, tls, cls });
}

/** Columns: read, append, remove, lock. */
type Row = [string, Partial<AuthPolicy>, [Outcome, Outcome, Outcome, Outcome]];

describe('authorize: anonymous requests, the measured table of PROTOCOL.md §2.7', () => {
  const rows: Row[] = [
    ['(none)', {}, [401, 401, 401, 401]],
    ['--wideopen', { wideopen: true }, ['ok', 'ok', 'ok', 'ok']],
    ['--unauth-readonly', { unauthReadonly: true }, ['ok', 403, 403, 'ok']],
    [
      '--unauth-readonly --unauth-nolocking',
      { unauthReadonly: true, unauthNolocking: true },
      ['ok', 403, 403, 403],
    ],
    ['--unauth-appendonly', { unauthAppendonly: true }, ['ok', 'ok', 403, 'ok']],
    // Differs from the reference on purpose: it ignores --unauth-nolocking together with
    // --unauth-appendonly and lets anonymous users lock (measured: ok). We refuse the lock.
    [
      '--unauth-appendonly --unauth-nolocking',
      { unauthAppendonly: true, unauthNolocking: true },
      ['ok', 'ok', 403, 403],
    ],
    ['--authenv-http', { authEnvHttp: true }, [401, 401, 401, 401]],
    ['--authenv (plain HTTP)', { authEnv: true }, [401, 401, 401, 401]],
    [
      '--authenv-http --unauth-readonly',
      { authEnvHttp: true, unauthReadonly: true },
      ['ok', 401, 401, 'ok'],
    ],
    [
      '--authenv-http --unauth-appendonly',
      { authEnvHttp: true, unauthAppendonly: true },
      ['ok', 'ok', 401, 'ok'],
    ],
  ];

  it.each(rows)('%s', (_name, flags, expected) => {
    expect(CLASSES.map((cls) => outcome(decide(flags, cls)))).toEqual(expected);
  });

  it('--authenv over TLS with anonymous access: a refusal is 401 (logging in can help)', () => {
    const flags = { authEnv: true, unauthReadonly: true };
    expect(CLASSES.map((cls) => outcome(decide(flags, cls, null, true)))).toEqual([
      'ok',
      401,
      401,
      'ok',
    ]);
  });

  it('--authenv over plain HTTP with anonymous access: a refusal is 403 (login impossible)', () => {
    const flags = { authEnv: true, unauthReadonly: true };
    expect(CLASSES.map((cls) => outcome(decide(flags, cls, null, false)))).toEqual([
      'ok',
      403,
      403,
      'ok',
    ]);
  });

  it('anonymous success carries no user name', () => {
    expect(decide({ wideopen: true }, 'remove')).toEqual({ ok: true, user: null });
  });
});

describe('authorize: authenticated users', () => {
  const alice = { user: 'alice', password: 'alice-pw' };
  const bob = { user: 'bob', password: 'bob-pw' };
  const carol = { user: 'carol', password: 'carol-pw' };

  const flagSets: [string, Partial<AuthPolicy>, boolean][] = [
    ['--authenv-http', { authEnvHttp: true }, false],
    ['--authenv over TLS', { authEnv: true }, true],
    ['--authenv-http --unauth-readonly', { authEnvHttp: true, unauthReadonly: true }, false],
    [
      '--authenv-http --unauth-appendonly --unauth-nolocking',
      { authEnvHttp: true, unauthAppendonly: true, unauthNolocking: true },
      false,
    ],
  ];
  const perUser: [string, Credentials, [Outcome, Outcome, Outcome, Outcome]][] = [
    ['full (alice)', alice, ['ok', 'ok', 'ok', 'ok']],
    ['appendonly (carol)', carol, ['ok', 'ok', 403, 'ok']],
    // Differs from the reference on purpose: it refuses lock (403) to authenticated read-only
    // users although anonymous read-only users may lock. We allow it.
    ['readonly (bob)', bob, ['ok', 403, 403, 'ok']],
  ];

  for (const [flagName, flags, tls] of flagSets) {
    it.each(perUser)(`${flagName}: %s`, (_name, credentials, expected) => {
      expect(CLASSES.map((cls) => outcome(decide(flags, cls, credentials, tls)))).toEqual(expected);
    });
  }

  it('names the user on success', () => {
    expect(decide({ authEnvHttp: true }, 'read', alice)).toEqual({ ok: true, user: 'alice' });
  });

  it('a logged-in user is judged by their own permission only, even under --wideopen', () => {
    expect(outcome(decide({ authEnvHttp: true, wideopen: true }, 'remove', bob))).toBe(403);
  });

  it('user names are case-sensitive', () => {
    expect(outcome(decide({ authEnvHttp: true }, 'read', { ...alice, user: 'Alice' }))).toBe(401);
  });
});

describe('authorize: wrong credentials count as anonymous', () => {
  const wrongPassword = { user: 'alice', password: 'nope' };
  const unknownUser = { user: 'mallory', password: 'alice-pw' };

  it.each([wrongPassword, unknownUser])('without anonymous access: 401 (%o)', (credentials) => {
    expect(CLASSES.map((cls) => outcome(decide({ authEnvHttp: true }, cls, credentials)))).toEqual([
      401, 401, 401, 401,
    ]);
  });

  // Differs from the reference on purpose: it answers 403 here when some anonymous access is on,
  // which git-annex clients do not take as a reason to drop the stored password.
  it.each([wrongPassword, unknownUser])(
    'with --unauth-readonly: what anonymous users may do, else 401 (%o)',
    (credentials) => {
      const flags = { authEnvHttp: true, unauthReadonly: true };
      expect(CLASSES.map((cls) => outcome(decide(flags, cls, credentials)))).toEqual([
        'ok',
        401,
        401,
        'ok',
      ]);
    },
  );

  it.each([wrongPassword, unknownUser])(
    'with --unauth-appendonly --unauth-nolocking: 401 for remove and lock (%o)',
    (credentials) => {
      const flags = { authEnvHttp: true, unauthAppendonly: true, unauthNolocking: true };
      expect(CLASSES.map((cls) => outcome(decide(flags, cls, credentials)))).toEqual([
        'ok',
        'ok',
        401,
        401,
      ]);
    },
  );

  it('over TLS with --authenv and anonymous read access: a failed login is 401', () => {
    const flags = { authEnv: true, unauthReadonly: true };
    expect(outcome(decide(flags, 'append', wrongPassword, true))).toBe(401);
    expect(outcome(decide(flags, 'read', wrongPassword, true))).toBe('ok');
  });

  it('with --wideopen everything is allowed, anonymously', () => {
    expect(decide({ authEnvHttp: true, wideopen: true }, 'remove', wrongPassword)).toEqual({
      ok: true,
      user: null,
    });
  });

  it('an empty password never matches a user without password', () => {
    const noPassword = new Map([
      ['eve', { name: 'eve', password: '', permission: 'full' as const }],
    ]);
    const d = authorize({
      policy: policy({ authEnvHttp: true }),
      users: noPassword,
      credentials: { user: 'eve', password: '' },
      tls: false,
      cls: 'read',
    });
    expect(d).toEqual({ ok: false, status: 401 });
  });
});

describe('authorize: every flag combination', () => {
  const FLAGS = [
    'authEnv',
    'authEnvHttp',
    'unauthReadonly',
    'unauthAppendonly',
    'unauthNolocking',
    'wideopen',
  ] as const;
  const combinations: [string, Partial<AuthPolicy>, boolean][] = [];
  for (let bits = 0; bits < 1 << FLAGS.length; bits += 1) {
    const flags = Object.fromEntries(FLAGS.map((f, i) => [f, (bits & (1 << i)) !== 0]));
    for (const tls of [false, true]) {
      combinations.push([`${JSON.stringify(flags)} tls=${tls}`, flags, tls]);
    }
  }
  const wrong = [
    { user: 'alice', password: 'nope' },
    { user: 'mallory', password: 'alice-pw' },
  ];

  it.each(combinations)('%s', (_name, flags, tls) => {
    const p = policy(flags);
    const canLogin = p.authEnvHttp || (p.authEnv && tls);
    for (const cls of CLASSES) {
      const anonymous = outcome(decide(flags, cls, null, tls));
      for (const credentials of wrong) {
        const failed = outcome(decide(flags, cls, credentials, tls));
        if (canLogin) {
          // a failed login gets what anonymous users get, or 401: never 403
          expect(failed).toBe(anonymous === 'ok' ? 'ok' : 401);
        } else {
          // credentials the transport cannot carry are ignored
          expect(failed).toBe(anonymous);
        }
      }
      // an anonymous refusal is 401 exactly when a login could help
      if (anonymous !== 'ok') {
        const anonymousModeOn = p.wideopen || p.unauthReadonly || p.unauthAppendonly;
        expect(anonymous).toBe(anonymousModeOn && !canLogin ? 403 : 401);
      }
      // a logged-in user gets 403 only for what their permission does not cover
      for (const [name, permitted] of [
        ['alice-pw', true],
        ['bob-pw', cls === 'read' || cls === 'lock'],
        ['carol-pw', cls !== 'remove'],
      ] as const) {
        const user = name.slice(0, -3);
        const decision = outcome(decide(flags, cls, { user, password: name }, tls));
        if (canLogin) {
          expect(decision).toBe(permitted ? 'ok' : 403);
        }
      }
    }
  });
});

describe('authorize: credentials the transport does not allow are ignored', () => {
  const alice = { user: 'alice', password: 'alice-pw' };

  it('--authenv without TLS: a valid login is anonymous, so 401 everywhere', () => {
    expect(CLASSES.map((cls) => outcome(decide({ authEnv: true }, cls, alice, false)))).toEqual([
      401, 401, 401, 401,
    ]);
  });

  it('--authenv without TLS, --unauth-readonly: read-only access and 403 beyond it', () => {
    const flags = { authEnv: true, unauthReadonly: true };
    expect(decide(flags, 'read', alice, false)).toEqual({ ok: true, user: null });
    expect(outcome(decide(flags, 'remove', alice, false))).toBe(403);
  });

  it('no --authenv at all: credentials are ignored even over TLS', () => {
    expect(outcome(decide({ unauthReadonly: true }, 'append', alice, true))).toBe(403);
    expect(decide({ wideopen: true }, 'read', alice, true)).toEqual({ ok: true, user: null });
  });

  it('--authenv with TLS: the login counts', () => {
    expect(decide({ authEnv: true }, 'remove', alice, true)).toEqual({ ok: true, user: 'alice' });
  });
});

describe('parseAuthorization', () => {
  const basic = (text: string): string => `Basic ${Buffer.from(text, 'utf8').toString('base64')}`;

  it('absent or empty header: anonymous', () => {
    expect(parseAuthorization(undefined)).toBeNull();
    expect(parseAuthorization('')).toBeNull();
    expect(parseAuthorization('   ')).toBeNull();
  });

  it('user before the first colon, the rest is the password', () => {
    expect(parseAuthorization(basic('alice:pw'))).toEqual({ user: 'alice', password: 'pw' });
    expect(parseAuthorization(basic('alice:p:w:'))).toEqual({ user: 'alice', password: 'p:w:' });
    expect(parseAuthorization(basic(':pw'))).toEqual({ user: '', password: 'pw' });
    expect(parseAuthorization(basic('alice:'))).toEqual({ user: 'alice', password: '' });
    expect(parseAuthorization(basic(':'))).toEqual({ user: '', password: '' });
  });

  it('UTF-8 text', () => {
    expect(parseAuthorization(basic('jörg:pässwörd€'))).toEqual({
      user: 'jörg',
      password: 'pässwörd€',
    });
  });

  it('scheme in any case, surrounding spaces allowed', () => {
    const token = Buffer.from('a:b').toString('base64');
    for (const scheme of ['basic', 'BASIC', 'bAsIc']) {
      expect(parseAuthorization(`${scheme} ${token}`)).toEqual({ user: 'a', password: 'b' });
    }
    expect(parseAuthorization(`  Basic   ${token}  `)).toEqual({ user: 'a', password: 'b' });
  });

  it('base64 with or without padding', () => {
    expect(parseAuthorization('Basic YTpiYw==')).toEqual({ user: 'a', password: 'bc' });
    expect(parseAuthorization('Basic YTpiYw')).toEqual({ user: 'a', password: 'bc' });
  });

  it.each([
    ['another scheme', 'Bearer abc.def'],
    ['Digest', 'Digest username="a"'],
    ['scheme only', 'Basic'],
    ['scheme only, trailing space', 'Basic '],
    ['no colon', basic('alice')],
    ['bad base64 character', 'Basic YTpi*w=='],
    ['base64url alphabet', 'Basic YTo-_w=='],
    ['wrong padding', 'Basic YTpiYw='],
    ['impossible length', 'Basic YTpiY'],
    ['too much padding', 'Basic YQ==='],
    ['two tokens', 'Basic YTpi YTpi'],
    ['not UTF-8', `Basic ${Buffer.from([0x61, 0x3a, 0xff, 0xfe]).toString('base64')}`],
  ])('malformed: %s', (_name, header) => {
    expect(parseAuthorization(header)).toBe('malformed');
  });
});

describe('passwordMatches', () => {
  it('equal strings match, anything else does not', () => {
    expect(passwordMatches('secret', 'secret')).toBe(true);
    expect(passwordMatches('secret', 'Secret')).toBe(false);
    expect(passwordMatches('secret', 'secret ')).toBe(false);
    expect(passwordMatches('', 'x')).toBe(false);
    expect(passwordMatches('', '')).toBe(true);
    expect(passwordMatches('a'.repeat(10_000), 'a'.repeat(10_000))).toBe(true);
  });
});
