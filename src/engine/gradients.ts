/**
 * The gradient rule table: one small function per ONNX op, each returning the gradients of the
 * node's inputs given the gradients of its outputs, written in standard (default-domain) ONNX ops.
 * Every rule is checked against central finite differences in gradients.test.ts.
 */
import type { Node } from '../onnx/ir.ts';
import { attrFloat, attrInt, attrInts, attrString } from '../onnx/ir.ts';
import { isFloat, onnxCode } from '../onnx/dtype.ts';
import type { GradContext, GradRule } from './grad-context.ts';
import { sumRowsPerIndex } from './deterministic-sums.ts';

const norm = (axis: number, rank: number) => (axis < 0 ? axis + rank : axis);

/** Value of a constant int input (axes, starts...), required for rules that need it at build time. */
function constInts(ctx: GradContext, node: Node, i: number, what: string): number[] | undefined {
  const name = node.inputs[i];
  if (!name) return undefined;
  const v = ctx.type(name).value;
  if (!v || v.some((d) => typeof d !== 'number'))
    throw new Error(`${node.opType} '${node.name}': ${what} must be a constant for differentiation`);
  return v as number[];
}

function reduceAxes(ctx: GradContext, node: Node): number[] {
  const x = node.inputs[0]!;
  const rank = ctx.rank(x);
  const fromInput = node.inputs.length > 1 && node.inputs[1] ? constInts(ctx, node, 1, 'axes') : undefined;
  const axes = fromInput ?? attrInts(node, 'axes') ?? [];
  if (axes.length === 0) return attrInt(node, 'noop_with_empty_axes', 0) ? [] : Array.from({ length: rank }, (_, i) => i);
  return axes.map((a) => norm(a, rank));
}

const unary =
  (f: (ctx: GradContext, node: Node, dy: string) => string): GradRule =>
  (ctx, node, [dy], needed) => [needed[0] && dy ? f(ctx, node, dy) : undefined];

/**
 * Rules of ops whose inputs broadcast to the output give output-shaped gradients; the walker sums
 * each back to its input's shape (autodiff.ts), so these read as the calculus they are.
 */
const binary =
  (
    da: (ctx: GradContext, a: string, b: string, y: string, dy: string) => string,
    db: (ctx: GradContext, a: string, b: string, y: string, dy: string) => string,
  ): GradRule =>
  (ctx, n, [dy], needed) => {
    const [a, b] = n.inputs as [string, string];
    const y = n.outputs[0]!;
    return [needed[0] ? da(ctx, a, b, y, dy!) : undefined, needed[1] ? db(ctx, a, b, y, dy!) : undefined];
  };

const add = binary(
  (_c, _a, _b, _y, dy) => dy,
  (_c, _a, _b, _y, dy) => dy,
);
const sub = binary(
  (_c, _a, _b, _y, dy) => dy,
  (ctx, _a, _b, _y, dy) => ctx.op('Neg', [dy]),
);
const mul = binary(
  (ctx, _a, b, _y, dy) => ctx.op('Mul', [dy, b]),
  (ctx, a, _b, _y, dy) => ctx.op('Mul', [dy, a]),
);
const div: GradRule = (ctx, n, [dy], needed) => {
  const [, b] = n.inputs as [string, string];
  const q = needed[0] || needed[1] ? ctx.op('Div', [dy!, b]) : undefined;
  // d(a/b)/db = -a/b² = -y/b, so dB = -(dy/b)·y.
  return [needed[0] ? q : undefined, needed[1] ? ctx.op('Neg', [ctx.op('Mul', [q!, n.outputs[0]!])]) : undefined];
};
const pow = binary(
  (ctx, a, b, _y, dy) => ctx.op('Mul', [dy, ctx.op('Mul', [b, ctx.op('Pow', [a, ctx.op('Sub', [b, ctx.scalar(1, b)])])])]),
  (ctx, a, _b, y, dy) => ctx.op('Mul', [dy, ctx.op('Mul', [y, ctx.op('Log', [a])])]),
);
const sum: GradRule = (_ctx, n, [dy], needed) => n.inputs.map((_x, i) => (needed[i] ? dy : undefined));

