/**
 * Helpers the gradient rules share: typed constants, runtime shapes, opset-aware reductions and
 * "sum a broadcast gradient back to the input's shape".
 */
import type { GraphBuilder } from '../onnx/builder.ts';
import { dtypeOfCode, type DType } from '../onnx/dtype.ts';
import type { Dim, Node } from '../onnx/ir.ts';
import type { TypeInfo, TypeMap } from '../onnx/shapes.ts';
import { sumLeadingByMatMul } from './deterministic-sums.ts';

/**
 * A gradient that is zero outside some rows: d[indices[i]] += values[i] (values [N, ...rest]). The
 * Gather rule records it beside the dense gradient it builds, so an optimizer can update the touched
 * rows without materializing a table-sized gradient.
 */
export interface RowGradient {
  /** int64 [N], already non-negative. */
  indices: string;
  values: string;
}

export class GradContext {
  /** Dense gradient value → the same gradient as rows (see RowGradient). */
  readonly rowGradients = new Map<string, RowGradient>();

  constructor(
    readonly b: GraphBuilder,
    readonly types: TypeMap,
    /** Sums that must repeat bit for bit on every device (see CompileOptions.deterministicSums). */
    readonly deterministicSums = false,
  ) {}

  get opset(): number {
    return this.b.opsets[''] ?? 17;
  }

  type(name: string): TypeInfo {
    return this.types.get(name) ?? {};
  }

  private dtypeOrUndefined(name: string): DType | undefined {
    return this.types.get(name)?.dtype ?? this.b.graph.initializers.get(name)?.dtype;
  }

  dtype(name: string): DType {
    const d = this.dtypeOrUndefined(name);
    if (!d) throw new Error(`dtype of '${name}' is unknown`);
    return d;
  }

  shape(name: string): Dim[] {
    const s = this.type(name).shape;
    if (!s) throw new Error(`rank of '${name}' is unknown; give the graph inputs shapes (symbolic dims are fine)`);
    return s;
  }

  rank(name: string): number {
    return this.shape(name).length;
  }

  /** A scalar constant with the element type of `like`. */
  scalar(v: number, like: string): string {
    return this.b.scalar(v, this.dtype(like));
  }

  op(opType: string, inputs: string[], attrs: Record<string, number | number[] | string> = {}): string {
    const out = this.b.op(opType, inputs, attrs, { name: `grad_${opType}` });
    // Rules ask for dtypes of the values they create (e.g. to type a constant); record the easy cases.
    const dtype =
      opType === 'Shape' || opType === 'Size'
        ? 'int64'
        : opType === 'Cast'
          ? dtypeOfCode(attrs['to'] as number)
          : ['Greater', 'Less', 'Equal', 'Not'].includes(opType)
            ? 'bool'
            : this.dtypeOrUndefined(inputs[opType === 'Where' ? 1 : 0]!);
    if (dtype) this.types.set(out, { dtype });
    return out;
  }

  shapeOf(name: string): string {
    return this.op('Shape', [name]);
  }

  /** ReduceX over `axes`; ReduceSum took axes as an input from opset 13, the others from 18. */
  reduce(opType: string, x: string, axes: number[], keepdims: boolean): string {
    const asInput = opType === 'ReduceSum' ? this.opset >= 13 : this.opset >= 18;
    if (asInput) return this.op(opType, [x, this.b.ints(axes)], { keepdims: keepdims ? 1 : 0 });
    return this.op(opType, [x], { axes, keepdims: keepdims ? 1 : 0 });
  }

  /**
   * Sums a gradient that has the (broadcast) shape of `from` back to the shape of `to`:
   * leading extra axes are summed away, axes where `to` has size 1 are summed with keepdims.
   */
  sumTo(grad: string, from: string, to: string): string {
    const fs = this.shape(from),
      ts = this.shape(to);
    const lead = fs.length - ts.length;
    let g = grad;
    const keep: number[] = [];
    for (let i = 0; i < ts.length; i++) {
      const fd = fs[lead + i]!,
        td = ts[i]!;
      // A symbolic dim equal to 1 at run time is indistinguishable here; broadcasting against it
      // is assumed not to happen (ONNX exporters give such dims a literal 1).
      if (td === 1 && fd !== 1) keep.push(lead + i);
    }
    const lead_axes = Array.from({ length: lead }, (_, i) => i);
    if (keep.length) g = this.reduce('ReduceSum', g, keep, true);
    if (lead_axes.length) {
      if (!this.deterministicSums || !ts.every((d): d is number => typeof d === 'number'))
        return this.reduce('ReduceSum', g, lead_axes, false);
      const dtype = this.dtype(to);
      const sum = sumLeadingByMatMul(this.b, g, ts, dtype);
      this.types.set(sum, { dtype, shape: ts });
      return sum;
    }
    return g;
  }

  /** Zeros shaped like `like`. */
  zerosLike(like: string): string {
    const dt = this.dtype(like);
    const zero = this.b.scalar(0, dt);
    return this.op('Expand', [zero, this.shapeOf(like)]);
  }

  /** The input of `x`'s producer when that is a Transpose swapping exactly the last two axes. */
  swappedFrom(x: string): string | undefined {
    if (!this.producerOf) {
      this.producerOf = new Map();
      for (const node of this.b.graph.nodes) for (const o of node.outputs) if (o) this.producerOf.set(o, node);
    }
    const p = this.producerOf.get(x);
    if (!p || p.opType !== 'Transpose' || p.domain !== '') return undefined;
    const perm = p.attrs['perm']?.kind === 'ints' ? p.attrs['perm'].value : undefined;
    const r = perm?.length ?? 0;
    if (!perm || r < 2 || !perm.every((v, i) => (i < r - 2 ? v === i : v === (i === r - 1 ? r - 2 : r - 1)))) return undefined;
    return p.inputs[0];
  }

  private producerOf?: Map<string, Node>;

  /** Swaps the last two axes. */
  swapLast(x: string, rank: number): string {
    const perm = Array.from({ length: rank }, (_, i) => i);
    perm[rank - 1] = rank - 2;
    perm[rank - 2] = rank - 1;
    return this.op('Transpose', [x], { perm });
  }
}

/** Rule signature: gradients of the node's inputs from the gradients of its outputs (undefined = none). */
export type GradRule = (ctx: GradContext, node: Node, dOut: (string | undefined)[], needed: boolean[]) => (string | undefined)[];
