/**
 * Format readers: each turns one source file into a stream of records `{row, raw, values | bad}`.
 * `row` is the 1-based line for text formats (the first line of a multi-line CSV record) and the
 * 1-based row index for Parquet and Arrow. Readers report per-row problems as data and throw
 * InputError only when the whole file is unusable (bad header, corrupt Parquet footer).
 */
import { parse as parseCsv, type Options as CsvOptions } from 'csv-parse/sync';
import { stat } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { InputError } from '../errors.ts';
import { BATCH_ROWS } from './arrow-io.ts';
import type { BadRow } from './bad-rows.ts';
import { readLineChunks, singleByteDecoder, type EncodingSetting, type Line, type LineOptions } from './lines.ts';
import type { SourceFile } from './sources.ts';
import { repeatedMessageKeyRow } from './conversation.ts';
import { mayRepeat, scanKeys, type KeyScan } from './json-keys.ts';

export interface SourceRecord {
  row: number;
  /** Physical lines the record spans (1 for JSONL and columnar rows). */
  lines?: number;
  /** The record as it appeared (text formats) or as JSON (columnar formats), for quarantine. */
  raw: string;
  values?: Record<string, unknown>;
  bad?: BadRow;
}

export interface DelimitedOptions {
  /** Whether the first record names the columns. Default true. */
  header?: boolean;
  /** Column names when there is no header; default '1', '2', ... (1-based positions). */
  columns?: string[];
  /** Single character; default ',' for csv and '\t' for tsv. */
  delimiter?: string;
  /** Quote character, or false for none. Default '"' for csv, none for tsv (TSV has no quoting). */
  quote?: string | false;
  /**
   * Called once with the column names (the header's, `columns`, or the positions) before any record: a caller can
   * refuse a file whose columns lack what it reads before its first row, which a wrong delimiter makes a bad row.
   * `line` is the header line as read (without header, null).
   */
  onColumns?: (names: string[], line: string | null, leftOut?: readonly string[], unnamed?: readonly number[]) => void;
  /**
   * The header columns (JSONL: the fields) the caller reads. A name the header holds twice is refused when it is one
   * of these (or when this is not given): which of its values is meant cannot be told; a JSONL row that names one
   * twice is a `duplicate-field` bad row. Any other is left out of the records, and passed
   * to `onColumns` as `leftOut` so the caller can say so. (Columns without a name, also left out, are passed as
   * `unnamed`, their 1-based positions.)
   */
  readsColumns?: readonly string[];
  /**
   * JSONL: the field that holds a conversation (the chat task's `fields.messages`): a message object in it that names a
   * key twice is a `duplicate-field` bad row too, as the row's own keys are.
   */
  conversationField?: string;
  /**
   * JSONL: the field that holds a label. An integer in it past 2^53 is read from its text, exactly (a bigint): JSON.parse
   * rounds it to the nearest double, so 9007199254740993 and 9007199254740992 were one class without a word.
   */
  labelField?: string;
}

export interface ReadOptions extends DelimitedOptions {
  /** Text formats: the file's encoding when not UTF-8 (`ENCODINGS`). Default UTF-8. */
  encoding?: string;
  /** Text formats: bounds on a gzip file's inflated size; defaults in GZIP_LIMITS (lines.ts). */
  gzipLimits?: LineOptions['gzipLimits'];
  /**
   * Text formats: called for each line that is not a row, blank or (CSV/TSV) delimiters alone, so that a caller can
   * account for every line of the file.
   */
  onBlankLine?: () => void;
  /** Text formats: what was read past with a warning (a gzip file's trailing zero padding). */
  onWarning?: (message: string) => void;
  /** How hints name the encoding setting; default `encoding: ` (an ingest stage's). */
  encodingSetting?: EncodingSetting;
  onBytes?: (n: number) => void;
  /** Text formats: the file, open already (ingest opens it confined): read from it, never by the path. */
  handle?: LineOptions['handle'];
  /** Text formats: every chunk read, in order, so the caller can hash exactly what was parsed. */
  onData?: (chunk: Uint8Array) => void;
  /** Text formats: longest line kept (longer ones are bad rows). Default LINE_LIMIT_BYTES. */
  maxLineBytes?: number;
  /** CSV/TSV: most physical lines one quoted record may span. Default RECORD_LIMITS.lines. */
  maxRecordLines?: number;
  /** CSV/TSV: most characters one quoted record may hold. Default RECORD_LIMITS.chars. */
  maxRecordChars?: number;
  /** Parquet: decoding budgets. Default PARQUET_LIMITS. */
  parquetLimits?: Partial<typeof PARQUET_LIMITS>;
  signal?: AbortSignal;
}

