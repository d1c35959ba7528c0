/**
 * Shape and dtype inference over the op set tempered builds and differentiates.
 * Symbolic dims ('batch') flow through; a dim that cannot be derived gets a fresh symbol ('?3') so
 * ranks stay known, which is what the gradient rules need to find broadcast axes.
 */
import type { DType } from './dtype.ts';
import { dtypeFromCode } from './dtype.ts';
import type { Dim, Graph, Node, Tensor } from './ir.ts';
import { attrInt, attrInts, numel } from './ir.ts';
import { topoSort } from './graph.ts';

export interface TypeInfo {
  dtype?: DType;
  shape?: Dim[];
  /** Known value of a small integer tensor (shape vectors, axes); entries may be symbolic dims. */
  value?: Dim[];
}

export type TypeMap = Map<string, TypeInfo>;

/** Smallest int tensor whose value is worth tracking (shape vectors, axes lists). */
const MAX_TRACKED = 64;

function tensorValue(t: Tensor): Dim[] | undefined {
  if (t.data.length > MAX_TRACKED) return undefined;
  if (t.dtype === 'int64') return Array.from(t.data as BigInt64Array, Number);
  if (t.dtype === 'int32') return Array.from(t.data as Int32Array);
  return undefined;
}

export function broadcastShapes(a: Dim[], b: Dim[], fresh: () => string): Dim[] {
  const r = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < r; i++) {
    const x = a[a.length - r + i] ?? 1;
    const y = b[b.length - r + i] ?? 1;
    if (x === 1) out.push(y);
    else if (y === 1) out.push(x);
    else if (x === y) out.push(x);
    else if (typeof x === 'number' && typeof y === 'number') throw new Error(`cannot broadcast shapes [${a}] and [${b}]`);
    else if (typeof x === 'number') out.push(x);
    else if (typeof y === 'number') out.push(y);
    else out.push(x.startsWith('?') ? (y.startsWith('?') ? fresh() : y) : x);
  }
  return out;
}

