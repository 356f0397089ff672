import { describe, expect, it } from 'vitest';
import {
  API_VERSIONS,
  operationAvailable,
  parseApiVersion,
  permissionClass,
  type Operation,
} from '../src';

describe('versions', () => {
  it('lists v0..v4', () => {
    expect(API_VERSIONS).toEqual([0, 1, 2, 3, 4]);
  });

  it('parses only v0..v4', () => {
    expect(['v0', 'v1', 'v2', 'v3', 'v4'].map(parseApiVersion)).toEqual([0, 1, 2, 3, 4]);
    for (const s of ['v5', 'V1', 'v01', '1', '', 'v', 'v-1', 'v1 ', ' v1', 'v1.0', 'va']) {
      expect(parseApiVersion(s), s).toBeUndefined();
    }
  });

  it('matches the route table of PROTOCOL.md §2.1', () => {
    const table: Record<Operation, number[]> = {
      get: [0, 1, 2, 3, 4],
      checkpresent: [0, 1, 2, 3, 4],
      put: [0, 1, 2, 3, 4],
      putoffset: [1, 2, 3, 4],
      remove: [0, 1, 2, 3, 4],
      'remove-before': [3, 4],
      gettimestamp: [3, 4],
      lockcontent: [0, 1, 2, 3, 4],
      keeplocked: [0, 1, 2, 3, 4],
    };
    for (const [op, versions] of Object.entries(table) as [Operation, number[]][]) {
      expect(
        API_VERSIONS.filter((v) => operationAvailable(op, v)),
        op,
      ).toEqual(versions);
    }
  });

  it('maps operations to permission classes (PROTOCOL.md §2.7)', () => {
    const expected: Record<Operation, string> = {
      get: 'read',
      checkpresent: 'read',
      gettimestamp: 'read',
      put: 'append',
      putoffset: 'append',
      remove: 'remove',
      'remove-before': 'remove',
      lockcontent: 'lock',
      keeplocked: 'lock',
    };
    for (const [op, cls] of Object.entries(expected) as [Operation, string][]) {
      expect(permissionClass(op), op).toBe(cls);
    }
  });
});
