/**
 * Tiny, seeded, randomly initialised models of each architecture for fast tests: a few thousand
 * parameters, written in Hugging Face layout (config.json, model.safetensors, tokenizer.json,
 * tokenizer_config.json) so they go through exactly the loaders real models use. Same seed → same bytes.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../data/atomic.ts';
import { Rng } from '../engine/prng.ts';
import { writeSafetensors, type SafeTensor } from '../formats/safetensors.ts';
import type { LlamaFamilyType } from './llama.ts';
import { bpeModel } from './tokenizer-json.ts';

type Init = (name: string, shape: number[], kind?: 'normal' | 'ones' | 'zeros') => void;

function weightsWriter(seed: number, std: number | ((name: string) => number)): { add: Init; tensors: Map<string, SafeTensor> } {
  const rng = new Rng(seed);
  const tensors = new Map<string, SafeTensor>();
  const add: Init = (name, shape, kind = 'normal') => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    const s = typeof std === 'number' ? std : std(name);
    if (kind === 'ones') data.fill(1);
    else if (kind === 'normal') for (let i = 0; i < n; i++) data[i] = rng.normal() * s;
    tensors.set(name, { dtype: 'F32', shape, data });
  };
  return { add, tensors };
}

function writeJson(path: string, v: unknown): void {
  writeFileAtomic(path, JSON.stringify(v, null, 1) + '\n');
}

const WORDS = [
  'the',
  'a',
  'an',
  'is',
  'was',
  'and',
  'or',
  'not',
  'good',
  'bad',
  'great',
  'awful',
  'movie',
  'film',
  'plot',
  'actor',
  'free',
  'call',
  'now',
  'win',
  'prize',
  'text',
  'stop',
  'reply',
  'you',
  'me',
  'i',
  'it',
  'this',
  'that',
  'love',
  'hate',
  'fun',
  'boring',
  'very',
  'so',
];

/** A WordPiece tokenizer.json in BERT's configuration over a small vocabulary (specials, words, letters, ##letters, digits, punctuation). */
export function tinyWordPieceTokenizer(): { tokenizer: Record<string, unknown>; config: Record<string, unknown>; vocabSize: number } {
  const specials = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];
  const letters = 'abcdefghijklmnopqrstuvwxyz'.split('');
  const vocabList = [
    ...specials,
    ...WORDS,
    ...letters,
    ...letters.map((l) => `##${l}`),
    ...'0123456789'.split(''),
    ...'.,!?\'"-:;()&<>#$%/'.split(''),
  ];
  const vocab = Object.fromEntries([...new Set(vocabList)].map((t, i) => [t, i]));
  const added = specials.map((content, id) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [
        { SpecialToken: { id: '[CLS]', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '[SEP]', type_id: 0 } },
      ],
      pair: [
        { SpecialToken: { id: '[CLS]', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '[SEP]', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } },
        { SpecialToken: { id: '[SEP]', type_id: 1 } },
      ],
      special_tokens: {
        '[CLS]': { id: '[CLS]', ids: [vocab['[CLS]']], tokens: ['[CLS]'] },
        '[SEP]': { id: '[SEP]', ids: [vocab['[SEP]']], tokens: ['[SEP]'] },
      },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
  };
  const config = {
    do_lower_case: true,
    unk_token: '[UNK]',
    sep_token: '[SEP]',
    pad_token: '[PAD]',
    cls_token: '[CLS]',
    mask_token: '[MASK]',
    model_max_length: 64,
    tokenizer_class: 'BertTokenizer',
  };
  return { tokenizer, config, vocabSize: Object.keys(vocab).length };
}

/** GPT-2's byte-to-unicode table: printable bytes map to themselves, the rest to code points from 256 up. */
function byteLevelAlphabet(): string[] {
  const keep = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const out: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) out.push(String.fromCodePoint(keep(b) ? b : 256 + extra++));
  return out;
}

/** A byte-level BPE tokenizer.json in GPT-2's configuration with no merges: every byte is a token, plus <|endoftext|>. */
export function tinyByteLevelTokenizer(): { tokenizer: Record<string, unknown>; config: Record<string, unknown>; vocabSize: number } {
  const alphabet = byteLevelAlphabet();
  const vocab: Record<string, number> = Object.fromEntries(alphabet.map((c, i) => [c, i]));
  vocab['<|endoftext|>'] = 256;
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      { id: 256, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true },
    ],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: bpeModel(vocab, [], { affix: null, byteFallback: false }),
  };
  const config = {
    bos_token: '<|endoftext|>',
    eos_token: '<|endoftext|>',
    unk_token: '<|endoftext|>',
    model_max_length: 64,
    tokenizer_class: 'GPT2Tokenizer',
  };
  return { tokenizer, config, vocabSize: 257 };
}

export interface TinyOptions {
  hidden?: number;
  layers?: number;
  heads?: number;
  maxPositions?: number;
}

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));

