/**
 * Token ids checked against the rows the model has for them, before onnxruntime sees them: an id past a Gather's table
 * fails the step with "indices element out of data bounds" from a Gather node, which names neither the model nor the
 * tokenizer, and which a stage retried as if transient.
 */
import { join } from 'node:path';
import { InputError } from '../errors.ts';

/** Ids as the tokenized tables (Int32Array), the feeds (BigInt64Array) and a tokenizer's encoding (number[]) hold them. */
type Ids = Int32Array | BigInt64Array | Uint8Array | readonly number[];

function largest(ids: Ids): number {
  let max: number | bigint = -1;
  for (const id of ids) if (id > max) max = id;
  return Number(max);
}

/** What a model has rows for: config.json's vocab_size (where it says), type_vocab_size and max_position_embeddings. */
export interface ModelRows {
  vocab?: number;
  types: number;
  positions: number;
}

/** What of a text the model has no row for: its largest token id, its largest type id, or its length; `limit` is the rows. */
export interface Unfit {
  what: 'id' | 'type' | 'length';
  value: number;
  limit: number;
}

/**
 * One text's verdict, found before onnxruntime runs, so a batch can leave out the texts the model cannot take instead of
 * failing them all: ids past vocab_size first, then types past type_vocab_size, then a length past the positions.
 */
export function unfitRow(rows: ModelRows, ids: Ids, types: Ids): Unfit | undefined {
  const id = largest(ids);
  if (rows.vocab !== undefined && id >= rows.vocab) return { what: 'id', value: id, limit: rows.vocab };
  const type = largest(types);
  if (type >= rows.types) return { what: 'type', value: type, limit: rows.types };
  if (ids.length > rows.positions) return { what: 'length', value: ids.length, limit: rows.positions };
  return undefined;
}

/**
 * The padding a batch is filled to its width with needs rows too: every text may fit while the tokenizer's padding
 * token (its pad_token) or padding type does not, and then every padded batch failed onnxruntime's Gather, a plain
 * error retried as transient, with no text at fault. Refused when the model loads, naming the tokenizer.
 */
export function checkPaddingFitsModel(modelDir: string, rows: ModelRows, pad: { padId: number; padTypeId: number }): void {
  const where = join(modelDir, 'tokenizer.json');
  const hint = 'use the tokenizer files saved with these weights (tokenizer.json, tokenizer_config.json)';
  if (rows.vocab !== undefined && pad.padId >= rows.vocab)
    throw new InputError(
      `the tokenizer pads with token id ${pad.padId} (tokenizer_config.json's pad_token), but config.json's vocab_size is ${rows.vocab}: this tokenizer is not the model's (ids from ${rows.vocab} on have no embedding row)`,
      { where, hint },
    );
  if (pad.padTypeId >= rows.types)
    throw new InputError(
      `the tokenizer pads with token type id ${pad.padTypeId} (padding.pad_type_id), but config.json's type_vocab_size is ${rows.types}: this tokenizer is not the model's`,
      { where, hint },
    );
}

/**
 * The first row of a tokenized table (`ids` and `mask` [rows × seq]) whose tokens (mask 1: not its padding) hold an id
 * past `vocab`, and its largest id: what an error about the rows names, where the ids of all the rows together named
 * none (and a padding id past `vocab` blamed the rows).
 */
export function firstRowPastVocab(
  ids: BigInt64Array,
  mask: BigInt64Array,
  seq: number,
  vocab: number,
): { row: number; id: number } | undefined {
  const limit = BigInt(vocab);
  for (let row = 0; row * seq < ids.length; row++) {
    let max = -1n;
    for (let j = row * seq; j < (row + 1) * seq; j++) if (mask[j] !== 0n && ids[j]! > max) max = ids[j]!;
    if (max >= limit) return { row, id: Number(max) };
  }
  return undefined;
}

/** How many texts firstUnfit tokenizes between turns of the event loop (about 25-60 ms of work). */
const YIELD_EVERY = 1000;

/**
 * The first of `texts` the model cannot take (unfitRow), each tokenized by `encode` and checked in turn before any of them
 * runs: a misfit found only at its own batch came after every batch before it had run, and the batch's error could not
 * say which text. The check holds one text's tokens at a time, never every text's (40,000 texts' encodings held at once
 * raised a predictor's peak RSS from 255 to 402 MiB); `keep` is given each text that fits, in order, to keep what its
 * budget allows (KeptEncodings) so that the batches need not tokenize it again.
 */
