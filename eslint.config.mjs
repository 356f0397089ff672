// @ts-check
import { readdirSync } from 'node:fs';
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * The direction of imports between workspaces (README, "Layout"), for their src/ folders; tests
 * and scripts may import anything. test/deploy/boundaries.test.ts checks that each rule still fires.
 *  - libs never import apps;
 *  - libs/protocol imports nothing of ours;
 *  - libs/p2p (connections, pool) never imports libs/ops, libs/dispatch or libs/locks, and libs/ops
 *    (operations, executor, repository registry) never imports libs/dispatch, which builds on it;
 *  - apps never import other apps, except apps/serve, the composition root of every role;
 *  - apps/gateway is HTTP only: it never imports libs/ops or libs/p2p, and reaches repositories
 *    through libs/dispatch (Dispatcher) and libs/locks (RetentionLocks) alone;
 *  - no relative import leaves its workspace folder (other workspaces go by package name).
 */
function boundaries() {
  const folders = (group) =>
    readdirSync(`${import.meta.dirname}/${group}`, { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .map((entry) => entry.name);
  const scope = '@annex-p2phttp';
  const anyOf = (names) => `^${scope}/(${names.join('|')})(/|$)`;
  const apps = folders('apps');
  /** @type {Array<{ regex: string, message: string }>} */
  const blocks = [];
  for (const [group, names] of [
    ['libs', folders('libs')],
    ['apps', apps],
  ]) {
    for (const name of names) {
      /** @type {Array<{ regex: string, message: string }>} */
      const packages = [];
      if (group === 'libs' && name !== 'protocol') {
        packages.push({ regex: anyOf(apps), message: 'libs never import apps.' });
      }
      if (group === 'libs' && name === 'protocol') {
        packages.push({
          regex: `^${scope}/`,
          message: 'libs/protocol is pure: it imports nothing of ours.',
        });
      }
      if (group === 'libs' && name === 'p2p') {
        packages.push({
          regex: anyOf(['ops', 'dispatch', 'locks']),
          message:
            'libs/p2p never imports libs/ops, libs/dispatch or libs/locks: they build on it.',
        });
      }
      if (group === 'libs' && name === 'ops') {
        packages.push({
          regex: anyOf(['dispatch']),
          message: 'libs/ops never imports libs/dispatch: the Dispatcher seam builds on it.',
        });
      }
      if (group === 'apps' && name === 'gateway') {
        packages.push({
          regex: anyOf(['ops', 'p2p']),
          message:
            'apps/gateway is HTTP only: it never imports libs/ops or libs/p2p; repositories are reached through libs/dispatch and libs/locks.',
        });
      }
      if (group === 'apps' && name !== 'serve') {
        const others = apps.filter((app) => app !== name);
        packages.push({
          regex: anyOf(others),
          message: 'apps never import other apps; apps/serve composes them.',
        });
      }
      // A file `depth` folders below its workspace's root leaves it with `depth + 1` steps up.
      for (let depth = 1; depth <= 6; depth++) {
        blocks.push({
          files: [`${group}/${name}/src/${'*/'.repeat(depth - 1)}*.ts`],
          rules: {
            '@typescript-eslint/no-restricted-imports': [
              'error',
              {
                patterns: [
                  ...packages,
                  {
                    regex: `^(\\./)?(\\.\\./){${depth + 1},}|^(\\./)?(\\.\\./){${depth}}\\.\\.$`,
                    message: `relative import out of ${group}/${name}: import another workspace by its package name (${scope}/…).`,
                  },
                ],
              },
            ],
          },
        });
      }
    }
  }
  return blocks;
}

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', 'coverage/**', '.bench/**'] },
  eslint.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': [
        'error',
        { considerDefaultExhaustiveForUnions: true },
      ],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      eqeqeq: 'error',
      curly: 'error',
    },
  },
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs', 'vitest.config.mts'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    files: ['**/*.js', '**/*.cjs'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: {
        require: 'readonly',
        module: 'writable',
        process: 'readonly',
        __dirname: 'readonly',
      },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  ...boundaries(),
);
