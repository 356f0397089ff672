import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LOCK_SCRIPTS, LUA_DIR } from '../src/lua-scripts';

describe('the lock store scripts (libs/locks/lua)', () => {
  it('are read from lua/ beside src/ and dist/, every file of it', () => {
    expect(LUA_DIR).toBe(path.resolve(__dirname, '..', 'lua'));
    const files = readdirSync(LUA_DIR).filter((name) => name.endsWith('.lua'));
    expect(
      Object.values(LOCK_SCRIPTS)
        .map((script) => `${script.name}.lua`)
        .sort(),
    ).toEqual(files.sort());
    for (const script of Object.values(LOCK_SCRIPTS)) {
      const source = readFileSync(path.join(LUA_DIR, `${script.name}.lua`), 'utf8');
      expect(script.source).toBe(source);
      expect(script.sha).toBe(createHash('sha1').update(source).digest('hex'));
      expect(script.source).toMatch(/\breturn\b/);
    }
  });

  it('ship with the package', () => {
    const manifest = JSON.parse(
      readFileSync(path.resolve(__dirname, '..', 'package.json'), 'utf8'),
    ) as { files?: string[] };
    expect(manifest.files).toEqual(expect.arrayContaining(['dist', 'lua']));
  });
});
