// UUID parameter validation (PROTOCOL.md §3, "UUIDs for argv"): stricter than the reference,
// which takes any non-empty string, because uuids end up in argv and protocol words.

import { InvalidParameterError } from './errors';

const UUID = /^[A-Za-z0-9][A-Za-z0-9-]*$/;
const MAX_UUID_LENGTH = 64;

/** Returns the value when it is a safe uuid, else throws InvalidParameterError(param). */
export function validateUuid(value: string, param: string): string {
  if (value.length > MAX_UUID_LENGTH || !UUID.test(value)) {
    throw new InvalidParameterError(param, `invalid ${param}`);
  }
  return value;
}
