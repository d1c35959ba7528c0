/**
 * Byte-level line splitting. Lines are split on raw `\n` bytes (never on U+2028 or U+0085, which
 * JSON text may legally contain) and decoded one by one with a fatal UTF-8 decoder, so an invalid
 * byte sequence is pinned to its own line instead of silently becoming U+FFFD.
 *
 * A line longer than `maxLineBytes` is not held in memory: its bytes are skipped up to the next
 * `\n` and it is yielded as `tooLong` with a short prefix, so a hostile file (one huge line, or
 * none at all) costs bounded memory and linear time.
 *
 * A file in UTF-16 or UTF-32 is refused as a whole before any line is read (`sniffUnicode`): read
 * as UTF-8 it would be every line a bad row (NUL bytes, `invalid-utf8`), hiding the one fix that
 * helps, saving it as UTF-8.
 */
import { createReadStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createInflateRaw, inflateRawSync } from 'node:zlib';
import { InputError } from '../errors.ts';
import { describeSniff, sniffUnicode, type UnicodeSniff } from '../util/unicode-sniff.ts';

export interface Line {
  /** 1-based physical line number. */
  line: number;
  /** Decoded text without the line terminator; lossy (U+FFFD) when `invalidUtf8` is set; a prefix when `tooLong` is. */
  text: string;
  invalidUtf8: boolean;
  /** With `invalidUtf8`: the first byte that is not UTF-8, and its offset in the line (0-based). */
  badByte?: { offset: number; value: number };
  /** Set when the line exceeded `maxLineBytes`; `bytes` then holds its full length. */
  tooLong?: boolean;
  bytes?: number;
  /** Set on the file's last line when no line break follows it (a file still being written, or cut short). */
  unterminated?: boolean;
}

export interface LineOptions {
  /** Bytes consumed so far, for progress. */
  onBytes?: (n: number) => void;
  /** Every chunk read, in order (the caller hashes exactly the bytes it parsed). */
  onData?: (chunk: Uint8Array) => void;
  /** Longest line kept. Default LINE_LIMIT_BYTES. */
  maxLineBytes?: number;
  /** The file as errors name it (e.g. `data/train.csv`). Default the path. */
  display?: string;
  /**
   * The file's encoding when it is not UTF-8: `utf-16` (transcoded to UTF-8 first), or one of `SINGLE_BYTE_ENCODINGS`,
   * which keep ASCII (so `\n` splits lines as in UTF-8) and give every byte a character (so no line is invalid).
   * Default UTF-8.
   */
  encoding?: string;
  /** Bounds on a gzip file's inflated size; defaults in GZIP_LIMITS. */
  gzipLimits?: Partial<typeof GZIP_LIMITS>;
  /** What was read past, though not wrong enough to refuse the file (a gzip file's trailing zero padding). */
  onWarning?: (message: string) => void;
  /** How hints name the encoding setting: `encoding: ` (an ingest stage's, the default) or `--encoding ` (a command's flag). */
  encodingSetting?: EncodingSetting;
  /**
   * The file, open already: read from this handle, never by the path (which names it in errors only). Ingest opens a
   * source confined (roots.ts openConfined), and a path opened again could lead elsewhere by then.
   */
  handle?: FileHandle;
}

/** The encoding setting as the caller takes it, followed by a value: `encoding: ` (ingest), `--encoding ` (predict). */
export type EncodingSetting = 'encoding: ' | '--encoding ';

/** The setting's name alone: `encoding`, `--encoding`. */
const settingName = (setting: EncodingSetting) => setting.replace(/[: ]+$/, '');

/**
 * The single-byte encodings a data file may be read in (WHATWG names; `cp1252` (Python's), `latin1` and `iso-8859-1` are
 * read as windows-1252, as browsers and Python's cp1252 read them: its 0x80-0x9F are printable where Latin-1's are controls).
 */
export const SINGLE_BYTE_ENCODINGS = [
  'windows-1252',
  'cp1252',
  'latin1',
  'iso-8859-1',
  'iso-8859-15',
  'windows-1250',
  'windows-1251',
] as const;

/** Every `encoding` a data file may declare: UTF-8 (the default), UTF-16 (transcoded, `fromUtf16`), and the single-byte ones. */
export const ENCODINGS = ['utf-8', 'utf-16', ...SINGLE_BYTE_ENCODINGS] as const;

