/**
 * What each workspace (libs/*, apps/*) imports from other packages, read from its sources with
 * TypeScript's own pre-processor (import, export … from, import(), require()), against what its
 * package.json declares. Node.js built-ins need no declaration; everything else does, our own
 * workspaces included: a package found only because npm hoisted it for another one is a
 * dependency that the workspace's manifest hides.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import * as path from 'node:path';
import * as ts from 'typescript';

export interface Workspace {
  /** The folder, relative to the project root: `libs/locks`. */
  readonly dir: string;
  readonly name: string;
  /** dependencies and peerDependencies of its package.json. */
  readonly declared: ReadonlySet<string>;
  /** Names that appear more than once among the declared dependencies of the raw file. */
  readonly listedTwice: readonly string[];
}

export interface PackageImport {
  /** The importing file, relative to the project root. */
  readonly file: string;
  /** The package the specifier names: `@nestjs/common`, `bullmq`. */
  readonly pkg: string;
}

export function workspaces(root: string): Workspace[] {
  const found: Workspace[] = [];
  for (const group of ['libs', 'apps']) {
    for (const entry of readdirSync(path.join(root, group)).sort()) {
      const dir = `${group}/${entry}`;
      const manifestPath = path.join(root, dir, 'package.json');
      let text: string;
      try {
        text = readFileSync(manifestPath, 'utf8');
      } catch {
        continue;
      }
      const manifest = JSON.parse(text) as {
        name: string;
        dependencies?: Record<string, string>;
        peerDependencies?: Record<string, string>;
      };
      const declared = new Set([
        ...Object.keys(manifest.dependencies ?? {}),
        ...Object.keys(manifest.peerDependencies ?? {}),
      ]);
      // JSON.parse keeps the last of two equal keys; the raw text shows both.
      const listedTwice = [...declared].filter((name) => text.split(`"${name}":`).length - 1 > 1);
      found.push({ dir, name: manifest.name, declared, listedTwice });
    }
  }
  return found;
}

/** The package a bare specifier names, or undefined for relative paths and Node.js built-ins. */
export function packageOf(specifier: string): string | undefined {
  if (specifier.startsWith('.') || specifier.startsWith('/')) {
    return undefined;
  }
  if (specifier.startsWith('node:') || builtinModules.includes(specifier.split('/')[0]!)) {
    return undefined;
  }
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

function sourceFiles(dir: string): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(dir).sort()) {
    const full = path.join(dir, entry);
    if (statSync(full).isDirectory()) {
      files.push(...sourceFiles(full));
    } else if (entry.endsWith('.ts') && !entry.endsWith('.d.ts')) {
      files.push(full);
    }
  }
  return files;
}

/** The packages the workspace's src/ imports (type-only imports count: they need the package). */
export function packageImports(root: string, workspace: Workspace): PackageImport[] {
  const src = path.join(root, workspace.dir, 'src');
  const found: PackageImport[] = [];
  for (const file of sourceFiles(src)) {
    const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    for (const imported of info.importedFiles) {
      const pkg = packageOf(imported.fileName);
      if (pkg !== undefined) {
        found.push({ file: path.relative(root, file), pkg });
      }
    }
  }
  return found;
}

/** `libs/locks/src/x.ts imports ioredis`: one line per import its workspace does not declare. */
export function undeclaredImports(root: string): string[] {
  const problems: string[] = [];
  for (const workspace of workspaces(root)) {
    for (const { file, pkg } of packageImports(root, workspace)) {
      if (pkg !== workspace.name && !workspace.declared.has(pkg)) {
        problems.push(
          `${file} imports ${pkg}, which ${workspace.dir}/package.json does not declare`,
        );
      }
    }
  }
  return [...new Set(problems)];
}

/** Dependencies a workspace declares but none of its sources imports, or lists twice. */
export function surplusDependencies(root: string): string[] {
  const problems: string[] = [];
  for (const workspace of workspaces(root)) {
    const used = new Set(packageImports(root, workspace).map(({ pkg }) => pkg));
    for (const name of workspace.declared) {
      if (!used.has(name)) {
        problems.push(
          `${workspace.dir}/package.json declares ${name}, which its src/ never imports`,
        );
      }
    }
    for (const name of workspace.listedTwice) {
      problems.push(`${workspace.dir}/package.json lists ${name} twice`);
    }
  }
  return problems;
}
