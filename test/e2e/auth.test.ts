/**
 * Authentication and permissions (PROTOCOL.md §2.7) through HTTP, one server per flag set.
 *
 * Classes: read = checkpresent, append = putoffset, remove = remove (of an absent key, which
 * succeeds), lock = lockcontent (released at once with keeplocked). Where the project
 * deliberately differs from git-annex 10.20250416 the expectations are the project's:
 * an authenticated read-only user may lock, `--unauth-appendonly --unauth-nolocking`
 * refuses anonymous locking, and a failed login that anonymous access does not cover answers 401
 * (the reference: 403 once some anonymous access is on).
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  basicAuth,
  expectJson,
  expectLocked,
  expectStatus,
  P2PApi,
  WWW_AUTHENTICATE,
  type HttpResult,
} from './api';
import {
  annex,
  annexStatus,
  git,
  keyOf,
  killAllTracked,
  makeClientClone,
  makeServedRepo,
  reportServerOutputOnFailure,
  RunningServer,
  Sandbox,
  serverKind,
  startServer,
  stopAndCollectLeftovers,
  type AuthFlag,
  type ServerKind,
  type ProcessInfo,
  type ServedRepo,
  type UserSpec,
} from './harness';

type OpClass = 'read' | 'append' | 'remove' | 'lock';
const CLASSES: readonly OpClass[] = ['read', 'append', 'remove', 'lock'];
type Expected = Record<OpClass, 200 | 401 | 403>;

const ok = 200 as const;
const all = (status: 200 | 401 | 403): Expected => ({
  read: status,
  append: status,
  remove: status,
  lock: status,
});

const USERS: Record<string, UserSpec> = {
  alice: { password: 'alice pw:with colon' },
  reader: { password: 'reader-pw', permissions: 'readonly' },
  appender: { password: 'appender-pw', permissions: 'appendonly' },
};
const USER_EXPECTED: Record<string, Expected> = {
  alice: all(ok),
  // project rule: an authenticated read-only user may lock (the reference answers 403)
  reader: { read: ok, append: 403, remove: 403, lock: ok },
  appender: { read: ok, append: ok, remove: 403, lock: ok },
};

interface FlagSet {
  flags: AuthFlag[];
  anonymous: Expected;
  /** for --authenv-http sets: what a wrong password gets (what anonymous users may do, else 401) */
  wrongPassword?: Expected;
  /** users log in (true for --authenv-http); with --authenv over plain HTTP they cannot */
  usersLogIn?: boolean;
  note?: string;
}

const FLAG_SETS: FlagSet[] = [
  { flags: [], anonymous: all(401) },
  { flags: ['--wideopen'], anonymous: all(ok) },
  { flags: ['--unauth-readonly'], anonymous: { read: ok, append: 403, remove: 403, lock: ok } },
  {
    flags: ['--unauth-readonly', '--unauth-nolocking'],
    anonymous: { read: ok, append: 403, remove: 403, lock: 403 },
  },
  { flags: ['--unauth-appendonly'], anonymous: { read: ok, append: ok, remove: 403, lock: ok } },
  {
    flags: ['--unauth-appendonly', '--unauth-nolocking'],
    anonymous: { read: ok, append: ok, remove: 403, lock: 403 },
    note: 'project rule; the reference ignores --unauth-nolocking here',
  },
  {
    flags: ['--authenv-http'],
    anonymous: all(401),
    wrongPassword: all(401),
    usersLogIn: true,
  },
  {
    flags: ['--authenv-http', '--unauth-readonly'],
    anonymous: { read: ok, append: 401, remove: 401, lock: ok },
    wrongPassword: { read: ok, append: 401, remove: 401, lock: ok },
    note: 'a failed login is 401: project rule, the reference answers 403',
    usersLogIn: true,
  },
  {
    flags: ['--authenv-http', '--unauth-appendonly'],
    anonymous: { read: ok, append: ok, remove: 401, lock: ok },
    wrongPassword: { read: ok, append: ok, remove: 401, lock: ok },
    note: 'a failed login is 401: project rule, the reference answers 403',
    usersLogIn: true,
  },
  { flags: ['--authenv'], anonymous: all(401), usersLogIn: false, note: 'plain HTTP' },
];

let sandbox: Sandbox;
let served: ServedRepo;
let presentKey: string;
const absentKey = `SHA256E-s5--${createHash('sha256').update(randomBytes(8)).digest('hex')}.bin`;
const current: { server?: RunningServer } = {};
const leftovers: ProcessInfo[] = [];
let forcedStops = 0;

