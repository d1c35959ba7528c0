/**
 * Bounds on what a tokenizer's files may hold, checked before the library builds anything from them. The files come
 * with the model and are hostile until checked: @huggingface/tokenizers takes any id and any added token, and a
 * vocabulary entry with id 2,000,000,000 kept it busy for three minutes, a 20 MB added token for 26 s and 3.6 GB,
 * while a negative or fractional id went on into training as an index the embedding does not have. Each bound is far
 * above what a real tokenizer holds (the largest vocabularies have about 260,000 tokens, the longest added tokens a few
 * dozen characters, the largest tokenizer.json about 35 MB) and each failure names the file and the field.
 */
import { statSync } from 'node:fs';
import { InputError } from '../errors.ts';

/** Token ids are below this: 2^24, 64 times the largest real vocabulary. */
export const MAX_TOKEN_ID = 1 << 24;
/** Characters of one added token's text. */
export const MAX_ADDED_TOKEN_CHARS = 4096;
/** Bytes of tokenizer.json (V8 cannot hold a string of more than 512 MiB anyway). */
export const MAX_TOKENIZER_JSON_BYTES = 256 << 20;
/** Bytes of tokenizer_config.json or chat_template.jinja. */
export const MAX_TOKENIZER_CONFIG_BYTES = 64 << 20;

const HINT = "use the model's tokenizer files from a source you trust (README: hostile input)";

/** An InputError unless `path` is at most `max` bytes, said before it is read. */
export function checkFileSize(path: string, max: number): void {
  const size = statSync(path).size;
  if (size > max)
    throw new InputError(
      // In bytes: rounded to MiB, a file just over the bound read "64 MiB, more than the 64 MiB".
      `the file is ${size} bytes, more than the ${max} (${max / 2 ** 20} MiB) a tokenizer file of a real model takes`,
      { where: path, hint: HINT },
    );
}

/** An InputError unless `id` is a token id (a whole number from 0 below MAX_TOKEN_ID). */
export function checkTokenId(id: unknown, field: string, file: string): void {
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= MAX_TOKEN_ID)
    throw new InputError(`${field} is ${JSON.stringify(id)?.slice(0, 40)}, not a token id (a whole number from 0 to ${MAX_TOKEN_ID - 1})`, {
      where: file,
      hint: HINT,
    });
}

const field = (path: string, key: string) => `${path}[${JSON.stringify(key.length > 40 ? `${key.slice(0, 40)}…` : key)}]`;

/** The ids and added tokens of a parsed tokenizer.json (the post-processor's ids are checked where it is read). */
export function checkTokenizerIds(json: Record<string, unknown>, file: string): void {
  const model = json.model as { vocab?: unknown } | undefined;
  const vocab = model?.vocab;
  // Unigram's vocabulary is a list (ids are its positions); BPE's, WordPiece's and WordLevel's map tokens to ids.
  if (Array.isArray(vocab)) {
    if (vocab.length > MAX_TOKEN_ID)
      throw new InputError(`model.vocab has ${vocab.length} entries, more than ${MAX_TOKEN_ID}`, { where: file, hint: HINT });
  } else if (typeof vocab === 'object' && vocab !== null) {
    for (const [token, id] of Object.entries(vocab)) checkTokenId(id, field('model.vocab', token), file);
  }
  const added = json.added_tokens;
  if (added === undefined || added === null) return;
  if (!Array.isArray(added)) throw new InputError('added_tokens must be a list', { where: file, hint: HINT });
  added.forEach((t: unknown, i) => {
    if (typeof t !== 'object' || t === null) throw new InputError(`added_tokens[${i}] must be an object`, { where: file, hint: HINT });
    const { id, content } = t as { id?: unknown; content?: unknown };
    checkTokenId(id, `added_tokens[${i}].id`, file);
    if (typeof content !== 'string') throw new InputError(`added_tokens[${i}].content must be a string`, { where: file, hint: HINT });
    if (content.length > MAX_ADDED_TOKEN_CHARS)
      throw new InputError(
        `added_tokens[${i}].content is ${content.length} characters long, more than the ${MAX_ADDED_TOKEN_CHARS} an added token of a real tokenizer has`,
        { where: file, hint: HINT },
      );
  });
}