/** Offset of the first byte of `b` that does not belong to a well-formed UTF-8 sequence (-1: none). */
export function firstInvalidUtf8(b: Uint8Array): number {
  for (let i = 0; i < b.length; ) {
    const c = b[i];
    const n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (n === 0 || i + n > b.length) return i;
    if (n > 1) {
      // The second byte's range narrows for E0 (no overlongs), ED (no surrogates), F0 and F4 (U+10000..U+10FFFF).
      const lo = c === 0xe0 ? 0xa0 : c === 0xf0 ? 0x90 : 0x80,
        hi = c === 0xed ? 0x9f : c === 0xf4 ? 0x8f : 0xbf;
      if (b[i + 1] < lo || b[i + 1] > hi) return i;
      for (let k = 2; k < n; k++) if (b[i + k] < 0x80 || b[i + k] > 0xbf) return i;
    }
    i += n;
  }
  return -1;
}

/** Default longest line: far above any real record, far below V8's string limit. */
export const LINE_LIMIT_BYTES = 64 << 20;
/** How much of an over-long line is kept for the quarantine table. */
const TOO_LONG_PREFIX = 256;

/**
 * Lines that end in \r alone: no \n in the start of the file (a megabyte, or all of it) but
 * carriage returns. Where \n ends lines, a \r inside one is data.
 */
export function crOnly(b: Uint8Array): boolean {
  if (b.indexOf(0x0a) !== -1) return false;
  const first = b.indexOf(0x0d);
  return first !== -1 && (b.indexOf(0x0d, first + 1) !== -1 || first === b.length - 1);
}

/**
 * Archives and other compressors by their magic number (a tar by "ustar" at 257), and how to unpack each: one saved
 * under a data file's name (`data.jsonl` that is a zip, a `.tar.gz` named `.jsonl.gz`) read as a bad row a line, whose
 * hint blamed the mapping. gzip itself is read (fileText); a tar inside it is seen once inflated.
 */
const ARCHIVES: { what: string; at: number; magic: number[]; unpack: string }[] = [
  { what: 'a zip archive', at: 0, magic: [0x50, 0x4b, 0x03, 0x04], unpack: 'unzip' },
  // "ustar" and its version with a NUL, which no text holds ("mustard" may well sit at byte 257 of a CSV): POSIX, GNU.
  { what: 'a tar archive', at: 257, magic: [0x75, 0x73, 0x74, 0x61, 0x72, 0x00, 0x30, 0x30], unpack: 'tar xf' },
  { what: 'a tar archive', at: 257, magic: [0x75, 0x73, 0x74, 0x61, 0x72, 0x20, 0x20, 0x00], unpack: 'tar xf' },
  // "BZh" and the block size, then the first block's magic (pi's digits): "BZh9" alone could begin a header.
  { what: 'a bzip2-compressed file', at: 4, magic: [0x31, 0x41, 0x59, 0x26, 0x53, 0x59], unpack: 'bunzip2 -k' },
  { what: 'an xz-compressed file', at: 0, magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], unpack: 'unxz -k' },
  { what: 'a zstd-compressed file', at: 0, magic: [0x28, 0xb5, 0x2f, 0xfd], unpack: 'unzstd' },
  { what: 'a 7z archive', at: 0, magic: [0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c], unpack: '7z x' },
];

/**
 * A spreadsheet saved as a zip of XML, by its first entries (a zip's local headers: the name at 30): the zip most
 * often given as data is a workbook saved as `.xlsx` and named, or set, as CSV, and unzipping it gives no data file.
 */