const matmul: GradRule = (ctx, n, [dy], needed) => {
  const [a, b] = n.inputs as [string, string];
  const y = n.outputs[0]!;
  const ra = ctx.rank(a),
    rb = ctx.rank(b);
  if (ra < 2 || rb < 2) throw new Error(`MatMul '${n.name}': rank-1 operands are not differentiable here; Unsqueeze them to rank 2`);
  // Attention multiplies by transposed values (Q·Kᵀ). Transposing such an operand again reads its source;
  // and a gradient for it is built transposed, so the Transpose gradient that follows cancels out.
  // onnxruntime would otherwise merge the transposes into one that no MatMul can absorb.
  const srcA = ctx.swappedFrom(a),
    srcB = ctx.swappedFrom(b);
  const tA = () => srcA ?? ctx.swapLast(a, ra);
  const tB = () => srcB ?? ctx.swapLast(b, rb);
  let da: string | undefined, db: string | undefined;
  if (needed[0]) {
    da = srcA && rb > 2 ? ctx.swapLast(ctx.op('MatMul', [b, ctx.swapLast(dy!, ctx.rank(y))]), ra) : ctx.op('MatMul', [dy!, tB()]);
    da = ctx.sumTo(da, y, a);
  }
  if (needed[1]) {
    if (rb === 2) {
      // A linear layer: fold all batch axes into rows so dB is one 2-D MatMul, not a batched one plus a sum.
      const k = ctx.shape(a)[ra - 1]!,
        m = ctx.shape(y)[ctx.rank(y) - 1]!;
      const flat = (x: string, last: number | string, src: string) =>
        typeof last === 'number'
          ? ctx.op('Reshape', [x, ctx.b.ints([-1, last])])
          : ctx.op('Reshape', [x, ctx.op('Concat', [ctx.b.ints([-1]), ctx.op('Shape', [src], { start: -1 })], { axis: 0 })]);
      // A narrow output (LoRA's A: [in, r]) is faster computed as (dYᵀ·A)ᵀ: CPU GEMM kernels vectorize
      // along the output's columns, and r = 8 fills half a vector.
      db =
        typeof m === 'number' && typeof k === 'number' && m < 16 && k > m
          ? ctx.op('Transpose', [ctx.op('MatMul', [ctx.op('Transpose', [flat(dy!, m, y)], { perm: [1, 0] }), flat(a, k, a)])], {
              perm: [1, 0],
            })
          : ctx.op('MatMul', [ctx.op('Transpose', [flat(a, k, a)], { perm: [1, 0] }), flat(dy!, m, y)]);
    } else {
      db = srcB && ra > 2 ? ctx.swapLast(ctx.op('MatMul', [ctx.swapLast(dy!, ctx.rank(y)), a]), rb) : ctx.op('MatMul', [tA(), dy!]);
      db = ctx.sumTo(db, y, b);
    }
  }
  return [da, db];
};

const gemm: GradRule = (ctx, n, [dy], needed) => {
  const [a, b, c] = n.inputs as [string, string, string | undefined];
  const alpha = attrFloat(n, 'alpha', 1),
    beta = attrFloat(n, 'beta', 1);
  const ta = attrInt(n, 'transA', 0),
    tb = attrInt(n, 'transB', 0);
  const g = (x: string, z: string, tA: number, tB: number) => ctx.op('Gemm', [x, z], { alpha, transA: tA, transB: tB });
  let da: string | undefined, db: string | undefined, dc: string | undefined;
  if (needed[0]) da = !ta ? g(dy!, b, 0, tb ? 0 : 1) : g(b, dy!, tb, 1);
  if (needed[1]) db = !tb ? g(a, dy!, ta ? 0 : 1, 0) : g(dy!, a, 1, ta);
  if (needed[2] && c) {
    const scaled = beta === 1 ? dy! : ctx.op('Mul', [dy!, ctx.scalar(beta, dy!)]);
    dc = ctx.sumTo(scaled, n.outputs[0]!, c);
  }
  return [da, db, dc];
};

