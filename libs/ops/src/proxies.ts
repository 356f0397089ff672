/**
 * Reads what one repository proxies from its git-annex branch (PROTOCOL.md §4), and a cheap
 * stamp that changes whenever that could have changed. remote.log (remote-log.ts) is read with
 * proxy.log and cluster.log, to tell the proxied special remotes from proxied repositories.
 *
 * Where git-annex keeps these files:
 * - committed: `proxy.log` and `cluster.log` at the top of the `git-annex` branch;
 * - not yet committed: `<gitdir>/annex/journal/<file>`, which then holds the file's whole new
 *   content and wins over the branch. `git annex updateproxy`/`updatecluster` commit at once
 *   (seen: the journal was empty afterwards), but with `annex.alwayscommit=false` the new
 *   proxy.log stayed in the journal until the next commit (seen with `git -c
 *   annex.alwayscommit=false annex updateproxy`), and git-annex-shell already obeys it then.
 * - a repository with private uuids (annex.private) also has `<gitdir>/annex/journal-private/`;
 *   git-annex reads the branch, then the journal, then the private journal as one log, so that is
 *   done here too.
 * A last line without a newline in a journal file is an append in progress and is ignored.
 *
 * Not read: git-annex branches of remotes not yet merged into the local `git-annex` branch. The
 * gateway's own line is written by the gateway itself, so it is always local.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { firstLine, runGit, runGitWithInput } from './git';
import { completeLines, proxiedUuids, type ProxiedUuid } from './proxy-log';
import { specialRemoteUuids } from './remote-log';

const BRANCH = 'refs/heads/git-annex';
const FILES = ['proxy.log', 'cluster.log', 'remote.log'] as const;

/** Files whose change can change what is proxied, relative to the git (common) directory. */
const WATCHED = [
  'refs/heads/git-annex',
  'packed-refs',
  'reftable/tables.list',
  ...FILES.map((f) => `annex/journal/${f}`),
  ...FILES.map((f) => `annex/journal-private/${f}`),
];

async function fileStamp(path: string): Promise<string> {
  try {
    const s = await stat(path, { bigint: true });
    return `${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR' ? '-' : `?${code ?? 'error'}`;
  }
}

/**
 * A value that changes when the git-annex branch ref (loose, packed or in a reftable) or a
 * journalled proxy.log/cluster.log/remote.log changes. Only stats: no git process.
 */
export async function branchStamp(commonDir: string): Promise<string> {
  const stamps = await Promise.all(WATCHED.map((f) => fileStamp(join(commonDir, f))));
  return stamps.join('|');
}

/** The absolute git common directory of the repository whose git directory is `gitDir`. */
export async function gitCommonDir(git: string, gitDir: string): Promise<string> {
  const res = await runGit(git, [
    `--git-dir=${gitDir}`,
    'rev-parse',
    '--path-format=absolute',
    '--git-common-dir',
  ]);
  const dir = res.stdout.trim();
  if (res.code !== 0 || dir === '') {
    throw new Error(`git rev-parse --git-common-dir failed: ${firstLine(res.stderr)}`);
  }
  return dir;
}

/** FILES as committed on the git-annex branch ('' when absent), in their order. */
async function readBranchFiles(git: string, commonDir: string): Promise<string[]> {
  const input = FILES.map((f) => `${BRANCH}:${f}\n`).join('');
  const res = await runGitWithInput(git, [`--git-dir=${commonDir}`, 'cat-file', '--batch'], input);
  if (res.code !== 0) {
    throw new Error(`git cat-file failed: ${firstLine(res.stderr)}`);
  }
  const out = res.stdout;
  const contents: string[] = [];
  let pos = 0;
  for (const file of FILES) {
    const eol = out.indexOf(0x0a, pos);
    if (eol < 0) {
      throw new Error(`git cat-file gave no answer for ${file}`);
    }
    const header = out.toString('utf8', pos, eol);
    pos = eol + 1;
    // `<name> missing` (no branch, or no such file on it), or `<oid> <type> <size>`.
    const m = /^[0-9a-f]+ (\S+) ([0-9]+)$/.exec(header);
    if (m === null) {
      if (header.endsWith(' missing')) {
        contents.push('');
        continue;
      }
      throw new Error(`git cat-file: unexpected answer ${JSON.stringify(header)}`);
    }
    const size = Number(m[2]);
    if (pos + size > out.length) {
      throw new Error(`git cat-file: truncated ${file}`);
    }
    contents.push(m[1] === 'blob' ? out.toString('utf8', pos, pos + size) : '');
    pos += size + 1; // the content is followed by a newline
  }
  return contents;
}

async function readJournal(path: string): Promise<string | undefined> {
  try {
    return completeLines(await readFile(path, 'utf8'));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      return undefined;
    }
    throw error;
  }
}

/**
 * The uuids that the repository `gatewayUuid` at `commonDir` serves by proxy, from its git-annex
 * branch and journal. Throws when git or a journal file cannot be read.
 */
export async function readProxiedUuids(
  git: string,
  commonDir: string,
  gatewayUuid: string,
): Promise<ProxiedUuid[]> {
  // The journal is read first: git-annex updates the branch before deleting journal files, so a
  // journal file missing here means the branch read next already has its content.
  const journals = await Promise.all(
    FILES.map(async (f) => ({
      shared: await readJournal(join(commonDir, 'annex', 'journal', f)),
      private: await readJournal(join(commonDir, 'annex', 'journal-private', f)),
    })),
  );
  const branch = await readBranchFiles(git, commonDir);
  const [proxyLog, clusterLog, remoteLog] = FILES.map((_, i) => {
    const committed = branch[i] ?? '';
    const { shared, private: priv } = journals[i] as {
      shared: string | undefined;
      private: string | undefined;
    };
    if (priv === undefined) {
      return shared ?? committed;
    }
    return [committed, shared ?? '', priv].join('\n');
  }) as [string, string, string];
  return proxiedUuids(gatewayUuid, proxyLog, clusterLog, specialRemoteUuids(remoteLog));
}
