/**
 * Proxied remotes and a cluster behind the served repository (PROTOCOL.md §4), used by the real
 * git-annex client through the server only.
 *
 * Topology, built with git-annex's own commands:
 * - S, the served repository (the gateway);
 * - R, a bare git-annex repository that is a git remote of S, proxied (`remote.R.annex-proxy=true`);
 * - D, a directory special remote of S, proxied the same way;
 * - the cluster `mycluster` (`git annex initcluster`) with three node repositories n1..n3, git
 *   remotes of S with `remote.<n>.annex-cluster-node=mycluster`, recorded by
 *   `git annex updatecluster` (which records the proxies too) and `git annex updateproxy`.
 * The client is a clone of S made after that, so its git-annex branch already holds proxy.log and
 * cluster.log: it knows origin-R, origin-D, origin-mycluster and origin-n1..n3, and reaches every
 * one of them through origin's annexUrl.
 */
import { readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectJson, expectLocked, expectStatus, jsonBody, P2PApi, type HttpResult } from './api';
import {
  addAndCommit,
  annex,
  annexStatus,
  annexUrlFor,
  contentLocation,
  fileDigest,
  freePort,
  git,
  keyOf,
  killAllTracked,
  listTree,
  lookupKey,
  makeClientClone,
  makeObserverClone,
  makeServedRepo,
  pollUntil,
  reportServerOutputOnFailure,
  run,
  RunningServer,
  Sandbox,
  sha256Key,
  startServer,
  stopAndCollectLeftovers,
  whereisFromBranch,
  type ClientRepo,
  type FileSpec,
  type RepoContext,
  type ServedRepo,
} from './harness';

const CLUSTER = 'mycluster';
const NODES = ['n1', 'n2', 'n3'] as const;

/** Files committed in S; all but `on-s.bin` are moved to R, D or n1 before the server starts. */
const ON_R = ['on-r.bin', 'fsck-r.bin', 'fsck-r-corrupt.bin'];
const ON_D = ['on-d.bin'];
/** On D and on the cluster node n1 only: n1's copy is the proof that D's may go. */
const ON_D_AND_N1 = ['on-d-and-n1.bin'];
/** On D (and S), for remove-before through the API. */
const ON_D_ONLY = ['remove-before-d.bin'];
const servedFiles: FileSpec[] = [
  { path: 'on-s.bin', size: 3000 },
  { path: 'on-r.bin', size: 70_000 },
  { path: 'fsck-r.bin', size: 5000 },
  { path: 'fsck-r-corrupt.bin', size: 6000 },
  { path: 'on-d.bin', size: 80_000 },
  { path: 'on-d-and-n1.bin', size: 9000 },
  { path: 'remove-before-d.bin', size: 7000 },
];

let sandbox: Sandbox;
let served: ServedRepo;
let client: ClientRepo;
let server: RunningServer | undefined;
let serverPid = -1;
/** Sizes and hashes of the files as committed, before their content left S. */
const original = new Map<string, { size: number; sha256: string }>();
const repos: Record<string, RepoContext & { uuid: string }> = {};
let dUuid: string;
let dDir: string;
let clusterUuid: string;
let nodeUuids: string[];

reportServerOutputOnFailure(() => [server]);

async function uuidOf(repo: RepoContext): Promise<string> {
  return (await git(repo, ['config', 'annex.uuid'])).stdout.trim();
}

/** A clone of S with its own git-annex uuid, added to S as the git remote `name`. */
async function makeRemoteRepo(
  name: string,
  { bare = false } = {},
): Promise<RepoContext & { uuid: string }> {
  const dir = sandbox.path(bare ? `${name}.git` : name);
  const clone = ['clone', '-q', ...(bare ? ['--bare'] : []), served.dir, dir];
  await run('git', clone, { cwd: sandbox.root, env: served.env });
  const repo: RepoContext = { dir, env: served.env };
  await annex(repo, ['init', '-q', name]);
  await git(served, ['remote', 'add', name, dir]);
  return { ...repo, uuid: await uuidOf(repo) };
}