/**
 * Bounds of one quoted CSV record: past them an unclosed quote is reported on the line that opened
 * it and reading resumes at the next line, instead of the quote swallowing the rest of the file.
 */
export const RECORD_LIMITS = { lines: 1000, chars: 16 << 20 };

const lineOptions = (file: SourceFile, opts: ReadOptions) => ({
  onBytes: opts.onBytes,
  onData: opts.onData,
  maxLineBytes: opts.maxLineBytes,
  display: file.display,
  encoding: opts.encoding,
  gzipLimits: opts.gzipLimits,
  onWarning: opts.onWarning,
  encodingSetting: opts.encodingSetting,
  handle: opts.handle,
});

const cp1252 = singleByteDecoder('windows-1252');

/** What to do about a file that is not UTF-8, for errors and hints, naming the encoding setting as the caller takes it. */
export function encodingAdvice(setting: EncodingSetting = 'encoding: '): string {
  const set = setting === 'encoding: ' ? 'set encoding: ' : 'give --encoding ';
  return `if Windows-1252 reads its bytes right (a file saved by Excel on Windows or by an older Western European program), ${set}windows-1252 (or iso-8859-15, windows-1250, windows-1251); otherwise convert it to UTF-8, e.g. iconv -f <encoding> -t UTF-8`;
}

/** encodingAdvice for an ingest stage. */
export const ENCODING_ADVICE = encodingAdvice();

/**
 * Why a line or record is not UTF-8: its first bad byte, and what Windows-1252 makes of it, since a file saved by
 * Excel on Windows or an older export is the usual cause and the character tells whether that reading is right.
 */
export function notUtf8Detail(what: 'line' | 'record', lines: readonly Line[]): string {
  const l = lines.find((x) => x.badByte !== undefined);
  if (!l?.badByte) return `${what} is not valid UTF-8`;
  const { offset, value } = l.badByte;
  const at = lines.length > 1 ? ` of line ${l.line}` : '';
  const hex = `0x${value.toString(16).toUpperCase().padStart(2, '0')}`;
  // Bytes Windows-1252 leaves unassigned (0x81, 0x8D, 0x8F, 0x90, 0x9D) would read as controls: no guess.
  const char = cp1252(Uint8Array.of(value));
  const guess = value >= 0xa0 || char.charCodeAt(0) > 0xff ? ` (${JSON.stringify(char)} in Windows-1252)` : '';
  return `${what} is not valid UTF-8: byte ${hex}${guess} at byte ${offset + 1}${at}`;
}

function tooLong(l: Line): SourceRecord {
  return {
    row: l.line,
    lines: 1,
    raw: l.text,
    bad: { reason: 'line-too-long', detail: `line is ${l.bytes} bytes long, more than the limit` },
  };
}

/** JSON.stringify that survives bigint and typed arrays from columnar sources. */
export function safeJson(v: unknown): string {
  return JSON.stringify(v, (_k, x) =>
    typeof x === 'bigint' ? x.toString() : ArrayBuffer.isView(x) ? Array.from(x as unknown as ArrayLike<number>) : x,
  );
}

/**
 * A web page saved in place of the data (a download that got a login, error or "not found" page), told by its first
 * line. As rows it would be a few bad ones, and with `onBadRow: quarantine` the file's data would go missing with
 * hardly a trace in the report; no JSONL line and no CSV header starts so.
 */
function htmlPage(file: SourceFile, row: number, line: string, kind: string): InputError | null {
  if (!/^\s*<(!doctype\s+html|html(?:[\s>]|$)|head(?:[\s>]|$)|body(?:[\s>]|$)|\?xml)/i.test(line)) return null;
  return new InputError(`the file is an HTML or XML page, not ${kind} (it starts with ${JSON.stringify(line.trim().slice(0, 60))})`, {
    where: `${file.display}:${row}`,
    hint: 'it is probably an error or sign-in page saved in place of the data: download the file again (for a private file, with its credentials), or remove it from the source',
  });
}

/**
 * A row's key checks, in at most one pass over its text (json-keys' scanKeys): a read field it names twice, a key a
 * message names twice (chat), and where a label's text is when JSON.parse rounded it (`rounded`). Without a
 * conversation or a rounded label, a row that cannot repeat a read field (mayRepeat) is not scanned.
 */
function rowKeys(text: string, opts: DelimitedOptions, rounded: boolean): KeyScan {
  const fields = opts.readsColumns ?? [];
  if (opts.conversationField === undefined && !rounded && !mayRepeat(text, fields)) return {};
  return scanKeys(text, { fields, messages: opts.conversationField, valueKey: rounded ? opts.labelField : undefined });
}

