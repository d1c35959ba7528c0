/**
 * Reverse-mode autodiff over an ONNX graph: appends the gradient of a scalar loss with respect to chosen
 * values (weights or inputs) to the graph, using the per-op rules in gradients.ts.
 */
import { GraphBuilder } from '../onnx/builder.ts';
import type { Model, Node } from '../onnx/ir.ts';
import { isFloat } from '../onnx/dtype.ts';
import { inferShapes, type TypeMap } from '../onnx/shapes.ts';
import { topoSort } from '../onnx/graph.ts';
import { BROADCASTING, GRADIENTS } from './gradients.ts';
import { GradContext, type RowGradient } from './grad-context.ts';
import { findComposites } from './composites.ts';

export interface GradientResult {
  /** wrt name → name of its gradient value in the (mutated) model. */
  grads: Map<string, string>;
  /** wrt name → its gradient as rows, when a single Gather (axis 0) is its only use (an embedding table). */
  rowGradients: Map<string, RowGradient>;
  types: TypeMap;
}

export class UnsupportedOpError extends Error {
  override name = 'UnsupportedOpError';
}

/**
 * Adds the nodes computing d`loss`/d`wrt[i]` to `model` (mutated in place) and returns their names.
 * `loss` must be a scalar float value. Values that do not influence the loss get zero gradients.
 */
export function appendGradients(
  model: Model,
  loss: string,
  wrt: string[],
  opts: { seed?: string; deterministicSums?: boolean } = {},
): GradientResult {
  const graph = model.graph;
  const types = inferShapes(graph);
  const lossType = types.get(loss);
  if (!lossType?.dtype || !isFloat(lossType.dtype)) throw new Error(`loss '${loss}' must be a float value`);
  if (lossType.shape && lossType.shape.length !== 0 && !lossType.shape.every((d) => d === 1))
    throw new Error(`loss '${loss}' must be a scalar, got shape [${lossType.shape}]`);
  for (const w of wrt) if (!types.has(w)) throw new Error(`cannot differentiate with respect to '${w}': no such value in the graph`);

  const order = topoSort(graph);
  const isDiff = (v: string) => {
    const d = types.get(v)?.dtype;
    return !!d && isFloat(d);
  };
  // Values that depend on a wrt value through float tensors.
  const fromWrt = new Set(wrt);
  for (const node of order) {
    if (node.inputs.some((i) => fromWrt.has(i))) for (const o of node.outputs) if (o && isDiff(o)) fromWrt.add(o);
  }
  // Values the loss depends on.
  const toLoss = new Set([loss]);
  for (const node of [...order].reverse()) {
    if (node.outputs.some((o) => toLoss.has(o))) for (const i of node.inputs) if (i) toLoss.add(i);
  }

  // Patterns with a closed-form gradient (GELU) replace their interior nodes' rules.
  const composites = new Map(findComposites(graph).map((c) => [c.root, c]));
  const interior = new Set([...composites.values()].flatMap((c) => c.interior));

  const b = GraphBuilder.extend(model);
  const ctx = new GradContext(b, types, opts.deterministicSums);
  const contributions = new Map<string, string[]>();
  const addGrad = (v: string, g: string) => {
    const list = contributions.get(v);
    if (list) list.push(g);
    else contributions.set(v, [g]);
  };
  /**
   * Sums all contributions (fan-out) in a fixed order, so accumulation is deterministic. A chain of
   * binary Adds, not one Sum: onnxruntime's CPU Sum is several times slower than Add on large tensors.
   */
  const total = (v: string): string | undefined => {
    const list = contributions.get(v);
    if (!list || list.length === 0) return undefined;
    if (list.length === 1) return list[0];
    let s = list[0]!;
    for (const g of list.slice(1)) s = b.op('Add', [s, g], {}, { name: 'grad_accumulate' });
    contributions.set(v, [s]);
    return s;
  };

  addGrad(loss, opts.seed ?? ctx.op('Expand', [ctx.scalar(1, loss), ctx.shapeOf(loss)]));

  for (const node of [...order].reverse()) {
    if (!node.outputs.some((o) => toLoss.has(o) && fromWrt.has(o))) continue;
    if (interior.has(node)) continue;
    const composite = composites.get(node);
    if (composite) {
      const dy = total(node.outputs[0]!);
      if (dy && fromWrt.has(composite.input) && isDiff(composite.input)) addGrad(composite.input, composite.grad(ctx, dy));
      continue;
    }
    const needed = node.inputs.map((i) => !!i && fromWrt.has(i) && isDiff(i));
    if (!needed.some(Boolean)) continue;
    const dOut = node.outputs.map((o) => (o && toLoss.has(o) ? total(o) : undefined));
    if (dOut.every((d) => d === undefined)) continue;
    const rule = GRADIENTS[node.opType];
    if (!rule || node.domain !== '') throw unsupported(node);
    let dIn: (string | undefined)[];
    try {
      dIn = rule(ctx, node, dOut, needed);
    } catch (e) {
      throw new Error(`gradient of ${node.opType} node '${node.name}' failed: ${(e as Error).message}`, { cause: e });
    }
    const broadcast = BROADCASTING.has(node.opType);
    node.inputs.forEach((i, k) => {
      const g = dIn[k];
      if (g && needed[k]) addGrad(i, broadcast ? ctx.sumTo(g, node.outputs[0]!, i) : g);
    });
  }

  const grads = new Map<string, string>();
  const rowGradients = new Map<string, RowGradient>();
  for (const w of wrt) {
    const g = total(w) ?? ctx.zerosLike(w);
    grads.set(w, g);
    const rows = ctx.rowGradients.get(g);
    if (rows) rowGradients.set(w, rows);
  }
  return { grads, rowGradients, types };
}

function unsupported(node: Node): UnsupportedOpError {
  const ops = Object.keys(GRADIENTS).sort().join(', ');
  const op = node.domain ? `${node.domain}.${node.opType}` : node.opType;
  return new UnsupportedOpError(
    `no gradient rule for op ${op} (node '${node.name}'); differentiable ops: ${ops}. Rewrite the graph with these ops or freeze the weights before it.`,
  );
}

export const SUPPORTED_GRADIENT_OPS: readonly string[] = Object.keys(GRADIENTS).sort();
