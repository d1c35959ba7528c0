/**
 * Optimizer updates written as graph nodes: the train step graph takes weights, gradients' sources and
 * optimizer state as inputs and returns the updated weights and state. Formulas follow PyTorch
 * (torch.optim.AdamW and SGD) so results match a reference implementation.
 */
import type { GraphBuilder } from '../onnx/builder.ts';
import { onnxCode, type DType } from '../onnx/dtype.ts';
import { matchesAny } from './patterns.ts';
import type { RowGradient } from './grad-context.ts';
import { sumRowsPerIndex, sumSquaresByMatMul } from './deterministic-sums.ts';

export type OptimizerSpec =
  | { kind: 'adamw'; beta1?: number; beta2?: number; eps?: number; weightDecay?: number; noDecay?: string[] }
  | { kind: 'sgd'; momentum?: number; weightDecay?: number; noDecay?: string[] };

/** HF Trainer's convention: biases and normalization weights get no weight decay. */
export const DEFAULT_NO_DECAY = [
  '*bias',
  '*LayerNorm.weight',
  '*layernorm*.weight',
  '*layer_norm*.weight',
  '*ln_*.weight',
  '*ln_f.weight',
  '*norm.weight',
  '*norm?.weight',
];

export interface ParamSlot {
  name: string;
  grad: string;
  dtype: DType;
  dims: number[];
  /** The same gradient as touched rows (an embedding table's); AdamW then never builds `grad`. */
  rows?: RowGradient;
}

/** One tensor of optimizer state: fed as `input`, returned as `output`, zeros at step 1. */
export interface StateSlot {
  input: string;
  output: string;
  param: string;
  dtype: DType;
  dims: number[];
}

export interface AppendedOptimizer {
  /** param name → graph output holding its updated value. */
  updated: Map<string, string>;
  state: StateSlot[];
  /** Global L2 norm of the gradients before clipping. */
  gradNorm: string;
}

/**
 * Appends global-norm clipping and the optimizer update. `lr` and `step` are float32 scalar values
 * (graph inputs fed by the trainer); `step` is the 1-based optimizer step used for bias correction.
 */
