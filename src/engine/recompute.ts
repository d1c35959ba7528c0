/**
 * Activation recomputation ("gradient checkpointing") for training graphs. The forward model names
 * checkpoint values (a decoder's residual stream between layers; metadata `tempered.checkpoints`); the
 * forward nodes between one checkpoint and the next form a segment. Without this, every value of every
 * segment that the backward pass reads lives from its forward use until the backward reaches that layer:
 * the activations of the whole model at once. With it, the backward pass gets its own copy of each
 * segment's forward nodes, placed just before its first reader, and only the checkpoints live through the
 * step: the activations of one segment at a time, for one more forward pass of compute.
 *
 * The copies compute the same ops on the same values in the same order, so gradients are unchanged.
 * Two things keep onnxruntime from undoing the rewrite: its common-subexpression elimination would merge a
 * copy with the original (same op, same inputs), and its scheduler may run a node as soon as its inputs
 * exist, i.e. during the forward pass. Each copy therefore reads its checkpoint through a barrier,
 * Where(IsNaN(one element of the latest backward value), c, c), which equals c bit for bit whatever the
 * condition, is a different value to onnxruntime, and cannot run before the backward pass gets there.
 */
import { GraphBuilder } from '../onnx/builder.ts';
import { isFloat } from '../onnx/dtype.ts';
import type { Model, Node } from '../onnx/ir.ts';
import { inferShapes } from '../onnx/shapes.ts';
import { topoSort } from '../onnx/graph.ts';

/** Metadata key of the forward model listing its checkpoint values, comma-separated, in forward order. */
export const CHECKPOINTS_METADATA = 'tempered.checkpoints';

export function checkpointsOf(model: Model): string[] {
  return (model.metadata[CHECKPOINTS_METADATA] ?? '').split(',').filter(Boolean);
}

/**
 * Rewrites `model` (mutated) so that nodes from index `firstBackward` on (what autodiff appended) read
 * recomputed copies of the forward values between `checkpoints` instead of the originals. The segment after
 * the last checkpoint (e.g. the final norm, the head and the loss) is not recomputed: the backward pass
 * starts there. Returns the number of segments recomputed.
 */
export function recomputeSegments(model: Model, firstBackward: number, checkpoints: string[]): number {
  if (checkpoints.length < 2) return 0;
  const graph = model.graph;
  const forward = new Set(graph.nodes.slice(0, firstBackward));
  const ckIndex = new Map(checkpoints.map((c, i) => [c, i]));
  // Segment of each forward value: the index of the latest checkpoint it depends on (−1: none).
  const seg = new Map<string, number>();
  const order = topoSort(graph).filter((n) => forward.has(n));
  for (const n of order) {
    const s = Math.max(-1, ...n.inputs.map((i) => (i ? (seg.get(i) ?? -1) : -1)));
    for (const o of n.outputs) if (o) seg.set(o, ckIndex.get(o) ?? s);
  }
  const last = checkpoints.length - 1;
  const recomputable = (v: string) => {
    const s = seg.get(v);
    return s !== undefined && s >= 0 && s < last && !ckIndex.has(v) ? s : undefined;
  };
  const producer = new Map<string, Node>();
  for (const n of order) for (const o of n.outputs) if (o) producer.set(o, n);
  const position = new Map(order.map((n, i) => [n, i]));

  // Per segment, the forward values the backward pass reads.
  const backward = graph.nodes.slice(firstBackward);
  const readBySeg = new Map<number, Set<string>>();
  for (const n of backward)
    for (const i of n.inputs) {
      const s = i ? recomputable(i) : undefined;
      if (s !== undefined) (readBySeg.get(s) ?? readBySeg.set(s, new Set()).get(s)!).add(i);
    }

  const types = inferShapes(graph);
  const b = GraphBuilder.extend(model);
  const renamed = new Map<string, string>();
  const out: Node[] = graph.nodes.slice(0, firstBackward);
  let lastFloat: string | undefined;
  let count = 0;
  for (const node of backward) {
    for (const i of node.inputs) {
      const s = i ? recomputable(i) : undefined;
      if (s === undefined || renamed.has(i)) continue;
      // The segment's nodes the backward pass needs, in forward order.
      const need = new Set<Node>();
      const stack = [...readBySeg.get(s)!];
      while (stack.length) {
        const p = producer.get(stack.pop()!)!;
        if (need.has(p)) continue;
        need.add(p);
        for (const x of p.inputs) if (x && recomputable(x) === s) stack.push(x);
      }
      const before = graph.nodes.length;
      const barriers = new Map<string, string>();
      const barrier = (c: string) => {
        if (!lastFloat) return c;
        let v = barriers.get(c);
        if (!v) {
          const one = b.op('Slice', [b.op('Reshape', [lastFloat, b.ints([-1])]), b.ints([0]), b.ints([1])]);
          v = b.op('Where', [b.op('IsNaN', [one]), c, c], {}, { name: 'recompute_barrier' });
          barriers.set(c, v);
        }
        return v;
      };
      for (const p of [...need].sort((x, y) => position.get(x)! - position.get(y)!)) {
        const inputs = p.inputs.map((x) => (!x ? x : recomputable(x) === s ? renamed.get(x)! : ckIndex.get(x) === s ? barrier(x) : x));
        const outs = p.outputs.map((o) => (o ? b.fresh(`${o}_recomputed`) : o));
        graph.nodes.push({ ...p, name: b.fresh(`${p.name}_recomputed`), inputs, outputs: outs, attrs: { ...p.attrs } });
        p.outputs.forEach((o, k) => o && renamed.set(o, outs[k]!));
      }
      out.push(...graph.nodes.splice(before));
      count++;
    }
    node.inputs = node.inputs.map((i) => (i && renamed.has(i) ? renamed.get(i)! : i));
    out.push(node);
    const o = node.outputs[0];
    const t = o ? types.get(o) : undefined;
    if (o && t?.dtype && isFloat(t.dtype) && (t.shape === undefined || t.shape.length > 0)) lastFloat = o;
  }
  graph.nodes = out;
  return count;
}
