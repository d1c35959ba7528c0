/**
 * Tokenizers loaded from a Hugging Face `tokenizer.json` (+ optional `tokenizer_config.json`).
 *
 * Tokenization itself is @huggingface/tokenizers (pure JS, checked id-for-id against the Rust
 * library by tokenizer.test.ts). It neither truncates nor pads, so this module does both, following
 * the Rust library's rules: raw sequences are truncated to max_length minus the special tokens
 * (LongestFirst for pairs), special tokens are added from the post-processor, padding goes right.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { InputError } from '../errors.ts';
import { applyLayout, longestFirstLengths, parseSpecialLayout, specialCount, type SpecialLayout } from './post-processor.ts';
import { checkFileSize, checkTokenizerIds, MAX_TOKENIZER_CONFIG_BYTES, MAX_TOKENIZER_JSON_BYTES } from './tokenizer-limits.ts';
import { checkTokenizerPatterns } from './tokenizer-patterns.ts';

/** Label value of positions that carry no loss (PyTorch's CrossEntropyLoss ignore_index). */
export const IGNORE_INDEX = -100;

export interface Encoding {
  inputIds: number[];
  attentionMask: number[];
  tokenTypeIds: number[];
}

export interface CausalEncoding {
  inputIds: number[];
  attentionMask: number[];
  /** Same positions as inputIds (not shifted; the loss shifts): the token id on response tokens, IGNORE_INDEX elsewhere. */
  labels: number[];
}

export interface EncodeOptions {
  /** Total length including special tokens; longer inputs are truncated. */
  maxLength?: number;
  addSpecialTokens?: boolean;
}

/** How a prompt/response pair becomes one causal-LM sequence. */
export interface PromptTemplate {
  /** Text before the response; `{prompt}` is replaced by the prompt. */
  prompt: string;
  /** Prepend the tokenizer's BOS token (LLaMA-style tokenizers); default: when tokenizer_config says add_bos_token. */
  addBos?: boolean;
  /** Append EOS after the response so the model learns to stop; default true. */
  addEos?: boolean;
}

/** An added token the tokenizer matches in raw text. */
export interface RawAddedToken {
  content: string;
  id: number;
  /** A control token (tokenizer.json `special`): never read from a message's content (tokenizer-spans.ts). */
  special: boolean;
}

export const DEFAULT_PROMPT_TEMPLATE: PromptTemplate = { prompt: '### Instruction:\n{prompt}\n\n### Response:\n' };

function tokenString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string')
    return (v as { content: string }).content;
  return undefined;
}

