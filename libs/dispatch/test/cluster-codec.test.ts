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
  settled,
} from '../src/index';

describe('job failure codec', () => {
  it('carries the code of a P2P error to the gateway', () => {
    const decoded = decodeFailure(encodeFailure(new P2PError('P2P_SPAWN_FAILED', 'no shell')));
    expect(decoded).toBeInstanceOf(P2PError);
    expect((decoded as P2PError).code).toBe('P2P_SPAWN_FAILED');
    expect(decoded.message).toBe('no shell');
    const remote = decodeFailure(encodeFailure(new RemoteError('content is locked')));
    expect((remote as P2PError).code).toBe('P2P_REMOTE_ERROR');
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
  it('reads the epoch, live adverts and known uuids', () => {
    const advert = (id: string, queues: Record<string, string[]>) =>
      JSON.stringify({ id, url: 'http://w:1', queues, jobs: 2, startedAt: 0 });
    const snapshot = parseDirectoryReply([
      '7250',
      advert('w1', { r1: ['r1', 'p1'] }),
      'not json',
      advert('w2', { r1: ['r1'], r2: ['r2'] }),
      JSON.stringify({ id: 'w3', url: '', queues: {}, jobs: 2, startedAt: 0, starting: true }),
      '',
      'r1',
      'r1',
      'p1',
      'r1',
      'gone',
      'r9',
    ]);
    expect(snapshot.workers).toBe(2);
    expect(snapshot.starting).toBe(1);
    expect(snapshot.epochAgeMs).toBe(7250);
    expect([...snapshot.live]).toEqual([
      ['r1', 'r1'],
      ['p1', 'r1'],
      ['r2', 'r2'],
    ]);
    expect(snapshot.known.get('gone')).toBe('r9');
    expect(snapshot.live.has('gone')).toBe(false);
    expect(settled(snapshot, 6000)).toBe(false); // w3 is still starting
  });

  it('reads the locations workers advertise, and what each location serves', () => {
    const snapshot = parseDirectoryReply([
      '7250',
      JSON.stringify({
        id: 'w1',
        url: 'http://w:1',
        queues: { r1: ['r1', 'p1'], r2: ['r2'] },
        locations: { r1: 'labs/alice/b', r2: '', r3: 'not/served' },
        jobs: 2,
        startedAt: 0,
      }),
      JSON.stringify({ id: 'w2', url: 'u', queues: { r4: ['r4'] }, jobs: 2, startedAt: 0 }),
      '',
    ]);
    expect([...snapshot.locations]).toEqual([['r1', 'labs/alice/b']]);
    expect(snapshot.byLocation.get('labs/alice/b')?.queue).toBe('r1');
    expect([...(snapshot.byLocation.get('labs/alice/b')?.uuids ?? [])]).toEqual(['r1', 'p1']);
    expect(snapshot.byLocation.has('not/served')).toBe(false);
  });

  it('reads an empty cluster, which has not settled', () => {
    const snapshot = parseDirectoryReply(['', '']);
    expect(snapshot.workers).toBe(0);
    expect(snapshot.epochAgeMs).toBeUndefined();
    expect(snapshot.live.size).toBe(0);
    expect(snapshot.known.size).toBe(0);
    expect(settled(snapshot, 0)).toBe(false);
  });

  it('settles once a worker serves, none starts, and the epoch is old enough', () => {
    const serving = JSON.stringify({
      id: 'w',
      url: 'u',
      queues: { r: ['r'] },
      jobs: 1,
      startedAt: 0,
    });
    expect(settled(parseDirectoryReply(['5999', serving, '']), 6000)).toBe(false);
    expect(settled(parseDirectoryReply(['6000', serving, '']), 6000)).toBe(true);
    expect(settled(parseDirectoryReply(['60000', '']), 6000)).toBe(false);
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
