/**
 * Gradient rules for multi-node patterns whose op-by-op backward is wasteful. Exported models spell
 * GELU as five elementwise ops; differentiating them one by one makes ten passes over the MLP's widest
 * tensor plus a fan-out sum. The closed form dx = dy·(Φ(x) + x·φ(x)) reuses the forward's 1 + erf(x/√2)
 * and x/√2, and takes seven.
 *
 * A pattern is used only when its interior values feed nothing outside it, so skipping their
 * individual gradients loses no contribution.
 */
import type { Graph, Node } from '../onnx/ir.ts';
import type { GradContext } from './grad-context.ts';

export interface Composite {
  /** The node whose output the pattern produces. */
  root: Node;
  /** Nodes inside the pattern (root excluded) whose own rules are skipped. */
  interior: Node[];
  /** The pattern's differentiable input. */
  input: string;
  /** d input from d root-output. */
  grad: (ctx: GradContext, dy: string) => string;
}

function scalarValue(graph: Graph, name: string): number | undefined {
  const t = graph.initializers.get(name);
  if (!t || t.data.length !== 1 || (t.dtype !== 'float32' && t.dtype !== 'float64' && t.dtype !== 'float16')) return undefined;
  return Number(t.data[0]);
}

const near = (v: number | undefined, want: number) => v !== undefined && Math.abs(v - want) <= 1e-6 * Math.abs(want);

/**
 * Cross-entropy per row as losses.ts writes it, −log p(label) = Neg(GatherElements(LogSoftmax(X, last axis), label,
 * last axis)) on X [rows, classes]. Rule by rule the backward pass would build three rows × classes tensors (a zero
 * tensor and its scatter for the gather, then the LogSoftmax rule's softmax) and add them, each 400 MB for a causal
 * LM at 2k tokens × 49k vocabulary. The closed form dX = exp(logp)·dy − onehot(label)·dy is one such tensor, whose
 * elementwise steps onnxruntime can run in place.
 */
function crossEntropyRows(graph: Graph, producer: Map<string, Node>, readers: Map<string, Node[]>, graphOutputs: Set<string>): Composite[] {
  const found: Composite[] = [];
  // Rank-2 X (losses.ts flattens the logits): the last axis is 1 or −1.
  const last = (a: number | undefined) => a === 1 || a === -1;
  for (const root of graph.nodes) {
    if (root.opType !== 'Neg' || root.domain !== '') continue;
    const pick = producer.get(root.inputs[0]!);
    if (pick?.opType !== 'GatherElements' || pick.domain !== '') continue;
    const lsm = producer.get(pick.inputs[0]!);
    if (lsm?.opType !== 'LogSoftmax' || lsm.domain !== '') continue;
    const axis = lsm.attrs['axis'];
    const gAxis = pick.attrs['axis'];
    if (!last(axis?.kind === 'int' ? axis.value : -1) || !last(gAxis?.kind === 'int' ? gAxis.value : 0)) continue;
    const readOnlyBy = (n: Node, reader: Node) =>
      n.outputs.every((o) => !o || (!graphOutputs.has(o) && (readers.get(o) ?? []).every((r) => r === reader)));
    const sealed = readOnlyBy(lsm, pick) && readOnlyBy(pick, root);
    if (!sealed) continue;
    const labels = pick.inputs[1]!;
    const logp = lsm.outputs[0]!;
    found.push({
      root,
      interior: [lsm, pick],
      input: lsm.inputs[0]!,
      grad: (ctx, dy) => {
        const scaled = ctx.op('Mul', [ctx.op('Exp', [logp]), dy]);
        return ctx.op('ScatterElements', [scaled, labels, ctx.op('Neg', [dy])], { axis: 1, reduction: 'add' });
      },
    });
  }
  return found;
}

/**
 * SiLU, x·sigmoid(x) (LLaMA's MLP gate). Rule by rule its backward takes six passes over the MLP's widest tensor
 * (dy·s, dy·x, 1 − s, two products for the sigmoid's derivative, the sum of both paths); the closed form
 * dx = dy·(s + y·(1 − s)), with s and y = x·s from the forward pass, takes four and no longer reads x.
 */
