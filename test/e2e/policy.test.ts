/**
 * Hosting many repositories: a --directory holding public/a, labs/alice/b, labs/bob/c and
 * private/d, served with a policy file (and --path-prefix), in embedded and cluster mode. For each
 * repository and each of anonymous, alice, bob and a wrong password: the API's answer to each
 * permission class, by uuid and by path, and get, copy --to, drop --from and a drop that locks
 * the remote's copy through the real git-annex client. Then a reload that revokes a user, bad
 * policy files at start-up, and an auth hook written here (allow, deny, 401, slow, down) with
 * the cache's effect on the number of its calls.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { copyFile, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { type AddressInfo } from 'node:net';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  basicAuth,
  expectJson,
  expectLocked,
  expectStatus,
  P2PApi,
  WWW_AUTHENTICATE,
  type HttpResult,
  type QueryValue,
  type Version,
} from './api';
import {
  annex,
  annexStatus,
  contentLocation,
  freePort,
  git,
  isReference,
  keyOf,
  killAllTracked,
  makeClientClone,
  makeServedRepo,
  pollUntil,
  PROJECT_BIN,
  reportServerOutputOnFailure,
  runStatus,
  Sandbox,
  startServer,
  stopAndCollectLeftovers,
  type ClientRepo,
  type RunningServer,
  type ServedRepo,
  type ServerKind,
  type UserSpec,
} from './harness';

type OpClass = 'read' | 'append' | 'remove' | 'lock';
type Status = 200 | 401 | 403 | 404;
type Row = [read: Status, append: Status, remove: Status, lock: Status];
const CLASSES: readonly OpClass[] = ['read', 'append', 'remove', 'lock'];
const REPOS = ['public/a', 'labs/alice/b', 'labs/bob/c', 'private/d'] as const;
type RepoName = (typeof REPOS)[number];
const IDENTITIES = ['anonymous', 'alice', 'bob', 'wrong password'] as const;
type Identity = (typeof IDENTITIES)[number];
const PREFIX = '/hosting';

const USERS: Record<string, UserSpec> = {
  alice: { password: 'alice-pw' },
  bob: { password: 'bob-pw' },
};
const AUTHORIZATION: Record<Identity, string | undefined> = {
  anonymous: undefined,
  alice: basicAuth('alice', 'alice-pw'),
  bob: basicAuth('bob', 'bob-pw'),
  'wrong password': basicAuth('alice', 'not the password'),
};

const POLICY = `# who may do what, per repository
repositories:
  - path: "public/**"
    anonymous: readonly
    users:
      alice: full
      "*": readonly
  - path: "labs/alice/**"
    users: { alice: full }
  - path: "labs/bob/**"
    anonymous: appendonly
    nolocking: true
    users: { bob: full }
`;

const all = (status: Status): Row => [status, status, status, status];
const EXPECTED: Record<RepoName, Record<Identity, Row>> = {
  'public/a': {
    anonymous: [200, 401, 401, 200],
    alice: all(200),
    bob: [200, 403, 403, 200],
    'wrong password': [200, 401, 401, 200],
  },
  'labs/alice/b': {
    anonymous: all(401),
    alice: all(200),
    // bob logged in, but the rule does not name him and anonymous users get nothing here
    bob: all(403),
    'wrong password': all(401),
  },
  'labs/bob/c': {
    anonymous: [200, 200, 401, 401],
    // alice is not named: what anonymous users may do, and 403 beyond it
    alice: [200, 200, 403, 403],
    bob: all(200),
    'wrong password': [200, 200, 401, 401],
  },
  // no rule: not served at all
  'private/d': {
    anonymous: all(404),
    alice: all(404),
    bob: all(404),
    'wrong password': all(404),
  },
};

/** The API of one uuid, by uuid (`scope` undefined) or below a repository's path. */
class ScopedApi extends P2PApi {
  constructor(
    port: number,
    uuid: string,
    readonly scope: string | undefined,
    authorization?: string,
  ) {
    super(port, uuid, randomUUID(), authorization);
  }

  override withAuthorization(authorization: string | undefined): ScopedApi {
    return new ScopedApi(this.port, this.serverUuid, this.scope, authorization);
  }

  override path(
    version: Version | string,
    op: string,
    params: Record<string, QueryValue> = {},
  ): string {
    const plain = super.path(version, op, params);
    return this.scope === undefined ? plain : `${PREFIX}/${this.scope}${plain}`;
  }
}