/** all-MiniLM-L6-v2's own WordPiece tokenizer (30522 tokens), for tests that feed real English text. */
function miniLmTokenizer(): { tokenizer: Record<string, unknown>; config: Record<string, unknown>; vocabSize: number } {
  const tokenizer = JSON.parse(readFileSync(join(FIXTURES, 'minilm-tokenizer.json'), 'utf8')) as {
    model: { vocab: Record<string, number> };
  };
  const config = JSON.parse(readFileSync(join(FIXTURES, 'minilm-tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  return { tokenizer, config, vocabSize: Object.keys(tokenizer.model.vocab).length };
}

/**
 * The model the fine-tuning tests train: MiniLM's tokenizer, 128 positions (the train stage's default
 * maxLength), and larger embeddings than other weights so a few steps learn the synthetic task.
 */
export const TINY_MINILM = {
  hidden: 32,
  layers: 2,
  heads: 4,
  intermediate: 64,
  maxPositions: 128,
  tokenizer: 'minilm',
  nameOrPath: 'tempered/tiny-random-bert',
  std: (name: string) =>
    name.startsWith('embeddings.word_') ? 0.5 : name.startsWith('embeddings.') ? 0.1 : name.endsWith('.bias') ? 0.02 : 0.2,
} as const;

/**
 * A tiny BERT (MiniLM-shaped) encoder. Its tokenizer is a small WordPiece vocabulary, or with
 * `tokenizer: 'minilm'` MiniLM's own, so English text tokenizes as it does for the real model.
 * Returns the directory.
 */
export function tinyBertDir(
  dir: string,
  seed: number,
  opts: TinyOptions & { intermediate?: number; tokenizer?: 'tiny' | 'minilm'; std?: (name: string) => number; nameOrPath?: string } = {},
): string {
  mkdirSync(dir, { recursive: true });
  const { tokenizer, config: tokCfg, vocabSize } = opts.tokenizer === 'minilm' ? miniLmTokenizer() : tinyWordPieceTokenizer();
  const H = opts.hidden ?? 16;
  const L = opts.layers ?? 2;
  const heads = opts.heads ?? 2;
  const P = opts.maxPositions ?? 64;
  const I = opts.intermediate ?? 4 * H;
  const { add, tensors } = weightsWriter(seed, opts.std ?? 0.02 * 10);
  add('embeddings.word_embeddings.weight', [vocabSize, H]);
  add('embeddings.position_embeddings.weight', [P, H]);
  add('embeddings.token_type_embeddings.weight', [2, H]);
  add('embeddings.LayerNorm.weight', [H], 'ones');
  add('embeddings.LayerNorm.bias', [H], 'zeros');
  for (let l = 0; l < L; l++) {
    const p = `encoder.layer.${l}`;
    for (const n of ['query', 'key', 'value']) {
      add(`${p}.attention.self.${n}.weight`, [H, H]);
      add(`${p}.attention.self.${n}.bias`, [H]);
    }
    add(`${p}.attention.output.dense.weight`, [H, H]);
    add(`${p}.attention.output.dense.bias`, [H]);
    add(`${p}.attention.output.LayerNorm.weight`, [H], 'ones');
    add(`${p}.attention.output.LayerNorm.bias`, [H], 'zeros');
    add(`${p}.intermediate.dense.weight`, [I, H]);
    add(`${p}.intermediate.dense.bias`, [I]);
    add(`${p}.output.dense.weight`, [H, I]);
    add(`${p}.output.dense.bias`, [H]);
    add(`${p}.output.LayerNorm.weight`, [H], 'ones');
    add(`${p}.output.LayerNorm.bias`, [H], 'zeros');
  }
  add('pooler.dense.weight', [H, H]);
  add('pooler.dense.bias', [H], 'zeros');
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt', 'tempered.tiny.seed': String(seed) });
  writeJson(join(dir, 'config.json'), {
    architectures: ['BertModel'],
    model_type: 'bert',
    vocab_size: vocabSize,
    hidden_size: H,
    num_hidden_layers: L,
    num_attention_heads: heads,
    intermediate_size: I,
    hidden_act: 'gelu',
    max_position_embeddings: P,
    type_vocab_size: 2,
    layer_norm_eps: 1e-12,
    initializer_range: 0.02,
    pad_token_id: 0,
    position_embedding_type: 'absolute',
    ...(opts.nameOrPath ? { _name_or_path: opts.nameOrPath } : {}),
  });
  writeJson(join(dir, 'tokenizer.json'), tokenizer);
  writeJson(join(dir, 'tokenizer_config.json'), tokCfg);
  return dir;
}

/** A tiny GPT-2 causal LM with a byte-level BPE tokenizer (tied head). */
export function tinyGpt2Dir(dir: string, seed: number, opts: TinyOptions = {}): string {
  mkdirSync(dir, { recursive: true });
  const { tokenizer, config: tokCfg, vocabSize } = tinyByteLevelTokenizer();
  const H = opts.hidden ?? 16;
  const L = opts.layers ?? 2;
  const P = opts.maxPositions ?? 64;
  const { add, tensors } = weightsWriter(seed, 0.2);
  add('wte.weight', [vocabSize, H]);
  add('wpe.weight', [P, H]);
  for (let l = 0; l < L; l++) {
    const p = `h.${l}`;
    add(`${p}.ln_1.weight`, [H], 'ones');
    add(`${p}.ln_1.bias`, [H], 'zeros');
    add(`${p}.attn.c_attn.weight`, [H, 3 * H]);
    add(`${p}.attn.c_attn.bias`, [3 * H], 'zeros');
    add(`${p}.attn.c_proj.weight`, [H, H]);
    add(`${p}.attn.c_proj.bias`, [H], 'zeros');
    add(`${p}.ln_2.weight`, [H], 'ones');
    add(`${p}.ln_2.bias`, [H], 'zeros');
    add(`${p}.mlp.c_fc.weight`, [H, 4 * H]);
    add(`${p}.mlp.c_fc.bias`, [4 * H], 'zeros');
    add(`${p}.mlp.c_proj.weight`, [4 * H, H]);
    add(`${p}.mlp.c_proj.bias`, [H], 'zeros');
  }
  add('ln_f.weight', [H], 'ones');
  add('ln_f.bias', [H], 'zeros');
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt', 'tempered.tiny.seed': String(seed) });
  writeJson(join(dir, 'config.json'), {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    vocab_size: vocabSize,
    n_positions: P,
    n_embd: H,
    n_layer: L,
    n_head: opts.heads ?? 2,
    n_inner: null,
    activation_function: 'gelu_new',
    layer_norm_epsilon: 1e-5,
    bos_token_id: 256,
    eos_token_id: 256,
    tie_word_embeddings: true,
  });
  writeJson(join(dir, 'tokenizer.json'), tokenizer);
  writeJson(join(dir, 'tokenizer_config.json'), tokCfg);
  return dir;
}

/**
 * A tiny LLaMA causal LM (GQA with 2 query heads per kv head, untied head) with a byte-level BPE tokenizer. `modelType`
 * qwen2 adds q/k/v biases (drawn after every other weight, so a seed gives the same LLaMA weights); mistral takes
 * `slidingWindow` (absent: null, as Mistral v0.2+).
 */
export function tinyLlamaDir(
  dir: string,
  seed: number,
  opts: TinyOptions & { kvHeads?: number; modelType?: LlamaFamilyType; slidingWindow?: number } = {},
): string {
  mkdirSync(dir, { recursive: true });
  const { tokenizer, config: tokCfg, vocabSize } = tinyByteLevelTokenizer();
  const H = opts.hidden ?? 16;
  const L = opts.layers ?? 2;
  const heads = opts.heads ?? 4;
  const kv = opts.kvHeads ?? 2;
  const dh = H / heads;
  const I = 3 * H;
  const { add, tensors } = weightsWriter(seed, 0.2);
  add('model.embed_tokens.weight', [vocabSize, H]);
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    add(`${p}.input_layernorm.weight`, [H], 'ones');
    add(`${p}.self_attn.q_proj.weight`, [heads * dh, H]);
    add(`${p}.self_attn.k_proj.weight`, [kv * dh, H]);
    add(`${p}.self_attn.v_proj.weight`, [kv * dh, H]);
    add(`${p}.self_attn.o_proj.weight`, [H, heads * dh]);
    add(`${p}.post_attention_layernorm.weight`, [H], 'ones');
    add(`${p}.mlp.gate_proj.weight`, [I, H]);
    add(`${p}.mlp.up_proj.weight`, [I, H]);
    add(`${p}.mlp.down_proj.weight`, [H, I]);
  }
  add('model.norm.weight', [H], 'ones');
  add('lm_head.weight', [vocabSize, H]);
  const type = opts.modelType ?? 'llama';
  if (type === 'qwen2')
    for (let l = 0; l < L; l++)
      for (const [m, n] of [
        ['q_proj', heads],
        ['k_proj', kv],
        ['v_proj', kv],
      ] as const)
        add(`model.layers.${l}.self_attn.${m}.bias`, [n * dh]);
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt', 'tempered.tiny.seed': String(seed) });
  writeJson(join(dir, 'config.json'), {
    architectures: [{ llama: 'LlamaForCausalLM', qwen2: 'Qwen2ForCausalLM', mistral: 'MistralForCausalLM' }[type]],
    model_type: type,
    ...(type === 'qwen2' ? { use_sliding_window: false } : type === 'mistral' ? { sliding_window: opts.slidingWindow ?? null } : {}),
    vocab_size: vocabSize,
    hidden_size: H,
    intermediate_size: I,
    num_hidden_layers: L,
    num_attention_heads: heads,
    num_key_value_heads: kv,
    max_position_embeddings: opts.maxPositions ?? 64,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    hidden_act: 'silu',
    tie_word_embeddings: false,
    attention_bias: false,
    mlp_bias: false,
    rope_scaling: null,
    bos_token_id: 256,
    eos_token_id: 256,
  });
  writeJson(join(dir, 'tokenizer.json'), tokenizer);
  writeJson(join(dir, 'tokenizer_config.json'), tokCfg);
  return dir;
}