reportServerOutputOnFailure(() => [current.server]);

beforeAll(async () => {
  sandbox = await Sandbox.create('auth');
  served = await makeServedRepo(sandbox, sandbox.path('served'), [
    { path: 'present.bin', size: 1000 },
    { path: 'for-client.bin', size: 5000 },
  ]);
  presentKey = keyOf(served, 'present.bin');
});

afterAll(async () => {
  try {
    await current.server?.stop();
  } finally {
    killAllTracked();
    await sandbox?.remove();
  }
});

async function useServer(flags: readonly AuthFlag[], kind?: ServerKind): Promise<RunningServer> {
  const server = await startServer({ sandbox, repo: served, auth: flags, users: USERS, kind });
  current.server = server;
  return server;
}

async function retireServer(): Promise<void> {
  const server = current.server;
  current.server = undefined;
  if (server !== undefined) {
    const { stops, leftovers: left } = await stopAndCollectLeftovers([server], [sandbox.root]);
    leftovers.push(...left);
    forcedStops += stops.filter((s) => s.forced).length;
  }
}

/** Performs one operation of the class and checks the answer against `status`. */
async function checkClass(api: P2PApi, opClass: OpClass, status: 200 | 401 | 403) {
  let result: HttpResult;
  switch (opClass) {
    case 'read':
      result = await api.checkpresent(presentKey);
      if (status === ok) {
        expectJson(result, ok, { present: true });
      }
      break;
    case 'append':
      result = await api.putoffset(absentKey);
      if (status === ok) {
        expectJson(result, ok, { offset: 0 });
      }
      break;
    case 'remove':
      result = await api.remove(absentKey);
      if (status === ok) {
        expectJson(result, ok, { removed: true, plusuuids: [] });
      }
      break;
    case 'lock':
      result = await api.lockcontent(presentKey);
      if (status !== ok && result.status === ok) {
        // an unexpected lock: release it before failing, so it does not outlive the test
        const lockid = (JSON.parse(result.body.toString('utf8')) as { lockid?: unknown }).lockid;
        if (typeof lockid === 'string') {
          await api.unlock(lockid);
        }
      }
      if (status === ok) {
        const lockid = expectLocked(result);
        expectJson(await api.unlock(lockid), ok, { locked: false });
      }
      break;
  }
  expectStatus(result, status);
  if (status === 401) {
    expect(result.headers['www-authenticate']).toMatch(WWW_AUTHENTICATE);
  }
}

for (const set of FLAG_SETS) {
  const label = `flags: ${set.flags.length === 0 ? '(none)' : set.flags.join(' ')}`;
  describe(set.note === undefined ? label : `${label} (${set.note})`, () => {
    let api: P2PApi;
    beforeAll(async () => {
      const server = await useServer(set.flags);
      api = new P2PApi(server.port, served.uuid);
    });
    afterAll(retireServer);

    for (const opClass of CLASSES) {
      it(`anonymous ${opClass} → ${set.anonymous[opClass]}`, async () => {
        await checkClass(api, opClass, set.anonymous[opClass]);
      });
    }

    if (set.usersLogIn === true) {
      for (const [user, expected] of Object.entries(USER_EXPECTED)) {
        const password = USERS[user]?.password ?? '';
        for (const opClass of CLASSES) {
          const rule = user === 'reader' && opClass === 'lock' ? ' (project rule)' : '';
          it(`user ${user} (${USERS[user]?.permissions ?? 'full'}) ${opClass} → ${expected[opClass]}${rule}`, async () => {
            await checkClass(
              api.withAuthorization(basicAuth(user, password)),
              opClass,
              expected[opClass],
            );
          });
        }
      }
    }

    if (set.usersLogIn === false) {
      for (const opClass of CLASSES) {
        it(`a valid user cannot log in over plain HTTP: ${opClass} → 401`, async () => {
          const alice = api.withAuthorization(basicAuth('alice', USERS.alice?.password ?? ''));
          await checkClass(alice, opClass, 401);
        });
      }
    }

    const wrong = set.wrongPassword;
    if (wrong !== undefined) {
      for (const opClass of CLASSES) {
        it(`wrong password ${opClass} → ${wrong[opClass]}`, async () => {
          await checkClass(
            api.withAuthorization(basicAuth('alice', 'not the password')),
            opClass,
            wrong[opClass],
          );
        });
        it(`unknown user ${opClass} → ${wrong[opClass]}`, async () => {
          await checkClass(
            api.withAuthorization(basicAuth('mallory', 'x')),
            opClass,
            wrong[opClass],
          );
        });
      }
    }
  });
}