function siluRows(graph: Graph, producer: Map<string, Node>, readers: Map<string, Node[]>, graphOutputs: Set<string>): Composite[] {
  const found: Composite[] = [];
  for (const root of graph.nodes) {
    if (root.opType !== 'Mul' || root.domain !== '') continue;
    for (const [x, other] of [
      [root.inputs[0]!, root.inputs[1]!],
      [root.inputs[1]!, root.inputs[0]!],
    ] as const) {
      const sig = producer.get(other);
      if (sig?.opType !== 'Sigmoid' || sig.domain !== '' || sig.inputs[0] !== x) continue;
      if (graphOutputs.has(other) || !(readers.get(other) ?? []).every((r) => r === root)) continue;
      const y = root.outputs[0]!;
      found.push({
        root,
        interior: [sig],
        input: x,
        grad: (ctx, dy) => ctx.op('Mul', [dy, ctx.op('Add', [ctx.op('Mul', [y, ctx.op('Sub', [ctx.scalar(1, x), other])]), other])]),
      });
      break;
    }
  }
  return found;
}

/** Axes of a Reduce node: the `axes` attribute (opset < 18) or its constant second input. */
function reduceAxes(graph: Graph, n: Node): number[] | undefined {
  const a = n.attrs['axes'];
  if (a?.kind === 'ints') return a.value;
  const t = n.inputs[1] ? graph.initializers.get(n.inputs[1]) : undefined;
  return t && (t.dtype === 'int64' || t.dtype === 'int32') ? Array.from(t.data as ArrayLike<number | bigint>, Number) : undefined;
}

/**
 * RMSNorm's normalization as layers.ts writes it, n = x·Reciprocal(Sqrt(ReduceMean(x·x, last axis) + ε)) (the weight
 * is a plain Mul after it). Rule by rule the backward pass makes six passes over x's shape plus an Expand of the
 * mean's gradient; the closed form dx = r·(dn − n·mean(dn·n)), r the reciprocal from the forward pass, takes four.
 */
function rmsNormRows(graph: Graph, producer: Map<string, Node>, readers: Map<string, Node[]>, graphOutputs: Set<string>): Composite[] {
  const found: Composite[] = [];
  const op = (v: string | undefined, type: string) => {
    const p = v ? producer.get(v) : undefined;
    return p && p.opType === type && p.domain === '' ? p : undefined;
  };
  for (const root of graph.nodes) {
    if (root.opType !== 'Mul' || root.domain !== '') continue;
    for (const [x, r] of [
      [root.inputs[0]!, root.inputs[1]!],
      [root.inputs[1]!, root.inputs[0]!],
    ] as const) {
      const rec = op(r, 'Reciprocal');
      const sqrt = op(rec?.inputs[0], 'Sqrt');
      const add = op(sqrt?.inputs[0], 'Add');
      const mean = op(add?.inputs[0], 'ReduceMean') ?? op(add?.inputs[1], 'ReduceMean');
      const sq = op(mean?.inputs[0], 'Mul');
      if (!rec || !sqrt || !add || !mean || !sq || sq.inputs[0] !== x || sq.inputs[1] !== x) continue;
      const eps = add.inputs[add.inputs[0] === mean.outputs[0] ? 1 : 0]!;
      const axes = reduceAxes(graph, mean);
      const keep = mean.attrs['keepdims'];
      if (
        scalarValue(graph, eps) === undefined ||
        !axes ||
        axes.length !== 1 ||
        axes[0] !== -1 ||
        (keep?.kind === 'int' && keep.value !== 1)
      )
        continue;
      const interior = [rec, sqrt, add, mean, sq];
      const inside = new Set<Node>([root, ...interior]);
      const sealed = interior.every((n) =>
        n.outputs.every((o) => !o || (!graphOutputs.has(o) && (readers.get(o) ?? []).every((rd) => inside.has(rd)))),
      );
      if (!sealed) continue;
      const n = root.outputs[0]!;
      found.push({
        root,
        interior,
        input: x,
        grad: (ctx, dn) => {
          const prod = ctx.op('Mul', [dn, n]);
          const c =
            ctx.opset >= 18
              ? ctx.op('ReduceMean', [prod, ctx.b.ints([-1])], { keepdims: 1 })
              : ctx.op('ReduceMean', [prod], { axes: [-1], keepdims: 1 });
          return ctx.op('Mul', [ctx.op('Sub', [dn, ctx.op('Mul', [n, c])]), r]);
        },
      });
      break;
    }
  }
  return found;
}

