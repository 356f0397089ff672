/**
 * Every YAML file of the project parses (Helm templates excepted: they are Go templates, checked
 * by rendering them in chart.test.ts), and every JSON file under deploy/ and charts/ too.
 */
import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';

const ROOT = path.resolve(__dirname, '../..');
const SKIP = new Set(['node_modules', 'dist', '.git', '.bench', 'coverage']);

function walk(dir: string, out: string[] = []): string[] {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (SKIP.has(entry.name)) {
      continue;
    }
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      walk(full, out);
    } else if (entry.isFile()) {
      out.push(path.relative(ROOT, full));
    }
  }
  return out;
}

const files = walk(ROOT);
const yamlFiles = files.filter(
  (f) => /\.ya?ml$/.test(f) && !f.split(path.sep).includes('templates'),
);
const jsonFiles = files.filter((f) => /^(deploy|charts)\//.test(f) && f.endsWith('.json'));

describe('project YAML and JSON files', () => {
  it('finds the deployment files', () => {
    for (const wanted of [
      'docker-compose.yml',
      'deploy/prometheus/prometheus.yml',
      'charts/annex-p2phttp/values.yaml',
      'charts/annex-p2phttp/Chart.yaml',
    ]) {
      expect(yamlFiles).toContain(wanted);
    }
  });

  it.each(yamlFiles)('%s parses as YAML', async (file) => {
    const text = await readFile(path.join(ROOT, file), 'utf8');
    const documents = parseAllDocuments(text, { uniqueKeys: true });
    expect(documents.length).toBeGreaterThan(0);
    for (const document of documents) {
      expect(document.errors.map((e) => e.message)).toEqual([]);
      expect(document.warnings.map((e) => e.message)).toEqual([]);
    }
  });

  it.each(jsonFiles)('%s parses as JSON', async (file) => {
    const text = await readFile(path.join(ROOT, file), 'utf8');
    expect(typeof JSON.parse(text)).toBe('object');
  });
});