describe('the git-annex client with --authenv-http', () => {
  const helper = (user: string, password: string) =>
    `!f() { echo username=${user}; echo password=${password}; }; f`;
  const file = 'for-client.bin';

  afterAll(retireServer);

  it('gets a file only when git credential supplies the right password', async () => {
    const server = await useServer(['--authenv-http']);
    const client = await makeClientClone(sandbox, served, sandbox.path('client'), server.annexUrl);

    const anonymous = await annexStatus(client, ['get', file]);
    expect(anonymous.code, `without credentials:\n${anonymous.stderr}`).not.toBe(0);

    await git(client, ['config', 'credential.helper', helper('alice', 'wrong')]);
    const wrong = await annexStatus(client, ['get', file]);
    expect(wrong.code, `with a wrong password:\n${wrong.stderr}`).not.toBe(0);

    await git(client, [
      'config',
      'credential.helper',
      helper('alice', USERS.alice?.password ?? ''),
    ]);
    await annex(client, ['get', file]);
    const got = await readFile(path.join(client.dir, file));
    expect(got.equals(await readFile(path.join(served.dir, file)))).toBe(true);
  });
});

/** The server kind of this run, and cluster mode too when that is the embedded server. */
const STALE_KINDS: ServerKind[] =
  serverKind() === 'project' ? ['project', 'cluster'] : [serverKind()];

describe.each(STALE_KINDS)('the git-annex client with a stale stored password (%s)', (kind) => {
  afterEach(retireServer);

  it('--authenv-http --unauth-readonly: a wrong password is rejected with the credential helper', async () => {
    const server = await useServer(['--authenv-http', '--unauth-readonly'], kind);
    const client = await makeClientClone(
      sandbox,
      served,
      sandbox.path(`client-stale-${kind}`),
      server.annexUrl,
    );
    // A credential helper that logs what git asks of it and answers with `password`.
    const log = sandbox.path(`credential-helper-${kind}.log`);
    const helper = sandbox.path(`credential-helper-${kind}.sh`);
    const install = async (password: string) => {
      await writeFile(
        helper,
        `#!/bin/sh\necho "$1" >> '${log}'\ncat > /dev/null\n` +
          `if [ "$1" = get ]; then echo username=alice; echo password='${password}'; fi\n`,
      );
      await chmod(helper, 0o755);
      await git(client, ['config', 'credential.helper', helper]);
    };
    const calls = async () => (await readFile(log, 'utf8')).split('\n').filter((l) => l !== '');

    await install('a stale password');
    await writeFile(path.join(client.dir, `up-stale-${kind}.bin`), randomBytes(3000));
    await annex(client, ['add', '-q', `up-stale-${kind}.bin`]);
    await git(client, ['commit', '-q', '-m', 'a file to upload']);
    const refused = await annexStatus(client, ['copy', '--to', 'origin', `up-stale-${kind}.bin`]);
    expect(refused.code, `${refused.stdout}${refused.stderr}`).not.toBe(0);
    expect(refused.stderr).toMatch(/401/);
    // Anonymous reads needed no password; the upload asked for one, got 401 with it, and the
    // client told the helper to forget it (once per attempt: the client retries the transfer).
    const refusedCalls = await calls();
    expect(refusedCalls.length).toBeGreaterThanOrEqual(2);
    expect(refusedCalls).toEqual(refusedCalls.map((_, i) => (i % 2 === 0 ? 'get' : 'erase')));

    await install(USERS.alice?.password ?? '');
    await annex(client, ['copy', '--to', 'origin', `up-stale-${kind}.bin`]);
    expect((await calls()).slice(refusedCalls.length)).toEqual(['get', 'store']);
    const key = (await annex(client, ['lookupkey', `up-stale-${kind}.bin`])).stdout.trim();
    await annex(served, ['fsck', '-q', '--key', key]);
  });
});

describe('after the auth matrix', () => {
  it('no git-annex-shell is left and the served repo is sound', async () => {
    await retireServer();
    expect(leftovers, 'git-annex-shell processes left running').toEqual([]);
    expect(forcedStops, 'servers that ignored SIGTERM for 20 s').toBe(0);
    await annex(served, ['fsck', '-q']);
    await annex(served, ['fsck', '-q', '--all', '--in', 'here']);
  });
});
