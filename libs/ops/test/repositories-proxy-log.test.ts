import { describe, expect, it } from 'vitest';
import {
  compareClocks,
  completeLines,
  isClusterUuid,
  parseClock,
  parseClusterLog,
  parseProxyLog,
  proxiedUuids,
  type Clock,
} from '../src/proxy-log';

// Shapes as written by git-annex 10.20250416 in the lab (PROTOCOL.md §4).
const GW = '5974a76c-1f5a-4356-a168-31c02f0ba510';
const GWB = '4ec59034-10ea-4c9a-a6b3-b739add15987';
const N1 = '3c961910-fd95-4971-bea7-6d39d264bd1d';
const N2 = '7f86b51c-2216-4dff-82dd-e898d44fa074';
const N3 = '4099a2e0-d076-42dd-be4b-a086d9d44050';
const N4 = '5c5b4345-ce84-4d96-bb37-d54dd77c8495';
const PROX = 'a206095f-e276-420b-b730-5ba6bc8a02c1';
const CLUSTER = 'ac70ff10-6c98-8d7d-8b1d-0632b3964139';

const clock = (word: string): Clock => {
  const c = parseClock(word);
  if (c === undefined) {
    throw new Error(`not a clock: ${word}`);
  }
  return c;
};

describe('parseClock and compareClocks', () => {
  it('reads the forms git-annex writes, with or without s and a fraction', () => {
    expect(parseClock('1796084515s')).toEqual({
      negative: false,
      seconds: 1796084515n,
      fraction: '',
    });
    expect(parseClock('1431286201.113452s')).toEqual({
      negative: false,
      seconds: 1431286201n,
      fraction: '113452',
    });
    expect(parseClock('12')).toBeDefined();
    expect(parseClock('-3.50s')).toEqual({ negative: true, seconds: 3n, fraction: '5' });
    for (const bad of ['', 's', '12.s', 'x12s', '12ss', '1 2', '0x10']) {
      expect(parseClock(bad), bad).toBeUndefined();
    }
  });

  it('compares exactly, fractions and signs included', () => {
    expect(compareClocks(clock('10s'), clock('9s'))).toBeGreaterThan(0);
    expect(compareClocks(clock('10s'), clock('10.000s'))).toBe(0);
    expect(compareClocks(clock('10.05s'), clock('10.5s'))).toBeLessThan(0);
    expect(compareClocks(clock('-1s'), clock('0s'))).toBeLessThan(0);
    expect(compareClocks(clock('-0s'), clock('0s'))).toBe(0);
    // Beyond double precision.
    expect(
      compareClocks(clock('1796084515.0000000000000001s'), clock('1796084515s')),
    ).toBeGreaterThan(0);
  });
});

describe('parseProxyLog', () => {
  it('keeps the latest line of each gateway', () => {
    const log = [
      `1796084510s ${GW} ${PROX}:prox`,
      `1796086837s ${GWB} ${N4}:node4`,
      `1796084518s ${GW} ${N1}:node1 ${CLUSTER}:mycluster`,
      `1796084515s ${GW} ${N1}:node1 ${PROX}:prox ${CLUSTER}:mycluster`,
    ].join('\n');
    const parsed = parseProxyLog(log);
    expect(parsed.get(GW)).toEqual([
      { uuid: N1, remoteName: 'node1' },
      { uuid: CLUSTER, remoteName: 'mycluster' },
    ]);
    expect(parsed.get(GWB)).toEqual([{ uuid: N4, remoteName: 'node4' }]);
  });

  it('on equal clocks the later line wins; an empty value means nothing proxied', () => {
    const log = `5s ${GW} ${PROX}:prox\n5s ${GW} \n`;
    expect(parseProxyLog(log).get(GW)).toEqual([]);
    expect(parseProxyLog(`5s ${GW} \n5s ${GW} ${PROX}:prox`).get(GW)).toEqual([
      { uuid: PROX, remoteName: 'prox' },
    ]);
  });

  it('skips lines that do not parse, without letting them win', () => {
    const log = [
      `1s ${GW} ${PROX}:prox`,
      `9s ${GW} ${N1}`, // a word without a remote name: the whole line is invalid
      `9s ${GW} :name`,
      `9s ${GW} ${N1}:`,
      `bogus ${GW} ${N2}:n2`,
      `9s ${GW}`, // no value at all
      '',
      'garbage',
    ].join('\r\n');
    expect(parseProxyLog(log).get(GW)).toEqual([{ uuid: PROX, remoteName: 'prox' }]);
  });

  it('takes the uuid up to the first colon; the name may hold more', () => {
    expect(parseProxyLog(`1s ${GW} ${N1}:a:b`).get(GW)).toEqual([{ uuid: N1, remoteName: 'a:b' }]);
  });
});

