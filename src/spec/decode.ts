/**
 * Pipeline files are UTF-8. Node's 'utf8' decoding replaces bad bytes with U+FFFD without a word,
 * so a Latin-1 label or a stray byte would silently become part of a stage's config (and its
 * hash); the bytes are checked first and the first bad one is reported by line and column.
 */
import { describeSniff, sniffUnicode } from '../util/unicode-sniff.ts';
import type { SpecError } from './types.ts';

export type DecodeResult = { ok: true; text: string } | { ok: false; error: SpecError };

const fatal = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

export function decodeSource(bytes: Uint8Array, file: string): DecodeResult {
  const sniffed = sniffUnicode(bytes);
  if (sniffed) {
    const { family, how, iconv } = describeSniff(sniffed);
    return {
      ok: false,
      error: {
        file,
        line: 1,
        column: 1,
        path: '',
        code: 'bad-encoding',
        message: `the file is ${family} (${how}); pipeline files must be UTF-8`,
        hint: `save it as UTF-8, e.g. ${iconv}`,
      },
    };
  }
  try {
    return { ok: true, text: fatal.decode(bytes) };
  } catch {
    /* located below */
  }
  const offset = firstInvalidUtf8(bytes);
  const lineStart = bytes.lastIndexOf(0x0a, offset - 1) + 1;
  let line = 1;
  for (let i = 0; i < lineStart; i++) if (bytes[i] === 0x0a) line++;
  // Columns count characters as everywhere else in spec errors (UTF-16 units of the decoded line).
  const column = new TextDecoder().decode(bytes.subarray(lineStart, offset)).length + 1;
  const hex = [...bytes.subarray(offset, offset + 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
  return {
    ok: false,
    error: {
      file,
      line,
      column,
      path: '',
      code: 'bad-encoding',
      message: `invalid UTF-8 at byte ${offset} (bytes ${hex})`,
      hint: 'save the file as UTF-8; text in another encoding (e.g. Latin-1) must be converted, e.g. iconv -f latin1 -t utf-8',
    },
  };
}

/** Offset of the first byte that does not start or continue a well-formed UTF-8 sequence (RFC 3629). */
export function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      if (c === 0xe0) lo = 0xa0; // overlong
      if (c === 0xed) hi = 0x9f; // UTF-16 surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      if (c === 0xf0) lo = 0x90; // overlong
      if (c === 0xf4) hi = 0x8f; // above U+10FFFF
    } else return i;
    for (let k = 1; k <= need; k++) {
      const d = b[i + k];
      if (d === undefined || d < (k === 1 ? lo : 0x80) || d > (k === 1 ? hi : 0xbf)) return i;
    }
    i += need + 1;
  }
  return b.length;
}
