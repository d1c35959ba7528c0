/**
 * ModelProto bytes ⇄ tempered's IR (ir.ts), including external data for models over protobuf's 2 GB limit.
 */
import { createRequire } from 'node:module';
import {
  closeSync,
  existsSync,
  fstatSync,
  fsyncSync,
  openSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  writeSync,
  readSync,
} from 'node:fs';
import { basename, dirname, isAbsolute, join, sep } from 'node:path';
import { InputError } from '../errors.ts';
import type { onnx as OnnxNs } from 'onnx-proto';
import type { Attr, Dim, Graph, Model, Node, Tensor, ValueInfo } from './ir.ts';
import { numel } from './ir.ts';
import { topoSort } from './graph.ts';
import { byteSize, dtypeFromCode, fromBytes, onnxCode, toBytes, allocate } from './dtype.ts';

// onnx-proto ships CommonJS static protobufjs code; createRequire keeps this file ESM.
const { onnx } = createRequire(import.meta.url)('onnx-proto') as { onnx: typeof OnnxNs };

type LongLike = number | { toNumber(): number };
const num = (v: LongLike | null | undefined): number => (v == null ? 0 : typeof v === 'number' ? v : v.toNumber());

const ATTR = onnx.AttributeProto.AttributeType;

function tensorToProto(t: Tensor, external?: { location: string; offset: number }): OnnxNs.ITensorProto {
  const p: OnnxNs.ITensorProto = { name: t.name, dims: t.dims, dataType: onnxCode(t.dtype) };
  if (external) {
    p.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    p.externalData = [
      { key: 'location', value: external.location },
      { key: 'offset', value: String(external.offset) },
      { key: 'length', value: String(t.data.byteLength) },
    ];
  } else {
    p.rawData = toBytes(t.data);
  }
  return p;
}

/**
 * The file holding a tensor's external data: a path relative to the model's folder that stays
 * inside it after symlinks, so a model cannot make the loader read, say, ../../etc/shadow.
 */
function externalDataFile(baseDir: string, location: string, what: string): string {
  const outside = () =>
    new InputError(`${what} names external data at ${JSON.stringify(location)}, outside the model's folder ${baseDir}`, {
      hint: 'external data files must sit beside the model file',
    });
  if (location === '' || isAbsolute(location) || location.split(/[\\/]/).includes('..')) throw outside();
  const file = join(baseDir, location);
  let real: string;
  try {
    real = realpathSync(file);
  } catch {
    throw new InputError(`${what}: external data file ${file} does not exist`, { where: file });
  }
  const base = realpathSync(baseDir);
  if (!real.startsWith(base.endsWith(sep) ? base : base + sep)) throw outside();
  return file;
}

/** Most elements of one tensor in a model file: 2^34 (64 GiB of float32), beyond any model tempered loads. */
const MAX_TENSOR_ELEMENTS = 2 ** 34;

