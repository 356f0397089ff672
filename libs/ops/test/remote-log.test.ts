import { describe, expect, it } from 'vitest';
import { proxiedUuids } from '../src/proxy-log';
import { parseRemoteLog, specialRemoteUuids } from '../src/remote-log';

// Shapes as written by git-annex 10.20250416 (`git annex initremote`, `enableremote`,
// `initremote --sameas`, `initremote type=git location=…`).
const GW = 'f93336be-74f0-44a4-b461-2ff5e293986a';
const D = '70db61dd-fb1d-4f81-b36a-4d2b88a8df09';
const R = '02fba23b-06d8-4e8b-8746-b3bc10a4213e';
const S3 = '4ec59034-10ea-4c9a-a6b3-b739add15987';
const SAMEAS_CONFIG = '3c961910-fd95-4971-bea7-6d39d264bd1d';
const GITREMOTE = '7f86b51c-2216-4dff-82dd-e898d44fa074';

describe('parseRemoteLog', () => {
  it('keeps the latest line of each uuid and unescapes values', () => {
    const log = [
      `${D} encryption=none name=D type=directory timestamp=1796611682s`,
      `${D} directory=/srv/with&32;space encryption=none name=D2 type=directory timestamp=1796611690s`,
      `${D} encryption=none name=old type=directory timestamp=1796611600s`,
      `${S3} bucket=b name=s3 type=S3`,
      '',
      'garbage',
      `${R} name=bad timestamp=notaclock`,
    ].join('\n');
    const map = parseRemoteLog(log);
    expect(map.get(D)).toEqual(
      new Map([
        ['directory', '/srv/with space'],
        ['encryption', 'none'],
        ['name', 'D2'],
        ['type', 'directory'],
      ]),
    );
    // A line without a clock (very old) still counts while no line with one exists.
    expect(map.get(S3)?.get('type')).toBe('S3');
    expect(map.has(R)).toBe(false);
  });

  it('lets a line with a clock win over one without, and the later of equal clocks win', () => {
    const log = [
      `${D} name=a type=directory timestamp=10s`,
      `${D} name=b type=directory`,
      `${D} name=c type=directory timestamp=10s`,
    ].join('\n');
    expect(parseRemoteLog(log).get(D)?.get('name')).toBe('c');
  });
});

describe('specialRemoteUuids', () => {
  it('names every special remote, the uuid a sameas remote shares, and no git repository', () => {
    const log = [
      `${D} encryption=none name=D type=directory timestamp=1796611682s`,
      `${SAMEAS_CONFIG} sameas-name=D-again sameas-uuid=${D} type=directory timestamp=1796611700s`,
      `${S3} bucket=b encryption=none name=s3 type=S3 timestamp=1796611710s`,
      `${GITREMOTE} location=/srv/repo name=g type=git timestamp=1796611720s`,
    ].join('\n');
    const special = specialRemoteUuids(log);
    expect(special.has(D)).toBe(true);
    expect(special.has(S3)).toBe(true);
    expect(special.has(GITREMOTE)).toBe(false);
    expect(special.has(R)).toBe(false);
  });

  it('marks the proxied special remotes among what a gateway proxies', () => {
    const proxyLog = `1796611682s ${GW} ${R}:R ${D}:D\n`;
    const special = specialRemoteUuids(`${D} name=D type=directory timestamp=1796611682s\n`);
    expect(proxiedUuids(GW, proxyLog, '', special)).toEqual([
      { uuid: R, kind: 'proxied' },
      { uuid: D, kind: 'proxied', specialRemote: true },
    ]);
  });
});
