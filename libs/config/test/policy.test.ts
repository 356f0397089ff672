import { describe, expect, it } from 'vitest';
import {
  compileGlob,
  decideAccess,
  loadUsers,
  parsePolicy,
  PolicyError,
  repositoryLocation,
  type AccessDecision,
  type Credentials,
  type PermissionClass,
  type RepositoryRules,
} from '../src/index';

const EXAMPLE = `repositories:
  - path: "public/**"
    anonymous: readonly
    nolocking: false
    users:
      alice: full
      "*": readonly
  - path: "labs/alice/**"
    users: { alice: full }
  - path: "labs/*/c"
    anonymous: appendonly
    nolocking: true
`;

function policyError(text: string): string {
  try {
    parsePolicy(text, 'policy.yaml');
  } catch (error) {
    expect(error).toBeInstanceOf(PolicyError);
    return (error as Error).message;
  }
  throw new Error('accepted');
}

describe('parsePolicy', () => {
  it('reads the rules in order, with defaults', () => {
    const policy = parsePolicy(EXAMPLE, 'policy.yaml');
    expect(policy.rules.map((r) => [r.path, r.line, r.anonymous, r.nolocking])).toEqual([
      ['public/**', 2, 'readonly', false],
      ['labs/alice/**', 8, 'none', false],
      ['labs/*/c', 10, 'appendonly', true],
    ]);
    expect([...(policy.rules[0]?.users ?? [])]).toEqual([
      ['alice', 'full'],
      ['*', 'readonly'],
    ]);
  });

  it('gives the first rule that matches, none for a repository no rule names', () => {
    const policy = parsePolicy(EXAMPLE, 'policy.yaml');
    expect(policy.ruleFor('public/a')?.path).toBe('public/**');
    expect(policy.ruleFor('public/deep/er/x')?.path).toBe('public/**');
    expect(policy.ruleFor('labs/alice/b')?.path).toBe('labs/alice/**');
    expect(policy.ruleFor('labs/bob/c')?.path).toBe('labs/*/c');
    expect(policy.ruleFor('labs/bob/d')).toBeUndefined();
    expect(policy.ruleFor('publicity')).toBeUndefined();
    expect(policy.ruleFor('.hidden/x')).toBeUndefined();
    expect(parsePolicy('repositories: []', 'p').ruleFor('x')).toBeUndefined();
  });

  it('matches dot directories and absolute paths (--repo)', () => {
    const policy = parsePolicy(
      'repositories:\n  - path: "**"\n    anonymous: full\n  - path: /srv/x\n',
      'p',
    );
    expect(policy.ruleFor('a/.b/c')?.path).toBe('**');
    const absolute = parsePolicy('repositories:\n  - path: /srv/annex/*\n', 'p');
    expect(absolute.ruleFor('/srv/annex/one')?.path).toBe('/srv/annex/*');
    expect(absolute.ruleFor('srv/annex/one')).toBeUndefined();
  });

  it('rejects unknown keys with their line', () => {
    expect(policyError('repositories:\n  - path: a\n    anonymus: readonly\n')).toBe(
      'policy.yaml:3: unknown key "anonymus" (known: path, anonymous, nolocking, users)',
    );
    expect(policyError('repos:\n  - path: a\n')).toMatch(
      /^policy.yaml:1: unknown key "repos" \(known: repositories\)/,
    );
  });

  it('rejects bad globs with their line', () => {
    expect(policyError('repositories:\n  - path: a\n  - path: "labs/[ab"\n')).toMatch(
      /^policy.yaml:3: bad glob "labs\/\[ab": Missing closing/,
    );
    expect(policyError('repositories:\n\n  - path: "../x"\n')).toMatch(/^policy.yaml:3: bad glob/);
    expect(policyError('repositories:\n  - path: ""\n')).toMatch(/^policy.yaml:2: bad glob/);
    expect(policyError('repositories:\n  - path: "a//b"\n')).toMatch(/^policy.yaml:2: bad glob/);
    expect(policyError('repositories:\n  - path: 3\n')).toMatch(/^policy.yaml:2: path must be/);
    expect(policyError('repositories:\n  - anonymous: full\n')).toBe(
      'policy.yaml:2: a rule needs "path"',
    );
  });

  it('rejects unknown permission words with their line', () => {
    expect(policyError('repositories:\n  - path: a\n    anonymous: read\n')).toBe(
      'policy.yaml:3: anonymous "read": must be none, readonly, appendonly, full',
    );
    expect(
      policyError('repositories:\n  - path: a\n    users:\n      alice: full\n      bob: write\n'),
    ).toBe('policy.yaml:5: user "bob": permission "write" must be readonly, appendonly, full');
    expect(policyError('repositories:\n  - path: a\n    users:\n      bob: none\n')).toMatch(
      /^policy.yaml:4: user "bob"/,
    );
    expect(policyError('repositories:\n  - path: a\n    nolocking: yes\n')).toBe(
      'policy.yaml:3: nolocking must be true or false',
    );
  });

  it('reports every problem at once, and YAML syntax errors with their line', () => {
    const message = policyError(
      'repositories:\n  - path: a\n    anonymous: read\n  - path: b\n    color: red\n',
    );
    expect(message.split('\n')).toEqual([
      'policy.yaml:3: anonymous "read": must be none, readonly, appendonly, full',
      'policy.yaml:5: unknown key "color" (known: path, anonymous, nolocking, users)',
    ]);
    expect(policyError('repositories:\n  - path: a\n  - path: [b\n')).toMatch(/^policy.yaml:\d+: /);
    expect(policyError('repositories:\n  - path: a\n    path: b\n')).toMatch(/^policy.yaml:3: /);
    expect(policyError('')).toMatch(/^policy.yaml:1: must be a mapping/);
    expect(policyError('repositories: {}\n')).toMatch(/^policy.yaml:1: "repositories" must be/);
  });
});

