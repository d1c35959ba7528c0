/**
 * compileTrainStep: from a forward model and a loss, builds the graphs a training run needs:
 * a fused train step (forward + loss + backward + clipping + optimizer), a gradient-only graph and an
 * apply graph (for gradient accumulation), and an eval graph (loss + logits). Frozen weights stay
 * initializers; trainable weights and optimizer state are inputs and outputs.
 */
import { InputError } from '../errors.ts';
import { GraphBuilder } from '../onnx/builder.ts';
import type { DType, TypedArray } from '../onnx/dtype.ts';
import { isFloat } from '../onnx/dtype.ts';
import type { Model, ValueInfo } from '../onnx/ir.ts';
import { cloneModel } from '../onnx/ir.ts';
import { inferShapes } from '../onnx/shapes.ts';
import { removeDeadNodes, topoSort } from '../onnx/graph.ts';
import { sinkRowGathers } from '../onnx/sink-gathers.ts';
import { appendGradients } from './autodiff.ts';
import { appendLoss, type LossSpec } from './losses.ts';
import { appendOptimizer, type OptimizerSpec, type StateSlot } from './optimizers.ts';
import { applyLora, type LoraModule, type LoraSpec } from './lora.ts';
import { rematerializeQ4ForBackward } from './quant4.ts';
import { checkpointsOf, recomputeSegments } from './recompute.ts';
import type { DropoutMask } from './dropout-masks.ts';
import { stripDropout, trainDropout } from './dropout.ts';
import { matchesAny } from './patterns.ts';

export type TrainableSpec =
  | { kind: 'full' }
  /** Train weights matching `include` (default: all) and not matching `exclude` (globs or /regex/). */
  | { kind: 'patterns'; include?: string[]; exclude?: string[] }
  /** LoRA adapters; `alsoTrain` adds ordinary weights (e.g. a classifier head) to the trainable set. */
  | ({ kind: 'lora'; alsoTrain?: string[] } & LoraSpec)
  /** Frozen backbone up to value `features`; only the head after it trains (features are computed once). */
  | { kind: 'head'; features: string; include?: string[] };

export interface CompileOptions {
  loss: LossSpec;
  trainable: TrainableSpec;
  optimizer: OptimizerSpec;
  clipNorm?: number;
  /** Compute only the rows the outputs read (default true; see src/onnx/sink-gathers.ts). */
  pruneRows?: boolean;
  /**
   * AdamW updates an embedding table (a weight read by one Gather) from its touched rows, never building
   * a table-sized gradient (default true; the values are the dense update's; see optimizers.ts).
   */
  rowUpdates?: boolean;
  /**
   * The forward model's Dropout nodes drop out in the graphs that train (default true, as a PyTorch
   * model in train mode), with host-drawn masks (see dropout.ts); false: they are identities there too.
   * Evaluation and export graphs never drop out.
   */
  modelDropout?: boolean;
  /**
   * Recompute the activations between the forward model's checkpoints (a decoder's residual stream) in the
   * backward pass instead of keeping them through the step: far less memory for one more forward pass of
   * compute, with the same gradients (see recompute.ts). The model must name its checkpoints (LLaMA does).
   */
  recompute?: boolean;
  /**
   * Sums over a batch (bias, LayerNorm and RMSNorm gradients, an embedding's repeated rows, the gradient
   * norm) as matrix products, so that CUDA repeats them bit for bit (default false: on the CPU the
   * reductions are reproducible already and cheaper; see deterministic-sums.ts). Trainers set it for
   * graphs that run on CUDA.
   */
  deterministicSums?: boolean;
}

export interface ParamInfo {
  name: string;
  dtype: DType;
  dims: number[];
  /** Initial value (the forward model's initializer, or the LoRA init). */
  init: TypedArray;
}

