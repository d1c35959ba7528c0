/**
 * Format readers: each turns one source file into a stream of records `{row, raw, values | bad}`.
 * `row` is the 1-based line for text formats (the first line of a multi-line CSV record) and the
 * 1-based row index for Parquet and Arrow. Readers report per-row problems as data and throw
 * InputError only when the whole file is unusable (bad header, corrupt Parquet footer).
 */
import { parse as parseCsv } from 'csv-parse/sync';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { InputError } from '../errors.ts';
import { BATCH_ROWS, readArrowBatches } from './arrow-io.ts';
import type { BadRow } from './bad-rows.ts';
import { readLineChunks } from './lines.ts';
import type { SourceFile } from './sources.ts';

export interface SourceRecord {
  row: number;
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
}

export interface ReadOptions extends DelimitedOptions {
  onBytes?: (n: number) => void;
}

/** JSON.stringify that survives bigint and typed arrays from columnar sources. */
export function safeJson(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : ArrayBuffer.isView(x) ? Array.from(x as unknown as ArrayLike<number>) : x));
}

export async function* readJsonl(file: SourceFile, opts: ReadOptions = {}): AsyncGenerator<SourceRecord[]> {
  for await (const lines of readLineChunks(file.abs, opts.onBytes)) {
    const out: SourceRecord[] = [];
    for (const l of lines) {
      // Blank lines separate nothing in JSONL; they are not rows, so they are skipped, not counted.
      if (l.text.trim() === '') continue;
      if (l.invalidUtf8) { out.push({ row: l.line, raw: l.text, bad: { reason: 'invalid-utf8', detail: 'line is not valid UTF-8' } }); continue; }
      let v: unknown;
      try { v = JSON.parse(l.text); } catch (e) {
        out.push({ row: l.line, raw: l.text, bad: { reason: 'invalid-json', detail: (e as Error).message } });
        continue;
      }
      if (typeof v !== 'object' || v === null || Array.isArray(v)) {
        out.push({ row: l.line, raw: l.text, bad: { reason: 'not-object', detail: `expected a JSON object, got ${v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v}` } });
        continue;
      }
      out.push({ row: l.line, raw: l.text, values: v as Record<string, unknown> });
    }
    yield out;
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
    } else if (c === quote && atFieldStart) { inQuote = true; atFieldStart = false; } else atFieldStart = c === delim;
  }
  return inQuote;
}

export async function* readDelimited(file: SourceFile, opts: ReadOptions = {}): AsyncGenerator<SourceRecord[]> {
  const tsv = file.format === 'tsv';
  const delimiter = opts.delimiter ?? (tsv ? '\t' : ',');
  const quote = opts.quote === undefined ? (tsv ? false : '"') : opts.quote;
  if (delimiter.length !== 1) throw new InputError(`delimiter must be one character, got ${JSON.stringify(delimiter)}`, { where: 'delimiter' });
  if (quote !== false && quote.length !== 1) throw new InputError(`quote must be one character or false, got ${JSON.stringify(quote)}`, { where: 'quote' });
  const header = opts.header ?? true;
  let names: string[] | null = header ? null : opts.columns ?? null;

  let start = 0, parts: string[] = [], invalid = false, inQuote = false;
  const emit = (): SourceRecord | null => {
    const text = parts.join('\n');
    const row = start;
    parts = [];
    if (invalid) return { row, raw: text, bad: { reason: 'invalid-utf8', detail: 'record is not valid UTF-8' } };
    let records: string[][];
    // Without quote characters a record is a plain split; csv-parse handles the quoted ones.
    if (quote === false || !text.includes(quote)) records = [text.split(delimiter)];
    else try {
      records = parseCsv(text, { delimiter, quote, relax_column_count: true, skip_empty_lines: false, bom: false }) as string[][];
    } catch (e) {
      const msg = (e as Error).message.replace(/ at line \d+/, '');
      return { row, raw: text, bad: { reason: 'csv-syntax', detail: msg } };
    }
    const rec = records[0] ?? [''];
    if (names === null) {
      if (header) {
        const seen = new Set<string>();
        for (const n of rec) {
          if (n.trim() === '' || seen.has(n)) {
            throw new InputError(`header has ${n.trim() === '' ? 'an empty' : `a duplicate (${JSON.stringify(n)})`} column name`, { where: `${file.display}:${row}`, hint: 'fix the header, or set header: false and columns: [...]' });
          }
          seen.add(n);
        }
        names = rec;
        return null;
      }
      names = rec.map((_, i) => String(i + 1));
    }
    if (rec.length !== names.length) {
      return { row, raw: text, bad: { reason: 'column-count', detail: `expected ${names.length} columns, got ${rec.length}` } };
    }
    const values: Record<string, unknown> = {};
    for (let i = 0; i < names.length; i++) values[names[i]] = rec[i];
    return { row, raw: text, values };
  };

  for await (const lines of readLineChunks(file.abs, opts.onBytes)) {
    const out: SourceRecord[] = [];
    for (const l of lines) {
      if (parts.length === 0) {
        if (l.text.trim() === '') continue; // blank lines between records are not rows
        start = l.line;
        invalid = false;
      }
      parts.push(l.text);
      invalid ||= l.invalidUtf8;
      if (quote !== false) inQuote = endsInsideQuotes(l.text, parts.length > 1 && inQuote, delimiter, quote);
      if (inQuote) continue;
      const r = emit();
      if (r) out.push(r);
    }
    yield out;
  }
  if (parts.length > 0) {
    yield [{ row: start, raw: parts.join('\n'), bad: { reason: 'csv-syntax', detail: `quote opened on line ${start} is never closed` } }];
  }
  if (header && names === null) throw new InputError('file is empty: no header line', { where: file.display, hint: 'remove the file or set header: false' });
}

