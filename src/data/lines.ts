/**
 * Byte-level line splitting. Lines are split on raw `\n` bytes (never on U+2028 or U+0085, which
 * JSON text may legally contain) and decoded one by one with a fatal UTF-8 decoder, so an invalid
 * byte sequence is pinned to its own line instead of silently becoming U+FFFD.
 */
import { createReadStream } from 'node:fs';

export interface Line {
  /** 1-based physical line number. */
  line: number;
  /** Decoded text without the line terminator; lossy (U+FFFD) when `invalidUtf8` is set. */
  text: string;
  invalidUtf8: boolean;
}

const fatal = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const lossy = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

function decodeLine(bytes: Uint8Array, line: number): Line {
  let end = bytes.length;
  if (end > 0 && bytes[end - 1] === 0x0d) end--; // CRLF files
  let start = 0;
  if (line === 1 && end >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) start = 3;
  const view = bytes.subarray(start, end);
  try {
    return { line, text: fatal.decode(view), invalidUtf8: false };
  } catch {
    return { line, text: lossy.decode(view), invalidUtf8: true };
  }
}

/**
 * Yields every line of a file, including blank ones (callers decide what a blank line means), in
 * arrays of one read chunk each: a per-line async step would cost more than parsing the line.
 * `onBytes` reports bytes consumed, for progress.
 */
export async function* readLineChunks(path: string, onBytes?: (n: number) => void): AsyncGenerator<Line[]> {
  let carry: Uint8Array | null = null;
  let line = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    const buf: Uint8Array = carry ? Buffer.concat([carry, chunk]) : chunk;
    const out: Line[] = [];
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(0x0a, start);
      if (nl === -1) break;
      out.push(decodeLine(buf.subarray(start, nl), ++line));
      start = nl + 1;
    }
    carry = start < buf.length ? buf.slice(start) : null;
    onBytes?.(chunk.length);
    if (out.length > 0) yield out;
  }
  if (carry && carry.length > 0) yield [decodeLine(carry, ++line)];
}