let sandbox: Sandbox;
const repos = new Map<RepoName, ServedRepo>();
const presentKey = new Map<RepoName, string>();
const absentKey = `SHA256E-s5--${createHash('sha256').update(randomBytes(8)).digest('hex')}.bin`;
const servers: (RunningServer | undefined)[] = [];

reportServerOutputOnFailure(() => servers);

beforeAll(async () => {
  sandbox = await Sandbox.create('policy');
  for (const name of REPOS) {
    const repo = await makeServedRepo(sandbox, sandbox.path('repos', name), [
      { path: 'present.bin', size: 2000 },
    ]);
    repos.set(name, repo);
    presentKey.set(name, keyOf(repo, 'present.bin'));
  }
  await writeFile(sandbox.path('policy.yaml'), POLICY);
});

afterAll(async () => {
  try {
    await stopAndCollectLeftovers(servers, [sandbox.root]);
  } finally {
    killAllTracked();
    await sandbox?.remove();
  }
});

const repo = (name: RepoName): ServedRepo => {
  const found = repos.get(name);
  if (found === undefined) {
    throw new Error(name);
  }
  return found;
};

async function start(kind: ServerKind, extraArgs: string[]): Promise<RunningServer> {
  const server = await startServer({
    sandbox,
    // also in --directory: served once, its location the path below the directory
    repo: repo('public/a'),
    kind,
    users: USERS,
    auth: ['--authenv-http'],
    extraArgs: ['--directory', sandbox.path('repos'), ...extraArgs],
  });
  servers.push(server);
  return server;
}

/** Performs one operation of the class and checks the answer. */
async function checkClass(api: P2PApi, key: string, cls: OpClass, status: Status): Promise<void> {
  let result: HttpResult;
  switch (cls) {
    case 'read':
      result = await api.checkpresent(key);
      if (status === 200) {
        expectJson(result, 200, { present: true });
      }
      break;
    case 'append':
      result = await api.putoffset(absentKey);
      if (status === 200) {
        expectJson(result, 200, { offset: 0 });
      }
      break;
    case 'remove':
      result = await api.remove(absentKey);
      if (status === 200) {
        expectJson(result, 200, { removed: true, plusuuids: [] });
      }
      break;
    case 'lock':
      result = await api.lockcontent(key);
      if (status === 200) {
        expectJson(await api.unlock(expectLocked(result)), 200, { locked: false });
      }
      break;
  }
  expectStatus(result, status);
  if (status === 401) {
    expect(result.headers['www-authenticate']).toMatch(WWW_AUTHENTICATE);
  }
}

function expectFailed(result: { code: number | null; stdout: string; stderr: string }): void {
  expect(result.code, `${result.stdout}${result.stderr}`).not.toBe(0);
}

/** Gives `client` the content of `file` without the server (reinjected from the served repo). */
async function giveContent(client: ClientRepo, served: ServedRepo, file: string): Promise<void> {
  const object = await contentLocation(served, keyOf(served, file));
  if (object === undefined) {
    throw new Error(`${served.dir} lacks ${file}`);
  }
  const copy = path.join(sandbox.root, `reinject-${randomUUID()}${path.extname(file)}`);
  await copyFile(object, copy);
  await annex(client, ['reinject', '--known', copy]);
}

/** A credential helper answering `user` / `password` (none for anonymous). */
async function useIdentity(client: ClientRepo, identity: Identity): Promise<void> {
  const [user, password] =
    identity === 'wrong password'
      ? ['alice', 'not the password']
      : [identity, USERS[identity]?.password ?? ''];
  if (identity === 'anonymous') {
    await runStatus('git', ['config', '--unset-all', 'credential.helper'], {
      cwd: client.dir,
      env: client.env,
    });
    return;
  }
  await git(client, [
    'config',
    'credential.helper',
    `!f() { echo username=${user}; echo password='${password}'; }; f`,
  ]);
}

/** How many lockcontent requests for `uuid` the server's access log shows answered `status`. */
function lockAnswers(server: RunningServer, uuid: string, status: Status): number {
  const line = new RegExp(
    `"route":"lockcontent","version":"v\\d","repository":"${uuid}","status":${status}`,
    'g',
  );
  return server.output().match(line)?.length ?? 0;
}

const MODES: ServerKind[] = isReference() ? [] : ['project', 'cluster'];