/** A label JSON.parse may have rounded: an integer (every double past 2^52 is one) that is no safe integer. */
function roundedLabel(values: Record<string, unknown>, field: string | undefined): boolean {
  const v = field !== undefined && Object.hasOwn(values, field) ? values[field] : undefined;
  return typeof v === 'number' && Number.isFinite(v) && !Number.isSafeInteger(v) && Number.isInteger(v);
}

/** The integer a JSON number's text stands for, exactly (`1.5e20` too), or undefined when it is no integer. */
function exactInteger(token: string): bigint | undefined {
  const m = /^(-?)([0-9]+)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?$/.exec(token);
  if (!m) return undefined;
  let digits = m[2]! + (m[3] ?? '');
  let exp = Number(m[4] ?? 0) - (m[3]?.length ?? 0);
  if (exp < 0) {
    if (/[^0]/.test(digits.slice(exp))) return undefined;
    digits = digits.slice(0, exp) || '0';
    exp = 0;
  }
  return BigInt(m[1] + digits + '0'.repeat(exp));
}

/**
 * A JSONL row's label that JSON.parse rounded (roundedLabel: an integer past 2^53, 9007199254740993 parses as
 * 9007199254740992) read exactly from its text, the number after the colon at `valueFrom` (scanKeys'), or the bad row
 * of a number that only rounded to an integer (9007199254740993.5).
 */
function exactLabel(text: string, valueFrom: number | undefined, field: string): bigint | BadRow {
  const value = /\s*:\s*(-?[0-9][0-9.eE+-]*)/y;
  value.lastIndex = valueFrom ?? text.length;
  const token = valueFrom === undefined ? undefined : value.exec(text)?.[1];
  const exact = token === undefined ? undefined : exactInteger(token);
  if (exact !== undefined) return exact;
  // The token is as long as the line allows (64 MiB of digits parse as one number): its start names it.
  const shown = token === undefined ? 'a number' : token.length > 40 ? `${token.slice(0, 40)}… (${token.length} characters)` : token;
  return {
    reason: 'invalid-label',
    detail: `label field ${JSON.stringify(field)} is ${shown}, a non-integer number; use strings or integers`,
  };
}

export async function* readJsonl(file: SourceFile, opts: ReadOptions = {}): AsyncGenerator<SourceRecord[]> {
  let first = true;
  for await (const lines of readLineChunks(file.abs, lineOptions(file, opts))) {
    const out: SourceRecord[] = [];
    for (const l of lines) {
      if (l.tooLong) {
        out.push(tooLong(l));
        continue;
      }
      // Blank lines separate nothing in JSONL; they are not rows, so they are skipped (and counted apart).
      if (l.text.trim() === '') {
        opts.onBlankLine?.();
        continue;
      }
      if (first) {
        first = false;
        const page = htmlPage(file, l.line, l.text, 'JSON Lines');
        if (page) throw page;
        // One JSON array of objects (pandas' to_json(orient='records'), a pretty-printed export): as lines it would be
        // a bad row a line, or one not-object row holding every record.
        const t = l.text.trim();
        if (t === '[' || t.startsWith('[{'))
          throw new InputError('the file is one JSON array, not JSON Lines (one object per line)', {
            where: `${file.display}:${l.line}`,
            hint: `convert it, e.g. jq -c '.[]' '${file.display}' > converted.jsonl (pandas: to_json(orient='records', lines=True))`,
          });
      }
      if (l.invalidUtf8) {
        out.push({ row: l.line, lines: 1, raw: l.text, bad: { reason: 'invalid-utf8', detail: notUtf8Detail('line', [l]) } });
        continue;
      }
      let v: unknown;
      try {
        // A byte-order mark beginning a later line is where a file saved with one was appended (`cat a.jsonl b.jsonl`).
        v = JSON.parse(l.text.charCodeAt(0) === 0xfeff ? l.text.slice(1) : l.text);
      } catch (e) {
        // Most files end in a line break; a last line without one that does not parse was most likely cut off.
        const cut = l.unterminated
          ? "; it is the file's last line and no line break follows it: the file may be cut short (still being written, or copied or downloaded in part)"
          : '';
        out.push({ row: l.line, lines: 1, raw: l.text, bad: { reason: 'invalid-json', detail: `${(e as Error).message}${cut}` } });
        continue;
      }
      if (typeof v !== 'object' || v === null || Array.isArray(v)) {
        out.push({
          row: l.line,
          lines: 1,
          raw: l.text,
          bad: {
            reason: 'not-object',
            detail: `expected a JSON object, got ${v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v}`,
          },
        });
        continue;
      }
      const rounded = roundedLabel(v as Record<string, unknown>, opts.labelField);
      const keys = rowKeys(l.text, opts, rounded);
      if (keys.repeatedField !== undefined) {
        out.push({
          row: l.line,
          lines: 1,
          raw: l.text,
          bad: {
            reason: 'duplicate-field',
            detail: `field ${JSON.stringify(keys.repeatedField.slice(0, 40))} is named more than once in the object, so which value is meant cannot be told (JSON.parse would keep the last): keep one`,
          },
        });
        continue;
      }
      if (keys.repeatedMessageKey) {
        out.push({
          row: l.line,
          lines: 1,
          raw: l.text,
          bad: repeatedMessageKeyRow(JSON.stringify(opts.conversationField), keys.repeatedMessageKey),
        });
        continue;
      }
      const label = rounded ? exactLabel(l.text, keys.valueFrom, opts.labelField!) : undefined;
      if (label !== undefined && typeof label !== 'bigint') {
        out.push({ row: l.line, lines: 1, raw: l.text, bad: label });
        continue;
      }
      out.push({
        row: l.line,
        lines: 1,
        raw: l.text,
        values: label === undefined ? (v as Record<string, unknown>) : { ...v, [opts.labelField!]: label },
      });
    }
    yield out;
  }
}