const softmax: GradRule = (ctx, n, [dy], needed) => {
  if (!needed[0]) return [];
  const y = n.outputs[0]!;
  const axis = norm(attrInt(n, 'axis', -1), ctx.rank(y));
  const s = ctx.reduce('ReduceSum', ctx.op('Mul', [dy!, y]), [axis], true);
  return [ctx.op('Mul', [y, ctx.op('Sub', [dy!, s])])];
};

const logSoftmax: GradRule = (ctx, n, [dy], needed) => {
  if (!needed[0]) return [];
  const y = n.outputs[0]!;
  const axis = norm(attrInt(n, 'axis', -1), ctx.rank(y));
  const s = ctx.reduce('ReduceSum', dy!, [axis], true);
  return [ctx.op('Sub', [dy!, ctx.op('Mul', [ctx.op('Exp', [y]), s])])];
};

/** Recomputes mean and 1/σ with standard ops so the rule does not depend on LayerNormalization's stash type. */
const layerNorm: GradRule = (ctx, n, [dy], needed) => {
  const [x, scale, bias] = n.inputs as [string, string, string | undefined];
  const y = n.outputs[0]!;
  const rank = ctx.rank(x);
  const axis = norm(attrInt(n, 'axis', -1), rank);
  const eps = attrFloat(n, 'epsilon', 1e-5);
  const axes = Array.from({ length: rank - axis }, (_, i) => axis + i);
  const mean = ctx.reduce('ReduceMean', x, axes, true);
  const xc = ctx.op('Sub', [x, mean]);
  const v = ctx.reduce('ReduceMean', ctx.op('Mul', [xc, xc]), axes, true);
  const inv = ctx.op('Reciprocal', [ctx.op('Sqrt', [ctx.op('Add', [v, ctx.scalar(eps, x)])])]);
  const xhat = ctx.op('Mul', [xc, inv]);
  let dx: string | undefined, ds: string | undefined, db: string | undefined;
  if (needed[0]) {
    const g = ctx.op('Mul', [dy!, scale]);
    const mg = ctx.reduce('ReduceMean', g, axes, true);
    const mgx = ctx.reduce('ReduceMean', ctx.op('Mul', [g, xhat]), axes, true);
    dx = ctx.op('Mul', [inv, ctx.op('Sub', [ctx.op('Sub', [g, mg]), ctx.op('Mul', [xhat, mgx])])]);
  }
  if (needed[1]) ds = ctx.sumTo(ctx.op('Mul', [dy!, xhat]), y, scale);
  if (needed[2] && bias) db = ctx.sumTo(dy!, y, bias);
  return [dx, ds, db];
};

const reduceSum: GradRule = (ctx, n, [dy], needed) => {
  if (!needed[0]) return [];
  const x = n.inputs[0]!;
  const axes = reduceAxes(ctx, n);
  const g = attrInt(n, 'keepdims', 1) || axes.length === 0 ? dy! : ctx.op('Unsqueeze', [dy!, ctx.b.ints(axes)]);
  return [ctx.op('Expand', [g, ctx.shapeOf(x)])];
};

const reduceMean: GradRule = (ctx, n, dOut, needed) => {
  if (!needed[0]) return [];
  const [dx] = reduceSum(ctx, n, dOut, needed);
  const x = n.inputs[0]!,
    y = n.outputs[0]!;
  const code = onnxCode(ctx.dtype(x));
  const ratio = ctx.op('Div', [ctx.op('Cast', [ctx.op('Size', [y])], { to: code }), ctx.op('Cast', [ctx.op('Size', [x])], { to: code })]);
  return [ctx.op('Mul', [dx!, ratio])];
};

