/**
 * Parsers for the two git-annex branch files that advertise what a repository proxies
 * (PROTOCOL.md §4). Pure: text in, values out.
 *
 * Both files are "uuid-based logs": every line is `<clock> <field> <value>`, and for each field
 * only the line with the greatest clock counts; when clocks are equal the later line counts.
 * Lines that do not parse are skipped, as git-annex skips them. After a union merge of
 * git-annex branches a file can hold several lines for one field (seen: two cluster.log lines for
 * one cluster after `extendcluster`).
 *
 * - proxy.log: field = the gateway's uuid, value = `<uuid>:<remotename>` words separated by
 *   spaces (possibly none: a gateway that stopped proxying keeps a line with an empty value).
 * - cluster.log: field = the cluster's uuid, value = its node uuids separated by spaces.
 *
 * A clock is what git-annex writes for a POSIX time: decimal seconds, optionally with a sign and
 * a fraction, optionally followed by `s` (`1796084515s`, `1431286201.113452s`). It is compared
 * exactly, never through floating point.
 */

/** A uuid that may be put on a git-annex-shell command line. */
const UUID = /^[A-Za-z0-9][A-Za-z0-9-]*$/;

export function isValidUuid(uuid: string): boolean {
  return UUID.test(uuid);
}

/**
 * git-annex marks cluster uuids by their form: they start with `ac` and have `8` at index 14.
 * A uuid of another form is never taken for a cluster, whatever cluster.log says.
 */
export function isClusterUuid(uuid: string): boolean {
  return uuid.startsWith('ac') && uuid.charAt(14) === '8';
}

export interface Clock {
  readonly negative: boolean;
  /** Whole seconds, without sign. */
  readonly seconds: bigint;
  /** Fraction digits, without trailing zeros ('' for none). */
  readonly fraction: string;
}

const CLOCK = /^([+-]?)([0-9]+)(?:\.([0-9]+))?s?$/;

/** The clock a log line starts with, or undefined when the word is not one. */
export function parseClock(word: string): Clock | undefined {
  const m = CLOCK.exec(word);
  if (m === null) {
    return undefined;
  }
  const seconds = BigInt(m[2] as string);
  const fraction = (m[3] ?? '').replace(/0+$/, '');
  const negative = m[1] === '-' && (seconds !== 0n || fraction !== '');
  return { negative, seconds, fraction };
}

/** <0, 0 or >0 as a is earlier than, equal to or later than b. */
export function compareClocks(a: Clock, b: Clock): number {
  const digits = Math.max(a.fraction.length, b.fraction.length);
  const scaled = (c: Clock): bigint => {
    const magnitude = BigInt(`${c.seconds}${c.fraction.padEnd(digits, '0')}`);
    return c.negative ? -magnitude : magnitude;
  };
  const x = scaled(a);
  const y = scaled(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

interface LogEntry<V> {
  clock: Clock;
  value: V;
}

/**
 * The current value of every field of a uuid-based log. `parseValue` returns undefined for a
 * value that makes the whole line invalid.
 */
function parseUuidLog<V>(
  text: string,
  parseValue: (value: string) => V | undefined,
): Map<string, V> {
  const entries = new Map<string, LogEntry<V>>();
  for (const line of text.split(/[\r\n]/)) {
    const first = line.indexOf(' ');
    if (first < 0) {
      continue;
    }
    const second = line.indexOf(' ', first + 1);
    if (second < 0) {
      continue;
    }
    const clock = parseClock(line.slice(0, first));
    const field = line.slice(first + 1, second);
    if (clock === undefined || field === '') {
      continue;
    }
    const value = parseValue(line.slice(second + 1));
    if (value === undefined) {
      continue;
    }
    const old = entries.get(field);
    // Equal clocks: the later line wins.
    if (old === undefined || compareClocks(old.clock, clock) <= 0) {
      entries.set(field, { clock, value });
    }
  }
  return new Map([...entries].map(([field, entry]) => [field, entry.value]));
}

function words(value: string): string[] {
  return value.split(' ').filter((w) => w !== '');
}

export interface ProxyLogEntry {
  uuid: string;
  remoteName: string;
}

/** proxy.log: for each gateway uuid, the remotes it currently proxies. */
export function parseProxyLog(text: string): Map<string, ProxyLogEntry[]> {
  return parseUuidLog(text, (value) => {
    const entries: ProxyLogEntry[] = [];
    for (const word of words(value)) {
      const colon = word.indexOf(':');
      if (colon <= 0 || colon === word.length - 1) {
        return undefined;
      }
      entries.push({ uuid: word.slice(0, colon), remoteName: word.slice(colon + 1) });
    }
    return entries;
  });
}

/** cluster.log: for each cluster uuid, its current node uuids. */
export function parseClusterLog(text: string): Map<string, string[]> {
  const clusters = parseUuidLog(text, words);
  for (const uuid of [...clusters.keys()]) {
    if (!isClusterUuid(uuid)) {
      clusters.delete(uuid);
    }
  }
  return clusters;
}

export type ProxiedKind = 'proxied' | 'cluster';

export interface ProxiedUuid {
  uuid: string;
  kind: ProxiedKind;
  /** A proxied special remote (remote-log.ts), which git-annex-shell serves in process. */
  specialRemote?: true;
}

/**
 * The uuids `gateway` serves besides its own: every uuid on its current proxy.log line (proxied
 * remotes, its clusters, cluster nodes, nodes behind other gateways). A uuid of cluster form is
 * served as a cluster only when cluster.log lists that cluster (git-annex-shell refuses it
 * otherwise). Invalid uuids, the gateway's own uuid and repeats are left out. A proxied uuid in
 * `specialRemotes` is marked as a special remote.
 */
export function proxiedUuids(
  gateway: string,
  proxyLog: string,
  clusterLog: string,
  specialRemotes: ReadonlySet<string> = new Set(),
): ProxiedUuid[] {
  const entries = parseProxyLog(proxyLog).get(gateway);
  if (entries === undefined || entries.length === 0) {
    return [];
  }
  const clusters = parseClusterLog(clusterLog);
  const seen = new Set<string>([gateway]);
  const result: ProxiedUuid[] = [];
  for (const { uuid } of entries) {
    if (seen.has(uuid) || !isValidUuid(uuid)) {
      continue;
    }
    seen.add(uuid);
    if (isClusterUuid(uuid)) {
      if (clusters.has(uuid)) {
        result.push({ uuid, kind: 'cluster' });
      }
    } else if (specialRemotes.has(uuid)) {
      result.push({ uuid, kind: 'proxied', specialRemote: true });
    } else {
      result.push({ uuid, kind: 'proxied' });
    }
  }
  return result;
}

/**
 * What git-annex reads as a journalled file's content: a last line without its newline is an
 * append still being written, and is ignored.
 */
export function completeLines(text: string): string {
  if (text === '' || text.endsWith('\n')) {
    return text;
  }
  const last = text.lastIndexOf('\n');
  return last < 0 ? '' : text.slice(0, last + 1);
}
