/**
 * The sessions that hold retention locks (LocalShellConnector.connectHolder) with a stand-in for
 * git-annex-shell: a script that echoes its input and, like git-annex-shell with a lock, reacts to
 * the end of its input (it writes a marker file) differently from a signal (it writes nothing).
 */
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalShellConnector, type Transport } from '@annex-p2phttp/p2p';

/** The built library, for a process of its own (`npm run build` first, as `npm test` does). */
const P2P_BUILD = path.resolve(__dirname, '..', 'dist', 'index.js');

let dir: string;
let script: string;
let marker: string;

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'lock-holder-session-'));
  marker = path.join(dir, 'saw-eof');
  script = path.join(dir, 'holder');
  writeFileSync(
    script,
    `#!/bin/sh\necho $$ > "${dir}/pid"\nwhile read -r line; do echo "$line"; done\ntouch "${marker}"\n`,
  );
  chmodSync(script, 0o755);
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const target = {
  repoPath: os.tmpdir(),
  serverUuid: '11111111-1111-1111-1111-111111111111',
  clientUuid: '22222222-2222-2222-2222-222222222222',
  bypass: [],
  version: 4,
  mode: 'full' as const,
};

function firstLine(transport: Transport): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    transport.input.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8');
      if (text.includes('\n')) {
        resolve(text.slice(0, text.indexOf('\n')));
      }
    });
  });
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let waited = 0; !condition(); waited += 20) {
    if (waited > 10_000) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('a session that holds a lock', () => {
  it('speaks over its input and output, and is ended by a signal, never by end of input', async () => {
    const transport = await new LocalShellConnector({ command: script }).connectHolder(target);
    const line = firstLine(transport);
    transport.output.write('LOCKCONTENT k\n');
    expect(await line).toBe('LOCKCONTENT k');
    transport.output.end();
    // The session keeps a writer of its own input: ending ours is no end of input to it.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const pid = Number(readFileSync(path.join(dir, 'pid'), 'utf8'));
    expect(alive(pid)).toBe(true);
    transport.destroy();
    await transport.exited;
    expect(alive(pid)).toBe(false);
    expect(existsSync(marker)).toBe(false);
  });

  it('dies by a signal with the process that started it, even by SIGKILL', async () => {
    // A process that opens a holder session and is then SIGKILLed.
    const parent = spawn(
      process.execPath,
      [
        '-e',
        `const { LocalShellConnector } = require(${JSON.stringify(P2P_BUILD)});
         new LocalShellConnector({ command: process.argv[1] })
           .connectHolder(JSON.parse(process.argv[2]))
           .then((t) => t.output.write('held\\n'));
         setInterval(() => {}, 1000);`,
        script,
        JSON.stringify(target),
      ],
      { stdio: 'ignore' },
    );
    const pidFile = path.join(dir, 'pid');
    await until(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '', 'pid');
    const pid = Number(readFileSync(pidFile, 'utf8'));
    expect(alive(pid)).toBe(true);
    parent.kill('SIGKILL');
    await until(() => !alive(pid), 'the holder to die with its parent');
    expect(existsSync(marker)).toBe(false);
  });
});
