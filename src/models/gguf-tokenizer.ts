/**
 * A Hugging Face `tokenizer.json` (+ `tokenizer_config.json`) built from a GGUF file's `tokenizer.*`
 * metadata, so GGUF models tokenize with the same library (and code path) as every other model.
 *
 * Byte-level BPE (`tokenizer.ggml.model = gpt2`): vocabulary and merges as stored, CONTROL tokens
 * (type 3) added as special tokens and USER_DEFINED ones (type 4) as plain added tokens (both matched
 * whole in the text, as llama.cpp does), and the pre-tokenizer that `tokenizer.ggml.pre` names in
 * llama.cpp (llama-vocab.cpp): the regex list llama.cpp applies, as a Split + ByteLevel sequence.
 * SentencePiece BPE (`llama`: LLaMA-2, Mistral, TinyLlama): ▁ for spaces (Metaspace), byte fallback, merges as
 * stored or, as usual for these files, rebuilt from the token scores the way transformers' GGUF loader does.
 */
import { InputError } from '../errors.ts';
import { metaArray, metaBool, metaInt, metaString, type GgufFile, type GgufValue } from '../formats/gguf.ts';
import { bpeModel, templatePostProcessor, tokenizerJsonHead } from './tokenizer-json.ts';

/** GPT-2's split (the ByteLevel pre-tokenizer's own regex). */
const GPT2_SPLIT = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/**
 * `tokenizer.ggml.pre` → the regexes llama.cpp applies in turn (each splits the pieces of the one before).
 * Names from llama-vocab.cpp; a name not listed is refused rather than guessed.
 */
const PRE_SPLITS: Record<string, string[]> = {
  default: [GPT2_SPLIT],
  gpt2: [GPT2_SPLIT],
  'gpt-2': [GPT2_SPLIT],
  olmo: [GPT2_SPLIT],
  jais: [GPT2_SPLIT],
  poro: [GPT2_SPLIT],
  // Digits isolated one by one, then GPT-2's split.
  smollm: ['\\p{N}', GPT2_SPLIT],
  starcoder: ['\\p{N}', GPT2_SPLIT],
  refact: ['\\p{N}', GPT2_SPLIT],
  'command-r': ['\\p{N}', GPT2_SPLIT],
  codeshell: ['\\p{N}', GPT2_SPLIT],
  exaone: ['\\p{N}', GPT2_SPLIT],
  minerva: ['\\p{N}', GPT2_SPLIT],
  'llama-bpe': [LLAMA3_SPLIT],
  llama3: [LLAMA3_SPLIT],
  'llama-v3': [LLAMA3_SPLIT],
  'smaug-bpe': [LLAMA3_SPLIT],
  falcon3: [LLAMA3_SPLIT],
  dbrx: [LLAMA3_SPLIT],
  qwen2: [QWEN2_SPLIT],
  'deepseek-r1-qwen': [QWEN2_SPLIT],
  megrez: [QWEN2_SPLIT],
};

export const SUPPORTED_PRE_TOKENIZERS = Object.keys(PRE_SPLITS).sort();

/** GPT-2's bytes → printable characters table (bytes_to_unicode). */
function byteAlphabet(): string[] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++)
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  const out: string[] = new Array(256);
  bs.forEach((b, i) => {
    out[b] = String.fromCodePoint(cs[i]!);
  });
  return out;
}

const isString = (v: GgufValue): v is string => typeof v === 'string';
const isInt = (v: GgufValue): v is number => typeof v === 'number' && Number.isInteger(v);

export interface GgufTokenizerFiles {
  /** tokenizer.json contents. */
  tokenizer: Record<string, unknown>;
  /** tokenizer_config.json contents (special tokens, add_bos_token, chat_template). */
  config: Record<string, unknown>;
}