function spreadsheet(chunk: Uint8Array): string | undefined {
  const head = Buffer.from(chunk.buffer, chunk.byteOffset, Math.min(chunk.length, 1 << 16)).toString('latin1');
  if (head.startsWith('mimetype', 30) && head.startsWith('application/vnd.oasis.opendocument.spreadsheet', 38))
    return 'an OpenDocument spreadsheet (.ods), a zip of XML';
  // An entry under xl/ (a .docx has word/): a local header's signature, 26 bytes, the name.
  if (/^(\[Content_Types\]\.xml|_rels\/|docProps\/|xl\/)/.test(head.slice(30, 60)) && /PK\x03\x04[^]{26}xl\//.test(head))
    return 'an Excel workbook (.xlsx), a zip of XML';
  return undefined;
}

/** The input error for a file whose first bytes are an archive's or another compressor's, or undefined. */
function archiveError(chunk: Uint8Array, file: string): InputError | undefined {
  const bzip2 = chunk[0] === 0x42 && chunk[1] === 0x5a && chunk[2] === 0x68;
  const a = ARCHIVES.find(
    (x) => (x.unpack !== 'bunzip2 -k' || bzip2) && chunk.length >= x.at + x.magic.length && x.magic.every((b, i) => chunk[x.at + i] === b),
  );
  if (!a) return undefined;
  const sheet = a.unpack === 'unzip' ? spreadsheet(chunk) : undefined;
  if (sheet)
    return new InputError(`the file is ${sheet}, not text`, {
      where: file,
      hint: `unzipped it holds XML, no data file: save the sheet as CSV (Excel, LibreOffice: Save As, CSV UTF-8), or with pandas: pandas.read_excel('${file}').to_csv('data.csv', index=False)`,
    });
  return new InputError(`the file is ${a.what}, not text`, {
    where: file,
    hint: `unpack it first (${a.unpack} '${file}'), then point path at the data file it holds (only gzip is read as it is)`,
  });
}

/** The input error for a data file that `sniffUnicode` recognised. */
export function notUtf8(file: string, s: UnicodeSniff, setting: EncodingSetting = 'encoding: '): InputError {
  const { family, how, iconv } = describeSniff(s);
  // A local file gets the whole command; a URL only the conversion.
  const dot = file.lastIndexOf('.');
  const example =
    /^[a-z]+:\/\//i.test(file) || dot <= file.lastIndexOf('/') + 1
      ? iconv
      : `${iconv} '${file}' > '${file.slice(0, dot)}.utf8${file.slice(dot)}'`;
  return new InputError(
    `the file is ${family} (${how}); data files must be UTF-8${family === 'UTF-16' ? ` unless ${settingName(setting)} says otherwise` : ''}`,
    {
      where: file,
      hint: `save it as UTF-8, e.g. ${example}${family === 'UTF-16' ? `; or ${setting === 'encoding: ' ? 'set ' : 'give '}${setting}utf-16` : ''}`,
    },
  );
}

/**
 * UTF-16 text (what Excel's "Unicode Text" saves) as UTF-8, chunk by chunk, so that lines split on `\n` bytes as in
 * any other file. Its byte order comes from its byte-order mark or, without one, its NUL bytes (`sniffUnicode`); a file
 * that shows neither is refused, since UTF-8 read as UTF-16 would be silently CJK-looking nonsense.
 */
async function* fromUtf16(chunks: AsyncIterable<Buffer>, display: string, setting: EncodingSetting): AsyncGenerator<Buffer> {
  const name = settingName(setting);
  let decoder: InstanceType<typeof TextDecoder> | undefined;
  let bytes = 0;
  const decode = (c?: Buffer): Buffer => {
    try {
      return Buffer.from(c === undefined ? decoder!.decode() : decoder!.decode(c, { stream: true }), 'utf8');
    } catch (e) {
      // The decoder says neither which byte nor why: what it read last (up to 1 MiB) is the place to look.
      const what =
        c === undefined
          ? `the file ends inside a UTF-16 character (its ${bytes} bytes are ${bytes % 2 ? 'an odd count' : 'even, so it ends on the first half of a surrogate pair'})`
          : `not valid UTF-16 within bytes ${bytes - c.length + 1}-${bytes} (a surrogate without its pair)`;
      throw new InputError(what, {
        where: display,
        hint: `check that the file is UTF-16 (a lone surrogate or an odd byte count says it is not), or remove ${name}`,
        cause: e,
      });
    }
  };
  for await (const c of chunks) {
    if (decoder === undefined) {
      const s = sniffUnicode(c);
      if (s === null || !s.encoding.startsWith('UTF-16'))
        throw new InputError(
          `${name} is utf-16, but the file ${s ? `is ${s.encoding}` : 'has neither a UTF-16 byte-order mark nor the NUL bytes of UTF-16 text'}`,
          {
            where: display,
            hint: s ? `convert it: ${describeSniff(s).iconv}` : `remove ${name} (UTF-8 is the default), or set the one the file is in`,
          },
        );
      // A byte-order mark is read and dropped (ignoreBOM false); fatal: a lone surrogate is an error, not U+FFFD.
      decoder = new TextDecoder(s.encoding.toLowerCase(), { fatal: true });
    }
    bytes += c.length;
    yield decode(c);
  }
  if (decoder) {
    const tail = decode();
    if (tail.length > 0) yield tail;
  }
}

const fatal = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const lossy = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/** Windows-1252's 0x80-0x9F (WHATWG's index; its five unassigned bytes stay C1 controls); the rest is Latin-1. */
const CP1252_HIGH =
  '\u20ac\u0081\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\u008d\u017d\u008f' +
  '\u0090\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\u009d\u017e\u0178';

/** Text of a line in one of SINGLE_BYTE_ENCODINGS. */
type Decode = (b: Uint8Array) => string;

/**
 * The decoder of `encoding`. Node's TextDecoder reads windows-1252 (and its labels latin1, iso-8859-1) as Latin-1,
 * so Excel's ’ “ ” € – (0x80-0x9F) came out as C1 controls: those 32 bytes are mapped here.
 */
export function singleByteDecoder(encoding: string): Decode {
  if (encoding === 'windows-1252' || encoding === 'cp1252' || encoding === 'latin1' || encoding === 'iso-8859-1')
    return (b) =>
      Buffer.from(b.buffer, b.byteOffset, b.byteLength)
        .toString('latin1')
        .replace(/[\x80-\x9f]/g, (c) => CP1252_HIGH[c.charCodeAt(0) - 0x80]);
  const d = new TextDecoder(encoding);
  return (b) => d.decode(b);
}

function decodeLine(bytes: Uint8Array, line: number, decoder?: Decode): Line {
  let end = bytes.length;
  if (end > 0 && bytes[end - 1] === 0x0d) end--; // CRLF files
  let start = 0;
  if (line === 1 && end >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) start = 3;
  const view = bytes.subarray(start, end);
  if (decoder) return { line, text: decoder(view), invalidUtf8: false };
  try {
    return { line, text: fatal.decode(view), invalidUtf8: false };
  } catch {
    const offset = firstInvalidUtf8(view);
    return { line, text: lossy.decode(view), invalidUtf8: true, ...(offset >= 0 ? { badByte: { offset, value: view[offset] } } : {}) };
  }
}

/**
 * Bounds on what a gzip file may inflate to: `maxRatio` times its own size, or `minBytes` if more. Real text (CSV,
 * JSONL) compresses 3-20 times; a bomb about 1000.
 */
export const GZIP_LIMITS = { maxRatio: 100, minBytes: 1 << 30 };

/** gzip's magic number: a file that starts with it is read through gunzip, whatever its name. */
const GZIP_MAGIC = [0x1f, 0x8b];

/**
 * The text of a file in chunks of up to 1 MiB: its bytes, or what they gunzip to when it is gzip (`data.jsonl.gz`, or a
 * download saved compressed). `onData` and `onBytes` see the file's own bytes, so its hash is the file's.
 */
async function* fileText(path: string, opts: LineOptions): AsyncGenerator<Buffer> {
  const raw = opts.handle
    ? opts.handle.createReadStream({ start: 0, autoClose: false, highWaterMark: 1 << 20 })
    : createReadStream(path, { highWaterMark: 1 << 20 });
  const tap = (chunk: Buffer) => {
    opts.onData?.(chunk);
    opts.onBytes?.(chunk.length);
  };
  const it = (raw as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const head = await it.next();
  if (head.done) return;
  const first = head.value;
  if (first[0] !== GZIP_MAGIC[0] || first[1] !== GZIP_MAGIC[1]) {
    // A reader that stops early (a refused header, maxBadFraction) returns here at a yield: the file must be closed.
    try {
      tap(first);
      yield first;
      for (let r = await it.next(); !r.done; r = await it.next()) {
        tap(r.value);
        yield r.value;
      }
    } finally {
      raw.destroy();
    }
    return;
  }
  // Deflate inflates up to ~1000 times: a small hostile file would otherwise stream gigabytes of rows (and, past
  // maxRows, still be inflated to its end for the count), bounded only by the stage's timeout.
  // The allowance grows with the compressed bytes zlib has taken so far (`bytesWritten`, counted before each output
  // chunk is pushed), not with the file's size: zero padding after the data, which zlib never takes, must not raise it.
  const limits = { ...GZIP_LIMITS, ...opts.gzipLimits };
  const file = opts.display ?? path;
  let inflated = 0;
  let fed = 0;
  const gunzip = createGunzip({ chunkSize: 1 << 20 });
  // Once zlib stops at zero padding, gunzip ends and the loop below destroys it; the rest of the file is still read and
  // tapped, so the hash is of every byte. A read error there (gunzip already gone) is thrown by `await feed`.
  const taking = () => !gunzip.destroyed && !gunzip.writableEnded;
  const drained = () =>
    new Promise<void>((resolve) => {
      const done = () => {
        gunzip.off('drain', done).off('close', done);
        resolve();
      };
      gunzip.on('drain', done).on('close', done);
    });
  const feed = (async () => {
    try {
      for (let r: IteratorResult<Buffer> = head; !r.done; r = await it.next()) {
        tap(r.value);
        fed += r.value.length;
        if (taking() && !gunzip.write(r.value)) await drained();
      }
      if (taking()) gunzip.end();
    } catch (e) {
      gunzip.destroy(e as Error);
      throw e;
    }
  })();
  // Awaited below, or in `finally`: a rejection while the reader is elsewhere (gzipEnd) is not an unhandled one.
  feed.catch(() => {});
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      inflated += chunk.length;
      if (inflated > Math.max(limits.minBytes, limits.maxRatio * gunzip.bytesWritten)) {
        throw new InputError(
          `the gzip data inflates to more than ${limits.maxRatio} times its size (over ${inflated} bytes from ${gunzip.bytesWritten} compressed bytes): a gzip bomb, or data far more repetitive than any real export`,
          {
            where: file,
            hint: `if it is real data, decompress it first (gunzip -k '${file}') and read the uncompressed file`,
          },
        );
      }
      yield chunk;
    }
    // zlib reads concatenated members (`cat a.gz b.gz`, RFC 1952) as one stream, and stops, without a word, at a zero
    // byte after a member: what it did not take is padding (tape, dd) or, past the zeros, data that would go unread.
    await feed;
    if (gunzip.bytesWritten < fed) await trailingBytes(path, opts.handle, file, gunzip.bytesWritten, opts.onWarning);
  } catch (e) {
    // A CRC or deflate error is the data's own; only where a header was expected may the data have ended before.
    const headerError = /incorrect header check|unknown compression method|unknown header flags|unexpected end/;
    const end =
      (e as NodeJS.ErrnoException).code?.startsWith('Z_') && headerError.test((e as Error).message)
        ? await gzipEnd(path, opts.handle)
        : undefined;
    if (end !== undefined) throw trailingGarbage(file, end, 0);
    if ((e as NodeJS.ErrnoException).code?.startsWith('Z_'))
      throw new InputError(`not a readable gzip file: ${(e as Error).message}`, {
        where: file,
        hint: /unexpected end/.test((e as Error).message)
          ? 'it is cut short (an interrupted download?): download or compress it again'
          : 'check the file, e.g. with gzip -t',
        cause: e,
      });
    throw e;
  } finally {
    raw.destroy();
    gunzip.destroy();
    await feed.catch(() => {});
  }
}

