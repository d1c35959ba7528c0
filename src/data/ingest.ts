/**
 * ingest: source files (JSONL, CSV/TSV, Parquet, Arrow) → one Arrow IPC table with the task's
 * columns plus provenance (`_source`, `_row`, `_hash`), and a quarantine table of rejected rows.
 * Every row read is either kept or quarantined with a stable reason; both files are always
 * written (possibly empty) so the stage's output set is fixed, and neither is left behind on error.
 */
import { InputError } from '../errors.ts';
import { Field, Schema } from 'apache-arrow';
import { ArrowTableWriter, arrowSchema, describeArrowFile, PROMPT_TEMPLATE_METADATA, type ColumnSpec } from './arrow-io.ts';
import type { BadReason } from './bad-rows.ts';
import { TASK_COLUMNS, type IngestConfig } from './config.ts';
import { sha256Hex } from '../util/canonical-json.ts';
import { ENCODING_ADVICE, readRecords, type ReadOptions } from './read-records.ts';
import { lengthStats, type IngestReport, type SourceFileInfo } from './report.ts';
import { formatFromExtension, resolveSources, type SourceFile } from './sources.ts';
import { dataRoots, goneSinceListed as gone, openConfined, realRoots } from './roots.ts';
import { downloadVerified, isUrl, type DownloadOptions } from './download.ts';
import { redactUrl } from '../util/redact.ts';
import { checkIngestConfig } from './ingest-config.ts';
import { createHash, randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { isBad, makeRowMapper } from './task-fields.ts';
import { canonicalNumber, escapedLabel, isNumberLabel, quotedPair } from './label-spellings.ts';
import { setOwn } from '../util/own-key.ts';
import { closest } from '../spec/suggest.ts';
import { isTemplateError, parseTemplate } from './prompt-template.ts';
import { newFileWriteStream } from '../util/new-file-stream.ts';
import { MESSAGES, type ConversationMessage } from './conversation.ts';

export interface Progress {
  rows: number;
  fraction?: number;
}

export interface IngestOptions {
  /** Folder that relative source paths are resolved against (the pipeline file's folder). */
  baseDir: string;
  outPath: string;
  quarantinePath: string;
  /** Folders source paths may resolve into (after symlinks). Default: `dataRoots(baseDir)`. */
  roots?: readonly string[];
  signal?: AbortSignal;
  /** Parquet decoding budgets; defaults in PARQUET_LIMITS. */
  parquetLimits?: ReadOptions['parquetLimits'];
  /** Bounds on what a gzip source may inflate to; defaults in GZIP_LIMITS (lines.ts). */
  gzipLimits?: ReadOptions['gzipLimits'];
  /** Limits of URL downloads (size, stall time, redirects); defaults in DOWNLOAD_LIMITS. */
  download?: Omit<DownloadOptions, 'signal'>;
  onProgress?: (p: Progress) => void;
}

export const QUARANTINE_COLUMNS: ColumnSpec = { _source: 'utf8', _row: 'int32', reason: 'utf8', detail: 'utf8', raw: 'utf8' };

/** How many bad rows a 'fail' error lists before giving up. */
const FAIL_LIST = 5;
/** A maxBadFraction error shows the first row of this many reasons (most common first). */
const REASON_LIST = 5;
/** Longest detail, field name and field list quoted in a maxBadFraction error: details and names come from the data. */
const DETAIL_CHARS = 200;
/** Quarantined rows the report names (file:line, reason, detail); the quarantine table has them all. */
const QUARANTINED_SHOWN = 10;
const NAME_CHARS = 40;
const NAME_LIST = 20;

function cap(s: string, max: number): string {
  if (s.length <= max) return s;
  // Not between the halves of a surrogate pair (an emoji): half of one is no character, and JSON writes it as \udXXX.
  const end = /[\uD800-\uDBFF]/.test(s[max - 2]!) ? max - 2 : max - 1;
  return `${s.slice(0, end)}…`;
}

/**
 * The setting that makes the task read source field `f`: `path` to change it (`fields.<column>`,
 * `promptTemplate`), and `note` saying so in an error (a column's default says how to read another).
 */
function settingOf(cfg: IngestConfig, f: string): { path: string; note: string } {
  if (cfg.task === 'instruction' && cfg.promptTemplate !== undefined) {
    const t = parseTemplate(cfg.promptTemplate);
    if (!isTemplateError(t) && t.fields.includes(f)) return { path: 'promptTemplate', note: 'promptTemplate' };
  }
  for (const c of TASK_COLUMNS[cfg.task]) {
    if (c === 'prompt' && cfg.task === 'instruction' && cfg.promptTemplate !== undefined) continue;
    if (cfg.fields?.[c] === f) return { path: `fields.${c}`, note: `fields.${c}` };
    if (cfg.fields?.[c] === undefined && c === f)
      return { path: `fields.${c}`, note: `the ${c} column's default; set fields.${c} to read another field` };
  }
  return { path: 'fields', note: 'fields' };
}

/**
 * Source fields every row must have: each task column's field (the label's too) and the template's
 * fields outside [[ … ]] sections (those inside are dropped when absent).
 */
function requiredFields(cfg: IngestConfig, withOptional = false): string[] {
  const out: string[] = [];
  for (const c of TASK_COLUMNS[cfg.task]) {
    if (c === 'prompt' && cfg.task === 'instruction' && cfg.promptTemplate !== undefined) {
      const t = parseTemplate(cfg.promptTemplate);
      if (!isTemplateError(t))
        for (const s of t.sections) if (withOptional || !s.optional) for (const p of s.pieces) if (typeof p !== 'string') out.push(p.field);
      continue;
    }
    out.push(cfg.fields?.[c] ?? c);
  }
  return [...new Set(out)];
}

/** Characters that print as nothing or as a space: a byte-order mark, no-break, zero-width and direction marks. */
const INVISIBLE = /[\u00a0\u00ad\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]/;

/** A name from the data as JSON, shortened, with its invisible characters escaped (JSON.stringify keeps them). */
function shownName(n: string): string {
  return JSON.stringify(cap(n, NAME_CHARS)).replace(
    new RegExp(INVISIBLE.source, 'g'),
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** `"a", "b" and 3 more`: names from the data, shortened and bounded. */
function nameList(names: readonly string[]): string {
  const listed = names
    .slice(0, NAME_LIST)
    .map((n) => shownName(n))
    .join(', ');
  return listed + (names.length > NAME_LIST ? ` and ${names.length - NAME_LIST} more` : '');
}

/** `did you mean "review"?` when one of `names` is a plausible misspelling of `name`. */
function didYouMean(name: string, names: readonly string[]): string {
  // A header written with spaces after its commas, or a second byte-order mark: the name is there, hard to see.
  const bare = (n: string) => n.replace(new RegExp(INVISIBLE.source, 'g'), '').trim();
  const hidden = names.find((n) => n !== name && bare(n) === name);
  if (hidden !== undefined)
    return `did you mean ${shownName(hidden)} (${INVISIBLE.test(hidden) ? 'an invisible character in it' : 'spaces around it'})?`;
  // Bounded: edit distance is quadratic in the names' lengths.
  const guess = closest(
    name,
    names.slice(0, 1000).filter((n) => n.length <= 100),
  );
  return guess !== undefined ? `did you mean ${JSON.stringify(cap(guess, NAME_CHARS))}?` : '';
}

/**
 * A field the mapping reads that the data does not have: every row would be bad for the same reason,
 * so it is one error about the mapping, at the setting that names the field, not a list of rows (or
 * advice to quarantine them all). `seen`: where it is missing ("sst2.csv", "the first 5 rows of a.jsonl");
 * `has`: what is there instead ("its columns", "the first row (a.jsonl:1) has fields").
 */
function absentFieldError(
  cfg: IngestConfig,
  name: string,
  o: { noun: 'column' | 'field'; seen: string; has: string; names: readonly string[]; delimiter?: string },
): InputError {
  const setting = settingOf(cfg, name).path;
  const guess = didYouMean(name, o.names);
  const fix =
    setting === 'promptTemplate'
      ? `write the ${o.noun} meant as {name} in promptTemplate`
      : setting === 'fields'
        ? `map the task's columns to ${o.noun}s the data has`
        : `set ${setting} to the ${o.noun} meant`;
  const has = o.names.length === 0 ? `${o.has}: none` : `${o.has}: ${nameList(o.names)}`;
  return new InputError(`no ${o.noun} ${JSON.stringify(cap(name, NAME_CHARS))} (${settingOf(cfg, name).note}) in ${o.seen}; ${has}`, {
    where: setting,
    hint: o.delimiter ?? (guess ? `${guess} ${fix}` : fix),
  });
}

/** Delimiters a spreadsheet or a locale may have written a file with. */
const DELIMITERS = [',', ';', '\t', '|'];

/**
 * The delimiter setting a header read as one column calls for: `Message;Category` read with ',' (Excel in a locale
 * whose decimal mark is the comma writes ';'). Undefined when the header split, or holds no other delimiter.
 */
function delimiterHint(names: readonly string[], line: string, delimiter: string): string | undefined {
  if (names.length !== 1) return undefined;
  let best: string | undefined,
    most = 0;
  for (const d of DELIMITERS) {
    if (d === delimiter) continue;
    const n = line.split(d).length - 1;
    if (n > most) [best, most] = [d, n];
  }
  if (best === undefined) return undefined;
  const shown = best === '\t' ? 'a tab' : JSON.stringify(best);
  return `the header line is read as one column, and it holds ${shown}: set delimiter: ${JSON.stringify(best)}${best === '\t' ? " (or format: 'tsv')" : ''}`;
}

/** Formats whose records all have the same fields (the header's, the schema's). */
const FIXED_COLUMNS = new Set(['csv', 'tsv', 'parquet', 'arrow']);

/** Length in code points: UTF-16 length less one per surrogate pair. */
function codePoints(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) n--;
  }
  return n;
}

/** Files whose left-out duplicate header names the report's warnings list, one each. */
const DUPLICATE_FILES = 3;

/** Files, and columns of each, whose unnamed header columns the report lists (a wide sheet may have hundreds). */
const UNNAMED_FILES = 20;
const UNNAMED_LISTED = 20;

/** Most spellings, and classes, a label warning lists. */
const LABELS_LISTED = 8;

/**
 * csv-syntax rows are mostly quotes: RFC 4180 quotes a field that holds one and doubles it, and a file written without
 * (an inch mark, `he said "hi"`) reads as its text with quote: false when it quotes nothing.
 */
const CSV_QUOTE_ADVICE =
  'a field that holds a quote must be quoted with the quote doubled (5" screen as "5"" screen", RFC 4180): fix how the file was written, or, if it quotes no field, set quote: false to read quotes as text';

/** Inferred labels past which, when most are on one row only, the label field is taken to hold text. */
const LABELS_FOR_TEXT_WARNING = 20;

/**
 * Inferred labels that are each a class of their own though they are likely one: spellings that differ only in case or
 * surrounding spaces ("ham", "ham ", "Ham"), and numbers beside words (0/1 from one export, ham/spam from another).
 * Declared labels make the others bad rows instead, so these are warnings of the inferred set only.
 */
function labelWarnings(labels: ReadonlyMap<string, number>, labelField: string): string[] {
  const out: string[] = [];
  // A class per row: fields.label names the text (or an id), and training would fit a head of as many classes.
  const rows = [...labels.values()].reduce((a, b) => a + b, 0);
  const once = [...labels.values()].filter((n) => n === 1).length;
  if (labels.size > LABELS_FOR_TEXT_WARNING && once > rows / 2)
    out.push(
      `${labels.size} distinct labels among ${rows} rows, ${once} of them on one row only: each label is a class, so field ${JSON.stringify(cap(labelField, NAME_CHARS))} (fields.label) probably holds text, not a class; point fields.label at the class column, or declare labels: [...] to make the others bad rows`,
    );
  const shown = (ls: readonly string[], quote: (l: string) => string = JSON.stringify) =>
    ls
      .slice(0, LABELS_LISTED)
      .map((l) => `${quote(cap(l, NAME_CHARS))} ${labels.get(l)}`)
      .join(', ') + (ls.length > LABELS_LISTED ? ` and ${ls.length - LABELS_LISTED} more` : '');
  // In NFC: "Café" in one Unicode normal form beside "café" in the other is one class written two ways too.
  const spellings = groupLabels(labels.keys(), (l) => l.normalize('NFC').trim().toLowerCase());
  // A group whose spellings differ in normalisation alone is the normalisation warning's (below).
  const alike = [...spellings.values()].filter((ls) => new Set(ls.map((l) => l.normalize('NFC'))).size > 1);
  // Per NFC spelling in a case group: the target the normalisation warning merges its forms onto, or null where this
  // warning's labelMap merges them all. A labelMap is applied once and a key given twice is a YAML error, so a
  // spelling must be in one labelMap only, and both must merge onto the same label.
  const caseTargets = new Map<string, string | null>();
  // The groups with spellings that also differ in normalisation print alike where they differ: shown escaped, as
  // cap() shows them. Only those: escaping every group made "Спам" 3, "спам" 2 unreadable beside one "cafe\u0301".
  const escaped = new Set<string>();
  if (alike.length > 0) {
    // Each spelling onto its group's most common one without surrounding spaces (a class named "ham " would be a
    // trap in every report and request after), or onto the most common one trimmed; among equals, the lower-case one.
    // That one's NFC spelling where the data has it (or where that one is no label either), the normalisation
    // warning's target too. A spelling in another normal form of the target is in that warning's labelMap.
    const merges = alike.flatMap((ls) => {
      const rank = (l: string) => labels.get(l)! + (l === l.toLowerCase() ? 0.5 : 0);
      const trimmed = ls.filter((l) => l === l.trim());
      const most = (trimmed.length > 0 ? trimmed : ls).reduce((a, b) => (rank(b) > rank(a) ? b : a)).trim();
      const to = labels.has(most.normalize('NFC')) || !labels.has(most) ? most.normalize('NFC') : most;
      for (const l of ls) caseTargets.set(l.normalize('NFC'), l.normalize('NFC') === to.normalize('NFC') ? to : null);
      // Whole and cut: the list shows them cut, the labelMap whole (one cut matches no row).
      if (ls.some((l) => l.normalize('NFC') !== l)) for (const l of [...ls, to]) escaped.add(l).add(cap(l, NAME_CHARS));
      return ls.filter((l) => l !== to && l.normalize('NFC') !== to.normalize('NFC')).map((l) => [l, to] as const);
    });
    const normalised = escaped.size > 0;
    const quote = (l: string) => (escaped.has(l) ? escapedLabel(l) : JSON.stringify(l));
    out.push(
      `labels that differ only in case or surrounding spaces${normalised ? ' (and Unicode normalisation, shown escaped)' : ''} are classes of their own: ${alike
        .slice(0, LABELS_LISTED)
        .map((ls) => shown(ls, quote))
        .join(
          '; ',
        )}; merge them with labelMap: ${labelMapExample(merges, quote)}, or clean them in the data, or declare labels: [...] to make the other spellings bad rows`,
    );
  }
  // One number in several forms ("1", "1.0"): the spellings of one class that differ in more than spaces. Leading
  // zeros count ("01" and "1" may be two codes; suggesting "01" → "1" would merge them, or undo the zeros a code had).
  const byNumber = groupLabels(labels.keys(), (l) => (isNumberLabel(l) ? canonicalNumber(l, { keepLeadingZeros: true }) : undefined));
  const numberForms = [...byNumber].filter(([, ls]) => new Set(ls.map((l) => l.trim())).size > 1);
  if (numberForms.length > 0) {
    // Onto the plain form ("1") where the data has it, else the most common spelling, trimmed.
    const merges = numberForms.flatMap(([n, ls]) => {
      const to = ls.includes(n) ? n : ls.reduce((a, b) => (labels.get(b)! > labels.get(a)! ? b : a)).trim();
      // A spelling that differs from it in spaces alone (" 1") is in the case-or-spaces warning's labelMap already.
      return ls.filter((l) => l.trim() !== to).map((l) => [l, to] as const);
    });
    out.push(
      `labels that are one number written differently are classes of their own: ${numberForms
        .slice(0, LABELS_LISTED)
        .map(([, ls]) => shown(ls))
        .join(
          '; ',
        )} (pandas writes a whole-number column that holds a missing value as 0.0, 1.0, …); merge them with labelMap: ${labelMapExample(merges)}, or clean them in the data, or declare labels: [...] to make the other spellings bad rows`,
    );
  }
  // One text in two Unicode normal forms ("café" with é as U+00E9, or as "e" and a combining U+0301: files from
  // macOS or from another input method): they print alike, so they are shown escaped, the labelMap too (a JSON and YAML
  // double-quoted string reads the escapes back). Merged onto the NFC spelling, what most tools write.
  const byNfc = groupLabels(labels.keys(), (l) => l.normalize('NFC'));
  // Forms the case warning merges onto another spelling are its own (listed there, escaped).
  const normalForms = [...byNfc].filter(([n, ls]) => ls.length > 1 && caseTargets.get(n) !== null);
  if (normalForms.length > 0) {
    const merges = normalForms.flatMap(([n, ls]) => {
      const to = caseTargets.get(n) ?? (ls.includes(n) ? n : ls.reduce((a, b) => (labels.get(b)! > labels.get(a)! ? b : a)));
      return ls.filter((l) => l !== to).map((l) => [l, to] as const);
    });
    out.push(
      `labels that differ only in Unicode normalisation print alike but are classes of their own: ${normalForms
        .slice(0, LABELS_LISTED)
        .map(([, ls]) => shown(ls, escapedLabel))
        .join(
          '; ',
        )} (é as one code point, \\u00e9, or as e and a combining accent, e\\u0301); merge them with labelMap: ${labelMapExample(merges, escapedLabel)}, or normalise the data to NFC, or declare labels: [...] to make the other spellings bad rows`,
    );
  }
  const numbers = [...labels.keys()].filter(isNumberLabel).sort();
  const words = [...labels.keys()].filter((l) => !isNumberLabel(l)).sort();
  if (numbers.length > 0 && words.length > 0)
    out.push(
      `labels mix numbers (${shown(numbers)}) and words (${shown(words)}), each a class of its own: if the numbers stand for the words, map them with labelMap: ${labelMapExample(
        numbers.map((n) => [n, '…'] as const),
      )} (each to the word it stands for) or write the words in the data; declare labels: [...] to make the others bad rows`,
    );
  return out;
}

/**
 * Labels in sorted order, grouped by `key` (none: left out). One group may hold every label of the file (2^17 case
 * spellings of one word): a copy of the group per label, as this was written first, took 6 minutes for those.
 */
function groupLabels(labels: Iterable<string>, key: (l: string) => string | undefined): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  for (const l of [...labels].sort()) {
    const k = key(l);
    if (k === undefined) continue;
    const group = groups.get(k);
    if (group) group.push(l);
    else groups.set(k, [l]);
  }
  return groups;
}