/** The token whose id a metadata key holds (bos, eos, unk), or undefined where the file does not say. */
function tokenNamedBy(g: GgufFile, tokens: readonly string[], key: string): string | undefined {
  if (!g.metadata.has(key)) return undefined;
  const id = metaInt(g, key);
  if (id >= tokens.length)
    throw new InputError(`metadata ${key} is ${id}, beyond the vocabulary of ${tokens.length} tokens`, { where: g.path });
  return tokens[id];
}

export function tokenizerFromGguf(g: GgufFile): GgufTokenizerFiles {
  const where = `${g.path}: tokenizer.ggml.model`;
  const model = metaString(g, 'tokenizer.ggml.model', '');
  if (model === 'llama') return sentencePieceFromGguf(g);
  if (model !== 'gpt2') {
    throw new InputError(
      `tokenizer model ${JSON.stringify(model || '(missing)')} is not supported; tempered builds byte-level BPE ("gpt2") and SentencePiece BPE ("llama") tokenizers from GGUF metadata`,
      {
        where,
        hint: 'use a GGUF whose tokenizer.ggml.model is "gpt2" (LLaMA-3, SmolLM, Qwen2, GPT-2 families) or "llama" (LLaMA-2, Mistral)',
      },
    );
  }
  const pre = metaString(g, 'tokenizer.ggml.pre', 'default');
  const splits = PRE_SPLITS[pre];
  if (!splits) {
    throw new InputError(`pre-tokenizer ${JSON.stringify(pre)} is not known to tempered (known: ${SUPPORTED_PRE_TOKENIZERS.join(', ')})`, {
      where: `${g.path}: tokenizer.ggml.pre`,
    });
  }
  const tokens = metaArray(g, 'tokenizer.ggml.tokens', isString, 'strings');
  if (!tokens || tokens.length === 0) throw new InputError('metadata tokenizer.ggml.tokens is missing or empty', { where: g.path });
  const types = metaArray(g, 'tokenizer.ggml.token_type', isInt, 'integers') ?? [];
  if (types.length !== 0 && types.length !== tokens.length)
    throw new InputError(`tokenizer.ggml.token_type has ${types.length} entries for ${tokens.length} tokens`, { where: g.path });
  const merges = metaArray(g, 'tokenizer.ggml.merges', isString, 'strings');
  if (!merges)
    throw new InputError('metadata tokenizer.ggml.merges is missing (a byte-level BPE tokenizer needs its merges)', { where: g.path });

  const alphabet = byteAlphabet();
  const inAlphabet = new Set(alphabet);
  const spell = (t: string) =>
    [...t].every((c) => inAlphabet.has(c)) ? t : Array.from(Buffer.from(t, 'utf8'), (b) => alphabet[b]!).join('');
  const vocab: Record<string, number> = Object.create(null) as Record<string, number>;
  tokens.forEach((t, i) => {
    const s = spell(t);
    if (!(s in vocab)) vocab[s] = i;
  });
  const pairs = merges.map((m, i) => {
    const parts = m.split(' ');
    if (parts.length !== 2 || !parts[0] || !parts[1])
      throw new InputError(`tokenizer.ggml.merges[${i}] ${JSON.stringify(m)} is not two tokens separated by one space`, { where: g.path });
    return parts;
  });

  // CONTROL tokens spelled outside the byte alphabet are llama.cpp mislabels (transformers skips them too).
  const added = tokens.flatMap((t, id) => {
    const type = types[id];
    if (type === 3 && [...t].every((c) => inAlphabet.has(c)))
      return [{ id, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }];
    if (type === 4) return [{ id, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: false }];
    return [];
  });

  const bos = tokenNamedBy(g, tokens, 'tokenizer.ggml.bos_token_id');
  const eos = tokenNamedBy(g, tokens, 'tokenizer.ggml.eos_token_id');
  const addBos = metaBool(g, 'tokenizer.ggml.add_bos_token', false);
  const addEos = metaBool(g, 'tokenizer.ggml.add_eos_token', false);

  const byteLevel = {
    type: 'ByteLevel',
    add_prefix_space: false,
    trim_offsets: true,
    use_regex: splits.length === 1 && splits[0] === GPT2_SPLIT,
  };
  const preTokenizer = byteLevel.use_regex
    ? byteLevel
    : {
        type: 'Sequence',
        pretokenizers: [
          ...splits
            .filter((s) => s !== GPT2_SPLIT)
            .map((s) => ({ type: 'Split', pattern: { Regex: s }, behavior: 'Isolated', invert: false })),
          { ...byteLevel, use_regex: splits.includes(GPT2_SPLIT) },
        ],
      };
  const tokenizer = {
    ...tokenizerJsonHead(added),
    pre_tokenizer: preTokenizer,
    post_processor: templatePostProcessor(bos, eos, addBos, addEos, (t) => vocab[spell(t)]!),
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: bpeModel(vocab, pairs, { affix: '', byteFallback: false }),
  };
  const template = g.metadata.get('tokenizer.chat_template');
  if (template !== undefined && typeof template !== 'string')
    throw new InputError('metadata tokenizer.chat_template must be a string', { where: g.path });
  const config: Record<string, unknown> = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: bos ?? null,
    eos_token: eos ?? null,
    unk_token: tokenNamedBy(g, tokens, 'tokenizer.ggml.unknown_token_id') ?? null,
    pad_token: tokenNamedBy(g, tokens, 'tokenizer.ggml.padding_token_id') ?? null,
    add_bos_token: addBos,
    add_eos_token: addEos,
    // Decoded text exactly as the bytes say (llama.cpp does no " ?" → "?" clean-up; generated text must round-trip).
    clean_up_tokenization_spaces: false,
    model_max_length: g.metadata.has(`${metaString(g, 'general.architecture', '')}.context_length`)
      ? metaInt(g, `${metaString(g, 'general.architecture', '')}.context_length`)
      : undefined,
    ...(template !== undefined ? { chat_template: template } : {}),
    tokenizer_ggml_pre: pre,
  };
  return { tokenizer, config };
}

