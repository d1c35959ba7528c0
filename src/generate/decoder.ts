/**
 * A LLaMA-family model (llama, mistral, qwen2) ready for generation: its KV-cache graph in an onnxruntime session, the config,
 * and (when the folder has one) the tokenizer. `run` is one forward pass over new positions with the
 * cache of the earlier ones; the generation loop is in generate.ts.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as ort from 'onnxruntime-node';
import { InputError } from '../errors.ts';
import { createSessionFromFile, type Device } from '../engine/runtime.ts';
import {
  LLAMA_FAMILY,
  buildLlamaDecoderGraph,
  isLlamaFamily,
  readLlamaConfig,
  type LlamaConfig,
  type LlamaWeights,
} from '../models/llama.ts';
import { loadTokenizer, type HfTokenizer } from '../models/tokenizer.ts';
import { ModelConfig, Weights } from '../models/weights.ts';
import { loadModel, saveModel } from '../onnx/proto.ts';
import type { Model } from '../onnx/ir.ts';

export interface DecoderOptions {
  device?: Device;
  threads?: number;
  /** onnxruntime's CPU memory arena (SessionOptions.memArena in src/engine/runtime.ts; default on). */
  memArena?: boolean;
}

/**
 * The keys and values of the positions a decoder has seen, per layer, position-major ([position, batch, kvHeads,
 * headDim], as the graph takes them) in buffers with room to grow: a call appends its positions at the end, and
 * the next call reads the first `length` positions as views of the same buffers. Decoder.run updates it in place.
 */
export class KvCache {
  /** Positions held. */
  length = 0;
  private capacity = 0;
  /** By graph input name (`past_key_values.<l>.key|value`), `capacity` positions each. */
  private buffers = new Map<string, Float32Array>();

  constructor(
    readonly batch: number,
    private readonly layers: number,
    private readonly kvHeads: number,
    private readonly headDim: number,
    /** Growth stops here (the model's context), so a long conversation does not hold twice what it can use. */
    private readonly maxPositions: number,
  ) {}

  private get stride(): number {
    return this.batch * this.kvHeads * this.headDim;
  }

  /** The graph's past inputs: the held positions, as views (no copy). */
  feeds(): Record<string, ort.Tensor> {
    const dims = [this.length, this.batch, this.kvHeads, this.headDim];
    const out: Record<string, ort.Tensor> = {};
    for (let l = 0; l < this.layers; l++)
      for (const kind of ['key', 'value']) {
        const name = `past_key_values.${l}.${kind}`;
        const data = this.buffers.get(name)?.subarray(0, this.length * this.stride) ?? new Float32Array(0);
        out[name] = new ort.Tensor('float32', data, dims);
      }
    return out;
  }

  /** Appends a call's positions (`new_key_values.<l>.key|value` outputs, [seq, batch, kvHeads, headDim]). */
  append(outputs: Record<string, ort.Tensor>, seq: number): void {
    const need = this.length + seq;
    if (need > this.capacity) this.grow(need);
    for (const [name, buffer] of this.buffers) {
      const fresh = outputs[name.replace('past_key_values.', 'new_key_values.')]!.data as Float32Array;
      buffer.set(fresh, this.length * this.stride);
    }
    this.length = need;
  }

  /** Room for `positions` in all, taken now (a caller that knows how long it will generate), so no step copies. */
  reserve(positions: number): void {
    if (positions > this.capacity) this.resize(positions);
  }

  private grow(need: number): void {
    // Doubling keeps the copies of a long generation to a constant number per position; up to the model's
    // context it stops there, and a caller that goes past it (a loss over longer rows) doubles on.
    const doubled = Math.max(2 * this.capacity, 64);
    this.resize(Math.max(need, need <= this.maxPositions ? Math.min(doubled, this.maxPositions) : doubled));
  }

  private resize(capacity: number): void {
    for (let l = 0; l < this.layers; l++)
      for (const kind of ['key', 'value']) {
        const name = `past_key_values.${l}.${kind}`;
        const sized = new Float32Array(capacity * this.stride);
        const old = this.buffers.get(name);
        if (old) sized.set(old.subarray(0, this.length * this.stride));
        this.buffers.set(name, sized);
      }
    this.capacity = capacity;
  }

  /**
   * Forgets all but the first `positions` positions (a conversation's shared prefix), keeping `room` positions
   * in all for what comes next. No copy, unless the buffers are far larger than that (a generation thread would
   * otherwise hold its longest conversation's room for good) or too small.
   */
  truncate(positions: number, room = 0): void {
    if (!Number.isInteger(positions) || positions < 0 || positions > this.length)
      throw new Error(`cannot keep ${positions} of ${this.length} cached positions`);
    this.length = positions;
    const want = Math.max(positions, room, 64);
    if (this.capacity > 4 * want) this.resize(2 * want);
    this.reserve(room);
  }

