// JSON result bodies per API version (PROTOCOL.md §2.2). Field names and order are exact;
// `plusuuids` is always present from v2 on (the client rejects a v2+ reply without it). Uuids
// are byte strings: one that is not UTF-8 goes out in "[base64url]" form, as git-annex sends it
// and its client reads it (a plain uuid, i.e. every one git-annex makes, goes out as it is).

import { wireText } from './base64url';
import type { ApiVersion } from './versions';

function uuids(list: readonly string[]): string[] {
  return list.map(wireText);
}

function hasPlus(v: ApiVersion): boolean {
  return v >= 2;
}

export function checkPresentResult(present: boolean): { present: boolean } {
  return { present };
}

/** v0, v1: {stored}; v2+: {stored, plusuuids}. */
export function putResult(v: ApiVersion, stored: boolean, plusuuids: string[]): object {
  return hasPlus(v) ? { stored, plusuuids: uuids(plusuuids) } : { stored };
}

/** v0, v1: {removed}; v2+: {removed, plusuuids}. Also used for remove-before. */
export function removeResult(v: ApiVersion, removed: boolean, plusuuids: string[]): object {
  return hasPlus(v) ? { removed, plusuuids: uuids(plusuuids) } : { removed };
}

/** {offset} or, when the server already has the content, v1 {alreadyhave} / v2+ with plusuuids. */
export function putOffsetResult(
  v: ApiVersion,
  r: { offset: number } | { alreadyHave: true; plusuuids: string[] },
): object {
  if ('offset' in r) {
    return { offset: r.offset };
  }
  return hasPlus(v) ? { alreadyhave: true, plusuuids: uuids(r.plusuuids) } : { alreadyhave: true };
}

export function timestampResult(timestamp: number): { timestamp: number } {
  return { timestamp };
}

/** {locked:true, lockid} when locked, else {locked:false}. */
export function lockContentResult(lockid: string | null): object {
  return lockid === null ? { locked: false } : { locked: true, lockid: wireText(lockid) };
}

/** keeplocked always answers {locked:false}, after the unlock. */
export function keepLockedResult(): { locked: false } {
  return { locked: false };
}