function tensorFromProto(p: OnnxNs.ITensorProto, where: string, baseDir?: string): Tensor {
  const dtype = dtypeFromCode(p.dataType ?? 0, where);
  const dims = (p.dims ?? []).map((d) => num(d as LongLike));
  const n = numel(dims);
  const name = p.name ?? '';
  // A model file is hostile until checked: sizes before anything is allocated for them.
  if (!dims.every((d) => Number.isSafeInteger(d) && d >= 0) || !Number.isSafeInteger(n) || n > MAX_TENSOR_ELEMENTS)
    throw new InputError(`${where}: tensor '${name}' has dims [${dims.join(', ')}], which no tensor of a model has`);
  if (p.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    const kv = Object.fromEntries((p.externalData ?? []).map((e) => [e.key, e.value]));
    if (!baseDir) throw new Error(`${where}: tensor '${name}' uses external data; load the model from a file path`);
    const file = externalDataFile(baseDir, kv['location'] ?? '', `${where}: tensor '${name}'`);
    const offset = Number(kv['offset'] ?? 0);
    const want = byteSize(dtype, n);
    const length = kv['length'] !== undefined ? Number(kv['length']) : want;
    // A model file is hostile until checked: the declared span must be the tensor's exact size and
    // lie inside the data file, before anything is allocated for it.
    if (!Number.isSafeInteger(offset) || offset < 0 || length !== want) {
      throw new InputError(
        `${where}: tensor '${name}' declares external data offset ${kv['offset']} length ${kv['length']}, but its ${dims.join('x') || 'scalar'} ${dtype} needs ${want} bytes`,
        { where: file },
      );
    }
    const fd = openSync(file, 'r');
    try {
      const size = fstatSync(fd).size;
      if (offset + length > size)
        throw new InputError(`${where}: tensor '${name}' wants bytes ${offset}-${offset + length} of ${file}, which has ${size}`, {
          where: file,
        });
      const buf = Buffer.alloc(length);
      let got = 0;
      while (got < length) {
        const r = readSync(fd, buf, got, length - got, offset + got);
        if (r === 0) throw new Error(`${file}: external data for '${name}' ends early (wanted ${length} bytes at ${offset})`);
        got += r;
      }
      return { name, dtype, dims, data: fromBytes(dtype, buf) };
    } finally {
      closeSync(fd);
    }
  }
  if (p.rawData && p.rawData.length) {
    if (p.rawData.length !== byteSize(dtype, n))
      throw new InputError(
        `${where}: tensor '${name}' holds ${p.rawData.length} bytes, but its ${dims.join('x') || 'scalar'} ${dtype} needs ${byteSize(dtype, n)}`,
      );
    return { name, dtype, dims, data: fromBytes(dtype, p.rawData) };
  }
  const src: ArrayLike<LongLike> | null | undefined =
    dtype === 'float32' ? p.floatData : dtype === 'float64' ? p.doubleData : dtype === 'int64' ? (p.int64Data as LongLike[]) : p.int32Data;
  if ((src?.length ?? 0) !== n)
    throw new InputError(
      `${where}: tensor '${name}' holds ${src?.length ?? 0} values, but its ${dims.join('x') || 'scalar'} shape needs ${n}`,
    );
  const data = allocate(dtype, n);
  if (src && src.length) {
    if (data instanceof BigInt64Array) for (let i = 0; i < n; i++) data[i] = BigInt(num(src[i]));
    else for (let i = 0; i < n; i++) (data as Float32Array)[i] = num(src[i]);
  }
  return { name, dtype, dims, data };
}

function attrToProto(name: string, a: Attr): OnnxNs.IAttributeProto {
  switch (a.kind) {
    case 'int':
      return { name, type: ATTR.INT, i: a.value };
    case 'float':
      return { name, type: ATTR.FLOAT, f: a.value };
    case 'string':
      return { name, type: ATTR.STRING, s: new TextEncoder().encode(a.value) };
    case 'ints':
      return { name, type: ATTR.INTS, ints: a.value };
    case 'floats':
      return { name, type: ATTR.FLOATS, floats: a.value };
    case 'strings':
      return { name, type: ATTR.STRINGS, strings: a.value.map((s) => new TextEncoder().encode(s)) };
    case 'tensor':
      return { name, type: ATTR.TENSOR, t: tensorToProto(a.value) };
    case 'graph':
      return { name, type: ATTR.GRAPH, g: graphToProto(a.value) };
  }
}

function attrFromProto(p: OnnxNs.IAttributeProto, where: string): Attr | undefined {
  const dec = (b: Uint8Array | null | undefined) => new TextDecoder().decode(b ?? new Uint8Array());
  switch (p.type) {
    case ATTR.INT:
      return { kind: 'int', value: num(p.i as LongLike) };
    case ATTR.FLOAT:
      return { kind: 'float', value: p.f ?? 0 };
    case ATTR.STRING:
      return { kind: 'string', value: dec(p.s) };
    case ATTR.INTS:
      return { kind: 'ints', value: (p.ints ?? []).map((v) => num(v as LongLike)) };
    case ATTR.FLOATS:
      return { kind: 'floats', value: [...(p.floats ?? [])] };
    case ATTR.STRINGS:
      return { kind: 'strings', value: (p.strings ?? []).map(dec) };
    case ATTR.TENSOR:
      return { kind: 'tensor', value: tensorFromProto(p.t ?? {}, where) };
    default:
      throw new Error(`${where}: attribute '${p.name}' has type ${p.type}, which tempered does not handle (subgraphs, sparse tensors)`);
  }
}

