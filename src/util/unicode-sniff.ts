/**
 * UTF-16 and UTF-32 text told from the start of a file, for the readers that take UTF-8 only: data files
 * (src/data/lines.ts) and pipeline files (src/spec/decode.ts). ASCII in UTF-16 without a byte-order mark
 * is valid UTF-8 (with NULs), so a UTF-8 decoder alone does not refuse it.
 */

/** How much of a file's start `sniffUnicode` looks at without a byte-order mark. */
const SNIFF_BYTES = 1024;

export interface UnicodeSniff {
  /** The encoding, as iconv names it. */
  encoding: 'UTF-16LE' | 'UTF-16BE' | 'UTF-32LE' | 'UTF-32BE';
  bom: boolean;
}

/**
 * Whether `n` bytes read as text in code units of `size` bytes and one byte order: no control
 * character but tab, LF and CR (so no NUL), nothing above U+10FFFF, and at least half the units
 * below U+0100 (Latin script, digits, punctuation, delimiters, line ends), whose other bytes are NUL.
 */
function readsAs(b: Uint8Array, n: number, size: 2 | 4, le: boolean): boolean {
  let units = 0,
    latin = 0;
  for (let i = 0; i + size <= n; i += size, units++) {
    let u = 0;
    for (let k = 0; k < size; k++) u = u * 256 + b[le ? i + size - 1 - k : i + k];
    if (u > 0x10ffff || (u < 0x20 && u !== 0x09 && u !== 0x0a && u !== 0x0d) || (u >= 0x7f && u < 0xa0)) return false;
    if (u < 0x100) latin++;
  }
  return units > 0 && 2 * latin >= units;
}

/**
 * Recognises UTF-16 and UTF-32 from the start of a file: by a byte-order mark (none can start UTF-8:
 * 0xFE and 0xFF never occur in it, and UTF-32BE's begins with two NULs), or, without one, when the
 * first KB reads as such text, mostly below U+0100 (`readsAs`). Those characters have NUL bytes
 * in UTF-16 and UTF-32, and text that really is UTF-8 has none, so a UTF-8 file is never taken for
 * one of these. Text mostly above U+0100 without a mark is not recognised (it reads as invalid
 * UTF-8, line by line, as before); neither is one with control characters (binary data).
 */
export function sniffUnicode(b: Uint8Array): UnicodeSniff | null {
  if (b[0] === 0xff && b[1] === 0xfe) return { encoding: b[2] === 0 && b[3] === 0 ? 'UTF-32LE' : 'UTF-16LE', bom: true };
  if (b[0] === 0xfe && b[1] === 0xff) return { encoding: 'UTF-16BE', bom: true };
  if (b[0] === 0 && b[1] === 0 && b[2] === 0xfe && b[3] === 0xff) return { encoding: 'UTF-32BE', bom: true };
  const n = Math.min(b.length, SNIFF_BYTES);
  if (n < 4) return null;
  // At most one reads so: UTF-32 text read as UTF-16 has NULs, UTF-16 text read as UTF-32 no unit below U+0100.
  if (readsAs(b, n, 4, true)) return { encoding: 'UTF-32LE', bom: false };
  if (readsAs(b, n, 4, false)) return { encoding: 'UTF-32BE', bom: false };
  if (readsAs(b, n, 2, true)) return { encoding: 'UTF-16LE', bom: false };
  if (readsAs(b, n, 2, false)) return { encoding: 'UTF-16BE', bom: false };
  return null;
}

/** What to tell a user of a file `sniffUnicode` recognised: its family, how it was told, and the iconv conversion. */
export function describeSniff(s: UnicodeSniff): { family: string; how: string; iconv: string } {
  const family = s.encoding.slice(0, 6); // UTF-16 or UTF-32
  const how = s.bom
    ? `it starts with a ${family} byte-order mark`
    : `it has no byte-order mark, but its start has the NUL bytes of ${s.encoding} text`;
  return { family, how, iconv: `iconv -f ${s.bom ? family : s.encoding} -t UTF-8` };
}