/** Finds exact-GELU subgraphs: x·0.5·(1 + erf(x/√2)) in the two orders exporters write it. */
export function findComposites(graph: Graph): Composite[] {
  const producer = new Map<string, Node>();
  const readers = new Map<string, Node[]>();
  for (const n of graph.nodes) {
    for (const o of n.outputs) if (o) producer.set(o, n);
    for (const i of n.inputs) if (i) (readers.get(i) ?? readers.set(i, []).get(i)!).push(n);
  }
  const graphOutputs = new Set(graph.outputs.map((o) => o.name));
  const prod = (v: string, op: string) => {
    const p = producer.get(v);
    return p && p.opType === op && p.domain === '' ? p : undefined;
  };
  /** Of a binary node, the operand that is not the scalar constant `c` (either order), if the other one is. */
  const otherThan = (n: Node, c: number) => {
    const [l, r] = n.inputs as [string, string];
    if (near(scalarValue(graph, r), c)) return l;
    if (near(scalarValue(graph, l), c)) return r;
    return undefined;
  };
  /** 1 + erf(x/√2) → { x, a, interior }. */
  const onePlusErf = (v: string) => {
    const add = prod(v, 'Add');
    const e = add && otherThan(add, 1);
    const erf = e ? prod(e, 'Erf') : undefined;
    if (!add || !erf) return undefined;
    const u = erf.inputs[0]!;
    const div = prod(u, 'Div');
    const mul = prod(u, 'Mul');
    const x = div && near(scalarValue(graph, div.inputs[1]!), Math.SQRT2) ? div.inputs[0]! : mul ? otherThan(mul, Math.SQRT1_2) : undefined;
    if (!x) return undefined;
    return { x, a: v, u, interior: [add, erf, (div ?? mul)!] };
  };

  const found: Composite[] = [
    ...crossEntropyRows(graph, producer, readers, graphOutputs),
    ...siluRows(graph, producer, readers, graphOutputs),
    ...rmsNormRows(graph, producer, readers, graphOutputs),
  ];
  for (const root of graph.nodes) {
    if (root.opType !== 'Mul' || root.domain !== '') continue;
    let match: { x: string; a: string; u: string; interior: Node[] } | undefined;
    // x·0.5 · (1 + erf(x/√2)), either operand order.
    for (const [half, rest] of [
      [root.inputs[0]!, root.inputs[1]!],
      [root.inputs[1]!, root.inputs[0]!],
    ] as const) {
      const h = prod(half, 'Mul');
      const x = h && otherThan(h, 0.5);
      const m = x ? onePlusErf(rest) : undefined;
      if (h && m && m.x === x) {
        match = { ...m, interior: [h, ...m.interior] };
        break;
      }
    }
    // (x · (1 + erf(x/√2))) · 0.5, as torch.onnx exports nn.GELU.
    if (!match) {
      const inner = otherThan(root, 0.5);
      const xm = inner ? prod(inner, 'Mul') : undefined;
      if (xm) {
        for (const [x, rest] of [
          [xm.inputs[0]!, xm.inputs[1]!],
          [xm.inputs[1]!, xm.inputs[0]!],
        ] as const) {
          const m = onePlusErf(rest);
          if (m && m.x === x) {
            match = { ...m, interior: [xm, ...m.interior] };
            break;
          }
        }
      }
    }
    if (!match) continue;
    const inside = new Set([root, ...match.interior]);
    const sealed = match.interior.every((n) =>
      n.outputs.every((o) => !o || (!graphOutputs.has(o) && (readers.get(o) ?? []).every((r) => inside.has(r)))),
    );
    if (!sealed) continue;
    const { x, a, u } = match;
    found.push({
      root,
      interior: match.interior,
      input: x,
      // dx = dy·(Φ(x) + x·φ(x)) = dy·(0.5·a + x·exp(ln(1/√(2π)) − u²)), u = x/√2, a = 1 + erf(u).
      // The constant rides in the exponent, and the last op is the product with dy: a trailing scalar
      // Mul would be fused into the next MatMul by onnxruntime, whose scaled kernel is slower.
      grad: (ctx, dy) => {
        const xpdf = ctx.op('Mul', [
          ctx.op('Exp', [ctx.op('Sub', [ctx.scalar(-0.5 * Math.log(2 * Math.PI), x), ctx.op('Mul', [u, u])])]),
          x,
        ]);
        return ctx.op('Mul', [dy, ctx.op('Add', [ctx.op('Mul', [a, ctx.scalar(0.5, x)]), xpdf])]);
      },
    });
  }
  return found;
}
