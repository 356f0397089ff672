// The HTTP API surface per protocol version (PROTOCOL.md §2.1 route table) and the permission
// class of each operation (PROTOCOL.md §2.7).

export type ApiVersion = 0 | 1 | 2 | 3 | 4;

export const API_VERSIONS: readonly ApiVersion[] = Object.freeze([0, 1, 2, 3, 4] as const);

export type Operation =
  | 'get'
  | 'checkpresent'
  | 'put'
  | 'putoffset'
  | 'remove'
  | 'remove-before'
  | 'gettimestamp'
  | 'lockcontent'
  | 'keeplocked';

export type PermissionClass = 'read' | 'append' | 'remove' | 'lock';

/** 'v0'..'v4' to the version number; anything else (v5, V1, v01, 1 ...) is undefined. */
export function parseApiVersion(segment: string): ApiVersion | undefined {
  switch (segment) {
    case 'v0':
      return 0;
    case 'v1':
      return 1;
    case 'v2':
      return 2;
    case 'v3':
      return 3;
    case 'v4':
      return 4;
    default:
      return undefined;
  }
}

function minimumVersion(op: Operation): ApiVersion {
  switch (op) {
    case 'putoffset':
      return 1;
    case 'gettimestamp':
    case 'remove-before':
      return 3;
    case 'get':
    case 'checkpresent':
    case 'put':
    case 'remove':
    case 'lockcontent':
    case 'keeplocked':
      return 0;
  }
}

/** Whether the route vN/<op> exists. */
export function operationAvailable(op: Operation, version: ApiVersion): boolean {
  return version >= minimumVersion(op);
}

export function permissionClass(op: Operation): PermissionClass {
  switch (op) {
    case 'get':
    case 'checkpresent':
    case 'gettimestamp':
      return 'read';
    case 'put':
    case 'putoffset':
      return 'append';
    case 'remove':
    case 'remove-before':
      return 'remove';
    case 'lockcontent':
    case 'keeplocked':
      return 'lock';
  }
}
