/**
 * A small BERT-style encoder classifier (embeddings, multi-head attention, layer norm, GELU MLP, CLS
 * pooling, classifier) built with GraphBuilder and Hugging Face parameter names. The engine's tests and
 * benchmark use it; real architectures live in src/models.
 */
import { GraphBuilder } from '../onnx/builder.ts';
import type { DType } from '../onnx/dtype.ts';
import type { Model } from '../onnx/ir.ts';
import { Rng } from './prng.ts';

export interface TinyEncoderConfig {
  vocab: number;
  hidden: number;
  heads: number;
  intermediate: number;
  layers: number;
  seq: number;
  classes: number;
  seed: number;
  dtype?: 'float32' | 'float64';
  /** 'erf' (BERT's exact GELU, float-only on onnxruntime CPU) or 'tanh' (works in float64). */
  gelu?: 'erf' | 'tanh';
  /** Dropout rate where BERT drops out (embeddings, attention probabilities, attention and MLP outputs); default none. */
  dropout?: number;
}

export function buildTinyEncoder(c: TinyEncoderConfig): Model {
  const dtype: DType = c.dtype ?? 'float32';
  const rng = new Rng(c.seed);
  const g = new GraphBuilder({ opset: 17 });
  const arr = (n: number, f: () => number) =>
    dtype === 'float64' ? Float64Array.from({ length: n }, f) : Float32Array.from({ length: n }, f);
  const normal = (dims: number[], std = 0.02) =>
    arr(
      dims.reduce((a, b) => a * b, 1),
      () => rng.normal() * std,
    );
  const param = (name: string, dims: number[], init: 'normal' | 'zeros' | 'ones' = 'normal') =>
    g.initializer(
      name,
      init === 'normal'
        ? normal(dims, 0.2)
        : arr(
            dims.reduce((a, b) => a * b, 1),
            () => (init === 'ones' ? 1 : 0),
          ),
      dims,
    );
  const s = (v: number) => g.scalar(v, dtype);
  const linear = (x: string, prefix: string, inF: number, outF: number) =>
    g.op('Add', [g.op('MatMul', [x, param(`${prefix}.weight`, [inF, outF])]), param(`${prefix}.bias`, [outF], 'zeros')]);
  const dropout = (x: string, name: string) => (c.dropout ? g.op('Dropout', [x, s(c.dropout)], {}, { name }) : x);
  const layerNorm = (x: string, prefix: string) =>
    g.op('LayerNormalization', [x, param(`${prefix}.weight`, [c.hidden], 'ones'), param(`${prefix}.bias`, [c.hidden], 'zeros')], {
      axis: -1,
      epsilon: 1e-12,
    });
  const gelu = (x: string) => {
    if (c.gelu === 'tanh') {
      const inner = g.op('Mul', [
        s(Math.sqrt(2 / Math.PI)),
        g.op('Add', [x, g.op('Mul', [s(0.044715), g.op('Mul', [x, g.op('Mul', [x, x])])])]),
      ]);
      return g.op('Mul', [g.op('Mul', [x, s(0.5)]), g.op('Add', [s(1), g.op('Tanh', [inner])])]);
    }
    return g.op('Mul', [g.op('Mul', [x, s(0.5)]), g.op('Add', [s(1), g.op('Erf', [g.op('Div', [x, s(Math.SQRT2)])])])]);
  };

  const ids = g.input('input_ids', 'int64', ['batch', c.seq]);
  const mask = g.input('attention_mask', 'int64', ['batch', c.seq]);
  const words = g.op('Gather', [param('embeddings.word_embeddings.weight', [c.vocab, c.hidden]), ids]);
  const pos = g.op('Gather', [
    param('embeddings.position_embeddings.weight', [c.seq, c.hidden]),
    g.constant(
      Array.from({ length: c.seq }, (_, i) => i),
      [c.seq],
      'int64',
    ),
  ]);
  let h = dropout(layerNorm(g.op('Add', [words, pos]), 'embeddings.LayerNorm'), 'embeddings.dropout');
  // Padding positions get a large negative score before softmax.
  const maskF = g.op('Cast', [g.op('Unsqueeze', [mask, g.ints([1, 2])])], { to: dtype === 'float64' ? 11 : 1 });
  const bias = g.op('Mul', [g.op('Sub', [s(1), maskF]), s(-10000)]);
  const d = c.hidden / c.heads;
  const heads = (x: string) => g.op('Transpose', [g.op('Reshape', [x, g.ints([0, 0, c.heads, d])])], { perm: [0, 2, 1, 3] });
  for (let l = 0; l < c.layers; l++) {
    const p = `encoder.layer.${l}`;
    const q = heads(linear(h, `${p}.attention.self.query`, c.hidden, c.hidden));
    const k = heads(linear(h, `${p}.attention.self.key`, c.hidden, c.hidden));
    const v = heads(linear(h, `${p}.attention.self.value`, c.hidden, c.hidden));
    const scores = g.op('Add', [
      g.op('Mul', [g.op('MatMul', [q, g.op('Transpose', [k], { perm: [0, 1, 3, 2] })]), s(1 / Math.sqrt(d))]),
      bias,
    ]);
    const probs = dropout(g.op('Softmax', [scores], { axis: -1 }), `${p}.attention.self.dropout`);
    const ctx = g.op('Reshape', [g.op('Transpose', [g.op('MatMul', [probs, v])], { perm: [0, 2, 1, 3] }), g.ints([0, 0, c.hidden])]);
    h = layerNorm(
      g.op('Add', [dropout(linear(ctx, `${p}.attention.output.dense`, c.hidden, c.hidden), `${p}.attention.output.dropout`), h]),
      `${p}.attention.output.LayerNorm`,
    );
    const inter = gelu(linear(h, `${p}.intermediate.dense`, c.hidden, c.intermediate));
    h = layerNorm(
      g.op('Add', [dropout(linear(inter, `${p}.output.dense`, c.intermediate, c.hidden), `${p}.output.dropout`), h]),
      `${p}.output.LayerNorm`,
    );
  }
  const cls = g.op('Gather', [h, g.constant([0], [], 'int64')], { axis: 1 }, { name: 'pooler_cls' });
  // Named so head-only training can split the graph at 'pooled'.
  const pooled = g.op('Tanh', [linear(cls, 'pooler.dense', c.hidden, c.hidden)], {}, { outputs: ['pooled'] });
  g.output(linear(dropout(pooled, 'dropout'), 'classifier', c.hidden, c.classes), 'logits');
  return g.build();
}
