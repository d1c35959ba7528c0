/**
 * Scores a file of rows with a model: each row's text through a classifier (its label and class probabilities) or a
 * causal LM (its answer), one output line per row, in the input's order. The input is read by the readers ingest uses
 * (src/data/read-records.ts: line limits, UTF-8 checks, CSV quoting bounds, bad rows named by line); the output is
 * written to a temp file beside the target and renamed into place only once every row is done, so a failed or
 * interrupted run leaves no partial output.
 */
import { createHash } from 'node:crypto';
import { existsSync, realpathSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { AtomicFile } from '../data/atomic.ts';
import type { BadReason, BadRow } from '../data/bad-rows.ts';
import { MESSAGES, parseConversation, repeatedMessageKey, repeatedMessageKeyRow, type ConversationMessage } from '../data/conversation.ts';
import type { ENCODINGS } from '../data/lines.ts';
import { encodingAdvice, readRecords } from '../data/read-records.ts';
import { formatFromExtension, type SourceFormat } from '../data/sources.ts';
import { badText, fieldText } from '../data/task-fields.ts';
import { InputError } from '../errors.ts';

/** A row's result as the scorer gives it: its output fields, or why this row has none (a prompt too long for the model). */
export type Scored = { values: Record<string, unknown> } | { bad: string };

/** A row's input: its text, or (a scorer that takes them) the messages of a conversation to answer. */
export type PredictInput = string | ConversationMessage[];

/** What scores the rows: a classifier (batches of texts) or a causal LM (one text or conversation at a time). */
export interface RowScorer {
  /** Texts scored together. */
  batchSize: number;
  /** Output fields in CSV column order (after the id and `row`). */
  columns: string[];
  /** The keys of a JSONL output line's values (after the id and `row`): `scores` is no CSV column but is one here. */
  keys: string[];
  /** Rows in OpenAI's chat format (`{"messages": [...]}`) are answered as conversations; without it only texts are given. */
  conversations?: boolean;
  score(inputs: PredictInput[], signal?: AbortSignal): Promise<Scored[]>;
  /** A row's output values as CSV cells, in `columns` order. */
  csvCells(values: Record<string, unknown>): string[];
}

export type PredictOutputFormat = 'jsonl' | 'csv';

export interface PredictOptions {
  input: string;
  output: string;
  scorer: RowScorer;
  /** The field (JSONL) or column (CSV) whose text is scored. */
  textField: string;
  /** The input's encoding when it is not UTF-8, one of ENCODINGS (src/data/lines.ts), as an ingest stage's `encoding`. Default UTF-8. */
  encoding?: (typeof ENCODINGS)[number];
  /**
   * Copied to each output line where a row has it, under the same name (the CSV output's first column is named so
   * too). Default 'id'. One of the output's own columns (`row`, the scorer's) is refused: it would be two columns.
   */
  idField?: string;
  /** 'fail' (default): the first bad row ends the run, naming its line; 'skip': it is left out and counted. */
  onBadRow?: 'fail' | 'skip';
  /** Replace an output file that exists. Default false: such a file is an error before anything is scored. */
  overwrite?: boolean;
  signal?: AbortSignal;
  /** After each batch. `fraction`: about how much of the input's bytes the rows taken so far hold. */
  onProgress?: (p: { rows: number; badRows: number; fraction: number }) => void;
  /**
   * Called once every row is written, before the output is put in place; a throw leaves no output. `tempered
   * predict` appends its audit record here, so an output never exists without its record.
   */
  beforeCommit?: (report: PredictReport) => Promise<void>;
}

export interface BadRowNote {
  line: number;
  reason: string;
  detail: string;
}

export interface PredictReport {
  input: { path: string; format: SourceFormat; sha256: string; bytes: number };
  output: { path: string; format: PredictOutputFormat; sha256: string; bytes: number };
  /** Rows scored, one output line each. */
  rows: number;
  /** Rows left out (`onBadRow: 'skip'`), by reason, and the first few of them. */
  badRows: number;
  badReasons: Record<string, number>;
  firstBadRows: BadRowNote[];
  /** What was read past with a warning (a gzip input's trailing zero padding). Absent when none. */
  warnings?: string[];
}

/** Input formats read: the text ones ingest reads (Parquet and Arrow are not taken here). */
const INPUT_FORMATS: readonly SourceFormat[] = ['jsonl', 'csv', 'tsv'];
/** Bad rows a report lists. */
const BAD_LISTED = 5;
/** A reason of ours beside the readers' BadReason: the scorer refused the row (a prompt longer than the model's context). */
type PredictBadReason = BadReason | 'rejected';

/** CSV output by the extension, else JSONL. */
export function outputFormat(path: string): PredictOutputFormat {
  return path.toLowerCase().endsWith('.csv') ? 'csv' : 'jsonl';
}

/**
 * A cell a spreadsheet would run as a formula (OWASP's CSV injection: it begins with =, +, -, @, tab, CR or LF), unless
 * it is a plain number, which the spreadsheet reads as that number.
 */
const FORMULA_START = /^[=+\-@\t\r\n]/;
const PLAIN_NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/**
 * One CSV field (RFC 4180): quoted when it holds a comma, quote, CR or LF, or starts or ends with blanks. A value
 * that a spreadsheet would run as a formula gets a leading `'` (OWASP's advice), since an input's id column and a
 * model's answer are whatever the input made them: `=HYPERLINK(…)` would be a link in the sheet of whoever opens it.
 */
export function csvField(v: unknown): string {
  let s = v === undefined || v === null ? '' : typeof v === 'string' ? v : JSON.stringify(v);
  if (FORMULA_START.test(s) && !PLAIN_NUMBER.test(s)) s = `'${s}`;
  return /[",\r\n]|^\s|\s$/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function outputMadeMeanwhile(output: string): InputError {
  return new InputError('the output file was made while the rows were scored; nothing was written', {
    where: output,
    hint: 'choose another output file, or --force to replace it',
  });
}

/**
 * The field a row holds a conversation in, for a scorer that answers them: the text field when it holds a list (or is
 * `messages`, whose text is JSON, as in a CSV cell), else `messages` when the text field is missing. So a test file in
 * the format a chat pipeline ingests is read as it is, without --text-field, and a row with a prompt stays a prompt.
 */
function conversationField(values: Record<string, unknown>, textField: string): string | undefined {
  const v = Object.hasOwn(values, textField) ? values[textField] : undefined;
  if (Array.isArray(v) || (textField === MESSAGES && v != null)) return textField;
  if (v == null && Object.hasOwn(values, MESSAGES) && values[MESSAGES] != null) return MESSAGES;
  return undefined;
}

/**
 * A conversation row's messages to answer, or why it has none. One that ends with the user's message is asked as it
 * is; one that ends with an assistant's reply (a row of a fine-tuning or test file) is asked what comes in place of that
 * reply, the messages before it, as evaluate asks a test conversation.
 */
export function conversationToAnswer(value: unknown, field: string): ConversationMessage[] | BadRow {
  const messages = parseConversation(value, JSON.stringify(field), undefined, { toAnswer: true });
  if (!Array.isArray(messages)) return messages;
  const asked = messages.at(-1)!.role === 'assistant' ? messages.slice(0, -1) : messages;
  if (!asked.some((m) => m.role === 'user'))
    return {
      reason: 'invalid-conversation',
      detail: `${JSON.stringify(field)} has no user message before its last reply; there is nothing to answer`,
    };
  return asked;
}

/** Checks what can be checked before a model loads: the input is a readable file of a known format, the output free. */
export function checkPredictPaths(o: Pick<PredictOptions, 'input' | 'output' | 'overwrite'>): SourceFormat {
  const format = formatFromExtension(o.input);
  if (!format || !INPUT_FORMATS.includes(format))
    throw new InputError(`cannot read ${format ?? 'this format'}: predict reads .jsonl (.ndjson), .csv and .tsv files`, {
      where: o.input,
      hint: format ? 'export the rows to JSONL or CSV first' : 'name the file by its format (.jsonl, .csv, .tsv)',
    });
  let st;
  try {
    st = statSync(o.input);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(code === 'ENOENT' ? 'no such file' : `cannot read it (${code ?? (e as Error).message})`, { where: o.input });
  }
  if (!st.isFile()) throw new InputError('not a file', { where: o.input, hint: 'give one file of rows' });
  if (existsSync(o.output)) {
    if (realpathSync(o.output) === realpathSync(o.input))
      throw new InputError('the output is the input file', { where: o.output, hint: 'write the predictions to another file' });
    if (!o.overwrite)
      throw new InputError('the output file exists', { where: o.output, hint: 'choose another output file, or --force to replace it' });
    if (statSync(o.output).isDirectory()) throw new InputError('the output is a folder', { where: o.output, hint: 'name a file' });
  }
  return format;
}

/**
 * The id field keeps its name in the output, beside `row` and the scorer's `names` (its CSV columns or JSONL keys): one
 * named like either would be two columns of one name, or in JSONL the id lost under the scorer's value.
 */
export function refuseIdFieldClash(idField: string, names: readonly string[]): void {
  // Without a name the column is written headerless, and ingest (ours, pandas') then leaves it out.
  if (idField === '')
    throw new InputError('the id field is empty: the output would have a column without a name', {
      where: '--id-field',
      hint: 'name the input field that identifies a row (default id)',
    });
  // By case too: SQL and spreadsheets take `Label` and `label` for one column.
  const clash = ['row', ...names].find((n) => n.toLowerCase() === idField.toLowerCase());
  if (clash === undefined) return;
  throw new InputError(`the id field ${JSON.stringify(idField)} would be named like the output's own column ${JSON.stringify(clash)}`, {
    where: '--id-field',
    hint: `the output's columns are ${['row', ...names].join(', ')}${names.length === 0 ? " and the model's" : ''} beside the id: rename that column in the input, or name another --id-field`,
  });
}

/** Scores every row of `o.input` into `o.output`; see the module comment. */
export async function predictFile(o: PredictOptions): Promise<PredictReport> {
  const format = checkPredictPaths(o);
  const outFormat = outputFormat(o.output);
  const idField = o.idField ?? 'id';
  // The input's id column keeps its name in the output (an `id` column in place of `ticket_id` broke the join back).
  refuseIdFieldClash(idField, outFormat === 'csv' ? o.scorer.columns : o.scorer.keys);
  const onBadRow = o.onBadRow ?? 'fail';
  const display = o.input;
  const totalBytes = statSync(o.input).size;
  const inputHash = createHash('sha256');
  const outputHash = createHash('sha256');
  let inputBytes = 0;
  /**
   * Bytes of the records taken so far (each record's text and line breaks; blank lines and a header are not counted),
   * for the share done: the reader reads ahead by whole chunks, a small file at once.
   */
  let bytesTaken = 0;
  const out = new AtomicFile(resolve(o.output));
  const write = (text: string) => {
    const b = Buffer.from(text, 'utf8');
    outputHash.update(b);
    out.write(b);
  };
  let rows = 0;
  let badRows = 0;
  const badReasons: Record<string, number> = {};
  const firstBadRows: BadRowNote[] = [];
  const warnings: string[] = [];
  const bad = (line: number, reason: PredictBadReason, detail: string) => {
    if (onBadRow === 'fail')
      throw new InputError(`${reason}: ${detail}`, {
        where: `${display}:${line}`,
        hint:
          reason === 'missing-field'
            ? `name the text's field with --text-field`
            : reason === 'invalid-utf8'
              ? `a file that is not UTF-8: ${encodingAdvice('--encoding ')}`
              : 'fix the row, or leave bad rows out with --on-bad-row skip',
      });
    badRows++;
    badReasons[reason] = (badReasons[reason] ?? 0) + 1;
    if (firstBadRows.length < BAD_LISTED) firstBadRows.push({ line, reason, detail });
  };
  let batch: { line: number; id: unknown; text: PredictInput }[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    o.signal?.throwIfAborted();
    const scored = await o.scorer.score(
      batch.map((r) => r.text),
      o.signal,
    );
    o.signal?.throwIfAborted();
    let text = '';
    batch.forEach((r, i) => {
      const s = scored[i]!;
      if ('bad' in s) return bad(r.line, 'rejected', s.bad);
      rows++;
      const head = r.id === undefined ? { row: r.line } : { [idField]: r.id, row: r.line };
      text +=
        outFormat === 'csv'
          ? [r.id, r.line, ...o.scorer.csvCells(s.values)].map(csvField).join(',') + '\n'
          : JSON.stringify({ ...head, ...s.values }) + '\n';
    });
    write(text);
    batch = [];
  };
  const take = async (line: number, id: unknown, text: PredictInput) => {
    batch.push({ line, id: id === null ? undefined : id, text });
    if (batch.length >= o.scorer.batchSize) {
      await flush();
      o.onProgress?.({ rows, badRows, fraction: totalBytes > 0 ? Math.min(1, bytesTaken / totalBytes) : 1 });
    }
  };
  try {
    if (outFormat === 'csv') write([idField, 'row', ...o.scorer.columns].map(csvField).join(',') + '\n');
    for await (const records of readRecords(
      { abs: o.input, display, format },
      {
        signal: o.signal,
        encoding: o.encoding,
        encodingSetting: '--encoding ',
        // As ingest: a JSONL row naming a field read here twice is a duplicate-field bad row (JSON.parse keeps the last).
        readsColumns: [o.textField, idField, ...(o.scorer.conversations ? [MESSAGES] : [])],
        // As ingest: a message naming a key twice is a duplicate-field bad row, not answered on JSON.parse's last value.
        // A conversation in the text field (a list there) is checked below, as the reader checks one field only.
        conversationField: o.scorer.conversations ? MESSAGES : undefined,
        onWarning: (w) => warnings.push(w),
        onData: (chunk) => {
          inputHash.update(chunk);
          inputBytes += chunk.length;
        },
      },
    )) {
      for (const rec of records) {
        bytesTaken += Buffer.byteLength(rec.raw) + (rec.lines ?? 1);
        if (rec.bad) {
          bad(rec.row, rec.bad.reason, rec.bad.detail);
          continue;
        }
        const values = rec.values!;
        const id = Object.hasOwn(values, idField) ? values[idField] : undefined;
        const inConversation = o.scorer.conversations ? conversationField(values, o.textField) : undefined;
        if (inConversation !== undefined) {
          const twice = inConversation !== MESSAGES && format === 'jsonl' ? repeatedMessageKey(rec.raw, inConversation) : undefined;
          const asked = twice
            ? repeatedMessageKeyRow(JSON.stringify(inConversation), twice)
            : conversationToAnswer(values[inConversation], inConversation);
          if (!Array.isArray(asked)) {
            bad(rec.row, asked.reason, asked.detail);
            continue;
          }
          await take(rec.row, id, asked);
          continue;
        }
        const text = fieldText(values, o.textField, 'the text field');
        const wrong = typeof text === 'string' ? badText(text, 'the text field') : text;
        if (wrong) {
          bad(
            rec.row,
            wrong.reason,
            wrong.reason === 'missing-field'
              ? `${wrong.detail}; the row has ${
                  Object.keys(values).length === 0
                    ? 'no fields'
                    : `fields ${Object.keys(values)
                        .map((k) => JSON.stringify(k.slice(0, 40)))
                        .slice(0, 20)
                        .join(', ')}`
                }`
              : wrong.detail,
          );
          continue;
        }
        await take(rec.row, id, text as string);
      }
    }
    await flush();
    o.onProgress?.({ rows, badRows, fraction: 1 });
    if (rows === 0)
      throw new InputError(
        badRows === 0
          ? 'no rows in it'
          : `every row is bad (${Object.entries(badReasons)
              .map(([k, v]) => `${k} ${v}`)
              .join(', ')}), first: line ${firstBadRows[0]!.line}: ${firstBadRows[0]!.detail}`,
        { where: display, hint: badRows === 0 ? 'check that the file is not empty' : 'check --text-field and the file' },
      );
    const report: PredictReport = {
      input: { path: display, format, sha256: inputHash.digest('hex'), bytes: inputBytes },
      output: { path: o.output, format: outFormat, sha256: outputHash.digest('hex'), bytes: out.bytes },
      rows,
      badRows,
      badReasons,
      firstBadRows,
      ...(warnings.length > 0 ? { warnings } : {}),
    };
    // Checked again before the record is written: a file made there while the rows were scored stays.
    if (!o.overwrite && existsSync(o.output)) throw outputMadeMeanwhile(o.output);
    await o.beforeCommit?.(report);
    try {
      out.commit({ replace: o.overwrite === true });
    } catch (e) {
      throw (e as NodeJS.ErrnoException).code === 'EEXIST' ? outputMadeMeanwhile(o.output) : e;
    }
    return report;
  } catch (e) {
    out.abort();
    throw e;
  }
}
