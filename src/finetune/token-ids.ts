/**
 * Token ids checked against the rows the model has for them, before onnxruntime sees them: an id past a Gather's table
 * fails the step with "indices element out of data bounds" from a Gather node, which names neither the model nor the
 * tokenizer, and which a stage retried as if transient.
 */
import { join } from 'node:path';
import { InputError } from '../errors.ts';

/** Ids as the tokenized tables (Int32Array) and the feeds (BigInt64Array) hold them. */
type Ids = Int32Array | BigInt64Array;

function largest(ids: Ids): number | bigint {
  let max: number | bigint = -1;
  for (const id of ids) if (id > max) max = id;
  return max;
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
  throw new InputError(
    `the ${rows} hold token id ${max}, but config.json's vocab_size is ${vocab}: this tokenizer is not the model's (ids from ${vocab} on have no embedding row)`,
    { where: join(modelDir, 'tokenizer.json'), hint },
  );
}

/**
 * The same for token_type_ids against config.json's type_vocab_size (`typeRows`, its default applied): a tokenizer
 * whose post-processor gives a single text type id 1 meets a model with one type row (type_vocab_size 1).
 */
export function checkTokenTypesFitModel(modelDir: string, typeRows: number, types: Ids, rows: string): void {
  const max = largest(types);
  if (max < typeRows) return;
  throw new InputError(
    `the ${rows} hold token type id ${max}, but config.json's type_vocab_size is ${typeRows}: this tokenizer is not the model's (types from ${typeRows} on have no embedding row)`,
    {
      where: join(modelDir, 'tokenizer.json'),
      hint: 'use the tokenizer files saved with these weights (tokenizer.json, tokenizer_config.json)',
    },
  );
}