export interface TrainProgram {
  options: CompileOptions;
  /** The forward model as given (export writes trained weights back into it). */
  source: Model;
  /** Forward model (after LoRA rewrite / head split) with every weight as an initializer. */
  forward: Model;
  /** Head mode: the frozen backbone whose output `features` feeds the head. */
  backbone?: { model: Model; features: string };
  /** forward + loss + backward + optimizer: inputs data, params, state, lr, step. */
  step: Model;
  /** forward + loss + backward: outputs `loss` and `<param>::grad`. */
  grad: Model;
  /** optimizer only: inputs params, `<param>::grad`, state, lr, step. */
  apply: Model;
  /** forward + loss with params as inputs: outputs `loss` and the forward's outputs. */
  eval: Model;
  params: ParamInfo[];
  state: StateSlot[];
  /** Inputs fed per batch (model inputs plus labels/targets, and dropout masks), excluding params, state, lr, step. */
  dataInputs: ValueInfo[];
  /** Dropout masks the step and grad graphs read, LoRA's then the model's (fed each micro-batch by a DropoutMasker). */
  dropoutMasks: DropoutMask[];
  /** Name of the forward output the loss reads (logits / predictions). */
  prediction: string;
  lora?: { spec: LoraSpec; modules: LoraModule[] };
}

export const LR_INPUT = 'lr';
export const STEP_INPUT = 'step';
export const LOSS_OUTPUT = 'loss';
export const GRAD_NORM_OUTPUT = 'grad_norm';
export const gradName = (param: string) => `${param}::grad`;

/** Builder-made constants (shape vectors, scalars) are not weights. */
const CONSTANT_NAME = /^(const|scalar|ints)(_\d+)?$/;

