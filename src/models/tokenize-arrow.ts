/**
 * Tokenizes a whole table once and stores the result as an Arrow IPC file, so training and evaluation
 * read ready token ids instead of re-tokenizing every epoch.
 *
 * Output columns are FixedSizeList<Int32>[seqLen] (one length per file: `max_length` padding, or the
 * longest row rounded up to a bucket multiple):
 * - classification: input_ids, attention_mask, token_type_ids, and labels: Int32 (class index) when a label column is given;
 * - causal:         input_ids, attention_mask, labels: FixedSizeList<Int32> (IGNORE_INDEX = -100 off the response).
 * Written atomically (temp + rename); identical input gives identical bytes.
 */
import { DataType } from 'apache-arrow';
import { ArrowTableWriter, columnValues, readArrowBatches, stringColumn, type ColumnSpec } from '../data/arrow-io.ts';
import { InputError } from '../errors.ts';
import { encodeChatExample, encodeConversation, type ChatEncodingOptions } from './chat-encoding.ts';
import { readConversation } from '../data/conversation.ts';
import {
  padBatch,
  paddedLength,
  type CausalEncoding,
  type Encoding,
  type HfTokenizer,
  type Padding,
  type PromptTemplate,
} from './tokenizer.ts';

/**
 * Where ingest read row `i` of `batch`, as ` (file:line)` from its provenance columns, for a record's errors: the
 * table itself is a store object named by its hash, so its row number alone leaves the person to fix the data
 * searching for the row. Empty for a table without them.
 */
function sourcePlace(batch: Parameters<typeof stringColumn>[0]): (i: number) => string {
  if (!batch.getChild('_source') || !batch.getChild('_row')) return () => '';
  const files = stringColumn(batch, '_source');
  const rows = columnValues(batch, '_row');
  return (i) => ` (${files[i]}:${String(rows[i])})`;
}

/**
 * Where ingest read row `row` of the table at `path`, as ` (file:line)`, or '' (a table without provenance columns, or
 * no such row): for an error about a row found once the table was read. Reads the table up to that row.
 */
export async function sourceOfRow(path: string, row: number): Promise<string> {
  let base = 0;
  for await (const batch of readArrowBatches(path)) {
    if (row < base + batch.numRows) return sourcePlace(batch)(row - base);
    base += batch.numRows;
  }
  return '';
}

export type TokenizeTask =
  | {
      kind: 'classification';
      textColumn: string;
      pairColumn?: string;
      labelColumn?: string;
      /** Class names in index order; string labels map to their position. Integer labels pass through (checked against it when given). */
      labelNames?: string[];
    }
  | {
      kind: 'causal';
      promptColumn: string;
      responseColumn: string;
      template?: PromptTemplate;
      /** Render each record with the model's chat template instead (loss on the reply and its end-of-turn token; see chat-encoding.ts). */
      chat?: Omit<ChatEncodingOptions, 'maxLength'>;
      /**
       * A chat table (ingest's `chat` task): this column holds each row's conversation as JSON, rendered with `chat`
       * (required), the loss on every trained reply (encodeConversation); the prompt and response columns are not read.
       */
      messagesColumn?: string;
    };

export interface TokenizeToArrowOptions {
  input: string;
  output: string;
  tokenizer: HfTokenizer;
  task: TokenizeTask;
  padding: Padding;
  /** Rows per output record batch. */
  batchRows?: number;
  /**
   * The config field the label names come from (`train.labels`), and what the input is (`the train table`):
   * a row whose label is not among them is then that field's error, named as the user wrote it, not a store
   * path's.
   */
  labelsFrom?: { field: string; input: string };
}

export interface TokenizeResult {
  path: string;
  rows: number;
  bytes: number;
  seqLen: number;
  /** Rows whose tokens did not all fit in maxLength (chat records: their user message was cut, the reply kept; conversations: later turns left out). */
  truncatedRows: number;
  /** Conversations: trained replies left out of the truncated rows (each whole, with every turn after it). */
  turnsCut: number;
  /**
   * Chat records left out because the template and the whole reply alone exceed maxLength: a row trained on its prompt
   * alone (or half a reply) teaches nothing or the wrong thing. Callers warn with the count; `rows` excludes them.
   */
  droppedRows: number;
  /** Input rows of the first few dropped records (0-based), for the warning. */
  droppedExamples: number[];
  /**
   * Input rows of every dropped record (0-based, ascending): row `r` of the output is the input's `r`-th row not among
   * them (inputRowOf), what an error about one output row names.
   */
  droppedInputRows: number[];
  /** Longest row before padding. */
  longest: number;
}

