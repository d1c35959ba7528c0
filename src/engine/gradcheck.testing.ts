/**
 * Finite-difference gradient check: runs a graph's analytic gradients (autodiff) and central differences
 * of the same loss on onnxruntime, and reports the relative error. Used by the tests of every rule.
 */
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../onnx/builder.ts';
import { encodeModel } from '../onnx/proto.ts';
import { inferShapes } from '../onnx/shapes.ts';
import { numel } from '../onnx/ir.ts';
import { appendGradients } from './autodiff.ts';
import { Rng } from './prng.ts';
import { gradName, LOSS_OUTPUT, type ParamInfo, type TrainProgram } from './compile.ts';
import { DropoutMasker } from './dropout-masks.ts';

export interface CheckInput {
  name: string;
  shape: number[];
  /** 'float64' (default) or 'float32' for ops onnxruntime's CPU build only has float kernels for. */
  dtype?: 'float64' | 'float32' | 'int64' | 'bool';
  data?: ArrayLike<number>;
  /** Differentiate with respect to this input (default: float inputs). */
  wrt?: boolean;
}

export interface CheckResult {
  /** ‖analytic − numeric‖₂ / max(‖analytic‖₂ + ‖numeric‖₂, tiny) over all checked inputs. */
  relError: number;
  analytic: Record<string, number[]>;
  numeric: Record<string, number[]>;
}

function tensor(inp: CheckInput, data: ArrayLike<number>): ort.Tensor {
  switch (inp.dtype ?? 'float64') {
    case 'float64':
      return new ort.Tensor('float64', Float64Array.from(data), inp.shape);
    case 'float32':
      return new ort.Tensor('float32', Float32Array.from(data), inp.shape);
    case 'int64':
      return new ort.Tensor(
        'int64',
        BigInt64Array.from(Array.from(data), (v) => BigInt(v)),
        inp.shape,
      );
    case 'bool':
      return new ort.Tensor('bool', Uint8Array.from(data), inp.shape);
  }
}

export async function gradCheck(spec: {
  inputs: CheckInput[];
  build: (g: GraphBuilder, inputs: string[]) => string;
  opset?: number;
  seed?: number;
  step?: number;
}): Promise<CheckResult> {
  const rng = new Rng(spec.seed ?? 1);
  const g = new GraphBuilder({ opset: spec.opset ?? 17 });
  const names = spec.inputs.map((i) => g.input(i.name, i.dtype ?? 'float64', i.shape));
  const y = spec.build(g, names);
  const yt = inferShapes(g.graph).get(y)!;
  const yshape = yt.shape as number[];
  const dtype = yt.dtype!;
  // A random projection makes every output element matter to the scalar loss.
  const r = Array.from({ length: numel(yshape) }, () => rng.uniform(-1, 1));
  const rName = g.constant(dtype === 'float64' ? Float64Array.from(r) : Float32Array.from(r), yshape);
  const loss = g.op('ReduceSum', [g.op('Mul', [y, rName])], { keepdims: 0 });
  g.output(loss, 'loss');
  const forward = encodeModel(g.build());

  const wrt = spec.inputs.filter((i) => i.wrt ?? (i.dtype ?? 'float64').startsWith('float'));
  const gradModel = g.build();
  const { grads } = appendGradients(
    gradModel,
    'loss',
    wrt.map((w) => w.name),
  );
  const gb = GraphBuilder.extend(gradModel);
  for (const w of wrt) gb.output(grads.get(w.name)!, `grad_${w.name}`);
  const backward = encodeModel(gb.build());

  const values = spec.inputs.map((i) => Array.from(i.data ?? Array.from({ length: numel(i.shape) }, () => rng.uniform(-1, 1))));
  const feeds = () => Object.fromEntries(spec.inputs.map((inp, k) => [inp.name, tensor(inp, values[k]!)]));
  const fs = await ort.InferenceSession.create(forward);
  const bs = await ort.InferenceSession.create(backward);
  const out = await bs.run(feeds());
  const analytic: Record<string, number[]> = {};
  const numeric: Record<string, number[]> = {};
  let num2 = 0,
    den2a = 0,
    den2n = 0;
  for (const w of wrt) {
    const k = spec.inputs.indexOf(w);
    const a = Array.from(out[`grad_${w.name}`]!.data as Float64Array, Number);
    const h = spec.step ?? ((w.dtype ?? 'float64') === 'float64' ? 1e-6 : 1e-2);
    const nvals: number[] = [];
    for (let e = 0; e < values[k]!.length; e++) {
      const orig = values[k]![e]!;
      values[k]![e] = orig + h;
      const lp = Number((await fs.run(feeds()))['loss']!.data[0]);
      values[k]![e] = orig - h;
      const lm = Number((await fs.run(feeds()))['loss']!.data[0]);
      values[k]![e] = orig;
      nvals.push((lp - lm) / (2 * h));
    }
    analytic[w.name] = a;
    numeric[w.name] = nvals;
    a.forEach((v, i) => {
      num2 += (v - nvals[i]!) ** 2;
      den2a += v * v;
      den2n += nvals[i]! ** 2;
    });
  }
  await fs.release();
  await bs.release();
  return { relError: Math.sqrt(num2) / Math.max(Math.sqrt(den2a) + Math.sqrt(den2n), 1e-30), analytic, numeric };
}

