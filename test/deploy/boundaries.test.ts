/**
 * The import boundaries of eslint.config.mjs (README, "Layout"), run through ESLint's Node.js API
 * on one deliberately wrong import per rule, so that the rule cannot silently stop working: each
 * wrong import is reported, and the right one beside it is not.
 */
import * as path from 'node:path';
import { ESLint } from 'eslint';
import tseslint from 'typescript-eslint';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(__dirname, '../..');
const RULE = '@typescript-eslint/no-restricted-imports';

// The project's configuration as it is, with the type-aware rules off: the files are not on disk,
// and the boundary rule needs no types.
const eslint = new ESLint({ cwd: ROOT, overrideConfig: tseslint.configs.disableTypeChecked });

/** The boundary errors ESLint reports for `source` as the file `file` of the project. */
async function boundaryErrors(file: string, source: string): Promise<string[]> {
  const [result] = await eslint.lintText(`${source}\nexport const used = x;\n`, {
    filePath: path.join(ROOT, file),
  });
  const messages = result?.messages ?? [];
  const fatal = messages.filter((message) => message.fatal);
  expect(fatal, 'the file parses').toEqual([]);
  return messages.filter((message) => message.ruleId === RULE).map((message) => message.message);
}

describe('import boundaries (eslint.config.mjs)', () => {
  it('libs never import apps', async () => {
    const wrong = await boundaryErrors(
      'libs/dispatch/src/wrong.ts',
      "import { x } from '@annex-p2phttp/gateway';",
    );
    expect(wrong).toEqual([expect.stringContaining('libs never import apps')]);
    const deep = await boundaryErrors(
      'libs/dispatch/src/cluster/wrong.ts',
      "import type { x } from '@annex-p2phttp/serve/dist/cli';",
    );
    expect(deep).toEqual([expect.stringContaining('libs never import apps')]);
    expect(
      await boundaryErrors('libs/dispatch/src/right.ts', "import { x } from '@annex-p2phttp/p2p';"),
    ).toEqual([]);
  });

  it('libs/protocol imports nothing of ours', async () => {
    const wrong = await boundaryErrors(
      'libs/protocol/src/wrong.ts',
      "export { x } from '@annex-p2phttp/p2p';",
    );
    expect(wrong).toEqual([expect.stringContaining('libs/protocol is pure')]);
    expect(
      await boundaryErrors('libs/protocol/src/right.ts', "import { x } from './key';"),
    ).toEqual([]);
  });

  it('libs/p2p never imports libs/ops, libs/dispatch or libs/locks', async () => {
    for (const [file, specifier] of [
      ['libs/p2p/src/wrong.ts', '@annex-p2phttp/ops'],
      ['libs/p2p/src/wrong.ts', '@annex-p2phttp/dispatch'],
      ['libs/p2p/src/deep/wrong.ts', '@annex-p2phttp/locks/dist/lock-store'],
    ] as const) {
      const wrong = await boundaryErrors(file, `import { x } from '${specifier}';`);
      expect(wrong, `${file}: ${specifier}`).toEqual([
        expect.stringContaining('libs/p2p never imports'),
      ]);
    }
    expect(
      await boundaryErrors('libs/p2p/src/right.ts', "import { x } from '@annex-p2phttp/protocol';"),
    ).toEqual([]);
    expect(
      await boundaryErrors('libs/p2p/src/right.ts', "import { x } from '@annex-p2phttp/opsx';"),
    ).toEqual([]);
  });

  it('libs/ops never imports libs/dispatch', async () => {
    const wrong = await boundaryErrors(
      'libs/ops/src/wrong.ts',
      "import type { x } from '@annex-p2phttp/dispatch';",
    );
    expect(wrong).toEqual([expect.stringContaining('libs/ops never imports libs/dispatch')]);
    expect(
      await boundaryErrors('libs/ops/src/right.ts', "import { x } from '@annex-p2phttp/p2p';"),
    ).toEqual([]);
    expect(
      await boundaryErrors('libs/dispatch/src/right.ts', "import { x } from '@annex-p2phttp/ops';"),
    ).toEqual([]);
  });

  it('apps never import other apps; apps/serve does', async () => {
    const wrong = await boundaryErrors(
      'apps/gateway/src/wrong.ts',
      "import { x } from '@annex-p2phttp/proxy-worker';",
    );
    expect(wrong).toEqual([expect.stringContaining('apps never import other apps')]);
    const worker = await boundaryErrors(
      'apps/proxy-worker/src/wrong.ts',
      "import { x } from '@annex-p2phttp/lock-service';",
    );
    expect(worker).toEqual([expect.stringContaining('apps never import other apps')]);
    expect(
      await boundaryErrors(
        'apps/serve/src/right.ts',
        "import { x } from '@annex-p2phttp/gateway';",
      ),
    ).toEqual([]);
    expect(
      await boundaryErrors(
        'apps/gateway/src/right.ts',
        "import { x } from '@annex-p2phttp/locks';",
      ),
    ).toEqual([]);
  });

  it('apps/gateway never imports libs/ops or libs/p2p', async () => {
    for (const [file, specifier] of [
      ['apps/gateway/src/wrong.ts', '@annex-p2phttp/ops'],
      ['apps/gateway/src/wrong.ts', '@annex-p2phttp/p2p'],
      ['apps/gateway/src/deep/wrong.ts', '@annex-p2phttp/ops/dist/upload-staging'],
    ] as const) {
      const wrong = await boundaryErrors(file, `import { x } from '${specifier}';`);
      expect(wrong, `${file}: ${specifier}`).toEqual([
        expect.stringContaining('apps/gateway is HTTP only'),
      ]);
    }
    for (const specifier of ['@annex-p2phttp/dispatch', '@annex-p2phttp/locks']) {
      expect(
        await boundaryErrors('apps/gateway/src/right.ts', `import { x } from '${specifier}';`),
      ).toEqual([]);
    }
    for (const specifier of ['@annex-p2phttp/ops', '@annex-p2phttp/p2p']) {
      expect(
        await boundaryErrors('apps/serve/src/right.ts', `import { x } from '${specifier}';`),
      ).toEqual([]);
    }
  });

  it('no relative import leaves its workspace folder', async () => {
    const cases: Array<[string, string]> = [
      ['libs/locks/src/wrong.ts', '../../protocol/src'],
      ['libs/locks/src/wrong.ts', '../..'],
      ['libs/dispatch/src/cluster/wrong.ts', '../../../p2p/src/pool'],
      ['apps/gateway/src/wrong.ts', '../../lock-service/src'],
      ['apps/serve/src/wrong.ts', './../../gateway/src/server'],
    ];
    for (const [file, specifier] of cases) {
      const errors = await boundaryErrors(file, `import { x } from '${specifier}';`);
      expect(errors, `${file}: ${specifier}`).toEqual([
        expect.stringContaining('relative import out of'),
      ]);
    }
    for (const [file, specifier] of [
      ['libs/dispatch/src/cluster/right.ts', '../dispatcher'],
      ['libs/dispatch/src/cluster/right.ts', '../../package.json'],
      ['libs/locks/src/right.ts', '../lua/x.lua'],
    ] as const) {
      expect(await boundaryErrors(file, `import { x } from '${specifier}';`)).toEqual([]);
    }
  });

  it('tests may import anything', async () => {
    expect(
      await boundaryErrors(
        'test/e2e/right.test.ts',
        "import { x } from '../../apps/lock-service/src';",
      ),
    ).toEqual([]);
    expect(
      await boundaryErrors(
        'libs/locks/test/right.test.ts',
        "import { x } from '@annex-p2phttp/gateway';",
      ),
    ).toEqual([]);
  });
});