function valueInfoToProto(v: ValueInfo): OnnxNs.IValueInfoProto {
  const shape = v.shape && {
    dim: v.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : d.startsWith('?') ? {} : { dimParam: d })),
  };
  return { name: v.name, type: { tensorType: { elemType: onnxCode(v.dtype), shape } } };
}

function valueInfoFromProto(p: OnnxNs.IValueInfoProto, where: string): ValueInfo {
  const tt = p.type?.tensorType;
  if (!tt) throw new Error(`${where}: value '${p.name}' is not a tensor (sequences and maps are not supported)`);
  let unknown = 0;
  const shape = tt.shape
    ? (tt.shape.dim ?? []).map(
        (d): Dim =>
          d.dimValue != null && (d as { value?: string }).value === 'dimValue'
            ? num(d.dimValue as LongLike)
            : d.dimParam
              ? d.dimParam
              : `?${p.name}_${unknown++}`,
      )
    : undefined;
  return { name: p.name ?? '', dtype: dtypeFromCode(tt.elemType ?? 0, where), shape };
}

export interface EncodeOptions {
  /** Store every initializer of at least this many bytes in `externalData.file` (see saveModel). */
  external?: { location: string; offsets: Map<string, number> };
}

function toProto(model: Model, opts: EncodeOptions = {}): OnnxNs.ModelProto {
  return onnx.ModelProto.create({
    irVersion: model.irVersion,
    producerName: model.producerName,
    opsetImport: Object.entries(model.opsets).map(([domain, version]) => ({ domain, version })),
    metadataProps: Object.entries(model.metadata).map(([key, value]) => ({ key, value })),
    graph: graphToProto(model.graph, opts),
  });
}

function graphToProto(g: Graph, opts: EncodeOptions = {}): OnnxNs.IGraphProto {
  return {
    name: g.name,
    // ONNX requires producers before consumers; rewrites (LoRA, autodiff) append nodes anywhere.
    node: topoSort(g).map((n) => ({
      name: n.name,
      opType: n.opType,
      domain: n.domain,
      input: n.inputs,
      output: n.outputs,
      attribute: Object.entries(n.attrs).map(([k, a]) => attrToProto(k, a)),
    })),
    input: g.inputs.map(valueInfoToProto),
    output: g.outputs.map(valueInfoToProto),
    valueInfo: g.valueInfo.map(valueInfoToProto),
    initializer: [...g.initializers.values()].map((t) => {
      const off = opts.external?.offsets.get(t.name);
      return tensorToProto(t, off === undefined ? undefined : { location: opts.external!.location, offset: off });
    }),
  };
}

/** Serializes a model whose tensors all fit in one protobuf message (< 2 GB). */
export function encodeModel(model: Model, opts: EncodeOptions = {}): Uint8Array {
  return onnx.ModelProto.encode(toProto(model, opts)).finish();
}

