/**
 * The model's own dropout. A forward graph states where it drops out with standard ONNX Dropout nodes
 * in inference mode (identities: PyTorch's exports and src/models write them so), with the rate as the
 * node's constant `ratio`. Graphs that train turn each into `Mul(x, mask)`, the mask a graph input
 * `dropout_mask:<node name>` holding 0 or 1/(1-p), drawn on the host from the run's checkpointed RNG
 * (dropout-masks.ts): the same seed gives the same masks, so a resumed run stays bitwise that of an
 * uninterrupted one, and the gradient is the Mul rule's. Graphs that do not train (evaluation, export,
 * a frozen backbone) lose the nodes altogether.
 */
import { InputError } from '../errors.ts';
import { GraphBuilder } from '../onnx/builder.ts';
import type { Dim, Model, Node } from '../onnx/ir.ts';
import { inferShapes } from '../onnx/shapes.ts';
import { dropoutThreshold, type DropoutMask } from './dropout-masks.ts';

/** Prefix of the per-node mask inputs: `dropout_mask:<node name>`. */
export const DROPOUT_MASK_PREFIX = 'dropout_mask:';

/** ONNX Dropout's ratio when the node has no ratio input. */
const DEFAULT_RATIO = 0.5;

/** The rate of a Dropout node: its constant ratio input (0.5 when absent, as ONNX defines it). */
export function dropoutRate(model: Model, node: Node): number {
  const ratio = node.inputs[1];
  if (!ratio) return DEFAULT_RATIO;
  const t = model.graph.initializers.get(ratio);
  if (!t || t.data.length !== 1)
    throw new InputError(`Dropout node '${node.name}': its ratio '${ratio}' is not a constant scalar`, {
      where: 'model',
      hint: 'export the model with a constant dropout ratio, or train with dropout off',
    });
  const p = Number(t.data[0]);
  if (!(p >= 0 && p < 1)) throw new InputError(`Dropout node '${node.name}': ratio ${p} is not in [0, 1)`, { where: 'model' });
  return p;
}

/** The Dropout nodes of a graph (default domain). */
function dropoutNodes(model: Model) {
  return model.graph.nodes.filter((n) => n.opType === 'Dropout' && (n.domain ?? '') === '');
}

function checkMaskUnused(model: Model, node: Node): void {
  const mask = node.outputs[1];
  if (!mask) return;
  if (model.graph.nodes.some((n) => n.inputs.includes(mask)) || model.graph.outputs.some((o) => o.name === mask)) {
    throw new InputError(`Dropout node '${node.name}': its mask output '${mask}' is read by the graph`, {
      where: 'model',
      hint: 'tempered draws dropout masks itself; the model must not read them',
    });
  }
}

/** Removes every Dropout node (in place): its readers read its input. Returns how many there were. */
export function stripDropout(model: Model): number {
  return removeDropouts(model, dropoutNodes(model));
}

function removeDropouts(model: Model, nodes: Node[]): number {
  if (nodes.length === 0) return 0;
  const outputs = new Set(model.graph.outputs.map((o) => o.name));
  const rename = new Map<string, string>();
  const gone = new Set<Node>();
  for (const n of nodes) {
    checkMaskUnused(model, n);
    if (outputs.has(n.outputs[0]!)) {
      // A graph output keeps its name: the node becomes an Identity.
      Object.assign(n, { opType: 'Identity', inputs: [n.inputs[0]!], outputs: [n.outputs[0]!], attrs: {} });
      continue;
    }
    rename.set(n.outputs[0]!, n.inputs[0]!);
    gone.add(n);
  }
  const resolve = (v: string) => {
    while (rename.has(v)) v = rename.get(v)!;
    return v;
  };
  model.graph.nodes = model.graph.nodes.filter((n) => !gone.has(n));
  for (const n of model.graph.nodes) n.inputs = n.inputs.map((i) => (i ? resolve(i) : i));
  dropUnused(
    model,
    nodes.map((n) => n.inputs[1]),
  );
  return nodes.length;
}

/** Deletes the ratio constants no node reads any more (onnxruntime warns about each). */
function dropUnused(model: Model, names: (string | undefined)[]): void {
  const read = new Set(model.graph.nodes.flatMap((n) => n.inputs));
  for (const name of names)
    if (name && !read.has(name) && !model.graph.outputs.some((o) => o.name === name)) model.graph.initializers.delete(name);
}

/**
 * Turns every Dropout node of rate > 0 into `Mul(x, mask)` with a mask input (in place); nodes of rate 0
 * are removed. Returns the masks in graph order. Mask shapes must follow from the model inputs' dims,
 * which the trainer knows at each step.
 */
export function trainDropout(model: Model): DropoutMask[] {
  const nodes = dropoutNodes(model);
  if (nodes.length === 0) return [];
  const types = inferShapes(model.graph);
  const inputDims = new Set(model.graph.inputs.flatMap((v) => (v.shape ?? []).filter((d): d is string => typeof d === 'string')));
  const b = GraphBuilder.extend(model);
  const masks: DropoutMask[] = [];
  const zero: typeof nodes = [];
  for (const n of nodes) {
    checkMaskUnused(model, n);
    const p = dropoutRate(model, n);
    const { threshold, rate } = dropoutThreshold(p);
    if (threshold === 0) {
      zero.push(n);
      continue;
    }
    const x = n.inputs[0]!;
    const t = types.get(x);
    if (!t?.shape || !t.dtype || !t.shape.every((d: Dim) => typeof d === 'number' || inputDims.has(d))) {
      throw new InputError(
        `dropout '${n.name}': the shape of its input '${x}' ([${t?.shape ?? '?'}]) cannot be derived from the model inputs' dims`,
        { where: 'train.dropout', hint: 'train this model with dropout: 0' },
      );
    }
    if (t.dtype !== 'float32' && t.dtype !== 'float64')
      throw new InputError(`dropout '${n.name}': input '${x}' is ${t.dtype}; masks are float32 or float64`, {
        where: 'train.dropout',
        hint: 'train this model with dropout: 0',
      });
    const input = b.input(`${DROPOUT_MASK_PREFIX}${n.name || n.outputs[0]}`, t.dtype, t.shape);
    // Inverted dropout: kept elements are scaled by 1/(1-p), at the rate the 16-bit threshold really gives.
    const keep = t.dtype === 'float32' ? Math.fround(1 / (1 - rate)) : 1 / (1 - rate);
    masks.push({ input, shape: [...t.shape], threshold, dtype: t.dtype, keep });
    const ratio = n.inputs[1];
    Object.assign(n, { opType: 'Mul', inputs: [x, input], outputs: [n.outputs[0]!], attrs: {} });
    dropUnused(model, [ratio]);
  }
  removeDropouts(model, zero); // rate 0: identities
  return masks;
}