/**
 * Rows quarantined for a label that is a declared one written differently (" Billing" for "billing", "1.0" for "1"):
 * within maxBadFraction the run goes on without them, so the report says which labelMap would have kept them.
 */
function misspeltWarning(misspelt: ReadonlyMap<string, readonly [string, number]>): string {
  const all = [...misspelt].sort((a, b) => b[1][1] - a[1][1] || (a[0] < b[0] ? -1 : 1));
  const rows = all.reduce((n, [, [, c]]) => n + c, 0);
  // A pair in two Unicode normal forms is escaped, as it would print alike.
  const quoted = all.map(([l, [meant, c]]) => [...quotedPair(cap(l, NAME_CHARS), cap(meant, NAME_CHARS)), c] as const);
  const listed = quoted
    .slice(0, LABELS_LISTED)
    .map(([l, meant, c]) => `${l} ${c} → ${meant}`)
    .join(', ');
  const { whole, longer } = wholeLabelPairs(all.map(([l, [meant]]) => [l, meant] as const));
  const map = whole.slice(0, LABELS_LISTED).map(([l, meant]) => quotedPair(l, meant).join(': '));
  return `${rows} row(s) were left out as unknown-label whose label is a declared one written differently (${listed}${all.length > LABELS_LISTED ? `, and ${all.length - LABELS_LISTED} more` : ''}): labelMap: {${map.join(', ')}${whole.length > LABELS_LISTED ? ', …' : ''}}${longerNote(longer)} keeps them`;
}