function readJson(path: string, maxBytes: number): unknown {
  try {
    checkFileSize(path, maxBytes);
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    if (e instanceof InputError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(code === 'ENOENT' ? 'file not found' : `not valid JSON (${(e as Error).message})`, { where: path, cause: e });
  }
}

export class HfTokenizer {
  readonly inner: Tokenizer;
  readonly layout: SpecialLayout;
  readonly padId: number;
  readonly padTypeId: number;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  readonly addBosDefault: boolean;
  readonly vocabSize: number;
  readonly modelType: string;
  readonly modelMaxLength: number | undefined;
  /**
   * Added tokens the tokenizer matches in raw text, by first character, longest first: where message content is kept
   * plain (tokenizer-spans.ts) and where replies are anchored (added-token-anchors.ts).
   */
  readonly addedTokensByFirstChar: ReadonlyMap<string, readonly RawAddedToken[]>;
  /** Ids of every added token, normalized ones too. */
  readonly addedTokenIds: ReadonlySet<number>;
  /** A special token is matched only after normalization: where it falls cannot be told in raw text (tokenizer-spans.ts). */
  readonly hasNormalizedSpecial: boolean;
  /** Ids of the special added tokens but the unknown token (which the model writes for text it has no pieces for). */
  readonly specialTokenIds: ReadonlySet<number>;

  constructor(tokenizerJson: Record<string, unknown>, config: Record<string, unknown> = {}, file = 'tokenizer.json') {
    // Before the library compiles them: a pattern that backtracks catastrophically would hang encode().
    checkTokenizerPatterns(tokenizerJson, file);
    checkTokenizerIds(tokenizerJson, file);
    try {
      this.inner = new Tokenizer(tokenizerJson, config);
    } catch (e) {
      throw new InputError(`cannot build the tokenizer: ${(e as Error).message}`, { where: file, cause: e });
    }
    const lookup = (t: string) => this.inner.token_to_id(t);
    this.modelType = String((tokenizerJson.model as { type?: unknown } | undefined)?.type ?? 'unknown');
    this.layout = parseSpecialLayout(tokenizerJson.post_processor, lookup, file);
    this.vocabSize = this.inner.get_vocab(true).size;
    const id = (key: string): number | undefined => {
      const t = tokenString(config[key]);
      return t === undefined ? undefined : lookup(t);
    };
    this.bosId = id('bos_token');
    this.eosId = id('eos_token');
    const padding = tokenizerJson.padding as { pad_id?: number; pad_type_id?: number } | null | undefined;
    // GPT-2-style tokenizers have no pad token; padded positions are masked out, so EOS serves.
    this.padId = id('pad_token') ?? padding?.pad_id ?? this.eosId ?? 0;
    this.padTypeId = padding?.pad_type_id ?? 0;
    this.addBosDefault = config.add_bos_token === true;
    const mml = config.model_max_length;
    this.modelMaxLength = typeof mml === 'number' && mml < 1e9 ? mml : undefined;
    const added = Array.isArray(tokenizerJson.added_tokens) ? (tokenizerJson.added_tokens as Record<string, unknown>[]) : [];
    const byFirst = new Map<string, RawAddedToken[]>();
    const ids = new Set<number>();
    let normalizedSpecial = false;
    for (const t of added) {
      if (typeof t.content !== 'string' || t.content === '' || typeof t.id !== 'number') continue;
      ids.add(t.id);
      const special = t.special === true;
      // As @huggingface/tokenizers splits: a normalized token (the default for one not special) is matched in raw text
      // only where there is no normalizer.
      if ((t.normalized ?? !special) === true && tokenizerJson.normalizer) {
        normalizedSpecial ||= special;
        continue;
      }
      const list = byFirst.get(t.content[0]!) ?? [];
      list.push({ content: t.content, id: t.id, special });
      byFirst.set(t.content[0]!, list);
    }
    for (const list of byFirst.values()) list.sort((a, b) => b.content.length - a.content.length);
    this.addedTokensByFirstChar = byFirst;
    this.addedTokenIds = ids;
    this.hasNormalizedSpecial = normalizedSpecial;
    // The model's own unknown token (tokenizer.json model.unk_token), not tokenizer_config's, which may name EOS.
    const unk = (this.inner as unknown as { model?: { unk_token_id?: unknown } }).model?.unk_token_id;
    this.specialTokenIds = new Set(added.flatMap((t) => (t.special === true && typeof t.id === 'number' && t.id !== unk ? [t.id] : [])));
  }

  /** Token ids of the text alone, no special tokens, no truncation. */
  tokenize(text: string): number[] {
    return this.inner.encode(text, { add_special_tokens: false }).ids;
  }

  encode(text: string, pair?: string | null, opts: EncodeOptions = {}): Encoding {
    const add = opts.addSpecialTokens ?? true;
    let a = this.tokenize(text);
    let b = pair === undefined || pair === null ? undefined : this.tokenize(pair);
    if (opts.maxLength !== undefined) {
      const budget = opts.maxLength - (add ? specialCount(this.layout, b !== undefined) : 0);
      if (budget < 0)
        throw new InputError(`maxLength ${opts.maxLength} leaves no room for the ${-budget + opts.maxLength} special tokens`, {
          where: 'maxLength',
        });
      if (b === undefined) a = a.slice(0, budget);
      else {
        const [n1, n2] = longestFirstLengths(a.length, b.length, budget);
        a = a.slice(0, n1);
        b = b.slice(0, n2);
      }
    }
    if (!add) {
      const ids = b ? [...a, ...b] : a;
      return { inputIds: ids, attentionMask: ids.map(() => 1), tokenTypeIds: b ? [...a.map(() => 0), ...b.map(() => 1)] : a.map(() => 0) };
    }
    const r = applyLayout(this.layout, a, b);
    return { inputIds: r.ids, attentionMask: r.ids.map(() => 1), tokenTypeIds: r.typeIds };
  }

  /**
   * A prompt/response pair as one causal-LM sequence with loss only on the response (and EOS).
   * Prompt and response are tokenized separately so the boundary is exact. When too long, the response
   * keeps at least half the budget and the prompt loses tokens from its start (its end carries the
   * template's response marker, which the model needs to see).
   */
  encodePromptResponse(prompt: string, response: string, opts: { maxLength?: number; template?: PromptTemplate } = {}): CausalEncoding {
    const tpl = opts.template ?? DEFAULT_PROMPT_TEMPLATE;
    const addBos = (tpl.addBos ?? this.addBosDefault) && this.bosId !== undefined;
    const addEos = tpl.addEos ?? true;
    if (addEos && this.eosId === undefined)
      throw new InputError('the tokenizer has no eos_token; set template.addEos: false or add eos_token to tokenizer_config.json', {
        where: 'template.addEos',
      });
    let p = this.tokenize(tpl.prompt.split('{prompt}').join(prompt));
    let r = this.tokenize(response);
    if (opts.maxLength !== undefined) {
      const budget = opts.maxLength - (addBos ? 1 : 0) - (addEos ? 1 : 0);
      if (budget < 2) throw new InputError(`maxLength ${opts.maxLength} is too small for a prompt and a response`, { where: 'maxLength' });
      if (p.length + r.length > budget) {
        const keepR = Math.min(r.length, Math.max(budget - p.length, Math.ceil(budget / 2)));
        r = r.slice(0, keepR);
        p = p.slice(p.length - (budget - keepR));
      }
    }
    const head = addBos ? [this.bosId!, ...p] : p;
    const tail = addEos ? [...r, this.eosId!] : r;
    const inputIds = [...head, ...tail];
    return { inputIds, attentionMask: inputIds.map(() => 1), labels: [...head.map(() => IGNORE_INDEX), ...tail] };
  }

  decode(ids: number[], skipSpecialTokens = true): string {
    if (ids.length === 0) return '';
    return this.inner.decode(ids, { skip_special_tokens: skipSpecialTokens });
  }
}

/** Loads `tokenizer.json` (and `tokenizer_config.json` when present) from a model directory. */
export function loadTokenizer(dir: string): HfTokenizer {
  const path = join(dir, 'tokenizer.json');
  if (!existsSync(path)) {
    throw new InputError('tokenizer.json not found', {
      where: dir,
      hint: 'tempered needs a fast-tokenizer file (tokenizer.json); export one with transformers: AutoTokenizer.from_pretrained(...).save_pretrained(dir)',
    });
  }
  const cfgPath = join(dir, 'tokenizer_config.json');
  const config = existsSync(cfgPath) ? (readJson(cfgPath, MAX_TOKENIZER_CONFIG_BYTES) as Record<string, unknown>) : {};
  return new HfTokenizer(readJson(path, MAX_TOKENIZER_JSON_BYTES) as Record<string, unknown>, config, path);
}

/** Length a batch is padded to: the fixed length, or the longest row rounded up to a multiple (bucketing keeps few distinct shapes). */
export function paddedLength(longest: number, padding: Padding): number {
  if (padding.kind === 'max_length') return padding.maxLength;
  const m = padding.multipleOf ?? 8;
  return Math.min(Math.ceil(Math.max(longest, 1) / m) * m, padding.maxLength);
}

export type Padding =
  | { kind: 'max_length'; maxLength: number }
  /** Pad to the longest row, rounded up to `multipleOf` (default 8), never beyond maxLength. */
  | { kind: 'longest'; maxLength: number; multipleOf?: number };

export interface PaddedBatch {
  rows: number;
  seqLen: number;
  /** Row-major [rows, seqLen]. */
  inputIds: Int32Array;
  attentionMask: Int32Array;
  tokenTypeIds: Int32Array;
  /** Only for causal batches: [rows, seqLen]. */
  labels?: Int32Array;
}

/** Pads encodings (right side) into dense row-major int32 arrays. */
export function padBatch(tok: HfTokenizer, rows: (Encoding | CausalEncoding)[], padding: Padding): PaddedBatch {
  const longest = rows.reduce((m, r) => Math.max(m, r.inputIds.length), 0);
  const L = paddedLength(longest, padding);
  const n = rows.length;
  const inputIds = new Int32Array(n * L).fill(tok.padId);
  const attentionMask = new Int32Array(n * L);
  const tokenTypeIds = new Int32Array(n * L).fill(tok.padTypeId);
  const causal = rows.length > 0 && 'labels' in rows[0]!;
  const labels = causal ? new Int32Array(n * L).fill(IGNORE_INDEX) : undefined;
  rows.forEach((r, i) => {
    if (r.inputIds.length > L)
      throw new Error(`row ${i} has ${r.inputIds.length} tokens, more than the padded length ${L}; encode with maxLength`);
    inputIds.set(r.inputIds, i * L);
    attentionMask.set(r.attentionMask, i * L);
    if ('tokenTypeIds' in r) tokenTypeIds.set(r.tokenTypeIds, i * L);
    else tokenTypeIds.fill(0, i * L, i * L + r.inputIds.length);
    if (labels && 'labels' in r) labels.set(r.labels, i * L);
  });
  return { rows: n, seqLen: L, inputIds, attentionMask, tokenTypeIds, labels };
}