function requireColumn(batch: { schema: { fields: { name: string }[] } }, name: string, input: string, field: string): void {
  if (!batch.schema.fields.some((f) => f.name === name)) {
    throw new InputError(`column ${JSON.stringify(name)} not found (columns: ${batch.schema.fields.map((f) => f.name).join(', ')})`, {
      where: `${input} (${field})`,
    });
  }
}

export async function tokenizeToArrow(opts: TokenizeToArrowOptions): Promise<TokenizeResult> {
  const { tokenizer: tok, task, padding, input } = opts;
  const maxLength = padding.maxLength;
  const encoded: (Encoding | CausalEncoding)[] = [];
  const labels: number[] = [];
  let truncatedRows = 0;
  let turnsCut = 0;
  let droppedRows = 0;
  const droppedExamples: number[] = [];
  const droppedInputRows: number[] = [];
  let rowBase = 0;
  // Encode everything first: with bucketed padding the file's single sequence length is only known at the end.
  for await (const batch of readArrowBatches(input)) {
    if (task.kind === 'classification') {
      requireColumn(batch, task.textColumn, input, 'textColumn');
      const texts = stringColumn(batch, task.textColumn);
      let pairs: string[] | undefined;
      if (task.pairColumn) {
        requireColumn(batch, task.pairColumn, input, 'pairColumn');
        pairs = stringColumn(batch, task.pairColumn);
      }
      let raw: unknown[] | undefined;
      if (task.labelColumn) {
        requireColumn(batch, task.labelColumn, input, 'labelColumn');
        raw = columnValues(batch, task.labelColumn);
      }
      const labelType = task.labelColumn ? batch.schema.fields.find((f) => f.name === task.labelColumn)!.type : undefined;
      for (let i = 0; i < texts.length; i++) {
        const full = tok.encode(texts[i]!, pairs?.[i]);
        const e = full.inputIds.length > maxLength ? tok.encode(texts[i]!, pairs?.[i], { maxLength }) : full;
        if (e !== full) truncatedRows++;
        encoded.push(e);
        if (raw)
          labels.push(
            labelIndex(
              raw[i],
              labelType!,
              task.labelNames,
              `${input}: row ${rowBase + i}, column ${task.labelColumn}`,
              opts.labelsFrom && { ...opts.labelsFrom, row: rowBase + i },
            ),
          );
      }
    } else if (task.messagesColumn !== undefined) {
      if (!task.chat)
        throw new InputError('a conversation table is rendered with a chat template, and none was given', {
          where: `${input} (${task.messagesColumn})`,
          hint: "train it with chat settings (the model's own template unless chat.template is given)",
        });
      requireColumn(batch, task.messagesColumn, input, 'messagesColumn');
      const cells = stringColumn(batch, task.messagesColumn);
      const place = sourcePlace(batch);
      for (let i = 0; i < cells.length; i++) {
        const where = `${input}: row ${rowBase + i}${place(i)}`;
        const convo = readConversation(cells[i]!);
        if (typeof convo === 'string')
          throw new InputError(`column ${task.messagesColumn} holds no conversation: ${convo}`, {
            where,
            hint: 'make the table with an ingest stage of task chat',
          });
        const e = encodeConversation(tok, convo, { ...task.chat, maxLength }, where);
        if (e.tooLong) {
          droppedRows++;
          droppedInputRows.push(rowBase + i);
          if (droppedExamples.length < 5) droppedExamples.push(rowBase + i);
          continue;
        }
        if (e.truncated) truncatedRows++;
        turnsCut += e.turnsCut;
        encoded.push({ inputIds: e.inputIds, attentionMask: e.attentionMask, labels: e.labels });
      }
    } else {
      requireColumn(batch, task.promptColumn, input, 'promptColumn');
      requireColumn(batch, task.responseColumn, input, 'responseColumn');
      const prompts = stringColumn(batch, task.promptColumn);
      const responses = stringColumn(batch, task.responseColumn);
      const place = sourcePlace(batch);
      for (let i = 0; i < prompts.length; i++) {
        if (task.chat) {
          const where = `${input}: row ${rowBase + i}${place(i)}`;
          const e = encodeChatExample(tok, prompts[i]!, responses[i]!, { ...task.chat, maxLength }, where);
          if (e.tooLong) {
            droppedRows++;
            droppedInputRows.push(rowBase + i);
            if (droppedExamples.length < 5) droppedExamples.push(rowBase + i);
            continue;
          }
          if (e.truncated) truncatedRows++;
          encoded.push({ inputIds: e.inputIds, attentionMask: e.attentionMask, labels: e.labels });
          continue;
        }
        const full = tok.encodePromptResponse(prompts[i]!, responses[i]!, { template: task.template });
        const e =
          full.inputIds.length > maxLength
            ? tok.encodePromptResponse(prompts[i]!, responses[i]!, { template: task.template, maxLength })
            : full;
        if (e !== full) truncatedRows++;
        encoded.push(e);
      }
    }
    rowBase += batch.numRows;
  }
  const longest = encoded.reduce((m, e) => Math.max(m, e.inputIds.length), 0);
  const seqLen = paddedLength(longest, padding);
  const list = { fixedSizeList: 'int32' as const, size: seqLen };
  const spec: ColumnSpec =
    task.kind === 'classification'
      ? { input_ids: list, attention_mask: list, token_type_ids: list, ...(task.labelColumn ? { labels: 'int32' as const } : {}) }
      : { input_ids: list, attention_mask: list, labels: list };
  const batchRows = opts.batchRows ?? 4096;
  const writer = new ArrowTableWriter(opts.output, spec, batchRows);
  try {
    for (let start = 0; start < encoded.length; start += batchRows) {
      const chunk = encoded.slice(start, start + batchRows);
      const b = padBatch(tok, chunk, { kind: 'max_length', maxLength: seqLen });
      const rows = (a: Int32Array) => Array.from({ length: b.rows }, (_, r) => a.subarray(r * seqLen, (r + 1) * seqLen));
      const cols: Record<string, ArrayLike<unknown>> = { input_ids: rows(b.inputIds), attention_mask: rows(b.attentionMask) };
      if (task.kind === 'classification') {
        cols.token_type_ids = rows(b.tokenTypeIds);
        if (task.labelColumn) cols.labels = Int32Array.from(labels.slice(start, start + batchRows));
      } else cols.labels = rows(b.labels!);
      writer.writeBatch(cols);
    }
    const r = writer.close();
    return {
      path: r.path,
      rows: r.rows,
      bytes: r.bytes,
      seqLen,
      truncatedRows,
      turnsCut,
      droppedRows,
      droppedExamples,
      droppedInputRows,
      longest,
    };
  } catch (e) {
    writer.abort();
    throw e;
  }
}

