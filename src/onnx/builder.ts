/**
 * GraphBuilder: the way tempered (and the model architectures) write ONNX graphs.
 * Values are referred to by name (string); every op returns the names of its outputs.
 */
import type { DType, TypedArray } from './dtype.ts';
import { dtypeOfArray, storageLength } from './dtype.ts';
import type { Attr, Dim, Graph, Model, Node, Tensor, ValueInfo } from './ir.ts';
import { numel } from './ir.ts';
import { inferShapes, type TypeMap } from './shapes.ts';

/** Attribute values as written in op(): plain numbers become int unless the name is a known float attribute. */
export type AttrInput = number | string | number[] | string[] | Tensor | Attr;

/** ONNX attributes of type float for the ops tempered uses; a whole number given for these stays a float. */
const FLOAT_ATTRS = new Set([
  'alpha',
  'beta',
  'epsilon',
  'ratio',
  'value_float',
  'value_floats',
  'lambd',
  'bias',
  'gamma',
  'momentum',
  'min',
  'max',
  'scale',
  'mean',
  'threshold',
  'spatial_scale',
]);

/** Forces a float attribute when the name is not in the known list. */
export function floatAttr(v: number | number[]): Attr {
  return Array.isArray(v) ? { kind: 'floats', value: v } : { kind: 'float', value: v };
}

function isAttr(v: unknown): v is Attr {
  return typeof v === 'object' && v !== null && 'kind' in v && 'value' in v;
}

export function toAttr(name: string, v: AttrInput): Attr {
  if (isAttr(v)) return v;
  if (typeof v === 'number') return FLOAT_ATTRS.has(name) || !Number.isInteger(v) ? { kind: 'float', value: v } : { kind: 'int', value: v };
  if (typeof v === 'string') return { kind: 'string', value: v };
  if (Array.isArray(v)) {
    if (v.every((x) => typeof x === 'string')) return { kind: 'strings', value: v as string[] };
    const nums = v as number[];
    return FLOAT_ATTRS.has(name) || nums.some((x) => !Number.isInteger(x))
      ? { kind: 'floats', value: nums }
      : { kind: 'ints', value: nums };
  }
  return { kind: 'tensor', value: v };
}

export interface OpOptions {
  /** Number of outputs (default 1) or their explicit names. */
  outputs?: number | string[];
  name?: string;
  domain?: string;
}

export class GraphBuilder {
  readonly graph: Graph;
  readonly opsets: Record<string, number>;
  private counter = 0;
  private used = new Set<string>();
  private metadata: Record<string, string> = {};

  constructor(opts: { opset?: number; name?: string; opsets?: Record<string, number> } = {}) {
    this.opsets = { '': opts.opset ?? 17, ...opts.opsets };
    this.graph = { name: opts.name ?? 'tempered', nodes: [], inputs: [], outputs: [], initializers: new Map(), valueInfo: [] };
  }

  /** Continues building on a copy-free view of an existing model (the model is mutated). */
  static extend(model: Model): GraphBuilder {
    const b = new GraphBuilder({ opsets: model.opsets, name: model.graph.name });
    (b as { graph: Graph }).graph = model.graph;
    b.metadata = model.metadata;
    for (const v of model.graph.inputs) b.used.add(v.name);
    for (const k of model.graph.initializers.keys()) b.used.add(k);
    for (const n of model.graph.nodes) {
      b.used.add(n.name);
      for (const o of n.outputs) b.used.add(o);
    }
    return b;
  }

  /** A name not used yet in this graph, derived deterministically from a hint. */
  fresh(hint: string): string {
    let name = hint;
    while (this.used.has(name)) name = `${hint}_${++this.counter}`;
    this.used.add(name);
    return name;
  }

  private claim(name: string, what: string): string {
    if (this.used.has(name)) throw new Error(`${what} name '${name}' is already used in graph '${this.graph.name}'`);
    this.used.add(name);
    return name;
  }