/**
 * `{"Ham": "ham", "ham ": "ham"}`: a labelMap for a warning to suggest, bounded (labels come from the data). `quote`:
 * escapedLabel where the spellings print alike.
 */
function labelMapExample(pairs: readonly (readonly [string, string])[], quote: (l: string) => string = JSON.stringify): string {
  const { whole, longer } = wholeLabelPairs(pairs);
  const listed = whole.slice(0, LABELS_LISTED).map(([from, to]) => `${quote(from)}: ${quote(to)}`);
  return `{${listed.join(', ')}${whole.length > LABELS_LISTED ? ', …' : ''}}${longerNote(longer)}`;
}

/**
 * A suggested labelMap writes its labels whole: one cut short (as a list of labels shows them) matches no row, so a
 * map pasted from the warning did nothing. Labels come from the data, so those over MAP_LABEL_CHARS are left out
 * (counted) to keep the message bounded.
 */
const MAP_LABEL_CHARS = 200;

function wholeLabelPairs<T extends readonly [string, string, ...unknown[]]>(pairs: readonly T[]): { whole: T[]; longer: number } {
  const whole = pairs.filter(([from, to]) => from.length <= MAP_LABEL_CHARS && to.length <= MAP_LABEL_CHARS);
  return { whole, longer: pairs.length - whole.length };
}