  /** A cache of its own holding the first `positions` positions. */
  copy(positions = this.length): KvCache {
    const c = new KvCache(this.batch, this.layers, this.kvHeads, this.headDim, this.maxPositions);
    if (positions > this.length) throw new Error(`cannot copy ${positions} of ${this.length} cached positions`);
    if (positions > 0) {
      c.resize(positions);
      for (const [name, buffer] of this.buffers) c.buffers.get(name)!.set(buffer.subarray(0, positions * this.stride));
      c.length = positions;
    }
    return c;
  }
}

/** Weights from an exported model.onnx (tempered's causal-LM export): initializers already in [in, out] layout, LoRA merged. */
export class OnnxInitializerWeights implements LlamaWeights {
  constructor(
    private readonly model: Model,
    private readonly where: string,
    /** What the graph should have been, for the hint of a missing weight. */
    private readonly expected = 'a causal-LM model.onnx',
  ) {}

  has(name: string): boolean {
    return this.model.graph.initializers.has(name);
  }

  get(name: string, shape: number[]): Float32Array {
    const t = this.model.graph.initializers.get(name);
    if (!t)
      throw new InputError(`initializer ${JSON.stringify(name)} is missing`, {
        where: this.where,
        hint: `expected ${this.expected} exported by tempered (Hugging Face weight names)`,
      });
    if (t.dtype !== 'float32')
      throw new InputError(`initializer ${JSON.stringify(name)} is ${t.dtype}, expected float32`, { where: this.where });
    if (t.dims.length !== shape.length || t.dims.some((d, i) => d !== shape[i]))
      throw new InputError(`initializer ${JSON.stringify(name)} has shape [${t.dims}], config.json implies [${shape}]`, {
        where: this.where,
      });
    return t.data as Float32Array;
  }

  linear(name: string, inF: number, outF: number): Float32Array {
    return this.get(name, [inF, outF]);
  }
}

/** Where a fine-tuned export keeps its weights: model.onnx next to tempered-model.json with task causal-lm. */
function exportedOnnx(dir: string): string | null {
  const manifest = join(dir, 'tempered-model.json');
  if (!existsSync(manifest)) return null;
  const m = JSON.parse(readFileSync(manifest, 'utf8')) as { task?: string };
  if (m.task !== 'causal-lm')
    throw new InputError(`model task is ${JSON.stringify(m.task)}, not causal-lm: only causal language models generate text`, {
      where: manifest,
    });
  return join(dir, 'model.onnx');
}

/** Weights of a model folder: a Hugging Face checkpoint (safetensors) or a tempered causal-LM export (model.onnx). */
export function readDecoderWeights(dir: string): LlamaWeights {
  const onnx = exportedOnnx(dir);
  return onnx ? new OnnxInitializerWeights(loadModel(onnx), onnx) : Weights.read(dir);
}

export class Decoder {
  private constructor(
    readonly config: LlamaConfig,
    private readonly session: ort.InferenceSession,
    /** Longest context (prompt + generated) the model was trained for: config.json's max_position_embeddings. */
    readonly maxPositions: number,
    readonly tokenizer: HfTokenizer | null,
    /** Token ids that end generation: config.json's eos_token_id (a number or a list) and the tokenizer's eos. */
    readonly eosTokenIds: number[],
  ) {
    this.fetches = ['logits'];
    for (let l = 0; l < config.layers; l++) this.fetches.push(`new_key_values.${l}.key`, `new_key_values.${l}.value`);
  }

  /** The outputs a step reads. */
  private readonly fetches: string[];

  /** A Hugging Face-layout LLaMA-family folder (config.json, weights, optional tokenizer.json) or a tempered causal-LM export. */
  static async load(dir: string, opts: DecoderOptions = {}): Promise<Decoder> {
    const raw = ModelConfig.read(dir);
    const type = raw.raw.model_type;
    if (!isLlamaFamily(type)) {
      throw new InputError(
        `generation supports the LLaMA family (model_type ${LLAMA_FAMILY.map((t) => JSON.stringify(t)).join(', ')}); this model is ${JSON.stringify(type)}`,
        { where: `${raw.path}: model_type` },
      );
    }
    const config = readLlamaConfig(dir, { inference: true });
    const tokenizer = existsSync(join(dir, 'tokenizer.json')) ? loadTokenizer(dir) : null;
    return Decoder.create(config, () => readDecoderWeights(dir), {
      ...opts,
      maxPositions: raw.int('max_position_embeddings', 2048),
      tokenizer,
      eosTokenIds: eosIds([raw, ModelConfig.readIfPresent(dir, 'generation_config.json')], tokenizer),
    });
  }

