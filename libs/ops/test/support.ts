/** Real git-annex repositories in temp dirs for the P2P tests. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const GIT_ENV: NodeJS.ProcessEnv = {
  ...process.env,
  GIT_AUTHOR_NAME: 'test',
  GIT_AUTHOR_EMAIL: 'test@example.invalid',
  GIT_COMMITTER_NAME: 'test',
  GIT_COMMITTER_EMAIL: 'test@example.invalid',
};

export function run(cwd: string, command: string, args: string[]): string {
  return execFileSync(command, args, { cwd, env: GIT_ENV, encoding: 'utf8' }).trim();
}

export interface TestRepo {
  readonly path: string;
  readonly uuid: string;
  /** Adds a file to the annex; returns its key. */
  add(name: string, content: Buffer | string): string;
  /** Keys of the objects the repository holds. */
  objectCount(): number;
  remove(): void;
}

export function makeRepo(prefix = 'p2p-test-'): TestRepo {
  const path = mkdtempSync(join(tmpdir(), prefix));
  run(path, 'git', ['init', '-q', '-b', 'main']);
  run(path, 'git', ['annex', 'init', '-q', 'test-server']);
  const uuid = run(path, 'git', ['config', 'annex.uuid']);
  return {
    path,
    uuid,
    add(name, content) {
      writeFileSync(join(path, name), content);
      run(path, 'git', ['annex', 'add', '-q', name]);
      run(path, 'git', ['commit', '-qm', `add ${name}`]);
      return run(path, 'git', ['annex', 'lookupkey', name]);
    },
    objectCount() {
      return countFiles(join(path, '.git', 'annex', 'objects'));
    },
    remove() {
      rmSync(path, { recursive: true, force: true });
    },
  };
}

function countFiles(dir: string): number {
  let count = 0;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const entry of entries) {
    if (entry.isDirectory()) {
      count += countFiles(join(dir, entry.name));
    } else if (!/\.(lck|rtm|rtl)$/.test(entry.name)) {
      count += 1;
    }
  }
  return count;
}

/** `git-annex-shell` processes whose command line mentions `path`. */
export function shellProcesses(path: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) {
      continue;
    }
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    const argv = cmdline.split('\0');
    if (argv.some((arg) => arg.endsWith('git-annex-shell')) && argv.includes(path)) {
      pids.push(Number(entry));
    }
  }
  return pids;
}

export async function waitFor(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error('condition not met in time');
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

export function sha256Key(content: Buffer): string {
  const hash = execFileSync('sha256sum', [], { input: content, encoding: 'utf8' }).split(' ')[0];
  return `SHA256E-s${content.length}--${hash}`;
}
