/**
 * Row pruning by moving selections towards the inputs. A classifier that reads one position (BERT's
 * pooler takes the CLS token: Gather(hidden, 0, axis=1)) still makes the last layer compute every
 * position. A Gather with constant indices commutes with position-wise ops (elementwise ops, MatMul rows,
 * LayerNormalization and Softmax over other axes, Transpose, shape-preserving Reshape), so it can move
 * above them; what it leaves behind computes only the selected rows. The graph's results do not change,
 * and the backward pass built from the pruned graph shrinks with it.
 *
 * A selection moves above a value only when every consumer of that value selects the same rows, so
 * no work is ever duplicated. It stops where other consumers need all rows (the keys and values of the
 * last attention layer), or at an op it does not know.
 */
import type { Dim, Graph, Node, Tensor } from './ir.ts';
import { attrInt } from './ir.ts';
import { consumers, producers } from './graph.ts';
import { inferShapes, type TypeMap } from './shapes.ts';

/** Constant integer indices of a Gather, or undefined when they are not a small constant. */
function constIndices(graph: Graph, name: string): { values: number[]; scalar: boolean } | undefined {
  const t = graph.initializers.get(name);
  if (!t || (t.dtype !== 'int64' && t.dtype !== 'int32') || t.dims.length > 1 || t.data.length > 64) return undefined;
  return { values: Array.from(t.data as ArrayLike<number | bigint>, Number), scalar: t.dims.length === 0 };
}

const UNARY = new Set([
  'Identity',
  'Dropout',
  'Cast',
  'Neg',
  'Exp',
  'Log',
  'Sqrt',
  'Erf',
  'Tanh',
  'Sigmoid',
  'Relu',
  'Abs',
  'Reciprocal',
  'Floor',
  'Ceil',
  'Sin',
  'Cos',
  'Softplus',
  'Sign',
  'Not',
  'Gelu',
  'LeakyRelu',
  'Elu',
  'HardSigmoid',
  'Round',
]);
const BROADCASTING = new Set([
  'Add',
  'Sub',
  'Mul',
  'Div',
  'Pow',
  'Max',
  'Min',
  'Where',
  'Equal',
  'Less',
  'Greater',
  'LessOrEqual',
  'GreaterOrEqual',
  'And',
  'Or',
  'Xor',
  'Mod',
]);

/**
 * For node `p` whose output is selected along `axis`, the axis to select on each input instead
 * (undefined: that input passes unchanged), or null when the selection cannot move above `p`.
 */
export function selectionAxes(graph: Graph, types: TypeMap, p: Node, axis: number): (number | undefined)[] | null {
  const out = types.get(p.outputs[0]!)?.shape;
  if (!out || p.domain !== '' || p.outputs.filter(Boolean).length !== 1) return null;
  const R = out.length;
  const shapeOf = (v: string) => types.get(v)?.shape;
  /** Broadcasting input: select where it has the axis at full size; pass a size-1 or missing axis. */
  const aligned = (v: string, outAxis: number): number | undefined | null => {
    const s = shapeOf(v);
    if (!s) return null;
    const k = outAxis - (R - s.length);
    if (k < 0 || s[k] === 1) return undefined;
    return sameDim(s[k]!, out[outAxis]!) ? k : null;
  };
  const all = (f: (v: string) => number | undefined | null) => {
    const r = p.inputs.map((v) => (v ? f(v) : undefined));
    return r.includes(null) ? null : (r as (number | undefined)[]);
  };
  if (UNARY.has(p.opType)) return all((v) => (v === p.inputs[0] ? aligned(v, axis) : undefined));
  if (BROADCASTING.has(p.opType)) return all((v) => aligned(v, axis));
  switch (p.opType) {
    case 'MatMul': {
      const [a, b] = p.inputs as [string, string];
      const ra = shapeOf(a)?.length,
        rb = shapeOf(b)?.length;
      if (ra === undefined || rb === undefined || ra < 2 || rb < 2) return null;
      if (axis === R - 2) return sameDim(shapeOf(a)![ra - 2]!, out[axis]!) ? [ra - 2, undefined] : null;
      if (axis === R - 1) return sameDim(shapeOf(b)![rb - 1]!, out[axis]!) ? [undefined, rb - 1] : null;
      return all((v) => aligned(v, axis));
    }
    case 'Softmax':
    case 'LogSoftmax': {
      const along = norm(attrInt(p, 'axis', -1), R);
      return along === axis ? null : [axis];
    }
    case 'LayerNormalization': {
      // Normalizes over axes [axis, R); scale and bias cover exactly those axes.
      const from = norm(attrInt(p, 'axis', -1), R);
      return axis < from ? [axis, undefined, undefined] : null;
    }
    case 'Transpose': {
      const perm = (p.attrs.perm?.kind === 'ints' ? p.attrs.perm.value : undefined) ?? Array.from({ length: R }, (_, i) => R - 1 - i);
      return [perm[axis]!];
    }
    case 'Reshape': {
      // Only reshapes that keep axes 0..axis as they are: each target entry there is 0 (copy the input's
      // dim) or the same fixed size, so the smaller selected dim is copied through.
      if (attrInt(p, 'allowzero', 0) !== 0) return null;
      const target = graph.initializers.get(p.inputs[1]!);
      const inShape = shapeOf(p.inputs[0]!);
      if (!target || target.dtype !== 'int64' || !inShape || inShape.length <= axis) return null;
      const t = Array.from(target.data as BigInt64Array, Number);
      for (let i = 0; i <= axis; i++) {
        if (i === axis ? t[i] !== 0 : !(t[i] === 0 || (t[i]! > 0 && t[i] === inShape[i]))) return null;
      }
      return [axis, undefined];
    }
    default:
      return null;
  }
}