describe('parseClusterLog', () => {
  it('keeps the latest line of each cluster, and only uuids of cluster form', () => {
    const log = [
      `1796084515s ${CLUSTER} ${N1} ${N3} ${N2}`,
      `1796086851s ${CLUSTER} ${N1} ${N3} ${N4} ${N2}`,
      `1796086851s ${N1} ${N2}`,
    ].join('\n');
    const parsed = parseClusterLog(log);
    expect([...parsed.keys()]).toEqual([CLUSTER]);
    expect(parsed.get(CLUSTER)).toEqual([N1, N3, N4, N2]);
  });

  it('recognises cluster uuids by form', () => {
    expect(isClusterUuid(CLUSTER)).toBe(true);
    expect(isClusterUuid(N1)).toBe(false);
    expect(isClusterUuid('ac')).toBe(false);
    expect(isClusterUuid('ac000000-0000-0000-0000-000000000000')).toBe(false);
  });
});

describe('proxiedUuids', () => {
  const proxyLog = [
    `1796086851s ${GWB} ${N1}:origin-node1 ${N4}:node4 ${CLUSTER}:mycluster`,
    `1796086851s ${GW} ${N1}:node1 ${N3}:node3 ${N4}:gwb-node4 ${N2}:node2 ${PROX}:prox ${CLUSTER}:mycluster`,
  ].join('\n');
  const clusterLog = `1796086851s ${CLUSTER} ${N1} ${N3} ${N4} ${N2}\n`;

  it('lists every uuid on the gateway line, with its kind', () => {
    expect(proxiedUuids(GW, proxyLog, clusterLog)).toEqual([
      { uuid: N1, kind: 'proxied' },
      { uuid: N3, kind: 'proxied' },
      { uuid: N4, kind: 'proxied' },
      { uuid: N2, kind: 'proxied' },
      { uuid: PROX, kind: 'proxied' },
      { uuid: CLUSTER, kind: 'cluster' },
    ]);
    expect(proxiedUuids(GWB, proxyLog, clusterLog).map((p) => p.uuid)).toEqual([N1, N4, CLUSTER]);
    expect(proxiedUuids(N1, proxyLog, clusterLog)).toEqual([]);
    expect(proxiedUuids(GW, '', '')).toEqual([]);
  });

  it('leaves out a cluster that cluster.log does not list', () => {
    expect(proxiedUuids(GW, proxyLog, '')).not.toContainEqual(
      expect.objectContaining({ uuid: CLUSTER }),
    );
  });

  it('leaves out invalid uuids, the gateway itself and repeats', () => {
    const log = `1s ${GW} -x:a ../..:b a/b:c ${GW}:self ${N1}:n1 ${N1}:again $(id):d`;
    expect(proxiedUuids(GW, log, '')).toEqual([{ uuid: N1, kind: 'proxied' }]);
  });
});

describe('completeLines', () => {
  it('drops a last line still being appended', () => {
    expect(completeLines('')).toBe('');
    expect(completeLines('a\nb\n')).toBe('a\nb\n');
    expect(completeLines('a\nb')).toBe('a\n');
    expect(completeLines('partial')).toBe('');
  });
});