function normAxis(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

/** Infers dtype/shape of every value in the graph (inputs, initializers and node outputs). */
export function inferShapes(graph: Graph): TypeMap {
  const types: TypeMap = new Map();
  let freshCount = 0;
  const fresh = () => `?${freshCount++}`;
  for (const v of graph.inputs) types.set(v.name, { dtype: v.dtype, shape: v.shape && [...v.shape] });
  for (const t of graph.initializers.values()) types.set(t.name, { dtype: t.dtype, shape: [...t.dims], value: tensorValue(t) });
  for (const node of topoSort(graph)) {
    let outs: TypeInfo[];
    try {
      outs = inferNode(node, (n) => (n === '' ? undefined : types.get(n)), fresh);
    } catch (e) {
      throw new Error(`shape inference failed at node '${node.name}' (${node.opType}): ${(e as Error).message}`);
    }
    node.outputs.forEach((o, i) => {
      if (o !== '') types.set(o, outs[i] ?? {});
    });
  }
  return types;
}

/** One op's output types from its input types; `fresh` names a dim that cannot be derived. */
type ShapeRule = (node: Node, inp: (TypeInfo | undefined)[], fresh: () => string) => TypeInfo[];

/** What the rules read: the first input and its shape, and helpers over all inputs. */
function view(inp: (TypeInfo | undefined)[], fresh: () => string) {
  const x = inp[0];
  const s = x?.shape;
  return {
    x,
    s,
    /** The first input's type, unchanged. */
    same: (): TypeInfo[] => [{ dtype: x?.dtype, shape: s && [...s] }],
    /** `dtype` with the inputs' shapes broadcast together (unknown when any is). */
    bcast: (dtype: DType | undefined, infos: (TypeInfo | undefined)[]): TypeInfo[] => {
      let shape: Dim[] | undefined = [];
      for (const i of infos) shape = shape && i?.shape ? broadcastShapes(shape, i.shape, fresh) : undefined;
      return [{ dtype, shape }];
    },
    /** Known value of input `i` (a constant shape, axes...). */
    constOf: (i: number): Dim[] | undefined => inp[i]?.value,
  };
}

const elementwise: ShapeRule = (node, inp, fresh) => {
  const { x, same } = view(inp, fresh);
  const out = same();
  if (node.opType === 'Identity' && x?.value) out[0]!.value = [...x.value];
  return out;
};

/** Elementwise with a bool result (Not, IsNaN, IsInf). */
const elementwiseBool: ShapeRule = (node, inp, fresh) => {
  const { s } = view(inp, fresh);
  return [{ dtype: 'bool', shape: s && [...s] }];
};

const dropout: ShapeRule = (node, inp, fresh) => {
  const { s, same } = view(inp, fresh);
  return [same()[0]!, { dtype: 'bool', shape: s && [...s] }];
};

const arithmetic: ShapeRule = (node, inp, fresh) => {
  const { x, bcast, constOf } = view(inp, fresh);
  const out = bcast(x?.dtype, inp);
  const a = constOf(0),
    b = constOf(1);
  if (
    a &&
    b &&
    a.length === b.length &&
    node.inputs.length === 2 &&
    a.every((v) => typeof v === 'number') &&
    b.every((v) => typeof v === 'number')
  ) {
    const f = {
      Add: (p: number, q: number) => p + q,
      Sub: (p: number, q: number) => p - q,
      Mul: (p: number, q: number) => p * q,
    } as Record<string, (p: number, q: number) => number>;
    const fn = f[node.opType];
    if (fn) out[0]!.value = a.map((v, i) => fn(v as number, b[i] as number));
  }
  return out;
};

const comparison: ShapeRule = (node, inp, fresh) => {
  const { bcast } = view(inp, fresh);
  return bcast('bool', inp);
};

const where: ShapeRule = (node, inp, fresh) => {
  const { bcast } = view(inp, fresh);
  return bcast(inp[1]?.dtype, inp);
};

const matMul: ShapeRule = (node, inp, fresh) => {
  const { x } = view(inp, fresh);
  const a = inp[0]?.shape,
    b = inp[1]?.shape;
  if (!a || !b) return [{ dtype: x?.dtype }];
  const a2 = a.length === 1 ? [1, a[0]!] : a;
  const b2 = b.length === 1 ? [b[0]!, 1] : b;
  const batch = broadcastShapes(a2.slice(0, -2), b2.slice(0, -2), fresh);
  const shape: Dim[] = [...batch];
  if (a.length > 1) shape.push(a2[a2.length - 2]!);
  if (b.length > 1) shape.push(b2[b2.length - 1]!);
  return [{ dtype: x?.dtype, shape }];
};

const gemm: ShapeRule = (node, inp, fresh) => {
  const { x } = view(inp, fresh);
  const a = inp[0]?.shape,
    b = inp[1]?.shape;
  if (!a || !b) return [{ dtype: x?.dtype }];
  const m = attrInt(node, 'transA', 0) ? a[1]! : a[0]!;
  const n = attrInt(node, 'transB', 0) ? b[0]! : b[1]!;
  return [{ dtype: x?.dtype, shape: [m, n] }];
};

const cast: ShapeRule = (node, inp, fresh) => {
  const { x, s } = view(inp, fresh);
  const to = node.opType === 'Cast' ? dtypeFromCode(attrInt(node, 'to', 0), `node ${node.name}`) : inp[1]?.dtype;
  return [{ dtype: to, shape: s && [...s], value: x?.value && [...x.value] }];
};

const shapeShape: ShapeRule = (node, inp, fresh) => {
  const { s } = view(inp, fresh);
  if (!s) return [{ dtype: 'int64' }];
  const start = normAxis(attrInt(node, 'start', 0), s.length);
  const end = normAxis(attrInt(node, 'end', s.length), s.length);
  const v = s.slice(start, Math.min(end, s.length));
  return [{ dtype: 'int64', shape: [v.length], value: v }];
};

const size: ShapeRule = (node, inp, fresh) => {
  return [{ dtype: 'int64', shape: [] }];
};

const constant: ShapeRule = (node, inp, fresh) => {
  const a = node.attrs['value'];
  if (a?.kind === 'tensor') return [{ dtype: a.value.dtype, shape: [...a.value.dims], value: tensorValue(a.value) }];
  const vi = node.attrs['value_int'],
    vis = node.attrs['value_ints'],
    vf = node.attrs['value_float'],
    vfs = node.attrs['value_floats'];
  if (vi?.kind === 'int') return [{ dtype: 'int64', shape: [], value: [vi.value] }];
  if (vis?.kind === 'ints') return [{ dtype: 'int64', shape: [vis.value.length], value: [...vis.value] }];
  if (vf) return [{ dtype: 'float32', shape: [] }];
  if (vfs?.kind === 'floats') return [{ dtype: 'float32', shape: [vfs.value.length] }];
  return [{}];
};

const constantOfShape: ShapeRule = (node, inp, fresh) => {
  const { constOf } = view(inp, fresh);
  const a = node.attrs['value'];
  const dtype = a?.kind === 'tensor' ? a.value.dtype : 'float32';
  const shape = constOf(0);
  return [{ dtype, shape: shape ? [...shape] : undefined }];
};

const reshape: ShapeRule = (node, inp, fresh) => {
  const { x, s, constOf } = view(inp, fresh);
  const target = constOf(1);
  if (!target) {
    const len = inp[1]?.shape?.[0];
    return [{ dtype: x?.dtype, shape: typeof len === 'number' ? Array.from({ length: len }, fresh) : undefined, value: undefined }];
  }
  const out: Dim[] = target.map((d, i) => (d === 0 && !attrInt(node, 'allowzero', 0) && s ? s[i]! : d));
  const neg = out.indexOf(-1);
  if (neg >= 0) {
    const known = out.filter((d, i) => i !== neg);
    if (s && s.every((d) => typeof d === 'number') && known.every((d) => typeof d === 'number')) {
      out[neg] = numel(s as number[]) / numel(known as number[]);
    } else if (s) {
      // Cancel matching symbolic factors so [batch, seq, h] → [-1, h] keeps a useful symbol.
      const rest = [...s];
      const other: Dim[] = [];
      for (const d of known) {
        const j = rest.indexOf(d);
        if (j >= 0) rest.splice(j, 1);
        else other.push(d);
      }
      const sym = rest.filter((d) => typeof d === 'string');
      const num =
        numel(rest.filter((d) => typeof d === 'number') as number[]) / numel(other.filter((d) => typeof d === 'number') as number[]);
      out[neg] =
        other.every((d) => typeof d === 'number') && sym.length === 1 && num === 1
          ? sym[0]!
          : sym.length === 0 && Number.isInteger(num) && other.every((d) => typeof d === 'number')
            ? num
            : fresh();
    } else out[neg] = fresh();
  }
  return [{ dtype: x?.dtype, shape: out, value: x?.value && [...x.value] }];
};

const flatten: ShapeRule = (node, inp, fresh) => {
  const { x, s } = view(inp, fresh);
  if (!s) return [{ dtype: x?.dtype }];
  const axis = normAxis(attrInt(node, 'axis', 1), s.length);
  const prod = (ds: Dim[]) => (ds.every((d) => typeof d === 'number') ? numel(ds as number[]) : ds.length === 1 ? ds[0]! : fresh());
  return [{ dtype: x?.dtype, shape: [prod(s.slice(0, axis)), prod(s.slice(axis))] }];
};

const transpose: ShapeRule = (node, inp, fresh) => {
  const { x, s } = view(inp, fresh);
  if (!s) return [{ dtype: x?.dtype }];
  const perm = attrInts(node, 'perm') ?? s.map((_, i) => s.length - 1 - i);
  return [{ dtype: x?.dtype, shape: perm.map((p) => s[p]!) }];
};

const unsqueeze: ShapeRule = (node, inp, fresh) => {
  const { x, s, constOf } = view(inp, fresh);
  const axes = constOf(1) ?? attrInts(node, 'axes');
  if (!s || !axes) return [{ dtype: x?.dtype }];
  const r = s.length + axes.length;
  const ax = axes.map((a) => normAxis(a as number, r));
  const out: Dim[] = [];
  let j = 0;
  for (let i = 0; i < r; i++) out.push(ax.includes(i) ? 1 : s[j++]!);
  return [{ dtype: x?.dtype, shape: out, value: x?.value && [...x.value] }];
};

const squeeze: ShapeRule = (node, inp, fresh) => {
  const { x, s, constOf } = view(inp, fresh);
  if (!s) return [{ dtype: x?.dtype }];
  const axes = constOf(1) ?? attrInts(node, 'axes');
  const ax = axes ? axes.map((a) => normAxis(a as number, s.length)) : s.map((d, i) => (d === 1 ? i : -1)).filter((i) => i >= 0);
  return [{ dtype: x?.dtype, shape: s.filter((_, i) => !ax.includes(i)), value: x?.value && [...x.value] }];
};

const expand: ShapeRule = (node, inp, fresh) => {
  const { x, s, constOf } = view(inp, fresh);
  const target = constOf(1);
  if (!s || !target) return [{ dtype: x?.dtype }];
  return [
    {
      dtype: x?.dtype,
      shape: broadcastShapes(
        s,
        target.map((d) => (d === -1 ? 1 : d)),
        fresh,
      ),
    },
  ];
};

const concat: ShapeRule = (node, inp, fresh) => {
  const { x } = view(inp, fresh);
  const shapes = inp.map((i) => i?.shape);
  if (shapes.some((sh) => !sh)) return [{ dtype: x?.dtype }];
  const rank = shapes[0]!.length;
  const axis = normAxis(attrInt(node, 'axis', 0), rank);
  const dims = shapes.map((sh) => sh![axis]!);
  const out = [...shapes[0]!];
  out[axis] = dims.every((d) => typeof d === 'number') ? (dims as number[]).reduce((p, q) => p + q, 0) : fresh();
  const vals = inp.map((i) => i?.value);
  const value = rank === 1 && vals.every((v) => v) ? vals.flatMap((v) => v!) : undefined;
  return [{ dtype: x?.dtype, shape: value ? [value.length] : out, value }];
};

const split: ShapeRule = (node, inp, fresh) => {
  const { x, s, constOf } = view(inp, fresh);
  if (!s) return node.outputs.map(() => ({ dtype: x?.dtype }));
  const axis = normAxis(attrInt(node, 'axis', 0), s.length);
  const sizes = constOf(1) ?? attrInts(node, 'split');
  const n = node.outputs.length;
  return node.outputs.map((_, i) => {
    const out = [...s];
    const d = s[axis]!;
    out[axis] = sizes ? sizes[i]! : typeof d === 'number' ? Math.ceil(d / n) - (i === n - 1 ? Math.ceil(d / n) * n - d : 0) : fresh();
    return { dtype: x?.dtype, shape: out };
  });
};

const slice: ShapeRule = (node, inp, fresh) => {
  const { x, s, constOf } = view(inp, fresh);
  const starts = constOf(1),
    ends = constOf(2);
  const axesV = constOf(3),
    steps = constOf(4);
  if (!s || !starts || !ends) return [{ dtype: x?.dtype, shape: s && s.map(() => fresh()) }];
  const out = [...s];
  starts.forEach((st, i) => {
    const axis = normAxis((axesV?.[i] ?? i) as number, s.length);
    const step = (steps?.[i] ?? 1) as number;
    const d = s[axis]!;
    if (typeof d !== 'number' || typeof st !== 'number' || typeof ends[i] !== 'number') {
      out[axis] = fresh();
      return;
    }
    const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
    let b = st < 0 ? st + d : st;
    let e = (ends[i] as number) < 0 ? (ends[i] as number) + d : (ends[i] as number);
    if (step > 0) {
      b = clamp(b, 0, d);
      e = clamp(e, 0, d);
      out[axis] = Math.max(0, Math.ceil((e - b) / step));
    } else {
      b = clamp(b, 0, d - 1);
      e = clamp(e, -1, d - 1);
      out[axis] = Math.max(0, Math.ceil((b - e) / -step));
    }
  });
  let value: Dim[] | undefined;
  if (x?.value && s.length === 1 && typeof out[0] === 'number' && typeof starts[0] === 'number') {
    const b = (starts[0] as number) < 0 ? (starts[0] as number) + (s[0] as number) : (starts[0] as number);
    if ((steps?.[0] ?? 1) === 1) value = x.value.slice(Math.max(0, b), Math.max(0, b) + out[0]);
  }
  return [{ dtype: x?.dtype, shape: out, value }];
};

const gather: ShapeRule = (node, inp, fresh) => {
  const { x, s, constOf } = view(inp, fresh);
  const ind = inp[1]?.shape;
  if (!s || !ind) return [{ dtype: x?.dtype }];
  const axis = normAxis(attrInt(node, 'axis', 0), s.length);
  let value: Dim[] | undefined;
  const iv = constOf(1);
  if (x?.value && s.length === 1 && iv && ind.length <= 1) value = iv.map((i) => x.value![normAxis(i as number, x.value!.length)]!);
  const shape = [...s.slice(0, axis), ...ind, ...s.slice(axis + 1)];
  return [{ dtype: x?.dtype, shape, value: value && ind.length === 0 ? value : value }];
};

const gatherElements: ShapeRule = (node, inp, fresh) => {
  const { x } = view(inp, fresh);
  return [{ dtype: x?.dtype, shape: inp[1]?.shape && [...inp[1].shape] }];
};

const scatter: ShapeRule = (node, inp, fresh) => {
  const { same } = view(inp, fresh);
  return same();
};

const unique: ShapeRule = (node, inp, fresh) => {
  const { x, s } = view(inp, fresh);
  // Without an axis Unique flattens: values [U], indices [U], inverse [numel], counts [U].
  if (node.attrs['axis']) return [{ dtype: x?.dtype }, { dtype: 'int64' }, { dtype: 'int64' }, { dtype: 'int64' }];
  const u = fresh();
  const n = s && s.every((d) => typeof d === 'number') ? (s as number[]).reduce((a, b) => a * b, 1) : fresh();
  return [
    { dtype: x?.dtype, shape: [u] },
    { dtype: 'int64', shape: [u] },
    { dtype: 'int64', shape: [n] },
    { dtype: 'int64', shape: [u] },
  ];
};

const oneHot: ShapeRule = (node, inp, fresh) => {
  const { constOf } = view(inp, fresh);
  const ind = inp[0]?.shape;
  const depth = constOf(1);
  if (!ind) return [{ dtype: inp[2]?.dtype }];
  const axis = normAxis(attrInt(node, 'axis', -1), ind.length + 1);
  const out = [...ind];
  out.splice(axis, 0, depth ? depth[0]! : fresh());
  return [{ dtype: inp[2]?.dtype, shape: out }];
};

const reduction: ShapeRule = (node, inp, fresh) => {
  const { x, s, constOf } = view(inp, fresh);
  if (!s) return [{ dtype: x?.dtype }];
  const isArg = node.opType.startsWith('Arg');
  const axesRaw = isArg ? [attrInt(node, 'axis', 0)] : (constOf(1) ?? attrInts(node, 'axes'));
  if (node.inputs[1] && !constOf(1) && !isArg) return [{ dtype: x?.dtype }];
  const keep = attrInt(node, 'keepdims', 1);
  const noop = attrInt(node, 'noop_with_empty_axes', 0);
  const axes = axesRaw && axesRaw.length ? axesRaw.map((a) => normAxis(a as number, s.length)) : noop ? [] : s.map((_, i) => i);
  const out: Dim[] = [];
  s.forEach((d, i) => {
    if (!axes.includes(i)) out.push(d);
    else if (keep) out.push(1);
  });
  return [{ dtype: isArg ? 'int64' : x?.dtype, shape: out }];
};

const layerNormalization: ShapeRule = (node, inp, fresh) => {
  const { x, s, same } = view(inp, fresh);
  if (!s) return [{ dtype: x?.dtype }, { dtype: 'float32' }, { dtype: 'float32' }];
  const axis = normAxis(attrInt(node, 'axis', -1), s.length);
  const stat: Dim[] = s.map((d, i) => (i < axis ? d : 1));
  const statType = x?.dtype === 'float64' ? 'float64' : 'float32';
  return [same()[0]!, { dtype: statType, shape: stat }, { dtype: statType, shape: [...stat] }];
};

const pad: ShapeRule = (node, inp, fresh) => {
  const { x, s } = view(inp, fresh);
  return [{ dtype: x?.dtype, shape: s && s.map(() => fresh()) }];
};

const range: ShapeRule = (node, inp, fresh) => {
  const { x } = view(inp, fresh);
  return [{ dtype: x?.dtype, shape: [fresh()] }];
};

const nonZero: ShapeRule = (node, inp, fresh) => {
  const { s } = view(inp, fresh);
  return [{ dtype: 'int64', shape: [s ? s.length : fresh(), fresh()] }];
};

function forOps(ops: string[], rule: ShapeRule): Record<string, ShapeRule> {
  return Object.fromEntries(ops.map((op) => [op, rule]));
}

/** The shape rule table, keyed by op like the gradient table. An op missing here gets unknown types. */
const SHAPE_RULES: Record<string, ShapeRule> = {
  ...forOps(
    [
      'Identity',
      'Neg',
      'Sqrt',
      'Exp',
      'Log',
      'Tanh',
      'Sigmoid',
      'Relu',
      'Erf',
      'Gelu',
      'Softmax',
      'LogSoftmax',
      'Abs',
      'Reciprocal',
      'Floor',
      'Ceil',
      'Sin',
      'Cos',
      'Trilu',
      'Sign',
      'Clip',
      'LeakyRelu',
      'Softplus',
      'Tan',
      'Atan',
      'Asin',
      'Acos',
      'Sinh',
      'Cosh',
      'Round',
      'Elu',
      'Selu',
      'HardSigmoid',
      'HardSwish',
      'Mish',
      'Softsign',
      'Celu',
      'CumSum',
    ],
    elementwise,
  ),
  ...forOps(['Not', 'IsNaN', 'IsInf'], elementwiseBool),
  Dropout: dropout,
  ...forOps(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Sum', 'Mod'], arithmetic),
  ...forOps(['Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'And', 'Or', 'Xor'], comparison),
  Where: where,
  MatMul: matMul,
  Gemm: gemm,
  ...forOps(['Cast', 'CastLike'], cast),
  Shape: shapeShape,
  Size: size,
  Constant: constant,
  ConstantOfShape: constantOfShape,
  Reshape: reshape,
  Flatten: flatten,
  Transpose: transpose,
  Unsqueeze: unsqueeze,
  Squeeze: squeeze,
  Expand: expand,
  Concat: concat,
  Split: split,
  Slice: slice,
  Gather: gather,
  GatherElements: gatherElements,
  ...forOps(['ScatterND', 'ScatterElements'], scatter),
  Unique: unique,
  OneHot: oneHot,
  ...forOps(
    [
      'ReduceMean',
      'ReduceSum',
      'ReduceMax',
      'ReduceMin',
      'ReduceProd',
      'ReduceL2',
      'ReduceSumSquare',
      'ReduceLogSumExp',
      'ArgMax',
      'ArgMin',
    ],
    reduction,
  ),
  LayerNormalization: layerNormalization,
  Pad: pad,
  Range: range,
  NonZero: nonZero,
};

function inferNode(node: Node, get: (n: string) => TypeInfo | undefined, fresh: () => string): TypeInfo[] {
  const rule = SHAPE_RULES[node.opType];
  return rule
    ? rule(
        node,
        node.inputs.map((n) => get(n)),
        fresh,
      )
    : node.outputs.map(() => ({}));
}
