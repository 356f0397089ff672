/**
 * remote.log on the git-annex branch: the configuration of every special remote, which is how a
 * proxied uuid is known to be a special remote rather than a git-annex repository. Pure: text in,
 * values out.
 *
 * Every line is `<uuid> <field>=<value> … timestamp=<clock>` (git-annex's older uuid-based log
 * form: the clock is the last word, and may be missing on very old lines, which then lose to any
 * line with one). For each uuid only the line with the greatest clock counts, the later one when
 * clocks are equal. Values escape whitespace and `&` as `&<decimal code>;`.
 *
 * `initremote` records `type=<remote type>` for every special remote. A git-annex repository is
 * recorded only when it was set up with `initremote … type=git`, and then says so. A remote made
 * with `--sameas` has a line of its own (its configuration uuid) that names the uuid it shares in
 * `sameas-uuid`: that shared uuid belongs to special remotes.
 */
import { compareClocks, parseClock, type Clock } from './proxy-log';

const TIMESTAMP = 'timestamp=';

/** `&<code>;` back to its character, as git-annex reads the values. */
function unescapeValue(value: string): string {
  return value.replace(/&([0-9]+);/g, (_, code: string) => String.fromCodePoint(Number(code)));
}

interface RemoteLine {
  readonly clock: Clock | undefined;
  readonly fields: ReadonlyMap<string, string>;
}

/** Is `a` older than `b`? A line without a clock is older than any with one. */
function older(a: Clock | undefined, b: Clock | undefined): boolean {
  if (a === undefined || b === undefined) {
    return a === undefined;
  }
  return compareClocks(a, b) <= 0;
}

/** The current configuration of every uuid in remote.log. */
export function parseRemoteLog(text: string): Map<string, ReadonlyMap<string, string>> {
  const lines = new Map<string, RemoteLine>();
  for (const line of text.split(/[\r\n]/)) {
    const words = line.split(' ').filter((w) => w !== '');
    const uuid = words.shift();
    if (uuid === undefined) {
      continue;
    }
    let clock: Clock | undefined;
    const last = words[words.length - 1];
    if (last?.startsWith(TIMESTAMP)) {
      clock = parseClock(last.slice(TIMESTAMP.length));
      if (clock === undefined) {
        continue;
      }
      words.pop();
    }
    const fields = new Map<string, string>();
    for (const word of words) {
      const eq = word.indexOf('=');
      if (eq > 0) {
        fields.set(word.slice(0, eq), unescapeValue(word.slice(eq + 1)));
      }
    }
    const old = lines.get(uuid);
    if (old === undefined || older(old.clock, clock)) {
      lines.set(uuid, { clock, fields });
    }
  }
  return new Map([...lines].map(([uuid, entry]) => [uuid, entry.fields]));
}

/** The uuids of special remotes (every type but `git`), from remote.log's text. */
export function specialRemoteUuids(remoteLog: string): Set<string> {
  const uuids = new Set<string>();
  for (const [uuid, fields] of parseRemoteLog(remoteLog)) {
    const type = fields.get('type');
    if (type === undefined || type === '' || type === 'git') {
      continue;
    }
    uuids.add(uuid);
    const shared = fields.get('sameas-uuid');
    if (shared !== undefined && shared !== '') {
      uuids.add(shared);
    }
  }
  return uuids;
}
