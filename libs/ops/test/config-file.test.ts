import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfigFacts } from '../src/config-file';

const base = mkdtempSync(join(tmpdir(), 'config-file-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));

/** What `git config --file` says annex.uuid is ('' when unset), for the same text. */
function gitSays(text: string): string {
  const file = join(base, 'config');
  writeFileSync(file, text);
  try {
    return execFileSync('git', ['config', '--file', file, '--get', 'annex.uuid'], {
      encoding: 'utf8',
      stdio: 'pipe',
    }).trim();
  } catch (error) {
    if ((error as { status?: number }).status === 1) {
      return '';
    }
    throw error;
  }
}

const U = '5e0b6fa4-2d8b-4c5e-9f3a-0123456789ab';

describe('parseConfigFacts', () => {
  const agreeing: [string, string][] = [
    [
      'as git annex init writes it',
      `[core]\n\tbare = false\n[annex]\n\tuuid = ${U}\n\tversion = 10\n`,
    ],
    ['section and key in any case', `[ANNEX]\n\tUUID = ${U}\n`],
    ['a key on the header line', `[annex] uuid = ${U}\n`],
    ['the last of several values', `[annex]\n\tuuid = other\n[annex]\n\tuuid = ${U}\n`],
    ['an inline comment', `[annex]\n\tuuid = ${U} ; set by init\n`],
    ['comments and blank lines', `# top\n\n; more\n[annex]\n# x\n\tuuid=${U}\n`],
    ['not set', `[core]\n\tbare = true\n`],
    ['a subsection is another key', `[annex "uuid"]\n\tuuid = x\n[annex]\n\tversion = 10\n`],
    ['the old subsection form', `[annex.sub]\n\tuuid = x\n[annex]\n\tuuid = ${U}\n`],
    ['CRLF line ends', `[annex]\r\n\tuuid = ${U}\r\n`],
  ];
  for (const [name, text] of agreeing) {
    it(`agrees with git config: ${name}`, () => {
      const facts = parseConfigFacts(text);
      expect(facts).toBeDefined();
      expect(facts?.uuid).toBe(gitSays(text));
    });
  }

  const deferred: [string, string][] = [
    ['an include', `[include]\n\tpath = other\n[annex]\n\tuuid = ${U}\n`],
    ['an includeIf', `[includeIf "gitdir:/x/"]\n\tpath = other\n[annex]\n\tuuid = ${U}\n`],
    ['a quoted value', `[annex]\n\tuuid = "${U}"\n`],
    ['a continuation line', `[annex]\n\tuuid = ${U}\\\n-more\n`],
    ['a line it cannot parse', `[annex\n\tuuid = ${U}\n`],
  ];
  for (const [name, text] of deferred) {
    it(`leaves ${name} to git`, () => {
      expect(parseConfigFacts(text)).toBeUndefined();
    });
  }

  it('says whether the config proxies or defines clusters', () => {
    expect(parseConfigFacts(`[annex]\n\tuuid = ${U}\n`)?.mayProxy).toBe(false);
    expect(parseConfigFacts(`[remote "r"]\n\turl = /x\n\tAnnex-Proxy = true\n`)?.mayProxy).toBe(
      true,
    );
    expect(parseConfigFacts(`[remote "n"]\n\tannex-cluster-node = c\n`)?.mayProxy).toBe(true);
    expect(parseConfigFacts(`[remote "g"]\n\tannex-cluster-gateway = u\n`)?.mayProxy).toBe(true);
    expect(parseConfigFacts(`[annex "cluster"]\n\tc = ${U}\n`)?.mayProxy).toBe(true);
  });
});