/** Parses ModelProto bytes; `baseDir` resolves external data files. */
export function decodeModel(bytes: Uint8Array, baseDir?: string): Model {
  const p = onnx.ModelProto.decode(bytes);
  const g = p.graph;
  if (!g) throw new Error('ModelProto has no graph');
  const initializers = new Map<string, Tensor>();
  for (const t of g.initializer ?? []) initializers.set(t.name ?? '', tensorFromProto(t, `initializer ${t.name}`, baseDir));
  const inits = new Set(initializers.keys());
  const nodes: Node[] = (g.node ?? []).map((n, i) => {
    const name = n.name || `node_${i}`;
    const attrs: Record<string, Attr> = {};
    for (const a of n.attribute ?? []) {
      const v = attrFromProto(a, `node ${name}`);
      if (v) attrs[a.name ?? ''] = v;
    }
    return { name, opType: n.opType ?? '', domain: n.domain ?? '', inputs: [...(n.input ?? [])], outputs: [...(n.output ?? [])], attrs };
  });
  return {
    irVersion: num(p.irVersion as LongLike),
    opsets: Object.fromEntries((p.opsetImport ?? []).map((o) => [o.domain ?? '', num(o.version as LongLike)])),
    producerName: p.producerName ?? '',
    metadata: Object.fromEntries((p.metadataProps ?? []).map((e) => [e.key ?? '', e.value ?? ''])),
    graph: {
      name: g.name ?? '',
      nodes,
      // Older exporters list initializers among the inputs too; they are weights, not feeds.
      inputs: (g.input ?? []).filter((v) => !inits.has(v.name ?? '')).map((v) => valueInfoFromProto(v, `input ${v.name}`)),
      outputs: (g.output ?? []).map((v) => valueInfoFromProto(v, `output ${v.name}`)),
      initializers,
      valueInfo: (g.valueInfo ?? []).filter((v) => v.type?.tensorType).map((v) => valueInfoFromProto(v, `value_info ${v.name}`)),
    },
  };
}

/** Protobuf messages cannot exceed 2 GB; stay well below it. */
export const EXTERNAL_THRESHOLD_BYTES = 1_800_000_000;

/** Tensors smaller than this stay inline when external data is used (as onnx's size_threshold). */
export const EXTERNAL_MIN_TENSOR_BYTES = 1024;

export interface SaveOptions {
  /** 'auto' (default): external data only when the weights would not fit in one message. */
  externalData?: boolean | 'auto';
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done);
}

/**
 * Writes `path` (and `path`.data when external) atomically: each file goes to a temp name first and is
 * renamed into place, so a crash never leaves a truncated model behind.
 */
export function saveModel(model: Model, path: string, opts: SaveOptions = {}): void {
  const total = [...model.graph.initializers.values()].reduce((s, t) => s + t.data.byteLength, 0);
  const useExternal = opts.externalData === true || (opts.externalData !== false && total > EXTERNAL_THRESHOLD_BYTES);
  const tmpSuffix = `.tmp-${process.pid}`;
  let encodeOpts: EncodeOptions = {};
  const dataPath = `${path}.data`;
  if (useExternal) {
    const offsets = new Map<string, number>();
    const fd = openSync(dataPath + tmpSuffix, 'w');
    try {
      let offset = 0;
      for (const t of model.graph.initializers.values()) {
        // Small tensors (shape vectors, axes) stay inline: shape inference must read them from the proto.
        if (t.data.byteLength < EXTERNAL_MIN_TENSOR_BYTES) continue;
        // Page-aligned tensors let onnxruntime memory-map them instead of copying (it maps only offsets
        // that are multiples of the allocation granularity, 4 KiB on Linux).
        const pad = (4096 - (offset % 4096)) % 4096;
        if (pad) writeAll(fd, new Uint8Array(pad));
        offset += pad;
        offsets.set(t.name, offset);
        writeAll(fd, toBytes(t.data));
        offset += t.data.byteLength;
      }
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(dataPath + tmpSuffix, dataPath);
    encodeOpts = { external: { location: basename(dataPath), offsets } };
  } else if (existsSync(dataPath)) {
    rmSync(dataPath);
  }
  const bytes = encodeModel(model, encodeOpts);
  const fd = openSync(path + tmpSuffix, 'w');
  try {
    writeAll(fd, bytes);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(path + tmpSuffix, path);
}

export function loadModel(path: string): Model {
  try {
    return decodeModel(readFileSync(path), dirname(path));
  } catch (e) {
    if (e instanceof InputError) throw e.where ? e : new InputError(e.message, { where: path, hint: e.hint });
    // protobufjs's RangeErrors (a truncated or garbled file, nesting past the stack) and a missing graph.
    throw new InputError(`not a valid ONNX model: ${(e as Error).message}`, { where: path, cause: e });
  }
}