export function compileTrainStep(forward: Model, opts: CompileOptions): TrainProgram {
  // Export writes trained weights into the source: an inference graph, so without dropout.
  const source = cloneModel(forward);
  stripDropout(source);
  let fwd = cloneModel(forward);
  let backbone: TrainProgram['backbone'];
  if (opts.trainable.kind === 'head') {
    const split = splitAtFeatures(fwd, opts.trainable.features);
    // The frozen backbone runs once per row, for features: no dropout there.
    stripDropout(split.backbone);
    backbone = { model: split.backbone, features: opts.trainable.features };
    fwd = split.head;
  }
  let lora: TrainProgram['lora'];
  let dropoutMasks: DropoutMask[] = [];
  let trainFwd: Model | undefined;
  if (opts.trainable.kind === 'lora') {
    const { kind: _k, alsoTrain: _a, ...spec } = opts.trainable;
    // Two rewrites from the same seed give identical adapters: with dropout for training, without for eval/export.
    const evalFwd = cloneModel(fwd);
    lora = { spec, modules: applyLora(evalFwd, { ...spec, dropout: 0 }) };
    if ((spec.dropout ?? 0) > 0) {
      trainFwd = cloneModel(fwd);
      dropoutMasks = applyLora(trainFwd, spec).flatMap((m) => (m.dropoutMask ? [m.dropoutMask] : []));
    }
    fwd = evalFwd;
  }
  trainFwd = cloneModel(trainFwd ?? fwd);
  stripDropout(fwd);
  if (opts.modelDropout === false) stripDropout(trainFwd);
  else dropoutMasks = [...dropoutMasks, ...trainDropout(trainFwd)];
  const prediction = fwd.graph.outputs[0]?.name;
  if (!prediction) throw new Error('the forward model has no outputs');
  const lossDefault = opts.loss.kind === 'mse' ? (opts.loss.predictions ?? prediction) : (opts.loss.logits ?? prediction);

  // Which weights train.
  const reachesLoss = dependencies(fwd, lossDefault);
  const candidates = [...fwd.graph.initializers.values()].filter(
    (t) => isFloat(t.dtype) && !CONSTANT_NAME.test(t.name) && reachesLoss.has(t.name),
  );
  const tr = opts.trainable;
  if (tr.kind !== 'lora' && [...fwd.graph.initializers.keys()].some((k) => k.endsWith('.q4')))
    throw new InputError('a model with 4-bit frozen weights trains with LoRA only (QLoRA)', {
      where: 'train.method',
      hint: 'use method qlora with lora settings, or build the model without quantize for full fine-tuning',
    });
  const chosen = candidates.filter((t) => {
    switch (tr.kind) {
      case 'full':
        return true;
      case 'patterns':
        return (!tr.include || matchesAny(t.name, tr.include)) && !(tr.exclude && matchesAny(t.name, tr.exclude));
      case 'lora':
        return lora!.modules.some((m) => m.a === t.name || m.b === t.name) || (!!tr.alsoTrain && matchesAny(t.name, tr.alsoTrain));
      case 'head':
        return !tr.include || matchesAny(t.name, tr.include);
    }
  });
  if (chosen.length === 0)
    throw new InputError(
      `no trainable weights selected by ${JSON.stringify(tr)}; weights include '${candidates
        .slice(0, 3)
        .map((t) => t.name)
        .join("', '")}'`,
      { where: 'train.trainable', hint: 'adjust include/exclude patterns' },
    );
  const checkpoints = checkpointsOf(fwd);
  if (opts.recompute && checkpoints.length < 2)
    throw new InputError('activation recomputation needs a model that names its checkpoints (LLaMA models do)', {
      where: 'train.recompute',
      hint: 'turn recompute off for this model',
    });
  // Before the 4-bit rematerialization, so the recomputed forward nodes get their own dequantized weights too.
  const recompute = (m: Model, forwardNodes: number) => {
    if (opts.recompute) recomputeSegments(m, forwardNodes, checkpoints);
  };
  const params: ParamInfo[] = chosen.map((t) => ({ name: t.name, dtype: t.dtype, dims: [...t.dims], init: t.data }));

  // Base graphs: params become inputs, the loss is appended.
  const withLoss = (m: Model, keepOutputs: boolean) => {
    const base = cloneModel(m);
    for (const p of params) {
      base.graph.initializers.delete(p.name);
      base.graph.inputs.push({ name: p.name, dtype: p.dtype, shape: [...p.dims] });
    }
    const outputs = base.graph.outputs.map((o) => o.name);
    const lb = GraphBuilder.extend(base);
    const { loss } = appendLoss(lb, inferShapes(base.graph), opts.loss, lossDefault);
    lb.op('Identity', [loss], {}, { outputs: [LOSS_OUTPUT] });
    base.graph.outputs = [];
    // Rows no output reads (all positions but CLS in the last layer of a pooled classifier) are never computed.
    if (opts.pruneRows !== false) sinkRowGathers(base.graph, [LOSS_OUTPUT, ...(keepOutputs ? outputs : [])]);
    return { base, outputs };
  };
  const lossOut = LOSS_OUTPUT;
  const { base: evalBase, outputs: forwardOutputs } = withLoss(fwd, true);
  const { base } = withLoss(trainFwd, false);
  const paramNames = new Set(params.map((p) => p.name));
  const dataInputs = base.graph.inputs.filter((v) => !paramNames.has(v.name));

  // eval: loss + forward outputs.
  const evalModel = evalBase;
  {
    const b = GraphBuilder.extend(evalModel);
    b.output(lossOut);
    for (const o of forwardOutputs) b.output(o);
    finish(b);
  }

  // grad: loss + gradients.
  const gradModel = cloneModel(base);
  {
    const forwardNodes = gradModel.graph.nodes.length;
    const { grads } = appendGradients(
      gradModel,
      LOSS_OUTPUT,
      params.map((p) => p.name),
      { deterministicSums: opts.deterministicSums },
    );
    recompute(gradModel, forwardNodes);
    rematerializeQ4ForBackward(gradModel, forwardNodes);
    const b = GraphBuilder.extend(gradModel);
    b.output(lossOut);
    for (const p of params) b.output(b.op('Identity', [grads.get(p.name)!], {}, { outputs: [gradName(p.name)] }));
    finish(b);
  }

  // step: loss + gradients + optimizer, fused.
  const stepModel = cloneModel(base);
  let state: StateSlot[];
  {
    const forwardNodes = stepModel.graph.nodes.length;
    const { grads, rowGradients } = appendGradients(
      stepModel,
      LOSS_OUTPUT,
      params.map((p) => p.name),
      { deterministicSums: opts.deterministicSums },
    );
    recompute(stepModel, forwardNodes);
    rematerializeQ4ForBackward(stepModel, forwardNodes);
    const b = GraphBuilder.extend(stepModel);
    const lr = b.input(LR_INPUT, 'float32', []);
    const step = b.input(STEP_INPUT, 'float32', []);
    b.output(lossOut);
    const opt = appendOptimizer(
      b,
      params.map((p) => ({
        name: p.name,
        grad: grads.get(p.name)!,
        rows: opts.rowUpdates === false ? undefined : rowGradients.get(p.name),
        dtype: p.dtype,
        dims: p.dims,
      })),
      opts.optimizer,
      { lr, step, clipNorm: opts.clipNorm, deterministicSums: opts.deterministicSums },
    );
    b.output(opt.gradNorm, GRAD_NORM_OUTPUT);
    state = opt.state;
    finish(b);
  }

  // apply: optimizer over externally accumulated gradients.
  const ab = new GraphBuilder({ opsets: fwd.opsets, name: 'apply' });
  for (const p of params) ab.input(p.name, p.dtype, p.dims);
  const gradInputs = params.map((p) => ab.input(gradName(p.name), p.dtype, p.dims));
  const lr = ab.input(LR_INPUT, 'float32', []);
  const step = ab.input(STEP_INPUT, 'float32', []);
  const aopt = appendOptimizer(
    ab,
    params.map((p, i) => ({ name: p.name, grad: gradInputs[i]!, dtype: p.dtype, dims: p.dims })),
    opts.optimizer,
    { lr, step, clipNorm: opts.clipNorm, deterministicSums: opts.deterministicSums },
  );
  ab.output(aopt.gradNorm, GRAD_NORM_OUTPUT);
  const applyModel = ab.build();

  return {
    options: opts,
    source,
    forward: fwd,
    backbone,
    step: stepModel,
    grad: gradModel,
    apply: applyModel,
    eval: evalModel,
    params,
    state,
    dataInputs,
    dropoutMasks,
    prediction: lossDefault,
    lora,
  };
}