/** The input row that row `row` of the output is: the `row`-th input row not dropped (`dropped` ascending). */
export function inputRowOf(row: number, dropped: readonly number[]): number {
  let input = row;
  for (const d of dropped) {
    if (d > input) break;
    input++;
  }
  return input;
}

function labelIndex(
  v: unknown,
  type: DataType,
  names: string[] | undefined,
  where: string,
  from?: { field: string; input: string; row: number },
): number {
  if (typeof v === 'string' && names && from && !names.includes(v))
    throw new InputError(
      `${from.input} has label ${JSON.stringify(v)} (row ${from.row}), which is not one of these labels ${JSON.stringify(names)}`,
      {
        where: from.field,
        hint: 'list every class the table holds, in a fixed order; a stage before this one may have renamed them',
      },
    );
  if (typeof v === 'string') {
    if (!names)
      throw new InputError(`label ${JSON.stringify(v)} is a string but no labelNames were given`, {
        where,
        hint: 'list the class names in order, e.g. labels: [negative, positive]',
      });
    const k = names.indexOf(v);
    if (k < 0) throw new InputError(`label ${JSON.stringify(v)} is not one of ${JSON.stringify(names)}`, { where });
    return k;
  }
  if (typeof v === 'number' && Number.isInteger(v) && DataType.isInt(type)) {
    if (v < 0 || (names && v >= names.length))
      throw new InputError(`label ${v} is out of range${names ? ` [0, ${names.length})` : ''}`, { where });
    return v;
  }
  throw new InputError(`label ${JSON.stringify(v)} must be a class name or a non-negative integer`, { where });
}