export async function* readParquet(file: SourceFile, opts: ReadOptions = {}): AsyncGenerator<SourceRecord[]> {
  let buf, metadata;
  try {
    buf = await asyncBufferFromFile(file.abs);
    metadata = await parquetMetadataAsync(buf);
  } catch (e) {
    throw new InputError(`not a readable Parquet file: ${(e as Error).message}`, { where: file.display, hint: 'check the file, or set format if the extension is misleading', cause: e });
  }
  // Read whole row groups: hyparquet decodes a row group's column chunks in full, so smaller
  // slices would decode the same group again and again. Memory is bounded by the row group size.
  let groupStart = 0;
  for (const rg of metadata.row_groups) {
    const rowStart = groupStart, rowEnd = groupStart + Number(rg.num_rows);
    groupStart = rowEnd;
    if (rowEnd === rowStart) continue;
    let rows: Record<string, unknown>[];
    try {
      rows = await parquetReadObjects({ file: buf, metadata, rowStart, rowEnd });
    } catch (e) {
      throw new InputError(`cannot decode Parquet rows ${rowStart + 1}-${rowEnd}: ${(e as Error).message}`, { where: file.display, cause: e });
    }
    for (let i = 0; i < rows.length; i += BATCH_ROWS) {
      yield rows.slice(i, i + BATCH_ROWS).map((values, j) => ({ row: rowStart + i + j + 1, raw: safeJson(values), values }));
    }
    opts.onBytes?.(Number(rg.total_compressed_size ?? 0) || (buf.byteLength * (rowEnd - rowStart)) / Math.max(1, Number(metadata.num_rows)));
  }
}

export async function* readArrowRecords(file: SourceFile, opts: ReadOptions = {}): AsyncGenerator<SourceRecord[]> {
  let row = 0;
  let batches;
  try {
    batches = readArrowBatches(file.abs);
  } catch (e) {
    throw new InputError(`not a readable Arrow IPC file: ${(e as Error).message}`, { where: file.display, cause: e });
  }
  const iter = batches[Symbol.asyncIterator]();
  for (;;) {
    let next;
    try { next = await iter.next(); } catch (e) {
      throw new InputError(`not a readable Arrow IPC file: ${(e as Error).message}`, { where: file.display, cause: e });
    }
    if (next.done) break;
    const batch = next.value;
    const names = batch.schema.fields.map((f) => f.name);
    const cols = names.map((n) => batch.getChild(n)!);
    const out: SourceRecord[] = [];
    for (let i = 0; i < batch.numRows; i++) {
      const values: Record<string, unknown> = {};
      for (let c = 0; c < names.length; c++) {
        const v = cols[c].get(i);
        values[names[c]] = typeof v === 'bigint' && Number.isSafeInteger(Number(v)) ? Number(v) : v;
      }
      out.push({ row: ++row, raw: safeJson(values), values });
    }
    yield out;
  }
}

/** Records of one file, in arrays (one per read chunk or record batch). */
export function readRecords(file: SourceFile, opts: ReadOptions = {}): AsyncGenerator<SourceRecord[]> {
  switch (file.format) {
    case 'jsonl': return readJsonl(file, opts);
    case 'csv': case 'tsv': return readDelimited(file, opts);
    case 'parquet': return readParquet(file, opts);
    case 'arrow': return readArrowRecords(file, opts);
  }
}