/**
 * csv-parse on text that holds quotes. A crafted file makes it throw on nearly every line, and the
 * stack trace each CsvError captures was half the time of reading such a file (7.7 s/MB); its
 * message is all that is read, so no frames are captured.
 */
function parseQuoted(text: string, options: CsvOptions): string[][] {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return parseCsv(text, options);
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/**
 * Tracks RFC 4180 quote state across a line so that records spanning lines are assembled before
 * csv-parse sees them; each record is then parsed on its own, so one bad record cannot derail
 * the rest of the file.
 */
function endsInsideQuotes(line: string, inQuote: boolean, delim: string, quote: string): boolean {
  let atFieldStart = !inQuote;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (inQuote) {
      if (c === quote) {
        if (line[i + 1] === quote) i++;
        else inQuote = false;
      }
    } else if (c === quote && atFieldStart) {
      inQuote = true;
      atFieldStart = false;
    } else atFieldStart = c === delim;
  }
  return inQuote;
}

/** Whether `line` holds nothing but delimiters and whitespace (a blank line too); stops at its first other character. */
function delimitersOnly(line: string, delimiter: string): boolean {
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c !== delimiter && c !== ' ' && c !== '\t' && c !== '\r' && c.trim() !== '') return false;
  }
  return true;
}

export async function* readDelimited(file: SourceFile, opts: ReadOptions = {}): AsyncGenerator<SourceRecord[]> {
  const tsv = file.format === 'tsv';
  const delimiter = opts.delimiter ?? (tsv ? '\t' : ',');
  const quote = opts.quote === undefined ? (tsv ? false : '"') : opts.quote;
  if (delimiter.length !== 1)
    throw new InputError(`delimiter must be one character, got ${JSON.stringify(delimiter)}`, { where: 'delimiter' });
  if (quote !== false && quote.length !== 1)
    throw new InputError(`quote must be one character or false, got ${JSON.stringify(quote)}`, { where: 'quote' });
  const header = opts.header ?? true;
  let names: string[] | null = header ? null : (opts.columns ?? null);
  let firstRecord = true;
  if (names !== null) opts.onColumns?.(names, null);

  const maxLines = opts.maxRecordLines ?? RECORD_LIMITS.lines;
  const maxChars = opts.maxRecordChars ?? RECORD_LIMITS.chars;
  /** Lines of the record being assembled, and whether its quote is still open. */
  let rec: Line[] = [],
    recChars = 0,
    inQuote = false;
  /**
   * Parses the record assembled in `rec`, whose quotes are all closed. A record of several lines
   * that fails at the quote opening one of its later lines is not consumed: it is returned as
   * `unparsable`, and `rec` is left for `abandon`. Its quote was closed, as far as the line scan can
   * tell, by the first quote of the next record (`"text",label`), so taking the lines as one bad
   * record would swallow good rows.
   */
  // The escape is the quote itself ('' in a '-quoted field), as csv-parse's default " is only for " quotes.
  const csvOptions = {
    delimiter,
    quote,
    escape: quote === false ? null : quote,
    record_delimiter: '\n',
    relax_column_count: true,
    skip_empty_lines: false,
    bom: false,
  } as const;
  const isRecordAlone = (line: string): boolean => {
    try {
      return parseQuoted(line, csvOptions).length === 1;
    } catch {
      return false;
    }
  };
  const emit = (): SourceRecord | { unparsable: string } | null => {
    const text = rec.map((l) => l.text).join('\n');
    const row = rec[0].line,
      lines = rec.length;
    if (header && names === null) {
      const page = htmlPage(file, row, rec[0].text, tsv ? 'TSV' : 'CSV');
      if (page) throw page;
      // Excel's `sep=;` line names the delimiter before the header: skipped when it is the one set, else it says which.
      const sep = lines === 1 ? /^sep=(.)$/i.exec(text) : null;
      if (sep) {
        if (sep[1] !== delimiter)
          throw new InputError(`the file's first line ${JSON.stringify(text)} says its delimiter is ${JSON.stringify(sep[1])}`, {
            where: `${file.display}:${row}`,
            hint: `set delimiter: ${JSON.stringify(sep[1])}`,
          });
        rec = [];
        recChars = 0;
        return null;
      }
    }
    // Without a header the first record is data, and a text may well start with `<html>` (a spam set's HTML mail): a
    // page is told by its first line not splitting into the columns set.
    const page = !header && firstRecord && names !== null ? htmlPage(file, row, rec[0].text, tsv ? 'TSV' : 'CSV') : null;
    firstRecord = false;
    const taken = rec;
    const invalid = rec.some((l) => l.invalidUtf8);
    let records: string[][] = [];
    let error: string | null = null;
    // Without quote characters a record is a plain split; csv-parse handles the quoted ones.
    if (quote === false || !text.includes(quote)) records = [text.split(delimiter)];
    else
      try {
        // Records end at \n only, as lines do: a lone \r is data, not the end of a record that
        // csv-parse would return after the first one, to be dropped.
        records = parseQuoted(text, csvOptions);
        if (records.length > 1) error = `csv-parse found ${records.length} records in it`;
      } catch (e) {
        error = (e as Error).message;
      }
    // Checked before invalid UTF-8 too: a bad byte on the line that left a quote open must not
    // take the next lines down with it.
    // Only where csv-parse stopped on a later line that starts a record (a record on its own, such as
    // `3,"c",ham`, or a line that opens with a quote): a quote of that line "closed" the first line's,
    // so the first line left its quote open and the lines after it are records of their own. A record
    // that stops on a line that starts none (a stray quote inside a multi-line field) stays one bad
    // record: reading its lines again would turn the fragments of a field into rows.
    const stoppedAt = Number(/ at line (\d+)/.exec(error ?? '')?.[1] ?? 0);
    const stoppedLine = stoppedAt >= 2 ? rec[stoppedAt - 1]?.text : undefined;
    if (error !== null && lines > 1 && stoppedLine !== undefined && (stoppedLine.startsWith(String(quote)) || isRecordAlone(stoppedLine))) {
      // Name the physical line csv-parse stopped at (it counts from the record's first line).
      return { unparsable: error.replace(/ at line (\d+)/, (_, n: string) => ` on line ${row + Number(n) - 1}`) };
    }
    rec = [];
    recChars = 0;
    // A header that does not parse is no header: quarantining it would make the first data row the header.
    if (error !== null && header && names === null)
      throw new InputError(`the header line does not parse as CSV: ${error.replace(/ at line \d+/, '')}`, {
        where: `${file.display}:${row}`,
        hint: "fix the header's quoting, or set quote: false, or header: false with columns: [...]",
      });
    // A header that is not UTF-8 would name its columns with U+FFFD: whatever the mapping says, they would not match.
    if (invalid && header && names === null)
      throw new InputError(`the header ${notUtf8Detail('record', taken).replace(/^record /, '')}`, {
        where: `${file.display}:${row}`,
        hint: `the file is not UTF-8: ${encodingAdvice(opts.encodingSetting)}`,
      });
    if (page && (invalid || error !== null || (records[0] ?? []).length !== names!.length)) throw page;
    if (invalid) return { row, lines, raw: text, bad: { reason: 'invalid-utf8', detail: notUtf8Detail('record', taken) } };
    if (error !== null) return { row, lines, raw: text, bad: { reason: 'csv-syntax', detail: error.replace(/ at line \d+/, '') } };
    const fields = records[0] ?? [''];
    if (names === null) {
      if (header) {
        const seen = new Set<string>();
        const duplicates = new Set<string>();
        // A column without a name is no field of the records: pandas' to_csv writes its index so (`,text,label`), and
        // a spreadsheet its empty trailing columns. No mapping can name it, so it is left out rather than refused.
        names = fields.map((n) => (n.trim() === '' ? '' : n));
        for (const n of names) {
          if (n === '') continue;
          if (seen.has(n) && (opts.readsColumns === undefined || opts.readsColumns.includes(n)))
            throw new InputError(`header has a duplicate (${JSON.stringify(n)}) column name`, {
              where: `${file.display}:${row}`,
              hint: 'fix the header, or set header: false and columns: [...]',
            });
          if (seen.has(n)) duplicates.add(n);
          seen.add(n);
        }
        // A duplicate no one reads (a spreadsheet's two "notes" columns) is left out, as a column without a name is.
        if (duplicates.size > 0) names = names.map((n) => (duplicates.has(n) ? '' : n));
        const unnamed: number[] = [];
        fields.forEach((n, i) => {
          if (n.trim() === '') unnamed.push(i + 1);
        });
        opts.onColumns?.(
          names.filter((n) => n !== ''),
          text,
          [...duplicates],
          unnamed,
        );
        return null;
      }
      names = fields.map((_, i) => String(i + 1));
      opts.onColumns?.(names, null);
    }
    if (fields.length !== names.length) {
      // A line's own \r\n lost its \r already: any \r left ends no line, and is most likely where a file with classic
      // Mac OS line ends was joined to this one (crOnly refuses a file that has only those).
      const crs = text.split('\r').length - 1;
      const cr =
        crs === 0
          ? ''
          : `; the record holds ${crs} carriage return${crs === 1 ? '' : 's'} not followed by a line break: lines ending in \\r alone (classic Mac OS) read as one; convert them, e.g. perl -pe 's/\\r(?!\\n)/\\n/g' '${file.display}' > converted.csv`;
      return {
        row,
        lines,
        raw: text,
        bad: { reason: 'column-count', detail: `expected ${names.length} columns, got ${fields.length}${cr}` },
      };
    }
    // Prototype-less: a column named __proto__ is a column like any other.
    const values: Record<string, unknown> = Object.create(null);
    for (let i = 0; i < names.length; i++) if (names[i] !== '') values[names[i]] = fields[i];
    return { row, lines, raw: text, values };
  };
  /**
   * The open quote of the record being assembled cannot close in bounds: its first line is a bad
   * row, and the lines after it are parsed again as fresh records (returned, to be fed first).
   */
  const abandon = (why: string, out: SourceRecord[]): Line[] => {
    const [first, ...rest] = rec;
    if (header && names === null) {
      throw new InputError(`the header opens a quote that is not closed ${why}`, {
        where: `${file.display}:${first.line}`,
        hint: "fix the header's quoting, or set quote: false",
      });
    }
    rec = [];
    recChars = 0;
    inQuote = false;
    out.push({
      row: first.line,
      lines: 1,
      raw: first.text,
      bad: {
        reason: 'csv-syntax',
        detail: `quote opened on line ${first.line} is not closed ${why}; reading resumed at line ${first.line + 1}`,
      },
    });
    return rest;
  };
  const feed = (input: Line[], out: SourceRecord[]): void => {
    let queue = input,
      i = 0;
    /** A line read but not part of the abandoned record (an over-long one): it is read again after it. */
    let taken: Line | null = null;
    /**
     * Reads again, from the second line of the abandoned record on, every line read since. Those
     * lines are the last ones taken from `queue` (a record holds every line read since its first),
     * so moving `i` back is enough; only a record begun in an earlier chunk is copied in front of
     * the rest of this one. Copying the rest of the chunk on every abandon would be quadratic in
     * a chunk full of broken records.
     */
    const reread = (rest: Line[]): void => {
      const back = i - rest.length - (taken === null ? 0 : 1);
      if (rest.length === 0 ? back >= 0 : back >= 0 && queue[back] === rest[0]) i = back;
      else {
        queue = [...rest, ...(taken === null ? [] : [taken]), ...queue.slice(i)];
        i = 0;
      }
    };
    while (i < queue.length) {
      const l = queue[i++];
      taken = null;
      if (rec.length === 0) {
        if (l.tooLong) {
          out.push(tooLong(l));
          continue;
        }
        // Blank lines between records are not rows; nor are lines of delimiters alone (`,,,`), every field empty, which a
        // spreadsheet writes for the empty rows below its data (a TSV's tabs alone are blank to trim() already).
        if (delimitersOnly(l.text, delimiter)) {
          opts.onBlankLine?.();
          continue;
        }
      } else if (l.tooLong) {
        taken = l;
        reread(abandon('before an over-long line', out));
        continue;
      }
      rec.push(l);
      recChars += l.text.length;
      if (quote !== false) inQuote = endsInsideQuotes(l.text, rec.length > 1 && inQuote, delimiter, quote);
      if (inQuote) {
        if (rec.length > maxLines || recChars > maxChars)
          reread(abandon(`within ${rec.length > maxLines ? `${maxLines} lines` : `${maxChars} characters`}`, out));
        continue;
      }
      const r = emit();
      if (r === null) continue;
      if ('unparsable' in r) {
        reread(abandon(`properly (${r.unparsable})`, out));
        continue;
      }
      out.push(r);
    }
  };

  for await (const lines of readLineChunks(file.abs, lineOptions(file, opts))) {
    const out: SourceRecord[] = [];
    feed(lines, out);
    yield out;
  }
  const out: SourceRecord[] = [];
  while (rec.length > 0) feed(abandon('before the end of the file', out), out);
  if (out.length > 0) yield out;
  if (header && names === null)
    throw new InputError('file is empty: no header line', { where: file.display, hint: 'remove the file or set header: false' });
}

