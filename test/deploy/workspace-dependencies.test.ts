/**
 * Every workspace's package.json declares the packages its sources import, and only those: the
 * manifests are what the image's `npm ci --omit=dev` and a reader rely on (test/deploy/workspace-imports.ts).
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { packageOf, surplusDependencies, undeclaredImports } from './workspace-imports';

const ROOT = path.resolve(__dirname, '../..');

describe('workspace dependencies', () => {
  it('every package a workspace imports is in its package.json', () => {
    expect(undeclaredImports(ROOT)).toEqual([]);
  });

  it('no workspace declares a package it does not import, or one twice', () => {
    expect(surplusDependencies(ROOT)).toEqual([]);
  });

  describe('the check itself', () => {
    const fixture = mkdtempSync(path.join(tmpdir(), 'workspace-deps-'));
    afterAll(() => rmSync(fixture, { recursive: true, force: true }));

    function workspace(dir: string, manifest: string, source: string): void {
      mkdirSync(path.join(fixture, dir, 'src'), { recursive: true });
      writeFileSync(path.join(fixture, dir, 'package.json'), manifest);
      writeFileSync(path.join(fixture, dir, 'src', 'index.ts'), source);
    }
    mkdirSync(path.join(fixture, 'apps'), { recursive: true });
    workspace(
      'libs/a',
      '{ "name": "@x/a", "dependencies": { "ioredis": "*", "ioredis": "*", "yaml": "*" } }',
      [
        "import { readFile } from 'node:fs/promises';",
        "import * as path from 'path';",
        "import type { Redis } from 'ioredis';",
        "import { Queue } from 'bullmq';",
        "export { Injectable } from '@nestjs/common/decorators';",
        "import './local';",
        "const lazy = () => import('@x/b');",
      ].join('\n'),
    );

    it('finds imports of undeclared packages, type-only, re-exports and dynamic ones included', () => {
      expect(undeclaredImports(fixture)).toEqual([
        'libs/a/src/index.ts imports bullmq, which libs/a/package.json does not declare',
        'libs/a/src/index.ts imports @nestjs/common, which libs/a/package.json does not declare',
        'libs/a/src/index.ts imports @x/b, which libs/a/package.json does not declare',
      ]);
    });

    it('finds declared packages never imported and packages listed twice', () => {
      expect(surplusDependencies(fixture)).toEqual([
        'libs/a/package.json declares yaml, which its src/ never imports',
        'libs/a/package.json lists ioredis twice',
      ]);
    });

    it('names the package of a specifier', () => {
      expect(packageOf('@nestjs/common/decorators')).toBe('@nestjs/common');
      expect(packageOf('bullmq/dist/x')).toBe('bullmq');
      expect(packageOf('node:fs')).toBeUndefined();
      expect(packageOf('fs/promises')).toBeUndefined();
      expect(packageOf('../src/x')).toBeUndefined();
    });
  });
});