  input(name: string, dtype: DType, shape: Dim[]): string {
    this.graph.inputs.push({ name: this.claim(name, 'input'), dtype, shape: [...shape] });
    return name;
  }

  /** A named weight. Use Hugging Face parameter names so freezing, LoRA targeting and PEFT export work by name. */
  initializer(name: string, data: TypedArray, dims: number[], dtype?: DType): string {
    const dt = dtype ?? dtypeOfArray(data);
    if (storageLength(dt, numel(dims)) !== data.length)
      throw new Error(`initializer '${name}': ${data.length} values do not fill dims [${dims}]`);
    this.graph.initializers.set(this.claim(name, 'initializer'), { name, dtype: dt, dims: [...dims], data });
    return name;
  }

  /** An anonymous constant tensor (shape vectors, scalars); numbers go to float32 unless dtype says otherwise. */
  constant(values: number[] | TypedArray, dims?: number[], dtype: DType = 'float32', hint = 'const'): string {
    let data: TypedArray;
    if (!Array.isArray(values)) data = values;
    else if (dtype === 'int64') data = BigInt64Array.from(values, (v) => BigInt(v));
    else if (dtype === 'float64') data = Float64Array.from(values);
    else if (dtype === 'int32') data = Int32Array.from(values);
    else if (dtype === 'bool') data = Uint8Array.from(values);
    else data = Float32Array.from(values);
    const name = this.fresh(hint);
    this.graph.initializers.set(name, {
      name,
      dtype: Array.isArray(values) ? dtype : dtypeOfArray(data),
      dims: dims ?? [data.length],
      data,
    });
    return name;
  }

  /** int64 vector constant, for shapes and axes. */
  ints(values: number[]): string {
    return this.constant(values, [values.length], 'int64', 'ints');
  }

  /** A scalar of the given float type. */
  scalar(v: number, dtype: DType = 'float32'): string {
    return this.constant([v], [], dtype, 'scalar');
  }

  op(opType: string, inputs: string[], attrs: Record<string, AttrInput> = {}, opts: OpOptions = {}): string {
    return this.opMulti(opType, inputs, attrs, opts)[0]!;
  }

  opMulti(opType: string, inputs: string[], attrs: Record<string, AttrInput> = {}, opts: OpOptions = {}): string[] {
    const name = this.fresh(opts.name ?? opType);
    const outs =
      typeof opts.outputs === 'object'
        ? opts.outputs.map((o) => this.claim(o, 'output'))
        : Array.from({ length: opts.outputs ?? 1 }, (_, i) => this.fresh(`${name}_out${i}`));
    const node: Node = {
      name,
      opType,
      domain: opts.domain ?? '',
      inputs: [...inputs],
      outputs: outs,
      attrs: Object.fromEntries(Object.entries(attrs).map(([k, v]) => [k, toAttr(k, v)])),
    };
    this.graph.nodes.push(node);
    return outs;
  }

  /** Declares a graph output; when `name` differs from the value's name an Identity gives it that name. */
  output(value: string, name?: string): string {
    let v = value;
    if (name && name !== value) v = this.op('Identity', [value], {}, { outputs: [name] });
    this.graph.outputs.push({ name: v, dtype: 'float32' });
    return v;
  }

  setMetadata(key: string, value: string): void {
    this.metadata[key] = value;
  }

  /** Types of every value so far (for code that branches on shapes while building). */
  types(): TypeMap {
    return inferShapes(this.graph);
  }

  /** Finishes the model: output dtypes/shapes come from inference. */
  build(): Model {
    const types = inferShapes(this.graph);
    this.graph.outputs = this.graph.outputs.map((o): ValueInfo => {
      const t = types.get(o.name);
      if (!t) throw new Error(`graph output '${o.name}' is not produced by any node, input or initializer`);
      return { name: o.name, dtype: t.dtype ?? o.dtype, shape: t.shape };
    });
    return { irVersion: 8, opsets: this.opsets, producerName: 'tempered', graph: this.graph, metadata: this.metadata };
  }
}