describe.each(MODES)('a policy file (%s)', (kind) => {
  let server: RunningServer;

  beforeAll(async () => {
    server = await start(kind, ['--policy', sandbox.path('policy.yaml'), '--path-prefix', PREFIX]);
  });

  for (const name of REPOS) {
    for (const identity of IDENTITIES) {
      for (const [index, cls] of CLASSES.entries()) {
        const status = EXPECTED[name][identity][index] as Status;
        it(`API ${name}, ${identity}, ${cls} → ${status} (by uuid and by path)`, async () => {
          const served = repo(name);
          const key = presentKey.get(name) ?? '';
          const auth = AUTHORIZATION[identity];
          await checkClass(
            new ScopedApi(server.port, served.uuid, undefined, auth),
            key,
            cls,
            status,
          );
          await checkClass(new ScopedApi(server.port, served.uuid, name, auth), key, cls, status);
        });
      }
    }
  }

  it('by path, only that repository is reachable; the prefix is optional', async () => {
    const alice = AUTHORIZATION.alice;
    // public/a's path with labs/alice/b's uuid: 404, though alice may read both
    const crossed = new ScopedApi(server.port, repo('labs/alice/b').uuid, 'public/a', alice);
    expectStatus(await crossed.checkpresent(presentKey.get('labs/alice/b') ?? ''), 404);
    const wrongPath = new ScopedApi(server.port, repo('public/a').uuid, 'public/zz', alice);
    expectStatus(await wrongPath.checkpresent(presentKey.get('public/a') ?? ''), 404);
    // without the prefix
    const api = new P2PApi(server.port, repo('public/a').uuid);
    const query = { key: presentKey.get('public/a') ?? '', clientuuid: api.clientUuid };
    const unprefixed = `/public/a${api.path(4, 'checkpresent', query)}`;
    expectJson(await api.request(unprefixed, { method: 'POST' }), 200, { present: true });
  });

  for (const name of REPOS.slice(0, 3)) {
    it(`the git-annex client on ${name}: get, drop (locking), copy --to, drop --from`, async () => {
      const served = repo(name);
      const byUuid = `annex+http://127.0.0.1:${server.port}/git-annex/`;
      const byPath = `annex+http://127.0.0.1:${server.port}${PREFIX}/${name}/git-annex/`;
      const dir = sandbox.path('clients', kind, name);
      const client = await makeClientClone(sandbox, served, dir, byUuid);
      for (const identity of IDENTITIES) {
        const [read, append, remove, lock] = EXPECTED[name][identity];
        const note = `${name}, ${identity}`;
        await useIdentity(client, identity);
        for (const url of [byUuid, byPath]) {
          await git(client, ['config', 'remote.origin.annexUrl', url]);
          // get
          const got = await annexStatus(client, ['get', 'present.bin']);
          if (read === 200) {
            expect(got.code, `get ${note} ${url}: ${got.stderr}`).toBe(0);
          } else {
            expectFailed(got);
          }
          await annexStatus(client, ['drop', '--force', 'present.bin']);
        }
        await git(client, ['config', 'remote.origin.annexUrl', byPath]);
        // A local drop asks the server to lock its copy; when it refuses, the client falls
        // back to checkpresent (Annex/NumCopies.hs), so the drop fails only when both are
        // refused. The server's access log shows the lock's answer.
        await giveContent(client, served, 'present.bin');
        const locks = () => lockAnswers(server, served.uuid, lock);
        const locksBefore = locks();
        const dropped = await annexStatus(client, ['drop', 'present.bin']);
        if (lock === 200 || read === 200) {
          expect(dropped.code, `drop (lock) ${note}: ${dropped.stderr}`).toBe(0);
        } else {
          expectFailed(dropped);
        }
        expect(locks(), `lockcontent answered ${lock} for ${note}`).toBeGreaterThan(locksBefore);
        await annexStatus(client, ['drop', '--force', 'present.bin']);
        // copy --to
        const file = `up-${identity.replace(' ', '-')}.bin`;
        await writeFile(path.join(dir, file), randomBytes(3000));
        await annex(client, ['add', '-q', file]);
        await git(client, ['commit', '-q', '-m', `add ${file}`]);
        const copied = await annexStatus(client, ['copy', '--to', 'origin', file]);
        if (append === 200) {
          expect(copied.code, `copy --to ${note}: ${copied.stderr}`).toBe(0);
          expect(
            await contentLocation(served, (await annex(client, ['lookupkey', file])).stdout.trim()),
          ).toBeDefined();
        } else {
          expectFailed(copied);
        }
        // drop --from (of the served file, whose content the client has), then restore it
        await giveContent(client, served, 'present.bin');
        const removed = await annexStatus(client, ['drop', '--from', 'origin', 'present.bin']);
        if (remove === 200) {
          expect(removed.code, `drop --from ${note}: ${removed.stderr}`).toBe(0);
          expect(await contentLocation(served, keyOf(served, 'present.bin'))).toBeUndefined();
          const object = await contentLocation(client, keyOf(served, 'present.bin'));
          const copy = path.join(sandbox.root, `restore-${randomUUID()}.bin`);
          await copyFile(object ?? '', copy);
          await annex(served, ['reinject', '--known', copy]);
          await annex(client, ['setpresentkey', keyOf(served, 'present.bin'), served.uuid, '1']);
        } else {
          expectFailed(removed);
          expect(await contentLocation(served, keyOf(served, 'present.bin'))).toBeDefined();
        }
        await annexStatus(client, ['drop', '--force', 'present.bin']);
      }
    });
  }

  it('a reload that revokes a user takes effect for the next request; a bad one is refused', async () => {
    const served = repo('labs/alice/b');
    const key = presentKey.get('labs/alice/b') ?? '';
    const alice = new ScopedApi(server.port, served.uuid, undefined, AUTHORIZATION.alice);
    expectJson(await alice.checkpresent(key), 200, { present: true });
    const reloaded = (n: number) =>
      pollUntil(`reload ${n}`, () =>
        server.output().split('policy reloaded').length > n ? true : undefined,
      );
    const before = server.output().split('policy reloaded').length - 1;
    await writeFile(
      sandbox.path('policy.yaml'),
      POLICY.replace('users: { alice: full }', 'users: { bob: readonly }'),
    );
    if (kind === 'project') {
      // SIGHUP (the cluster launcher's gateway sees the file change by itself)
      process.kill(server.pid, 'SIGHUP');
    }
    await reloaded(before + 1);
    await checkClass(alice, key, 'read', 403);

    // A file that does not parse leaves the policy in use, and says so.
    await writeFile(sandbox.path('policy.yaml'), `${POLICY}    colour: red\n`);
    if (kind === 'project') {
      process.kill(server.pid, 'SIGHUP');
    }
    await pollUntil('the refusal', () =>
      server.output().includes('policy not reloaded') ? true : undefined,
    );
    expect(server.output()).toMatch(/policy\.yaml:\d+: unknown key \\?"colour/);
    await checkClass(alice, key, 'read', 403);
    await writeFile(sandbox.path('policy.yaml'), POLICY);
    if (kind === 'project') {
      process.kill(server.pid, 'SIGHUP');
    }
    await pollUntil('alice back', async () =>
      (await alice.checkpresent(key)).status === 200 ? true : undefined,
    );
    expect(server.exited).toBe(false);
  });
});

describe.skipIf(isReference())('bad policy files', () => {
  const cases: [string, string, RegExp][] = [
    [
      'unknown key',
      'repositories:\n  - path: a\n    anonymus: readonly\n',
      /bad\.yaml:3: unknown key "anonymus"/,
    ],
    [
      'bad glob',
      'repositories:\n  - path: a\n  - path: "labs/{x"\n',
      /bad\.yaml:3: bad glob "labs\/\{x"/,
    ],
    [
      'unknown permission word',
      'repositories:\n  - path: a\n    users:\n      alice: write\n',
      /bad\.yaml:4: user "alice": permission "write" must be readonly, appendonly, full/,
    ],
  ];
  it.each(cases)('%s: refused at start-up with the line at fault', async (_, text, message) => {
    const file = sandbox.path('bad.yaml');
    await writeFile(file, text);
    const result = await runStatus(
      process.execPath,
      [
        PROJECT_BIN,
        'serve',
        '--port',
        '0',
        '--directory',
        sandbox.path('repos'),
        '--policy',
        file,
        '--log-format',
        'text',
      ],
      { cwd: sandbox.root, env: sandbox.env() },
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
  });

  it('a policy naming users while nobody can log in is warned about', async () => {
    const server = await startServer({
      sandbox,
      repo: repo('public/a'),
      kind: 'project',
      extraArgs: ['--policy', sandbox.path('policy.yaml'), '--log-format', 'text'],
    });
    servers.push(server);
    await pollUntil('the warning', () =>
      server.output().includes('the policy names users, but nobody can log in') ? true : undefined,
    );
    await server.stop();
  });

  it('--policy with --unauth-readonly is refused, saying why', async () => {
    const result = await runStatus(
      process.execPath,
      [PROJECT_BIN, 'serve', '--policy', 'p.yaml', '--unauth-readonly'],
      { cwd: sandbox.root, env: sandbox.env() },
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--policy cannot be combined with --unauth-readonly/);
  });
});

/** The forge's service: decides by the Authorization header it is given. */
class HookServer {
  readonly seen: IncomingHttpHeaders[] = [];
  private server: Server | undefined;
  port = 0;

  async start(port = 0): Promise<void> {
    this.server = createServer((request, response) => {
      this.seen.push(request.headers);
      const authorization = request.headers.authorization ?? '';
      if (authorization === 'Bearer slow') {
        return; // never answers
      }
      if (authorization === 'Bearer good' || authorization === basicAuth('dora', 'forge-pw')) {
        response.writeHead(200, { 'x-annex-user': 'dora' }).end();
      } else if (authorization === 'Bearer bad') {
        response.writeHead(403).end();
      } else {
        response.writeHead(401).end();
      }
    });
    await new Promise<void>((resolve) => this.server?.listen(port, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  calls(access: string, authorization: string): number {
    return this.seen.filter(
      (h) => h['x-annex-access'] === access && h.authorization === authorization,
    ).length;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}

describe.each(MODES)('an auth hook (%s)', (kind) => {
  const hook = new HookServer();
  let server: RunningServer;

  beforeAll(async () => {
    // The policy names alice on labs/alice/b; the hook decides for everyone else.
    await writeFile(
      sandbox.path('policy-hook.yaml'),
      'repositories:\n  - path: "labs/alice/**"\n    users: { alice: full }\n  - path: "**"\n',
    );
    await hook.start(await freePort());
    server = await start(kind, [
      '--policy',
      sandbox.path('policy-hook.yaml'),
      '--auth-hook',
      `http://127.0.0.1:${hook.port}/annex-auth`,
      // long enough that no answer expires during the test, however slow the machine
      '--auth-hook-cache',
      '600',
    ]);
  }, 180_000);
  afterAll(() => hook.stop());

  const api = (authorization: string | undefined, name: RepoName = 'labs/alice/b') =>
    new ScopedApi(server.port, repo(name).uuid, undefined, authorization);

  it('allows, denies and asks for a login as the hook says, with what the hook needs', async () => {
    const key = presentKey.get('labs/alice/b') ?? '';
    expectJson(await api('Bearer good').checkpresent(key), 200, { present: true });
    const asked = hook.seen.at(-1);
    expect(asked?.authorization).toBe('Bearer good');
    expect(asked?.['x-annex-repository-path']).toBe('labs/alice/b');
    expect(asked?.['x-annex-repository-uuid']).toBe(repo('labs/alice/b').uuid);
    expect(asked?.['x-annex-access']).toBe('read');
    await checkClass(api('Bearer good'), key, 'lock', 200);
    await checkClass(api('Bearer bad'), key, 'read', 403);
    await checkClass(api(undefined), key, 'append', 401);
    // The policy decides for the users it names, without the hook.
    const before = hook.seen.length;
    await checkClass(api(AUTHORIZATION.alice), key, 'remove', 200);
    expect(hook.seen.length).toBe(before);
  });

  it('caches answers per (Authorization, repository, access)', async () => {
    const key = presentKey.get('public/a') ?? '';
    const token = `Bearer good`;
    for (let i = 0; i < 5; i += 1) {
      await checkClass(api(token, 'public/a'), key, 'append', 200);
    }
    expect(hook.calls('append', token)).toBe(1);
    await checkClass(api(token, 'labs/bob/c'), presentKey.get('labs/bob/c') ?? '', 'append', 200);
    expect(hook.calls('append', token)).toBe(2);
  });

  it('the git-annex client gets a file with a forge login the hook accepts', async () => {
    const served = repo('labs/bob/c');
    const url = `annex+http://127.0.0.1:${server.port}/labs/bob/c/git-annex/`;
    const client = await makeClientClone(sandbox, served, sandbox.path('hook-client', kind), url);
    expectFailed(await annexStatus(client, ['get', 'present.bin']));
    await git(client, [
      'config',
      'credential.helper',
      "!f() { echo username=dora; echo password='forge-pw'; }; f",
    ]);
    await annex(client, ['get', 'present.bin']);
  });

  it('fails closed: a slow or absent hook gives 503, never access', async () => {
    const key = presentKey.get('public/a') ?? '';
    expectStatus(await api('Bearer slow', 'public/a').checkpresent(key), 503);
    await hook.stop();
    const down = await api('Bearer other', 'public/a').checkpresent(key);
    expectStatus(down, 503);
    expect(down.headers['retry-after']).toBe('1');
    // The client learns nothing of why the hook failed.
    expect(down.body.toString('utf8')).toBe('authorization service unavailable');
    await hook.start(hook.port);
    expectJson(await api('Bearer good', 'public/a').checkpresent(key), 200, { present: true });
  });
});
