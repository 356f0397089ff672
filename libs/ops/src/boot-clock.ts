/**
 * The clock of GETTIMESTAMP (PROTOCOL.md §1.4): whole seconds of CLOCK_BOOTTIME on the
 * repository's host. git-annex-shell answers the integer part of it, which is also the integer
 * part of the first field of /proc/uptime (the kernel prints CLOCK_BOOTTIME there, in this
 * process's time namespace, which the git-annex-shell children share). Reading it here lets the
 * embedded server answer gettimestamp for its own repositories without a session.
 */
import { readFile } from 'node:fs/promises';
import { uptime } from 'node:os';

const UPTIME = /^(\d+)(?:\.\d+)?\s/;

/** Whole seconds of CLOCK_BOOTTIME, or undefined where /proc/uptime cannot tell (not Linux). */
export async function bootClockSeconds(): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile('/proc/uptime', 'latin1');
  } catch {
    return undefined;
  }
  const match = UPTIME.exec(text);
  return match ? Number(match[1]) : undefined;
}

/**
 * The clock this host answers GETTIMESTAMP from and judges REMOVE-BEFORE by, for what the server
 * answers itself (a proxied special remote): CLOCK_BOOTTIME seconds, else the system's uptime,
 * which is what git-annex falls back to (a monotonic clock) where there is no boot clock.
 */
export async function timestampSeconds(): Promise<number> {
  return (await bootClockSeconds()) ?? Math.floor(uptime());
}
