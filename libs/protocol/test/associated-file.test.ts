import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeAssociatedFile, textOfBytes } from '../src';

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
    // bytes that are no UTF-8 (byte strings) stay: git-annex passes them on as they are
    ['bad\udcff\udcfename.bin', 'bad\udcff\udcfename.bin'],
    ['caf\udce9 d\udce9j\udce0', 'caf\udce9%d\udce9j\udce0'],
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
  // Surrogates other than U+DC80-U+DCFF, the escaped bytes of a byte string, which stay.
  const NO_BYTE = '\\p{Cs}--[\\u{dc80}-\\u{dcff}]';
  const CTRL_OR_WS_CLASS = `[\\s\\p{White_Space}\\p{Cc}[${NO_BYTE}]]`;
  const CTRL_OR_WS = new RegExp(CTRL_OR_WS_CLASS, 'gv');
  const count = (s: string, re: RegExp): number => s.match(re)?.length ?? 0;

  it('property: the result is one word of printable text with the right escapes', () => {
    const withBytes = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 80 }),
      fc.uint8Array({ maxLength: 80 }).map((b) => textOfBytes(Buffer.from(b))),
    );
    fc.assert(
      fc.property(withBytes, (af) => {
        const word = encodeAssociatedFile(af);
        expect(word).not.toMatch(new RegExp(CTRL_OR_WS_CLASS, 'v'));
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
