/**
 * tempered's in-memory ONNX model: plain objects that are easy to build, rewrite and test.
 * proto.ts converts to and from ModelProto bytes.
 */
import type { DType, TypedArray } from './dtype.ts';

/** A dimension: a fixed size, or a symbolic name such as 'batch' that is fixed only at run time. */
export type Dim = number | string;

export interface ValueInfo {
  name: string;
  dtype: DType;
  /** Undefined when the rank itself is unknown. */
  shape?: Dim[];
}

export interface Tensor {
  name: string;
  dtype: DType;
  dims: number[];
  data: TypedArray;
}

export type Attr =
  | { kind: 'int'; value: number }
  | { kind: 'float'; value: number }
  | { kind: 'string'; value: string }
  | { kind: 'ints'; value: number[] }
  | { kind: 'floats'; value: number[] }
  | { kind: 'strings'; value: string[] }
  | { kind: 'tensor'; value: Tensor }
  /** A subgraph (Loop's body). Its nodes may read values of the enclosing graph by name. */
  | { kind: 'graph'; value: Graph };

export interface Node {
  name: string;
  opType: string;
  /** '' is the default ONNX domain. */
  domain: string;
  /** '' marks an omitted optional input. */
  inputs: string[];
  outputs: string[];
  attrs: Record<string, Attr>;
}

export interface Graph {
  name: string;
  nodes: Node[];
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  initializers: Map<string, Tensor>;
  /** Known types of intermediate values (optional; shapes.ts recomputes them). */
  valueInfo: ValueInfo[];
}

export interface Model {
  irVersion: number;
  /** domain → version; '' is the default ONNX domain. */
  opsets: Record<string, number>;
  producerName: string;
  graph: Graph;
  metadata: Record<string, string>;
}

export function numel(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

export function attrInt(node: Node, name: string, dflt: number): number;
export function attrInt(node: Node, name: string): number | undefined;
export function attrInt(node: Node, name: string, dflt?: number): number | undefined {
  const a = node.attrs[name];
  return a && (a.kind === 'int' || a.kind === 'float') ? a.value : dflt;
}

export function attrFloat(node: Node, name: string, dflt: number): number {
  const a = node.attrs[name];
  return a && (a.kind === 'float' || a.kind === 'int') ? a.value : dflt;
}

export function attrInts(node: Node, name: string): number[] | undefined {
  const a = node.attrs[name];
  return a && a.kind === 'ints' ? a.value : undefined;
}

export function attrString(node: Node, name: string, dflt: string): string {
  const a = node.attrs[name];
  return a && a.kind === 'string' ? a.value : dflt;
}

/** Deep-enough copy for graph rewrites: node/value lists are new, tensors are shared (treated as immutable). */
export function cloneModel(m: Model): Model {
  return {
    ...m,
    opsets: { ...m.opsets },
    metadata: { ...m.metadata },
    graph: {
      name: m.graph.name,
      nodes: m.graph.nodes.map((n) => ({ ...n, inputs: [...n.inputs], outputs: [...n.outputs], attrs: { ...n.attrs } })),
      inputs: m.graph.inputs.map((v) => ({ ...v, shape: v.shape && [...v.shape] })),
      outputs: m.graph.outputs.map((v) => ({ ...v, shape: v.shape && [...v.shape] })),
      initializers: new Map(m.graph.initializers),
      valueInfo: m.graph.valueInfo.map((v) => ({ ...v })),
    },
  };
}
