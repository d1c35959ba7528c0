/**
 * Losses appended to a forward graph as standard ONNX ops (so autodiff differentiates them like any
 * other part of the graph).
 */
import { InputError } from '../errors.ts';
import type { GraphBuilder } from '../onnx/builder.ts';
import type { TypeMap } from '../onnx/shapes.ts';
import { onnxCode } from '../onnx/dtype.ts';

export type LossSpec =
  | {
      kind: 'cross_entropy';
      /** Forward output holding logits [..., C] (default: the first graph output). */
      logits?: string;
      /** Name of the int64 labels input added to the graph (default 'labels'). */
      labels?: string;
      /** Label value whose rows do not count (default -100, as in PyTorch/HF). */
      ignoreIndex?: number;
      /** 0..1: mixes the one-hot target with the uniform distribution. */
      labelSmoothing?: number;
      /** Next-token prediction: logits[:, :-1] predict labels[:, 1:] (labels = input ids). */
      shift?: boolean;
    }
  | {
      kind: 'mse';
      predictions?: string;
      /** Name of the float targets input (default 'targets'), shaped like the predictions. */
      targets?: string;
    };

export interface AppendedLoss {
  loss: string;
  /** Graph inputs the loss added (labels or targets). */
  inputs: string[];
}

/** A graph input of that name when the caller declared one already, else a new input. */
function existingOr(b: GraphBuilder, name: string, create: () => string): string {
  return b.graph.inputs.some((v) => v.name === name) ? name : create();
}

export function appendLoss(b: GraphBuilder, types: TypeMap, spec: LossSpec, defaultOutput: string): AppendedLoss {
  if (spec.kind === 'mse') {
    const pred = spec.predictions ?? defaultOutput;
    const t = types.get(pred);
    if (!t?.shape || !t.dtype)
      throw new InputError(`mse: predictions '${pred}' are not a value of the model with a known shape`, {
        where: 'train.loss.predictions',
      });
    const targets = existingOr(b, spec.targets ?? 'targets', () => b.input(spec.targets ?? 'targets', t.dtype!, t.shape!));
    const d = b.op('Sub', [pred, targets]);
    return { loss: b.op('ReduceMean', [b.op('Mul', [d, d])], { keepdims: 0 }, { name: 'loss_mse' }), inputs: [targets] };
  }
  const logits = spec.logits ?? defaultOutput;
  const t = types.get(logits);
  if (!t?.shape || !t.dtype)
    throw new InputError(`cross_entropy: logits '${logits}' are not a value of the model with a known shape`, {
      where: 'train.loss.logits',
    });
  const rank = t.shape.length;
  const classes = t.shape[rank - 1]!;
  if (typeof classes !== 'number')
    throw new InputError(`cross_entropy: the class/vocab axis of '${logits}' must have a fixed size`, { where: 'train.loss.logits' });
  const dtype = t.dtype;
  const labels = existingOr(b, spec.labels ?? 'labels', () => b.input(spec.labels ?? 'labels', 'int64', t.shape!.slice(0, -1)));
  const lg = logits;
  let lb = labels;
  if (spec.shift) {
    if (rank !== 3)
      throw new InputError(`cross_entropy shift needs logits [batch, seq, vocab], got rank ${rank}`, { where: 'train.loss.shift' });
    // Shift the labels, not the logits: a slice of the logits would copy the largest tensor of a causal LM
    // ([batch, seq, vocab]: 400 MB at batch 8 × 256 tokens × 49k vocabulary) and its gradient (a Pad) once more.
    // The last position gets ignoreIndex, so it counts neither in the sum nor in the number of scored tokens.
    const next = b.op('Slice', [labels, b.ints([1]), b.ints([2 ** 62]), b.ints([1])]);
    const rows = b.op('Concat', [b.op('Shape', [labels], { start: 0, end: 1 }), b.ints([1])], { axis: 0 });
    const none = b.op('Expand', [b.constant([spec.ignoreIndex ?? -100], [1, 1], 'int64'), rows]);
    lb = b.op('Concat', [next, none], { axis: 1 });
  }
  const flatLogits = b.op('Reshape', [lg, b.ints([-1, classes])]);
  const flatLabels = b.op('Reshape', [lb, b.ints([-1])]);
  const ignore = b.constant([spec.ignoreIndex ?? -100], [], 'int64');
  const valid = b.op('Not', [b.op('Equal', [flatLabels, ignore])]);
  const safe = b.op('Where', [valid, flatLabels, b.constant([0], [], 'int64')]);
  const eps = spec.labelSmoothing ?? 0;
  const label = b.op('Unsqueeze', [safe, b.ints([1])]);
  let perRow: string;
  if (eps === 0) {
    // −log p(label) = −GatherElements(LogSoftmax(x), label), and autodiff gives this pattern a closed-form gradient
    // with one logits-sized tensor (composites.ts crossEntropyRows). LogSoftmax rather than logsumexp − x[label]:
    // onnxruntime's ReduceLogSumExp takes a scalar exp per element (275 ms over SmolLM2's [2048, 49152] logits, against
    // about 45 ms for LogSoftmax), and the log-probabilities take the place of the logits, which nothing else reads
    // afterwards. A one-hot target would be [tokens, vocab] too: the label's entry comes by GatherElements.
    const logp = b.op('LogSoftmax', [flatLogits], { axis: -1 });
    const picked = b.op('GatherElements', [logp, label], { axis: 1 });
    perRow = b.op('Squeeze', [b.op('Neg', [picked]), b.ints([1])]);
  } else {
    const logp = b.op('LogSoftmax', [flatLogits], { axis: -1 });
    const picked = b.op('GatherElements', [logp, label], { axis: 1 });
    perRow = b.op('Neg', [b.op('Squeeze', [picked, b.ints([1])])]);
    // Smoothed target (1−ε)·onehot + ε/C gives (1−ε)·nll + ε·mean_c(−log p_c).
    // ReduceMean takes axes as an input from opset 18 on, as an attribute before.
    const mean =
      (b.opsets[''] ?? 17) >= 18
        ? b.op('ReduceMean', [logp, b.ints([1])], { keepdims: 0 })
        : b.op('ReduceMean', [logp], { axes: [1], keepdims: 0 });
    const uniform = b.op('Neg', [mean]);
    perRow = b.op('Add', [b.op('Mul', [perRow, b.scalar(1 - eps, dtype)]), b.op('Mul', [uniform, b.scalar(eps, dtype)])]);
  }
  const mask = b.op('Cast', [valid], { to: onnxCode(dtype) });
  const total = b.op('ReduceSum', [b.op('Mul', [perRow, mask])], { keepdims: 0 });
  // All rows ignored → loss 0 rather than 0/0.
  const count = b.op('Max', [b.op('ReduceSum', [mask], { keepdims: 0 }), b.scalar(1, dtype)]);
  return { loss: b.op('Div', [total, count], {}, { name: 'loss_cross_entropy' }), inputs: [labels] };
}
