import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  endShellProcesses,
  killShellProcesses,
  runningShellProcesses,
  trackShellProcess,
} from '@annex-p2phttp/p2p';

/** A tracked child that exits when its stdin closes (`cat`), or one that never does (`sleep`). */
function child(kind: 'exits-on-eof' | 'stays'): ChildProcess {
  const process =
    kind === 'exits-on-eof'
      ? spawn('cat', [], { stdio: ['pipe', 'ignore', 'ignore'] })
      : spawn('sleep', ['60'], { stdio: ['pipe', 'ignore', 'ignore'] });
  trackShellProcess(process);
  return process;
}

function exit(process: ChildProcess): Promise<NodeJS.Signals | number | null> {
  if (process.exitCode !== null || process.signalCode !== null) {
    return Promise.resolve(process.signalCode ?? process.exitCode);
  }
  return new Promise((resolve) => process.once('exit', (code, signal) => resolve(signal ?? code)));
}

/** Whether `pid` still runs (a killed process waiting to be reaped does not). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

describe('shell processes', () => {
  it('counts a process until it exits', async () => {
    const cat = child('exits-on-eof');
    expect(runningShellProcesses()).toBe(1);
    cat.stdin?.end();
    expect(await exit(cat)).toBe(0);
    expect(runningShellProcesses()).toBe(0);
  });

  it('lets sessions that were closed exit by themselves and kills the rest', async () => {
    const closing = child('exits-on-eof');
    const stuck = child('stays');
    closing.stdin?.end();
    const started = performance.now();
    expect(await endShellProcesses(1000)).toBe(1);
    // The one that did not exit was given the whole bound before it was killed.
    expect(performance.now() - started).toBeGreaterThanOrEqual(900);
    expect(await exit(closing)).toBe(0);
    expect(await exit(stuck)).toBe('SIGKILL');
    expect(runningShellProcesses()).toBe(0);
  });

  it('returns at once when every one exited by itself', async () => {
    const closing = child('exits-on-eof');
    closing.stdin?.end();
    const started = performance.now();
    expect(await endShellProcesses(10_000)).toBe(0);
    expect(performance.now() - started).toBeLessThan(9000);
    expect(runningShellProcesses()).toBe(0);
  });

  it('kills a detached one with its whole process group', async () => {
    // sh leads the group; the sleep it starts is in it and must go too.
    const leader = spawn('sh', ['-c', 'sleep 60 & echo $!; wait'], {
      detached: true,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    trackShellProcess(leader, { group: true });
    const member = Number(
      await new Promise<string>((resolve) =>
        leader.stdout?.once('data', (d: Buffer) => resolve(String(d))),
      ),
    );
    expect(killShellProcesses()).toBe(1);
    expect(await exit(leader)).toBe('SIGKILL');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(alive(member)).toBe(false);
  });

  it('kills every one at once', async () => {
    const stuck = [child('stays'), child('stays')];
    expect(killShellProcesses()).toBe(2);
    expect(await Promise.all(stuck.map(exit))).toEqual(['SIGKILL', 'SIGKILL']);
    expect(runningShellProcesses()).toBe(0);
  });
});