export async function firstUnfit<E extends { inputIds: Ids; tokenTypeIds: Ids }>(
  texts: readonly string[],
  encode: (text: string) => E,
  rows: ModelRows,
  keep?: (encoding: E) => void,
): Promise<{ index: number; unfit: Unfit } | undefined> {
  for (let index = 0; index < texts.length; index++) {
    // Tokenizing is synchronous (25-60 us a text): a million rows in one loop held the event loop for most of a minute,
    // which in a worker running stages inline stalls its heartbeats and every other activity.
    if (index % YIELD_EVERY === YIELD_EVERY - 1) await new Promise<void>((r) => setImmediate(r));
    const e = encode(texts[index]!);
    const unfit = unfitRow(rows, e.inputIds, e.tokenTypeIds);
    if (unfit) return { index, unfit };
    keep?.(e);
  }
  return undefined;
}

/**
 * A text that the model cannot take (token ids, types or length it has no row for), found before onnxruntime ran: the
 * texts asked together are refused, naming the first such text by its place (`texts[i]`); a caller that knows the texts
 * as rows of a table names the row (the evaluate stage), the server the request's input.
 */
export class UnfitTextError extends InputError {
  override name = 'UnfitTextError';
  /** The first such text's place among the texts asked together, and why, in words that name no path. */
  readonly index: number;
  readonly reason: string;
  /** Every such text's place found (the predictor stops at the first; a pooled request's batch knows them all). */
  readonly indices: number[];
  /** `folder`: the model's, what the operator must fix (its tokenizer files or maxLength); the client is told `reason`. */
  constructor(
    unfit: { index: number; reason: string }[],
    folder: string,
    hint = "the folder's tokenizer reaches ids, types or lengths the model has no rows for: put back the tokenizer files saved with these weights, or train again with maxLength at most config.json's max_position_embeddings",
  ) {
    const [first] = unfit;
    const more = unfit.length > 1 ? ` (texts ${unfit.map((u) => u.index).join(', ')} cannot be taken)` : '';
    super(`texts[${first!.index}]: ${first!.reason}${more}`, { where: folder, hint });
    this.index = first!.index;
    this.reason = first!.reason;
    this.indices = unfit.map((u) => u.index);
  }
}

/** `u` in words after `subject` ("the text", or "the training rows" with `plural`). */
export function unfitMessage(u: Unfit, subject: string, plural = false): string {
  const hold = plural ? 'hold' : 'holds';
  switch (u.what) {
    case 'id':
      return `${subject} ${hold} token id ${u.value}, but config.json's vocab_size is ${u.limit}: this tokenizer is not the model's (ids from ${u.limit} on have no embedding row)`;
    case 'type':
      return `${subject} ${hold} token type id ${u.value}, but config.json's type_vocab_size is ${u.limit}: this tokenizer is not the model's (types from ${u.limit} on have no embedding row)`;
    case 'length':
      return `${subject} ${plural ? 'are' : 'is'} ${u.value} tokens long, past the model's ${u.limit} positions (config.json's max_position_embeddings)`;
  }
}

/**
 * Token ids past config.json's vocab_size (another model's tokenizer.json beside the weights) are refused before the
 * graph is built, naming both files. Only the ids the rows hold count: a tokenizer with more entries than the model has
 * rows is fine as long as the text never reaches them.
 */
export function checkTokenIdsFitModel(
  modelDir: string,
  cfg: Record<string, unknown>,
  ids: Ids,
  rows = 'training rows',
  hint = 'use the tokenizer files saved with these weights (tokenizer.json, tokenizer_config.json)',
): void {
  const vocab = cfg.vocab_size;
  if (typeof vocab !== 'number' || !Number.isInteger(vocab)) return;
  const max = largest(ids);
  if (max < vocab) return;
  throw new InputError(unfitMessage({ what: 'id', value: max, limit: vocab }, `the ${rows}`, true), {
    where: join(modelDir, 'tokenizer.json'),
    hint,
  });
}

/**
 * The same for token_type_ids against config.json's type_vocab_size (`typeRows`, its default applied): a tokenizer
 * whose post-processor gives a single text type id 1 meets a model with one type row (type_vocab_size 1).
 */
export function checkTokenTypesFitModel(modelDir: string, typeRows: number, types: Ids, rows: string): void {
  const max = largest(types);
  if (max < typeRows) return;
  throw new InputError(unfitMessage({ what: 'type', value: max, limit: typeRows }, `the ${rows}`, true), {
    where: join(modelDir, 'tokenizer.json'),
    hint: 'use the tokenizer files saved with these weights (tokenizer.json, tokenizer_config.json)',
  });
}

/**
 * Rows padded wider than the model's positions (a maxLength past max_position_embeddings) are refused naming maxLength:
 * onnxruntime failed the position embeddings' Add with a shape error, which a stage retried as transient (training's
 * rows; the evaluate stage's frozen baseline checks each row, firstUnfit, and names the row too).
 */
export function checkWidthFitsPositions(width: number, positions: number, maxLength: number, rows: string, where: string): void {
  if (width <= positions) return;
  throw new InputError(
    `maxLength ${maxLength} exceeds the model's ${positions} positions (config.json's max_position_embeddings): the ${rows} are ${width} tokens long`,
    { where, hint: `set maxLength to at most ${positions}` },
  );
}