function longerNote(longer: number): string {
  return longer > 0 ? ` (and ${longer} label(s) over ${MAP_LABEL_CHARS} characters left out of it: map them by their whole text)` : '';
}

export function ingestColumns(task: IngestConfig['task']): ColumnSpec {
  const spec: ColumnSpec = {};
  for (const c of TASK_COLUMNS[task]) spec[c] = 'utf8';
  spec._source = 'utf8';
  spec._row = 'int32';
  spec._hash = 'utf8';
  return spec;
}

/**
 * The table ingest writes: the task's columns, with the prompt template (when there is one) recorded on `prompt`, so
 * that near-duplicate detection downstream can leave its text out (src/data/template-shingles.ts).
 */
function ingestSchema(cfg: IngestConfig): Schema {
  const schema = arrowSchema(ingestColumns(cfg.task));
  if (cfg.task !== 'instruction' || cfg.promptTemplate === undefined) return schema;
  const template = new Map([[PROMPT_TEMPLATE_METADATA, cfg.promptTemplate]]);
  return new Schema(schema.fields.map((f) => (f.name === 'prompt' ? new Field(f.name, f.type, f.nullable, template) : f)));
}

export async function ingest(cfg: IngestConfig, opts: IngestOptions): Promise<IngestReport> {
  const [broken] = checkIngestConfig(cfg);
  if (broken) throw broken;
  if (!isUrl(cfg.path)) {
    const walkWarnings: string[] = [];
    const files = await resolveSources(cfg.path, opts.baseDir, {
      format: cfg.format,
      roots: opts.roots,
      signal: opts.signal,
      onWarning: (w) => walkWarnings.push(w),
    });
    return ingestFiles(cfg, opts, files, realRoots(opts.roots ?? dataRoots(opts.baseDir)), walkWarnings);
  }
  // The URL as every row's _source, the report, the audit record and messages name it: without its credentials
  // (src/util/redact.ts). The sha256 pin, checked on download, is what identifies the bytes.
  const shown = redactUrl(cfg.path);
  const format = cfg.format ?? formatFromExtension(new URL(cfg.path).pathname);
  if (!format)
    throw new InputError(`cannot tell the format of ${shown} from its extension`, {
      where: 'format',
      hint: "set format: 'jsonl' | 'csv' | 'tsv' | 'parquet' | 'arrow'",
    });
  const dl = await downloadVerified(cfg.path, cfg.sha256, dirname(opts.outPath), { signal: opts.signal, ...opts.download });
  try {
    return await ingestFiles(cfg, opts, [{ abs: dl.path, display: shown, format }]);
  } finally {
    rmSync(dl.path, { force: true });
  }
}