function trailingGarbage(file: string, offset: number, zeros: number): InputError {
  return new InputError(
    `bytes that are not gzip data follow the gzip data${zeros > 0 ? ` and ${zeros} zero bytes of padding` : ''}, at byte offset ${offset + zeros}`,
    {
      where: file,
      hint: `they would go unread: if the file was appended to (a second file, or a download resumed wrongly), make it again; to read the gzip data alone, head -c ${offset} '${file}' > trimmed.gz`,
    },
  );
}

/**
 * The bytes of a gzip file from `offset`, where zlib stopped, to its end: zeros are padding, which gzip(1) ignores
 * too ("trailing garbage ignored"), and are passed over with a warning; anything else is an error naming its offset.
 */
async function trailingBytes(
  path: string,
  handle: FileHandle | undefined,
  file: string,
  offset: number,
  onWarning?: (m: string) => void,
): Promise<void> {
  const fh = handle ?? (await open(path));
  try {
    const buf = Buffer.alloc(1 << 16);
    let zeros = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, offset + zeros);
      if (bytesRead === 0) break;
      let i = 0;
      while (i < bytesRead && buf[i] === 0) i++;
      if (i < bytesRead) throw trailingGarbage(file, offset, zeros + i);
      zeros += bytesRead;
    }
    onWarning?.(`${file}: ${zeros} zero bytes after the gzip data (padding, as tape and dd write) ignored`);
  } finally {
    if (!handle) await fh.close();
  }
}