export function appendOptimizer(
  b: GraphBuilder,
  params: ParamSlot[],
  spec: OptimizerSpec,
  opts: { lr: string; step: string; clipNorm?: number; deterministicSums?: boolean },
): AppendedOptimizer {
  if (params.length === 0) throw new Error('nothing to train: no trainable weights were selected');
  const dtype = params[0]!.dtype;
  if (dtype !== 'float32' && dtype !== 'float64')
    throw new Error(`optimizer: weights of type ${dtype} are not supported (float32 or float64)`);
  const code = onnxCode(dtype);
  const cast = (v: string) => (dtype === 'float32' ? v : b.op('Cast', [v], { to: code }));
  const lr = cast(opts.lr);
  const step = cast(opts.step);
  const s = (v: number) => b.scalar(v, dtype);

  // Embedding tables (rows given) are updated row-wise by AdamW: their gradient is summed per distinct
  // row into a [U, …] tensor instead of a table-sized one. SGD reads the dense gradient.
  const rowwise = new Map<string, { sums: string; at: string }>();
  if (spec.kind === 'adamw')
    for (const p of params)
      if (p.rows)
        rowwise.set(
          p.name,
          sumRowsPerIndex(b, p.rows.indices, p.rows.values, p.dims.slice(1), p.dtype, { matmul: opts.deterministicSums ?? false }),
        );
  // Global norm over all gradients, like torch.nn.utils.clip_grad_norm_.
  const squares = params.map((p) => {
    const g = rowwise.get(p.name)?.sums ?? p.grad;
    return opts.deterministicSums ? sumSquaresByMatMul(b, g) : b.op('ReduceSumSquare', [g], { keepdims: 0 });
  });
  const gradNorm = b.op('Sqrt', [squares.length === 1 ? squares[0]! : b.op('Sum', squares)], {}, { name: 'global_grad_norm' });
  const clip =
    opts.clipNorm === undefined ? undefined : b.op('Min', [b.op('Div', [s(opts.clipNorm), b.op('Add', [gradNorm, s(1e-6)])]), s(1)]);

  const noDecay = spec.noDecay ?? DEFAULT_NO_DECAY;
  const updated = new Map<string, string>();
  const state: StateSlot[] = [];
  const slot = (p: ParamSlot, key: string): StateSlot => {
    const input = b.input(`${p.name}::${key}`, p.dtype, p.dims);
    const st: StateSlot = { input, output: `${p.name}::${key}::new`, param: p.name, dtype: p.dtype, dims: p.dims };
    state.push(st);
    return st;
  };

  if (spec.kind === 'adamw') {
    const b1 = spec.beta1 ?? 0.9,
      b2 = spec.beta2 ?? 0.999,
      eps = spec.eps ?? 1e-8,
      wd = spec.weightDecay ?? 0.01;
    const bc1 = b.op('Sub', [s(1), b.op('Pow', [s(b1), step])]);
    const sqrtBc2 = b.op('Sqrt', [b.op('Sub', [s(1), b.op('Pow', [s(b2), step])])]);
    // The update is memory-bound (tens of MB per tensor, once per pass), so every scalar factor is
    // folded into one scalar before it meets a tensor: clipping scales g by c, so m takes (1−β1)·c·g
    // and v (1−β2)·c²·g²; and m̂/(√v̂ + ε) = (√bc2/bc1)·m/(√v + ε·√bc2). Three passes fewer per tensor
    // than the textbook form, the same values up to rounding.
    const mScale = clip ? b.op('Mul', [s(1 - b1), clip]) : s(1 - b1);
    const vScale = clip ? b.op('Mul', [s(1 - b2), b.op('Mul', [clip, clip])]) : s(1 - b2);
    const epsHat = b.op('Mul', [s(eps), sqrtBc2]);
    const stepSize = b.op('Div', [b.op('Mul', [lr, sqrtBc2]), bc1]);
    params.forEach((p) => {
      const ms = slot(p, 'm'),
        vs = slot(p, 'v');
      // Rows without gradient get β·m + 0 either way, so the row-wise form gives the dense values.
      const rows = rowwise.get(p.name);
      const g = rows?.sums ?? p.grad;
      const mTerm = b.op('Mul', [g, mScale]),
        vTerm = b.op('Mul', [b.op('Mul', [g, g]), vScale]);
      const m = rows
        ? b.op('ScatterND', [b.op('Mul', [ms.input, s(b1)]), rows.at, mTerm], { reduction: 'add' }, { outputs: [ms.output] })
        : b.op('Add', [b.op('Mul', [ms.input, s(b1)]), mTerm], {}, { outputs: [ms.output] });
      const v = rows
        ? b.op('ScatterND', [b.op('Mul', [vs.input, s(b2)]), rows.at, vTerm], { reduction: 'add' }, { outputs: [vs.output] })
        : b.op('Add', [b.op('Mul', [vs.input, s(b2)]), vTerm], {}, { outputs: [vs.output] });
      // PyTorch: p ← p·(1 − lr·wd), then p ← p − lr·m̂/(√v̂ + ε).
      const decayed = wd && !matchesAny(p.name, noDecay) ? b.op('Mul', [p.name, b.op('Sub', [s(1), b.op('Mul', [lr, s(wd)])])]) : p.name;
      const denom = b.op('Add', [b.op('Sqrt', [v]), epsHat]);
      const out = b.op('Sub', [decayed, b.op('Mul', [stepSize, b.op('Div', [m, denom])])], {}, { outputs: [`${p.name}::new`] });
      updated.set(p.name, out);
    });
  } else {
    const mu = spec.momentum ?? 0,
      wd = spec.weightDecay ?? 0;
    params.forEach((p) => {
      let g = clip ? b.op('Mul', [p.grad, clip]) : p.grad;
      // SGD's weight decay is L2 added to the gradient (torch.optim.SGD).
      if (wd && !matchesAny(p.name, noDecay)) g = b.op('Add', [g, b.op('Mul', [p.name, s(wd)])]);
      if (mu) {
        const bs = slot(p, 'momentum');
        g = b.op('Add', [b.op('Mul', [bs.input, s(mu)]), g], {}, { outputs: [bs.output] });
      }
      updated.set(p.name, b.op('Sub', [p.name, b.op('Mul', [g, lr])], {}, { outputs: [`${p.name}::new`] }));
    });
  }
  for (const st of state) b.output(st.output);
  for (const out of updated.values()) b.output(out);
  return { updated, state, gradNorm };
}