/** The uuids `git annex whereis` lists for a file in `repo`. */
async function whereisUuids(repo: RepoContext, file: string): Promise<string[]> {
  const { stdout } = await annex(repo, ['whereis', '--json', '--', file]);
  const entry = JSON.parse(stdout) as { whereis: { uuid: string }[] };
  return entry.whereis.map((w) => w.uuid).sort();
}

function timestampOf(result: HttpResult): number {
  expectStatus(result, 200);
  return jsonBody(result).timestamp as number;
}

/** The file a directory special remote keeps for `key`, if any. */
async function specialRemoteFile(dir: string, key: string): Promise<string | undefined> {
  const hit = (await listTree(dir)).find(
    (p) => path.basename(p) === key && path.basename(path.dirname(p)) === key,
  );
  return hit === undefined ? undefined : path.join(dir, hit);
}

async function expectClientBytes(file: string): Promise<void> {
  expect(await fileDigest(path.join(client.dir, file)), `${file} in the client`).toEqual(
    original.get(file),
  );
}

async function fetchFromServed(repo: RepoContext): Promise<void> {
  // origin's url points nowhere (the client reaches S over HTTP only), so fetch S's branches
  // by path into origin's tracking refs, as `git fetch origin` would.
  await git(repo, [
    'fetch',
    '-q',
    served.dir,
    '+refs/heads/git-annex:refs/remotes/origin/git-annex',
    '+refs/heads/main:refs/remotes/origin/main',
  ]);
  await git(repo, ['merge', '-q', '--no-edit', 'origin/main']);
}

beforeAll(async () => {
  sandbox = await Sandbox.create('proxies');
  served = await makeServedRepo(sandbox, sandbox.path('S'), servedFiles);
  for (const spec of servedFiles) {
    original.set(spec.path, await fileDigest(path.join(served.dir, spec.path)));
  }

  // Bare, as hosted repositories are. (A non-bare R would also record inode caches for its
  // checked-out files, and then refuse to send the content the fsck test corrupts.)
  repos.R = await makeRemoteRepo('R', { bare: true });
  for (const node of NODES) {
    repos[node] = await makeRemoteRepo(node);
    await git(served, ['config', `remote.${node}.annex-cluster-node`, CLUSTER]);
  }
  dDir = sandbox.path('D-directory');
  await run('mkdir', ['-p', dDir], { cwd: sandbox.root, env: served.env });
  await annex(served, [
    'initremote',
    '-q',
    'D',
    'type=directory',
    `directory=${dDir}`,
    'encryption=none',
  ]);
  dUuid = (await git(served, ['config', 'remote.D.annex-uuid'])).stdout.trim();
  await git(served, ['config', 'remote.R.annex-proxy', 'true']);
  await git(served, ['config', 'remote.D.annex-proxy', 'true']);
  await annex(served, ['initcluster', '-q', CLUSTER]);
  await annex(served, ['updatecluster', '-q']);
  await annex(served, ['updateproxy', '-q']);
  clusterUuid = (await git(served, ['config', `annex.cluster.${CLUSTER}`])).stdout.trim();
  nodeUuids = NODES.map((n) => repos[n]?.uuid ?? '').sort();

  await annex(served, ['copy', '-q', '--to', 'R', '--', ...ON_R]);
  await annex(served, ['copy', '-q', '--to', 'D', '--', ...ON_D, ...ON_D_AND_N1, ...ON_D_ONLY]);
  await annex(served, ['copy', '-q', '--to', 'n1', '--', ...ON_D_AND_N1]);
  // S keeps its copy of ON_D_ONLY, to put it back on D between removals.
  await annex(served, ['drop', '-q', '--', ...ON_R, ...ON_D, ...ON_D_AND_N1]);

  const port = await freePort();
  client = await makeClientClone(sandbox, served, sandbox.path('client'), annexUrlFor(port));
  server = await startServer({ sandbox, repo: served, auth: ['--wideopen'], port });
  serverPid = server.pid;
}, 300_000);

afterAll(async () => {
  try {
    await server?.stop();
  } finally {
    killAllTracked();
    await sandbox?.remove();
  }
});

