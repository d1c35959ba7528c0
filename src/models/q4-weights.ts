/**
 * LLaMA weights for a QLoRA graph: the projections as 4-bit blocks (quant4.ts), everything else float32, read one
 * tensor at a time. For a GGUF model folder the file's Q4_1 projections are taken as they are (no float32 copy of
 * them is ever made, which is the point of QLoRA's memory saving); other tensor types are dequantized one at a time
 * and quantized to Q4 blocks. A safetensors folder is read whole (float32) and its projections quantized.
 */
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { dequantize, halfToFloat, readGguf, tensorBytes, type GgufFile, type GgufTensorInfo } from '../formats/gguf.ts';
import { GGUF_FILE_KEY, hfName, unpermuteRows } from './gguf-llama.ts';
import type { LlamaWeights } from './llama.ts';
import { q4FromGgufQ4_1, quantizeQ4, type Q4Weight } from '../engine/quant4.ts';
import { ModelConfig, transpose2d, Weights } from './weights.ts';

export interface Q4LlamaWeights extends LlamaWeights {
  /** The nn.Linear weight `name` ([out, in] in Hugging Face layout) as 4-bit blocks in [in, out] layout. */
  linearQ4(name: string, inF: number, outF: number): Q4Weight;
}

export function readQ4Weights(dir: string): Q4LlamaWeights {
  const config = ModelConfig.read(dir);
  const gguf = config.raw[GGUF_FILE_KEY];
  if (typeof gguf === 'string') {
    if (gguf.includes('/') || gguf.includes('\\'))
      throw new InputError(`${GGUF_FILE_KEY} must be a file name in the model directory`, { where: `${config.path}: ${GGUF_FILE_KEY}` });
    return new GgufQ4Weights(readGguf(join(dir, gguf)), config.raw);
  }
  const w = Weights.read(dir);
  return {
    has: (n) => w.has(n),
    get: (n, s) => w.get(n, s),
    linear: (n, i, o) => w.linear(n, i, o),
    linearQ4: (n, i, o) => quantizeQ4(w.linear(n, i, o), i, o, n),
  };
}

class GgufQ4Weights implements Q4LlamaWeights {
  private readonly byName = new Map<string, GgufTensorInfo>();

  constructor(
    private readonly g: GgufFile,
    private readonly config: Record<string, unknown>,
  ) {
    for (const t of g.tensors) {
      const n = hfName(t.name);
      if (n) this.byName.set(n, t);
    }
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  private tensor(name: string, shape: number[]): GgufTensorInfo {
    const t = this.byName.get(name);
    if (!t) throw new InputError(`weight ${JSON.stringify(name)} is missing`, { where: this.g.path });
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
      throw new InputError(`weight ${JSON.stringify(name)} has shape [${t.shape}], config.json implies [${shape}]`, { where: this.g.path });
    return t;
  }

  /** Heads whose rows llama.cpp's converter permuted (Q and K projections), else undefined. */
  private permutedHeads(t: GgufTensorInfo): number | undefined {
    if (/\.attn_q\.(weight|bias)$/.test(t.name)) return this.config.num_attention_heads as number;
    if (/\.attn_k\.(weight|bias)$/.test(t.name)) return this.config.num_key_value_heads as number;
    return undefined;
  }

  get(name: string, shape: number[]): Float32Array {
    const t = this.tensor(name, shape);
    const data = dequantize(this.g, t);
    const heads = this.permutedHeads(t);
    return heads ? unpermuteRows(data, heads, t.shape[0]!, t.shape.length > 1 ? t.shape[1]! : 1) : data;
  }

  linear(name: string, inF: number, outF: number): Float32Array {
    return transpose2d(this.get(name, [outF, inF]), outF, inF);
  }

  linearQ4(name: string, inF: number, outF: number): Q4Weight {
    const t = this.tensor(name, [outF, inF]);
    if (t.type !== 'Q4_1') return quantizeQ4(this.linear(name, inF, outF), inF, outF, name);
    const heads = this.permutedHeads(t);
    let rowOrder: Int32Array | undefined;
    if (heads) {
      // unpermuteRows: Hugging Face row h·d + s·d/2 + i is GGUF row h·d + 2i + s.
      const d = outF / heads;
      rowOrder = new Int32Array(outF);
      for (let h = 0; h < heads; h++)
        for (let i = 0; i < d / 2; i++) for (let s = 0; s < 2; s++) rowOrder[h * d + s * (d / 2) + i] = h * d + 2 * i + s;
    }
    return q4FromGgufQ4_1(tensorBytes(this.g, t), outF, inF, halfToFloat, rowOrder);
  }
}
