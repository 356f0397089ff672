import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeAssociatedFile } from '../src';

describe('encodeAssociatedFile', () => {
  it.each([
    [null, ''],
    ['', ''],
    ['hello.txt', 'hello.txt'],
    ['dir/sub/file.txt', 'dir/sub/file.txt'],
    ['../x', '../x'],
    ['a b', 'a%b'],
    ['a  b', 'a%%b'],
    ['100%', '100%%'],
    ['%% %', '%%%%%%%'],
    ['tab\there', 'tab%here'],
    ['line\nbreak\r', 'line%break%'],
    ['nbsp\u00a0ideo\u3000nel\u0085', 'nbsp%ideo%nel%'],
    ['nul\0esc\u001bdel\u007f', 'nul_esc_del_'],
    ['c1\u0090', 'c1_'],
    ['bell\u0007', 'bell_'],
    ['café/日本.txt', 'café/日本.txt'],
    ['lone\ud800', 'lone_'],
  ])('%j -> %j', (af, word) => {
    expect(encodeAssociatedFile(af)).toBe(word);
  });

  it('drops absolute paths', () => {
    expect(encodeAssociatedFile('/etc/passwd')).toBe('');
    expect(encodeAssociatedFile('/')).toBe('');
    expect(encodeAssociatedFile(' /etc/passwd')).toBe('%/etc/passwd');
  });

  it('drops an encoded form over 4096 bytes', () => {
    expect(encodeAssociatedFile('a'.repeat(4096))).toBe('a'.repeat(4096));
    expect(encodeAssociatedFile('a'.repeat(4097))).toBe('');
    expect(encodeAssociatedFile('%'.repeat(2048))).toBe('%'.repeat(4096));
    expect(encodeAssociatedFile('%'.repeat(2049))).toBe('');
    expect(encodeAssociatedFile('é'.repeat(2048))).toBe('é'.repeat(2048));
    expect(encodeAssociatedFile('é'.repeat(2049))).toBe('');
  });

  const WS = /[\s\p{White_Space}]/gu;
  const CTRL_OR_WS = /[\s\p{White_Space}\p{Cc}\p{Cs}]/gu;
  const count = (s: string, re: RegExp): number => s.match(re)?.length ?? 0;

  it('property: the result is one word of printable text with the right escapes', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 80 }), (af) => {
        const word = encodeAssociatedFile(af);
        expect(word).not.toMatch(/[\s\p{White_Space}\p{Cc}\p{Cs}]/u);
        if (af.startsWith('/')) {
          expect(word).toBe('');
          return;
        }
        expect(count(word, /%/g)).toBe(2 * count(af, /%/g) + count(af, WS));
        expect([...word].length).toBe([...af].length + count(af, /%/g));
      }),
      { numRuns: 500 },
    );
  });

  it('property: without whitespace, the receiver decodes it back (controls as _)', () => {
    // Receiver rule (PROTOCOL.md §1.2): '%%' -> '%', single '%' -> '_', controls -> '_'.
    // With whitespace the format itself is lossy ("\t\t" -> "%%" -> "%").
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', maxLength: 80 }).filter((s) => !s.startsWith('/')),
        (raw) => {
          const af = raw.replace(WS, 'w');
          const decoded = encodeAssociatedFile(af).replace(/%%|%/g, (m) =>
            m === '%%' ? '%' : '_',
          );
          expect(decoded).toBe(af.replace(CTRL_OR_WS, '_'));
        },
      ),
      { numRuns: 500 },
    );
  });
});