/** How much of a gzip file gzipEnd holds at once: a member within it is inflated in one call. */
const GZIP_WALK_WINDOW = 1 << 20;

/**
 * Where a gzip file's gzip data ends, when zlib failed after it: zlib reads member after member (RFC 1952) and, at bytes
 * that do not begin one, says only `incorrect header check` (or, at one byte too few for a header, `unexpected end of
 * file`), neither where nor that the data before was whole. Here the members are walked: each header read, its deflate
 * data inflated raw, which stops at the data's end and counts the bytes it took (exact, one pass), its 8-byte trailer
 * (checked by the gunzip that failed) stepped over. A member within the window read is inflated in one synchronous
 * call, its output bounded (a file of many small members, `gzip >>` a line at a time, costs no stream each); a larger
 * one is streamed. The offset of the first byte after a whole member that cannot begin one (not 1f 8b 08, or reserved
 * flags set); undefined when the file is cut short or its data broken.
 */
async function gzipEnd(path: string, handle?: FileHandle): Promise<number | undefined> {
  const fh = handle ?? (await open(path));
  try {
    const size = (await fh.stat()).size;
    /** The file's bytes from `bufAt`. */
    let buf = Buffer.alloc(0);
    let bufAt = 0;
    /** The file from `at`: at least `n` bytes where it has them, as much of the window as is read. */
    const from = async (at: number, n: number): Promise<Buffer> => {
      if (at < bufAt || at + n > bufAt + buf.length) {
        const b = Buffer.alloc(Math.max(n, GZIP_WALK_WINDOW));
        const { bytesRead } = await fh.read(b, 0, b.length, at);
        buf = b.subarray(0, bytesRead);
        bufAt = at;
      }
      return buf.subarray(at - bufAt);
    };
    for (let member = 0; member < size; ) {
      const head = (await from(member, 10)).subarray(0, 10);
      const magic = [0x1f, 0x8b, 0x08];
      const notMember = head.subarray(0, 3).some((b, i) => b !== magic[i]) || (head.length > 3 && (head[3] & 0xe0) !== 0);
      if (notMember) return member === 0 ? undefined : member;
      if (head.length < 10) return undefined;
      let at = member + 10;
      const flags = head[3];
      if (flags & 0x04) {
        const xlen = await from(at, 2);
        if (xlen.length < 2) return undefined;
        at += 2 + xlen.readUInt16LE(0);
      }
      // FNAME, then FCOMMENT: each ends at a zero byte.
      for (const bit of [0x08, 0x10])
        if (flags & bit)
          for (let found = false; !found; ) {
            const b = await from(at, 1);
            if (b.length === 0) return undefined;
            const z = b.indexOf(0);
            found = z !== -1;
            at += found ? z + 1 : b.length;
          }
      if (flags & 0x02) at += 2;
      if (at >= size) return undefined;
      const inflatedBy = (b: Buffer): number | undefined => {
        try {
          const r = inflateRawSync(b, { info: true, maxOutputLength: 8 << 20 });
          return (r as unknown as { engine: { bytesWritten: number } }).engine.bytesWritten;
        } catch {
          return undefined;
        }
      };
      let took = inflatedBy(await from(at, 1));
      // A member that runs past the window's end: read again from its start.
      if (took === undefined && at > bufAt && bufAt + buf.length < size) took = inflatedBy(await from(at, bufAt + buf.length - at + 1));
      if (took === undefined) {
        // Larger than the window (or the output bound), or broken: streamed, from the file.
        const inflate = createInflateRaw({ chunkSize: 1 << 20 });
        try {
          await pipeline(
            fh.createReadStream({ start: at, autoClose: false, highWaterMark: 1 << 20 }),
            inflate,
            new Writable({ write: (_c, _e, done) => done() }),
          );
        } catch {
          return undefined;
        }
        took = inflate.bytesWritten;
      }
      member = at + took + 8;
    }
    return undefined;
  } finally {
    if (!handle) await fh.close();
  }
}