  /**
   * From a config and weights (or a function giving them, so they can be freed while onnxruntime loads).
   * The graph goes through a temporary file with its weights as page-aligned external data: onnxruntime then maps
   * or reads them from disk while this process no longer holds a copy, which keeps peak memory near one copy of
   * the weights instead of three (float32 arrays, protobuf bytes, onnxruntime's own).
   */
  static async create(
    config: LlamaConfig,
    weights: LlamaWeights | (() => LlamaWeights),
    opts: DecoderOptions & { maxPositions: number; tokenizer?: HfTokenizer | null; eosTokenIds?: number[] },
  ): Promise<Decoder> {
    const tmp = mkdtempSync(join(tmpdir(), 'tempered-decoder-'));
    try {
      writeDecoderGraph(config, typeof weights === 'function' ? weights : () => weights, join(tmp, 'decoder.onnx'));
      collectGarbage();
      const session = await createSessionFromFile(join(tmp, 'decoder.onnx'), {
        device: opts.device ?? 'cpu',
        threads: opts.threads,
        memArena: opts.memArena,
      });
      return new Decoder(config, session, opts.maxPositions, opts.tokenizer ?? null, opts.eosTokenIds ?? []);
    } finally {
      // onnxruntime has read or mapped the weights by now; an unlinked mapping stays valid on Linux.
      rmSync(tmp, { recursive: true, force: true });
    }
  }

  /** An empty cache for `batch` rows, with room for `reserve` positions taken at once (a prompt and its answer). */
  emptyCache(batch: number, reserve = 0): KvCache {
    const cache = new KvCache(batch, this.config.layers, this.config.kvHeads, this.config.headDim, this.maxPositions);
    cache.reserve(reserve);
    return cache;
  }

  /**
   * One forward pass. `ids` and `positions` are [batch, seq]; `mask` is [batch, past + seq] and covers the
   * cached positions too. Returns the last position's logits [batch × vocab]; `cache` gets these positions
   * appended (in place: the returned cache is the one given).
   */
  async run(
    ids: BigInt64Array,
    positions: BigInt64Array,
    mask: BigInt64Array,
    batch: number,
    cache: KvCache,
  ): Promise<{ logits: Float32Array; cache: KvCache }> {
    const seq = ids.length / batch;
    if (cache.batch !== batch || mask.length !== batch * (cache.length + seq))
      throw new Error(
        `a mask of [${batch}, ${cache.length} + ${seq}] was expected for a cache of ${cache.batch} rows, got ${mask.length} entries`,
      );
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', ids, [batch, seq]),
      position_ids: new ort.Tensor('int64', positions, [batch, seq]),
      attention_mask: new ort.Tensor('int64', mask, [batch, mask.length / batch]),
      ...cache.feeds(),
    };
    // Only the new positions come back: fetching the whole cache would copy it into a new buffer every step.
    const out = await this.session.run(feeds, this.fetches);
    cache.append(out, seq);
    return { logits: out.logits!.data as Float32Array, cache };
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}

/** Builds and saves the graph; nothing it allocated is reachable once it returns. */
function writeDecoderGraph(config: LlamaConfig, weights: () => LlamaWeights, path: string): void {
  const w = weights();
  // A checkpoint's nn.Linear weights are transposed into new arrays: drop each original once it is taken.
  const taking: LlamaWeights =
    w instanceof Weights
      ? {
          has: (n) => w.has(n),
          get: (n, s) => w.get(n, s),
          linear: (n, i, o) => {
            const t = w.linear(n, i, o);
            w.map.delete(n);
            return t;
          },
        }
      : w;
  saveModel(buildLlamaDecoderGraph(config, taking), path, { externalData: true });
}

/**
 * Runs a full garbage collection when the runtime allows it, so the float32 weights the graph was built from
 * are freed before onnxruntime allocates its own (V8 does not see native allocations and would collect later).
 */
function collectGarbage(): void {
  try {
    setFlagsFromString('--expose-gc');
    (runInNewContext('gc') as () => void)();
  } catch {
    // Not available: memory is freed at V8's next collection instead.
  }
}

/**
 * The ids that end a generation: `eos_token_id` of config.json and of generation_config.json (a number or a list),
 * and the tokenizer's end-of-sequence token. generation_config.json is what transformers' generate() stops on; it
 * often lists more than config.json (Qwen2.5-Instruct: <|im_end|> and <|endoftext|>, config.json the first alone),
 * so a model that ends its answer with the other one ran on to the token limit.
 */
function eosIds(configs: (ModelConfig | undefined)[], tok: HfTokenizer | null): number[] {
  const ids = new Set<number>();
  for (const cfg of configs) {
    const v = cfg?.raw.eos_token_id;
    if (!cfg || v === undefined || v === null) continue;
    const list = Array.isArray(v) ? v : [v];
    if (!list.every((x) => Number.isSafeInteger(x) && (x as number) >= 0))
      throw new InputError(`must be a token id or a list of token ids, got ${JSON.stringify(v).slice(0, 80)}`, {
        where: `${cfg.path}: eos_token_id`,
      });
    for (const x of list) ids.add(x as number);
  }
  if (tok?.eosId !== undefined) ids.add(tok.eosId);
  return [...ids];
}