/** ReduceLogSumExp: dX = dY · exp(X − Y) (Y broadcast back over the reduced axes), i.e. dY · softmax(X). */
const reduceLogSumExp: GradRule = (ctx, n, [dy], needed) => {
  if (!needed[0]) return [];
  const x = n.inputs[0]!;
  const axes = reduceAxes(ctx, n);
  const keep = attrInt(n, 'keepdims', 1) || axes.length === 0;
  const y = keep ? n.outputs[0]! : ctx.op('Unsqueeze', [n.outputs[0]!, ctx.b.ints(axes)]);
  const g = keep ? dy! : ctx.op('Unsqueeze', [dy!, ctx.b.ints(axes)]);
  return [ctx.op('Mul', [g, ctx.op('Exp', [ctx.op('Sub', [x, y])])])];
};

const reshapeBack: GradRule = (ctx, n, [dy], needed) => [needed[0] ? ctx.op('Reshape', [dy!, ctx.shapeOf(n.inputs[0]!)]) : undefined];

const transpose: GradRule = (ctx, n, [dy], needed) => {
  if (!needed[0]) return [];
  const rank = ctx.rank(n.inputs[0]!);
  const perm = attrInts(n, 'perm') ?? Array.from({ length: rank }, (_, i) => rank - 1 - i);
  const inv = new Array<number>(rank);
  perm.forEach((p, i) => (inv[p] = i));
  return [ctx.op('Transpose', [dy!], { perm: inv })];
};

const expand: GradRule = (_ctx, _n, [dy], needed) => [needed[0] ? dy : undefined];

const concat: GradRule = (ctx, n, [dy], needed) => {
  const rank = ctx.rank(n.outputs[0]!);
  const axis = norm(attrInt(n, 'axis', 0), rank);
  const sizes = n.inputs.map((x) => ctx.op('Shape', [x], { start: axis, end: axis + 1 }));
  const parts = ctx.b.opMulti(
    'Split',
    [dy!, ctx.op('Concat', sizes, { axis: 0 })],
    { axis },
    { outputs: n.inputs.length, name: 'grad_Split' },
  );
  return parts.map((p, i) => (needed[i] ? p : undefined));
};

const split: GradRule = (ctx, n, dOut, needed) => {
  if (!needed[0]) return [];
  const rank = ctx.rank(n.inputs[0]!);
  const axis = norm(attrInt(n, 'axis', 0), rank);
  const parts = n.outputs.map((o, i) => dOut[i] ?? ctx.zerosLike(o));
  return [ctx.op('Concat', parts, { axis })];
};

/** Slice with constant starts/ends/axes and unit steps: the gradient pads dY with zeros back to X's shape. */
const slice: GradRule = (ctx, n, [dy], needed) => {
  if (!needed[0]) return [];
  const x = n.inputs[0]!;
  const rank = ctx.rank(x);
  const starts = constInts(ctx, n, 1, 'starts')!;
  const ends = constInts(ctx, n, 2, 'ends')!;
  const axes = (n.inputs[3] ? constInts(ctx, n, 3, 'axes') : undefined) ?? starts.map((_, i) => i);
  const steps = n.inputs[4] ? constInts(ctx, n, 4, 'steps') : undefined;
  if (steps && steps.some((s) => s !== 1))
    throw new Error(`Slice '${n.name}': only unit steps are differentiable here (got steps [${steps}])`);
  const xs = ctx.shape(x);
  const begin: (number | string)[] = new Array(rank).fill(0);
  const end: (number | string)[] = new Array(rank).fill(0);
  axes.forEach((a0, i) => {
    const a = norm(a0, rank);
    const d = xs[a]!;
    if (typeof d === 'number') {
      const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + d : v, 0), d);
      const b = clamp(starts[i]!),
        e = Math.max(clamp(ends[i]!), b);
      begin[a] = b;
      end[a] = d - e;
    } else {
      // Symbolic dim: compute the pads at run time with the same clamping rules.
      const dim = ctx.op('Shape', [x], { start: a, end: a + 1 });
      const clampRt = (v: number) => {
        if (v >= 0 && v < 2 ** 62) return ctx.op('Min', [ctx.b.ints([v]), dim]);
        if (v >= 2 ** 62) return dim;
        return ctx.op('Max', [ctx.op('Add', [dim, ctx.b.ints([v])]), ctx.b.ints([0])]);
      };
      const b = clampRt(starts[i]!);
      const e = ctx.op('Max', [clampRt(ends[i]!), b]);
      begin[a] = b;
      end[a] = ctx.op('Sub', [dim, e]);
    }
  });
  const pieces = [...begin, ...end].map((p) => (typeof p === 'number' ? ctx.b.ints([p]) : p));
  const pads = ctx.op('Concat', pieces, { axis: 0 });
  return [ctx.op('Pad', [dy!, pads], { mode: 'constant' })];
};

