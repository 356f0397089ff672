import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { P2PError, RemoteError } from '@annex-p2phttp/p2p';
import { textOfBytes } from '@annex-p2phttp/protocol';
import {
  decodeFailure,
  decodePayload,
  DispatchError,
  encodeFailure,
  encodePayload,
  type JobPayload,
  type QueryPayload,
  isStreamOffer,
  parseDirectoryReply,
  queueOf,
  settled,
  shardOf,
  shuttingDown,
} from '../src/index';

describe('job failure codec', () => {
  it('carries the code of a P2P error to the gateway', () => {
    const decoded = decodeFailure(encodeFailure(new P2PError('P2P_HANDSHAKE_FAILED', 'no shell')));
    expect(decoded).toBeInstanceOf(P2PError);
    expect((decoded as P2PError).code).toBe('P2P_HANDSHAKE_FAILED');
    expect(decoded.message).toBe('no shell');
    const remote = decodeFailure(encodeFailure(new RemoteError('content is locked')));
    expect((remote as P2PError).code).toBe('P2P_REMOTE_ERROR');
  });

  it('carries a shutting-down lane or dispatcher as DISPATCH_CLOSED', () => {
    const decoded = decodeFailure(encodeFailure(shuttingDown()));
    expect(decoded).toBeInstanceOf(DispatchError);
    expect(decoded).toMatchObject({ code: 'DISPATCH_CLOSED', message: 'shutting down' });
  });

  it('carries dispatch codes, and a multi-line message whole', () => {
    const decoded = decodeFailure(
      encodeFailure(new DispatchError('DISPATCH_UNAVAILABLE', 'not served\nhere')),
    );
    expect(decoded).toBeInstanceOf(DispatchError);
    expect((decoded as DispatchError).code).toBe('DISPATCH_UNAVAILABLE');
    expect(decoded.message).toBe('not served\nhere');
  });

  it('turns anything else into DISPATCH_JOB_FAILED', () => {
    expect(encodeFailure(new Error('boom'))).toBe('DISPATCH_JOB_FAILED: boom');
    expect(encodeFailure('text')).toBe('DISPATCH_JOB_FAILED: text');
    const stalled = decodeFailure('job stalled more than allowable limit');
    expect((stalled as DispatchError).code).toBe('DISPATCH_JOB_FAILED');
    expect(stalled.message).toContain('job stalled more than allowable limit');
    const unknownCode = decodeFailure('ENOENT: no such file');
    expect((unknownCode as DispatchError).code).toBe('DISPATCH_JOB_FAILED');
  });
});

describe('parseDirectoryReply', () => {
  const advert = (id: string, extra: object = {}) =>
    JSON.stringify({
      id,
      url: 'http://w:1',
      group: 'g',
      shards: 8,
      jobs: 2,
      startedAt: 0,
      ...extra,
    });
  const route = (queue: string, location?: string) =>
    JSON.stringify(location === undefined ? { queue } : { queue, location });

  it('reads the epoch, live adverts and their routes', () => {
    const { snapshot, held, changed } = parseDirectoryReply([
      '7250',
      ['w1', advert('w1'), '3', ['~v', '3', 'r1', route('g.1'), 'p1', route('g.1')]],
      ['wx', 'not json', '1', []],
      ['w2', advert('w2'), '1', ['~v', '1', 'r1', route('g.1'), 'r2', route('g.5'), 'bad', '{']],
      ['w3', advert('w3', { starting: true }), '', []],
    ]);
    expect(changed).toBe(true);
    expect(snapshot.workers).toBe(2);
    expect(snapshot.starting).toBe(1);
    expect(snapshot.epochAgeMs).toBe(7250);
    expect([...snapshot.live]).toEqual([
      ['r1', { queue: 'g.1' }],
      ['p1', { queue: 'g.1' }],
      ['r2', { queue: 'g.5' }],
    ]);
    expect([...held.keys()]).toEqual(['w1', 'w2', 'w3']);
    expect(held.get('w1')?.version).toBe('3');
    expect(settled(snapshot, 6000)).toBe(false); // w3 is still starting
  });

  it('keeps the routes it holds when a worker did not send them again', () => {
    const first = parseDirectoryReply([
      '10',
      ['w1', advert('w1'), '3', ['~v', '3', 'r1', route('g.1')]],
      ['w2', advert('w2'), '1', ['~v', '1', 'r2', route('g.2')]],
    ]);
    const same = parseDirectoryReply(
      ['20', ['w1', advert('w1'), '3'], ['w2', advert('w2'), '1']],
      first.held,
      first.snapshot,
    );
    expect(same.changed).toBe(false);
    expect(same.snapshot.live).toBe(first.snapshot.live);
    expect(same.snapshot.epochAgeMs).toBe(20);
    // w2 went away, w1 wrote a change.
    const next = parseDirectoryReply(
      ['30', ['w1', advert('w1'), '4', ['~v', '4', 'r1', route('g.1'), 'r3', route('g.3')]]],
      same.held,
      same.snapshot,
    );
    expect(next.changed).toBe(true);
    expect([...next.snapshot.live.keys()]).toEqual(['r1', 'r3']);
    // A version it does not hold and that was not sent (it was dropped): read again next time.
    const lost = parseDirectoryReply(['40', ['w1', advert('w1'), '9']], next.held, next.snapshot);
    expect(lost.changed).toBe(true);
    expect(lost.held.has('w1')).toBe(false);
  });

  it('reads the locations of the routes, and what each location serves', () => {
    const { snapshot } = parseDirectoryReply([
      '7250',
      [
        'w1',
        advert('w1'),
        '1',
        [
          'r1',
          route('g.1', 'labs/alice/b'),
          'p1',
          route('g.1', 'labs/alice/b'),
          'r2',
          route('g.1', ''),
        ],
      ],
    ]);
    expect(snapshot.live.get('r1')).toEqual({ queue: 'g.1', location: 'labs/alice/b' });
    expect(snapshot.live.get('r2')).toEqual({ queue: 'g.1' });
    expect(snapshot.byLocation.get('labs/alice/b')?.queue).toBe('g.1');
    expect([...(snapshot.byLocation.get('labs/alice/b')?.uuids ?? [])]).toEqual(['r1', 'p1']);
    expect(snapshot.byLocation.size).toBe(1);
  });

  it('reads an empty cluster, which has not settled', () => {
    const { snapshot } = parseDirectoryReply(['']);
    expect(snapshot.workers).toBe(0);
    expect(snapshot.epochAgeMs).toBeUndefined();
    expect(snapshot.live.size).toBe(0);
    expect(settled(snapshot, 0)).toBe(false);
  });

  it('settles once a worker serves, none starts, and the epoch is old enough', () => {
    const serving = ['w', advert('w'), '1', ['r', route('g.0')]];
    expect(settled(parseDirectoryReply(['5999', serving]).snapshot, 6000)).toBe(false);
    expect(settled(parseDirectoryReply(['6000', serving]).snapshot, 6000)).toBe(true);
    expect(settled(parseDirectoryReply(['60000']).snapshot, 6000)).toBe(false);
  });
});

