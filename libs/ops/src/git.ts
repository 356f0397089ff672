/**
 * Running git for the registry: execFile/spawn (no shell), the repository always named
 * explicitly, and the caller's variables that would point git at some other repository removed.
 */
import { execFile, spawn } from 'node:child_process';

export const GIT_TIMEOUT_MS = 30_000;

/** Variables that would make git look at some other repository than the one we name. */
const GIT_LOCATION_VARIABLES = [
  'GIT_DIR',
  'GIT_WORK_TREE',
  'GIT_COMMON_DIR',
  'GIT_INDEX_FILE',
  'GIT_OBJECT_DIRECTORY',
  'GIT_ALTERNATE_OBJECT_DIRECTORIES',
  'GIT_NAMESPACE',
  'GIT_PREFIX',
  'GIT_CEILING_DIRECTORIES',
  'GIT_DISCOVERY_ACROSS_FILESYSTEM',
];

export function gitEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of GIT_LOCATION_VARIABLES) {
    delete env[name];
  }
  return env;
}

export interface GitResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runGit(git: string, args: string[]): Promise<GitResult> {
  return new Promise((done) => {
    execFile(
      git,
      args,
      { env: gitEnv(), timeout: GIT_TIMEOUT_MS, maxBuffer: 1024 * 1024, encoding: 'utf8' },
      (error, stdout, stderr) => {
        if (error === null) {
          done({ code: 0, stdout, stderr });
          return;
        }
        // A numeric code is git's exit status; otherwise git could not run (ENOENT, timeout).
        const code = typeof error.code === 'number' ? error.code : -1;
        done({ code, stdout, stderr: stderr || error.message });
      },
    );
  });
}

export interface GitBufferResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/** Runs git with `input` on its stdin; stdout as bytes, at most `maxBytes` of it. */
export function runGitWithInput(
  git: string,
  args: string[],
  input: string,
  maxBytes = 64 * 1024 * 1024,
): Promise<GitBufferResult> {
  return new Promise((done) => {
    const child = spawn(git, args, { env: gitEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let outBytes = 0;
    let stderr = '';
    let failure: string | undefined;
    let settled = false;
    const finish = (code: number): void => {
      if (settled) {
        return;
      }
      settled = true;
      clearTimeout(timer);
      done({
        code: failure === undefined ? code : -1,
        stdout: Buffer.concat(out),
        stderr: failure ?? stderr,
      });
    };
    const timer = setTimeout(() => {
      failure = `git timed out after ${GIT_TIMEOUT_MS} ms`;
      child.kill('SIGKILL');
    }, GIT_TIMEOUT_MS);
    child.stdout.on('data', (chunk: Buffer) => {
      outBytes += chunk.length;
      if (outBytes > maxBytes) {
        failure ??= `git output exceeded ${maxBytes} bytes`;
        child.kill('SIGKILL');
        return;
      }
      out.push(chunk);
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      if (stderr.length < 64 * 1024) {
        stderr += chunk;
      }
    });
    child.stdin.on('error', () => undefined);
    child.on('error', (error) => {
      failure ??= error.message;
      finish(-1);
    });
    child.on('close', (code) => finish(code ?? -1));
    child.stdin.end(input);
  });
}

export function firstLine(text: string): string {
  return (
    text
      .split('\n')
      .map((l) => l.trim())
      .find((l) => l !== '') ?? 'no message'
  );
}