/**
 * Limits of decoding one Parquet or Arrow file (in a worker thread, see source-thread.mjs): a row
 * group or record batch that takes longer than `baseMs` (+ `msPerMiB` per MiB of a Parquet row
 * group's compressed size), or more heap than `heapMb`, is a corrupt file, not a reason to hang or
 * crash the worker.
 */
export const PARQUET_LIMITS = { baseMs: 60_000, msPerMiB: 2_000, heapMb: 4096 };

type ThreadReply =
  | { type: 'meta'; groups: { rows: number; bytes: number }[]; names: string[] }
  | { type: 'rows'; rows: Record<string, unknown>[] }
  | { type: 'done' }
  | { type: 'error'; phase: 'metadata' | 'rows'; message: string };

/** A decoding thread for one columnar file; `ask` sends a request and awaits the reply within a budget. */
function decodingThread(file: SourceFile, opts: ReadOptions) {
  const limits = { ...PARQUET_LIMITS, ...opts.parquetLimits };
  const kind = file.format === 'parquet' ? 'Parquet' : 'Arrow IPC';
  const thread = new Worker(new URL('./source-thread.mjs', import.meta.url), {
    workerData: { path: file.abs, format: file.format },
    execArgv: [],
    resourceLimits: { maxOldGenerationSizeMb: limits.heapMb },
  });
  thread.unref();
  let waiting: { resolve: (r: ThreadReply) => void; reject: (e: unknown) => void } | null = null;
  let failed: unknown = null;
  const fail = (e: unknown) => {
    failed ??= e;
    waiting?.reject(e);
    waiting = null;
  };
  thread.on('message', (m: ThreadReply) => {
    waiting?.resolve(m);
    waiting = null;
  });
  thread.on('error', (e) =>
    fail(
      (e as NodeJS.ErrnoException).code === 'ERR_WORKER_OUT_OF_MEMORY'
        ? new InputError(
            `decoding needed more than ${limits.heapMb} MB of memory; the file is corrupt or a row group is too large to read`,
            { where: file.display, hint: 'check the file, or rewrite it with smaller row groups' },
          )
        : new InputError(`not a readable ${kind} file: ${(e as Error).message}`, { where: file.display, cause: e }),
    ),
  );
  thread.on('exit', (code) => fail(new Error(`the ${kind} decoding thread exited (code ${code})`)));
  const ask = (request: unknown, what: string, budgetMs: number): Promise<ThreadReply> =>
    new Promise((resolve, reject) => {
      if (failed) {
        reject(failed);
        return;
      }
      const timer = setTimeout(() => {
        fail(
          new InputError(
            `decoding ${what} did not finish within ${Math.round(budgetMs / 1000)} s; the file is probably corrupt (impossible counts or offsets)`,
            { where: file.display, hint: 'check the file, e.g. with pyarrow' },
          ),
        );
      }, budgetMs);
      waiting = {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      if (request !== undefined) thread.postMessage(request);
    });
  const close = async () => {
    thread.removeAllListeners('exit');
    await thread.terminate();
  };
  const unreadable = (m: string) =>
    new InputError(`not a readable ${kind} file: ${m}`, {
      where: file.display,
      hint: 'check the file, or set format if the extension is misleading',
    });
  /**
   * A column the caller reads that the schema names twice: both decoders give the first without a word (pyarrow
   * refuses to pick: `Field "text" exists 2 times`), as a CSV header naming it twice is refused.
   */
  const repeatedColumn = (names: string[]): InputError | undefined => {
    const seen = new Set<string>();
    for (const n of names) {
      if (seen.has(n) && (opts.readsColumns === undefined || opts.readsColumns.includes(n)))
        return new InputError(`the ${kind} schema has a duplicate (${JSON.stringify(n.slice(0, 40))}) column name`, {
          where: file.display,
          hint: 'which of the columns is meant cannot be told: rename or drop one and write the file again (pyarrow: table.rename_columns)',
        });
      seen.add(n);
    }
    return undefined;
  };
  return { limits, ask, close, unreadable, repeatedColumn };
}

/**
 * An empty Parquet or Arrow file: a write or copy cut short. The decoders' own words for it name no cause ("Offset is
 * outside the bounds of the DataView").
 */
async function refuseEmpty(file: SourceFile, kind: string): Promise<void> {
  if ((await stat(file.abs)).size === 0)
    throw new InputError(`the file is empty (0 bytes), which no ${kind} file is`, {
      where: file.display,
      hint: 'it was probably cut short while written or copied: write or copy it again, or remove it',
    });
}

export async function* readParquet(file: SourceFile, opts: ReadOptions = {}): AsyncGenerator<SourceRecord[]> {
  await refuseEmpty(file, 'Parquet');
  const t = decodingThread(file, opts);
  try {
    opts.signal?.throwIfAborted();
    const meta = await t.ask(undefined, 'the footer', t.limits.baseMs);
    if (meta.type === 'error') throw t.unreadable(meta.message);
    if (meta.type !== 'meta') throw new Error('decoding thread: unexpected reply');
    const twice = t.repeatedColumn(meta.names);
    if (twice) throw twice;
    // Read whole row groups: hyparquet decodes a row group's column chunks in full, so smaller
    // slices would decode the same group again and again. Memory is bounded by the row group size.
    let groupStart = 0;
    for (const [g, rg] of meta.groups.entries()) {
      const rowStart = groupStart,
        rowEnd = groupStart + rg.rows;
      groupStart = rowEnd;
      if (rowEnd === rowStart) continue;
      opts.signal?.throwIfAborted();
      const r = await t.ask(
        { rowStart, rowEnd },
        `row group ${g + 1} (rows ${rowStart + 1}-${rowEnd})`,
        t.limits.baseMs + (t.limits.msPerMiB * rg.bytes) / (1 << 20),
      );
      if (r.type === 'error')
        throw new InputError(`cannot decode Parquet rows ${rowStart + 1}-${rowEnd}: ${r.message}`, { where: file.display });
      if (r.type !== 'rows') throw new Error('decoding thread: unexpected reply');
      for (let i = 0; i < r.rows.length; i += BATCH_ROWS) {
        yield r.rows.slice(i, i + BATCH_ROWS).map((values, j) => ({ row: rowStart + i + j + 1, lines: 1, raw: safeJson(values), values }));
      }
      opts.onBytes?.(rg.bytes);
    }
  } finally {
    await t.close();
  }
}

export async function* readArrowRecords(file: SourceFile, opts: ReadOptions = {}): AsyncGenerator<SourceRecord[]> {
  await refuseEmpty(file, 'Arrow IPC');
  const t = decodingThread(file, opts);
  try {
    const meta = await t.ask(undefined, 'the schema', t.limits.baseMs);
    if (meta.type === 'error') throw t.unreadable(meta.message);
    if (meta.type !== 'meta') throw new Error('decoding thread: unexpected reply');
    const twice = t.repeatedColumn(meta.names);
    if (twice) throw twice;
    let row = 0;
    for (let b = 1; ; b++) {
      opts.signal?.throwIfAborted();
      const r = await t.ask({}, `record batch ${b}`, t.limits.baseMs);
      if (r.type === 'done') break;
      if (r.type === 'error') throw t.unreadable(r.message);
      if (r.type !== 'rows') throw new Error('decoding thread: unexpected reply');
      yield r.rows.map((values) => ({ row: ++row, lines: 1, raw: safeJson(values), values }));
    }
  } finally {
    await t.close();
  }
}

/** Records of one file, in arrays (one per read chunk or record batch). */
export function readRecords(file: SourceFile, opts: ReadOptions = {}): AsyncGenerator<SourceRecord[]> {
  switch (file.format) {
    case 'jsonl':
      return readJsonl(file, opts);
    case 'csv':
    case 'tsv':
      return readDelimited(file, opts);
    case 'parquet':
      return readParquet(file, opts);
    case 'arrow':
      return readArrowRecords(file, opts);
  }
}
