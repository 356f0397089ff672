/**
 * A --directory holding 1,000 repositories, in both modes: every one is served, an unknown uuid
 * is 404, a repository added while the server runs is served and a removed one no longer is.
 * Functional assertions only (speed is measured by `npm run bench -- --only repos`).
 *
 * The repositories are copies of one template (`cp -a`), each with its own annex.uuid written
 * into its copied .git/config, so that making them costs seconds.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { P2PApi } from './api';
import {
  isReference,
  keyOf,
  makeServedRepo,
  pollUntil,
  run,
  Sandbox,
  startServer,
  type RunningServer,
  type ServedRepo,
  type ServerKind,
} from './harness';

const COUNT = 1000;
const FILE = 'data/one.bin';

let sandbox: Sandbox;
let template: ServedRepo;
let key: string;
let root: string;
const uuids: string[] = [];
/** Repositories a test removed (the modes run one after the other on the same directory). */
const removed = new Set<number>();

/** Copies the template to `dir` with a fresh uuid; returns the uuid. */
async function copyWithUuid(dir: string): Promise<string> {
  await run('cp', ['-a', template.dir, dir], { cwd: '/', env: process.env });
  const uuid = randomUUID();
  const file = path.join(dir, '.git', 'config');
  const text = await readFile(file, 'utf8');
  await writeFile(file, text.replace(/^(\s*uuid\s*=\s*).*$/m, `$1${uuid}`));
  return uuid;
}

beforeAll(async () => {
  sandbox = await Sandbox.create('many-repos');
  template = await makeServedRepo(sandbox, sandbox.path('template'), [
    { path: FILE, content: 'one small annexed file\n' },
  ]);
  await rm(path.join(template.dir, '.git', 'hooks'), { recursive: true, force: true });
  key = keyOf(template, FILE);
  root = sandbox.path('repos');
  await mkdir(root);
  // 100 copies, then that batch copied nine times; then each gets its own uuid.
  const batch = sandbox.path('batch');
  await mkdir(batch);
  for (let i = 0; i < 100; i += 1) {
    await copyWithUuid(path.join(batch, `r${String(i).padStart(2, '0')}`));
  }
  for (let b = 0; b < COUNT / 100; b += 1) {
    const copy = sandbox.path(`batch-${b}`);
    await run('cp', ['-a', batch, copy], { cwd: '/', env: process.env });
    for (let i = 0; i < 100; i += 1) {
      const dir = path.join(root, `r${String(b * 100 + i).padStart(4, '0')}`);
      await rename(path.join(copy, `r${String(i).padStart(2, '0')}`), dir);
      const uuid = randomUUID();
      const file = path.join(dir, '.git', 'config');
      const text = await readFile(file, 'utf8');
      await writeFile(file, text.replace(/^(\s*uuid\s*=\s*).*$/m, `$1${uuid}`));
      uuids.push(uuid);
    }
  }
}, 300_000);

afterAll(async () => {
  await sandbox?.remove();
});

const MODES: ServerKind[] = isReference() ? [] : ['project', 'cluster'];

describe.each(MODES)('a --directory of 1,000 repositories (%s)', (kind) => {
  let server: RunningServer | undefined;

  afterAll(async () => {
    await server?.stop();
  });

  it('serves every one of them', async () => {
    const first: ServedRepo = { ...template, dir: path.join(root, 'r0000'), uuid: uuids[0]! };
    server = await startServer({
      sandbox,
      repo: first,
      kind,
      auth: ['--wideopen'],
      extraArgs: ['--directory', root],
      // Copying and reading 1,000 repositories on a loaded machine can take a while.
      startTimeoutMs: 180_000,
    });
    const port = server.port;
    const present = uuids.filter((_, i) => !removed.has(i));
    let next = 0;
    const answers = new Map<number, number>();
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < present.length) {
          const uuid = present[next++]!;
          // Until the first full scan is done a repository not reached yet may be 503.
          const result = await pollUntil(`${uuid} answered`, async () => {
            const answer = await new P2PApi(port, uuid).checkpresent(key);
            return answer.status === 503 ? undefined : answer;
          });
          answers.set(result.status, (answers.get(result.status) ?? 0) + 1);
          if (result.status === 200) {
            expect(JSON.parse(result.body.toString())).toEqual({ present: true });
          }
        }
      }),
    );
    expect(Object.fromEntries(answers)).toEqual({ 200: present.length });
  }, 300_000);

  it('answers 404 for a uuid no repository has', async () => {
    const result = await new P2PApi(server!.port, randomUUID()).checkpresent(key);
    expect(result.status).toBe(404);
  });

  it('serves a repository added while it runs, and stops serving a removed one', async () => {
    const staged = sandbox.path(`new-${kind}`);
    const uuid = await copyWithUuid(staged);
    await rename(staged, path.join(root, `new-${kind}`));
    const api = new P2PApi(server!.port, uuid);
    const added = await pollUntil('the new repository served', async () => {
      const result = await api.checkpresent(key);
      return result.status === 200 ? result : undefined;
    });
    expect(JSON.parse(added.body.toString())).toEqual({ present: true });

    const index = kind === 'project' ? 500 : 600;
    const gone = uuids[index]!;
    const dir = path.join(root, `r${String(index).padStart(4, '0')}`);
    removed.add(index);
    await run('chmod', ['-R', 'u+w', dir], { cwd: '/', env: process.env });
    await rm(dir, { recursive: true, force: true });
    // Embedded mode forgets it (404); cluster mode knows it was served (503).
    const status = await pollUntil('the removed repository no longer served', async () => {
      const result = await new P2PApi(server!.port, gone).checkpresent(key);
      return result.status === 200 ? undefined : result.status;
    });
    expect(status).toBe(kind === 'project' ? 404 : 503);
    // The others are still served.
    expect((await new P2PApi(server!.port, uuids[index + 1]!).checkpresent(key)).status).toBe(200);
  }, 120_000);
});