describe('the topology', () => {
  it('is advertised on the git-annex branch and seen by the client as remotes of origin', async () => {
    const proxyLog = (await git(served, ['show', 'git-annex:proxy.log'])).stdout;
    for (const uuid of [repos.R?.uuid, dUuid, clusterUuid, ...nodeUuids]) {
      expect(proxyLog).toContain(`${uuid}:`);
    }
    const info = JSON.parse((await annex(client, ['info', '--json', 'origin'])).stdout) as Record<
      string,
      unknown
    >;
    expect(info['gateway to cluster']).toBe(`origin-${CLUSTER}`);
    const proxying = String(info.proxying).split(' ').sort();
    expect(proxying).toEqual(['origin-D', 'origin-R', ...NODES.map((n) => `origin-${n}`)].sort());
    const cluster = JSON.parse(
      (await annex(client, ['info', '--json', `origin-${CLUSTER}`])).stdout,
    ) as Record<string, unknown>;
    expect(cluster).toMatchObject({ uuid: clusterUuid, cluster: 'true', proxied: 'true' });
  });
});

describe('proxied git-annex repository R and special remote D', () => {
  it('get from origin-R: the content comes from R through S, which keeps no copy', async () => {
    const file = 'on-r.bin';
    const key = keyOf(served, file);
    expect(await whereisUuids(client, file)).toEqual([repos.R?.uuid]);
    expectJson(await new P2PApi(server!.port, repos.R!.uuid).checkpresent(key), 200, {
      present: true,
    });
    expectJson(await new P2PApi(server!.port, served.uuid).checkpresent(key), 200, {
      present: false,
    });
    const { stdout } = await annex(client, ['get', '--', file]);
    expect(stdout).toContain('from origin-R');
    await expectClientBytes(file);
    expect(await contentLocation(served, key), 'S must not keep a copy').toBeUndefined();
    expect(await contentLocation(repos.R!, key)).toBeDefined();
  });

  it('get from origin-D: the content comes from the directory special remote', async () => {
    const file = 'on-d.bin';
    const key = keyOf(served, file);
    expect(await whereisUuids(client, file)).toEqual([dUuid]);
    expectJson(await new P2PApi(server!.port, dUuid).checkpresent(key), 200, { present: true });
    const { stdout } = await annex(client, ['get', '--', file]);
    expect(stdout).toContain('from origin-D');
    await expectClientBytes(file);
    expect(await contentLocation(served, key), 'S must not keep a copy').toBeUndefined();
  });

  it('fsck --from origin-R passes on good content', async () => {
    const file = 'fsck-r.bin';
    const { stdout } = await annex(client, ['fsck', '--json', '--from', 'origin-R', '--', file]);
    expect(JSON.parse(stdout)).toMatchObject({ command: 'fsck', file, success: true });
    expect(await contentLocation(repos.R!, keyOf(served, file))).toBeDefined();
  });

  it('fsck --from origin-R fails on corrupt content and removes it from R', async () => {
    const file = 'fsck-r-corrupt.bin';
    const key = keyOf(served, file);
    const location = await contentLocation(repos.R!, key);
    expect(location).toBeDefined();
    await run('chmod', ['u+w', path.dirname(location!), location!], {
      cwd: sandbox.root,
      env: served.env,
    });
    // Same size, other bytes: only the checksum can tell.
    const bytes = await readFile(location!);
    bytes.fill(0x5a, 0, 64);
    await writeFile(location!, bytes);
    const result = await annexStatus(client, ['fsck', '--from', 'origin-R', '--', file]);
    expect(result.code, `${result.stdout}${result.stderr}`).not.toBe(0);
    // fsck --from drops bad content from the remote: that remove went through S to R.
    expect(await contentLocation(repos.R!, key)).toBeUndefined();
    expectJson(await new P2PApi(server!.port, repos.R!.uuid).checkpresent(key), 200, {
      present: false,
    });
  });

  it('a v1 put to the proxied special remote stores the right bytes; the next request works', async () => {
    const body = Buffer.from(`v1 put to the special remote ${Date.now()}\n`);
    const key = sha256Key(body);
    const api = new P2PApi(server!.port, dUuid);
    expectJson(await api.put(key, body, { version: 1 }), 200, { stored: true });
    const stored = await specialRemoteFile(dDir, key);
    expect(stored, 'D must hold the key').toBeDefined();
    expect(await readFile(stored!)).toEqual(body);
    // Same client, uuid and version: the session the put used serves the next requests.
    expectJson(await api.checkpresent(key, 1), 200, { present: true });
    const got = await api.get(key, { version: 1 });
    expectStatus(got, 200);
    expect(got.body).toEqual(body);
    await annex(served, ['fsck', '-q', '--from', 'D', '--key', key]);
  });

  it.each([0, 1, 2, 3, 4] as const)(
    'a v%i put of wrong content for a checksum key to the special remote: stored:false, nothing stored',
    async (version) => {
      const right = Buffer.from(`the right content, v${version} ${Date.now()}\n`);
      const wrong = Buffer.from(right.toString('utf8').toUpperCase());
      const key = sha256Key(right);
      const api = new P2PApi(server!.port, dUuid);
      const answer = await api.put(key, wrong, { version });
      expectJson(answer, 200, version >= 2 ? { stored: false, plusuuids: [] } : { stored: false });
      expect(await specialRemoteFile(dDir, key), 'D must not hold the key').toBeUndefined();
      expect((await annexStatus(served, ['checkpresentkey', key, 'D'])).code).toBe(1);
      // The right content then goes through at the same version.
      expectJson(
        await api.put(key, right, { version }),
        200,
        version >= 2 ? { stored: true, plusuuids: [] } : { stored: true },
      );
      expect(await readFile((await specialRemoteFile(dDir, key))!)).toEqual(right);
      await annex(served, ['fsck', '-q', '--from', 'D', '--key', key]);
    },
  );

  it('gettimestamp of D answers (v3, v4) from the clock its remove-before is judged by', async () => {
    const api = new P2PApi(server!.port, dUuid);
    const own = new P2PApi(server!.port, served.uuid);
    for (const version of [0, 1, 2] as const) {
      expectStatus(await api.gettimestamp(version), 404);
    }
    for (const version of [3, 4] as const) {
      // S's own timestamp is git-annex-shell's clock (the host's boot clock).
      const before = timestampOf(await own.gettimestamp(version));
      const result = await api.gettimestamp(version);
      expectJson(result, 200, { timestamp: expect.any(Number) as unknown });
      const after = timestampOf(await own.gettimestamp(version));
      expect(timestampOf(result)).toBeGreaterThanOrEqual(before);
      expect(timestampOf(result)).toBeLessThanOrEqual(after);
    }
  });

  it('remove-before on D removes only while its timestamp is still ahead (v3, v4 only)', async () => {
    const file = ON_D_ONLY[0]!;
    const key = keyOf(served, file);
    const api = new P2PApi(server!.port, dUuid);
    for (const version of [0, 1, 2] as const) {
      expectStatus(await api.removeBefore(key, 1, version), 404);
    }
    for (const version of [3, 4] as const) {
      const now = timestampOf(await api.gettimestamp(version));
      // The clock never goes back, so a deadline of now (or earlier) has passed.
      for (const deadline of [now - 60, now]) {
        expectJson(await api.removeBefore(key, deadline, version), 200, {
          removed: false,
          plusuuids: [],
        });
        expect(await specialRemoteFile(dDir, key), `v${version}, ${deadline}`).toBeDefined();
      }
      expectJson(await api.removeBefore(key, now + 600, version), 200, {
        removed: true,
        plusuuids: [],
      });
      expect(await specialRemoteFile(dDir, key), `v${version}`).toBeUndefined();
      expectJson(await api.checkpresent(key, version), 200, { present: false });
      await annex(served, ['copy', '-q', '--to', 'D', '--', file]);
    }
  });

  it('drop --from origin-D, proven by a lock on cluster node n1 taken through the server', async () => {
    const file = ON_D_AND_N1[0]!;
    const key = keyOf(served, file);
    const n1 = repos.n1!;
    // A node's copy is also the cluster's.
    expect(await whereisUuids(client, file)).toEqual([dUuid, n1.uuid, clusterUuid].sort());
    const { stdout } = await annex(client, ['drop', '--from', 'origin-D', '--', file]);
    expect(stdout).toMatch(/locking origin-n1/);
    expect(await specialRemoteFile(dDir, key), 'D must not hold it any more').toBeUndefined();
    expect(await contentLocation(n1, key), 'n1 keeps its copy').toBeDefined();
    expect(await whereisUuids(client, file)).toEqual([n1.uuid, clusterUuid].sort());
    // The proof's lock is gone: n1 takes a new one at once.
    const lockid = expectLocked(await new P2PApi(server!.port, n1.uuid).lockcontent(key));
    expectJson(await new P2PApi(server!.port, n1.uuid).unlock(lockid), 200, { locked: false });
  });
});

