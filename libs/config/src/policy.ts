/**
 * The per-repository access policy (`--policy FILE`, YAML). Pure: text in, a Policy out, every
 * problem reported with the line it is on. The file:
 *
 * ```yaml
 * repositories:
 *   - path: "public/**"     # glob on the repository's location (see repositoryLocation)
 *     anonymous: readonly    # none | readonly | appendonly | full; default none
 *     nolocking: false       # anonymous users of these repositories may not lock content
 *     users:                 # user -> readonly | appendonly | full; "*" = any logged-in user
 *       alice: full
 *       "*": readonly
 * ```
 *
 * The first rule whose `path` matches a repository applies to it (and to the uuids it proxies);
 * a repository no rule matches is not served.
 */
import { isAbsolute, relative, sep } from 'node:path';
import picomatch from 'picomatch';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node } from 'yaml';
import { ConfigError } from './errors';
import type { UserPermission } from './users';

export type AnonymousAccess = 'none' | UserPermission;

export interface PolicyRule {
  /** The glob as written. */
  readonly path: string;
  /** The line of the rule in its file (1-based). */
  readonly line: number;
  readonly anonymous: AnonymousAccess;
  readonly nolocking: boolean;
  /** User name (or "*") → permission. */
  readonly users: ReadonlyMap<string, UserPermission>;
  matches(location: string): boolean;
}

export interface Policy {
  readonly rules: readonly PolicyRule[];
  /** The rule that applies to the repository at `location`; undefined: not served. */
  ruleFor(location: string): PolicyRule | undefined;
}

/** A policy file that cannot be used; the message names the file and the line at fault. */
export class PolicyError extends ConfigError {
  constructor(message: string) {
    super(message, 'CONFIG_POLICY_INVALID');
    this.name = 'PolicyError';
  }
}

const ACCESS_WORDS: readonly AnonymousAccess[] = ['none', 'readonly', 'appendonly', 'full'];
const PERMISSION_WORDS: readonly UserPermission[] = ['readonly', 'appendonly', 'full'];
const RULE_KEYS = new Set(['path', 'anonymous', 'nolocking', 'users']);
/** Locations whose rule is remembered at most. */
const MEMO_BOUND = 100_000;

/**
 * Where a repository is, as policies and path-addressed URLs name it: its path relative to the
 * first `--directory` root that holds it, or its absolute path (a `--repo`, or a repository
 * outside every root). Always with `/` as separator.
 */
export function repositoryLocation(repoPath: string, directories: readonly string[]): string {
  for (const root of directories) {
    const rel = relative(root, repoPath);
    if (rel !== '' && !rel.startsWith('..') && !isAbsolute(rel)) {
      return rel.split(sep).join('/');
    }
  }
  return repoPath.split(sep).join('/');
}