/**
 * Gather: gradients of the gathered rows are added back into zeros. Repeated indices (the same token
 * twice in a batch) make the summation order matter; ScatterElements with reduction 'add' runs
 * sequentially on CPU, so the result is bitwise reproducible (see gradients.test.ts).
 */
const gather: GradRule = (ctx, n, [dy], needed) => {
  if (!needed[0]) return [];
  const [data, indices] = n.inputs as [string, string];
  const ds = ctx.shape(data);
  const r = ds.length;
  const axis = norm(attrInt(n, 'axis', 0), r);
  const ir = ctx.rank(indices);
  // dY has axes [pre(axis), idx(ir), post]; bring idx first, flatten it into N rows.
  const perm = [
    ...Array.from({ length: ir }, (_, i) => axis + i),
    ...Array.from({ length: axis }, (_, i) => i),
    ...Array.from({ length: r - axis - 1 }, (_, i) => axis + ir + i),
  ];
  const moved = ir === 0 ? ctx.op('Unsqueeze', [dy!, ctx.b.ints([0])]) : ctx.op('Transpose', [dy!], { perm });
  const pre = axis > 0 ? [ctx.op('Shape', [data], { start: 0, end: axis })] : [];
  const post = axis < r - 1 ? [ctx.op('Shape', [data], { start: axis + 1 })] : [];
  const rows = ctx.op('Reshape', [moved, ctx.op('Concat', [ctx.b.ints([-1]), ...pre, ...post], { axis: 0 })]);
  // Negative indices count from the end, like Gather.
  const dimA = ctx.op('Shape', [data], { start: axis, end: axis + 1 });
  const idx64 = ctx.op('Cast', [ctx.op('Reshape', [indices, ctx.b.ints([-1])])], { to: onnxCode('int64') });
  const fixed = ctx.op('Where', [ctx.op('Less', [idx64, ctx.b.ints([0])]), ctx.op('Add', [idx64, dimA]), idx64]);
  // ScatterElements needs indices shaped like the updates: broadcast each row index across the row.
  const idxFull = ctx.op('Expand', [
    ctx.op('Reshape', [fixed, ctx.op('Concat', [ctx.b.ints([-1]), ctx.b.ints(new Array(r - 1).fill(1))], { axis: 0 })]),
    ctx.shapeOf(rows),
  ]);
  const zerosShape = ctx.op('Concat', [dimA, ...pre, ...post], { axis: 0 });
  const zeros = ctx.op('Expand', [ctx.scalar(0, data), zerosShape]);
  const rowDims = [...ds.slice(0, axis), ...ds.slice(axis + 1)];
  let acc: string;
  if (ctx.deterministicSums && rowDims.every((d): d is number => typeof d === 'number')) {
    // Repeated indices summed by a one-hot MatMul, then written once per distinct row (no races).
    const { sums, at } = sumRowsPerIndex(ctx.b, fixed, rows, rowDims, ctx.dtype(data), { matmul: true, name: 'grad_rows_unique' });
    acc = ctx.op('ScatterND', [zeros, at, sums]);
  } else acc = ctx.op('ScatterElements', [zeros, idxFull, rows], { axis: 0, reduction: 'add' });
  // acc is [dimA, pre..., post...]; move dimA back to `axis`.
  if (axis === 0) {
    ctx.rowGradients.set(acc, { indices: fixed, values: rows });
    return [acc];
  }
  const back = [...Array.from({ length: axis }, (_, i) => i + 1), 0, ...Array.from({ length: r - axis - 1 }, (_, i) => axis + 1 + i)];
  return [ctx.op('Transpose', [acc], { perm: back })];
};