/**
 * A listed source file that is no longer there: something changes the data while the stage reads it (an export still
 * being written, a clean-up job). Node's ENOENT names the absolute path alone, and as no input error it was retried.
 */
function goneSinceListed(cfg: IngestConfig, f: SourceFile, e: unknown): unknown {
  const err = e as NodeJS.ErrnoException;
  // That file's own ENOENT only (err.path): a missing output folder is no changing data.
  if (err?.code !== 'ENOENT' || err.path !== f.abs) return e;
  return gone({ shown: f.display, listed: cfg.path }, e);
}

/**
 * `confineTo`: the real data roots a listed file must still resolve into when its turn to be read comes (a local
 * source; a download is the stage's own file). `walkWarnings`: what listing the files left out with a word (a link
 * to a folder that leads round or out of the roots), for the report.
 */
async function ingestFiles(
  cfg: IngestConfig,
  opts: IngestOptions,
  files: SourceFile[],
  confineTo?: readonly string[],
  walkWarnings: readonly string[] = [],
): Promise<IngestReport> {
  const onBadRow = cfg.onBadRow ?? 'fail';
  const maxBad = cfg.maxBadFraction ?? 0.1;
  // Each file is hashed from the very bytes that are parsed (not read twice), so a file that
  // changes meanwhile cannot be reported, or cached, under the hash of other content.
  const sourceFiles: SourceFileInfo[] = [];
  let totalBytes = 0;
  for (const f of files) totalBytes += (await stat(f.abs).catch((e: unknown) => Promise.reject(goneSinceListed(cfg, f, e)))).size;

  const cols = TASK_COLUMNS[cfg.task];
  const mapRow = makeRowMapper(cfg);
  const required = requiredFields(cfg);
  // Every field a row may be read from: a header that names one of these twice is refused, any other duplicate left out.
  const read = requiredFields(cfg, true);
  /** Files whose header held a name twice that the task does not read, and those names, for the report's warnings. */
  const leftOutDuplicates: string[] = [];
  /** What the readers passed over with a warning (a gzip file's zero padding). */
  const readWarnings: string[] = [];
  /** Lines that are no rows (blank, or delimiters alone), and header columns left out for want of a name, per file. */
  let blankLines = 0;
  const unnamedColumns: Record<string, number[]> = {};
  /** Per file listed in unnamedColumns, its unnamed columns past the UNNAMED_LISTED listed there. */
  const unnamedNotListed: Record<string, number> = {};
  const out = new ArrowTableWriter(opts.outPath, ingestSchema(cfg));
  let quarantine: ArrowTableWriter | null = null;
  try {
    quarantine = new ArrowTableWriter(opts.quarantinePath, QUARANTINE_COLUMNS);
    let rowsIn = 0,
      rowsOut = 0,
      bytesDone = 0,
      linesIn = 0,
      badLines = 0,
      notTaken = 0;
    const badRows: Record<string, number> = {};
    // For a maxBadFraction error: the first row of each reason, the fields missing-field rows lack,
    // and the field names of the first row that parsed.
    const firstBad = new Map<string, string>();
    /** The report's first quarantined rows: which line to fix, and why, without reading the quarantine table. */
    const quarantinedShown: string[] = [];
    const missingFields = new Map<string, number>();
    let firstRow: { where: string; names: string[] } | undefined;
    const failures: string[] = [];
    /** Files the failures are in, for the error when they all lack the same field. */
    const failedFiles = new Set<string>();
    let firstWhere = '';
    const labels = new Map<string, number>();
    /** Quarantined unknown-label rows whose label is a declared one written differently: label → [meant, rows]. */
    const misspelt = new Map<string, [string, number]>();
    const lengths = new Map<number, number>();
    const report = () => opts.onProgress?.({ rows: rowsIn, fraction: totalBytes > 0 ? Math.min(1, bytesDone / totalBytes) : undefined });

    const bad = (source: string, row: number, lines: number, reason: BadReason, detail: string, raw: string, field?: string) => {
      badRows[reason] = (badRows[reason] ?? 0) + 1;
      badLines += lines;
      if (!firstBad.has(reason)) firstBad.set(reason, `${source}:${row}: ${cap(detail, DETAIL_CHARS)}`);
      if (field !== undefined) missingFields.set(field, (missingFields.get(field) ?? 0) + 1);
      if (onBadRow === 'fail') {
        if (failures.length === 0) firstWhere = `${source}:${row}`;
        failures.push(`${source}:${row}: ${reason}: ${detail}`);
        failedFiles.add(source);
      } else {
        quarantine!.push({ _source: source, _row: row, reason, detail, raw });
        if (quarantinedShown.length < QUARANTINED_SHOWN) quarantinedShown.push(`${source}:${row}: ${reason}: ${cap(detail, DETAIL_CHARS)}`);
      }
    };

    outer: for (const f of files) {
      // A header or schema gives every record the same fields: one that lacks a field the mapping reads shows it for all.
      let columnsChecked = !FIXED_COLUMNS.has(f.format);
      const hash = createHash('sha256');
      let bytes = 0;
      const hashing = (chunk: Uint8Array) => {
        hash.update(chunk);
        bytes += chunk.length;
      };
      // Parquet and Arrow are read at random offsets: parse a private copy made while hashing.
      let fh: FileHandle | undefined;
      const snapshot =
        f.format === 'parquet' || f.format === 'arrow'
          ? join(dirname(opts.outPath), `.source-${randomBytes(6).toString('hex')}.tmp`)
          : undefined;
      try {
        // Confined when listed, opened after every file before it is read (minutes later, maybe): one replaced meanwhile
        // by a link that leads out, or a named pipe, would be read. Confined again and opened at once, and read from
        // that handle alone (openConfined), so no moment is left between the check and what is read.
        fh = confineTo ? await openConfined({ abs: f.abs, shown: f.display, listed: cfg.path }, confineTo, 'path') : await open(f.abs, 'r');
        if (snapshot) {
          const out = await newFileWriteStream(snapshot);
          await pipeline(
            fh.createReadStream({ start: 0, autoClose: false }),
            new Transform({
              transform(chunk: Buffer, _e, done) {
                hashing(chunk);
                done(null, chunk);
              },
            }),
            out,
          );
        }
        const readFrom = snapshot ? { ...f, abs: snapshot } : f;
        for await (const recs of readRecords(readFrom, {
          header: cfg.header,
          columns: cfg.columns,
          delimiter: cfg.delimiter,
          quote: cfg.quote,
          encoding: cfg.encoding,
          // Checked before any row: with the wrong delimiter every row is a bad row, which would hide the cause.
          readsColumns: read,
          labelField: cols.includes('label') ? (cfg.fields?.label ?? 'label') : undefined,
          conversationField: cfg.task === 'chat' ? (cfg.fields?.messages ?? MESSAGES) : undefined,
          onBlankLine: () => {
            blankLines++;
          },
          onColumns: (names, line, leftOut, unnamed) => {
            columnsChecked = true;
            if (unnamed && unnamed.length > 0 && Object.keys(unnamedColumns).length < UNNAMED_FILES) {
              setOwn(unnamedColumns, f.display, unnamed.slice(0, UNNAMED_LISTED));
              if (unnamed.length > UNNAMED_LISTED) setOwn(unnamedNotListed, f.display, unnamed.length - UNNAMED_LISTED);
            }
            if (leftOut && leftOut.length > 0 && leftOutDuplicates.length <= DUPLICATE_FILES)
              leftOutDuplicates.push(
                leftOut.length === 1
                  ? `${f.display}: column ${JSON.stringify(cap(leftOut[0], NAME_CHARS))} appears more than once in the header; the task reads no column of that name, so it is left out`
                  : `${f.display}: columns ${nameList(leftOut)} appear more than once in the header; the task reads none of them, so they are left out`,
              );
            const absent = required.find((n) => !names.includes(n));
            if (absent === undefined) return;
            const delimiter = line === null ? undefined : delimiterHint(names, line, cfg.delimiter ?? (f.format === 'tsv' ? '\t' : ','));
            throw absentFieldError(cfg, absent, { noun: 'column', seen: f.display, has: 'its columns', names, delimiter });
          },
          signal: opts.signal,
          parquetLimits: opts.parquetLimits,
          gzipLimits: opts.gzipLimits,
          onWarning: (w) => readWarnings.push(w),
          onData: snapshot ? undefined : hashing,
          handle: snapshot ? undefined : fh,
          onBytes: (n) => {
            bytesDone += n;
          },
        }))
          for (const rec of recs) {
            // Past the cap the records are only counted: the file is read to its end for its hash.
            if (cfg.maxRows !== undefined && rowsOut >= cfg.maxRows) {
              // Still reading (for the hash): progress goes on by bytes.
              if (++notTaken % 8192 === 0) report();
              continue;
            }
            rowsIn++;
            const lines = rec.lines ?? 1;
            linesIn += lines;
            if (rowsIn % 8192 === 0) report();
            if (rec.bad) {
              bad(f.display, rec.row, lines, rec.bad.reason, rec.bad.detail, rec.raw);
            } else {
              firstRow ??= { where: `${f.display}:${rec.row}`, names: Object.keys(rec.values!) };
              if (!columnsChecked) {
                columnsChecked = true;
                const names = Object.keys(rec.values!);
                const absent = required.find((n) => !names.includes(n));
                if (absent !== undefined)
                  throw absentFieldError(cfg, absent, { noun: 'column', seen: f.display, has: 'its columns', names });
              }
              const checked: { conversation?: ConversationMessage[] } = {};
              const mapped = mapRow(rec.values!, checked);
              if (isBad(mapped)) {
                bad(f.display, rec.row, lines, mapped.reason, mapped.detail, rec.raw, mapped.field);
                if (mapped.spelling) {
                  const { label, meant } = mapped.spelling;
                  misspelt.set(label, [meant, (misspelt.get(label)?.[1] ?? 0) + 1]);
                }
              } else {
                const values = cols.map((c) => mapped[c]!);
                // Canonical content: the task and its columns in order, as JSON; provenance is excluded
                // so identical rows from different files hash alike.
                const hash = sha256Hex(JSON.stringify([cfg.task, ...values]));
                out.push({ ...mapped, _source: f.display, _row: rec.row, _hash: hash });
                rowsOut++;
                if (mapped.label !== undefined) labels.set(mapped.label, (labels.get(mapped.label) ?? 0) + 1);
                let len = 0;
                // A conversation's length is its messages' text, not its JSON's: the messages mapRow checked, not its cell
                // parsed back.
                for (const c of cols)
                  if (c === MESSAGES) for (const m of checked.conversation!) len += codePoints(m.content);
                  else if (c !== 'label') len += codePoints(mapped[c]!);
                lengths.set(len, (lengths.get(len) ?? 0) + 1);
              }
            }
            if (failures.length >= FAIL_LIST) break outer;
          }
      } catch (e) {
        throw goneSinceListed(cfg, f, e);
      } finally {
        await fh?.close();
        if (snapshot) rmSync(snapshot, { force: true });
      }
      sourceFiles.push({ path: f.display, sha256: hash.digest('hex'), bytes });
    }
    report();

    if (failures.length > 0) {
      // Every row read lacks the same field: the mapping is wrong, not the rows (quarantining would take them all).
      const [lacking] = missingFields.keys();
      if (rowsOut === 0 && missingFields.size === 1 && missingFields.get(lacking!) === failures.length) {
        const n = failures.length;
        const rows = failures.length === FAIL_LIST ? `the first ${n} rows` : n === 1 ? 'the only row' : `any of the ${n} rows`;
        throw absentFieldError(cfg, lacking!, {
          noun: 'field',
          // The reason and count, as the bad-row summaries give them.
          seen: `${rows} of ${[...failedFiles].join(', ')} (missing-field ${n})`,
          has: firstRow ? `the first row (${firstRow.where}) has fields` : 'fields there',
          names: firstRow?.names ?? [],
        });
      }
      throw new InputError(
        `${failures.length === FAIL_LIST ? 'at least ' : ''}${failures.length} bad row(s):\n  ${failures.join('\n  ')}`,
        {
          where: firstWhere,
          // Rows that are not UTF-8 are a file in another encoding far more often than bytes gone bad.
          hint:
            badRows['invalid-utf8'] !== undefined
              ? `a file that is not UTF-8: ${ENCODING_ADVICE}`
              : badRows['unknown-label'] !== undefined
                ? 'map other spellings of a label to the declared one with labelMap (e.g. labelMap: {"Ham": "ham"}), fix the rows or labels, or set onBadRow: \'quarantine\''
                : badRows['csv-syntax'] !== undefined
                  ? `${CSV_QUOTE_ADVICE}; or set onBadRow: 'quarantine'`
                  : "fix the rows, adjust fields/labels/maxLength, or set onBadRow: 'quarantine'",
        },
      );
    }
    if (rowsIn === 0)
      throw new InputError(`no rows found in ${JSON.stringify(redactUrl(cfg.path))}`, {
        where: 'path',
        hint: 'check that the files are not empty',
      });
    const badCount = rowsIn - rowsOut;
    // Lines as well as records: a record spanning many lines (a quoted CSV field) must not hide
    // how much of the file was rejected.
    const byLines = linesIn > 0 && badLines / linesIn > badCount / rowsIn;
    const [nBad, nIn, unit] = byLines ? [badLines, linesIn, 'lines'] : [badCount, rowsIn, 'rows'];
    if (nBad / nIn > maxBad) {
      const reasons = Object.entries(badRows).sort((a, b) => b[1] - a[1]);
      const top = reasons.map(([k, v]) => `${k} ${v}`).join(', ');
      const firsts = reasons.slice(0, REASON_LIST).map(([k, v]) => `\n  ${k} ${v}, first: ${firstBad.get(k)}`);
      let hint =
        'the mapping is probably wrong (fields, columns, header, delimiter); raise maxBadFraction only if the data really is this dirty';
      if (reasons[0][0] === 'invalid-utf8') hint = `the files are probably not UTF-8: ${ENCODING_ADVICE}`;
      if (reasons[0][0] === 'csv-syntax') hint = CSV_QUOTE_ADVICE;
      const [only] = missingFields.keys();
      if (rowsOut === 0 && missingFields.size === 1 && missingFields.get(only!) === rowsIn) {
        // Every row lacks the same field: the mapping names a field the data does not have.
        const name = only!;
        const has = firstRow?.names ?? [];
        const guess = didYouMean(name, has);
        hint =
          `every row lacks field ${JSON.stringify(cap(name, NAME_CHARS))} (${settingOf(cfg, name).note}): the mapping is probably wrong` +
          (firstRow ? `; the first row (${firstRow.where}) has ${has.length === 0 ? 'no fields' : `fields ${nameList(has)}`}` : '') +
          (guess ? `; ${guess}` : '');
      }
      throw new InputError(
        `${nBad} of ${nIn} ${unit} are bad (${((100 * nBad) / nIn).toFixed(1)}% > maxBadFraction ${maxBad}): ${top}${firsts.join('')}`,
        { where: 'maxBadFraction', hint },
      );
    }

    const warnings = [
      ...walkWarnings.slice(0, DUPLICATE_FILES),
      ...(walkWarnings.length > DUPLICATE_FILES ? [`${walkWarnings.length - DUPLICATE_FILES} more links to folders left out`] : []),
      ...leftOutDuplicates.slice(0, DUPLICATE_FILES),
      ...(leftOutDuplicates.length > DUPLICATE_FILES ? ['more files have such headers'] : []),
      ...readWarnings.slice(0, DUPLICATE_FILES),
      ...(readWarnings.length > DUPLICATE_FILES ? [`${readWarnings.length - DUPLICATE_FILES} more such warnings`] : []),
      ...(cfg.labels === undefined ? labelWarnings(labels, cfg.fields?.label ?? 'label') : []),
      ...(misspelt.size > 0 ? [misspeltWarning(misspelt)] : []),
    ];
    const labelSet = cfg.labels ?? [...labels.keys()].sort();
    const labelCounts: Record<string, number> = {};
    if (TASK_COLUMNS[cfg.task].includes('label')) for (const l of labelSet) setOwn(labelCounts, l, labels.get(l) ?? 0);

    out.close();
    quarantine.close();
    const h = sha256Hex(sourceFiles.map((f) => f.sha256).join('\n'));
    return {
      kind: 'ingest',
      task: cfg.task,
      rowsIn,
      rowsOut,
      linesIn,
      badLines,
      badRows,
      labels: labelCounts,
      sourceFiles,
      dataHash: h,
      textLength: lengthStats(lengths),
      schema: (await describeArrowFile(opts.outPath)).schema,
      ...(cfg.maxRows !== undefined ? { maxRows: cfg.maxRows, rowsNotTaken: notTaken } : {}),
      ...(quarantinedShown.length > 0 ? { firstQuarantined: quarantinedShown } : {}),
      ...(blankLines > 0 ? { blankLines } : {}),
      ...(Object.keys(unnamedColumns).length > 0 ? { unnamedColumns } : {}),
      ...(Object.keys(unnamedNotListed).length > 0 ? { unnamedColumnsNotListed: unnamedNotListed } : {}),
      ...(warnings.length > 0 ? { warnings } : {}),
    };
  } catch (e) {
    out.abort();
    quarantine?.abort();
    throw e;
  }
}