function sameDim(a: Dim, b: Dim): boolean {
  return a === b && !(typeof a === 'string' && a.startsWith('?'));
}

function norm(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

/**
 * Rewrites `graph` in place; returns how many ops it moved a selection above. Graph outputs and the
 * values in `keep` keep all their rows.
 */
export function sinkRowGathers(graph: Graph, keep: readonly string[] = []): number {
  let counter = 0;
  const names = new Set<string>([
    ...graph.initializers.keys(),
    ...graph.inputs.map((v) => v.name),
    ...graph.nodes.flatMap((n) => [n.name, ...n.outputs]),
  ]);
  const fresh = (hint: string) => {
    let n = hint;
    while (names.has(n)) n = `${hint}_${++counter}`;
    names.add(n);
    return n;
  };
  const graphOutputs = new Set([...graph.outputs.map((o) => o.name), ...keep]);
  const indexConsts = new Map<string, string>();
  const indexConst = (values: number[]): string => {
    const known = indexConsts.get(values.join(','));
    if (known) return known;
    const name = fresh('ints'); // named like the builder's int constants, so nothing mistakes it for a weight
    indexConsts.set(values.join(','), name);
    const t: Tensor = { name, dtype: 'int64', dims: [values.length], data: BigInt64Array.from(values, BigInt) };
    graph.initializers.set(name, t);
    return name;
  };

  const replacedIndices = new Set<string>();
  // A scalar-index Gather drops the axis; make it a one-row Gather plus Squeeze so the selection keeps
  // every rank as it moves, and broadcasting inputs still line up.
  {
    const types = inferShapes(graph);
    const prod = producers(graph);
    for (const g of [...graph.nodes]) {
      if (g.opType !== 'Gather' || g.domain !== '') continue;
      const idx = constIndices(graph, g.inputs[1]!);
      const data = g.inputs[0]!;
      const rank = types.get(data)?.shape?.length;
      const p = prod.get(data);
      if (!idx?.scalar || rank === undefined || !p) continue;
      const axis = norm(attrInt(g, 'axis', 0), rank);
      if (!selectionAxes(graph, types, p, axis)) continue;
      const kept = fresh(`${g.outputs[0]}__rows`);
      const squeeze: Node = {
        name: fresh(`${g.name}__squeeze`),
        opType: 'Squeeze',
        domain: '',
        inputs: [kept, indexConst([axis])],
        outputs: [g.outputs[0]!],
        attrs: {},
      };
      replacedIndices.add(g.inputs[1]!);
      g.inputs[1] = indexConst(idx.values);
      g.outputs[0] = kept;
      graph.nodes.splice(graph.nodes.indexOf(g) + 1, 0, squeeze);
    }
  }

  let moved = 0;
  for (;;) {
    const types = inferShapes(graph);
    const prod = producers(graph);
    const cons = consumers(graph);
    let changed = false;
    for (const [value, users] of cons) {
      if (graphOutputs.has(value) || users.length === 0) continue;
      const p = prod.get(value);
      if (!p || p.outputs[0] !== value) continue;
      const rank = types.get(value)?.shape?.length;
      if (rank === undefined) continue;
      // Every consumer must select the same rows along the same axis.
      const first = users[0]!;
      const key = (g: Node) => {
        if (g.opType !== 'Gather' || g.domain !== '' || g.inputs[0] !== value) return undefined;
        const idx = constIndices(graph, g.inputs[1]!);
        if (!idx || idx.scalar) return undefined;
        return `${norm(attrInt(g, 'axis', 0), rank)}:${idx.values.join(',')}`;
      };
      const k = key(first);
      if (!k || users.some((g) => key(g) !== k)) continue;
      const axis = norm(attrInt(first, 'axis', 0), rank);
      const indices = constIndices(graph, first.inputs[1]!)!.values;
      const axes = selectionAxes(graph, types, p, axis);
      if (!axes) continue;
      // p now reads selected inputs and writes the first Gather's output; the other Gathers' readers follow.
      const added: Node[] = [];
      p.inputs = p.inputs.map((v, i) => {
        const a = axes[i];
        if (!v || a === undefined) return v;
        const out = fresh(`${v}__rows`);
        added.push({
          name: fresh(`${p.name}__select${i}`),
          opType: 'Gather',
          domain: '',
          inputs: [v, indexConst(indices)],
          outputs: [out],
          attrs: { axis: { kind: 'int', value: a } },
        });
        return out;
      });
      const target = first.outputs[0]!;
      p.outputs[0] = target;
      const rename = new Map(users.slice(1).map((g) => [g.outputs[0]!, target]));
      const drop = new Set(users);
      for (const g of users) replacedIndices.add(g.inputs[1]!);
      graph.nodes = graph.nodes.filter((n) => !drop.has(n));
      for (const n of graph.nodes) n.inputs = n.inputs.map((v) => rename.get(v) ?? v);
      for (const o of graph.outputs)
        if (rename.has(o.name))
          graph.nodes.push({
            name: fresh(`${o.name}__identity`),
            opType: 'Identity',
            domain: '',
            inputs: [target],
            outputs: [o.name],
            attrs: {},
          });
      graph.nodes.splice(Math.max(0, graph.nodes.indexOf(p)), 0, ...added);
      moved++;
      changed = true;
      break; // maps are stale now
    }
    if (!changed) break;
  }
  mergeDuplicateGathers(graph, graphOutputs);
  // Index constants of the Gathers that moved are read by nothing now.
  const read = new Set(graph.nodes.flatMap((n) => n.inputs));
  for (const name of [...indexConsts.values(), ...replacedIndices]) if (!read.has(name)) graph.initializers.delete(name);
  return moved;
}

/**
 * One Gather per (value, axis, indices): the selections that stopped at the same value read it once.
 * Gathers whose output is in `fixed` (graph outputs, kept values) keep their names.
 */
function mergeDuplicateGathers(graph: Graph, fixed: ReadonlySet<string>): void {
  const seen = new Map<string, string>();
  const rename = new Map<string, string>();
  graph.nodes = graph.nodes.filter((n) => {
    n.inputs = n.inputs.map((v) => rename.get(v) ?? v);
    if (n.opType !== 'Gather' || n.domain !== '') return true;
    const idx = constIndices(graph, n.inputs[1]!);
    if (!idx) return true;
    const key = `${n.inputs[0]}|${attrInt(n, 'axis', 0)}|${idx.scalar}|${idx.values.join(',')}`;
    const first = seen.get(key);
    if (first === undefined || fixed.has(n.outputs[0]!)) {
      seen.set(key, n.outputs[0]!);
      return true;
    }
    rename.set(n.outputs[0]!, first);
    return false;
  });
}