describe('the cluster', () => {
  const clientFile = 'up/to-cluster.bin';
  let key: string;

  async function nodesHolding(k: string): Promise<string[]> {
    const holding: string[] = [];
    for (const node of NODES) {
      if ((await contentLocation(repos[node]!, k)) !== undefined) {
        holding.push(repos[node]!.uuid);
      }
    }
    return holding.sort();
  }

  it('copy --to origin-mycluster lands the content on every node', async () => {
    await addAndCommit(client, [{ path: clientFile, size: 50_000 }]);
    key = await lookupKey(client, clientFile);
    original.set(clientFile, await fileDigest(path.join(client.dir, clientFile)));
    const { stdout } = await annex(client, ['copy', '--to', `origin-${CLUSTER}`, '--', clientFile]);
    expect(stdout).toContain(`to origin-${CLUSTER}`);
    expect(await nodesHolding(key)).toEqual(nodeUuids);
    for (const node of NODES) {
      const location = await contentLocation(repos[node]!, key);
      expect(await fileDigest(location!), `${node}'s copy`).toEqual(original.get(clientFile));
      expectJson(await new P2PApi(server!.port, repos[node]!.uuid).checkpresent(key), 200, {
        present: true,
      });
    }
    expectJson(await new P2PApi(server!.port, clusterUuid).checkpresent(key), 200, {
      present: true,
    });
    // The client learnt the nodes from the put's plusuuids: its git-annex branch has not been
    // fetched since, so nothing else could have told it.
    expect(await whereisUuids(client, clientFile)).toEqual(
      [client.uuid, clusterUuid, ...nodeUuids].sort(),
    );
    expect(await contentLocation(served, key), 'the gateway is not a node').toBeUndefined();
  });

  it('putoffset to the cluster for content it stores: alreadyhave, naming the nodes from v2 on', async () => {
    const api = new P2PApi(server!.port, clusterUuid);
    expectStatus(await api.putoffset(key, 0), 404);
    expectJson(await api.putoffset(key, 1), 200, { alreadyhave: true });
    for (const version of [2, 3, 4] as const) {
      const result = await api.putoffset(key, version);
      expectJson(result, 200, { alreadyhave: true, plusuuids: expect.any(Array) as unknown });
      expect((jsonBody(result).plusuuids as string[]).slice().sort(), `v${version}`).toEqual(
        nodeUuids,
      );
    }
    expect(await nodesHolding(key)).toEqual(nodeUuids);
  });

  it('a local drop locks a node through the gateway; get --from origin-mycluster brings it back', async () => {
    const drop = await annex(client, ['drop', '--', clientFile]);
    expect(drop.stdout).toMatch(/locking origin-n[123]/);
    expect(await contentLocation(client, key)).toBeUndefined();
    const get = await annex(client, ['get', '--from', `origin-${CLUSTER}`, '--', clientFile]);
    expect(get.stdout).toContain(`from origin-${CLUSTER}`);
    await expectClientBytes(clientFile);
    expect(await nodesHolding(key)).toEqual(nodeUuids);
  });

  it('drop --from origin-mycluster removes the content from every node', async () => {
    await annex(client, ['drop', '--from', `origin-${CLUSTER}`, '--', clientFile]);
    expect(await nodesHolding(key)).toEqual([]);
    for (const uuid of [clusterUuid, ...nodeUuids]) {
      expectJson(await new P2PApi(server!.port, uuid).checkpresent(key), 200, { present: false });
    }
    expect(await whereisUuids(client, clientFile)).toEqual([client.uuid]);
    await expectClientBytes(clientFile);
  });

  it("S's git-annex branch shows a copy to the cluster, then its drop, about a second later", async () => {
    // The nodes' location logs live in S, written by S's sessions into its journal.
    const observer = await makeObserverClone(sandbox, served, sandbox.path('observer'));
    const file = 'up/logged-in-s.bin';
    await addAndCommit(client, [{ path: file, size: 10_000 }]);
    const logged = await lookupKey(client, file);
    const nodesOnBranch = (want: string[]) =>
      pollUntil(
        `nodes ${want.length === 0 ? 'gone' : 'present'} on S's git-annex branch`,
        async () => {
          const where = await whereisFromBranch(observer, served, logged);
          return nodeUuids.filter((u) => where.includes(u)).join() === want.join()
            ? true
            : undefined;
        },
        { timeoutMs: 20_000, intervalMs: 250 },
      );
    await annex(client, ['copy', '--to', `origin-${CLUSTER}`, '--', file]);
    await nodesOnBranch(nodeUuids);
    await annex(client, ['drop', '--from', `origin-${CLUSTER}`, '--', file]);
    await nodesOnBranch([]);
  });

  it('put through the API: plusuuids name the nodes from v2 on, and only there', async () => {
    for (const version of [0, 1, 2, 3, 4] as const) {
      const body = Buffer.from(`cluster put at v${version} ${Date.now()}\n`);
      const k = sha256Key(body);
      const api = new P2PApi(server!.port, clusterUuid);
      const result = await api.put(k, body, { version });
      if (version < 2) {
        expectJson(result, 200, { stored: true });
      } else {
        expectJson(result, 200, { stored: true, plusuuids: expect.any(Array) as unknown });
        expect((jsonBody(result).plusuuids as string[]).slice().sort()).toEqual(nodeUuids);
      }
      expect(await nodesHolding(k), `v${version} put`).toEqual(nodeUuids);
      const removed = await api.remove(k, version);
      if (version < 2) {
        expectJson(removed, 200, { removed: true });
      } else {
        expectJson(removed, 200, { removed: true, plusuuids: expect.any(Array) as unknown });
        expect((jsonBody(removed).plusuuids as string[]).slice().sort()).toEqual(nodeUuids);
      }
      expect(await nodesHolding(k), `v${version} remove`).toEqual([]);
    }
  });
});

