/**
 * Query parameters and headers of the HTTP API, decoded and validated (PROTOCOL.md §2.1): every
 * value that reaches a P2P line or a process argument passed one of these checks first. Values
 * are byte strings (raw-url.ts, byte-text.ts); `[base64url]` ones are decoded to their bytes.
 */
import {
  canonicalKey,
  decodeParam,
  InvalidParameterError,
  validateUuid,
} from '@annex-p2phttp/protocol';
import { badRequest } from './http-error';

export type Query = Record<string, string | string[] | undefined>;

/** The first value of a parameter (a repeated single parameter keeps its first value). */
export function first(query: Query, name: string): string | undefined {
  const value = query[name];
  return Array.isArray(value) ? value[0] : value;
}

function all(query: Query, name: string): string[] {
  const value = query[name];
  if (value === undefined) {
    return [];
  }
  return Array.isArray(value) ? value : [value];
}

function decoded(query: Query, name: string): string | undefined {
  const value = first(query, name);
  return value === undefined ? undefined : guard(() => decodeParam(value, name));
}

function guard<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    if (error instanceof InvalidParameterError) {
      throw badRequest(error.message);
    }
    throw error;
  }
}

function required(query: Query, name: string): string {
  const value = decoded(query, name);
  if (value === undefined) {
    throw badRequest(`Query parameter ${name} is required`);
  }
  return value;
}

export function keyParam(query: Query): string {
  return validKey(required(query, 'key'));
}

/** The key of a GET path (plain or `[base64url]`, like the query parameters). */
export function pathKey(segment: string): string {
  return validKey(guard(() => decodeParam(segment, 'key')));
}

/** The key as git-annex writes it (numbers without leading zeros). */
function validKey(key: string): string {
  return guard(() => canonicalKey(key));
}

/** The served uuid of the path, plain or `[base64url]`; not validated (an unknown one is 404). */
export function pathUuid(segment: string): string {
  return guard(() => decodeParam(segment, 'uuid'));
}

export function clientUuidParam(query: Query): string {
  return uuid(required(query, 'clientuuid'), 'clientuuid');
}

export function optionalClientUuid(query: Query): string | undefined {
  const value = decoded(query, 'clientuuid');
  return value === undefined ? undefined : uuid(value, 'clientuuid');
}

export function lockIdParam(query: Query): string {
  return uuid(required(query, 'lockid'), 'lockid');
}

export function bypassParam(query: Query): string[] {
  return all(query, 'bypass').map((value) =>
    uuid(
      guard(() => decodeParam(value, 'bypass')),
      'bypass',
    ),
  );
}

export function associatedFileParam(query: Query): string | null {
  const value = decoded(query, 'associatedfile');
  return value === undefined || value === '' ? null : value;
}

export function offsetParam(query: Query): number {
  const value = first(query, 'offset');
  return value === undefined ? 0 : naturalNumber(value, 'offset');
}

export function timestampParam(query: Query): number {
  const value = first(query, 'timestamp');
  if (value === undefined) {
    throw badRequest('Query parameter timestamp is required');
  }
  const match = /^(-?)0*([0-9]+)$/.exec(value);
  const digits = match?.[2] ?? '';
  if (match === null || digits.length > 16 || !Number.isSafeInteger(Number(digits))) {
    throw badRequest('invalid timestamp');
  }
  // A timestamp already in the past of any clock means "remove only if nothing changed"; the P2P
  // line carries naturals only, and 0 is already before every CLOCK_BOOTTIME reading.
  return match[1] === '-' ? 0 : Number(digits);
}

export function dataPresentParam(query: Query): boolean {
  return first(query, 'data-present') === 'true';
}

export function dataLengthHeader(value: string | string[] | undefined): number {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined) {
    throw badRequest('Header X-git-annex-data-length is required');
  }
  return naturalNumber(text.trim(), 'X-git-annex-data-length');
}

/** Decimal digits, leading zeros allowed (as git-annex reads them), up to MAX_SAFE_INTEGER. */
function naturalNumber(text: string, name: string): number {
  const digits = /^[0-9]+$/.test(text) ? text.replace(/^0+(?=.)/, '') : '';
  if (digits.length === 0 || digits.length > 16 || !Number.isSafeInteger(Number(digits))) {
    throw badRequest(`invalid ${name}`);
  }
  return Number(digits);
}

function uuid(value: string, name: string): string {
  return guard(() => validateUuid(value, name));
}
