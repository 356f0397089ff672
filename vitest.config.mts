import { readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { defineConfig } from 'vitest/config';

const libs = readdirSync(resolve(import.meta.dirname, 'libs'));
const alias = Object.fromEntries(
  libs.map((name) => [
    `@annex-p2phttp/${name}`,
    resolve(import.meta.dirname, `libs/${name}/src/index.ts`),
  ]),
);

export default defineConfig({
  resolve: { alias },
  test: {
    projects: [
      {
        resolve: { alias },
        test: {
          name: 'unit',
          include: [
            'libs/*/test/**/*.test.ts',
            'apps/*/test/**/*.test.ts',
            'test/deploy/**/*.test.ts',
          ],
        },
      },
      {
        resolve: { alias },
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          testTimeout: 300_000,
          hookTimeout: 120_000,
          fileParallelism: false,
          pool: 'forks',
        },
      },
    ],
  },
});