/** GatherElements: add dY back at the gathered positions (ScatterElements add is sequential on CPU, so deterministic). */
const gatherElements: GradRule = (ctx, n, [dy], needed) => {
  if (!needed[0]) return [];
  const [data, indices] = n.inputs as [string, string];
  const axis = norm(attrInt(n, 'axis', 0), ctx.rank(data));
  const zeros = ctx.op('Expand', [ctx.scalar(0, data), ctx.shapeOf(data)]);
  return [ctx.op('ScatterElements', [zeros, indices, dy!], { axis, reduction: 'add' })];
};

const where: GradRule = (ctx, n, [dy], needed) => {
  const c = n.inputs[0]!;
  const zero = ctx.scalar(0, n.outputs[0]!);
  return [undefined, needed[1] ? ctx.op('Where', [c, dy!, zero]) : undefined, needed[2] ? ctx.op('Where', [c, zero, dy!]) : undefined];
};

const cast: GradRule = (ctx, n, [dy], needed) => {
  const from = ctx.dtype(n.inputs[0]!);
  return [needed[0] && isFloat(from) ? ctx.op('Cast', [dy!], { to: onnxCode(from) }) : undefined];
};

const dropout: GradRule = (ctx, n, [dy], needed) => {
  if (!needed[0]) return [];
  const training = n.inputs[2];
  if (!training) return [dy!]; // inference mode: identity
  // The backward pass must reuse the forward's mask: expose it as the node's optional second output.
  if (!n.outputs[1]) {
    n.outputs[1] = ctx.b.fresh(`${n.name}_mask`);
    ctx.types.set(n.outputs[1], { dtype: 'bool' });
  }
  const mask = n.outputs[1];
  const ratio = n.inputs[1] ? n.inputs[1] : ctx.scalar(0.5, dy!);
  const keep = ctx.op('Sub', [ctx.scalar(1, dy!), ratio]);
  return [ctx.op('Div', [ctx.op('Mul', [dy!, ctx.op('Cast', [mask], { to: onnxCode(ctx.dtype(dy!)) })]), keep])];
};

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

const gelu = unary((ctx, n, dy) => {
  const x = n.inputs[0]!;
  const s = (v: number) => ctx.scalar(v, x);
  const M = (p: string, q: string) => ctx.op('Mul', [p, q]);
  const A = (p: string, q: string) => ctx.op('Add', [p, q]);
  if (attrString(n, 'approximate', 'none') === 'tanh') {
    const x2 = M(x, x);
    const inner = M(s(SQRT_2_OVER_PI), A(x, M(s(0.044715), M(x2, x))));
    const t = ctx.op('Tanh', [inner]);
    const dinner = M(s(SQRT_2_OVER_PI), A(s(1), M(s(3 * 0.044715), x2)));
    const d = A(M(s(0.5), A(s(1), t)), M(M(s(0.5), x), M(ctx.op('Sub', [s(1), M(t, t)]), dinner)));
    return M(dy, d);
  }
  // d/dx x·Φ(x) = Φ(x) + x·φ(x)
  const cdf = M(s(0.5), A(s(1), ctx.op('Erf', [M(x, s(Math.SQRT1_2))])));
  const pdf = M(s(1 / Math.sqrt(2 * Math.PI)), ctx.op('Exp', [M(M(x, x), s(-0.5))]));
  return M(dy, A(cdf, M(x, pdf)));
});