/**
 * A `pick` for programGradCheck: each weight's largest-gradient element, so every check has signal, and `random`
 * elements drawn from `rng`.
 */
export function largestAndRandom(rng: { next(): number }, random: number): (param: ParamInfo, grad: ArrayLike<number>) => number[] {
  return (p, a) => {
    let big = 0;
    for (let i = 1; i < a.length; i++) if (Math.abs(a[i]!) > Math.abs(a[big]!)) big = i;
    return [big, ...Array.from({ length: random }, () => Math.floor(rng.next() * p.init.length))];
  };
}

/**
 * Checks a compiled program end to end: the grad graph's weight gradients against central differences
 * of the eval graph's loss, at the elements `pick` chooses for each weight (all of them by default).
 * A program with dropout is checked with one fixed set of masks (drawn from `maskSeed`), against
 * differences of the grad graph's own loss, since the eval graph has no dropout.
 * Weights are fed as `dtype`; returns ‖analytic − numeric‖₂ / (‖analytic‖₂ + ‖numeric‖₂) over every
 * checked element, and how many there were.
 */
export async function programGradCheck(
  prog: TrainProgram,
  data: Record<string, ort.Tensor>,
  opts: {
    dtype: 'float32' | 'float64';
    h: number;
    pick?: (param: ParamInfo, grad: ArrayLike<number>) => Iterable<number>;
    threads?: number;
    maskSeed?: number;
  },
): Promise<{ rel: number; checked: number }> {
  const values = new Map(prog.params.map((p) => [p.name, Float64Array.from(p.init as ArrayLike<number>)]));
  const masks = new DropoutMasker(prog.dropoutMasks, prog.dataInputs).feeds(data, opts.maskSeed ?? 1);
  const feeds = () => {
    const f: Record<string, ort.Tensor> = { ...data, ...masks };
    for (const p of prog.params) {
      const v = values.get(p.name)!;
      f[p.name] = opts.dtype === 'float64' ? new ort.Tensor('float64', v, p.dims) : new ort.Tensor('float32', Float32Array.from(v), p.dims);
    }
    return f;
  };
  const sessionOpts = opts.threads ? { intraOpNumThreads: opts.threads } : {};
  const gs = await ort.InferenceSession.create(encodeModel(prog.grad), sessionOpts);
  const es = prog.dropoutMasks.length > 0 ? gs : await ort.InferenceSession.create(encodeModel(prog.eval), sessionOpts);
  const loss = async () => Number((await es.run(feeds()))[LOSS_OUTPUT]!.data[0]);
  const grads = await gs.run(feeds());
  let diff2 = 0,
    na = 0,
    nn = 0,
    checked = 0;
  for (const p of prog.params) {
    const v = values.get(p.name)!;
    const a = grads[gradName(p.name)]!.data as Float32Array | Float64Array;
    for (const i of opts.pick ? opts.pick(p, a) : v.keys()) {
      const o = v[i]!;
      v[i] = o + opts.h;
      const lp = await loss();
      v[i] = o - opts.h;
      const lm = await loss();
      v[i] = o;
      const fd = (lp - lm) / (2 * opts.h);
      diff2 += (a[i]! - fd) ** 2;
      na += a[i]! ** 2;
      nn += fd ** 2;
      checked++;
    }
  }
  await gs.release();
  if (es !== gs) await es.release();
  return { rel: Math.sqrt(diff2) / (Math.sqrt(na) + Math.sqrt(nn)), checked };
}