function finish(b: GraphBuilder): Model {
  const m = b.build();
  removeDeadNodes(m.graph);
  return m;
}

/** Values `target` depends on (inputs, initializers and intermediates). */
function dependencies(model: Model, target: string): Set<string> {
  const need = new Set([target]);
  for (const node of [...topoSort(model.graph)].reverse()) {
    if (node.outputs.some((o) => need.has(o))) for (const i of node.inputs) if (i) need.add(i);
  }
  return need;
}

/** Splits the forward graph at value `features`: backbone computes it, head takes it as an input. */
export function splitAtFeatures(model: Model, features: string): { backbone: Model; head: Model } {
  const types = inferShapes(model.graph);
  const t = types.get(features);
  if (!t?.dtype || !t.shape)
    throw new InputError(`head features '${features}' is not a value of the forward graph (or its shape is unknown)`, {
      where: 'train.trainable.features',
      hint: 'name a value computed by the model, e.g. its pooled output',
    });
  const backbone = cloneModel(model);
  backbone.graph.outputs = [{ name: features, dtype: t.dtype, shape: t.shape }];
  removeDeadNodes(backbone.graph);
  const head = cloneModel(model);
  head.graph.nodes = head.graph.nodes.filter((n) => !n.outputs.includes(features));
  head.graph.inputs.push({ name: features, dtype: t.dtype, shape: t.shape });
  removeDeadNodes(head.graph);
  const used = new Set(head.graph.nodes.flatMap((n) => n.inputs));
  for (const o of head.graph.outputs) used.add(o.name);
  head.graph.inputs = head.graph.inputs.filter((v) => used.has(v.name));
  return { backbone, head };
}