describe('a proxied remote added while the server runs', () => {
  it('is served without a restart once S records it', async () => {
    const late = await makeRemoteRepo('R2');
    repos.R2 = late;
    const api = new P2PApi(server!.port, late.uuid);
    expectStatus(await api.checkpresent(sha256Key(Buffer.from('x'))), 404);

    await git(served, ['config', 'remote.R2.annex-proxy', 'true']);
    await annex(served, ['updateproxy', '-q']);
    const file = 'late/on-r2.bin';
    await addAndCommit(served, [{ path: file, size: 33_333 }]);
    original.set(file, await fileDigest(path.join(served.dir, file)));
    await annex(served, ['copy', '-q', '--to', 'R2', '--', file]);
    await annex(served, ['drop', '-q', '--', file]);
    const key = await lookupKey(served, file);

    await fetchFromServed(client);
    const info = JSON.parse((await annex(client, ['info', '--json', 'origin'])).stdout) as Record<
      string,
      unknown
    >;
    expect(String(info.proxying).split(' ')).toContain('origin-R2');
    // The server notices a changed git-annex branch on the next lookup, at most once a second.
    await pollUntil('R2 served', async () => {
      const result = await api.checkpresent(key);
      return result.status === 404 ? undefined : result;
    });
    const { stdout } = await annex(client, ['get', '--', file]);
    expect(stdout).toContain('from origin-R2');
    await expectClientBytes(file);
    expect(server!.exited).toBe(false);
    expect(server!.pid).toBe(serverPid);
  });
});

describe('after the proxy flows', () => {
  it('the server stops on SIGTERM and leaves no git-annex-shell behind', async () => {
    if (server === undefined) {
      throw new Error('server never started');
    }
    const { stops, leftovers } = await stopAndCollectLeftovers([server], [sandbox.root]);
    expect(leftovers, 'git-annex-shell processes left running').toEqual([]);
    expect(stops[0]?.forced, 'server ignored SIGTERM for 20 s').toBe(false);
    await annex(served, ['fsck', '-q', '--all', '--in', 'here'], 240_000);
  });
});