/**
 * Yields every line of a file, including blank ones (callers decide what a blank line means), in
 * arrays of one read chunk each: a per-line async step would cost more than parsing the line.
 */
export async function* readLineChunks(path: string, opts: LineOptions = {}): AsyncGenerator<Line[]> {
  const max = opts.maxLineBytes ?? LINE_LIMIT_BYTES;
  const utf16 = opts.encoding === 'utf-16';
  const decoder = opts.encoding === undefined || opts.encoding === 'utf-8' || utf16 ? undefined : singleByteDecoder(opts.encoding);
  // The unfinished line is kept as a list of pieces and joined once when its `\n` arrives: joining
  // on every chunk would copy a long line again and again (quadratic in its length).
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  /** Over-long line being skipped: its prefix and length so far. */
  let skipping: { prefix: Uint8Array; bytes: number } | null = null;
  let line = 0;
  let first = true;
  const finish = (tail: Uint8Array): Line => {
    const bytes = (skipping ? skipping.bytes : pendingBytes) + tail.length;
    if (skipping || bytes > max) {
      const prefix = skipping
        ? skipping.prefix
        : Buffer.concat([...pending, tail.subarray(0, TOO_LONG_PREFIX)]).subarray(0, TOO_LONG_PREFIX);
      skipping = null;
      pending = [];
      pendingBytes = 0;
      return { line: ++line, text: lossy.decode(prefix), invalidUtf8: false, tooLong: true, bytes };
    }
    const whole = pending.length === 0 ? tail : Buffer.concat([...pending, tail]);
    pending = [];
    pendingBytes = 0;
    return decodeLine(whole, ++line, decoder);
  };
  const keep = (piece: Uint8Array): void => {
    if (skipping) {
      skipping.bytes += piece.length;
      return;
    }
    if (pendingBytes + piece.length > max) {
      const head = Buffer.concat([...pending, piece.subarray(0, Math.max(0, TOO_LONG_PREFIX - pendingBytes))]).subarray(0, TOO_LONG_PREFIX);
      skipping = { prefix: Uint8Array.from(head), bytes: pendingBytes + piece.length };
      pending = [];
      pendingBytes = 0;
      return;
    }
    pending.push(piece);
    pendingBytes += piece.length;
  };
  const setting = opts.encodingSetting ?? 'encoding: ';
  for await (const chunk of utf16 ? fromUtf16(fileText(path, opts), opts.display ?? path, setting) : fileText(path, opts)) {
    if (first) {
      // The first read of a file holds min(its size, 1 MiB): enough to tell its encoding.
      first = false;
      const archive = archiveError(chunk, opts.display ?? path);
      if (archive) throw archive;
      const s = sniffUnicode(chunk);
      if (s) throw notUtf8(opts.display ?? path, s, setting);
      if (decoder && chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf)
        throw new InputError(`the file starts with a UTF-8 byte-order mark, but ${settingName(setting)} is ${opts.encoding}`, {
          where: opts.display ?? path,
          hint: `it is UTF-8: remove ${settingName(setting)}`,
        });
      if (crOnly(chunk)) {
        const file = opts.display ?? path;
        throw new InputError('its lines end in a carriage return alone (classic Mac OS line endings), so it reads as one line', {
          where: file,
          hint: `convert them to \\n, e.g. tr '\\r' '\\n' < '${file}' > converted${file.slice(file.lastIndexOf('.'))}`,
        });
      }
    }
    const out: Line[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl === -1) break;
      // A line within one chunk is a view into it; only a line spanning chunks is copied.
      out.push(finish(chunk.subarray(start, nl)));
      start = nl + 1;
    }
    // Copy the tail: the stream may reuse the chunk's memory.
    if (start < chunk.length) keep(new Uint8Array(chunk.subarray(start)));
    if (out.length > 0) yield out;
  }
  if (pendingBytes > 0 || skipping) yield [{ ...finish(new Uint8Array(0)), unterminated: true }];
}