const isNumber = (v: GgufValue): v is number => typeof v === 'number';

/** Most work (Σ over tokens of length²) mergesFromScores takes on: far above real vocabularies, seconds at most. */
const MERGE_WORK_LIMIT = 200_000_000;

/** Code-point length (Python's len), which orders generated merges. */
const cpLength = (t: string) => [...t].length;

/**
 * Merges implied by a vocabulary and its scores (transformers' generate_merges): every split of every token
 * into two vocabulary pieces, highest-scoring tokens first, then longer left and right pieces; ties keep the
 * vocabulary order (both sorts are stable).
 */
export function mergesFromScores(vocab: Record<string, number>, scores: Map<string, number>, where = 'tokenizer.ggml.tokens'): string[][] {
  // Each split of a token hashes both pieces: L² characters a token. Real vocabularies total a few million
  // (SmolLM2's longest token is 81 characters); a file of long tokens would otherwise run for hours.
  let work = 0;
  for (const token of scores.keys()) work += token.length * token.length;
  if (work > MERGE_WORK_LIMIT)
    throw new InputError(
      `the vocabulary's tokens are too long to rebuild merges from their scores (${work} character comparisons, more than ${MERGE_WORK_LIMIT}); a tokenizer of a real model has merges or shorter tokens`,
      { where },
    );
  const merges: Array<[string, string, number]> = [];
  for (const [token, score] of scores) {
    const cps = [...token];
    const local: Array<[string, string, number]> = [];
    for (let i = 1; i < cps.length; i++) {
      const l = cps.slice(0, i).join('');
      const r = cps.slice(i).join('');
      if (l in vocab && r in vocab) local.push([l, r, score]);
    }
    local.sort((a, b) => vocab[a[0]]! - vocab[b[0]]! || vocab[a[1]]! - vocab[b[1]]!);
    merges.push(...local);
  }
  merges.sort((a, b) => b[2] - a[2] || cpLength(b[0]) - cpLength(a[0]) || cpLength(b[1]) - cpLength(a[1]));
  return merges.map(([l, r]) => [l, r]);
}

