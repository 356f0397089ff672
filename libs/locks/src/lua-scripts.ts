/**
 * The Redis scripts of the lock store, kept as files in libs/locks/lua/ (one script each, its
 * KEYS and ARGV described at its top) and read once, when this module loads. The folder sits
 * beside src/ and dist/, so the same relative path finds it from the sources (Vitest) and from
 * the compiled package (the image copies lua/ with dist/).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';

/** libs/locks/lua, from libs/locks/src or libs/locks/dist. */
export const LUA_DIR = path.resolve(__dirname, '..', 'lua');

export interface LuaScript {
  /** The file name without `.lua`. */
  readonly name: string;
  readonly source: string;
  /** SHA-1 of the source, for EVALSHA. */
  readonly sha: string;
}

export function loadLuaScript(name: string): LuaScript {
  const source = readFileSync(path.join(LUA_DIR, `${name}.lua`), 'utf8');
  return { name, source, sha: createHash('sha1').update(source).digest('hex') };
}

/** The scripts of RedisLockStore (redis-lock-store.ts). */
export const LOCK_SCRIPTS = {
  create: loadLuaScript('create'),
  extend: loadLuaScript('extend'),
  delete: loadLuaScript('delete'),
  claimPending: loadLuaScript('claim-pending'),
  adopt: loadLuaScript('adopt'),
  orphaned: loadLuaScript('orphaned'),
  restore: loadLuaScript('restore'),
  heldBy: loadLuaScript('held-by'),
} as const;