describe('compileGlob', () => {
  it('accepts plain names, stars, braces and classes', () => {
    for (const glob of ['a', 'a/b', '**', 'a/*/b', '{a,b}/**', 'x[0-9]']) {
      expect(typeof compileGlob(glob), glob).toBe('function');
    }
  });
  it('refuses unbalanced brackets, empty and dot segments, backslashes', () => {
    for (const glob of ['a[', 'a{b', 'a(b', '', ' a', 'a/', './a', 'a/../b', 'a\\b']) {
      expect(typeof compileGlob(glob), glob).toBe('string');
    }
  });
});

describe('repositoryLocation', () => {
  it('is the path below the first root holding it, else the absolute path', () => {
    expect(repositoryLocation('/srv/annex/labs/alice/b', ['/srv/annex'])).toBe('labs/alice/b');
    expect(repositoryLocation('/srv/other/x', ['/srv/annex', '/srv/other'])).toBe('x');
    expect(repositoryLocation('/srv/annex', ['/srv/annex'])).toBe('/srv/annex');
    expect(repositoryLocation('/srv/annexe/x', ['/srv/annex'])).toBe('/srv/annexe/x');
    expect(repositoryLocation('/srv/x', [])).toBe('/srv/x');
  });
});

describe('decideAccess with policy rules', () => {
  const users = loadUsers({
    GIT_ANNEX_P2PHTTP_PASSWORD_alice: 'alice-pw',
    GIT_ANNEX_P2PHTTP_PASSWORD_bob: 'bob-pw',
    GIT_ANNEX_P2PHTTP_PASSWORD_capped: 'capped-pw',
    GIT_ANNEX_P2PHTTP_PERMISSIONS_capped: 'readonly',
  });
  const policy = parsePolicy(
    `${EXAMPLE}  - path: capped\n    users: { capped: full }\n`,
    'policy.yaml',
  );
  const rules = (location: string): RepositoryRules => {
    const rule = policy.ruleFor(location);
    if (!rule) {
      throw new Error(location);
    }
    return rule;
  };
  const CLASSES: PermissionClass[] = ['read', 'append', 'remove', 'lock'];
  const show = (d: AccessDecision): string =>
    d.kind === 'allow' ? `ok:${d.mode}` : `${d.kind}:${d.status}`;
  const row = (location: string, credentials: Credentials | null, canLogin = true) =>
    CLASSES.map((cls) =>
      show(decideAccess({ rules: rules(location), users, credentials, canLogin, cls })),
    );
  const alice = { user: 'alice', password: 'alice-pw' };
  const bob = { user: 'bob', password: 'bob-pw' };
  const wrong = { user: 'alice', password: 'nope' };

  it('public/**: anonymous reads, alice full, any other user reads', () => {
    expect(row('public/a', null)).toEqual([
      'ok:readonly',
      'unnamed:401',
      'unnamed:401',
      'ok:readonly',
    ]);
    expect(row('public/a', alice)).toEqual(['ok:full', 'ok:full', 'ok:full', 'ok:full']);
    expect(row('public/a', bob)).toEqual(['ok:readonly', 'deny:403', 'deny:403', 'ok:readonly']);
    expect(row('public/a', wrong)).toEqual([
      'ok:readonly',
      'unnamed:401',
      'unnamed:401',
      'ok:readonly',
    ]);
    // No login over this transport, anonymous access on: 403, a login would not help.
    expect(row('public/a', null, false)).toEqual([
      'ok:readonly',
      'unnamed:403',
      'unnamed:403',
      'ok:readonly',
    ]);
  });

  it('labs/alice/**: alice only', () => {
    expect(row('labs/alice/b', null)).toEqual(Array(4).fill('unnamed:401'));
    expect(row('labs/alice/b', alice)).toEqual(Array(4).fill('ok:full'));
    expect(row('labs/alice/b', bob)).toEqual(Array(4).fill('unnamed:403'));
    expect(row('labs/alice/b', wrong)).toEqual(Array(4).fill('unnamed:401'));
  });

  it('anonymous appendonly with nolocking; a user it does not name is anonymous there', () => {
    expect(row('labs/bob/c', null)).toEqual([
      'ok:appendonly',
      'ok:appendonly',
      'unnamed:401',
      'unnamed:401',
    ]);
    expect(row('labs/bob/c', bob)).toEqual([
      'ok:appendonly',
      'ok:appendonly',
      'unnamed:403',
      'unnamed:403',
    ]);
  });

  it('GIT_ANNEX_P2PHTTP_PERMISSIONS_<user> caps what the policy grants', () => {
    expect(row('capped', { user: 'capped', password: 'capped-pw' })).toEqual([
      'ok:readonly',
      'deny:403',
      'deny:403',
      'ok:readonly',
    ]);
  });
});