/** Ops whose inputs broadcast to the output: their rules' gradients are summed back to each input's shape by the walker. */
export const BROADCASTING: ReadonlySet<string> = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Sum', 'Where', 'Expand']);

/** The rule table. An op missing here cannot be differentiated (autodiff says which and where). */
export const GRADIENTS: Record<string, GradRule> = {
  Add: add,
  Sub: sub,
  Mul: mul,
  Div: div,
  Pow: pow,
  MatMul: matmul,
  Gemm: gemm,
  Sum: sum,
  Neg: unary((ctx, _n, dy) => ctx.op('Neg', [dy])),
  Abs: unary((ctx, n, dy) => ctx.op('Mul', [dy, ctx.op('Sign', [n.inputs[0]!])])),
  Sin: unary((ctx, n, dy) => ctx.op('Mul', [dy, ctx.op('Cos', [n.inputs[0]!])])),
  Cos: unary((ctx, n, dy) => ctx.op('Neg', [ctx.op('Mul', [dy, ctx.op('Sin', [n.inputs[0]!])])])),
  Identity: unary((_c, _n, dy) => dy),
  Sqrt: unary((ctx, n, dy) => ctx.op('Div', [ctx.op('Mul', [dy, ctx.scalar(0.5, dy)]), n.outputs[0]!])),
  Exp: unary((ctx, n, dy) => ctx.op('Mul', [dy, n.outputs[0]!])),
  Log: unary((ctx, n, dy) => ctx.op('Div', [dy, n.inputs[0]!])),
  Reciprocal: unary((ctx, n, dy) => ctx.op('Neg', [ctx.op('Mul', [dy, ctx.op('Mul', [n.outputs[0]!, n.outputs[0]!])])])),
  Tanh: unary((ctx, n, dy) => {
    const y = n.outputs[0]!;
    return ctx.op('Mul', [dy, ctx.op('Sub', [ctx.scalar(1, y), ctx.op('Mul', [y, y])])]);
  }),
  Sigmoid: unary((ctx, n, dy) => {
    const y = n.outputs[0]!;
    return ctx.op('Mul', [dy, ctx.op('Mul', [y, ctx.op('Sub', [ctx.scalar(1, y), y])])]);
  }),
  Relu: unary((ctx, n, dy) => {
    const x = n.inputs[0]!;
    return ctx.op('Where', [ctx.op('Greater', [x, ctx.scalar(0, x)]), dy, ctx.scalar(0, x)]);
  }),
  Erf: unary((ctx, n, dy) => {
    const x = n.inputs[0]!;
    const e = ctx.op('Exp', [ctx.op('Neg', [ctx.op('Mul', [x, x])])]);
    return ctx.op('Mul', [dy, ctx.op('Mul', [e, ctx.scalar(2 / Math.sqrt(Math.PI), x)])]);
  }),
  Gelu: gelu,
  Softmax: softmax,
  LogSoftmax: logSoftmax,
  LayerNormalization: layerNorm,
  ReduceSum: reduceSum,
  ReduceMean: reduceMean,
  ReduceLogSumExp: reduceLogSumExp,
  Reshape: reshapeBack,
  Flatten: reshapeBack,
  Unsqueeze: reshapeBack,
  Squeeze: reshapeBack,
  Transpose: transpose,
  Expand: expand,
  Concat: concat,
  Split: split,
  Slice: slice,
  Gather: gather,
  GatherElements: gatherElements,
  Where: where,
  Cast: cast,
  Dropout: dropout,
};
