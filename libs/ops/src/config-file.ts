/**
 * Reads what the registry needs from a repository's own git config file without running git:
 * `annex.uuid`, and whether the file configures proxying or clusters at all.
 *
 * git's config syntax (git-config(1)): section and key names are case-insensitive, subsection
 * names in `[section "sub"]` are case-sensitive, the old `[section.sub]` form is lower-cased,
 * a key may follow the section header on the same line, `#` and `;` start comments, and when a
 * key is set more than once the last value wins. Anything this reader does not handle exactly
 * (include and includeIf sections, quoted or escaped values, continuation lines, lines it cannot
 * parse) makes it answer `undefined`, and the caller asks `git config` instead.
 */

export interface ConfigFacts {
  /** annex.uuid, '' when unset. */
  readonly uuid: string;
  /**
   * Whether the config names a proxied remote (`remote.NAME.annex-proxy`), a cluster node or
   * gateway (`remote.NAME.annex-cluster-node`, `…annex-cluster-gateway`) or a cluster
   * (`annex.cluster.NAME`): only then can git-annex-shell serve uuids other than the
   * repository's own, so only then is its proxy.log / cluster.log read.
   */
  readonly mayProxy: boolean;
}

const SECTION = /^\[\s*([A-Za-z0-9.-]+)(?:\s+"([^"\\]*)")?\s*\](.*)$/;
const KEY = /^([A-Za-z][A-Za-z0-9-]*)\s*(?:=(.*))?$/;

/** The facts, or undefined when `git config` must be asked (module comment). */
export function parseConfigFacts(text: string): ConfigFacts | undefined {
  let section = '';
  let subsection: string | undefined;
  let uuid = '';
  let mayProxy = false;
  for (const raw of text.split('\n')) {
    let line = raw.replace(/\r$/, '').trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) {
      continue;
    }
    if (line.endsWith('\\')) {
      return undefined; // a continuation line
    }
    if (line.startsWith('[')) {
      const match = SECTION.exec(line);
      if (match === null) {
        return undefined;
      }
      const name = (match[1] ?? '').toLowerCase();
      if (match[2] !== undefined) {
        section = name;
        subsection = match[2];
      } else {
        const dot = name.indexOf('.');
        section = dot < 0 ? name : name.slice(0, dot);
        subsection = dot < 0 ? undefined : name.slice(dot + 1);
      }
      if (section === 'include' || section === 'includeif') {
        return undefined;
      }
      if (section === 'annex' && subsection === 'cluster') {
        mayProxy = true;
      }
      line = (match[3] ?? '').trim();
      if (line === '' || line.startsWith('#') || line.startsWith(';')) {
        continue;
      }
    }
    const match = KEY.exec(line);
    if (match === null || section === '') {
      return undefined;
    }
    const key = (match[1] ?? '').toLowerCase();
    if (
      section === 'remote' &&
      (key === 'annex-proxy' || key === 'annex-cluster-node' || key === 'annex-cluster-gateway')
    ) {
      mayProxy = true;
    }
    if (section === 'annex' && subsection === undefined && key === 'uuid') {
      const value = match[2];
      if (value === undefined) {
        uuid = 'true'; // a bare key is boolean true: not a uuid, rejected as such later
        continue;
      }
      if (/["\\]/.test(value)) {
        return undefined;
      }
      uuid = value.replace(/[#;].*$/, '').trim();
    }
  }
  return { uuid, mayProxy };
}