function sentencePieceFromGguf(g: GgufFile): GgufTokenizerFiles {
  const tokens = metaArray(g, 'tokenizer.ggml.tokens', isString, 'strings');
  if (!tokens || tokens.length === 0) throw new InputError('metadata tokenizer.ggml.tokens is missing or empty', { where: g.path });
  const types = metaArray(g, 'tokenizer.ggml.token_type', isInt, 'integers') ?? [];
  if (types.length !== 0 && types.length !== tokens.length)
    throw new InputError(`tokenizer.ggml.token_type has ${types.length} entries for ${tokens.length} tokens`, { where: g.path });
  const vocab: Record<string, number> = Object.create(null) as Record<string, number>;
  tokens.forEach((t, i) => {
    vocab[t] = i;
  });
  const stored = metaArray(g, 'tokenizer.ggml.merges', isString, 'strings');
  let merges: string[][];
  if (stored) {
    merges = stored.map((m, i) => {
      const parts = m.split(' ');
      if (parts.length !== 2 || !parts[0] || !parts[1])
        throw new InputError(`tokenizer.ggml.merges[${i}] ${JSON.stringify(m)} is not two tokens separated by one space`, {
          where: g.path,
        });
      return parts;
    });
  } else {
    const scores = metaArray(g, 'tokenizer.ggml.scores', isNumber, 'numbers');
    if (!scores || scores.length !== tokens.length)
      throw new InputError(
        `a SentencePiece vocabulary without merges needs tokenizer.ggml.scores for each of its ${tokens.length} tokens`,
        { where: g.path },
      );
    const byToken = new Map<string, number>();
    tokens.forEach((t, i) => byToken.set(t, scores[i]!));
    merges = mergesFromScores(vocab, byToken, `${g.path}: tokenizer.ggml.tokens`);
  }
  const bos = tokenNamedBy(g, tokens, 'tokenizer.ggml.bos_token_id');
  const eos = tokenNamedBy(g, tokens, 'tokenizer.ggml.eos_token_id');
  const unk = tokenNamedBy(g, tokens, 'tokenizer.ggml.unknown_token_id');
  // llama.cpp adds BOS to a SentencePiece vocabulary that does not say otherwise (so does transformers).
  const addBos = metaBool(g, 'tokenizer.ggml.add_bos_token', true);
  const addEos = metaBool(g, 'tokenizer.ggml.add_eos_token', false);
  const addPrefixSpace = metaBool(g, 'tokenizer.ggml.add_space_prefix', true);
  const added = tokens.flatMap((t, id) => {
    const type = types[id];
    if (type === 3 || t === unk)
      return [{ id, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }];
    if (type === 4) return [{ id, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: false }];
    return [];
  });
  const tokenizer = {
    ...tokenizerJsonHead(added),
    pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: addPrefixSpace ? 'first' : 'never', split: false },
    post_processor: templatePostProcessor(bos, eos, addBos, addEos, (t) => vocab[t]!),
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        ...(addPrefixSpace ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
      ],
    },
    model: bpeModel(vocab, merges, { affix: null, byteFallback: true }),
  };
  const template = g.metadata.get('tokenizer.chat_template');
  if (template !== undefined && typeof template !== 'string')
    throw new InputError('metadata tokenizer.chat_template must be a string', { where: g.path });
  const arch = metaString(g, 'general.architecture', '');
  const config: Record<string, unknown> = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: bos ?? null,
    eos_token: eos ?? null,
    unk_token: unk ?? null,
    pad_token: tokenNamedBy(g, tokens, 'tokenizer.ggml.padding_token_id') ?? null,
    add_bos_token: addBos,
    add_eos_token: addEos,
    clean_up_tokenization_spaces: false,
    model_max_length: g.metadata.has(`${arch}.context_length`) ? metaInt(g, `${arch}.context_length`) : undefined,
    ...(template !== undefined ? { chat_template: template } : {}),
  };
  return { tokenizer, config };
}