/** Checks a glob and compiles it; a string describing the problem when it is not usable. */
export function compileGlob(glob: string): ((location: string) => boolean) | string {
  if (glob.trim() === '' || glob !== glob.trim()) {
    return 'must be a non-empty glob without surrounding spaces';
  }
  const segments = glob.split('/');
  if (
    segments.slice(1, -1).includes('') ||
    (segments.length > 1 && segments[segments.length - 1] === '') ||
    segments.some((s) => s === '.' || s === '..')
  ) {
    return 'must not have empty, "." or ".." segments, nor end with "/"';
  }
  if (glob.includes('\\')) {
    return 'must not contain "\\"';
  }
  try {
    return picomatch(glob, { dot: true, strictBrackets: true, nonegate: true });
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

/** Parses a policy file's text; `source` names it in errors. Every problem in one PolicyError. */
export function parsePolicy(text: string, source: string): Policy {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const problems: string[] = [];
  const lineOf = (node: Node | null | undefined, fallback = 1): number =>
    node?.range ? lineCounter.linePos(node.range[0]).line : fallback;
  const problem = (line: number, message: string) => problems.push(`${source}:${line}: ${message}`);
  for (const error of doc.errors) {
    problem(lineCounter.linePos(error.pos[0]).line, error.message.split('\n')[0] ?? 'bad YAML');
  }
  if (problems.length > 0) {
    throw new PolicyError(problems.join('\n'));
  }

  const rules: PolicyRule[] = [];
  const top = doc.contents;
  if (!isMap(top)) {
    problem(lineOf(top), 'must be a mapping with the key "repositories"');
    throw new PolicyError(problems.join('\n'));
  }
  let list: Node | null = null;
  for (const pair of top.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : '';
    if (key === 'repositories') {
      list = pair.value;
    } else {
      problem(lineOf(pair.key), `unknown key ${JSON.stringify(key)} (known: repositories)`);
    }
  }
  if (!isSeq(list)) {
    problem(lineOf(list ?? top), '"repositories" must be a list of rules');
    throw new PolicyError(problems.join('\n'));
  }

  for (const item of list.items) {
    const itemNode = item as Node | null;
    const ruleLine = lineOf(itemNode, lineOf(list));
    if (!isMap(itemNode)) {
      problem(ruleLine, 'a rule must be a mapping with at least "path"');
      continue;
    }
    let glob: string | undefined;
    let matcher: ((location: string) => boolean) | undefined;
    let anonymous: AnonymousAccess = 'none';
    let nolocking = false;
    const users = new Map<string, UserPermission>();
    for (const pair of itemNode.items) {
      const keyNode = pair.key as Node;
      const valueNode = pair.value as Node | null;
      const key = isScalar(keyNode) ? String(keyNode.value) : '';
      const line = lineOf(keyNode, ruleLine);
      const valueLine = lineOf(valueNode, line);
      if (!RULE_KEYS.has(key)) {
        problem(line, `unknown key ${JSON.stringify(key)} (known: ${[...RULE_KEYS].join(', ')})`);
        continue;
      }
      const scalar = isScalar(valueNode) ? valueNode.value : undefined;
      switch (key) {
        case 'path': {
          if (typeof scalar !== 'string') {
            problem(valueLine, 'path must be a string (a glob)');
            break;
          }
          const compiled = compileGlob(scalar);
          if (typeof compiled === 'string') {
            problem(valueLine, `bad glob ${JSON.stringify(scalar)}: ${compiled}`);
          } else {
            glob = scalar;
            matcher = compiled;
          }
          break;
        }
        case 'anonymous':
          if (typeof scalar === 'string' && (ACCESS_WORDS as string[]).includes(scalar)) {
            anonymous = scalar as AnonymousAccess;
          } else {
            problem(
              valueLine,
              `anonymous ${JSON.stringify(scalar ?? null)}: must be ${ACCESS_WORDS.join(', ')}`,
            );
          }
          break;
        case 'nolocking':
          if (typeof scalar === 'boolean') {
            nolocking = scalar;
          } else {
            problem(valueLine, 'nolocking must be true or false');
          }
          break;
        case 'users':
          if (!isMap(valueNode)) {
            problem(valueLine, 'users must be a mapping of user name to permission');
            break;
          }
          for (const user of valueNode.items) {
            const nameNode = user.key as Node;
            const permissionNode = user.value as Node | null;
            const name = isScalar(nameNode) ? String(nameNode.value) : '';
            const value = isScalar(permissionNode) ? permissionNode.value : undefined;
            const userLine = lineOf(nameNode, valueLine);
            if (name === '' || /[\s=]/.test(name)) {
              problem(userLine, `user ${JSON.stringify(name)}: not a user name`);
            } else if (
              typeof value === 'string' &&
              (PERMISSION_WORDS as string[]).includes(value)
            ) {
              users.set(name, value as UserPermission);
            } else {
              problem(
                lineOf(permissionNode, userLine),
                `user ${JSON.stringify(name)}: permission ${JSON.stringify(value ?? null)} ` +
                  `must be ${PERMISSION_WORDS.join(', ')}`,
              );
            }
          }
          break;
      }
    }
    if (glob === undefined || matcher === undefined) {
      if (!itemNode.items.some((p) => isScalar(p.key) && p.key.value === 'path')) {
        problem(ruleLine, 'a rule needs "path"');
      }
      continue;
    }
    const match = matcher;
    rules.push({
      path: glob,
      line: ruleLine,
      anonymous,
      nolocking,
      users,
      matches: (location) => match(location),
    });
  }
  if (problems.length > 0) {
    throw new PolicyError(problems.join('\n'));
  }
  // Each location's rule is found once per policy: the cost of a request does not grow with the
  // number of rules (the memo is bounded, and starts over past the bound).
  const memo = new Map<string, PolicyRule | null>();
  return {
    rules,
    ruleFor: (location) => {
      let rule = memo.get(location);
      if (rule === undefined) {
        rule = rules.find((r) => r.matches(location)) ?? null;
        if (memo.size >= MEMO_BOUND) {
          memo.clear();
        }
        memo.set(location, rule);
      }
      return rule ?? undefined;
    },
  };
}