describe('shards', () => {
  it('puts a repository on a stable shard of its group', () => {
    const uuid = '4e9a3b1c-0d7e-4c7e-9a55-0123456789ab';
    expect(shardOf(uuid, 8)).toBe(shardOf(uuid, 8));
    expect(queueOf('g1', 8, uuid)).toBe(`g1.8.${shardOf(uuid, 8)}`);
    const used = new Set<number>();
    for (let i = 0; i < 200; i += 1) {
      const shard = shardOf(`repo-${i}`, 8);
      expect(shard).toBeGreaterThanOrEqual(0);
      expect(shard).toBeLessThan(8);
      used.add(shard);
    }
    expect(used.size).toBe(8);
    expect(shardOf(uuid, 1)).toBe(0);
  });
});

describe('isStreamOffer', () => {
  it('accepts offers and nothing else', () => {
    expect(isStreamOffer({ stream: 'http://w/streams/t' })).toBe(true);
    expect(isStreamOffer({ stream: 'http://w/streams/t', length: 5 })).toBe(true);
    expect(isStreamOffer({ stream: 'http://w/streams/t', length: 1.5 })).toBe(false);
    expect(isStreamOffer(50)).toBe(false);
    expect(isStreamOffer(null)).toBe(false);
  });
});

describe('job payload codec (keys and associated files through Redis)', () => {
  const target = {
    serverUuid: 's',
    clientUuid: 'c',
    bypass: [],
    version: 4,
    mode: 'full' as const,
  };
  const worm = 'WORM--\udcff\udcfe\udc80';

  it('keeps UTF-8 values as they are and brackets the others', () => {
    const put: JobPayload = {
      op: 'put',
      target,
      key: worm,
      associatedFile: 'dir/bad\udcff\udcfename.bin',
      offset: 0,
      length: 5,
      dataPresent: false,
    };
    const encoded = encodePayload(put);
    expect(encoded).toEqual({
      ...put,
      key: '[V09STS0t__6A]',
      associatedFile: '[ZGlyL2JhZP_-bmFtZS5iaW4=]',
    });
    expect(decodePayload(JSON.parse(JSON.stringify(encoded)) as JobPayload)).toEqual(put);
    const plain: JobPayload = { op: 'remove', target, key: 'SHA256E-s1--é.bin', before: 3 };
    expect(encodePayload(plain)).toEqual(plain);
    const get: JobPayload = {
      op: 'get',
      target,
      key: 'K',
      associatedFile: null,
      offset: 0,
      signalInvalid: true,
    };
    expect(decodePayload(encodePayload(get))).toEqual(get);
  });

  it('encodes every item of a batch query', () => {
    const batch: QueryPayload = {
      op: 'batch',
      items: [
        { op: 'checkpresent', target, key: worm },
        { op: 'gettimestamp', target },
      ],
    };
    expect(encodePayload(batch)).toEqual({
      op: 'batch',
      items: [
        { op: 'checkpresent', target, key: '[V09STS0t__6A]' },
        { op: 'gettimestamp', target },
      ],
    });
    expect(decodePayload(encodePayload(batch))).toEqual(batch);
  });

  it('property: any key bytes survive JSON and a UTF-8 round trip', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ maxLength: 40 }), (k, f) => {
        const payload: JobPayload = {
          op: 'put',
          target,
          key: `WORM--${textOfBytes(Buffer.from(k))}`,
          associatedFile: textOfBytes(Buffer.from(f)),
          offset: 1,
          length: 2,
          dataPresent: false,
        };
        const wire = Buffer.from(JSON.stringify(encodePayload(payload)), 'utf8').toString('utf8');
        expect(decodePayload(JSON.parse(wire) as JobPayload)).toEqual(payload);
      }),
      { numRuns: 500 },
    );
  });

  it('refuses a malformed bracketed value', () => {
    expect(() => decodePayload({ op: 'remove', target, key: '[not base64]' })).toThrow(
      /bad base64/,
    );
  });
});
